package authz_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/casbin/casbin/v2/model"
	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/schema"
	"github.com/tenantplane/tenantplane/tenancy/authz"
)

// lineAdapter serves the embedded policy file and a fixed set of
// assignments, so these tests exercise the model, the policy and the role
// manager without a database. Filtered loads honour authz.Filter.
type lineAdapter struct{ assignments [][]string }

func (l *lineAdapter) LoadPolicy(m model.Model) error {
	for _, raw := range strings.Split(string(schema.CasbinPolicy), "\n") {
		raw = strings.TrimSpace(raw)
		if raw == "" || strings.HasPrefix(raw, "#") {
			continue
		}
		f := strings.Split(raw, ", ")
		ptype := f[0]
		if ptype == "p" {
			ptype, _ = authz.PolicyType(f[2])
		}
		if err := m.AddPolicy(f[0], ptype, f[1:]); err != nil {
			return err
		}
	}
	for _, a := range l.assignments {
		if err := m.AddPolicy("g", "g", a); err != nil {
			return err
		}
	}
	return nil
}

func (l *lineAdapter) LoadFilteredPolicy(m model.Model, filter any) error {
	f := filter.(authz.Filter)
	for _, a := range l.assignments {
		if a[0] == authz.Subject(f.UserID) && (f.Domain == authz.Platform || a[2] == string(f.Domain)) {
			if err := m.AddPolicy("g", "g", a); err != nil {
				return err
			}
		}
	}
	return nil
}

func (l *lineAdapter) IsFiltered() bool                                          { return false }
func (l *lineAdapter) SavePolicy(model.Model) error                              { return nil }
func (l *lineAdapter) AddPolicy(string, string, []string) error                  { return nil }
func (l *lineAdapter) RemovePolicy(string, string, []string) error               { return nil }
func (l *lineAdapter) RemoveFilteredPolicy(string, string, int, ...string) error { return nil }

func newAuthorizer(t *testing.T, assignments ...[]string) (*authz.Authorizer, *lineAdapter) {
	t.Helper()
	ad := &lineAdapter{assignments: assignments}
	a, err := authz.New(context.Background(), authz.Config{Adapter: ad})
	require.NoError(t, err)
	return a, ad
}

// TestPolicy states, for every role, what it may do in its own domain.
func TestPolicy(t *testing.T) {
	t.Parallel()
	ns, org := authz.NamespaceDomain(7), authz.OrgDomain(3)
	a, _ := newAuthorizer(t,
		[]string{"user:1", "owner", "ns:7"},
		[]string{"user:2", "admin", "ns:7"},
		[]string{"user:3", "developer", "ns:7"},
		[]string{"user:4", "viewer", "ns:7"},
		[]string{"user:5", "org_owner", "org:3"},
		[]string{"user:6", "org_billing", "org:3"},
		[]string{"user:7", "org_member", "org:3"},
		[]string{"user:8", "platform_admin", "*"},
	)
	nsActions := []authz.Action{
		authz.NamespaceRead, authz.MemberRead, authz.NamespaceUsage, authz.NamespaceKubeconfig,
		authz.NamespaceHost, authz.MemberAdd, authz.MemberUpdate, authz.MemberRemove, authz.InvitationRead, authz.InvitationCreate, authz.InvitationRevoke,
		authz.NamespaceDelete, authz.NamespaceTransfer,
	}
	orgActions := []authz.Action{
		authz.OrgRead, authz.OrgMemberRead, authz.OrgBilling, authz.OrgLedger,
		authz.OrgUpdate, authz.OrgTransfer, authz.OrgMemberAdd, authz.OrgMemberUpdate, authz.OrgMemberRemove, authz.NamespaceCreate,
	}
	platformActions := []authz.Action{authz.UserRead, authz.UserDisable, authz.UserRevokeKubeconfigs, authz.AuditRead, authz.NamespaceSuspend, authz.BillingGiftCode}
	pa := append([]authz.Action{authz.NamespaceRead, authz.MemberRead, authz.NamespaceUsage, authz.InvitationRead,
		authz.OrgRead, authz.OrgMemberRead, authz.OrgLedger}, platformActions...)
	first := func(list []authz.Action, n int) []authz.Action { return list[:n] }
	// What each role may do in its namespace, in its org (namespace
	// actions asked in the org's domain included) and on the platform.
	cases := []struct {
		user                    int64
		role                    string
		inNs, inOrg, inPlatform []authz.Action
	}{
		{1, "owner", nsActions, nil, nil},
		{2, "admin", first(nsActions, 11), nil, nil},
		{3, "developer", first(nsActions, 4), nil, nil},
		{4, "viewer", first(nsActions, 4), nil, nil},
		{5, "org_owner", nil, append(slices.Clone(orgActions), nsActions...), nil},
		{6, "org_billing", nil, first(orgActions, 4), nil},
		{7, "org_member", nil, first(orgActions, 2), nil},
		{8, "platform_admin", pa, pa, pa}, // its role holds in every domain
	}
	ctx := context.Background()
	all := slices.Concat(nsActions, orgActions, platformActions)
	for _, c := range cases {
		for _, act := range all {
			require.Equal(t, slices.Contains(c.inNs, act), a.Can(ctx, c.user, act, ns), "%s: %s in %s", c.role, act, ns)
			require.Equal(t, slices.Contains(c.inOrg, act), a.Can(ctx, c.user, act, org), "%s: %s in %s", c.role, act, org)
			require.Equal(t, slices.Contains(c.inPlatform, act), a.Can(ctx, c.user, act, authz.Platform), "%s: %s", c.role, act)
			if c.role != "platform_admin" {
				require.False(t, a.Can(ctx, c.user, act, authz.NamespaceDomain(8)), "%s: %s in another namespace", c.role, act)
				require.False(t, a.Can(ctx, c.user, act, authz.OrgDomain(4)), "%s: %s in another org", c.role, act)
			}
		}
	}
	require.ElementsMatch(t, []string{"owner"}, a.Roles(1, ns))
}

