package oidc_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/internal/testenv"
	"github.com/tenantplane/tenantplane/tenancy"
	"github.com/tenantplane/tenantplane/tenancy/oidc"
	"github.com/tenantplane/tenantplane/tenancy/oidc/oidctest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const frontendURL = "http://127.0.0.1:1/console/login"

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

// sessions records the identities the handler logs in and answers with a
// session, or with err when set.
type sessions struct {
	clock *clock
	mu    sync.Mutex
	got   []tenancy.OIDCIdentity
	err   error
}

func (s *sessions) LogInOIDC(_ context.Context, id tenancy.OIDCIdentity) (oidc.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, id)
	if s.err != nil {
		return oidc.Session{}, s.err
	}
	return oidc.Session{Token: "tp_sess_" + id.Subject, ExpiresAt: s.clock.now().Add(24 * time.Hour)}, nil
}

func (s *sessions) calls() []tenancy.OIDCIdentity {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]tenancy.OIDCIdentity(nil), s.got...)
}

type bundle struct {
	idp      map[string]*oidctest.Server // by provider name
	clock    *clock                      // the handler's clock
	idpClock *clock                      // the providers' clock
	sessions *sessions
	srv      *httptest.Server // the handler, mounted at /auth/oidc/
	logs     *bytes.Buffer
}

type options struct {
	domains       []string // AllowedEmailDomains of provider "acme"
	discoveryDown bool
}

// setup starts two providers, "acme" and "globex", each its own in-process
// IdP with Ada signed in, and the handler mounted as the server mounts it.
func setup(t *testing.T, opts options) bundle {
	t.Helper()
	clk := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	idpClk := &clock{t: clk.t}
	srv := httptest.NewUnstartedServer(nil)
	t.Cleanup(srv.Close)
	base := "http://" + srv.Listener.Addr().String()

	b := bundle{idp: map[string]*oidctest.Server{}, clock: clk, idpClock: idpClk, sessions: &sessions{clock: clk}, logs: &bytes.Buffer{}}
	cfg := oidc.Config{FrontendURL: frontendURL, StateKey: bytes.Repeat([]byte{7}, oidc.StateKeySize)}
	for _, name := range []string{"acme", "globex"} {
		idp := oidctest.New(t, idpClk.now)
		redirect := base + "/auth/oidc/" + name + "/callback"
		idp.AddClient(oidctest.Client{ID: "tp-" + name, Secret: "secret-" + name, RedirectURIs: []string{redirect}})
		idp.SetIdentity(oidctest.Identity{Subject: "ada-" + name, Email: "ada@acme.example", EmailVerified: true, Name: "Ada Lovelace"})
		idp.SetDiscoveryDown(opts.discoveryDown)
		pc := oidc.ProviderConfig{
			Name: name, IssuerURL: idp.Issuer(), ClientID: "tp-" + name, ClientSecret: "secret-" + name,
			RedirectURL: redirect,
		}
		if name == "acme" {
			pc.AllowedEmailDomains = opts.domains
		}
		cfg.Providers = append(cfg.Providers, pc)
		b.idp[name] = idp
	}
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: b.logs}, nil))
	h, err := oidc.NewHandler(cfg, b.sessions, log, clk.now)
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("/auth/oidc/", h)
	srv.Config.Handler = mux
	srv.Start()
	b.srv = srv
	return b
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// browser is an HTTP client with a cookie jar that follows redirects itself,
// so that a test can stop at any hop.
type browser struct {
	t   *testing.T
	hc  *http.Client
	jar *cookiejar.Jar
}

