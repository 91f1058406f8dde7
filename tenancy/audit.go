package tenancy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tenantplane/tenantplane/internal/errcode"
)

// AuditLog lists audit entries, newest first. Platform admins and the
// platform see every entry; others must filter on a Target they
// administer: "ns:ID" as a namespace owner or admin (or owner of its org),
// "org:ID" as an org owner. Anything else is FORBIDDEN.
func (s *Service) AuditLog(ctx context.Context, filter AuditFilter, page PageArgs) (Connection[AuditEntry], error) {
	a := actorOf(ctx)
	if a.UserID == 0 && !a.privileged() {
		return Connection[AuditEntry]{}, errcode.New(errcode.Unauthenticated, "log in first")
	}
	q, err := page.Query()
	if err != nil {
		return Connection[AuditEntry]{}, err
	}
	if !filter.Since.IsZero() && !filter.Until.IsZero() && !filter.Since.Before(filter.Until) {
		return Connection[AuditEntry]{}, errcode.Invalid("since", "must be before until")
	}
	if !a.privileged() {
		if err := s.mayReadAudit(ctx, a, filter.Target); err != nil {
			return Connection[AuditEntry]{}, err
		}
	}
	es, err := s.store.AuditLog(ctx, filter, q)
	if err != nil {
		return Connection[AuditEntry]{}, fmt.Errorf("audit log: %w", err)
	}
	return NewConnection(q, es, func(e AuditEntry) Cursor { return Cursor{Time: e.At, ID: e.ID} }), nil
}

var errAuditTarget = errcode.New(errcode.Forbidden, "the audit log needs a target you administer")

func (s *Service) mayReadAudit(ctx context.Context, a Actor, target string) error {
	if id, ok := parseKey(target, "ns"); ok {
		ns, err := s.store.NamespaceByID(ctx, id)
		if errors.Is(err, ErrNotFound) {
			return errAuditTarget
		} else if err != nil {
			return err
		}
		if _, err := s.nsAuthority(ctx, s.store, a, ns, RoleAdmin); err != nil {
			if errcode.Of(err) == errcode.Internal {
				return err
			}
			return errAuditTarget
		}
		return nil
	}
	if id, ok := parseKey(target, "org"); ok {
		if err := s.requireOrgOwner(ctx, s.store, a, id); err != nil {
			if errcode.Of(err) == errcode.Internal {
				return err
			}
			return errAuditTarget
		}
		return nil
	}
	return errAuditTarget
}

// Prune deletes rate-limit windows older than twice the longest window,
// and one-time and auth tokens that expired over a day ago; the server
// calls it periodically.
func (s *Service) Prune(ctx context.Context) error {
	var longest time.Duration
	rl := s.cfg.RateLimits
	for _, l := range []RateLimit{rl.SignUpPerIP, rl.SignUpPerEmail, rl.LogInPerIP, rl.LogInPerEmail, rl.ResetPerIP, rl.ResetPerEmail, rl.InvitePerUser} {
		longest = max(longest, l.Window)
	}
	now := s.now()
	if err := s.store.Prune(ctx, now.Add(-2*longest), now.Add(-24*time.Hour)); err != nil {
		return fmt.Errorf("prune: %w", err)
	}
	return nil
}
