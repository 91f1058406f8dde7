package oidctest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Paths served by the provider, relative to its issuer URL.
const (
	DiscoveryPath = "/.well-known/openid-configuration"
	JWKSPath      = "/jwks"
	AuthorizePath = "/authorize"
	TokenPath     = "/token"
)

// CodeTTL is how long an authorization code may be redeemed after it was
// issued, and TokenTTL how long an ID token is valid.
const (
	CodeTTL  = time.Minute
	TokenTTL = time.Hour
)

// Identity is the person signed in at the provider: what the ID token it
// issues will say.
type Identity struct {
	Subject       string
	Email         string
	EmailVerified bool
	Name          string
}

// Client is a relying party registered with the provider. An empty Secret
// makes it a public client, which authenticates with its client_id alone.
type Client struct {
	ID           string
	Secret       string
	RedirectURIs []string
}

// Server is a running in-process OpenID Connect provider. Its methods are
// safe for concurrent use.
type Server struct {
	srv *httptest.Server
	now func() time.Time
	key *rsa.PrivateKey
	kid string

	mu            sync.Mutex
	clients       map[string]Client
	identity      *Identity
	claimsHook    func(map[string]any)
	grants        map[string]*grant
	discoveryDown bool
	discoveries   int
	tokenRequests int
}

// grant is an issued authorization code and what it was bound to.
type grant struct {
	clientID    string
	redirectURI string
	challenge   string
	nonce       string
	identity    Identity
	expires     time.Time
	used        bool
}

// New starts a provider on a loopback port, with a fresh RSA signing key, and
// stops it when the test ends. now is the provider's clock: it decides code
// expiry and the iat and exp of ID tokens.
func New(t testing.TB, now func() time.Time) *Server {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("oidctest: generating signing key: %v", err)
	}
	s := &Server{
		now:     now,
		key:     key,
		kid:     randomString(8),
		clients: map[string]Client{},
		grants:  map[string]*grant{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+DiscoveryPath, s.discovery)
	mux.HandleFunc("GET "+JWKSPath, s.jwks)
	mux.HandleFunc("GET "+AuthorizePath, s.authorize)
	mux.HandleFunc("POST "+TokenPath, s.token)
	s.srv = httptest.NewServer(mux)
	t.Cleanup(s.srv.Close)
	return s
}

// Issuer is the provider's issuer URL, the one to configure in a relying
// party and the iss of every ID token it signs.
func (s *Server) Issuer() string { return s.srv.URL }

// AddClient registers (or replaces) a relying party.
func (s *Server) AddClient(c Client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clients[c.ID] = c
}

// SetIdentity sets who is signed in at the provider: the authorization
// endpoint issues codes for this identity. Until it is called, the
// authorization endpoint answers with error=login_required.
func (s *Server) SetIdentity(id Identity) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.identity = &id
}

// SignOut ends the session at the provider: the authorization endpoint
// answers with error=login_required until SetIdentity is called again.
func (s *Server) SignOut() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.identity = nil
}

// SetClaimsHook installs a function that may change the claims of every ID
// token just before it is signed, so that a test can have the provider issue
// a token that is signed correctly but says something wrong (another nonce,
// audience or issuer). nil removes the hook.
func (s *Server) SetClaimsHook(hook func(claims map[string]any)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.claimsHook = hook
}

// SetDiscoveryDown makes the discovery document answer 503 while down is
// true, as a provider does during an outage.
func (s *Server) SetDiscoveryDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.discoveryDown = down
}

// DiscoveryRequests is how many requests the discovery document has
// received, whether it was down or not.
func (s *Server) DiscoveryRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.discoveries
}

// TokenRequests is how many requests the token endpoint has received.
func (s *Server) TokenRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokenRequests
}

