package server

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tenantplane/tenantplane/internal/reqmeta"
)

// EnvPrefix prefixes the environment variable of every flag: --database-url
// is also TENANTPLANE_DATABASE_URL. A flag given on the command line wins.
const EnvPrefix = "TENANTPLANE_"

// HTTPConfig is how the HTTP server listens and guards itself.
type HTTPConfig struct {
	// Listen is the TCP address to serve on, host:port.
	Listen string
	// ReadHeaderTimeout bounds how long a client may take to send headers.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing a response (exports stream past it by
	// extending their own deadline).
	WriteTimeout time.Duration
	// IdleTimeout bounds an idle keep-alive connection.
	IdleTimeout time.Duration
	// ShutdownTimeout is how long in-flight requests get after SIGTERM.
	ShutdownTimeout time.Duration
	// MaxBodyBytes caps every request body.
	MaxBodyBytes int64
	// CORSOrigins are the browser origins allowed to call the API; empty
	// allows none. "*" is refused: credentials are bearer tokens.
	CORSOrigins []string
	// TrustedProxies are the networks (CIDR, or single addresses) of the
	// reverse proxies in front of the server. Only requests from them have
	// their X-Forwarded-For read, for the client address that rate limits
	// and the audit log record; empty trusts none. A network of every
	// address is refused.
	TrustedProxies []string

	proxies reqmeta.Proxies // TrustedProxies, parsed by validate
}

// Config is the configuration of `tenantplane serve`.
type Config struct {
	// DatabaseURL is the PostgreSQL connection URL.
	DatabaseURL string
	// Kubeconfig is a kubeconfig file; empty means in-cluster configuration.
	Kubeconfig string
	// MigrateOnStart applies pending migrations before serving, under the
	// migration advisory lock, so replicas starting together are safe.
	MigrateOnStart bool
	// Dev turns on development conveniences: the GraphiQL page at / and
	// GraphQL introspection.
	Dev bool
	// LogLevel is debug, info, warn or error.
	LogLevel  string
	HTTP      HTTPConfig
	Identity  IdentityConfig
	GraphQL   GraphQLConfig
	Isolation IsolationConfig
	Metering  MeteringConfig
	Invoicing InvoicingConfig
	// BillingLifecycle is the debt lifecycle (--billing-lifecycle-*).
	BillingLifecycle BillingLifecycleConfig
	Stripe           StripeConfig
	// BillingRating is the rating of usage into charges.
	BillingRating BillingRatingConfig
	Export        ExportConfig
	Runtime       RuntimeConfig
}

// GraphQLConfig bounds what one GraphQL request may ask for.
type GraphQLConfig struct {
	// Introspection serves the schema to clients (always on with Dev).
	Introspection bool
	// MaxDepth bounds how deeply a query may nest.
	MaxDepth int
	// MaxComplexity bounds a query's cost; each list costs its page size.
	MaxComplexity int
}

// defaultConfig is the configuration before flags and environment apply.
func defaultConfig() Config {
	return Config{
		MigrateOnStart: true,
		LogLevel:       "info",
		HTTP: HTTPConfig{
			Listen:            ":8080",
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      60 * time.Second,
			IdleTimeout:       120 * time.Second,
			ShutdownTimeout:   30 * time.Second,
			MaxBodyBytes:      1 << 20,
		},
		Identity:         defaultIdentityConfig(),
		Isolation:        defaultIsolationConfig(),
		Metering:         defaultMeteringConfig(),
		Invoicing:        defaultInvoicingConfig(),
		BillingLifecycle: defaultBillingLifecycleConfig(),
		Stripe:           defaultStripeConfig(),
		BillingRating:    defaultBillingRatingConfig(),
		Export:           defaultExportConfig(),
		GraphQL:          GraphQLConfig{MaxDepth: 12, MaxComplexity: 50000},
	}
}

// bindFlags declares the flags of c on fs, with c's values as defaults.
func (c *Config) bindFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.DatabaseURL, "database-url", c.DatabaseURL, "PostgreSQL connection URL (also DATABASE_URL)")
	fs.StringVar(&c.Kubeconfig, "kubeconfig", c.Kubeconfig, "kubeconfig file; empty for in-cluster (also KUBECONFIG)")
	fs.BoolVar(&c.MigrateOnStart, "migrate-on-start", c.MigrateOnStart, "apply pending database migrations before serving")
	fs.BoolVar(&c.Dev, "dev", c.Dev, "development mode: GraphiQL at / and introspection")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn or error")
	fs.StringVar(&c.HTTP.Listen, "listen", c.HTTP.Listen, "HTTP listen address")
	fs.DurationVar(&c.HTTP.ReadHeaderTimeout, "http-read-header-timeout", c.HTTP.ReadHeaderTimeout, "time allowed to read request headers")
	fs.DurationVar(&c.HTTP.ReadTimeout, "http-read-timeout", c.HTTP.ReadTimeout, "time allowed to read a whole request")
	fs.DurationVar(&c.HTTP.WriteTimeout, "http-write-timeout", c.HTTP.WriteTimeout, "time allowed to write a response")
	fs.DurationVar(&c.HTTP.IdleTimeout, "http-idle-timeout", c.HTTP.IdleTimeout, "time an idle keep-alive connection is kept")
	fs.DurationVar(&c.HTTP.ShutdownTimeout, "shutdown-timeout", c.HTTP.ShutdownTimeout, "time in-flight requests get after SIGTERM")
	fs.Int64Var(&c.HTTP.MaxBodyBytes, "http-max-body-bytes", c.HTTP.MaxBodyBytes, "largest request body accepted")
	fs.StringSliceVar(&c.HTTP.CORSOrigins, "cors-origins", c.HTTP.CORSOrigins, "browser origins allowed to call the API (comma-separated)")
	fs.StringSliceVar(&c.HTTP.TrustedProxies, "trusted-proxies", c.HTTP.TrustedProxies,
		"networks (CIDR, comma-separated) of the reverse proxies whose X-Forwarded-For names the client address")
	fs.BoolVar(&c.GraphQL.Introspection, "graphql-introspection", c.GraphQL.Introspection, "serve the GraphQL schema to clients (always on with --dev)")
	fs.IntVar(&c.GraphQL.MaxDepth, "graphql-max-depth", c.GraphQL.MaxDepth, "deepest nesting a GraphQL query may have")
	fs.IntVar(&c.GraphQL.MaxComplexity, "graphql-max-complexity", c.GraphQL.MaxComplexity, "highest cost a GraphQL query may have")
	c.Identity.bindFlags(fs)
	c.Isolation.bindFlags(fs)
	c.Metering.bindFlags(fs)
	c.Invoicing.bindFlags(fs)
	c.BillingLifecycle.bindFlags(fs)
	c.Stripe.bindFlags(fs)
	c.BillingRating.bindFlags(fs)
	c.Export.bindFlags(fs)
	c.Runtime.bindFlags(fs)
}

