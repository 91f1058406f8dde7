package tenancy

import (
	"context"
	"errors"
	"fmt"

	"github.com/tenantplane/tenantplane/internal/errcode"
)

var (
	errNamespaceNotFound = errcode.New(errcode.NotFound, "namespace not found")
	errDeleting          = errcode.New(errcode.Conflict, "namespace is being deleted")
	errOwnerOnly         = errcode.New(errcode.Forbidden, "only owners may grant, change or revoke the owner role")
)

// lockNamespace locks a namespace row for the rest of tx, serialising the
// changes of its members, invitations and state.
func lockNamespace(ctx context.Context, tx Tx, nsID int64) (Namespace, error) {
	ns, err := tx.NamespaceByIDForUpdate(ctx, nsID)
	if errors.Is(err, ErrNotFound) {
		return Namespace{}, errNamespaceNotFound
	}
	return ns, err
}

// nsAuthority returns the role a acts with in ns and checks it is at least
// need: the member role, owner for owners of the namespace's org and for
// the platform. An actor with no relation gets NOT_FOUND, one whose role is
// too low FORBIDDEN.
func (s *Service) nsAuthority(ctx context.Context, tx Tx, a Actor, ns Namespace, need Role) (Role, error) {
	if a.privileged() {
		return RoleOwner, nil
	}
	var have Role
	m, err := tx.Member(ctx, ns.ID, a.UserID)
	switch {
	case err == nil:
		have = m.Role
	case !errors.Is(err, ErrNotFound):
		return "", err
	}
	if !have.AtLeast(RoleOwner) {
		om, err := tx.OrgMember(ctx, ns.OrgID, a.UserID)
		switch {
		case err == nil && om.Role == OrgRoleOwner:
			have = RoleOwner
		case err != nil && !errors.Is(err, ErrNotFound):
			return "", err
		}
	}
	if have == "" {
		return "", errNamespaceNotFound
	}
	if !have.AtLeast(need) {
		return have, errcode.New(errcode.Forbidden, fmt.Sprintf("needs the %s role in the namespace", need))
	}
	return have, nil
}

// memberChanged audits the change of userID's membership of ns and queues
// it for Kubernetes (RoleBindings).
func (s *Service) memberChanged(ctx context.Context, tx Tx, a Actor, action string, ns Namespace, userID int64, detail map[string]any) error {
	if detail == nil {
		detail = map[string]any{}
	}
	detail["user_id"] = userID
	if err := s.audit(ctx, tx, a, action, NamespaceKey(ns.ID), detail); err != nil {
		return err
	}
	payload := map[string]any{"namespace_id": ns.ID, "name": ns.Name}
	for k, v := range detail {
		payload[k] = v
	}
	return s.outbox(ctx, tx, action, NamespaceKey(ns.ID), payload)
}

// CreateNamespace creates a namespace in an org the acting user owns; the
// creator becomes its owner. name must be a Kubernetes DNS label (at most
// 63 characters, not reserved) and globally unique (CONFLICT otherwise).
func (s *Service) CreateNamespace(ctx context.Context, orgID int64, name string) (Namespace, error) {
	a, err := requireUser(ctx)
	if err != nil {
		return Namespace{}, err
	}
	if err := ValidateNamespaceName(name); err != nil {
		return Namespace{}, err
	}
	var ns Namespace
	err = s.store.InTx(ctx, func(tx Tx) error {
		if _, err := lockOrg(ctx, tx, orgID); err != nil {
			return err
		}
		if err := s.requireOrgOwner(ctx, tx, a, orgID); err != nil {
			return err
		}
		n, err := tx.CountOrgNamespaces(ctx, orgID)
		if err != nil {
			return err
		}
		if n >= s.cfg.MaxNamespacesPerOrg {
			return errcode.New(errcode.Conflict, fmt.Sprintf("an org may have at most %d namespaces", s.cfg.MaxNamespacesPerOrg))
		}
		created, ok, err := tx.InsertNamespace(ctx, orgID, name, s.now())
		if err != nil {
			return err
		}
		if !ok {
			return errcode.New(errcode.Conflict, "namespace name is taken")
		}
		ns = created
		return s.addNamespaceOwner(ctx, tx, a, a.Key(), ns, a.UserID)
	})
	if err != nil {
		return Namespace{}, fmt.Errorf("create namespace: %w", err)
	}
	return ns, nil
}

