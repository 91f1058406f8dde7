package tenancy

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Service is the identity and tenancy API used by the GraphQL resolvers,
// the OIDC handler, the seed and the CLI. Every mutation reads the acting
// Actor from ctx (WithActor), checks the business rules, and writes its
// change, an audit_log row and, where Kubernetes must follow, an outbox row
// in one transaction.
//
// Whether an actor may see or touch an object at all is decided by Casbin
// in the graph layer before a Service method runs; the Service checks the
// rules that depend on the data (last owner, owner-only grants, member
// limits) and never returns rows of another tenant through the
// actor-scoped lists (MyOrgs, MyNamespaces, APITokens).
type Service struct {
	store Store
	cfg   Config
	log   *slog.Logger
	now   func() time.Time
	// dummyHash is verified against when no user matches a log-in, so
	// that the answer takes as long either way.
	dummyHash string
	// tokens remembers authenticated tokens; nil when off.
	tokens *TokenCache
}

// New returns a Service over store. cfg is validated; log and clock
// default to a discarding logger and time.Now in UTC.
func New(store Store, cfg Config, log *slog.Logger, clock func() time.Time) (*Service, error) {
	if store == nil {
		return nil, errors.New("tenancy: nil store")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if clock == nil {
		clock = func() time.Time { return time.Now().UTC() }
	}
	dummy, err := hashPassword(cfg.Argon2, "no such user: timing decoy")
	if err != nil {
		return nil, fmt.Errorf("tenancy: %w", err)
	}
	tokens := newTokenCache(cfg.TokenCacheTTL, cfg.TokenCacheSize)
	if tokens != nil {
		store = forgetful{Store: store, tokens: tokens}
	}
	return &Service{
		store: store, cfg: cfg, log: log, dummyHash: dummy, tokens: tokens,
		now: func() time.Time { return clock().UTC() },
	}, nil
}

// TokenCache returns the cache of authenticated tokens, for the change
// feed that keeps it current; nil when the cache is off.
func (s *Service) TokenCache() *TokenCache { return s.tokens }

// Config returns the validated configuration.
func (s *Service) Config() Config { return s.cfg }
