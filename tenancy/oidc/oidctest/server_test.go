package oidctest_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	"github.com/tenantplane/tenantplane/tenancy/oidc/oidctest"
)

const (
	clientID     = "tenantplane"
	clientSecret = "s3cret/with+odd=chars"
	redirectURI  = "http://127.0.0.1:1/callback"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type bundle struct {
	idp   *oidctest.Server
	clock *clock
	oauth *oauth2.Config
	op    *gooidc.Provider
}

// setup starts a provider with one client and one signed-in identity, and
// discovers it with go-oidc as a relying party would.
func setup(t *testing.T) bundle {
	t.Helper()
	clk := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	idp := oidctest.New(t, clk.now)
	idp.AddClient(oidctest.Client{ID: clientID, Secret: clientSecret, RedirectURIs: []string{redirectURI}})
	idp.SetIdentity(oidctest.Identity{Subject: "u-1", Email: "ada@example.com", EmailVerified: true, Name: "Ada"})
	op, err := gooidc.NewProvider(t.Context(), idp.Issuer())
	require.NoError(t, err)
	return bundle{
		idp:   idp,
		clock: clk,
		op:    op,
		oauth: &oauth2.Config{
			ClientID:     clientID,
			ClientSecret: clientSecret,
			Endpoint:     op.Endpoint(),
			RedirectURL:  redirectURI,
			Scopes:       []string{"openid", "email"},
		},
	}
}

var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
	return http.ErrUseLastResponse
}}

// authorize sends the browser's request to the authorization endpoint and
// returns the response status and, for a redirect, the query it carries.
func authorize(t *testing.T, target string) (int, url.Values) {
	t.Helper()
	resp, err := noRedirects.Get(target)
	require.NoError(t, err)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		return resp.StatusCode, nil
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	require.NoError(t, err)
	require.Equal(t, redirectURI, (&url.URL{Scheme: loc.Scheme, Host: loc.Host, Path: loc.Path}).String())
	return resp.StatusCode, loc.Query()
}

func TestDiscoveryDocument(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var meta struct {
		Issuer           string   `json:"issuer"`
		JWKS             string   `json:"jwks_uri"`
		ChallengeMethods []string `json:"code_challenge_methods_supported"`
		Algs             []string `json:"id_token_signing_alg_values_supported"`
	}
	require.NoError(t, b.op.Claims(&meta))
	require.Equal(t, b.idp.Issuer(), meta.Issuer)
	require.Equal(t, b.idp.Issuer()+oidctest.JWKSPath, meta.JWKS)
	require.Equal(t, []string{"S256"}, meta.ChallengeMethods)
	require.Equal(t, []string{"RS256"}, meta.Algs)

	b.idp.SetDiscoveryDown(true)
	_, err := gooidc.NewProvider(t.Context(), b.idp.Issuer())
	require.ErrorContains(t, err, "503")
	require.Equal(t, 2, b.idp.DiscoveryRequests())
}

func TestCodeFlowIssuesVerifiableIDToken(t *testing.T) {
	t.Parallel()
	b := setup(t)
	verifier := oauth2.GenerateVerifier()
	status, q := authorize(t, b.oauth.AuthCodeURL("st-1", oauth2.S256ChallengeOption(verifier), gooidc.Nonce("n-1")))
	require.Equal(t, http.StatusFound, status)
	require.Equal(t, "st-1", q.Get("state"))
	require.NotEmpty(t, q.Get("code"))

	tok, err := b.oauth.Exchange(t.Context(), q.Get("code"), oauth2.VerifierOption(verifier))
	require.NoError(t, err)
	raw, _ := tok.Extra("id_token").(string)
	require.NotEmpty(t, raw)

	idt, err := b.op.Verifier(&gooidc.Config{ClientID: clientID, Now: b.clock.now}).Verify(t.Context(), raw)
	require.NoError(t, err)
	require.Equal(t, b.idp.Issuer(), idt.Issuer)
	require.Equal(t, "u-1", idt.Subject)
	require.Equal(t, []string{clientID}, idt.Audience)
	require.Equal(t, "n-1", idt.Nonce)
	require.Equal(t, b.clock.now().Add(oidctest.TokenTTL), idt.Expiry.UTC())
	require.NoError(t, idt.VerifyAccessToken(tok.AccessToken))
	require.Error(t, idt.VerifyAccessToken(tok.AccessToken+"x"))
	var c struct {
		Email         string `json:"email"`
		EmailVerified bool   `json:"email_verified"`
		Name          string `json:"name"`
	}
	require.NoError(t, idt.Claims(&c))
	require.Equal(t, "ada@example.com", c.Email)
	require.True(t, c.EmailVerified)
	require.Equal(t, "Ada", c.Name)

	// A verifier that trusts another client rejects the token.
	_, err = b.op.Verifier(&gooidc.Config{ClientID: "other", Now: b.clock.now}).Verify(t.Context(), raw)
	require.ErrorContains(t, err, "audience")
}

