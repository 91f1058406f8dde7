package authzstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/internal/testenv"
	"github.com/tenantplane/tenantplane/tenancy/authz"
	"github.com/tenantplane/tenantplane/tenancy/authz/authzstore"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// fixture inserts rows straight into the membership tables, the way the
// tenancy store leaves them.
type fixture struct {
	t    testing.TB
	pool *pgxpool.Pool
	n    int
}

const (
	insertUser = `INSERT INTO users (email, status, platform_admin, created_at, updated_at)
VALUES ($1, 'active', $2, now(), now()) RETURNING id`
	insertOrg = `INSERT INTO orgs (name, created_at, updated_at)
VALUES ($1, now(), now()) RETURNING id`
	insertOrgMember = `INSERT INTO org_members (org_id, user_id, role, created_at)
VALUES ($1, $2, $3, now())`
	insertNamespace = `INSERT INTO namespaces (org_id, name, state, created_at, updated_at)
VALUES ($1, $2, 'active', now(), now()) RETURNING id`
	insertNamespaceMember = `INSERT INTO namespace_members (namespace_id, user_id, role, created_at)
VALUES ($1, $2, $3, now())`
	deleteNamespaceMember = `DELETE FROM namespace_members WHERE namespace_id = $1 AND user_id = $2`
	updateNamespaceRole   = `UPDATE namespace_members SET role = $3 WHERE namespace_id = $1 AND user_id = $2`
	setUserStatus         = `UPDATE users SET status = $2, updated_at = now() WHERE id = $1`
	setPlatformAdmin      = `UPDATE users SET platform_admin = $2, updated_at = now() WHERE id = $1`
)

func (f *fixture) next() int { f.n++; return f.n }

func (f *fixture) exec(q string, args ...any) {
	f.t.Helper()
	_, err := f.pool.Exec(context.Background(), q, args...)
	require.NoError(f.t, err)
}

func (f *fixture) id(q string, args ...any) int64 {
	f.t.Helper()
	var id int64
	require.NoError(f.t, f.pool.QueryRow(context.Background(), q, args...).Scan(&id))
	return id
}

func (f *fixture) user(admin bool) int64 {
	return f.id(insertUser, fmt.Sprintf("u%d@example.com", f.next()), admin)
}

func (f *fixture) org(owner int64) int64 {
	id := f.id(insertOrg, fmt.Sprintf("org-%d", f.next()))
	f.exec(insertOrgMember, id, owner, "owner")
	return id
}

func (f *fixture) namespace(org int64) int64 {
	return f.id(insertNamespace, org, fmt.Sprintf("ns-%d", f.next()))
}

func setup(t *testing.T) (*fixture, *testenv.DB) {
	t.Helper()
	db := testenv.Postgres(t)
	return &fixture{t: t, pool: db.Pool}, db
}

func newAuthorizer(t testing.TB, pool *pgxpool.Pool) *authz.Authorizer {
	t.Helper()
	ad, err := authzstore.NewAdapter(pool)
	require.NoError(t, err)
	a, err := authz.New(context.Background(), authz.Config{Adapter: ad})
	require.NoError(t, err)
	return a
}

func TestAdapterLoadsAssignmentsFromMembershipTables(t *testing.T) {
	t.Parallel()
	f, db := setup(t)
	ctx := context.Background()

	owner, dev, billing, admin, stranger := f.user(false), f.user(false), f.user(false), f.user(true), f.user(false)
	org := f.org(owner)
	f.exec(insertOrgMember, org, billing, "billing")
	ns := f.namespace(org)
	f.exec(insertNamespaceMember, ns, owner, "owner")
	f.exec(insertNamespaceMember, ns, dev, "developer")
	nsD, orgD := authz.NamespaceDomain(ns), authz.OrgDomain(org)

	a := newAuthorizer(t, db.Pool)
	require.True(t, a.Loaded())

	cases := []struct {
		user   int64
		action authz.Action
		domain authz.Domain
		want   bool
	}{
		{owner, authz.NamespaceDelete, nsD, true},
		{owner, authz.OrgUpdate, orgD, true},
		{dev, authz.NamespaceRead, nsD, true},
		{dev, authz.NamespaceKubeconfig, nsD, true},
		{dev, authz.MemberRemove, nsD, false},
		{dev, authz.OrgRead, orgD, false},
		{billing, authz.OrgBilling, orgD, true},
		{billing, authz.OrgUpdate, orgD, false},
		{billing, authz.NamespaceRead, nsD, false},
		{billing, authz.NamespaceRead, orgD, false},
		{owner, authz.NamespaceRead, orgD, true}, // org owners govern the org's namespaces
		{admin, authz.NamespaceRead, nsD, true},
		{admin, authz.AuditRead, authz.Platform, true},
		{admin, authz.NamespaceDelete, nsD, false},
		{stranger, authz.NamespaceRead, nsD, false},
		{stranger, authz.AuditRead, authz.Platform, false},
		{0, authz.NamespaceRead, nsD, false},
	}
	for _, c := range cases {
		require.Equal(t, c.want, a.Can(ctx, c.user, c.action, c.domain), "user %d %s in %s", c.user, c.action, c.domain)
	}

	require.NoError(t, a.Check(ctx, owner, authz.NamespaceDelete, nsD))
	require.ErrorIs(t, a.Check(ctx, dev, authz.NamespaceDelete, nsD), &errcode.Error{Code: errcode.Forbidden})
	require.ErrorIs(t, a.Check(ctx, stranger, authz.NamespaceDelete, nsD, orgD), &errcode.Error{Code: errcode.NotFound})
	require.ErrorIs(t, a.Check(ctx, billing, authz.MemberRead, nsD, orgD), &errcode.Error{Code: errcode.Forbidden},
		"an org member sees the org, so the namespace is not hidden from it")
	require.ErrorIs(t, a.Check(ctx, stranger, authz.AuditRead, authz.Platform), &errcode.Error{Code: errcode.Forbidden})
	require.ErrorIs(t, a.Check(ctx, 0, authz.NamespaceRead, nsD), &errcode.Error{Code: errcode.Unauthenticated})
	require.ElementsMatch(t, []string{"developer"}, a.Roles(dev, nsD))
}

