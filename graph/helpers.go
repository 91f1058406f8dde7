package graph

import (
	"context"
	"math"
	"time"

	"github.com/tenantplane/tenantplane/graph/model"
	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/tenancy"
	"github.com/tenantplane/tenantplane/tenancy/authz"
)

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// caller is who makes a change, as billing's audit log records it: the
// actor the handler put in ctx, or the anonymous zero Actor.
func caller(ctx context.Context) tenancy.Actor {
	a, _ := tenancy.ActorFrom(ctx)
	return a
}

// done is the answer of a mutation that returns true once it is done.
func done(err error) (bool, error) { return err == nil, err }

// seconds reads an optional lifetime in seconds; absent means the
// service's default (zero).
func seconds(field string, s *int) (time.Duration, error) {
	if s == nil {
		return 0, nil
	}
	if *s <= 0 || *s > math.MaxInt32 {
		return 0, errcode.Invalid(field, "must be a positive number of seconds")
	}
	return time.Duration(*s) * time.Second, nil
}

// userOrgs lists a user's orgs, a page of the loader's whole list.
// Outside a list, when the selection goes on into the orgs' namespaces,
// it reads the whole tree it shows in one query.
func (r *Resolver) userOrgs(ctx context.Context, userID int64, first *int, after *string) (*model.OrgConnection, error) {
	l := loadersFrom(ctx)
	var (
		ms  []tenancy.OrgMembership
		err error
	)
	if depth := orgTreeDepth(ctx); depth > 0 && !underList(ctx) {
		ms, err = l.orgTreeOf(ctx, userID, depth)
	} else {
		ms, err = l.orgsOf(ctx, userID)
	}
	if err != nil {
		return nil, err
	}
	c, err := pageOf(ms, func(m tenancy.OrgMembership) int64 { return m.Org.ID }, first, after)
	if err != nil {
		return nil, err
	}
	return orgConnection(ctx, c, func(m tenancy.OrgMembership) *model.Org { return presentOrg(m.Org) }), nil
}

// userNamespaces lists a user's namespaces, a page of the loader's whole
// list.
func (r *Resolver) userNamespaces(ctx context.Context, userID int64, first *int, after *string) (*model.NamespaceConnection, error) {
	ms, err := loadersFrom(ctx).namespacesByUser().Load(ctx, userID)
	if err != nil {
		return nil, err
	}
	c, err := pageOf(ms, func(m tenancy.NamespaceMembership) int64 { return m.Namespace.ID }, first, after)
	if err != nil {
		return nil, err
	}
	return namespaceConnection(ctx, c, func(m tenancy.NamespaceMembership) *model.Namespace {
		return presentNamespace(m.Namespace)
	}), nil
}

func (r *Resolver) invitationStatus(i tenancy.Invitation) tenancy.InvitationStatus {
	return i.Status(r.now())
}

// refresh tells this replica's authorizer at once about roles a mutation
// has just changed; the change is committed, so a failure is only logged
// (the notification will still arrive).
func (r *Resolver) refresh(ctx context.Context, userID int64, domain authz.Domain) {
	if err := r.authz.Refresh(ctx, userID, domain); err != nil {
		r.log.Warn("authz refresh after mutation", "err", err, "user", userID, "domain", string(domain))
	}
}

// refreshCaller refreshes the caller's roles in domain.
func (r *Resolver) refreshCaller(ctx context.Context, domain authz.Domain) {
	if p, ok := PrincipalFrom(ctx); ok {
		r.refresh(ctx, p.UserID, domain)
	}
}

// complete returns u with every field, loading the user when u was made
// from the principal alone.
func (r *Resolver) complete(ctx context.Context, u *model.User) (*model.User, error) {
	if !u.Partial {
		return u, nil
	}
	full, err := loadersFrom(ctx).user(ctx, u.ID)
	if err != nil {
		return nil, err
	}
	return presentUser(full), nil
}
