package authzstore_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/internal/testenv"
	"github.com/tenantplane/tenantplane/tenancy/authz"
)

// EnforceTargetP99 is the latency a single check must stay under at the
// 99th percentile with benchMemberships memberships loaded.
const EnforceTargetP99 = 10 * time.Microsecond

// enforceSamples is how many checks BenchmarkEnforce times.
const enforceSamples = 300_000

const (
	benchUsers       = 25_000
	benchNamespaces  = 50_000
	benchMemberships = 100_000 // two per namespace
)

// seedMemberships fills the tables in bulk: every user owns a personal org,
// each org owns two namespaces, each namespace has two members.
const seedMemberships = `
WITH u AS (
    INSERT INTO users (email, status, platform_admin, created_at, updated_at)
    SELECT 'bench' || g || '@example.com', 'active', g = 1, now(), now()
      FROM generate_series(1, $1::int) g
    RETURNING id
), o AS (
    INSERT INTO orgs (name, created_at, updated_at)
    SELECT 'bench-org-' || id, now(), now() FROM u
    RETURNING id
)
INSERT INTO org_members (org_id, user_id, role, created_at)
SELECT o.id, o.id, 'owner', now() FROM o`

const seedNamespaces = `
INSERT INTO namespaces (org_id, name, state, created_at, updated_at)
SELECT 1 + (g % $2::int), 'bench-ns-' || g, 'active', now(), now()
  FROM generate_series(1, $1::int) g`

const seedNamespaceMembers = `
INSERT INTO namespace_members (namespace_id, user_id, role, created_at)
SELECT n.id, 1 + ((n.id * 7 + k) % $1::int),
       (ARRAY['owner', 'admin', 'developer', 'viewer'])[1 + ((n.id + k) % 4)], now()
  FROM namespaces n CROSS JOIN generate_series(0, 1) k`

func seedBench(b *testing.B, pool *pgxpool.Pool) {
	b.Helper()
	ctx := context.Background()
	_, err := pool.Exec(ctx, seedMemberships, benchUsers)
	require.NoError(b, err)
	_, err = pool.Exec(ctx, seedNamespaces, benchNamespaces, benchUsers)
	require.NoError(b, err)
	_, err = pool.Exec(ctx, seedNamespaceMembers, benchUsers)
	require.NoError(b, err)
	var n int
	require.NoError(b, pool.QueryRow(ctx, `SELECT count(*) FROM namespace_members`).Scan(&n))
	require.Equal(b, benchMemberships, n)
}

// BenchmarkEnforce checks random (user, action, namespace) requests, most
// of them denied (the slow path: every role that grants the action is
// probed), through Authorizer.Can, against an authorizer holding 100,000
// namespace memberships loaded from Postgres. Can decides from the grants
// the enforcer computed per role (authz.Authorizer.rebuildGrants). It
// reports p50 and p99 in nanoseconds and p99 over the target.
func BenchmarkEnforce(b *testing.B) {
	db := testenv.Postgres(b)
	seedBench(b, db.Pool)
	start := time.Now()
	a := newAuthorizer(b, db.Pool)
	b.Logf("loaded %d memberships in %s", benchMemberships, time.Since(start).Round(time.Millisecond))

	ctx := context.Background()
	actions := []authz.Action{authz.NamespaceRead, authz.MemberUpdate, authz.NamespaceDelete, authz.InvitationCreate}
	type req struct {
		user   int64
		action authz.Action
		domain authz.Domain
	}
	// Half the requests come from a member of the namespace asked about,
	// half from a random user, who is almost never one.
	rows, err := db.Pool.Query(ctx, `SELECT user_id, namespace_id FROM namespace_members ORDER BY random() LIMIT 2048`)
	require.NoError(b, err)
	var members [][2]int64
	for rows.Next() {
		var m [2]int64
		require.NoError(b, rows.Scan(&m[0], &m[1]))
		members = append(members, m)
	}
	require.NoError(b, rows.Err())
	rnd := rand.New(rand.NewPCG(1, 2))
	reqs := make([]req, 4096)
	allowed := 0
	for i := range reqs {
		reqs[i] = req{
			user:   1 + rnd.Int64N(benchUsers),
			action: actions[rnd.IntN(len(actions))],
			domain: authz.NamespaceDomain(1 + rnd.Int64N(benchNamespaces)),
		}
		if i%2 == 0 {
			m := members[i/2]
			reqs[i].user, reqs[i].domain = m[0], authz.NamespaceDomain(m[1])
		}
		if a.Can(ctx, reqs[i].user, reqs[i].action, reqs[i].domain) {
			allowed++
		}
	}
	b.Logf("%d of %d requests allowed", allowed, len(reqs))

	// A fixed number of checks, whatever b.N, so that `make bench`
	// (-benchtime 1x) still measures percentiles.
	n := max(b.N, enforceSamples)
	lat := make([]time.Duration, n)
	b.ResetTimer()
	for i := range n {
		r := reqs[i%len(reqs)]
		t0 := time.Now()
		a.Can(ctx, r.user, r.action, r.domain)
		lat[i] = time.Since(t0)
	}
	b.StopTimer()
	slices.Sort(lat)
	p50, p99 := lat[len(lat)*50/100], lat[len(lat)*99/100]
	b.ReportMetric(float64(p50.Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(p99.Nanoseconds()), "p99-ns")
	b.ReportMetric(float64(p99)/float64(EnforceTargetP99), "p99/target")
}
