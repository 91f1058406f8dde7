package oidc

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/tenancy"
)

// Routes served by the handler; mount it at "/auth/oidc/" without
// stripping the prefix.
const (
	LoginRoute    = "GET /auth/oidc/{provider}/login"
	CallbackRoute = "GET /auth/oidc/{provider}/callback"
)

// handler serves the log-in and callback routes.
type handler struct {
	providers   map[string]*provider
	sessions    Sessions
	sealer      sealer
	stateTTL    time.Duration
	frontendURL string
	log         *slog.Logger
	now         func() time.Time
	mux         *http.ServeMux
}

// NewHandler validates cfg and returns the handler of the routes
// "GET /auth/oidc/{provider}/login" and "GET /auth/oidc/{provider}/callback",
// to be mounted at "/auth/oidc/" (the full path, not stripped). It contacts
// no provider: each one's discovery document is fetched on its first use and
// retried with back-off while it fails. now is the clock that judges state
// and ID token expiry.
func NewHandler(cfg Config, sessions Sessions, log *slog.Logger, now func() time.Time) (http.Handler, error) {
	if sessions == nil {
		return nil, errors.New("oidc handler: sessions is required")
	}
	if log == nil {
		return nil, errors.New("oidc handler: logger is required")
	}
	if now == nil {
		return nil, errors.New("oidc handler: clock is required")
	}
	cfg, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	s, err := newSealer(cfg.StateKey)
	if err != nil {
		return nil, fmt.Errorf("oidc handler: %w", err)
	}
	h := &handler{
		providers:   make(map[string]*provider, len(cfg.Providers)),
		sessions:    sessions,
		sealer:      s,
		stateTTL:    cfg.StateTTL,
		frontendURL: cfg.FrontendURL,
		log:         log,
		now:         func() time.Time { return now().UTC() },
		mux:         http.NewServeMux(),
	}
	for _, pc := range cfg.Providers {
		p, err := newProvider(pc, cfg.HTTPClient, h.now)
		if err != nil {
			return nil, fmt.Errorf("oidc handler: %w", err)
		}
		h.providers[pc.Name] = p
	}
	h.mux.HandleFunc(LoginRoute, h.login)
	h.mux.HandleFunc(CallbackRoute, h.callback)
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		h.fail(w, r, nil, notFound("no such route"))
	})
	return h, nil
}

// ServeHTTP marks every response uncacheable and keeps the callback URL,
// which carries the code, out of Referer headers.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	h.mux.ServeHTTP(w, r)
}

// login starts a log-in: it seals a fresh state, nonce and PKCE verifier in
// the provider's state cookie and redirects to the provider's authorization
// endpoint.
func (h *handler) login(w http.ResponseWriter, r *http.Request) {
	p, ok := h.providers[r.PathValue("provider")]
	if !ok {
		h.fail(w, r, nil, notFound("unknown identity provider"))
		return
	}
	d, err := p.get(r.Context())
	if err != nil {
		h.fail(w, r, p, unavailable(err))
		return
	}
	st := loginState{
		Provider: p.cfg.Name,
		Verifier: oauth2.GenerateVerifier(),
		Expires:  h.now().Add(h.stateTTL).Unix(),
	}
	if st.State, err = randomToken(32); err == nil {
		st.Nonce, err = randomToken(32)
	}
	if err != nil {
		h.fail(w, r, p, internal(err))
		return
	}
	sealed, err := h.sealer.seal(st)
	if err != nil {
		h.fail(w, r, p, internal(err))
		return
	}
	http.SetCookie(w, p.cookie.set(sealed, h.stateTTL))
	target := d.oauth.AuthCodeURL(st.State, oauth2.S256ChallengeOption(st.Verifier), gooidc.Nonce(st.Nonce))
	http.Redirect(w, r, target, http.StatusFound)
}

