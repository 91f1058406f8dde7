package oidc

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	"github.com/tenantplane/tenantplane/tenancy"
)

func validConfig() Config {
	return Config{
		FrontendURL: "https://console.example.com/login",
		StateKey:    bytes.Repeat([]byte{1}, StateKeySize),
		Providers: []ProviderConfig{{
			Name:        "acme",
			IssuerURL:   "https://idp.acme.example/realms/main",
			ClientID:    "tenantplane",
			RedirectURL: "https://api.example.com/auth/oidc/acme/callback",
		}},
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		change  func(c *Config)
		wantErr string
	}{
		{"valid", func(*Config) {}, ""},
		{"loopback http", func(c *Config) {
			c.FrontendURL = "http://localhost:3000/"
			c.Providers[0].IssuerURL = "http://127.0.0.1:5556/dex"
			c.Providers[0].RedirectURL = "http://tenantplane.localhost/auth/oidc/acme/callback"
		}, ""},
		{"ipv6 loopback", func(c *Config) { c.Providers[0].IssuerURL = "http://[::1]:8080" }, ""},
		{"public client", func(c *Config) { c.Providers[0].ClientSecret = "" }, ""},
		{"behind a path prefix", func(c *Config) {
			c.Providers[0].RedirectURL = "https://example.com/api/auth/oidc/acme/callback"
		}, ""},
		{"no providers", func(c *Config) { c.Providers = nil }, "at least one"},
		{"no frontend", func(c *Config) { c.FrontendURL = "" }, "frontend URL: required"},
		{"frontend with fragment", func(c *Config) { c.FrontendURL = "https://c.example/#x" }, "fragment"},
		{"frontend with empty fragment", func(c *Config) { c.FrontendURL = "https://c.example/#" }, "fragment"},
		{"frontend with query", func(c *Config) { c.FrontendURL = "https://c.example/?a=b" }, "query"},
		{"frontend relative", func(c *Config) { c.FrontendURL = "/login" }, "absolute"},
		{"frontend plain http", func(c *Config) { c.FrontendURL = "http://console.example.com/" }, "https"},
		{"frontend javascript", func(c *Config) { c.FrontendURL = "javascript://x/%0aalert(1)" }, "scheme"},
		{"short key", func(c *Config) { c.StateKey = c.StateKey[:16] }, "state key: must be 32 bytes, got 16"},
		{"ttl too short", func(c *Config) { c.StateTTL = time.Second }, "state TTL"},
		{"ttl too long", func(c *Config) { c.StateTTL = 2 * time.Hour }, "state TTL"},
		{"bad name", func(c *Config) { c.Providers[0].Name = "Acme" }, "name \"Acme\""},
		{"name with slash", func(c *Config) { c.Providers[0].Name = "a/b" }, "name"},
		{"name ends in dash", func(c *Config) { c.Providers[0].Name = "acme-" }, "name"},
		{"duplicate name", func(c *Config) { c.Providers = append(c.Providers, c.Providers[0]) }, "used twice"},
		{"issuer plain http", func(c *Config) { c.Providers[0].IssuerURL = "http://idp.example" }, "issuer URL: must be https"},
		{"issuer with query", func(c *Config) { c.Providers[0].IssuerURL = "https://idp.example/?x=1" }, "issuer URL: must not have a query"},
		{"issuer with credentials", func(c *Config) { c.Providers[0].IssuerURL = "https://u:p@idp.example" }, "credentials"},
		{"no client id", func(c *Config) { c.Providers[0].ClientID = "" }, "client id"},
		{"redirect to other route", func(c *Config) {
			c.Providers[0].RedirectURL = "https://api.example.com/auth/oidc/globex/callback"
		}, `must end in "/acme/callback"`},
		{"bad scope", func(c *Config) { c.Providers[0].Scopes = []string{"openid email"} }, "scope"},
		{"bad domain", func(c *Config) { c.Providers[0].AllowedEmailDomains = []string{"@acme.example"} }, "allowed email domain"},
		{"dotless domain", func(c *Config) { c.Providers[0].AllowedEmailDomains = []string{"localhost"} }, "allowed email domain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := validConfig()
			tt.change(&c)
			_, err := c.validate()
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	c := validConfig()
	c.Providers = append(c.Providers, ProviderConfig{
		Name: "globex", IssuerURL: "https://globex.example", ClientID: "x",
		RedirectURL:         "https://api.example.com/auth/oidc/globex/callback",
		Scopes:              []string{"email", "groups"},
		AllowedEmailDomains: []string{" Globex.Example "},
	})
	got, err := c.validate()
	require.NoError(t, err)
	require.Equal(t, DefaultStateTTL, got.StateTTL)
	require.NotNil(t, got.HTTPClient)
	require.Equal(t, DefaultHTTPTimeout, got.HTTPClient.Timeout)
	require.Equal(t, []string{"openid", "email", "profile"}, got.Providers[0].Scopes)
	require.Equal(t, []string{"openid", "email", "groups"}, got.Providers[1].Scopes)
	require.Equal(t, []string{"globex.example"}, got.Providers[1].AllowedEmailDomains)
	require.Equal(t, []string{"email", "groups"}, c.Providers[1].Scopes, "the caller's slice is not changed")
}

func TestSealer(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	s, err := newSealer(bytes.Repeat([]byte{9}, 32))
	require.NoError(t, err)
	other, err := newSealer(bytes.Repeat([]byte{8}, 32))
	require.NoError(t, err)
	st := loginState{Provider: "acme", State: "st", Nonce: "n", Verifier: "v", Expires: now.Add(time.Minute).Unix()}
	sealed, err := s.seal(st)
	require.NoError(t, err)
	again, err := s.seal(st)
	require.NoError(t, err)
	require.NotEqual(t, sealed, again, "every seal has a fresh nonce")

	got, err := s.open("acme", sealed, now)
	require.NoError(t, err)
	require.Equal(t, st, got)

	flip := []byte(sealed)
	if flip[20] == 'A' {
		flip[20] = 'B'
	} else {
		flip[20] = 'A'
	}
	tests := []struct {
		name     string
		s        sealer
		provider string
		value    string
		now      time.Time
		wantErr  string
	}{
		{"other provider", s, "globex", sealed, now, "invalid"},
		{"other key", other, "acme", sealed, now, "invalid"},
		{"flipped byte", s, "acme", string(flip), now, "invalid"},
		{"truncated", s, "acme", sealed[:len(sealed)-4], now, "invalid"},
		{"not base64", s, "acme", "!!!" + sealed, now, "invalid"},
		{"empty", s, "acme", "", now, "invalid"},
		{"too long", s, "acme", strings.Repeat("A", maxCookieLen+1), now, "invalid"},
		{"expired", s, "acme", sealed, now.Add(time.Minute), "expired"},
	}
	for _, tt := range tests {
		_, err := tt.s.open(tt.provider, tt.value, tt.now)
		require.ErrorContains(t, err, tt.wantErr, tt.name)
	}
}

func TestStateCookie(t *testing.T) {
	t.Parallel()
	tests := []struct {
		redirect   string
		wantName   string
		wantSecure bool
	}{
		{"https://api.example.com/auth/oidc/acme/callback", "__Secure-tp_oidc_acme", true},
		{"http://localhost:8080/auth/oidc/acme/callback", "tp_oidc_acme", false},
	}
	for _, tt := range tests {
		p, err := newProvider(ProviderConfig{Name: "acme", RedirectURL: tt.redirect}, http.DefaultClient, time.Now)
		require.NoError(t, err)
		c := p.cookie.set("v", 10*time.Minute)
		require.Equal(t, tt.wantName, c.Name)
		require.Equal(t, tt.wantSecure, c.Secure)
		require.Equal(t, "/auth/oidc/acme/callback", c.Path)
		require.True(t, c.HttpOnly)
		require.Equal(t, http.SameSiteLaxMode, c.SameSite)
		require.Equal(t, 600, c.MaxAge)
		require.Empty(t, c.Domain)
		cl := p.cookie.clear()
		require.Equal(t, tt.wantName, cl.Name)
		require.Equal(t, -1, cl.MaxAge)
		require.Equal(t, c.Path, cl.Path)
	}
}

func TestFlexBool(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    bool
		wantErr bool
	}{
		{`true`, true, false},
		{`false`, false, false},
		{`"true"`, true, false},
		{`"false"`, false, false},
		{`null`, false, false},
		{`1`, false, true},
		{`"yes"`, false, true},
		{`"TRUE"`, false, true},
	}
	for _, tt := range tests {
		var c claims
		err := json.Unmarshal([]byte(`{"email_verified":`+tt.in+`}`), &c)
		if tt.wantErr {
			require.Error(t, err, tt.in)
			continue
		}
		require.NoError(t, err, tt.in)
		require.Equal(t, tt.want, bool(c.EmailVerified), tt.in)
	}
}

func TestAuthStyle(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		secret  string
		methods []string
		want    oauth2.AuthStyle
	}{
		{"public client", "", []string{"client_secret_basic"}, oauth2.AuthStyleInParams},
		{"nothing advertised means basic", "s", nil, oauth2.AuthStyleInHeader},
		{"basic preferred", "s", []string{"client_secret_post", "client_secret_basic"}, oauth2.AuthStyleInHeader},
		{"post only", "s", []string{"client_secret_post"}, oauth2.AuthStyleInParams},
		{"neither", "s", []string{"private_key_jwt"}, oauth2.AuthStyleAutoDetect},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, authStyle(tt.secret, tt.methods), tt.name)
	}
}

func TestWantsJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		accept []string
		want   bool
	}{
		{nil, false},
		{[]string{"text/html,application/xhtml+xml,*/*;q=0.8"}, false},
		{[]string{"application/json"}, true},
		{[]string{"text/html;q=0.5, Application/JSON; charset=utf-8"}, true},
		{[]string{"text/html", "application/json"}, true},
		{[]string{"application/jsonp"}, false},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		for _, a := range tt.accept {
			r.Header.Add("Accept", a)
		}
		require.Equal(t, tt.want, wantsJSON(r), tt.accept)
	}
}

func TestAdmit(t *testing.T) {
	t.Parallel()
	p := &provider{domains: []string{"acme.example", "acme.test"}}
	tests := []struct {
		id   tenancy.OIDCIdentity
		want bool
	}{
		{tenancy.OIDCIdentity{Email: "a@acme.example", EmailVerified: true}, true},
		{tenancy.OIDCIdentity{Email: "a@ACME.TEST", EmailVerified: true}, true},
		{tenancy.OIDCIdentity{Email: "a@acme.example", EmailVerified: false}, false},
		{tenancy.OIDCIdentity{Email: "a@sub.acme.example", EmailVerified: true}, false},
		{tenancy.OIDCIdentity{Email: "a@acme.example.evil", EmailVerified: true}, false},
		{tenancy.OIDCIdentity{Email: `"a@acme.example"@evil.example`, EmailVerified: true}, false},
		{tenancy.OIDCIdentity{Email: "", EmailVerified: true}, false},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, p.admit(tt.id) == nil, tt.id.Email)
	}
	require.Nil(t, (&provider{}).admit(tenancy.OIDCIdentity{}), "no domains: everyone is admitted")
}
