package tenancy_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/tenancy"
)

func TestOrgLifecycleAndLastOwner(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ann := b.user("ann@example.com")
	ben := b.user("ben@example.com")
	cid := b.user("cid@example.com")

	org, err := b.svc.CreateOrg(as(ann.ID), "acme", "")
	require.NoError(t, err)
	require.Equal(t, "acme", org.DisplayName)
	require.False(t, org.Personal)
	_, err = b.svc.CreateOrg(as(ben.ID), "acme", "Another")
	requireCode(t, err, errcode.Conflict)
	_, err = b.svc.CreateOrg(as(ben.ID), "Not_A_Label", "")
	requireCode(t, err, errcode.BadUserInput)

	// A stranger sees nothing; a member is not an owner.
	_, err = b.svc.AddOrgMember(as(ben.ID), org.ID, cid.ID, tenancy.OrgRoleMember)
	requireCode(t, err, errcode.NotFound)
	_, err = b.svc.AddOrgMember(as(ann.ID), org.ID, ben.ID, tenancy.OrgRoleBilling)
	require.NoError(t, err)
	_, err = b.svc.AddOrgMember(as(ben.ID), org.ID, cid.ID, tenancy.OrgRoleMember)
	requireCode(t, err, errcode.Forbidden)
	_, err = b.svc.AddOrgMember(as(ann.ID), org.ID, ben.ID, tenancy.OrgRoleMember)
	requireCode(t, err, errcode.Conflict)
	_, err = b.svc.AddOrgMember(as(ann.ID), org.ID, 999999, tenancy.OrgRoleMember)
	requireCode(t, err, errcode.NotFound)
	_, err = b.svc.AddOrgMember(as(ann.ID), org.ID, cid.ID, "emperor")
	requireCode(t, err, errcode.BadUserInput)

	// The last owner can neither leave, nor be demoted, nor removed.
	requireCode(t, b.svc.LeaveOrg(as(ann.ID), org.ID), errcode.Conflict)
	requireCode(t, b.svc.RemoveOrgMember(as(ann.ID), org.ID, ann.ID), errcode.Conflict)
	_, err = b.svc.SetOrgMemberRole(as(ann.ID), org.ID, ann.ID, tenancy.OrgRoleMember)
	requireCode(t, err, errcode.Conflict)
	requireCode(t, b.svc.RemoveOrgMember(admin(cid.ID), org.ID, ann.ID), errcode.Conflict)

	// With a second owner, the first may step down.
	_, err = b.svc.SetOrgMemberRole(as(ann.ID), org.ID, ben.ID, tenancy.OrgRoleOwner)
	require.NoError(t, err)
	m, err := b.svc.SetOrgMemberRole(as(ann.ID), org.ID, ann.ID, tenancy.OrgRoleBilling)
	require.NoError(t, err)
	require.Equal(t, tenancy.OrgRoleBilling, m.Role)
	_, err = b.svc.SetOrgMemberRole(as(ben.ID), org.ID, ben.ID, tenancy.OrgRoleMember)
	requireCode(t, err, errcode.Conflict)
	require.NoError(t, b.svc.LeaveOrg(as(ann.ID), org.ID))
	requireCode(t, b.svc.LeaveOrg(as(ann.ID), org.ID), errcode.NotFound)

	// Transfer: ben hands the org to cid and becomes a member.
	requireCode(t, b.svc.TransferOrgOwnership(as(ben.ID), org.ID, cid.ID), errcode.NotFound)
	_, err = b.svc.AddOrgMember(as(ben.ID), org.ID, cid.ID, tenancy.OrgRoleMember)
	require.NoError(t, err)
	requireCode(t, b.svc.TransferOrgOwnership(as(cid.ID), org.ID, ben.ID), errcode.Forbidden)
	require.NoError(t, b.svc.TransferOrgOwnership(as(ben.ID), org.ID, cid.ID))
	role, err := b.svc.OrgRoleOf(context.Background(), org.ID, cid.ID)
	require.NoError(t, err)
	require.Equal(t, tenancy.OrgRoleOwner, role)
	role, err = b.svc.OrgRoleOf(context.Background(), org.ID, ben.ID)
	require.NoError(t, err)
	require.Equal(t, tenancy.OrgRoleMember, role)
	require.NoError(t, b.svc.RemoveOrgMember(as(cid.ID), org.ID, ben.ID))
	_, err = b.svc.OrgRoleOf(context.Background(), org.ID, ben.ID)
	requireCode(t, err, errcode.NotFound)

	renamed, err := b.svc.RenameOrg(as(cid.ID), org.ID, "acme-corp", "Acme Corp")
	require.NoError(t, err)
	require.Equal(t, "acme-corp", renamed.Name)
	_, err = b.svc.RenameOrg(as(ben.ID), org.ID, "mine", "")
	requireCode(t, err, errcode.NotFound)
	orgAnn, _ := b.personal(ann)
	_, err = b.svc.RenameOrg(as(cid.ID), org.ID, orgAnn.Name, "")
	requireCode(t, err, errcode.Conflict)

	require.Equal(t, []string{
		"org.create", "org.member.add", "org.member.role", "org.member.role", "org.member.leave",
		"org.member.add", "org.transfer", "org.member.remove", "org.rename",
	}, b.auditActions(tenancy.OrgKey(org.ID)))
	require.Equal(t, []string{"org.update"}, b.outboxKinds(tenancy.OrgKey(org.ID)))
}

