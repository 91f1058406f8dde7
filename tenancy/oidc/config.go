package oidc

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Defaults and bounds for [Config].
const (
	// DefaultStateTTL is how long a started log-in may take when
	// Config.StateTTL is zero.
	DefaultStateTTL = 10 * time.Minute
	// MaxStateTTL is the longest Config.StateTTL accepted.
	MaxStateTTL = time.Hour
	// StateKeySize is the size in bytes of Config.StateKey (AES-256).
	StateKeySize = 32
	// DefaultHTTPTimeout bounds every request to a provider when
	// Config.HTTPClient is nil.
	DefaultHTTPTimeout = 10 * time.Second
)

// DefaultScopes are requested when ProviderConfig.Scopes is empty.
var DefaultScopes = []string{"openid", "email", "profile"}

// Config configures OpenID Connect log-in for all providers.
type Config struct {
	// Providers are the identity providers people may log in with; at least
	// one. Their names are unique.
	Providers []ProviderConfig
	// FrontendURL is where the browser is sent when the callback is done: the
	// session (token, expires_at) or the error (error, error_description)
	// travels in the URL fragment, which browsers never send to a server.
	// Absolute, https unless the host is loopback, without a fragment.
	FrontendURL string
	// StateKey is the AES-256-GCM key, exactly 32 random bytes, that seals
	// the log-in state cookie. Every replica must have the same key;
	// changing it only breaks log-ins in flight.
	StateKey []byte
	// StateTTL is how long a started log-in may take, from the redirect to
	// the provider to the callback. Zero means DefaultStateTTL; at most
	// MaxStateTTL.
	StateTTL time.Duration
	// HTTPClient makes the requests to providers (discovery, JWKS, token
	// endpoint). It must have a timeout. Nil means a client with
	// DefaultHTTPTimeout.
	HTTPClient *http.Client
}

// ProviderConfig is one identity provider.
type ProviderConfig struct {
	// Name identifies the provider in the URL (/auth/oidc/{Name}/login):
	// 1 to 32 characters of a-z, 0-9 and '-', starting and ending with a
	// letter or digit.
	Name string
	// IssuerURL is the provider's issuer; discovery reads
	// IssuerURL/.well-known/openid-configuration and ID tokens must carry it
	// as iss. https unless the host is loopback.
	IssuerURL string
	// ClientID is this relying party's client id at the provider, the
	// audience its ID tokens must name.
	ClientID string
	// ClientSecret authenticates the client at the token endpoint. Empty for
	// a public client, which PKCE alone protects.
	ClientSecret string
	// RedirectURL is the callback registered at the provider. Its path must
	// end in /{Name}/callback (the route this package serves, as the browser
	// sees it); the state cookie is scoped to that path. https unless the
	// host is loopback; the cookie is Secure when it is https.
	RedirectURL string
	// Scopes requested; "openid" is added when missing. Empty means
	// DefaultScopes.
	Scopes []string
	// AllowedEmailDomains, when set, admits only identities whose email is
	// verified by the provider and whose domain (after '@', compared
	// case-insensitively, subdomains not included) is listed.
	AllowedEmailDomains []string
}

var providerName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$`)

// validate checks c and returns a copy with defaults filled in.
func (c Config) validate() (Config, error) {
	var errs []error
	if len(c.Providers) == 0 {
		errs = append(errs, errors.New("providers: at least one is required"))
	}
	if _, err := checkURL(c.FrontendURL, false); err != nil {
		errs = append(errs, fmt.Errorf("frontend URL: %w", err))
	}
	if len(c.StateKey) != StateKeySize {
		errs = append(errs, fmt.Errorf("state key: must be %d bytes, got %d", StateKeySize, len(c.StateKey)))
	}
	switch {
	case c.StateTTL == 0:
		c.StateTTL = DefaultStateTTL
	case c.StateTTL < time.Minute || c.StateTTL > MaxStateTTL:
		errs = append(errs, fmt.Errorf("state TTL: must be between 1m and %s, got %s", MaxStateTTL, c.StateTTL))
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: DefaultHTTPTimeout}
	}
	seen := map[string]bool{}
	providers := make([]ProviderConfig, 0, len(c.Providers))
	for i, p := range c.Providers {
		p, err := p.validate()
		if err != nil {
			errs = append(errs, fmt.Errorf("providers[%d]: %w", i, err))
			continue
		}
		if seen[p.Name] {
			errs = append(errs, fmt.Errorf("providers[%d]: name %q used twice", i, p.Name))
		}
		seen[p.Name] = true
		providers = append(providers, p)
	}
	c.Providers = providers
	if err := errors.Join(errs...); err != nil {
		return Config{}, fmt.Errorf("oidc config: %w", err)
	}
	return c, nil
}

// validate checks p and returns a normalised copy: scopes defaulted with
// openid first, email domains lower-cased.
func (p ProviderConfig) validate() (ProviderConfig, error) {
	var errs []error
	if !providerName.MatchString(p.Name) {
		errs = append(errs, fmt.Errorf("name %q: must be 1-32 of a-z, 0-9, '-', not starting or ending with '-'", p.Name))
	}
	if u, err := checkURL(p.IssuerURL, true); err != nil {
		errs = append(errs, fmt.Errorf("issuer URL: %w", err))
	} else if u.RawQuery != "" {
		errs = append(errs, errors.New("issuer URL: must not have a query"))
	}
	if p.ClientID == "" {
		errs = append(errs, errors.New("client id: required"))
	}
	if u, err := checkURL(p.RedirectURL, true); err != nil {
		errs = append(errs, fmt.Errorf("redirect URL: %w", err))
	} else if want := "/" + p.Name + "/callback"; !strings.HasSuffix(u.Path, want) {
		errs = append(errs, fmt.Errorf("redirect URL: path %q must end in %q", u.Path, want))
	}
	scopes := slices.Clone(p.Scopes)
	if len(scopes) == 0 {
		scopes = slices.Clone(DefaultScopes)
	}
	for _, s := range scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n\"\\") {
			errs = append(errs, fmt.Errorf("scope %q: not a scope token", s))
		}
	}
	if !slices.Contains(scopes, "openid") {
		scopes = append([]string{"openid"}, scopes...)
	}
	p.Scopes = scopes
	domains := make([]string, 0, len(p.AllowedEmailDomains))
	for _, d := range p.AllowedEmailDomains {
		d = strings.ToLower(strings.TrimSpace(d))
		if d == "" || strings.ContainsAny(d, "@ /") || !strings.Contains(d, ".") {
			errs = append(errs, fmt.Errorf("allowed email domain %q: not a domain name", d))
			continue
		}
		domains = append(domains, d)
	}
	p.AllowedEmailDomains = domains
	if err := errors.Join(errs...); err != nil {
		return ProviderConfig{}, err
	}
	return p, nil
}

// checkURL parses an absolute URL that must be https, or http on a loopback
// host (localhost, *.localhost or a loopback address), and that carries no
// credentials or fragment.
func checkURL(raw string, allowQuery bool) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("required")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("not a URL")
	}
	if u.Host == "" || u.Opaque != "" {
		return nil, errors.New("must be an absolute URL")
	}
	if u.User != nil {
		return nil, errors.New("must not carry credentials")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return nil, errors.New("must not have a fragment")
	}
	if !allowQuery && u.RawQuery != "" {
		return nil, errors.New("must not have a query")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			return nil, errors.New("must be https unless the host is loopback")
		}
	default:
		return nil, fmt.Errorf("scheme %q: must be https", u.Scheme)
	}
	return u, nil
}

func isLoopback(host string) bool {
	host = strings.ToLower(host)
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