func newBrowser(t *testing.T) *browser {
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return &browser{t: t, jar: jar, hc: &http.Client{
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// get makes one request and returns the response with its body read.
func (br *browser) get(target string, header http.Header) (*http.Response, []byte) {
	br.t.Helper()
	req, err := http.NewRequest(http.MethodGet, target, nil)
	require.NoError(br.t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := br.hc.Do(req)
	require.NoError(br.t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(br.t, err)
	return resp, body
}

// toCallback starts a log-in at provider and follows redirects through the
// IdP until the browser is about to call the callback, returning that URL.
func (br *browser) toCallback(b bundle, provider string) *url.URL {
	br.t.Helper()
	resp, _ := br.get(b.srv.URL+"/auth/oidc/"+provider+"/login", nil)
	require.Equal(br.t, http.StatusFound, resp.StatusCode)
	resp, body := br.get(resp.Header.Get("Location"), nil)
	require.Equal(br.t, http.StatusFound, resp.StatusCode, string(body))
	cb, err := url.Parse(resp.Header.Get("Location"))
	require.NoError(br.t, err)
	require.True(br.t, strings.HasPrefix(cb.String(), b.srv.URL+"/auth/oidc/"+provider+"/callback?"), cb.String())
	return cb
}

// fragment returns the values in the fragment of a redirect to the frontend.
func fragment(t *testing.T, resp *http.Response) url.Values {
	t.Helper()
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	loc := resp.Header.Get("Location")
	before, frag, ok := strings.Cut(loc, "#")
	require.True(t, ok, loc)
	require.Equal(t, frontendURL, before)
	v, err := url.ParseQuery(frag)
	require.NoError(t, err)
	return v
}

type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func decodeError(t *testing.T, body []byte) apiError {
	t.Helper()
	var e apiError
	require.NoError(t, json.Unmarshal(body, &e), string(body))
	return e
}

var acceptJSON = http.Header{"Accept": {"text/html;q=0.9, application/json"}}

func TestLogInFullFlow(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	br := newBrowser(t)

	resp, _ := br.get(b.srv.URL+"/auth/oidc/acme/login", nil)
	require.Equal(t, http.StatusFound, resp.StatusCode)
	require.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
	auth, err := url.Parse(resp.Header.Get("Location"))
	require.NoError(t, err)
	require.Equal(t, b.idp["acme"].Issuer()+oidctest.AuthorizePath, auth.Scheme+"://"+auth.Host+auth.Path)
	q := auth.Query()
	require.Equal(t, "code", q.Get("response_type"))
	require.Equal(t, "tp-acme", q.Get("client_id"))
	require.Equal(t, "openid email profile", q.Get("scope"))
	require.Equal(t, "S256", q.Get("code_challenge_method"))
	require.Len(t, q.Get("code_challenge"), 43)
	require.Len(t, q.Get("state"), 43)
	require.Len(t, q.Get("nonce"), 43)

	cookies := resp.Cookies()
	require.Len(t, cookies, 1)
	c := cookies[0]
	require.Equal(t, "tp_oidc_acme", c.Name)
	require.Equal(t, "/auth/oidc/acme/callback", c.Path)
	require.True(t, c.HttpOnly)
	require.False(t, c.Secure, "the redirect URL is plain http on loopback")
	require.Equal(t, http.SameSiteLaxMode, c.SameSite)
	require.Equal(t, int(oidc.DefaultStateTTL/time.Second), c.MaxAge)
	for _, secret := range []string{q.Get("state"), q.Get("nonce")} {
		require.NotContains(t, c.Value, secret, "the cookie is encrypted")
	}

	resp, _ = br.get(auth.String(), nil)
	require.Equal(t, http.StatusFound, resp.StatusCode)
	resp, _ = br.get(resp.Header.Get("Location"), nil)
	v := fragment(t, resp)
	require.Equal(t, "tp_sess_ada-acme", v.Get("token"))
	require.Equal(t, b.clock.now().Add(24*time.Hour).Format(time.RFC3339), v.Get("expires_at"))
	require.Equal(t, "no-referrer", resp.Header.Get("Referrer-Policy"))

	require.Equal(t, []tenancy.OIDCIdentity{{
		Issuer: b.idp["acme"].Issuer(), Subject: "ada-acme", Email: "ada@acme.example", EmailVerified: true, Name: "Ada Lovelace",
	}}, b.sessions.calls())

	cbURL, err := url.Parse(b.srv.URL + "/auth/oidc/acme/callback")
	require.NoError(t, err)
	require.Empty(t, br.jar.Cookies(cbURL), "the state cookie is cleared after use")
	require.Equal(t, 1, b.idp["acme"].DiscoveryRequests())
	require.NotContains(t, b.logs.String(), "tp_sess_", "session secrets are never logged")
}

func TestLogInJSON(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	br := newBrowser(t)
	cb := br.toCallback(b, "globex")
	resp, body := br.get(cb.String(), acceptJSON)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	require.Equal(t, "application/json; charset=utf-8", resp.Header.Get("Content-Type"))
	var got struct {
		Token     string `json:"token"`
		ExpiresAt string `json:"expiresAt"`
	}
	require.NoError(t, json.Unmarshal(body, &got))
	require.Equal(t, "tp_sess_ada-globex", got.Token)
	require.Equal(t, b.clock.now().Add(24*time.Hour).Format(time.RFC3339), got.ExpiresAt)
	require.Equal(t, b.idp["globex"].Issuer(), b.sessions.calls()[0].Issuer)
}

// TestCallbackStateRejected covers callbacks that do not belong to a log-in
// this browser started: none reaches the IdP's token endpoint or Sessions.
func TestCallbackStateRejected(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// callback returns the callback URL to call, after any change to the
		// browser's cookies or the handler's clock.
		callback func(t *testing.T, b bundle, br *browser) string
	}{
		{"wrong state", func(t *testing.T, b bundle, br *browser) string {
			cb := br.toCallback(b, "acme")
			q := cb.Query()
			q.Set("state", strings.Repeat("A", 43))
			cb.RawQuery = q.Encode()
			return cb.String()
		}},
		{"missing state", func(t *testing.T, b bundle, br *browser) string {
			cb := br.toCallback(b, "acme")
			q := cb.Query()
			q.Del("state")
			cb.RawQuery = q.Encode()
			return cb.String()
		}},
		{"no state cookie", func(t *testing.T, b bundle, br *browser) string {
			cb := br.toCallback(b, "acme")
			br.jar, _ = cookiejar.New(nil)
			br.hc.Jar = br.jar
			return cb.String()
		}},
		{"state cookie expired", func(t *testing.T, b bundle, br *browser) string {
			cb := br.toCallback(b, "acme")
			b.clock.advance(oidc.DefaultStateTTL)
			return cb.String()
		}},
		{"tampered state cookie", func(t *testing.T, b bundle, br *browser) string {
			cb := br.toCallback(b, "acme")
			u, _ := url.Parse(b.srv.URL + "/auth/oidc/acme/callback")
			c := br.jar.Cookies(u)[0]
			raw := []byte(c.Value)
			if i := len(raw) / 2; raw[i] == 'A' {
				raw[i] = 'B'
			} else {
				raw[i] = 'A'
			}
			c.Value = string(raw)
			c.Path = "/auth/oidc/acme/callback"
			br.jar.SetCookies(u, []*http.Cookie{c})
			return cb.String()
		}},
		{"state of another provider", func(t *testing.T, b bundle, br *browser) string {
			cb := br.toCallback(b, "acme")
			// The globex callback with acme's code and state: acme's cookie is
			// neither sent there nor would it open for globex.
			br.toCallback(b, "globex")
			return strings.Replace(cb.String(), "/acme/", "/globex/", 1)
		}},
		{"newer log-in replaced the cookie", func(t *testing.T, b bundle, br *browser) string {
			first := br.toCallback(b, "acme")
			br.toCallback(b, "acme")
			return first.String()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, options{})
			br := newBrowser(t)
			target := tt.callback(t, b, br)
			resp, body := br.get(target, acceptJSON)
			require.Equal(t, http.StatusUnauthorized, resp.StatusCode, string(body))
			e := decodeError(t, body)
			require.Equal(t, "UNAUTHENTICATED", e.Error.Code)
			require.Equal(t, "log-in attempt is unknown or has expired; start again", e.Error.Message)
			require.Zero(t, b.idp["acme"].TokenRequests()+b.idp["globex"].TokenRequests())
			require.Empty(t, b.sessions.calls())
		})
	}
}

func TestCallbackErrorRedirectsToFrontend(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	br := newBrowser(t)
	cb := br.toCallback(b, "acme")
	q := cb.Query()
	q.Set("state", "forged")
	cb.RawQuery = q.Encode()
	resp, _ := br.get(cb.String(), nil)
	v := fragment(t, resp)
	require.Equal(t, "UNAUTHENTICATED", v.Get("error"))
	require.Equal(t, "log-in attempt is unknown or has expired; start again", v.Get("error_description"))
	require.Empty(t, v.Get("token"))
}

// TestStolenCodeRejectedByPKCE plays a code injection: an attacker who got
// hold of a victim's authorization code replays it in their own browser,
// with their own valid state. The handler then redeems it with the
// attacker's verifier, and the IdP refuses it.
func TestStolenCodeRejectedByPKCE(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	victim := newBrowser(t).toCallback(b, "acme")

	attacker := newBrowser(t)
	own := attacker.toCallback(b, "acme")
	q := own.Query()
	q.Set("code", victim.Query().Get("code"))
	own.RawQuery = q.Encode()

	resp, body := attacker.get(own.String(), acceptJSON)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, string(body))
	e := decodeError(t, body)
	require.Equal(t, "UNAUTHENTICATED", e.Error.Code)
	require.Equal(t, "the identity provider refused the log-in", e.Error.Message)
	require.Equal(t, 1, b.idp["acme"].TokenRequests(), "one redemption, no auth-style probing")
	require.Empty(t, b.sessions.calls())
	require.NotContains(t, string(body), "invalid_grant", "provider errors are not passed on")
	require.Contains(t, b.logs.String(), "code_verifier does not match", "the cause is logged")
}

func TestCodeExpiredAtIdP(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	br := newBrowser(t)
	cb := br.toCallback(b, "acme")
	b.idpClock.advance(oidctest.CodeTTL)
	resp, body := br.get(cb.String(), acceptJSON)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, string(body))
	require.Equal(t, "the identity provider refused the log-in", decodeError(t, body).Error.Message)
	require.Empty(t, b.sessions.calls())
}

func TestReplayedCallbackRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	br := newBrowser(t)
	cb := br.toCallback(b, "acme")
	u, err := url.Parse(b.srv.URL + "/auth/oidc/acme/callback")
	require.NoError(t, err)
	saved := br.jar.Cookies(u)[0]
	saved.Path = u.Path

	resp, _ := br.get(cb.String(), acceptJSON)
	require.Equal(t, http.StatusOK, resp.StatusCode)

	// Replayed with the cookie restored, the state matches but the IdP
	// has already redeemed the code.
	br.jar.SetCookies(u, []*http.Cookie{saved})
	resp, body := br.get(cb.String(), acceptJSON)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, string(body))
	require.Equal(t, "UNAUTHENTICATED", decodeError(t, body).Error.Code)
	require.Len(t, b.sessions.calls(), 1)
}