func TestClaimsHookChangesSignedClaims(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.idp.SetClaimsHook(func(c map[string]any) { c["nonce"] = "forged" })
	verifier := oauth2.GenerateVerifier()
	_, q := authorize(t, b.oauth.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier), gooidc.Nonce("real")))
	tok, err := b.oauth.Exchange(t.Context(), q.Get("code"), oauth2.VerifierOption(verifier))
	require.NoError(t, err)
	idt, err := b.op.Verifier(&gooidc.Config{ClientID: clientID, Now: b.clock.now}).Verify(t.Context(), tok.Extra("id_token").(string))
	require.NoError(t, err, "the hooked token is still properly signed")
	require.Equal(t, "forged", idt.Nonce)
}

// TestTokenEndpointRejects drives the token endpoint with the form a client
// would post, changed in one way per case.
func TestTokenEndpointRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		change     func(b bundle, form url.Values, verifier string)
		basicAuth  [2]string
		wantStatus int
		wantError  string
	}{
		{
			name:       "missing code_verifier",
			change:     func(_ bundle, f url.Values, _ string) { f.Del("code_verifier") },
			wantStatus: http.StatusBadRequest, wantError: "invalid_grant",
		},
		{
			name:       "mismatched code_verifier",
			change:     func(_ bundle, f url.Values, _ string) { f.Set("code_verifier", oauth2.GenerateVerifier()) },
			wantStatus: http.StatusBadRequest, wantError: "invalid_grant",
		},
		{
			name:       "code_challenge sent as verifier",
			change:     func(_ bundle, f url.Values, v string) { f.Set("code_verifier", oauth2.S256ChallengeFromVerifier(v)) },
			wantStatus: http.StatusBadRequest, wantError: "invalid_grant",
		},
		{
			name:       "short code_verifier",
			change:     func(_ bundle, f url.Values, v string) { f.Set("code_verifier", v[:42]) },
			wantStatus: http.StatusBadRequest, wantError: "invalid_grant",
		},
		{
			name:       "other redirect_uri",
			change:     func(_ bundle, f url.Values, _ string) { f.Set("redirect_uri", "http://127.0.0.1:1/other") },
			wantStatus: http.StatusBadRequest, wantError: "invalid_grant",
		},
		{
			name:       "unknown code",
			change:     func(_ bundle, f url.Values, _ string) { f.Set("code", "nope") },
			wantStatus: http.StatusBadRequest, wantError: "invalid_grant",
		},
		{
			name:       "expired code",
			change:     func(b bundle, _ url.Values, _ string) { b.clock.advance(oidctest.CodeTTL) },
			wantStatus: http.StatusBadRequest, wantError: "invalid_grant",
		},
		{
			name:       "wrong grant type",
			change:     func(_ bundle, f url.Values, _ string) { f.Set("grant_type", "refresh_token") },
			wantStatus: http.StatusBadRequest, wantError: "unsupported_grant_type",
		},
		{
			name:       "wrong client secret",
			change:     func(_ bundle, f url.Values, _ string) { f.Set("client_secret", "guess") },
			wantStatus: http.StatusUnauthorized, wantError: "invalid_client",
		},
		{
			name:       "secret in header and form",
			change:     func(_ bundle, f url.Values, _ string) { f.Del("client_id") },
			basicAuth:  [2]string{url.QueryEscape(clientID), url.QueryEscape(clientSecret)},
			wantStatus: http.StatusUnauthorized, wantError: "invalid_client",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			verifier := oauth2.GenerateVerifier()
			_, q := authorize(t, b.oauth.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier), gooidc.Nonce("n")))
			form := url.Values{
				"grant_type":    {"authorization_code"},
				"code":          {q.Get("code")},
				"redirect_uri":  {redirectURI},
				"code_verifier": {verifier},
				"client_id":     {clientID},
				"client_secret": {clientSecret},
			}
			tt.change(b, form, verifier)
			status, body := postToken(t, b.idp, form, tt.basicAuth)
			require.Equal(t, tt.wantStatus, status, body)
			require.Equal(t, tt.wantError, body["error"])
			require.NotContains(t, body, "id_token")
		})
	}
}