func TestOrgLimit(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *tenancy.Config) { c.MaxOrgsPerUser = 2 })
	u := b.user("dee@example.com") // owns the personal org
	_, err := b.svc.CreateOrg(as(u.ID), "second", "")
	require.NoError(t, err)
	_, err = b.svc.CreateOrg(as(u.ID), "third", "")
	requireCode(t, err, errcode.Conflict)
}

// team is a namespace with an owner, an admin, a developer and a viewer,
// and a stranger who is in none of it.
type team struct {
	ns                                  tenancy.Namespace
	org                                 tenancy.Org
	owner, admin, dev, viewer, outsider tenancy.User
}

func (b *bundle) team(prefix string) team {
	b.t.Helper()
	var tm team
	tm.owner = b.user(prefix + "-owner@example.com")
	tm.org, tm.ns = b.personal(tm.owner)
	tm.admin = b.user(prefix + "-admin@example.com")
	tm.dev = b.user(prefix + "-dev@example.com")
	tm.viewer = b.user(prefix + "-viewer@example.com")
	tm.outsider = b.user(prefix + "-outsider@example.com")
	for _, m := range []struct {
		u    tenancy.User
		role tenancy.Role
	}{{tm.admin, tenancy.RoleAdmin}, {tm.dev, tenancy.RoleDeveloper}, {tm.viewer, tenancy.RoleViewer}} {
		_, err := b.svc.AddMember(as(tm.owner.ID), tm.ns.ID, m.u.ID, m.role)
		require.NoError(b.t, err)
	}
	return tm
}