func (s *Server) discovery(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	s.discoveries++
	down := s.discoveryDown
	s.mu.Unlock()
	if down {
		http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
		return
	}
	iss := s.Issuer()
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                iss,
		"authorization_endpoint":                iss + AuthorizePath,
		"token_endpoint":                        iss + TokenPath,
		"jwks_uri":                              iss + JWKSPath,
		"response_types_supported":              []string{"code"},
		"grant_types_supported":                 []string{"authorization_code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{string(jose.RS256)},
		"scopes_supported":                      []string{"openid", "email", "profile"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post", "none"},
		"code_challenge_methods_supported":      []string{"S256"},
		"claims_supported":                      []string{"iss", "sub", "aud", "exp", "iat", "nonce", "email", "email_verified", "name"},
	})
}

func (s *Server) jwks(w http.ResponseWriter, _ *http.Request) {
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key:       s.key.Public(),
		KeyID:     s.kid,
		Algorithm: string(jose.RS256),
		Use:       "sig",
	}}}
	writeJSON(w, http.StatusOK, set)
}

// authorize implements the authorization endpoint (RFC 6749 4.1.1, RFC 7636
// 4.3, OpenID Connect Core 3.1.2). Errors about the client or its redirect
// URI are shown to the user agent, never redirected (RFC 6749 4.1.2.1).
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s.mu.Lock()
	defer s.mu.Unlock()

	client, ok := s.clients[q.Get("client_id")]
	if !ok {
		http.Error(w, "unknown client_id", http.StatusBadRequest)
		return
	}
	redirectURI := q.Get("redirect_uri")
	if !slices.Contains(client.RedirectURIs, redirectURI) {
		http.Error(w, "redirect_uri not registered for this client", http.StatusBadRequest)
		return
	}
	fail := func(code, desc string) {
		v := url.Values{"error": {code}, "error_description": {desc}}
		if st := q.Get("state"); st != "" {
			v.Set("state", st)
		}
		redirect(w, r, redirectURI, v)
	}
	if q.Get("response_type") != "code" {
		fail("unsupported_response_type", "only the authorization code flow is supported")
		return
	}
	if !slices.Contains(strings.Fields(q.Get("scope")), "openid") {
		fail("invalid_scope", "scope must include openid")
		return
	}
	challenge := q.Get("code_challenge")
	if challenge == "" {
		fail("invalid_request", "code_challenge is required")
		return
	}
	if q.Get("code_challenge_method") != "S256" {
		fail("invalid_request", "code_challenge_method must be S256")
		return
	}
	if len(challenge) != 43 {
		fail("invalid_request", "code_challenge is not a base64url SHA-256 digest")
		return
	}
	if s.identity == nil {
		fail("login_required", "nobody is signed in")
		return
	}
	code := randomString(32)
	s.grants[code] = &grant{
		clientID:    client.ID,
		redirectURI: redirectURI,
		challenge:   challenge,
		nonce:       q.Get("nonce"),
		identity:    *s.identity,
		expires:     s.now().Add(CodeTTL),
	}
	v := url.Values{"code": {code}}
	if st := q.Get("state"); st != "" {
		v.Set("state", st)
	}
	redirect(w, r, redirectURI, v)
}