// TestIDTokenRejected has the IdP sign tokens that are valid JWTs but wrong
// for this log-in.
func TestIDTokenRejected(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		hook func(c map[string]any)
	}{
		{"bad nonce", func(c map[string]any) { c["nonce"] = "not-the-one-we-sent-not-the-one-we-sent-xx" }},
		{"no nonce", func(c map[string]any) { delete(c, "nonce") }},
		{"expired", func(c map[string]any) { c["exp"] = c["iat"].(int64) - 1 }},
		{"other audience", func(c map[string]any) { c["aud"] = "someone-else" }},
		{"several audiences, azp someone else", func(c map[string]any) {
			c["aud"] = []string{"tp-acme", "someone-else"}
			c["azp"] = "someone-else"
		}},
		{"several audiences, no azp", func(c map[string]any) { c["aud"] = []string{"tp-acme", "someone-else"} }},
		{"other issuer", func(c map[string]any) { c["iss"] = "https://evil.example" }},
		{"wrong at_hash", func(c map[string]any) { c["at_hash"] = "AAAAAAAAAAAAAAAAAAAAAA" }},
		{"no subject", func(c map[string]any) { c["sub"] = "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, options{})
			b.idp["acme"].SetClaimsHook(tt.hook)
			br := newBrowser(t)
			resp, body := br.get(br.toCallback(b, "acme").String(), acceptJSON)
			require.Equal(t, http.StatusUnauthorized, resp.StatusCode, string(body))
			e := decodeError(t, body)
			require.Equal(t, "UNAUTHENTICATED", e.Error.Code)
			require.Equal(t, "the identity provider's token is not valid", e.Error.Message)
			require.Empty(t, b.sessions.calls())
		})
	}
}

