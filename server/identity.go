package server

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/tenantplane/tenantplane/tenancy"
	"github.com/tenantplane/tenantplane/tenancy/mail/smtp"
	"github.com/tenantplane/tenantplane/tenancy/oidc"
)

// IdentityConfig is the part of Config about accounts, mail and log-in.
type IdentityConfig struct {
	// PublicURL is the console's address, used in links that mail carries.
	PublicURL string
	// RequireVerifiedEmail refuses log-in until the email is verified.
	RequireVerifiedEmail bool
	// SessionTTL is how long a log-in session lasts.
	SessionTTL time.Duration
	// TokenCacheTTL is how long a replica answers for a token it
	// authenticated a moment ago; zero turns the cache off.
	TokenCacheTTL time.Duration
	// Argon2 are the password hashing parameters.
	Argon2Time      uint32
	Argon2MemoryKiB uint32
	Argon2Threads   uint8
	// Mailer is "smtp" or "log" (mail is written to the log, for dev).
	Mailer string
	SMTP   SMTPConfig
	// OIDCConfigFile is a JSON file of OpenID Connect providers; empty
	// turns OIDC log-in off. See docs/configuration.md.
	OIDCConfigFile string
}

// SMTPConfig is how mail is submitted when Mailer is "smtp".
type SMTPConfig struct {
	Host     string
	Port     int
	Username string
	// Password comes from TENANTPLANE_SMTP_PASSWORD, never a flag value
	// visible in the process list.
	Password string
	From     string
	TLS      string
}

func defaultIdentityConfig() IdentityConfig {
	d := tenancy.DefaultConfig()
	return IdentityConfig{
		PublicURL:       d.BaseURL,
		SessionTTL:      d.SessionTTL,
		TokenCacheTTL:   d.TokenCacheTTL,
		Argon2Time:      d.Argon2.Time,
		Argon2MemoryKiB: d.Argon2.MemoryKiB,
		Argon2Threads:   d.Argon2.Threads,
		Mailer:          "smtp",
		SMTP:            SMTPConfig{TLS: string(smtp.StartTLS)},
	}
}

func (c *IdentityConfig) bindFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.PublicURL, "public-url", c.PublicURL, "the console's public address, used in links sent by mail")
	fs.BoolVar(&c.RequireVerifiedEmail, "require-verified-email", c.RequireVerifiedEmail, "refuse log-in until the email address is verified")
	fs.DurationVar(&c.SessionTTL, "session-ttl", c.SessionTTL, "lifetime of a log-in session")
	fs.DurationVar(&c.TokenCacheTTL, "token-cache-ttl", c.TokenCacheTTL,
		"how long a replica answers for a token it authenticated a moment ago, forgetting it at once on revocation (0 turns the cache off)")
	fs.Uint32Var(&c.Argon2Time, "argon2-time", c.Argon2Time, "argon2id passes")
	fs.Uint32Var(&c.Argon2MemoryKiB, "argon2-memory-kib", c.Argon2MemoryKiB, "argon2id memory in KiB")
	fs.Uint8Var(&c.Argon2Threads, "argon2-threads", c.Argon2Threads, "argon2id parallelism")
	fs.StringVar(&c.Mailer, "mailer", c.Mailer, "how mail is sent: smtp, or log (written to the log; for development)")
	fs.StringVar(&c.SMTP.Host, "smtp-host", c.SMTP.Host, "SMTP server host")
	fs.IntVar(&c.SMTP.Port, "smtp-port", c.SMTP.Port, "SMTP server port (default by TLS mode: 587, 465 or 25)")
	fs.StringVar(&c.SMTP.Username, "smtp-username", c.SMTP.Username, "SMTP user name (password from TENANTPLANE_SMTP_PASSWORD)")
	fs.StringVar(&c.SMTP.From, "smtp-from", c.SMTP.From, `sender, e.g. "Tenantplane <no-reply@example.com>"`)
	fs.StringVar(&c.SMTP.TLS, "smtp-tls", c.SMTP.TLS, "SMTP TLS mode: starttls, implicit or none (loopback only)")
	fs.StringVar(&c.OIDCConfigFile, "oidc-config", c.OIDCConfigFile, "JSON file of OpenID Connect providers; empty turns OIDC log-in off")
}

