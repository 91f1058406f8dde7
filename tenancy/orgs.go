package tenancy

import (
	"context"
	"errors"
	"fmt"

	"github.com/tenantplane/tenantplane/internal/errcode"
)

var errOrgNotFound = errcode.New(errcode.NotFound, "org not found")

// requireOrgOwner checks that a owns the org, or acts for the platform. An
// actor with no relation to the org gets NOT_FOUND.
func (s *Service) requireOrgOwner(ctx context.Context, tx Tx, a Actor, orgID int64) error {
	if a.privileged() {
		return nil
	}
	m, err := tx.OrgMember(ctx, orgID, a.UserID)
	if errors.Is(err, ErrNotFound) {
		return errOrgNotFound
	} else if err != nil {
		return err
	}
	if m.Role != OrgRoleOwner {
		return errcode.New(errcode.Forbidden, "only org owners may do this")
	}
	return nil
}

// lockOrg locks an org row for the rest of tx, serialising changes to its
// members.
func lockOrg(ctx context.Context, tx Tx, orgID int64) (Org, error) {
	o, err := tx.OrgByIDForUpdate(ctx, orgID)
	if errors.Is(err, ErrNotFound) {
		return Org{}, errOrgNotFound
	}
	return o, err
}

// orgMemberChanged audits a change of userID's org membership.
func (s *Service) orgMemberChanged(ctx context.Context, tx Tx, a Actor, action string, orgID, userID int64, detail map[string]any) error {
	if detail == nil {
		detail = map[string]any{}
	}
	detail["user_id"] = userID
	return s.audit(ctx, tx, a, action, OrgKey(orgID), detail)
}

// CreateOrg creates an org owned by the acting user. name must be a DNS
// label, globally unique (CONFLICT otherwise); displayName defaults to it.
func (s *Service) CreateOrg(ctx context.Context, name, displayName string) (Org, error) {
	a, err := requireUser(ctx)
	if err != nil {
		return Org{}, err
	}
	if err := ValidateOrgName(name); err != nil {
		return Org{}, err
	}
	if displayName, err = cleanText("displayName", displayName, MaxDisplayNameLen); err != nil {
		return Org{}, err
	}
	if displayName == "" {
		displayName = name
	}
	var org Org
	err = s.store.InTx(ctx, func(tx Tx) error {
		if _, err := tx.UserByIDForUpdate(ctx, a.UserID); err != nil { // serialises the count below
			return err
		}
		n, err := tx.CountOwnedOrgs(ctx, a.UserID)
		if err != nil {
			return err
		}
		if n >= s.cfg.MaxOrgsPerUser {
			return errcode.New(errcode.Conflict, fmt.Sprintf("you may own at most %d orgs", s.cfg.MaxOrgsPerUser))
		}
		o, ok, err := tx.InsertOrg(ctx, name, displayName, false, s.now())
		if err != nil {
			return err
		}
		if !ok {
			return errcode.New(errcode.Conflict, "org name is taken")
		}
		org = o
		if err := tx.InsertOrgMember(ctx, OrgMember{OrgID: o.ID, UserID: a.UserID, Role: OrgRoleOwner, CreatedAt: s.now()}); err != nil {
			return err
		}
		return s.audit(ctx, tx, a, "org.create", OrgKey(o.ID), map[string]any{"name": o.Name})
	})
	if err != nil {
		return Org{}, fmt.Errorf("create org: %w", err)
	}
	return org, nil
}

// RenameOrg changes an org's name and display name (which defaults to the
// name); org owners only. A taken name is CONFLICT.
func (s *Service) RenameOrg(ctx context.Context, orgID int64, name, displayName string) (Org, error) {
	a, err := requireUser(ctx)
	if err != nil {
		return Org{}, err
	}
	if err := ValidateOrgName(name); err != nil {
		return Org{}, err
	}
	if displayName, err = cleanText("displayName", displayName, MaxDisplayNameLen); err != nil {
		return Org{}, err
	}
	if displayName == "" {
		displayName = name
	}
	var org Org
	err = s.store.InTx(ctx, func(tx Tx) error {
		old, err := lockOrg(ctx, tx, orgID)
		if err != nil {
			return err
		}
		if err := s.requireOrgOwner(ctx, tx, a, orgID); err != nil {
			return err
		}
		if old.Name == name && old.DisplayName == displayName {
			org = old
			return nil
		}
		org, err = tx.UpdateOrg(ctx, orgID, name, displayName, s.now())
		if errors.Is(err, ErrConflict) {
			return errcode.New(errcode.Conflict, "org name is taken")
		} else if err != nil {
			return err
		}
		if err := s.audit(ctx, tx, a, "org.rename", OrgKey(orgID), map[string]any{
			"old_name": old.Name, "name": name, "old_display_name": old.DisplayName, "display_name": displayName,
		}); err != nil {
			return err
		}
		// Namespaces carry the org in their labels.
		return s.outbox(ctx, tx, "org.update", OrgKey(orgID), map[string]any{"org_id": orgID, "name": name})
	})
	if err != nil {
		return Org{}, fmt.Errorf("rename org: %w", err)
	}
	return org, nil
}

