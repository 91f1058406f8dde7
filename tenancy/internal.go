package tenancy

import (
	"context"
	"encoding/json"
	"net/netip"
	"strconv"
	"time"

	"github.com/tenantplane/tenantplane/internal/errcode"
)

// actorOf returns the actor in ctx, or the anonymous zero Actor.
func actorOf(ctx context.Context) Actor {
	a, _ := ActorFrom(ctx)
	return a
}

// Key is how the audit log names a as its actor: "user:42",
// "system:billing", or "anonymous".
func (a Actor) Key() string {
	switch {
	case a.UserID != 0:
		return UserKey(a.UserID)
	case a.System != "":
		return "system:" + a.System
	}
	return "anonymous"
}

// privileged reports whether a acts for the platform: a platform admin or
// a platform component.
func (a Actor) privileged() bool { return a.PlatformAdmin || (a.UserID == 0 && a.System != "") }

// requireUser returns the acting user, UNAUTHENTICATED when there is none.
func requireUser(ctx context.Context) (Actor, error) {
	a := actorOf(ctx)
	if a.UserID == 0 {
		return a, errcode.New(errcode.Unauthenticated, "log in first")
	}
	return a, nil
}

// requirePrivileged returns the actor when it is a platform admin or a
// platform component, FORBIDDEN otherwise.
func requirePrivileged(ctx context.Context) (Actor, error) {
	a := actorOf(ctx)
	if !a.privileged() {
		if a.UserID == 0 {
			return a, errcode.New(errcode.Unauthenticated, "log in first")
		}
		return a, errcode.New(errcode.Forbidden, "platform admins only")
	}
	return a, nil
}

// audit writes one audit_log row for a's change in tx.
func (s *Service) audit(ctx context.Context, tx Tx, a Actor, action, target string, detail map[string]any) error {
	return s.auditAs(ctx, tx, a, a.Key(), action, target, detail)
}

// auditAs is audit with the actor key given, for changes whose actor only
// comes to exist in the change itself (sign-up).
func (s *Service) auditAs(ctx context.Context, tx Tx, a Actor, actorKey, action, target string, detail map[string]any) error {
	var raw json.RawMessage
	if detail != nil {
		b, err := json.Marshal(detail)
		if err != nil {
			return err
		}
		raw = b
	}
	return tx.InsertAudit(ctx, AuditEntry{
		At: s.now(), Actor: actorKey, Action: action, Target: target,
		IP: a.IP, RequestID: a.RequestID, Detail: raw,
	})
}

// outbox writes one outbox row for the isolation reconciler in tx.
func (s *Service) outbox(ctx context.Context, tx Tx, kind, key string, payload map[string]any) error {
	return tx.InsertOutbox(ctx, OutboxEvent{Kind: kind, Key: key, Payload: payload, At: s.now()})
}

// limit counts one event against l for key and reports RATE_LIMITED when
// the sliding-window estimate exceeds l.Max: the current window's count
// plus the previous window's, weighted by the part of it still inside the
// sliding window.
func (s *Service) limit(ctx context.Context, l RateLimit, key string) error {
	now := s.now()
	start := now.Truncate(l.Window)
	cur, prev, err := s.store.HitRateLimit(ctx, key, start, l.Window)
	if err != nil {
		return err
	}
	if slidingCount(cur, prev, now.Sub(start), l.Window) > float64(l.Max) {
		return errcode.New(errcode.RateLimited, "too many attempts, try again later")
	}
	return nil
}

// slidingCount estimates the events in the window of length w ending now,
// elapsed into the current fixed window.
func slidingCount(cur, prev int, elapsed, w time.Duration) float64 {
	if elapsed < 0 {
		elapsed = 0
	}
	if elapsed > w {
		elapsed = w
	}
	return float64(cur) + float64(prev)*float64(w-elapsed)/float64(w)
}

// ipKey keys a rate limit by client address: IPv4 exactly, IPv6 by its
// /64, since one host commonly holds a whole /64. ok is false without an
// address.
func ipKey(ip netip.Addr) (string, bool) {
	if !ip.IsValid() {
		return "", false
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String(), true
	}
	return ip.String(), true
}

// limitIPAndEmail checks the per-IP limit (when the actor has an address)
// and then the per-email one, for action ("signup", "login", "reset").
func (s *Service) limitIP(ctx context.Context, action string, l RateLimit) error {
	if k, ok := ipKey(actorOf(ctx).IP); ok {
		return s.limit(ctx, l, action+":ip:"+k)
	}
	return nil
}

func (s *Service) limitEmail(ctx context.Context, action, email string, l RateLimit) error {
	return s.limit(ctx, l, action+":email:"+email)
}

// parseKey parses "prefix:ID".
func parseKey(key, prefix string) (int64, bool) {
	if len(key) <= len(prefix)+1 || key[:len(prefix)+1] != prefix+":" {
		return 0, false
	}
	id, err := strconv.ParseInt(key[len(prefix)+1:], 10, 64)
	return id, err == nil && id > 0
}