func TestDisabledUsersHoldNoRole(t *testing.T) {
	t.Parallel()
	f, db := setup(t)
	ctx := context.Background()
	u := f.user(true)
	org := f.org(u)
	f.exec(setUserStatus, u, "disabled")

	a := newAuthorizer(t, db.Pool)
	require.False(t, a.Can(ctx, u, authz.OrgRead, authz.OrgDomain(org)))
	require.False(t, a.Can(ctx, u, authz.AuditRead, authz.Platform))

	f.exec(setUserStatus, u, "active")
	require.NoError(t, a.Refresh(ctx, u, authz.Platform))
	require.True(t, a.Can(ctx, u, authz.OrgRead, authz.OrgDomain(org)))
	require.True(t, a.Can(ctx, u, authz.AuditRead, authz.Platform))
}

func TestRefreshAppliesOneUserInOneDomain(t *testing.T) {
	t.Parallel()
	f, db := setup(t)
	ctx := context.Background()
	owner, u := f.user(false), f.user(false)
	org := f.org(owner)
	ns1, ns2 := f.namespace(org), f.namespace(org)
	f.exec(insertNamespaceMember, ns1, u, "viewer")
	f.exec(insertNamespaceMember, ns2, u, "viewer")
	a := newAuthorizer(t, db.Pool)
	d1, d2 := authz.NamespaceDomain(ns1), authz.NamespaceDomain(ns2)

	f.exec(updateNamespaceRole, ns1, u, "admin")
	f.exec(deleteNamespaceMember, ns2, u)
	require.False(t, a.Can(ctx, u, authz.InvitationCreate, d1), "nothing changes before a refresh")

	require.NoError(t, a.Refresh(ctx, u, d1))
	require.True(t, a.Can(ctx, u, authz.InvitationCreate, d1))
	require.Equal(t, []string{"admin"}, a.Roles(u, d1))
	require.True(t, a.Can(ctx, u, authz.NamespaceRead, d2), "a refresh of ns1 leaves ns2 alone")

	require.NoError(t, a.Refresh(ctx, u, d2))
	require.False(t, a.Can(ctx, u, authz.NamespaceRead, d2))
	require.Empty(t, a.Roles(u, d2))

	require.Error(t, a.Refresh(ctx, u, "ns:abc"))
	require.Error(t, a.Refresh(ctx, 0, d1))
}

func TestAdapterIsReadOnly(t *testing.T) {
	t.Parallel()
	_, db := setup(t)
	ad, err := authzstore.NewAdapter(db.Pool)
	require.NoError(t, err)
	require.ErrorIs(t, ad.AddPolicy("g", "g", []string{"user:1", "owner", "ns:1"}), authzstore.ErrReadOnly)
	require.ErrorIs(t, ad.RemovePolicy("g", "g", []string{"user:1", "owner", "ns:1"}), authzstore.ErrReadOnly)
	require.ErrorIs(t, ad.RemoveFilteredPolicy("g", "g", 0, "user:1"), authzstore.ErrReadOnly)
	require.ErrorIs(t, ad.SavePolicy(nil), authzstore.ErrReadOnly)
	require.False(t, ad.IsFiltered())
	require.Error(t, ad.LoadFilteredPolicy(nil, "user:1"), "a filter must be an authz.Filter")
}