func TestCheckHidesOtherTenants(t *testing.T) {
	t.Parallel()
	a, _ := newAuthorizer(t,
		[]string{"user:1", "viewer", "ns:7"},
		[]string{"user:2", "org_member", "org:3"},
	)
	ctx := context.Background()
	ns, org := authz.NamespaceDomain(7), authz.OrgDomain(3)
	is := func(err error, code errcode.Code) bool { return errcode.Of(err) == code }

	require.NoError(t, a.Check(ctx, 1, authz.NamespaceRead, ns, org))
	require.True(t, is(a.Check(ctx, 1, authz.NamespaceDelete, ns, org), errcode.Forbidden))
	require.True(t, is(a.Check(ctx, 1, authz.NamespaceRead, authz.NamespaceDomain(8)), errcode.NotFound))
	require.True(t, is(a.Check(ctx, 2, authz.NamespaceRead, ns), errcode.NotFound))
	require.True(t, is(a.Check(ctx, 2, authz.NamespaceRead, ns, org), errcode.Forbidden),
		"an org member knows the org's namespaces exist")
	require.True(t, is(a.Check(ctx, 1, authz.AuditRead, authz.Platform), errcode.Forbidden))
	require.True(t, is(a.Check(ctx, 0, authz.NamespaceRead, ns), errcode.Unauthenticated))
	require.True(t, is(a.Check(ctx, 1, "nothing.read", ns), errcode.Forbidden), "unknown objects are never allowed")
	require.True(t, is(a.Check(ctx, 2, "nothing.read", ns), errcode.NotFound))
}

func TestRefreshDiffs(t *testing.T) {
	t.Parallel()
	a, ad := newAuthorizer(t,
		[]string{"user:1", "viewer", "ns:7"},
		[]string{"user:1", "viewer", "ns:8"},
	)
	ctx := context.Background()
	ad.assignments = [][]string{
		{"user:1", "owner", "ns:7"},
		{"user:1", "platform_admin", "*"},
	}
	require.NoError(t, a.Refresh(ctx, 1, authz.NamespaceDomain(7)))
	require.True(t, a.Can(ctx, 1, authz.NamespaceDelete, authz.NamespaceDomain(7)))
	require.True(t, a.Can(ctx, 1, authz.NamespaceRead, authz.NamespaceDomain(8)), "ns:8 not refreshed yet")
	require.False(t, a.Can(ctx, 1, authz.AuditRead, authz.Platform))

	require.NoError(t, a.Refresh(ctx, 1, authz.Platform))
	require.True(t, a.Can(ctx, 1, authz.AuditRead, authz.Platform))
	require.Empty(t, a.Roles(1, authz.NamespaceDomain(8)))
	require.True(t, a.Can(ctx, 1, authz.NamespaceRead, authz.NamespaceDomain(8)), "as a platform admin")
	require.False(t, a.Can(ctx, 1, authz.NamespaceKubeconfig, authz.NamespaceDomain(8)))
}

func TestDomainAndAction(t *testing.T) {
	t.Parallel()
	cases := []struct {
		d    authz.Domain
		kind string
	}{
		{authz.NamespaceDomain(7), "ns"},
		{authz.OrgDomain(3), "org"},
		{authz.Platform, "platform"},
		{"ns:0", ""},
		{"ns:x", ""},
		{"team:3", ""},
		{"", ""},
	}
	for _, c := range cases {
		require.Equal(t, c.kind, c.d.Kind(), string(c.d))
	}
	obj, act := authz.NamespaceRead.Split()
	require.Equal(t, "namespace", obj)
	require.Equal(t, "read", act)
	require.True(t, authz.MemberUpdate.Valid())
	for _, bad := range []authz.Action{"", "namespace", ".read", "namespace.", "a.b.c"} {
		require.False(t, bad.Valid(), string(bad))
	}
}