// token implements the token endpoint for the authorization_code grant
// (RFC 6749 4.1.3, RFC 7636 4.5 and 4.6, OpenID Connect Core 3.1.3).
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokenRequests++

	if err := r.ParseForm(); err != nil {
		tokenError(w, http.StatusBadRequest, "invalid_request", "malformed form")
		return
	}
	client, ok := s.authenticateClient(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Basic realm="oidctest"`)
		tokenError(w, http.StatusUnauthorized, "invalid_client", "client authentication failed")
		return
	}
	if r.PostForm.Get("grant_type") != "authorization_code" {
		tokenError(w, http.StatusBadRequest, "unsupported_grant_type", "only authorization_code is supported")
		return
	}
	code := r.PostForm.Get("code")
	g, ok := s.grants[code]
	if !ok || g.clientID != client.ID {
		tokenError(w, http.StatusBadRequest, "invalid_grant", "unknown authorization code")
		return
	}
	// A code is single-use: any redemption attempt by its client consumes it,
	// so that a wrong code_verifier cannot be retried.
	if g.used {
		tokenError(w, http.StatusBadRequest, "invalid_grant", "authorization code already used")
		return
	}
	g.used = true
	now := s.now()
	if !now.Before(g.expires) {
		tokenError(w, http.StatusBadRequest, "invalid_grant", "authorization code expired")
		return
	}
	if r.PostForm.Get("redirect_uri") != g.redirectURI {
		tokenError(w, http.StatusBadRequest, "invalid_grant", "redirect_uri does not match the authorization request")
		return
	}
	verifier := r.PostForm.Get("code_verifier")
	if !validVerifier(verifier) {
		tokenError(w, http.StatusBadRequest, "invalid_grant", "code_verifier missing or malformed")
		return
	}
	sum := sha256.Sum256([]byte(verifier))
	if subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(g.challenge)) != 1 {
		tokenError(w, http.StatusBadRequest, "invalid_grant", "code_verifier does not match code_challenge")
		return
	}

	accessToken := randomString(32)
	atHash := sha256.Sum256([]byte(accessToken))
	claims := map[string]any{
		"iss":            s.Issuer(),
		"sub":            g.identity.Subject,
		"aud":            client.ID,
		"iat":            now.Unix(),
		"auth_time":      now.Unix(),
		"exp":            now.Add(TokenTTL).Unix(),
		"at_hash":        base64.RawURLEncoding.EncodeToString(atHash[:16]),
		"email":          g.identity.Email,
		"email_verified": g.identity.EmailVerified,
		"name":           g.identity.Name,
	}
	if g.nonce != "" {
		claims["nonce"] = g.nonce
	}
	if s.claimsHook != nil {
		s.claimsHook(claims)
	}
	idToken, err := s.sign(claims)
	if err != nil {
		tokenError(w, http.StatusInternalServerError, "server_error", "signing id token")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": accessToken,
		"token_type":   "Bearer",
		"expires_in":   int(TokenTTL / time.Second),
		"id_token":     idToken,
	})
}

// authenticateClient checks client_secret_basic (credentials form-encoded
// before base64, RFC 6749 2.3.1), client_secret_post, or a public client's
// bare client_id. Presenting both methods at once is refused.
func (s *Server) authenticateClient(r *http.Request) (Client, bool) {
	id, secret, basic := r.BasicAuth()
	if basic {
		if r.PostForm.Has("client_secret") {
			return Client{}, false
		}
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return Client{}, false
		}
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	c, ok := s.clients[id]
	if !ok {
		return Client{}, false
	}
	if subtle.ConstantTimeCompare([]byte(secret), []byte(c.Secret)) != 1 {
		return Client{}, false
	}
	return c, true
}

func (s *Server) sign(claims map[string]any) (string, error) {
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.RS256, Key: s.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), s.kid),
	)
	if err != nil {
		return "", fmt.Errorf("creating signer: %w", err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("encoding claims: %w", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("signing: %w", err)
	}
	return jws.CompactSerialize()
}

// validVerifier reports whether v is a code_verifier as RFC 7636 4.1 defines
// it: 43 to 128 characters of [A-Za-z0-9-._~].
func validVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for _, c := range []byte(v) {
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9',
			c == '-', c == '.', c == '_', c == '~':
		default:
			return false
		}
	}
	return true
}

func redirect(w http.ResponseWriter, r *http.Request, target string, params url.Values) {
	u, err := url.Parse(target)
	if err != nil {
		http.Error(w, "bad redirect_uri", http.StatusBadRequest)
		return
	}
	q := u.Query()
	for k, vs := range params {
		q[k] = vs
	}
	u.RawQuery = q.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

func tokenError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never returns an error
	return base64.RawURLEncoding.EncodeToString(b)
}