// MyOrgs lists the orgs the acting user belongs to, with their role.
func (s *Service) MyOrgs(ctx context.Context, page PageArgs) (Connection[OrgMembership], error) {
	a, err := requireUser(ctx)
	if err != nil {
		return Connection[OrgMembership]{}, err
	}
	return listPage(page, "list my orgs", func(q PageQuery) ([]OrgMembership, error) {
		return s.store.UserOrgs(ctx, a.UserID, q)
	}, func(m OrgMembership) int64 { return m.Org.ID })
}

// OrgMembers lists an org's members by user ID.
func (s *Service) OrgMembers(ctx context.Context, orgID int64, page PageArgs) (Connection[OrgMember], error) {
	return listPage(page, "list org members", func(q PageQuery) ([]OrgMember, error) {
		return s.store.OrgMembers(ctx, orgID, q)
	}, func(m OrgMember) int64 { return m.UserID })
}

// AddOrgMember adds a user to an org; org owners only.
func (s *Service) AddOrgMember(ctx context.Context, orgID, userID int64, role OrgRole) (OrgMember, error) {
	a, err := requireUser(ctx)
	if err != nil {
		return OrgMember{}, err
	}
	if !role.Valid() {
		return OrgMember{}, errcode.Invalid("role", "is not an org role")
	}
	m := OrgMember{OrgID: orgID, UserID: userID, Role: role, CreatedAt: s.now()}
	err = s.store.InTx(ctx, func(tx Tx) error {
		if _, err := lockOrg(ctx, tx, orgID); err != nil {
			return err
		}
		if err := s.requireOrgOwner(ctx, tx, a, orgID); err != nil {
			return err
		}
		if _, err := tx.UserByID(ctx, userID); errors.Is(err, ErrNotFound) {
			return errcode.New(errcode.NotFound, "user not found")
		} else if err != nil {
			return err
		}
		if err := tx.InsertOrgMember(ctx, m); errors.Is(err, ErrConflict) {
			return errcode.New(errcode.Conflict, "user is already a member of the org")
		} else if err != nil {
			return err
		}
		return s.orgMemberChanged(ctx, tx, a, "org.member.add", orgID, userID, map[string]any{"role": role})
	})
	if err != nil {
		return OrgMember{}, fmt.Errorf("add org member: %w", err)
	}
	return m, nil
}

// SetOrgMemberRole changes an org member's role; org owners only, and the
// last owner cannot be demoted.
func (s *Service) SetOrgMemberRole(ctx context.Context, orgID, userID int64, role OrgRole) (OrgMember, error) {
	a, err := requireUser(ctx)
	if err != nil {
		return OrgMember{}, err
	}
	if !role.Valid() {
		return OrgMember{}, errcode.Invalid("role", "is not an org role")
	}
	var m OrgMember
	err = s.store.InTx(ctx, func(tx Tx) error {
		if _, err := lockOrg(ctx, tx, orgID); err != nil {
			return err
		}
		if err := s.requireOrgOwner(ctx, tx, a, orgID); err != nil {
			return err
		}
		cur, err := tx.OrgMember(ctx, orgID, userID)
		if err != nil {
			return err
		}
		if cur.Role == role {
			m = cur
			return nil
		}
		if cur.Role == OrgRoleOwner {
			if err := s.notLastOrgOwner(ctx, tx, orgID, "demoted"); err != nil {
				return err
			}
		}
		if m, err = tx.SetOrgMemberRole(ctx, orgID, userID, role); err != nil {
			return err
		}
		return s.orgMemberChanged(ctx, tx, a, "org.member.role", orgID, userID,
			map[string]any{"from": cur.Role, "to": role})
	})
	if err != nil {
		return OrgMember{}, fmt.Errorf("set org member role: %w", err)
	}
	return m, nil
}