func TestNamespaceMembershipRules(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tm := b.team("nm")
	extra := b.user("nm-extra@example.com")
	nsKey := tenancy.NamespaceKey(tm.ns.ID)

	// Who may add whom.
	_, err := b.svc.AddMember(as(tm.outsider.ID), tm.ns.ID, extra.ID, tenancy.RoleViewer)
	requireCode(t, err, errcode.NotFound)
	_, err = b.svc.AddMember(as(tm.dev.ID), tm.ns.ID, extra.ID, tenancy.RoleViewer)
	requireCode(t, err, errcode.Forbidden)
	_, err = b.svc.AddMember(as(tm.admin.ID), tm.ns.ID, extra.ID, tenancy.RoleOwner)
	requireCode(t, err, errcode.Forbidden, "only owners grant owner")
	_, err = b.svc.AddMember(as(tm.admin.ID), tm.ns.ID, extra.ID, tenancy.RoleDeveloper)
	require.NoError(t, err)
	_, err = b.svc.AddMember(as(tm.admin.ID), tm.ns.ID, extra.ID, tenancy.RoleViewer)
	requireCode(t, err, errcode.Conflict)
	_, err = b.svc.AddMember(as(tm.admin.ID), tm.ns.ID, 999999, tenancy.RoleViewer)
	requireCode(t, err, errcode.NotFound)

	// Role changes: admins manage non-owners; only owners touch owners.
	_, err = b.svc.SetMemberRole(as(tm.admin.ID), tm.ns.ID, extra.ID, tenancy.RoleViewer)
	require.NoError(t, err)
	_, err = b.svc.SetMemberRole(as(tm.admin.ID), tm.ns.ID, extra.ID, tenancy.RoleOwner)
	requireCode(t, err, errcode.Forbidden)
	_, err = b.svc.SetMemberRole(as(tm.admin.ID), tm.ns.ID, tm.owner.ID, tenancy.RoleAdmin)
	requireCode(t, err, errcode.Forbidden)
	requireCode(t, b.svc.RemoveMember(as(tm.admin.ID), tm.ns.ID, tm.owner.ID), errcode.Forbidden)
	_, err = b.svc.SetMemberRole(as(tm.viewer.ID), tm.ns.ID, extra.ID, tenancy.RoleAdmin)
	requireCode(t, err, errcode.Forbidden)
	_, err = b.svc.SetMemberRole(as(tm.admin.ID), tm.ns.ID, tm.outsider.ID, tenancy.RoleAdmin)
	requireCode(t, err, errcode.NotFound)

	// The last owner cannot be demoted, removed or leave, even by a
	// platform admin.
	_, err = b.svc.SetMemberRole(as(tm.owner.ID), tm.ns.ID, tm.owner.ID, tenancy.RoleAdmin)
	requireCode(t, err, errcode.Conflict)
	requireCode(t, b.svc.Leave(as(tm.owner.ID), tm.ns.ID), errcode.Conflict)
	requireCode(t, b.svc.RemoveMember(as(tm.owner.ID), tm.ns.ID, tm.owner.ID), errcode.Conflict)
	requireCode(t, b.svc.RemoveMember(admin(tm.outsider.ID), tm.ns.ID, tm.owner.ID), errcode.Conflict)

	// Owners grant owner; then the first owner may step down.
	_, err = b.svc.SetMemberRole(as(tm.owner.ID), tm.ns.ID, tm.admin.ID, tenancy.RoleOwner)
	require.NoError(t, err)
	_, err = b.svc.SetMemberRole(as(tm.admin.ID), tm.ns.ID, tm.owner.ID, tenancy.RoleViewer)
	require.NoError(t, err)
	role, err := b.svc.RoleOf(context.Background(), tm.ns.ID, tm.owner.ID)
	require.NoError(t, err)
	require.Equal(t, tenancy.RoleViewer, role)

	// Removal and leaving.
	requireCode(t, b.svc.RemoveMember(as(tm.dev.ID), tm.ns.ID, tm.viewer.ID), errcode.Forbidden)
	require.NoError(t, b.svc.RemoveMember(as(tm.admin.ID), tm.ns.ID, tm.viewer.ID))
	requireCode(t, b.svc.RemoveMember(as(tm.admin.ID), tm.ns.ID, tm.viewer.ID), errcode.NotFound)
	require.NoError(t, b.svc.Leave(as(tm.dev.ID), tm.ns.ID))
	requireCode(t, b.svc.Leave(as(tm.dev.ID), tm.ns.ID), errcode.NotFound)
	require.NoError(t, b.svc.RemoveMember(as(extra.ID), tm.ns.ID, extra.ID), "removing yourself is leaving")

	members, err := b.svc.Members(context.Background(), tm.ns.ID, tenancy.PageArgs{})
	require.NoError(t, err)
	roles := map[int64]tenancy.Role{}
	for _, e := range members.Edges {
		roles[e.Node.UserID] = e.Node.Role
	}
	require.Equal(t, map[int64]tenancy.Role{tm.owner.ID: tenancy.RoleViewer, tm.admin.ID: tenancy.RoleOwner}, roles)

	// Every change is audited and queued for Kubernetes, with the user.
	want := []string{"namespace.create", "member.add", "member.add", "member.add", "member.add",
		"member.role", "member.role", "member.role", "member.remove", "member.leave", "member.leave"}
	require.Equal(t, want, b.outboxKinds(nsKey))
	require.Equal(t, want, b.auditActions(nsKey))
	require.Equal(t, 1, b.count(`SELECT count(*) FROM outbox WHERE key = $1 AND kind = 'member.remove'
		AND (payload->>'user_id')::bigint = $2 AND payload->>'role' = 'viewer'`, nsKey, tm.viewer.ID))
}

