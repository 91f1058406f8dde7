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

	"github.com/tenantplane/tenantplane/internal/pgstore"
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
	err := pgstore.Listen(ctx, l.cfg.Pool, map[string]pgxlisten.Handler{Channel: handler{l}},
		l.cfg.ReconnectDelay, l.cfg.Logger.With("channel", Channel), nil)
	if err != nil {
		return fmt.Errorf("listening for authz changes: %w", err)
	}
	return nil
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
