package tenancy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tenantplane/tenantplane/internal/errcode"
)

var (
	errInvitationNotFound = errcode.New(errcode.NotFound, "invitation not found")
	errBadInvitation      = errcode.Invalid("token", "invalid invitation link")
)

// Invite mails a single-use invitation into a namespace to email with role,
// valid for ttl (0 means Config.InvitationTTL, at most InvitationMaxTTL).
// Admins and owners may invite; only owners invite owners; the member limit
// counts pending invitations. A pending invitation for the same address or
// an existing member is CONFLICT. Each user's invitations are rate-limited.
func (s *Service) Invite(ctx context.Context, nsID int64, email string, role Role, ttl time.Duration) (Invitation, error) {
	a, err := requireUser(ctx)
	if err != nil {
		return Invitation{}, err
	}
	email, err = NormalizeEmail(email)
	if err != nil {
		return Invitation{}, err
	}
	if !role.Valid() {
		return Invitation{}, errcode.Invalid("role", "is not a namespace role")
	}
	switch {
	case ttl == 0:
		ttl = s.cfg.InvitationTTL
	case ttl < time.Hour || ttl > s.cfg.InvitationMaxTTL:
		return Invitation{}, errcode.Invalid("ttl", fmt.Sprintf("must be between 1 hour and %s", s.cfg.InvitationMaxTTL))
	}
	if err := s.limit(ctx, s.cfg.RateLimits.InvitePerUser, "invite:"+UserKey(a.UserID)); err != nil {
		return Invitation{}, err
	}
	var inv Invitation
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
		if ok, err := tx.MemberWithEmail(ctx, nsID, email); err != nil {
			return err
		} else if ok {
			return errcode.New(errcode.Conflict, "a user with this email address is already a member")
		}
		now := s.now()
		if ok, err := tx.PendingInvitationFor(ctx, nsID, email, now); err != nil {
			return err
		} else if ok {
			return errcode.New(errcode.Conflict, "an invitation to this email address is pending; revoke it first")
		}
		if err := s.checkMemberLimit(ctx, tx, ns, 1); err != nil {
			return err
		}
		secret, hash := newSecret(inviteTokenPrefix)
		inv, err = tx.InsertInvitation(ctx, Invitation{
			NamespaceID: nsID, Email: email, Role: role, InvitedBy: a.UserID,
			CreatedAt: now, ExpiresAt: now.Add(ttl),
		}, hash)
		if err != nil {
			return err
		}
		inviter := "A Tenantplane user"
		if a.UserID != 0 {
			if u, err := tx.UserByID(ctx, a.UserID); err == nil {
				inviter = u.Email
				if u.DisplayName != "" {
					inviter = u.DisplayName + " <" + u.Email + ">"
				}
			}
		}
		if err := tx.EnqueueMail(ctx, s.invitationMail(email, inviter, ns.Name, role, secret, ttl)); err != nil {
			return err
		}
		return s.audit(ctx, tx, a, "invitation.create", NamespaceKey(nsID), map[string]any{
			"invitation_id": inv.ID, "email": email, "role": role, "expires_at": inv.ExpiresAt,
		})
	})
	if err != nil {
		return Invitation{}, fmt.Errorf("invite: %w", err)
	}
	return inv, nil
}