// applyEnv sets every flag not given on the command line from its
// TENANTPLANE_* variable, and the well-known DATABASE_URL and KUBECONFIG.
func applyEnv(cmd *cobra.Command) error {
	var err error
	aliases := map[string]string{"database-url": "DATABASE_URL", "kubeconfig": "KUBECONFIG"}
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed {
			return
		}
		name := EnvPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		v, ok := os.LookupEnv(name)
		if !ok {
			if alias := aliases[f.Name]; alias != "" {
				name = alias
				v, ok = os.LookupEnv(alias)
			}
		}
		if !ok {
			return
		}
		if setErr := f.Value.Set(v); setErr != nil {
			err = &configError{setting: name, msg: setErr.Error()}
		}
	})
	return err
}

// validate checks every setting and names the first bad one.
func (c *Config) validate() error {
	// The platform bills in one currency unless a price book says
	// otherwise; one flag sets it for every part.
	c.BillingLifecycle.DefaultCurrency = c.BillingRating.DefaultCurrency
	c.Stripe.Currency = c.BillingRating.DefaultCurrency
	if c.DatabaseURL == "" {
		return &configError{"--database-url (TENANTPLANE_DATABASE_URL)", "is required"}
	}
	if u, err := url.Parse(c.DatabaseURL); err == nil && strings.Contains(c.DatabaseURL, "://") &&
		u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return &configError{"--database-url (TENANTPLANE_DATABASE_URL)", fmt.Sprintf("scheme %q is not postgres://", u.Scheme)}
	}
	if c.Kubeconfig != "" {
		if _, err := os.Stat(c.Kubeconfig); err != nil {
			return &configError{"--kubeconfig (TENANTPLANE_KUBECONFIG)", err.Error()}
		}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return &configError{"--log-level (TENANTPLANE_LOG_LEVEL)", fmt.Sprintf("%q is not debug, info, warn or error", c.LogLevel)}
	}
	if c.GraphQL.MaxDepth < 2 || c.GraphQL.MaxDepth > 50 {
		return &configError{"--graphql-max-depth", fmt.Sprintf("%d is not between 2 and 50", c.GraphQL.MaxDepth)}
	}
	if c.GraphQL.MaxComplexity < 10 || c.GraphQL.MaxComplexity > 10_000_000 {
		return &configError{"--graphql-max-complexity", fmt.Sprintf("%d is not between 10 and 10000000", c.GraphQL.MaxComplexity)}
	}
	if err := c.Runtime.validate(); err != nil {
		return err
	}
	if err := c.HTTP.validate(); err != nil {
		return err
	}
	if err := c.Identity.validate(); err != nil {
		return err
	}
	if err := c.Isolation.validate(); err != nil {
		return err
	}
	if err := c.Metering.validate(); err != nil {
		return err
	}
	if err := c.Invoicing.validate(); err != nil {
		return err
	}
	if err := c.BillingLifecycle.validate(); err != nil {
		return err
	}
	if err := c.Stripe.validate(); err != nil {
		return err
	}
	if err := c.BillingRating.validate(); err != nil {
		return err
	}
	return c.Export.validate()
}

func (h *HTTPConfig) validate() error {
	if _, _, err := net.SplitHostPort(h.Listen); err != nil {
		return &configError{"--listen (TENANTPLANE_LISTEN)", err.Error()}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"--http-read-header-timeout", h.ReadHeaderTimeout},
		{"--http-read-timeout", h.ReadTimeout},
		{"--http-write-timeout", h.WriteTimeout},
		{"--http-idle-timeout", h.IdleTimeout},
		{"--shutdown-timeout", h.ShutdownTimeout},
	} {
		if d.v <= 0 || d.v > time.Hour {
			return &configError{d.name, fmt.Sprintf("%s is not between 0 and 1h", d.v)}
		}
	}
	if h.MaxBodyBytes < 1024 || h.MaxBodyBytes > 64<<20 {
		return &configError{"--http-max-body-bytes", fmt.Sprintf("%d is not between 1 KiB and 64 MiB", h.MaxBodyBytes)}
	}
	for _, o := range h.CORSOrigins {
		u, err := url.Parse(o)
		if o == "*" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" {
			return &configError{"--cors-origins", fmt.Sprintf("%q is not an origin such as https://console.example.com", o)}
		}
	}
	proxies, err := reqmeta.ParseProxies(h.TrustedProxies)
	if err != nil {
		return &configError{"--trusted-proxies (TENANTPLANE_TRUSTED_PROXIES)", err.Error()}
	}
	h.proxies = proxies
	return nil
}
