package oidc

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Discovery is retried lazily: after a failure, the next request that needs
// the provider tries again once the back-off has passed, doubling from
// minRetry up to maxRetry. Requests in between fail at once.
const (
	minRetry         = time.Second
	maxRetry         = time.Minute
	discoveryTimeout = 10 * time.Second
)

// provider is one configured identity provider and, once discovery has
// succeeded, what it learnt.
type provider struct {
	cfg     ProviderConfig
	cookie  stateCookie
	client  *http.Client
	now     func() time.Time
	domains []string

	ready atomic.Pointer[discovered]

	// sem is held while discovering, and guards the fields below it.
	sem     chan struct{}
	lastErr error
	nextTry time.Time
	backoff time.Duration
}

// discovered is a provider's endpoints and its ID token verifier.
type discovered struct {
	oauth    *oauth2.Config
	verifier *gooidc.IDTokenVerifier
}

func newProvider(cfg ProviderConfig, client *http.Client, now func() time.Time) (*provider, error) {
	u, err := url.Parse(cfg.RedirectURL)
	if err != nil {
		return nil, fmt.Errorf("provider %s: redirect URL: %w", cfg.Name, err)
	}
	return &provider{
		cfg:     cfg,
		cookie:  newStateCookie(cfg.Name, u.Path, u.Scheme == "https"),
		client:  client,
		now:     now,
		domains: cfg.AllowedEmailDomains,
		sem:     make(chan struct{}, 1),
	}, nil
}

// get returns the discovered provider, running discovery when it has not
// succeeded yet and the back-off allows. Concurrent callers wait for one
// discovery rather than each starting their own.
func (p *provider) get(ctx context.Context) (*discovered, error) {
	if d := p.ready.Load(); d != nil {
		return d, nil
	}
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for discovery of %s: %w", p.cfg.Name, ctx.Err())
	}
	defer func() { <-p.sem }()
	if d := p.ready.Load(); d != nil {
		return d, nil
	}
	now := p.now()
	if p.lastErr != nil && now.Before(p.nextTry) {
		return nil, p.lastErr
	}
	d, err := p.discover(ctx)
	if err != nil && ctx.Err() != nil {
		// The caller went away; that says nothing about the provider.
		return nil, fmt.Errorf("discovery of %s: %w", p.cfg.Name, err)
	}
	if err != nil {
		p.backoff = min(max(2*p.backoff, minRetry), maxRetry)
		p.nextTry = now.Add(p.backoff)
		p.lastErr = fmt.Errorf("discovery of %s (next try after %s): %w", p.cfg.Name, p.nextTry.Format(time.RFC3339), err)
		return nil, p.lastErr
	}
	p.ready.Store(d)
	p.lastErr, p.backoff = nil, 0
	return d, nil
}

func (p *provider) discover(ctx context.Context) (*discovered, error) {
	ctx, cancel := context.WithTimeout(ctx, discoveryTimeout)
	defer cancel()
	// The client travels in the context: go-oidc keeps it for fetching the
	// JWKS later, and oauth2 uses it for the token endpoint.
	op, err := gooidc.NewProvider(gooidc.ClientContext(ctx, p.client), p.cfg.IssuerURL)
	if err != nil {
		return nil, err
	}
	var meta struct {
		AuthMethods      []string `json:"token_endpoint_auth_methods_supported"`
		ChallengeMethods []string `json:"code_challenge_methods_supported"`
	}
	if err := op.Claims(&meta); err != nil {
		return nil, fmt.Errorf("reading discovery metadata: %w", err)
	}
	// Providers that list their PKCE methods must offer S256; those that
	// list none may still support it (RFC 8414 makes the field optional).
	if len(meta.ChallengeMethods) > 0 && !slices.Contains(meta.ChallengeMethods, "S256") {
		return nil, fmt.Errorf("provider does not support PKCE with S256 (supports %s)", strings.Join(meta.ChallengeMethods, ", "))
	}
	endpoint := op.Endpoint()
	endpoint.AuthStyle = authStyle(p.cfg.ClientSecret, meta.AuthMethods)
	return &discovered{
		oauth: &oauth2.Config{
			ClientID:     p.cfg.ClientID,
			ClientSecret: p.cfg.ClientSecret,
			Endpoint:     endpoint,
			RedirectURL:  p.cfg.RedirectURL,
			Scopes:       p.cfg.Scopes,
		},
		verifier: op.Verifier(&gooidc.Config{ClientID: p.cfg.ClientID, Now: p.now}),
	}, nil
}

// authStyle picks how the client authenticates at the token endpoint from
// what discovery advertises, so that a code is never sent twice to probe for
// it. A provider that lists nothing supports client_secret_basic (OpenID
// Connect Discovery 1.0, section 3).
func authStyle(secret string, methods []string) oauth2.AuthStyle {
	switch {
	case secret == "":
		return oauth2.AuthStyleInParams
	case len(methods) == 0 || slices.Contains(methods, "client_secret_basic"):
		return oauth2.AuthStyleInHeader
	case slices.Contains(methods, "client_secret_post"):
		return oauth2.AuthStyleInParams
	default:
		return oauth2.AuthStyleAutoDetect
	}
}