func TestOrgOwnersGovernTheirNamespaces(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tm := b.team("gov")
	coOwner := b.user("gov-co@example.com")
	_, err := b.svc.AddOrgMember(as(tm.owner.ID), tm.org.ID, coOwner.ID, tenancy.OrgRoleOwner)
	require.NoError(t, err)
	_, err = b.svc.SetMemberRole(as(coOwner.ID), tm.ns.ID, tm.dev.ID, tenancy.RoleOwner)
	require.NoError(t, err, "an org owner acts as owner of the org's namespaces")
	billing := b.user("gov-billing@example.com")
	_, err = b.svc.AddOrgMember(as(tm.owner.ID), tm.org.ID, billing.ID, tenancy.OrgRoleBilling)
	require.NoError(t, err)
	_, err = b.svc.AddMember(as(billing.ID), tm.ns.ID, tm.outsider.ID, tenancy.RoleViewer)
	requireCode(t, err, errcode.NotFound)
}

func TestTransferNamespaceOwnership(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tm := b.team("tr")
	requireCode(t, b.svc.TransferOwnership(as(tm.owner.ID), tm.ns.ID, tm.outsider.ID), errcode.NotFound)
	requireCode(t, b.svc.TransferOwnership(as(tm.admin.ID), tm.ns.ID, tm.dev.ID), errcode.Forbidden)
	requireCode(t, b.svc.TransferOwnership(as(tm.outsider.ID), tm.ns.ID, tm.dev.ID), errcode.NotFound)
	requireCode(t, b.svc.TransferOwnership(as(tm.owner.ID), tm.ns.ID, tm.owner.ID), errcode.BadUserInput)
	require.NoError(t, b.svc.TransferOwnership(as(tm.owner.ID), tm.ns.ID, tm.dev.ID))
	for id, want := range map[int64]tenancy.Role{tm.dev.ID: tenancy.RoleOwner, tm.owner.ID: tenancy.RoleAdmin} {
		got, err := b.svc.RoleOf(context.Background(), tm.ns.ID, id)
		require.NoError(t, err)
		require.Equal(t, want, got)
	}
	// The org's owner still governs the namespace; a former owner who is
	// not cannot take it back.
	require.NoError(t, b.svc.TransferOwnership(as(tm.dev.ID), tm.ns.ID, tm.viewer.ID))
	_, err := b.svc.SetMemberRole(as(tm.dev.ID), tm.ns.ID, tm.dev.ID, tenancy.RoleOwner)
	requireCode(t, err, errcode.Forbidden)
	_, err = b.svc.SetMemberRole(as(tm.owner.ID), tm.ns.ID, tm.owner.ID, tenancy.RoleOwner)
	require.NoError(t, err)
}