func TestIDTokenAccepted(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		hook func(c map[string]any)
	}{
		{"several audiences with azp of this client", func(c map[string]any) {
			c["aud"] = []string{"tp-acme", "someone-else"}
			c["azp"] = "tp-acme"
		}},
		{"no at_hash", func(c map[string]any) { delete(c, "at_hash") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, options{})
			b.idp["acme"].SetClaimsHook(tt.hook)
			br := newBrowser(t)
			resp, body := br.get(br.toCallback(b, "acme").String(), acceptJSON)
			require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
			require.Len(t, b.sessions.calls(), 1)
		})
	}
}

// TestExpiredTokenBySkew: the IdP's clock is behind the handler's by more
// than a token's lifetime, so the token it issues is already expired when
// the handler verifies it.
func TestExpiredTokenBySkew(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	b.clock.advance(oidctest.TokenTTL + time.Second)
	br := newBrowser(t)
	resp, body := br.get(br.toCallback(b, "acme").String(), acceptJSON)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, string(body))
	require.Equal(t, "the identity provider's token is not valid", decodeError(t, body).Error.Message)
	require.Contains(t, b.logs.String(), "token is expired")
	require.Empty(t, b.sessions.calls())
}

// TestEmailVerification checks that the identity handed to Sessions says
// whether the IdP verified the email, since only a verified email may link
// an existing user, and that providers limited to email domains admit only
// verified emails of those domains.
func TestEmailVerification(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		domains      []string
		identity     oidctest.Identity
		hook         func(c map[string]any)
		wantStatus   int
		wantCode     string
		wantVerified bool
	}{
		{name: "verified", identity: oidctest.Identity{Subject: "s", Email: "ada@acme.example", EmailVerified: true},
			wantStatus: http.StatusOK, wantVerified: true},
		{name: "unverified is passed as unverified", identity: oidctest.Identity{Subject: "s", Email: "ada@acme.example"},
			wantStatus: http.StatusOK, wantVerified: false},
		{name: "string true", identity: oidctest.Identity{Subject: "s", Email: "ada@acme.example"},
			hook: func(c map[string]any) { c["email_verified"] = "true" }, wantStatus: http.StatusOK, wantVerified: true},
		{name: "string false", identity: oidctest.Identity{Subject: "s", Email: "ada@acme.example"},
			hook: func(c map[string]any) { c["email_verified"] = "false" }, wantStatus: http.StatusOK, wantVerified: false},
		{name: "claim missing", identity: oidctest.Identity{Subject: "s", Email: "ada@acme.example"},
			hook: func(c map[string]any) { delete(c, "email_verified") }, wantStatus: http.StatusOK, wantVerified: false},
		{name: "verified without email", identity: oidctest.Identity{Subject: "s", EmailVerified: true},
			wantStatus: http.StatusOK, wantVerified: false},
		{name: "allowed domain, any case", domains: []string{"acme.example"},
			identity:   oidctest.Identity{Subject: "s", Email: "Ada@ACME.example", EmailVerified: true},
			wantStatus: http.StatusOK, wantVerified: true},
		{name: "allowed domain but unverified", domains: []string{"acme.example"},
			identity:   oidctest.Identity{Subject: "s", Email: "ada@acme.example"},
			wantStatus: http.StatusForbidden, wantCode: "FORBIDDEN"},
		{name: "other domain", domains: []string{"acme.example"},
			identity:   oidctest.Identity{Subject: "s", Email: "ada@evil.example", EmailVerified: true},
			wantStatus: http.StatusForbidden, wantCode: "FORBIDDEN"},
		{name: "subdomain is not the domain", domains: []string{"acme.example"},
			identity:   oidctest.Identity{Subject: "s", Email: "ada@x.acme.example", EmailVerified: true},
			wantStatus: http.StatusForbidden, wantCode: "FORBIDDEN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, options{domains: tt.domains})
			b.idp["acme"].SetIdentity(tt.identity)
			b.idp["acme"].SetClaimsHook(tt.hook)
			br := newBrowser(t)
			resp, body := br.get(br.toCallback(b, "acme").String(), acceptJSON)
			require.Equal(t, tt.wantStatus, resp.StatusCode, string(body))
			if tt.wantCode != "" {
				require.Equal(t, tt.wantCode, decodeError(t, body).Error.Code)
				require.Empty(t, b.sessions.calls())
				return
			}
			calls := b.sessions.calls()
			require.Len(t, calls, 1)
			require.Equal(t, tt.wantVerified, calls[0].EmailVerified)
			require.Equal(t, tt.identity.Email, calls[0].Email)
		})
	}
}