func TestEveryPolicyObjectHasAType(t *testing.T) {
	t.Parallel()
	for _, raw := range strings.Split(string(schema.CasbinPolicy), "\n") {
		if f := strings.Split(strings.TrimSpace(raw), ", "); f[0] == "p" {
			_, ok := authz.PolicyType(f[2])
			require.True(t, ok, "object %q of %q", f[2], raw)
			require.True(t, authz.Action(f[2]+"."+f[3]).Valid(), raw)
		}
	}
}

// TestGrantsDecideAsTheEnforcer compares Can, which decides from the
// grants the enforcer computed per role, with the enforcer's own answer
// for every action, every role and a spread of domains, before and after
// assignments change.
func TestGrantsDecideAsTheEnforcer(t *testing.T) {
	t.Parallel()
	roles := []string{"owner", "admin", "developer", "viewer", "org_owner", "org_billing", "org_member", "auditor"}
	var lines [][]string
	for u := 1; u <= 16; u++ {
		// Each user holds a role or two in a few namespaces and orgs,
		// some of them the role of another kind of domain.
		for d := 1; d <= 4; d++ {
			if (u+d)%3 == 0 {
				lines = append(lines, []string{authz.Subject(int64(u)), roles[(u*d)%len(roles)], string(authz.NamespaceDomain(int64(d)))})
			}
			if (u*d)%5 == 1 {
				lines = append(lines, []string{authz.Subject(int64(u)), roles[(u+d)%len(roles)], string(authz.OrgDomain(int64(d)))})
			}
		}
	}
	lines = append(lines, []string{"user:16", "platform_admin", "*"})
	a, ad := newAuthorizer(t, lines...)
	ctx := context.Background()

	actions := []authz.Action{
		authz.NamespaceRead, authz.NamespaceKubeconfig, authz.NamespaceCreate, authz.NamespaceDelete,
		authz.NamespaceTransfer, authz.NamespaceSuspend, authz.MemberRead, authz.MemberAdd, authz.MemberUpdate,
		authz.MemberRemove, authz.InvitationRead, authz.InvitationCreate, authz.InvitationRevoke, authz.OrgRead,
		authz.OrgUpdate, authz.OrgBilling, authz.OrgTransfer, authz.OrgMemberRead, authz.OrgMemberAdd,
		authz.OrgMemberUpdate, authz.OrgMemberRemove, authz.UserRead, authz.UserDisable, authz.AuditRead,
		"namespace.fly", "nothing.read",
	}
	domains := []authz.Domain{authz.Platform}
	for d := int64(1); d <= 5; d++ {
		domains = append(domains, authz.NamespaceDomain(d), authz.OrgDomain(d))
	}
	compare := func(t *testing.T) {
		t.Helper()
		allowed := 0
		for u := int64(1); u <= 17; u++ {
			for _, act := range actions {
				for _, d := range domains {
					want := authz.EnforcerDecides(a, u, act, d)
					require.Equal(t, want, a.Can(ctx, u, act, d), "user %d, %s in %s", u, act, d)
					if want {
						allowed++
					}
				}
			}
		}
		require.Greater(t, allowed, 100, "the comparison covers allowed checks too")
	}
	compare(t)
	require.Zero(t, authz.EnforcerChecks(a), "every check decided from the grants")

	// Change one user's roles; the grants stay, the assignments move.
	ad.assignments = append(ad.assignments, []string{"user:3", "owner", "ns:5"}, []string{"user:3", "org_owner", "org:5"})
	require.NoError(t, a.Refresh(ctx, 3, authz.Platform))
	require.True(t, a.Can(ctx, 3, authz.NamespaceDelete, authz.NamespaceDomain(5)))
	compare(t)
	require.NoError(t, a.Reload(ctx))
	compare(t)
	require.Zero(t, authz.EnforcerChecks(a))

	// A domain the assignments do not index goes to the enforcer.
	require.False(t, a.Can(ctx, 3, authz.NamespaceRead, "team:1"))
	require.Equal(t, int64(1), authz.EnforcerChecks(a))
}

// TestCanDoesNotAllocate pins the cost of a check decided from the
// grants: no garbage, so no collection to stall the next one. It does not
// run in parallel: AllocsPerRun counts every allocation of the process.
func TestCanDoesNotAllocate(t *testing.T) {
	a, _ := newAuthorizer(t, []string{"user:1", "viewer", "ns:7"}, []string{"user:2", "platform_admin", "*"})
	ctx := context.Background()
	for _, c := range []struct {
		user   int64
		action authz.Action
		domain authz.Domain
	}{
		{1, authz.NamespaceRead, authz.NamespaceDomain(7)},
		{1, authz.NamespaceDelete, authz.NamespaceDomain(7)},
		{1, authz.NamespaceRead, authz.NamespaceDomain(8)},
		{2, authz.AuditRead, authz.Platform},
	} {
		require.Zero(t, testing.AllocsPerRun(100, func() { a.Can(ctx, c.user, c.action, c.domain) }),
			"user %d, %s in %s", c.user, c.action, c.domain)
	}
}