func TestNamespaceCreateDeleteAndState(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *tenancy.Config) { c.MaxNamespacesPerOrg = 3 })
	tm := b.team("st")
	other := b.user("st-other@example.com")
	otherOrg, _ := b.personal(other)

	ns, err := b.svc.CreateNamespace(as(tm.owner.ID), tm.org.ID, "web-prod")
	require.NoError(t, err)
	require.Equal(t, tenancy.NamespaceActive, ns.State)
	require.Equal(t, 50, ns.MemberLimit)
	role, err := b.svc.RoleOf(context.Background(), ns.ID, tm.owner.ID)
	require.NoError(t, err)
	require.Equal(t, tenancy.RoleOwner, role)
	require.Equal(t, []string{"namespace.create"}, b.outboxKinds(tenancy.NamespaceKey(ns.ID)))
	byName, err := b.svc.NamespaceByName(context.Background(), "web-prod")
	require.NoError(t, err)
	require.Equal(t, ns.ID, byName.ID)

	// Names are global: another org cannot take it.
	_, err = b.svc.CreateNamespace(as(other.ID), otherOrg.ID, "web-prod")
	requireCode(t, err, errcode.Conflict)
	_, err = b.svc.CreateNamespace(as(other.ID), otherOrg.ID, "Web_Prod")
	requireCode(t, err, errcode.BadUserInput)
	_, err = b.svc.CreateNamespace(as(other.ID), tm.org.ID, "intruder")
	requireCode(t, err, errcode.NotFound)
	_, err = b.svc.CreateNamespace(as(tm.admin.ID), tm.org.ID, "by-admin")
	requireCode(t, err, errcode.NotFound, "namespace admins are not org owners")

	_, err = b.svc.CreateNamespace(as(tm.owner.ID), tm.org.ID, "web-staging")
	require.NoError(t, err)
	_, err = b.svc.CreateNamespace(as(tm.owner.ID), tm.org.ID, "one-too-many")
	requireCode(t, err, errcode.Conflict)

	// Suspend and resume are for billing and platform admins.
	_, err = b.svc.SuspendNamespace(as(tm.owner.ID), ns.ID, "debt")
	requireCode(t, err, errcode.Forbidden)
	s, err := b.svc.SuspendNamespace(system("billing"), ns.ID, "balance below zero")
	require.NoError(t, err)
	require.Equal(t, tenancy.NamespaceSuspended, s.State)
	s, err = b.svc.SuspendNamespace(system("billing"), ns.ID, "again")
	require.NoError(t, err)
	require.Equal(t, tenancy.NamespaceSuspended, s.State)
	r, err := b.svc.ResumeNamespace(admin(other.ID), ns.ID, "paid by bank transfer")
	require.NoError(t, err)
	require.Equal(t, tenancy.NamespaceActive, r.State)

	// Delete: owners only; then deleting, and no more membership changes.
	_, err = b.svc.DeleteNamespace(as(tm.admin.ID), tm.ns.ID)
	requireCode(t, err, errcode.Forbidden)
	d, err := b.svc.DeleteNamespace(as(tm.owner.ID), ns.ID)
	require.NoError(t, err)
	require.Equal(t, tenancy.NamespaceDeleting, d.State)
	_, err = b.svc.DeleteNamespace(as(tm.owner.ID), ns.ID)
	require.NoError(t, err)
	_, err = b.svc.AddMember(as(tm.owner.ID), ns.ID, tm.dev.ID, tenancy.RoleViewer)
	requireCode(t, err, errcode.Conflict)
	_, err = b.svc.Invite(as(tm.owner.ID), ns.ID, "late@example.com", tenancy.RoleViewer, 0)
	requireCode(t, err, errcode.Conflict)
	_, err = b.svc.ResumeNamespace(system("billing"), ns.ID, "")
	requireCode(t, err, errcode.Conflict)
	_, err = b.svc.CreateNamespace(as(tm.owner.ID), tm.org.ID, "room-again")
	require.NoError(t, err, "a deleting namespace no longer counts against the org's limit")

	require.Equal(t, []string{"namespace.create", "namespace.suspend", "namespace.resume", "namespace.delete"},
		b.outboxKinds(tenancy.NamespaceKey(ns.ID)))
	require.Equal(t, 1, b.count(`SELECT count(*) FROM audit_log WHERE target = $1 AND action = 'namespace.suspend'
		AND actor = 'system:billing' AND detail->>'reason' = 'balance below zero'`, tenancy.NamespaceKey(ns.ID)))
	require.Equal(t, 1, b.count(`SELECT count(*) FROM outbox WHERE key = $1 AND kind = 'namespace.delete'
		AND payload->>'state' = 'deleting' AND payload->>'name' = 'web-prod'`, tenancy.NamespaceKey(ns.ID)))
	require.Equal(t, 1, b.count(`SELECT count(*) FROM audit_log WHERE target = $1 AND action = 'namespace.resume'
		AND detail->>'reason' = 'paid by bank transfer'`, tenancy.NamespaceKey(ns.ID)))
	_, err = b.svc.SuspendNamespace(system("billing"), 999999, "")
	requireCode(t, err, errcode.NotFound)
}

