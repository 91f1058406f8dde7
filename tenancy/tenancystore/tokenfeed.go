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
//
// A connection the network dropped without a reset looks alive until TCP
// gives up, minutes later. So every Heartbeat the feed notifies its own
// channel, and when it has heard nothing (its own pings, others' or a
// change) for three heartbeats, the cache stops serving until the next
// notification arrives.
type TokenFeed struct {
	// Heartbeat is how often the feed pings its channel (2s); set it
	// before Run.
	Heartbeat time.Duration

	pool  *pgxpool.Pool
	cache *tenancy.TokenCache
	log   *slog.Logger
	delay time.Duration
	once  sync.Once
	ready chan struct{}

	mu        sync.Mutex
	listening bool      // between a backlog and a loss
	silent    bool      // listening, but nothing heard for too long
	heard     time.Time // the last backlog or notification
}

// pingPayload is what the heartbeat sends; it names no user.
const pingPayload = "ping"

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
	return &TokenFeed{Heartbeat: 2 * time.Second, pool: pool, cache: cache, log: log, delay: delay, ready: make(chan struct{})}
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
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go f.heartbeat(ctx)
	return pgstore.Listen(ctx, f.pool, map[string]pgxlisten.Handler{AuthChannel: f},
		f.delay, f.log.With("channel", AuthChannel), f.lost)
}

// lost stops the cache serving: the connection is gone, and changes go
// unheard until the feed listens again.
func (f *TokenFeed) lost() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listening, f.silent = false, false
	f.cache.Lost()
}

// heartbeat pings the channel every Heartbeat, and stops the cache serving
// while the feed, listening, has heard nothing for three of them.
func (f *TokenFeed) heartbeat(ctx context.Context) {
	t := time.NewTicker(f.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := f.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, AuthChannel, pingPayload); err != nil && ctx.Err() == nil {
			f.log.Debug("token feed ping", "err", err)
		}
		f.mu.Lock()
		if f.listening && !f.silent && time.Since(f.heard) > 3*f.Heartbeat {
			f.silent = true
			f.cache.Lost()
			f.log.Warn("token feed heard nothing; authenticating from the database until it does", "since", f.heard)
		}
		f.mu.Unlock()
	}
}

// HandleBacklog lets the cache serve once the feed listens.
func (f *TokenFeed) HandleBacklog(context.Context, string, *pgx.Conn) error {
	f.mu.Lock()
	f.listening, f.silent, f.heard = true, false, time.Now()
	f.cache.Listening()
	f.mu.Unlock()
	f.once.Do(func() { close(f.ready) })
	return nil
}

// HandleNotification forgets the user named; an unreadable payload
// forgets everyone.
func (f *TokenFeed) HandleNotification(_ context.Context, n *pgconn.Notification, _ *pgx.Conn) error {
	f.mu.Lock()
	f.heard = time.Now()
	if f.silent {
		// Heard again: whatever was sent meanwhile came before this, on
		// the same channel; serve afresh.
		f.silent = false
		f.cache.Listening()
		f.log.Info("token feed hears again")
	}
	f.mu.Unlock()
	if n.Payload == pingPayload {
		return nil
	}
	if id, err := strconv.ParseInt(n.Payload, 10, 64); err == nil && id > 0 {
		f.cache.ForgetUser(id)
		return nil
	}
	f.log.Warn("auth notification unreadable; forgetting every token", "payload", n.Payload)
	f.cache.ForgetAll()
	return nil
}