// notLastOrgOwner is CONFLICT when the org has one owner (or none).
func (s *Service) notLastOrgOwner(ctx context.Context, tx Tx, orgID int64, what string) error {
	n, err := tx.CountOrgOwners(ctx, orgID)
	if err != nil {
		return err
	}
	if n <= 1 {
		return errcode.New(errcode.Conflict, "the last owner of an org cannot be "+what)
	}
	return nil
}

// RemoveOrgMember removes a user from an org; org owners only (anyone may
// remove themselves, as LeaveOrg), and the last owner cannot be removed.
func (s *Service) RemoveOrgMember(ctx context.Context, orgID, userID int64) error {
	a, err := requireUser(ctx)
	if err != nil {
		return err
	}
	if userID == a.UserID {
		return s.LeaveOrg(ctx, orgID)
	}
	err = s.store.InTx(ctx, func(tx Tx) error {
		if _, err := lockOrg(ctx, tx, orgID); err != nil {
			return err
		}
		if err := s.requireOrgOwner(ctx, tx, a, orgID); err != nil {
			return err
		}
		cur, err := tx.OrgMember(ctx, orgID, userID)
		if err != nil {
			return err
		}
		if cur.Role == OrgRoleOwner {
			if err := s.notLastOrgOwner(ctx, tx, orgID, "removed"); err != nil {
				return err
			}
		}
		if err := tx.DeleteOrgMember(ctx, orgID, userID); err != nil {
			return err
		}
		return s.orgMemberChanged(ctx, tx, a, "org.member.remove", orgID, userID, map[string]any{"role": cur.Role})
	})
	if err != nil {
		return fmt.Errorf("remove org member: %w", err)
	}
	return nil
}

// LeaveOrg removes the acting user from an org; the last owner cannot leave.
func (s *Service) LeaveOrg(ctx context.Context, orgID int64) error {
	a, err := requireUser(ctx)
	if err != nil {
		return err
	}
	err = s.store.InTx(ctx, func(tx Tx) error {
		if _, err := lockOrg(ctx, tx, orgID); err != nil {
			return err
		}
		cur, err := tx.OrgMember(ctx, orgID, a.UserID)
		if errors.Is(err, ErrNotFound) {
			return errOrgNotFound
		} else if err != nil {
			return err
		}
		if cur.Role == OrgRoleOwner {
			if err := s.notLastOrgOwner(ctx, tx, orgID, "removed; transfer ownership first"); err != nil {
				return err
			}
		}
		if err := tx.DeleteOrgMember(ctx, orgID, a.UserID); err != nil {
			return err
		}
		return s.orgMemberChanged(ctx, tx, a, "org.member.leave", orgID, a.UserID, map[string]any{"role": cur.Role})
	})
	if err != nil {
		return fmt.Errorf("leave org: %w", err)
	}
	return nil
}

// TransferOrgOwnership makes toUserID (already a member) an owner and the
// acting owner a member.
func (s *Service) TransferOrgOwnership(ctx context.Context, orgID, toUserID int64) error {
	a, err := requireUser(ctx)
	if err != nil {
		return err
	}
	if toUserID == a.UserID {
		return errcode.Invalid("userId", "you cannot transfer ownership to yourself")
	}
	err = s.store.InTx(ctx, func(tx Tx) error {
		if _, err := lockOrg(ctx, tx, orgID); err != nil {
			return err
		}
		me, err := tx.OrgMember(ctx, orgID, a.UserID)
		if errors.Is(err, ErrNotFound) {
			return errOrgNotFound
		} else if err != nil {
			return err
		}
		if me.Role != OrgRoleOwner {
			return errcode.New(errcode.Forbidden, "only an owner may transfer ownership")
		}
		to, err := tx.OrgMember(ctx, orgID, toUserID)
		if errors.Is(err, ErrNotFound) {
			return errcode.New(errcode.NotFound, "the new owner must be a member of the org")
		} else if err != nil {
			return err
		}
		if to.Role != OrgRoleOwner {
			if _, err := tx.SetOrgMemberRole(ctx, orgID, toUserID, OrgRoleOwner); err != nil {
				return err
			}
		}
		if _, err := tx.SetOrgMemberRole(ctx, orgID, a.UserID, OrgRoleMember); err != nil {
			return err
		}
		return s.orgMemberChanged(ctx, tx, a, "org.transfer", orgID, a.UserID,
			map[string]any{"to_user_id": toUserID, "from_role": me.Role, "new_role": OrgRoleMember})
	})
	if err != nil {
		return fmt.Errorf("transfer org ownership: %w", err)
	}
	return nil
}