func TestInvitations(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tm := b.team("inv")
	guest := b.user("guest@example.com")

	inv, err := b.svc.Invite(as(tm.admin.ID), tm.ns.ID, " Guest@Example.com ", tenancy.RoleDeveloper, 0)
	require.NoError(t, err)
	require.Equal(t, "guest@example.com", inv.Email)
	require.Equal(t, b.clock.Now().Add(7*24*time.Hour), inv.ExpiresAt)
	require.Equal(t, tenancy.InvitationPending, inv.Status(b.clock.Now()))
	mail := b.mails("guest@example.com", "invitation")
	require.Len(t, mail, 1)
	require.Contains(t, mail[0], tm.ns.Name)
	require.Contains(t, mail[0], "https://console.test/invitations/accept?token=tpi_")
	tok := b.lastToken("guest@example.com", "invitation")

	_, err = b.svc.Invite(as(tm.admin.ID), tm.ns.ID, "guest@example.com", tenancy.RoleViewer, 0)
	requireCode(t, err, errcode.Conflict)
	_, err = b.svc.Invite(as(tm.admin.ID), tm.ns.ID, tm.dev.Email, tenancy.RoleViewer, 0)
	requireCode(t, err, errcode.Conflict)
	_, err = b.svc.Invite(as(tm.admin.ID), tm.ns.ID, "boss@example.com", tenancy.RoleOwner, 0)
	requireCode(t, err, errcode.Forbidden)
	_, err = b.svc.Invite(as(tm.dev.ID), tm.ns.ID, "friend@example.com", tenancy.RoleViewer, 0)
	requireCode(t, err, errcode.Forbidden)
	_, err = b.svc.Invite(as(tm.outsider.ID), tm.ns.ID, "friend@example.com", tenancy.RoleViewer, 0)
	requireCode(t, err, errcode.NotFound)
	_, err = b.svc.Invite(as(tm.admin.ID), tm.ns.ID, "friend@example.com", tenancy.RoleViewer, 31*24*time.Hour)
	requireCode(t, err, errcode.BadUserInput)

	_, err = b.svc.AcceptInvitation(anon(), tok)
	requireCode(t, err, errcode.Unauthenticated)
	_, err = b.svc.AcceptInvitation(as(guest.ID), "tpi_forged")
	requireCode(t, err, errcode.BadUserInput)
	_, err = b.svc.AcceptInvitation(as(tm.dev.ID), tok)
	requireCode(t, err, errcode.Conflict, "a member cannot accept")
	m, err := b.svc.AcceptInvitation(as(guest.ID), tok)
	require.NoError(t, err)
	require.Equal(t, tenancy.RoleDeveloper, m.Role)
	role, err := b.svc.RoleOf(context.Background(), tm.ns.ID, guest.ID)
	require.NoError(t, err)
	require.Equal(t, tenancy.RoleDeveloper, role)

	_, err = b.svc.AcceptInvitation(as(tm.outsider.ID), tok)
	requireCode(t, err, errcode.BadUserInput)
	require.Contains(t, err.Error(), "already been used")

	got, err := b.svc.Invitation(context.Background(), inv.ID)
	require.NoError(t, err)
	require.Equal(t, tenancy.InvitationAccepted, got.Status(b.clock.Now()))
	require.Equal(t, guest.ID, *got.AcceptedBy)
	require.Equal(t, 1, b.count(`SELECT count(*) FROM audit_log WHERE action = 'member.add'
		AND (detail->>'invitation_id')::bigint = $1 AND detail->>'invited_email' = 'guest@example.com'
		AND (detail->>'email_matches')::boolean`, inv.ID))

	// Revoked.
	rev, err := b.svc.Invite(as(tm.owner.ID), tm.ns.ID, "revoked@example.com", tenancy.RoleOwner, 0)
	require.NoError(t, err)
	revTok := b.lastToken("revoked@example.com", "invitation")
	_, err = b.svc.RevokeInvitation(as(tm.admin.ID), rev.ID)
	requireCode(t, err, errcode.Forbidden, "only owners revoke an owner invitation")
	_, err = b.svc.RevokeInvitation(as(tm.outsider.ID), rev.ID)
	requireCode(t, err, errcode.NotFound)
	revoked, err := b.svc.RevokeInvitation(as(tm.owner.ID), rev.ID)
	require.NoError(t, err)
	require.Equal(t, tenancy.InvitationRevoked, revoked.Status(b.clock.Now()))
	_, err = b.svc.RevokeInvitation(as(tm.owner.ID), rev.ID)
	requireCode(t, err, errcode.Conflict)
	_, err = b.svc.AcceptInvitation(as(tm.outsider.ID), revTok)
	requireCode(t, err, errcode.BadUserInput)
	require.Contains(t, err.Error(), "revoked")
	_, err = b.svc.RevokeInvitation(as(tm.owner.ID), inv.ID)
	requireCode(t, err, errcode.Conflict, "an accepted invitation cannot be revoked")

	// Expired, accepted by someone other than the addressee.
	_, err = b.svc.Invite(as(tm.admin.ID), tm.ns.ID, "late@example.com", tenancy.RoleViewer, 2*time.Hour)
	require.NoError(t, err)
	lateTok := b.lastToken("late@example.com", "invitation")
	b.clock.Advance(2 * time.Hour)
	_, err = b.svc.AcceptInvitation(as(tm.outsider.ID), lateTok)
	requireCode(t, err, errcode.BadUserInput)
	require.Contains(t, err.Error(), "expired")
	_, err = b.svc.Invite(as(tm.admin.ID), tm.ns.ID, "late@example.com", tenancy.RoleViewer, 0)
	require.NoError(t, err, "an expired invitation is no longer pending")
	_, err = b.svc.AcceptInvitation(as(tm.outsider.ID), b.lastToken("late@example.com", "invitation"))
	require.NoError(t, err)
	require.Equal(t, 1, b.count(`SELECT count(*) FROM audit_log WHERE action = 'member.add'
		AND detail->>'invited_email' = 'late@example.com' AND detail->>'user_email' = $1
		AND NOT (detail->>'email_matches')::boolean`, tm.outsider.Email))

	list, err := b.svc.Invitations(context.Background(), tm.ns.ID, tenancy.PageArgs{})
	require.NoError(t, err)
	var statuses []tenancy.InvitationStatus
	for _, e := range list.Edges {
		statuses = append(statuses, e.Node.Status(b.clock.Now()))
	}
	require.Equal(t, []tenancy.InvitationStatus{tenancy.InvitationAccepted, tenancy.InvitationRevoked,
		tenancy.InvitationExpired, tenancy.InvitationAccepted}, statuses)
	require.Equal(t, []string{"member.add", "member.add"}, filter(b.outboxKinds(tenancy.NamespaceKey(tm.ns.ID))[4:], "member.add"))
}