func TestUnknownProvider(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	br := newBrowser(t)
	for _, path := range []string{
		"/auth/oidc/initech/login",
		"/auth/oidc/initech/callback?code=x&state=y",
		"/auth/oidc/ACME/login",
		"/auth/oidc/acme/other",
	} {
		for _, h := range []http.Header{nil, acceptJSON} {
			resp, body := br.get(b.srv.URL+path, h)
			require.Equal(t, http.StatusNotFound, resp.StatusCode, path)
			require.Equal(t, "NOT_FOUND", decodeError(t, body).Error.Code, path)
		}
	}
	require.Zero(t, b.idp["acme"].DiscoveryRequests()+b.idp["globex"].DiscoveryRequests())
}

func TestIdPErrorOnCallback(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	b.idp["acme"].SignOut()
	br := newBrowser(t)
	cb := br.toCallback(b, "acme")
	require.Equal(t, "login_required", cb.Query().Get("error"))
	resp, _ := br.get(cb.String(), nil)
	v := fragment(t, resp)
	require.Equal(t, "UNAUTHENTICATED", v.Get("error"))
	require.Equal(t, "the identity provider did not complete the log-in", v.Get("error_description"))
	require.Zero(t, b.idp["acme"].TokenRequests())
	require.Empty(t, b.sessions.calls())
}

