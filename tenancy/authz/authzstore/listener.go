package authzstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgxlisten"

	"github.com/tenantplane/tenantplane/tenancy/authz"
)

// Channel is the notification channel the membership triggers (migration
// 004) send on.
const Channel = "tenantplane_authz"

// Change is the payload of one notification: the user whose assignments
// changed in Domain (authz.Platform for every domain).
type Change struct {
	UserID int64        `json:"user"`
	Domain authz.Domain `json:"domain"`
}

// Enforcer is what the listener keeps current; *authz.Authorizer is one.
type Enforcer interface {
	Refresh(ctx context.Context, userID int64, domain authz.Domain) error
	Reload(ctx context.Context) error
}

// ListenerConfig configures a Listener.
type ListenerConfig struct {
	// Pool provides the dedicated listening connection, taken out of the
	// pool for as long as it listens. Required.
	Pool *pgxpool.Pool
	// Enforcer receives the changes. Required.
	Enforcer Enforcer
	// Logger receives connection losses and failed refreshes; nil discards.
	Logger *slog.Logger
	// ReconnectDelay is the pause before listening again after the
	// connection is lost; default one second.
	ReconnectDelay time.Duration
}

func (c *ListenerConfig) validate() error {
	if c.Pool == nil {
		return errors.New("authz listener config: pool is required")
	}
	if c.Enforcer == nil {
		return errors.New("authz listener config: enforcer is required")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.ReconnectDelay < 0 {
		return fmt.Errorf("authz listener config: reconnect delay %s is negative", c.ReconnectDelay)
	}
	if c.ReconnectDelay == 0 {
		c.ReconnectDelay = time.Second
	}
	return nil
}

// Listener listens on Channel and applies each change to its Enforcer.
// Every time it starts listening, first or after a lost connection, it
// reloads the whole policy, since notifications sent while it was not
// listening are lost.
type Listener struct {
	cfg       ListenerConfig
	readyOnce sync.Once
	ready     chan struct{}
}

// NewListener validates cfg and returns a Listener; Run starts it.
func NewListener(cfg ListenerConfig) (*Listener, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Listener{cfg: cfg, ready: make(chan struct{})}, nil
}

// Ready is closed once the listener listens and has reloaded the policy
// for the first time.
func (l *Listener) Ready() <-chan struct{} { return l.ready }

// Run listens until ctx is done, reconnecting when the connection drops.
// It returns nil when ctx is canceled.
func (l *Listener) Run(ctx context.Context) error {
	pl := &pgxlisten.Listener{
		Connect: func(ctx context.Context) (*pgx.Conn, error) {
			c, err := l.cfg.Pool.Acquire(ctx)
			if err != nil {
				return nil, fmt.Errorf("acquiring listen connection: %w", err)
			}
			return c.Hijack(), nil
		},
		LogError: func(ctx context.Context, err error) {
			if ctx.Err() == nil {
				l.cfg.Logger.Warn("authz listener", "err", err)
			}
		},
		ReconnectDelay: l.cfg.ReconnectDelay,
	}
	pl.Handle(Channel, handler{l})
	err := pl.Listen(ctx)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil // Listen ends only with ctx; being stopped is no failure
	}
	return fmt.Errorf("listening for authz changes: %w", err)
}

type handler struct{ l *Listener }

// HandleBacklog runs right after LISTEN: whatever changed while nobody
// listened is picked up by a full reload.
func (h handler) HandleBacklog(ctx context.Context, _ string, _ *pgx.Conn) error {
	if err := h.l.cfg.Enforcer.Reload(ctx); err != nil {
		return err
	}
	h.l.readyOnce.Do(func() { close(h.l.ready) })
	return nil
}

// HandleNotification applies one change; should that fail, it reloads
// everything so that a revoked role never lingers.
func (h handler) HandleNotification(ctx context.Context, n *pgconn.Notification, _ *pgx.Conn) error {
	var c Change
	if err := json.Unmarshal([]byte(n.Payload), &c); err != nil || c.UserID <= 0 {
		h.l.cfg.Logger.Warn("authz notification unreadable; reloading", "payload", n.Payload)
		return h.l.cfg.Enforcer.Reload(ctx)
	}
	if err := h.l.cfg.Enforcer.Refresh(ctx, c.UserID, c.Domain); err != nil {
		h.l.cfg.Logger.Warn("authz refresh; reloading", "err", err, "user", c.UserID, "domain", string(c.Domain))
		return h.l.cfg.Enforcer.Reload(ctx)
	}
	return nil
}