func TestParsePolicy(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		text string
		want [][]string
		err  bool
	}{
		{"lines and comments", "# c\n\np, viewer, namespace, read\n  p,owner,namespace,delete  \n",
			[][]string{{"p", "viewer", "namespace", "read"}, {"p", "owner", "namespace", "delete"}}, false},
		{"role inheritance", "g, owner, admin, *\n", [][]string{{"g", "owner", "admin", "*"}}, false},
		{"assignments are refused", "g, user:1, owner, ns:1\n", nil, true},
		{"short line", "p, viewer, namespace\n", nil, true},
		{"empty", "# nothing\n", nil, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got, err := authzstore.ParsePolicy([]byte(c.text))
			if c.err {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, c.want, got)
		})
	}
}

// replica is one server's view: an authorizer kept current by a listener.
type replica struct {
	a    *authz.Authorizer
	pool *pgxpool.Pool
}

func startReplica(t *testing.T, url string) replica {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pool, err := pgxpool.New(ctx, url)
	require.NoError(t, err)
	a := newAuthorizer(t, pool)
	l, err := authzstore.NewListener(authzstore.ListenerConfig{Pool: pool, Enforcer: a, ReconnectDelay: 100 * time.Millisecond})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
		pool.Close()
	})
	select {
	case <-l.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("listener not ready")
	}
	return replica{a: a, pool: pool}
}

// within asserts that cond holds for every replica within d.
func within(t *testing.T, d time.Duration, rs []replica, cond func(*authz.Authorizer) bool, what string) {
	t.Helper()
	start := time.Now()
	for _, r := range rs {
		for !cond(r.a) {
			if time.Since(start) > d {
				t.Fatalf("%s: not within %s", what, d)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	t.Logf("%s: %s", what, time.Since(start))
}

func TestRemovedMemberLosesAccessOnEveryReplicaWithinASecond(t *testing.T) {
	t.Parallel()
	f, db := setup(t)
	ctx := context.Background()
	owner, u := f.user(false), f.user(false)
	org := f.org(owner)
	ns := f.namespace(org)
	f.exec(insertNamespaceMember, ns, u, "developer")
	d := authz.NamespaceDomain(ns)

	rs := []replica{startReplica(t, db.URL), startReplica(t, db.URL)}
	for _, r := range rs {
		require.True(t, r.a.Can(ctx, u, authz.NamespaceRead, d))
	}
	can := func(user int64, act authz.Action, dom authz.Domain) func(*authz.Authorizer) bool {
		return func(a *authz.Authorizer) bool { return a.Can(ctx, user, act, dom) }
	}
	not := func(c func(*authz.Authorizer) bool) func(*authz.Authorizer) bool {
		return func(a *authz.Authorizer) bool { return !c(a) }
	}

	f.exec(deleteNamespaceMember, ns, u)
	within(t, time.Second, rs, not(can(u, authz.NamespaceRead, d)), "removed member loses access")

	f.exec(insertNamespaceMember, ns, u, "viewer")
	within(t, time.Second, rs, can(u, authz.NamespaceRead, d), "added member gains access")
	require.False(t, rs[0].a.Can(ctx, u, authz.MemberAdd, d))

	f.exec(updateNamespaceRole, ns, u, "owner")
	within(t, time.Second, rs, can(u, authz.NamespaceDelete, d), "promoted member gains the role")

	f.exec(setUserStatus, owner, "disabled")
	within(t, time.Second, rs, not(can(owner, authz.OrgRead, authz.OrgDomain(org))), "disabled user loses every role")

	f.exec(setPlatformAdmin, u, true)
	within(t, time.Second, rs, can(u, authz.AuditRead, authz.Platform), "new platform admin")
}

func TestListenerReloadsEverythingAfterReconnecting(t *testing.T) {
	t.Parallel()
	f, db := setup(t)
	ctx := context.Background()
	owner, u := f.user(false), f.user(false)
	org := f.org(owner)
	ns := f.namespace(org)
	f.exec(insertNamespaceMember, ns, u, "developer")
	d := authz.NamespaceDomain(ns)
	r := startReplica(t, db.URL)
	require.True(t, r.a.Can(ctx, u, authz.NamespaceRead, d))

	// A change whose notification never arrives: only a reload can see it.
	f.exec(`ALTER TABLE namespace_members DISABLE TRIGGER namespace_members_authz_notify`)
	f.exec(deleteNamespaceMember, ns, u)
	time.Sleep(200 * time.Millisecond)
	require.True(t, r.a.Can(ctx, u, authz.NamespaceRead, d), "no notification, no change")

	var killed int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND query ILIKE 'listen %'`).Scan(&killed))
	require.Equal(t, 1, killed)
	within(t, 5*time.Second, []replica{r}, func(a *authz.Authorizer) bool {
		return !a.Can(ctx, u, authz.NamespaceRead, d)
	}, "reload after reconnect")
}