func TestDiscoveryIsLazyAndRetried(t *testing.T) {
	t.Parallel()
	b := setup(t, options{discoveryDown: true})
	idp := b.idp["acme"]
	require.Zero(t, idp.DiscoveryRequests(), "NewHandler contacts no provider")
	br := newBrowser(t)
	login := b.srv.URL + "/auth/oidc/acme/login"

	resp, body := br.get(login, acceptJSON)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	e := decodeError(t, body)
	require.Equal(t, "INTERNAL", e.Error.Code)
	require.Equal(t, "the identity provider is unavailable; try again later", e.Error.Message)
	require.Equal(t, 1, idp.DiscoveryRequests())
	require.Empty(t, resp.Cookies())

	// Within the back-off, requests fail without asking the provider again;
	// a browser is sent to the frontend with the error.
	idp.SetDiscoveryDown(false)
	resp, _ = br.get(login, nil)
	require.Equal(t, "INTERNAL", fragment(t, resp).Get("error"))
	require.Equal(t, 1, idp.DiscoveryRequests())

	b.clock.advance(time.Second)
	resp, _ = br.get(login, nil)
	require.Equal(t, http.StatusFound, resp.StatusCode)
	require.Equal(t, 2, idp.DiscoveryRequests())

	// Once discovered, the provider is not asked again.
	resp, body = br.get(br.toCallback(b, "acme").String(), acceptJSON)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	require.Equal(t, 2, idp.DiscoveryRequests())
}