// callback completes a log-in and hands the session to the frontend.
func (h *handler) callback(w http.ResponseWriter, r *http.Request) {
	p, ok := h.providers[r.PathValue("provider")]
	if !ok {
		h.fail(w, r, nil, notFound("unknown identity provider"))
		return
	}
	id, f := h.verify(w, r, p)
	if f != nil {
		h.fail(w, r, p, f)
		return
	}
	if f := p.admit(id); f != nil {
		h.fail(w, r, p, f)
		return
	}
	sess, err := h.sessions.LogInOIDC(r.Context(), id)
	if err != nil {
		if e, ok := errcode.As(err); ok && e.Code != errcode.Internal {
			h.fail(w, r, p, &failure{status: statusOf(e.Code), code: e.Code, message: e.Error(), cause: err})
		} else {
			h.fail(w, r, p, internal(fmt.Errorf("logging in %s subject: %w", p.cfg.Name, err)))
		}
		return
	}
	h.log.InfoContext(r.Context(), "oidc log-in", "provider", p.cfg.Name, "issuer", id.Issuer, "subject", id.Subject)
	if wantsJSON(r) {
		writeJSON(w, http.StatusOK, map[string]any{
			"token":     sess.Token,
			"expiresAt": sess.ExpiresAt.UTC().Format(time.RFC3339),
		})
		return
	}
	h.toFrontend(w, r, url.Values{
		"token":      {sess.Token},
		"expires_at": {sess.ExpiresAt.UTC().Format(time.RFC3339)},
	})
}

// verify checks the callback request against the state cookie, redeems the
// code with the PKCE verifier and verifies the ID token, returning the
// identity it asserts.
func (h *handler) verify(w http.ResponseWriter, r *http.Request, p *provider) (tenancy.OIDCIdentity, *failure) {
	q := r.URL.Query()
	st, err := p.cookie.take(w, r, h.sealer, p.cfg.Name, q.Get("state"), h.now())
	if err != nil {
		return tenancy.OIDCIdentity{}, unauthenticated("log-in attempt is unknown or has expired; start again", err)
	}
	if e := q.Get("error"); e != "" {
		return tenancy.OIDCIdentity{}, unauthenticated("the identity provider did not complete the log-in",
			fmt.Errorf("provider answered error %.64q", e))
	}
	code := q.Get("code")
	if code == "" {
		return tenancy.OIDCIdentity{}, unauthenticated("the identity provider did not complete the log-in",
			errors.New("callback without code"))
	}
	d, err := p.get(r.Context())
	if err != nil {
		return tenancy.OIDCIdentity{}, unavailable(err)
	}
	ctx := gooidc.ClientContext(r.Context(), p.client)
	tok, err := d.oauth.Exchange(ctx, code, oauth2.VerifierOption(st.Verifier))
	if err != nil {
		if _, refused := errors.AsType[*oauth2.RetrieveError](err); refused {
			return tenancy.OIDCIdentity{}, unauthenticated("the identity provider refused the log-in", fmt.Errorf("redeeming code: %w", err))
		}
		return tenancy.OIDCIdentity{}, unavailable(fmt.Errorf("redeeming code: %w", err))
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return tenancy.OIDCIdentity{}, invalidToken(errors.New("token response has no id_token"))
	}
	idt, err := d.verifier.Verify(ctx, raw)
	if err != nil {
		return tenancy.OIDCIdentity{}, invalidToken(fmt.Errorf("verifying id token: %w", err))
	}
	return identityFrom(idt, tok.AccessToken, st.Nonce, p.cfg.ClientID)
}

// claims are the ID token claims read beyond those go-oidc checks.
type claims struct {
	AuthorizedParty string   `json:"azp"`
	Email           string   `json:"email"`
	EmailVerified   flexBool `json:"email_verified"`
	Name            string   `json:"name"`
}

// identityFrom checks what go-oidc leaves to its caller (nonce, authorized
// party, access token hash) and reads the identity claims.
func identityFrom(idt *gooidc.IDToken, accessToken, nonce, clientID string) (tenancy.OIDCIdentity, *failure) {
	if idt.Nonce == "" || subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1 {
		return tenancy.OIDCIdentity{}, invalidToken(errors.New("id token nonce does not match"))
	}
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(accessToken); err != nil {
			return tenancy.OIDCIdentity{}, invalidToken(fmt.Errorf("at_hash: %w", err))
		}
	}
	var c claims
	if err := idt.Claims(&c); err != nil {
		return tenancy.OIDCIdentity{}, invalidToken(fmt.Errorf("reading claims: %w", err))
	}
	// OpenID Connect Core 3.1.3.7: with several audiences, or an azp at all,
	// the token must have been issued to this client.
	if (len(idt.Audience) > 1 || c.AuthorizedParty != "") && c.AuthorizedParty != clientID {
		return tenancy.OIDCIdentity{}, invalidToken(fmt.Errorf("id token azp %q is not this client", c.AuthorizedParty))
	}
	if idt.Subject == "" {
		return tenancy.OIDCIdentity{}, invalidToken(errors.New("id token has no subject"))
	}
	return tenancy.OIDCIdentity{
		Issuer:        idt.Issuer,
		Subject:       idt.Subject,
		Email:         strings.TrimSpace(c.Email),
		EmailVerified: bool(c.EmailVerified) && strings.TrimSpace(c.Email) != "",
		Name:          strings.TrimSpace(c.Name),
	}, nil
}