// RevokeInvitation revokes a pending or expired invitation; admins and
// owners of its namespace may, and only owners revoke an invitation as
// owner. An accepted or already revoked invitation is CONFLICT.
func (s *Service) RevokeInvitation(ctx context.Context, invitationID int64) (Invitation, error) {
	a, err := requireUser(ctx)
	if err != nil {
		return Invitation{}, err
	}
	var inv Invitation
	err = s.store.InTx(ctx, func(tx Tx) error {
		peek, err := tx.InvitationByID(ctx, invitationID)
		if errors.Is(err, ErrNotFound) {
			return errInvitationNotFound
		} else if err != nil {
			return err
		}
		// Lock the namespace first, as every membership change does.
		ns, err := lockNamespace(ctx, tx, peek.NamespaceID)
		if err != nil {
			return err
		}
		have, err := s.nsAuthority(ctx, tx, a, ns, RoleAdmin)
		if errors.Is(err, ErrNotFound) {
			return errInvitationNotFound
		} else if err != nil {
			return err
		}
		cur, err := tx.InvitationByIDForUpdate(ctx, invitationID)
		if err != nil {
			return err
		}
		if cur.Role == RoleOwner && have != RoleOwner {
			return errOwnerOnly
		}
		switch cur.Status(s.now()) {
		case InvitationAccepted:
			return errcode.New(errcode.Conflict, "the invitation was already accepted")
		case InvitationRevoked:
			return errcode.New(errcode.Conflict, "the invitation was already revoked")
		}
		if inv, err = tx.RevokeInvitation(ctx, invitationID, s.now()); err != nil {
			return err
		}
		return s.audit(ctx, tx, a, "invitation.revoke", NamespaceKey(ns.ID),
			map[string]any{"invitation_id": inv.ID, "email": inv.Email})
	})
	if err != nil {
		return Invitation{}, fmt.Errorf("revoke invitation: %w", err)
	}
	return inv, nil
}

// AcceptInvitation makes the acting user a member with the invited role.
// The invitation is accepted by whoever holds the mailed token, logged in
// as any user: the address it went to and the accepting user are both
// recorded in the audit log. Used, revoked and expired invitations are
// distinct BAD_USER_INPUT errors on "token"; an invitee who is already a
// member gets CONFLICT and the invitation stays pending.
func (s *Service) AcceptInvitation(ctx context.Context, token string) (Member, error) {
	a, err := requireUser(ctx)
	if err != nil {
		return Member{}, err
	}
	if !wellFormedSecret(token, inviteTokenPrefix) {
		return Member{}, errBadInvitation
	}
	var m Member
	err = s.store.InTx(ctx, func(tx Tx) error {
		peek, err := tx.InvitationByHash(ctx, hashSecret(token))
		if errors.Is(err, ErrNotFound) {
			return errBadInvitation
		} else if err != nil {
			return err
		}
		ns, err := lockNamespace(ctx, tx, peek.NamespaceID)
		if err != nil {
			return err
		}
		inv, err := tx.InvitationByIDForUpdate(ctx, peek.ID)
		if err != nil {
			return err
		}
		now := s.now()
		switch inv.Status(now) {
		case InvitationAccepted:
			return errcode.Invalid("token", "this invitation has already been used")
		case InvitationRevoked:
			return errcode.Invalid("token", "this invitation has been revoked")
		case InvitationExpired:
			return errcode.Invalid("token", "this invitation has expired")
		}
		if ns.State == NamespaceDeleting {
			return errDeleting
		}
		u, err := tx.UserByID(ctx, a.UserID)
		if err != nil {
			return err
		}
		if _, err := tx.Member(ctx, ns.ID, u.ID); err == nil {
			return errcode.New(errcode.Conflict, "you are already a member of this namespace")
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		// The invitation already counts against the limit; it only turns
		// into a member. The limit may have been lowered since.
		if err := s.checkMemberLimit(ctx, tx, ns, 0); err != nil {
			return err
		}
		if _, err := tx.AcceptInvitation(ctx, inv.ID, u.ID, now); err != nil {
			return err
		}
		m = Member{NamespaceID: ns.ID, UserID: u.ID, Role: inv.Role, CreatedAt: now}
		if err := tx.InsertMember(ctx, m); err != nil {
			return err
		}
		return s.memberChanged(ctx, tx, a, "member.add", ns, u.ID, map[string]any{
			"role": inv.Role, "invitation_id": inv.ID, "invited_email": inv.Email,
			"user_email": u.Email, "email_matches": inv.Email == u.Email,
		})
	})
	if err != nil {
		return Member{}, fmt.Errorf("accept invitation: %w", err)
	}
	return m, nil
}

// Invitations lists a namespace's invitations by ID, pending ones and past.
func (s *Service) Invitations(ctx context.Context, nsID int64, page PageArgs) (Connection[Invitation], error) {
	return listPage(page, "list invitations", func(q PageQuery) ([]Invitation, error) {
		return s.store.Invitations(ctx, nsID, q)
	}, func(i Invitation) int64 { return i.ID })
}