func TestDiscoveryBackoffGrows(t *testing.T) {
	t.Parallel()
	b := setup(t, options{discoveryDown: true})
	idp := b.idp["acme"]
	br := newBrowser(t)
	login := b.srv.URL + "/auth/oidc/acme/login"
	resp, _ := br.get(login, acceptJSON)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Equal(t, 1, idp.DiscoveryRequests())
	// The wait after each failure doubles, up to a minute.
	for i, wait := range []time.Duration{1, 2, 4, 8, 16, 32, 60, 60} {
		wait *= time.Second
		b.clock.advance(wait - time.Millisecond)
		br.get(login, acceptJSON)
		require.Equal(t, i+1, idp.DiscoveryRequests(), "%s after failure %d", wait-time.Millisecond, i+1)
		b.clock.advance(time.Millisecond)
		resp, _ := br.get(login, acceptJSON)
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
		require.Equal(t, i+2, idp.DiscoveryRequests(), "%s after failure %d", wait, i+1)
	}
}

func TestSessionsErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		err         error
		wantStatus  int
		wantCode    string
		wantMessage string
	}{
		{"disabled user", errcode.New(errcode.Forbidden, "this account is disabled"), http.StatusForbidden, "FORBIDDEN", "this account is disabled"},
		{"rate limited", fmtWrap(errcode.New(errcode.RateLimited, "too many log-ins; try again later")), http.StatusTooManyRequests, "RATE_LIMITED", "too many log-ins; try again later"},
		{"email taken", errcode.New(errcode.Conflict, "an account with this email exists; log in and link the provider"), http.StatusConflict, "CONFLICT", "an account with this email exists; log in and link the provider"},
		{"no email from the provider", errcode.Invalid("email", "is required"), http.StatusBadRequest, "BAD_USER_INPUT", "email: is required"},
		{"internal", errors.New(`inserting session: ERROR: relation "sessions" does not exist (SQLSTATE 42P01)`), http.StatusInternalServerError, "INTERNAL", "internal error"},
		{"internal code", errcode.New(errcode.Internal, "pool closed"), http.StatusInternalServerError, "INTERNAL", "internal error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, options{})
			b.sessions.err = tt.err
			br := newBrowser(t)
			resp, body := br.get(br.toCallback(b, "acme").String(), acceptJSON)
			require.Equal(t, tt.wantStatus, resp.StatusCode)
			e := decodeError(t, body)
			require.Equal(t, tt.wantCode, e.Error.Code)
			require.Equal(t, tt.wantMessage, e.Error.Message)
			require.NotContains(t, string(body), "SQLSTATE")
			require.Len(t, b.sessions.calls(), 1)
		})
	}
}

func fmtWrap(err error) error { return errors.Join(errors.New("logging in"), err) }

func TestNewHandlerValidates(t *testing.T) {
	t.Parallel()
	good := oidc.Config{
		FrontendURL: "https://console.example.com/login",
		StateKey:    bytes.Repeat([]byte{1}, 32),
		Providers: []oidc.ProviderConfig{{
			Name: "acme", IssuerURL: "https://idp.acme.example", ClientID: "c",
			RedirectURL: "https://api.example.com/auth/oidc/acme/callback",
		}},
	}
	log := slog.New(slog.DiscardHandler)
	clk := func() time.Time { return time.Unix(0, 0) }
	s := oidc.SessionsFunc(func(context.Context, tenancy.OIDCIdentity) (oidc.Session, error) { return oidc.Session{}, nil })

	_, err := oidc.NewHandler(good, s, log, clk)
	require.NoError(t, err)
	_, err = oidc.NewHandler(good, nil, log, clk)
	require.ErrorContains(t, err, "sessions")
	_, err = oidc.NewHandler(good, s, nil, clk)
	require.ErrorContains(t, err, "logger")
	_, err = oidc.NewHandler(good, s, log, nil)
	require.ErrorContains(t, err, "clock")
	bad := good
	bad.StateKey = []byte("short")
	_, err = oidc.NewHandler(bad, s, log, clk)
	require.ErrorContains(t, err, "state key")
}
