package tenancystore

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgxlisten"

	"github.com/tenantplane/tenantplane/internal/pgstore"
	"github.com/tenantplane/tenantplane/tenancy"
)

// AuthChannel is the channel migration 015's triggers notify, with the id
// of the user whose tokens a replica must forget.
const AuthChannel = "tenantplane_auth"

// TokenFeed keeps a tenancy.TokenCache current: it listens on AuthChannel
// and makes the cache forget each user named there; the cache serves only
// while the feed listens.
type TokenFeed struct {
	pool  *pgxpool.Pool
	cache *tenancy.TokenCache
	log   *slog.Logger
	delay time.Duration
	once  sync.Once
	ready chan struct{}
}

// NewTokenFeed returns a feed for cache (a nil cache makes Run return at
// once) over a connection taken out of pool. It listens again delay after
// its connection is lost (one second when zero); log may be nil.
func NewTokenFeed(pool *pgxpool.Pool, cache *tenancy.TokenCache, log *slog.Logger, delay time.Duration) *TokenFeed {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if delay <= 0 {
		delay = time.Second
	}
	return &TokenFeed{pool: pool, cache: cache, log: log, delay: delay, ready: make(chan struct{})}
}

// Ready is closed once the feed listens, and the cache serves, for the
// first time.
func (f *TokenFeed) Ready() <-chan struct{} { return f.ready }

// Run listens until ctx is done; the cache stops serving when it returns.
// It returns nil when ctx is canceled.
func (f *TokenFeed) Run(ctx context.Context) error {
	if f.cache == nil {
		return nil
	}
	defer f.cache.Lost()
	return pgstore.Listen(ctx, f.pool, map[string]pgxlisten.Handler{AuthChannel: f},
		f.delay, f.log.With("channel", AuthChannel), f.cache.Lost)
}

// HandleBacklog lets the cache serve once the feed listens.
func (f *TokenFeed) HandleBacklog(context.Context, string, *pgx.Conn) error {
	f.cache.Listening()
	f.once.Do(func() { close(f.ready) })
	return nil
}

// HandleNotification forgets the user named; an unreadable payload
// forgets everyone.
func (f *TokenFeed) HandleNotification(_ context.Context, n *pgconn.Notification, _ *pgx.Conn) error {
	if id, err := strconv.ParseInt(n.Payload, 10, 64); err == nil && id > 0 {
		f.cache.ForgetUser(id)
		return nil
	}
	f.log.Warn("auth notification unreadable; forgetting every token", "payload", n.Payload)
	f.cache.ForgetAll()
	return nil
}