// DeleteNamespace moves a namespace to state deleting (namespace owners and
// org owners); the isolation reconciler removes it from Kubernetes.
// Deleting a namespace that is already deleting changes nothing.
func (s *Service) DeleteNamespace(ctx context.Context, nsID int64) (Namespace, error) {
	a, err := requireUser(ctx)
	if err != nil {
		return Namespace{}, err
	}
	var ns Namespace
	err = s.store.InTx(ctx, func(tx Tx) error {
		cur, err := lockNamespace(ctx, tx, nsID)
		if err != nil {
			return err
		}
		if _, err := s.nsAuthority(ctx, tx, a, cur, RoleOwner); err != nil {
			return err
		}
		ns, err = s.setState(ctx, tx, a, cur, NamespaceDeleting, "namespace.delete", "")
		return err
	})
	if err != nil {
		return Namespace{}, fmt.Errorf("delete namespace: %w", err)
	}
	return ns, nil
}

// setState moves ns to state, auditing and queueing the change; the same
// state is a no-op.
func (s *Service) setState(ctx context.Context, tx Tx, a Actor, ns Namespace, state NamespaceState, action, reason string) (Namespace, error) {
	if ns.State == state {
		return ns, nil
	}
	from := ns.State
	ns, err := tx.SetNamespaceState(ctx, ns.ID, state, a.Key(), s.now())
	if err != nil {
		return Namespace{}, err
	}
	detail := map[string]any{"from": from, "to": state}
	if reason != "" {
		detail["reason"] = reason
	}
	if err := s.audit(ctx, tx, a, action, NamespaceKey(ns.ID), detail); err != nil {
		return Namespace{}, err
	}
	return ns, s.outbox(ctx, tx, action, NamespaceKey(ns.ID), map[string]any{
		"namespace_id": ns.ID, "name": ns.Name, "org_id": ns.OrgID, "from": from, "state": state,
	})
}

// takeSuspension makes a platform admin who suspends a namespace that is
// suspended already (by billing, say) its suspender, so that billing,
// once paid, leaves it suspended; audited when the suspender changes.
func (s *Service) takeSuspension(ctx context.Context, tx Tx, a Actor, ns Namespace, reason string) error {
	prev, ok, err := tx.TakeSuspension(ctx, ns.ID, a.Key(), s.now())
	if err != nil || !ok {
		return err
	}
	detail := map[string]any{"from": ns.State, "to": ns.State, "taken_from": prev}
	if reason != "" {
		detail["reason"] = reason
	}
	return s.audit(ctx, tx, a, "namespace.suspend", NamespaceKey(ns.ID), detail)
}

// SuspendNamespace moves an active namespace to suspended; for billing (a
// system actor) and platform admins. A deleting namespace is CONFLICT. A
// platform admin who suspends a suspended namespace becomes its suspender
// (see takeSuspension).
func (s *Service) SuspendNamespace(ctx context.Context, nsID int64, reason string) (Namespace, error) {
	return s.adminSetState(ctx, nsID, NamespaceSuspended, "namespace.suspend", reason)
}

// ResumeNamespace moves a suspended namespace back to active; for billing
// and platform admins. The reason, when given, goes into the audit log. A
// deleting namespace is CONFLICT.
func (s *Service) ResumeNamespace(ctx context.Context, nsID int64, reason string) (Namespace, error) {
	return s.adminSetState(ctx, nsID, NamespaceActive, "namespace.resume", reason)
}

func (s *Service) adminSetState(ctx context.Context, nsID int64, state NamespaceState, action, reason string) (Namespace, error) {
	a, err := requirePrivileged(ctx)
	if err != nil {
		return Namespace{}, err
	}
	if reason, err = cleanText("reason", reason, maxReasonLen); err != nil {
		return Namespace{}, err
	}
	var ns Namespace
	err = s.store.InTx(ctx, func(tx Tx) error {
		cur, err := lockNamespace(ctx, tx, nsID)
		if err != nil {
			return err
		}
		if cur.State == NamespaceDeleting {
			return errDeleting
		}
		if state == NamespaceSuspended && cur.State == NamespaceSuspended && a.UserID != 0 {
			ns = cur
			return s.takeSuspension(ctx, tx, a, cur, reason)
		}
		ns, err = s.setState(ctx, tx, a, cur, state, action, reason)
		return err
	})
	if err != nil {
		return Namespace{}, fmt.Errorf("%s: %w", action, err)
	}
	return ns, nil
}

// OrgNamespaces lists an org's namespaces by ID.
func (s *Service) OrgNamespaces(ctx context.Context, orgID int64, page PageArgs) (Connection[Namespace], error) {
	return listPage(page, "list org namespaces", func(q PageQuery) ([]Namespace, error) {
		return s.store.OrgNamespaces(ctx, orgID, q)
	}, func(n Namespace) int64 { return n.ID })
}