// admit applies the provider's allowed email domains: when set, only a
// verified email in one of them may log in.
func (p *provider) admit(id tenancy.OIDCIdentity) *failure {
	if len(p.domains) == 0 {
		return nil
	}
	at := strings.LastIndexByte(id.Email, '@')
	if !id.EmailVerified || at < 0 {
		return &failure{status: http.StatusForbidden, code: errcode.Forbidden,
			message: "this identity provider requires a verified email address",
			cause:   errors.New("email missing or unverified")}
	}
	if !slices.Contains(p.domains, strings.ToLower(id.Email[at+1:])) {
		return &failure{status: http.StatusForbidden, code: errcode.Forbidden,
			message: "email domain not allowed for this identity provider",
			cause:   errors.New("email domain not allowed")}
	}
	return nil
}

// flexBool reads a JSON boolean, or the strings "true" and "false" that
// some providers send for email_verified.
type flexBool bool

// UnmarshalJSON accepts true, false, "true" and "false".
func (b *flexBool) UnmarshalJSON(data []byte) error {
	switch string(data) {
	case "true", `"true"`:
		*b = true
	case "false", `"false"`, "null":
		*b = false
	default:
		return fmt.Errorf("email_verified: not a boolean: %.32s", data)
	}
	return nil
}

// toFrontend redirects the browser to the frontend with values in the URL
// fragment.
func (h *handler) toFrontend(w http.ResponseWriter, r *http.Request, v url.Values) {
	http.Redirect(w, r, h.frontendURL+"#"+v.Encode(), http.StatusSeeOther)
}

// fail reports f to the client (JSON, or a redirect to the frontend for a
// browser) and logs its cause, which never reaches the client.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, p *provider, f *failure) {
	attrs := []any{"code", f.code, "path", r.URL.Path}
	if p != nil {
		attrs = append(attrs, "provider", p.cfg.Name)
	}
	if f.cause != nil {
		attrs = append(attrs, "err", f.cause)
	}
	level := slog.LevelInfo
	// A client that hung up is no server fault.
	if f.status >= 500 && r.Context().Err() == nil {
		level = slog.LevelError
	}
	h.log.Log(r.Context(), level, "oidc log-in refused", attrs...)
	// An unknown route or provider is not a log-in the frontend started.
	if p == nil || wantsJSON(r) {
		writeJSON(w, f.status, map[string]any{"error": map[string]string{
			"code": string(f.code), "message": f.message,
		}})
		return
	}
	h.toFrontend(w, r, url.Values{"error": {string(f.code)}, "error_description": {f.message}})
}

// wantsJSON reports whether the Accept header lists application/json.
func wantsJSON(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(v, ",") {
			mt, _, _ := strings.Cut(part, ";")
			if strings.EqualFold(strings.TrimSpace(mt), "application/json") {
				return true
			}
		}
	}
	return false
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// failure is an error answer: what the client sees (status, code, message)
// and the cause, which is only logged.
type failure struct {
	status  int
	code    errcode.Code
	message string
	cause   error
}

func notFound(msg string) *failure {
	return &failure{status: http.StatusNotFound, code: errcode.NotFound, message: msg}
}

func unauthenticated(msg string, cause error) *failure {
	return &failure{status: http.StatusUnauthorized, code: errcode.Unauthenticated, message: msg, cause: cause}
}

func invalidToken(cause error) *failure {
	return unauthenticated("the identity provider's token is not valid", cause)
}

func unavailable(cause error) *failure {
	return &failure{status: http.StatusServiceUnavailable, code: errcode.Internal,
		message: "the identity provider is unavailable; try again later", cause: cause}
}

func internal(cause error) *failure {
	return &failure{status: http.StatusInternalServerError, code: errcode.Internal, message: "internal error", cause: cause}
}

// statusOf maps an error code to its HTTP status.
func statusOf(c errcode.Code) int {
	switch c {
	case errcode.Unauthenticated:
		return http.StatusUnauthorized
	case errcode.Forbidden:
		return http.StatusForbidden
	case errcode.NotFound:
		return http.StatusNotFound
	case errcode.BadUserInput:
		return http.StatusBadRequest
	case errcode.Conflict:
		return http.StatusConflict
	case errcode.RateLimited:
		return http.StatusTooManyRequests
	default:
		return http.StatusInternalServerError
	}
}