func filter(ss []string, keep string) []string {
	var out []string
	for _, s := range ss {
		if s == keep {
			out = append(out, s)
		}
	}
	return out
}

func TestMemberLimitCountsPendingInvitations(t *testing.T) {
	t.Parallel()
	b := setup(t)
	owner := b.user("lim-owner@example.com")
	_, ns := b.personal(owner)
	_, err := b.db.Pool.Exec(context.Background(), `UPDATE namespaces SET member_limit = 3 WHERE id = $1`, ns.ID)
	require.NoError(t, err)
	u1 := b.user("lim-1@example.com")
	u2 := b.user("lim-2@example.com")

	_, err = b.svc.AddMember(as(owner.ID), ns.ID, u1.ID, tenancy.RoleViewer)
	require.NoError(t, err)
	inv, err := b.svc.Invite(as(owner.ID), ns.ID, "lim-pending@example.com", tenancy.RoleViewer, 0)
	require.NoError(t, err)
	// 2 members + 1 pending invitation = 3: full.
	_, err = b.svc.AddMember(as(owner.ID), ns.ID, u2.ID, tenancy.RoleViewer)
	requireCode(t, err, errcode.Conflict)
	_, err = b.svc.Invite(as(owner.ID), ns.ID, "lim-more@example.com", tenancy.RoleViewer, 0)
	requireCode(t, err, errcode.Conflict)

	// Accepting turns the invitation into a member: still within the limit.
	_, err = b.svc.AcceptInvitation(as(u2.ID), b.lastToken("lim-pending@example.com", "invitation"))
	require.NoError(t, err)
	_, err = b.svc.Invitation(context.Background(), inv.ID)
	require.NoError(t, err)

	// Room frees up when someone leaves, or an invitation is revoked or expires.
	require.NoError(t, b.svc.Leave(as(u1.ID), ns.ID))
	inv2, err := b.svc.Invite(as(owner.ID), ns.ID, "lim-next@example.com", tenancy.RoleViewer, time.Hour)
	require.NoError(t, err)
	_, err = b.svc.AddMember(as(owner.ID), ns.ID, u1.ID, tenancy.RoleViewer)
	requireCode(t, err, errcode.Conflict)
	_, err = b.svc.RevokeInvitation(as(owner.ID), inv2.ID)
	require.NoError(t, err)
	_, err = b.svc.Invite(as(owner.ID), ns.ID, "lim-next2@example.com", tenancy.RoleViewer, time.Hour)
	require.NoError(t, err)
	b.clock.Advance(time.Hour)
	_, err = b.svc.AddMember(as(owner.ID), ns.ID, u1.ID, tenancy.RoleViewer)
	require.NoError(t, err)
}