// MyNamespaces lists the namespaces the acting user is a member of, with
// their role.
func (s *Service) MyNamespaces(ctx context.Context, page PageArgs) (Connection[NamespaceMembership], error) {
	a, err := requireUser(ctx)
	if err != nil {
		return Connection[NamespaceMembership]{}, err
	}
	return listPage(page, "list my namespaces", func(q PageQuery) ([]NamespaceMembership, error) {
		return s.store.UserNamespaces(ctx, a.UserID, q)
	}, func(m NamespaceMembership) int64 { return m.Namespace.ID })
}

// Members lists a namespace's members by user ID.
func (s *Service) Members(ctx context.Context, nsID int64, page PageArgs) (Connection[Member], error) {
	return listPage(page, "list members", func(q PageQuery) ([]Member, error) {
		return s.store.Members(ctx, nsID, q)
	}, func(m Member) int64 { return m.UserID })
}

// checkMemberLimit is CONFLICT when adding adding more members or pending
// invitations to ns would exceed its member limit.
func (s *Service) checkMemberLimit(ctx context.Context, tx Tx, ns Namespace, adding int) error {
	members, err := tx.CountMembers(ctx, ns.ID)
	if err != nil {
		return err
	}
	pending, err := tx.CountPendingInvitations(ctx, ns.ID, s.now())
	if err != nil {
		return err
	}
	if members+pending+adding > ns.MemberLimit {
		return errcode.New(errcode.Conflict, fmt.Sprintf("the namespace member limit of %d (members and pending invitations) is reached", ns.MemberLimit))
	}
	return nil
}