func TestCodeIsSingleUse(t *testing.T) {
	t.Parallel()
	b := setup(t)
	verifier := oauth2.GenerateVerifier()
	_, q := authorize(t, b.oauth.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier), gooidc.Nonce("n")))

	// A wrong verifier consumes the code: it cannot be retried with the
	// right one.
	_, err := b.oauth.Exchange(t.Context(), q.Get("code"), oauth2.VerifierOption(oauth2.GenerateVerifier()))
	require.ErrorContains(t, err, "invalid_grant")
	_, err = b.oauth.Exchange(t.Context(), q.Get("code"), oauth2.VerifierOption(verifier))
	require.ErrorContains(t, err, "already used")

	_, q = authorize(t, b.oauth.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier), gooidc.Nonce("n")))
	_, err = b.oauth.Exchange(t.Context(), q.Get("code"), oauth2.VerifierOption(verifier))
	require.NoError(t, err)
	_, err = b.oauth.Exchange(t.Context(), q.Get("code"), oauth2.VerifierOption(verifier))
	require.ErrorContains(t, err, "already used")
}

func TestPublicClientAndPostAuth(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.idp.AddClient(oidctest.Client{ID: "cli", RedirectURIs: []string{redirectURI}})
	tests := []struct {
		name   string
		config oauth2.Config
	}{
		{"public client", oauth2.Config{ClientID: "cli", Endpoint: b.oauth.Endpoint, RedirectURL: redirectURI, Scopes: []string{"openid"}}},
		{"client_secret_post", func() oauth2.Config {
			c := *b.oauth
			c.Endpoint.AuthStyle = oauth2.AuthStyleInParams
			return c
		}()},
		{"client_secret_basic", func() oauth2.Config {
			c := *b.oauth
			c.Endpoint.AuthStyle = oauth2.AuthStyleInHeader
			return c
		}()},
	}
	for _, tt := range tests {
		verifier := oauth2.GenerateVerifier()
		_, q := authorize(t, tt.config.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier)))
		tok, err := tt.config.Exchange(t.Context(), q.Get("code"), oauth2.VerifierOption(verifier))
		require.NoError(t, err, tt.name)
		require.NotEmpty(t, tok.Extra("id_token"), tt.name)
	}
}

func TestAuthorizeRejects(t *testing.T) {
	t.Parallel()
	challenge := oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())
	base := url.Values{
		"response_type":         {"code"},
		"client_id":             {clientID},
		"redirect_uri":          {redirectURI},
		"scope":                 {"openid email"},
		"state":                 {"st"},
		"code_challenge":        {challenge},
		"code_challenge_method": {"S256"},
	}
	tests := []struct {
		name       string
		change     func(q url.Values)
		signedOut  bool
		wantStatus int
		wantError  string
	}{
		{"unknown client is not redirected", func(q url.Values) { q.Set("client_id", "nope") }, false, http.StatusBadRequest, ""},
		{"unregistered redirect_uri is not redirected", func(q url.Values) { q.Set("redirect_uri", "http://127.0.0.1:1/evil") }, false, http.StatusBadRequest, ""},
		{"no code_challenge", func(q url.Values) { q.Del("code_challenge") }, false, http.StatusFound, "invalid_request"},
		{"plain method", func(q url.Values) { q.Set("code_challenge_method", "plain") }, false, http.StatusFound, "invalid_request"},
		{"no method", func(q url.Values) { q.Del("code_challenge_method") }, false, http.StatusFound, "invalid_request"},
		{"challenge not a digest", func(q url.Values) { q.Set("code_challenge", "abc") }, false, http.StatusFound, "invalid_request"},
		{"no openid scope", func(q url.Values) { q.Set("scope", "email") }, false, http.StatusFound, "invalid_scope"},
		{"implicit flow", func(q url.Values) { q.Set("response_type", "id_token") }, false, http.StatusFound, "unsupported_response_type"},
		{"nobody signed in", func(url.Values) {}, true, http.StatusFound, "login_required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clk := &clock{t: time.Now().UTC()}
			idp := oidctest.New(t, clk.now)
			idp.AddClient(oidctest.Client{ID: clientID, Secret: clientSecret, RedirectURIs: []string{redirectURI}})
			if !tt.signedOut {
				idp.SetIdentity(oidctest.Identity{Subject: "u"})
			}
			q := url.Values{}
			for k, v := range base {
				q[k] = append([]string(nil), v...)
			}
			tt.change(q)
			status, got := authorize(t, idp.Issuer()+oidctest.AuthorizePath+"?"+q.Encode())
			require.Equal(t, tt.wantStatus, status)
			if tt.wantError != "" {
				require.Equal(t, tt.wantError, got.Get("error"))
				require.Equal(t, "st", got.Get("state"))
				require.Empty(t, got.Get("code"))
			}
		})
	}
}

func postToken(t *testing.T, idp *oidctest.Server, form url.Values, basic [2]string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, idp.Issuer()+oidctest.TokenPath, strings.NewReader(form.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basic[0] != "" {
		req.SetBasicAuth(basic[0], basic[1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
	var body map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	return resp.StatusCode, body
}