func TestInvitationsAreRateLimitedPerUser(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *tenancy.Config) { c.RateLimits.InvitePerUser = tenancy.RateLimit{Max: 2, Window: time.Hour} })
	owner := b.user("spam@example.com")
	_, ns := b.personal(owner)
	for i := range 2 {
		_, err := b.svc.Invite(as(owner.ID), ns.ID, strings.Repeat("x", i+1)+"@example.com", tenancy.RoleViewer, 0)
		require.NoError(t, err)
	}
	mails := b.count(`SELECT count(*) FROM mail_outbox WHERE kind = 'invitation'`)
	_, err := b.svc.Invite(as(owner.ID), ns.ID, "xxx@example.com", tenancy.RoleViewer, 0)
	requireCode(t, err, errcode.RateLimited)
	require.Equal(t, mails, b.count(`SELECT count(*) FROM mail_outbox WHERE kind = 'invitation'`))
}

func TestListsPageWithCursors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tm := b.team("pg")
	var seen []int64
	page := tenancy.PageArgs{First: 2}
	for {
		c, err := b.svc.Members(context.Background(), tm.ns.ID, page)
		require.NoError(t, err)
		require.LessOrEqual(t, len(c.Edges), 2)
		for _, e := range c.Edges {
			seen = append(seen, e.Node.UserID)
		}
		if !c.PageInfo.HasNextPage {
			break
		}
		page.After = c.PageInfo.EndCursor
	}
	require.Equal(t, []int64{tm.owner.ID, tm.admin.ID, tm.dev.ID, tm.viewer.ID}, seen)

	_, err := b.svc.Members(context.Background(), tm.ns.ID, tenancy.PageArgs{First: 101})
	requireCode(t, err, errcode.BadUserInput)
	_, err = b.svc.Members(context.Background(), tm.ns.ID, tenancy.PageArgs{After: "bogus!"})
	requireCode(t, err, errcode.BadUserInput)
}

func TestAuditLogAccess(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tm := b.team("au")
	nsKey := tenancy.NamespaceKey(tm.ns.ID)

	c, err := b.svc.AuditLog(as(tm.admin.ID), tenancy.AuditFilter{Target: nsKey}, tenancy.PageArgs{First: 2})
	require.NoError(t, err)
	require.Len(t, c.Edges, 2)
	require.True(t, c.PageInfo.HasNextPage)
	require.Equal(t, "member.add", c.Edges[0].Node.Action, "newest first")
	require.Greater(t, c.Edges[0].Node.ID, c.Edges[1].Node.ID)
	require.True(t, c.Edges[0].Node.IP.IsValid())
	next, err := b.svc.AuditLog(as(tm.admin.ID), tenancy.AuditFilter{Target: nsKey}, tenancy.PageArgs{First: 10, After: c.PageInfo.EndCursor})
	require.NoError(t, err)
	require.Len(t, next.Edges, 2) // 4 entries: namespace.create + 3 member.add
	require.Equal(t, "namespace.create", next.Edges[1].Node.Action)

	for _, ctx := range []context.Context{as(tm.dev.ID), as(tm.outsider.ID)} {
		_, err := b.svc.AuditLog(ctx, tenancy.AuditFilter{Target: nsKey}, tenancy.PageArgs{})
		requireCode(t, err, errcode.Forbidden)
	}
	_, err = b.svc.AuditLog(as(tm.owner.ID), tenancy.AuditFilter{}, tenancy.PageArgs{})
	requireCode(t, err, errcode.Forbidden, "only platform admins read the whole log")
	_, err = b.svc.AuditLog(as(tm.owner.ID), tenancy.AuditFilter{Target: tenancy.OrgKey(tm.org.ID)}, tenancy.PageArgs{})
	require.NoError(t, err)
	_, err = b.svc.AuditLog(anon(), tenancy.AuditFilter{Target: nsKey}, tenancy.PageArgs{})
	requireCode(t, err, errcode.Unauthenticated)

	all, err := b.svc.AuditLog(admin(tm.outsider.ID), tenancy.AuditFilter{Action: "user.signup"}, tenancy.PageArgs{First: 100})
	require.NoError(t, err)
	require.Len(t, all.Edges, 5)
	since, err := b.svc.AuditLog(system("cli"), tenancy.AuditFilter{Since: b.clock.Now().Add(time.Second)}, tenancy.PageArgs{})
	require.NoError(t, err)
	require.Empty(t, since.Edges)
}