// AddMember adds a user to a namespace; admins and owners may, only owners
// grant owner, and the member limit counts members plus pending
// invitations.
func (s *Service) AddMember(ctx context.Context, nsID, userID int64, role Role) (Member, error) {
	a, err := requireUser(ctx)
	if err != nil {
		return Member{}, err
	}
	if !role.Valid() {
		return Member{}, errcode.Invalid("role", "is not a namespace role")
	}
	m := Member{NamespaceID: nsID, UserID: userID, Role: role, CreatedAt: s.now()}
	err = s.store.InTx(ctx, func(tx Tx) error {
		ns, err := lockNamespace(ctx, tx, nsID)
		if err != nil {
			return err
		}
		have, err := s.nsAuthority(ctx, tx, a, ns, RoleAdmin)
		if err != nil {
			return err
		}
		if ns.State == NamespaceDeleting {
			return errDeleting
		}
		if role == RoleOwner && have != RoleOwner {
			return errOwnerOnly
		}
		if _, err := tx.UserByID(ctx, userID); errors.Is(err, ErrNotFound) {
			return errcode.New(errcode.NotFound, "user not found")
		} else if err != nil {
			return err
		}
		if _, err := tx.Member(ctx, nsID, userID); err == nil {
			return errcode.New(errcode.Conflict, "user is already a member")
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		if err := s.checkMemberLimit(ctx, tx, ns, 1); err != nil {
			return err
		}
		if err := tx.InsertMember(ctx, m); err != nil {
			return err
		}
		return s.memberChanged(ctx, tx, a, "member.add", ns, userID, map[string]any{"role": role})
	})
	if err != nil {
		return Member{}, fmt.Errorf("add member: %w", err)
	}
	return m, nil
}

// notLastOwner is CONFLICT when ns has one owner (or none).
func notLastOwner(ctx context.Context, tx Tx, nsID int64, what string) error {
	n, err := tx.CountOwners(ctx, nsID)
	if err != nil {
		return err
	}
	if n <= 1 {
		return errcode.New(errcode.Conflict, "the last owner of a namespace cannot be "+what)
	}
	return nil
}

// SetMemberRole changes a member's role; admins and owners may, only owners
// grant or revoke owner, and the last owner cannot be demoted.
func (s *Service) SetMemberRole(ctx context.Context, nsID, userID int64, role Role) (Member, error) {
	a, err := requireUser(ctx)
	if err != nil {
		return Member{}, err
	}
	if !role.Valid() {
		return Member{}, errcode.Invalid("role", "is not a namespace role")
	}
	var m Member
	err = s.store.InTx(ctx, func(tx Tx) error {
		ns, err := lockNamespace(ctx, tx, nsID)
		if err != nil {
			return err
		}
		have, err := s.nsAuthority(ctx, tx, a, ns, RoleAdmin)
		if err != nil {
			return err
		}
		if ns.State == NamespaceDeleting {
			return errDeleting
		}
		cur, err := tx.Member(ctx, nsID, userID)
		if err != nil {
			return err
		}
		if (role == RoleOwner || cur.Role == RoleOwner) && have != RoleOwner {
			return errOwnerOnly
		}
		if cur.Role == role {
			m = cur
			return nil
		}
		if cur.Role == RoleOwner {
			if err := notLastOwner(ctx, tx, nsID, "demoted"); err != nil {
				return err
			}
		}
		if m, err = tx.SetMemberRole(ctx, nsID, userID, role); err != nil {
			return err
		}
		return s.memberChanged(ctx, tx, a, "member.role", ns, userID, map[string]any{"from": cur.Role, "role": role})
	})
	if err != nil {
		return Member{}, fmt.Errorf("set member role: %w", err)
	}
	return m, nil
}

// RemoveMember removes a member; admins and owners may (anyone may remove
// themselves, as Leave), only owners remove owners, and the last owner
// cannot be removed.
func (s *Service) RemoveMember(ctx context.Context, nsID, userID int64) error {
	a, err := requireUser(ctx)
	if err != nil {
		return err
	}
	if userID == a.UserID {
		return s.Leave(ctx, nsID)
	}
	err = s.store.InTx(ctx, func(tx Tx) error {
		ns, err := lockNamespace(ctx, tx, nsID)
		if err != nil {
			return err
		}
		have, err := s.nsAuthority(ctx, tx, a, ns, RoleAdmin)
		if err != nil {
			return err
		}
		cur, err := tx.Member(ctx, nsID, userID)
		if err != nil {
			return err
		}
		if cur.Role == RoleOwner {
			if have != RoleOwner {
				return errOwnerOnly
			}
			if err := notLastOwner(ctx, tx, nsID, "removed"); err != nil {
				return err
			}
		}
		if err := tx.DeleteMember(ctx, nsID, userID); err != nil {
			return err
		}
		return s.memberChanged(ctx, tx, a, "member.remove", ns, userID, map[string]any{"role": cur.Role})
	})
	if err != nil {
		return fmt.Errorf("remove member: %w", err)
	}
	return nil
}

// Leave removes the acting user from a namespace; the last owner cannot
// leave.
func (s *Service) Leave(ctx context.Context, nsID int64) error {
	a, err := requireUser(ctx)
	if err != nil {
		return err
	}
	err = s.store.InTx(ctx, func(tx Tx) error {
		ns, err := lockNamespace(ctx, tx, nsID)
		if err != nil {
			return err
		}
		cur, err := tx.Member(ctx, nsID, a.UserID)
		if errors.Is(err, ErrNotFound) {
			return errNamespaceNotFound
		} else if err != nil {
			return err
		}
		if cur.Role == RoleOwner {
			if err := notLastOwner(ctx, tx, nsID, "removed; transfer ownership first"); err != nil {
				return err
			}
		}
		if err := tx.DeleteMember(ctx, nsID, a.UserID); err != nil {
			return err
		}
		return s.memberChanged(ctx, tx, a, "member.leave", ns, a.UserID, map[string]any{"role": cur.Role})
	})
	if err != nil {
		return fmt.Errorf("leave namespace: %w", err)
	}
	return nil
}

// TransferOwnership makes toUserID (already a member) an owner and the
// acting owner an admin.
func (s *Service) TransferOwnership(ctx context.Context, nsID, toUserID int64) error {
	a, err := requireUser(ctx)
	if err != nil {
		return err
	}
	if toUserID == a.UserID {
		return errcode.Invalid("userId", "you cannot transfer ownership to yourself")
	}
	err = s.store.InTx(ctx, func(tx Tx) error {
		ns, err := lockNamespace(ctx, tx, nsID)
		if err != nil {
			return err
		}
		me, err := tx.Member(ctx, nsID, a.UserID)
		if errors.Is(err, ErrNotFound) {
			return errNamespaceNotFound
		} else if err != nil {
			return err
		}
		if me.Role != RoleOwner {
			return errcode.New(errcode.Forbidden, "only an owner may transfer ownership")
		}
		if ns.State == NamespaceDeleting {
			return errDeleting
		}
		to, err := tx.Member(ctx, nsID, toUserID)
		if errors.Is(err, ErrNotFound) {
			return errcode.New(errcode.NotFound, "the new owner must be a member of the namespace")
		} else if err != nil {
			return err
		}
		if to.Role != RoleOwner {
			if _, err := tx.SetMemberRole(ctx, nsID, toUserID, RoleOwner); err != nil {
				return err
			}
			if err := s.memberChanged(ctx, tx, a, "member.role", ns, toUserID,
				map[string]any{"from": to.Role, "role": RoleOwner, "transfer": true}); err != nil {
				return err
			}
		}
		if _, err := tx.SetMemberRole(ctx, nsID, a.UserID, RoleAdmin); err != nil {
			return err
		}
		return s.memberChanged(ctx, tx, a, "member.role", ns, a.UserID,
			map[string]any{"from": RoleOwner, "role": RoleAdmin, "transfer": true})
	})
	if err != nil {
		return fmt.Errorf("transfer ownership: %w", err)
	}
	return nil
}