// tenancyConfig is the tenancy service's configuration from these settings.
func (c *IdentityConfig) tenancyConfig() (tenancy.Config, error) {
	t := tenancy.DefaultConfig()
	t.BaseURL = c.PublicURL
	t.RequireVerifiedEmail = c.RequireVerifiedEmail
	t.SessionTTL = c.SessionTTL
	t.TokenCacheTTL = c.TokenCacheTTL
	t.Argon2.Time, t.Argon2.MemoryKiB, t.Argon2.Threads = c.Argon2Time, c.Argon2MemoryKiB, c.Argon2Threads
	if err := t.Validate(); err != nil {
		return t, &configError{"--public-url/--session-ttl/--token-cache-ttl/--argon2-*", err.Error()}
	}
	return t, nil
}

func (c *IdentityConfig) validate() error {
	if _, err := c.tenancyConfig(); err != nil {
		return err
	}
	switch c.Mailer {
	case "log":
	case "smtp":
		if _, err := c.smtpConfig(); err != nil {
			return err
		}
	default:
		return &configError{"--mailer (TENANTPLANE_MAILER)", fmt.Sprintf("%q is not smtp or log", c.Mailer)}
	}
	if c.OIDCConfigFile != "" {
		if _, err := c.oidcConfig(); err != nil {
			return err
		}
	}
	return nil
}

func (c *IdentityConfig) smtpConfig() (smtp.Config, error) {
	if c.SMTP.Host == "" {
		return smtp.Config{}, &configError{"--smtp-host (TENANTPLANE_SMTP_HOST)", "is required with --mailer smtp (or use --mailer log in development)"}
	}
	if c.SMTP.From == "" {
		return smtp.Config{}, &configError{"--smtp-from (TENANTPLANE_SMTP_FROM)", "is required with --mailer smtp"}
	}
	mode := smtp.TLSMode(c.SMTP.TLS)
	switch mode {
	case smtp.StartTLS, smtp.ImplicitTLS, smtp.NoTLS:
	default:
		return smtp.Config{}, &configError{"--smtp-tls (TENANTPLANE_SMTP_TLS)", fmt.Sprintf("%q is not starttls, implicit or none", c.SMTP.TLS)}
	}
	if c.SMTP.Password == "" {
		c.SMTP.Password = os.Getenv(EnvPrefix + "SMTP_PASSWORD")
	}
	return smtp.Config{
		Host: c.SMTP.Host, Port: c.SMTP.Port, Username: c.SMTP.Username, Password: c.SMTP.Password,
		From: c.SMTP.From, TLS: mode,
	}, nil
}

// oidcFile is the JSON layout of --oidc-config.
type oidcFile struct {
	// FrontendURL receives the session after log-in, in the URL fragment.
	FrontendURL string `json:"frontendURL"`
	// StateKey is 32 random bytes, base64, the same on every replica.
	StateKey  string `json:"stateKey"`
	Providers []struct {
		Name                string   `json:"name"`
		IssuerURL           string   `json:"issuerURL"`
		ClientID            string   `json:"clientID"`
		ClientSecret        string   `json:"clientSecret"`
		RedirectURL         string   `json:"redirectURL"`
		Scopes              []string `json:"scopes"`
		AllowedEmailDomains []string `json:"allowedEmailDomains"`
	} `json:"providers"`
}

func (c *IdentityConfig) oidcConfig() (oidc.Config, error) {
	const setting = "--oidc-config (TENANTPLANE_OIDC_CONFIG)"
	b, err := os.ReadFile(c.OIDCConfigFile)
	if err != nil {
		return oidc.Config{}, &configError{setting, err.Error()}
	}
	var f oidcFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return oidc.Config{}, &configError{setting, "parsing " + c.OIDCConfigFile + ": " + err.Error()}
	}
	key, err := base64.StdEncoding.DecodeString(f.StateKey)
	if err != nil {
		return oidc.Config{}, &configError{setting, "stateKey is not base64: " + err.Error()}
	}
	cfg := oidc.Config{FrontendURL: f.FrontendURL, StateKey: key}
	for _, p := range f.Providers {
		cfg.Providers = append(cfg.Providers, oidc.ProviderConfig{
			Name: p.Name, IssuerURL: p.IssuerURL, ClientID: p.ClientID, ClientSecret: p.ClientSecret,
			RedirectURL: p.RedirectURL, Scopes: p.Scopes, AllowedEmailDomains: p.AllowedEmailDomains,
		})
	}
	return cfg, nil
}
