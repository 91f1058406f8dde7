package tenancystore_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/internal/testenv"
	"github.com/tenantplane/tenantplane/tenancy"
	"github.com/tenantplane/tenantplane/tenancy/tenancystore"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// queryCounter counts the statements sent through a pool.
type queryCounter struct {
	n   atomic.Int64
	mu  sync.Mutex
	sql []string
}

func (c *queryCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	c.mu.Lock()
	c.sql = append(c.sql, d.SQL)
	c.mu.Unlock()
	return ctx
}

func (c *queryCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (c *queryCounter) reset() {
	c.n.Store(0)
	c.mu.Lock()
	c.sql = nil
	c.mu.Unlock()
}

type fixture struct {
	db      *testenv.DB
	svc     *tenancy.Service // over an uncounted pool, to build data
	counted *tenancy.Service // over a counted pool
	queries *queryCounter
	now     time.Time
}

func setup(t *testing.T) *fixture {
	t.Helper()
	db := testenv.Postgres(t)
	cfg := tenancy.DefaultConfig()
	cfg.Argon2 = tenancy.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1, KeyLen: 32, SaltLen: 16}
	now := time.Date(2030, 3, 4, 5, 6, 7, 0, time.UTC)
	clock := func() time.Time { return now }
	svc, err := tenancy.New(tenancystore.New(db.Pool), cfg, nil, clock)
	require.NoError(t, err)

	qc := &queryCounter{}
	pc, err := pgxpool.ParseConfig(db.URL)
	require.NoError(t, err)
	pc.ConnConfig.Tracer = qc
	pool, err := pgxpool.NewWithConfig(context.Background(), pc)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	counted, err := tenancy.New(tenancystore.New(pool), cfg, nil, clock)
	require.NoError(t, err)
	return &fixture{db: db, svc: svc, counted: counted, queries: qc, now: now}
}

func anon(i int) context.Context {
	return tenancy.WithActor(context.Background(), tenancy.Actor{IP: netip.AddrFrom4([4]byte{10, 9, 0, byte(i)})})
}

func as(id int64) context.Context {
	return tenancy.WithActor(context.Background(), tenancy.Actor{UserID: id})
}

// world is three users, each with a personal org and namespace, plus a
// shared org with two namespaces that the first two users belong to.
type world struct {
	users  []tenancy.User
	orgs   []tenancy.Org       // personal orgs, then the shared one
	nss    []tenancy.Namespace // personal namespaces, then the shared two
	shared tenancy.Org
}

func (f *fixture) world(t *testing.T) world {
	t.Helper()
	var w world
	for i := range 3 {
		u, err := f.svc.SignUp(anon(i), fmt.Sprintf("user%d@example.com", i), "a long password", "")
		require.NoError(t, err)
		w.users = append(w.users, u)
		orgs, err := f.svc.MyOrgs(as(u.ID), tenancy.PageArgs{})
		require.NoError(t, err)
		w.orgs = append(w.orgs, orgs.Edges[0].Node.Org)
		nss, err := f.svc.MyNamespaces(as(u.ID), tenancy.PageArgs{})
		require.NoError(t, err)
		w.nss = append(w.nss, nss.Edges[0].Node.Namespace)
	}
	shared, err := f.svc.CreateOrg(as(w.users[0].ID), "shared", "")
	require.NoError(t, err)
	w.shared = shared
	w.orgs = append(w.orgs, shared)
	_, err = f.svc.AddOrgMember(as(w.users[0].ID), shared.ID, w.users[1].ID, tenancy.OrgRoleBilling)
	require.NoError(t, err)
	for _, name := range []string{"shared-a", "shared-b"} {
		ns, err := f.svc.CreateNamespace(as(w.users[0].ID), shared.ID, name)
		require.NoError(t, err)
		_, err = f.svc.AddMember(as(w.users[0].ID), ns.ID, w.users[1].ID, tenancy.RoleDeveloper)
		require.NoError(t, err)
		w.nss = append(w.nss, ns)
	}
	return w
}

func TestBatchLoadersRunOneQueryAndReturnExactlyTheAskedRows(t *testing.T) {
	t.Parallel()
	f := setup(t)
	w := f.world(t)
	ctx := context.Background()
	const missing = 999999
	u0, u1, u2 := w.users[0].ID, w.users[1].ID, w.users[2].ID

	one := func(t *testing.T, what string, call func() error) {
		t.Helper()
		f.queries.reset()
		require.NoError(t, call())
		require.Equal(t, int64(1), f.queries.n.Load(), "%s: %v", what, f.queries.sql)
	}

	t.Run("users", func(t *testing.T) {
		var got map[int64]tenancy.User
		one(t, "UsersByIDs", func() (err error) { got, err = f.counted.UsersByIDs(ctx, []int64{u2, u0, u2, missing}); return })
		require.Len(t, got, 2)
		require.Equal(t, "user0@example.com", got[u0].Email)
		require.Equal(t, "user2@example.com", got[u2].Email)
	})
	t.Run("orgs", func(t *testing.T) {
		var got map[int64]tenancy.Org
		one(t, "OrgsByIDs", func() (err error) {
			got, err = f.counted.OrgsByIDs(ctx, []int64{w.shared.ID, w.orgs[1].ID, missing})
			return
		})
		require.Len(t, got, 2)
		require.Equal(t, "shared", got[w.shared.ID].Name)
		require.Equal(t, w.orgs[1], got[w.orgs[1].ID])
	})
	t.Run("namespaces", func(t *testing.T) {
		var got map[int64]tenancy.Namespace
		one(t, "NamespacesByIDs", func() (err error) {
			got, err = f.counted.NamespacesByIDs(ctx, []int64{w.nss[3].ID, w.nss[0].ID, missing})
			return
		})
		require.Len(t, got, 2)
		require.Equal(t, w.nss[3], got[w.nss[3].ID])
		require.Equal(t, w.nss[0], got[w.nss[0].ID])
	})
	t.Run("namespaces by org", func(t *testing.T) {
		var got map[int64][]tenancy.Namespace
		one(t, "NamespacesByOrgIDs", func() (err error) {
			got, err = f.counted.NamespacesByOrgIDs(ctx, []int64{w.shared.ID, w.orgs[2].ID, missing})
			return
		})
		require.Len(t, got, 2)
		require.Equal(t, []tenancy.Namespace{w.nss[3], w.nss[4]}, got[w.shared.ID])
		require.Equal(t, []tenancy.Namespace{w.nss[2]}, got[w.orgs[2].ID])
	})
	t.Run("members by namespace", func(t *testing.T) {
		var got map[int64][]tenancy.Member
		one(t, "MembersByNamespaceIDs", func() (err error) {
			got, err = f.counted.MembersByNamespaceIDs(ctx, []int64{w.nss[3].ID, w.nss[1].ID, missing})
			return
		})
		require.Len(t, got, 2)
		require.Len(t, got[w.nss[3].ID], 2)
		require.Equal(t, u0, got[w.nss[3].ID][0].UserID)
		require.Equal(t, tenancy.RoleOwner, got[w.nss[3].ID][0].Role)
		require.Equal(t, u1, got[w.nss[3].ID][1].UserID)
		require.Equal(t, tenancy.RoleDeveloper, got[w.nss[3].ID][1].Role)
		require.Len(t, got[w.nss[1].ID], 1)
		require.Equal(t, u1, got[w.nss[1].ID][0].UserID)
	})
	t.Run("orgs by user", func(t *testing.T) {
		var got map[int64][]tenancy.OrgMembership
		one(t, "OrgsByUserIDs", func() (err error) { got, err = f.counted.OrgsByUserIDs(ctx, []int64{u1, u2, missing}); return })
		require.Len(t, got, 2)
		require.Len(t, got[u1], 2)
		require.Equal(t, w.orgs[1].ID, got[u1][0].Org.ID)
		require.Equal(t, tenancy.OrgRoleOwner, got[u1][0].Role)
		require.Equal(t, w.shared.ID, got[u1][1].Org.ID)
		require.Equal(t, tenancy.OrgRoleBilling, got[u1][1].Role)
		require.Len(t, got[u2], 1)
	})
	t.Run("namespaces by user", func(t *testing.T) {
		var got map[int64][]tenancy.NamespaceMembership
		one(t, "NamespacesByUserIDs", func() (err error) { got, err = f.counted.NamespacesByUserIDs(ctx, []int64{u1, missing}); return })
		require.Len(t, got, 1)
		var names []string
		for _, m := range got[u1] {
			names = append(names, m.Namespace.Name)
		}
		require.Equal(t, []string{w.nss[1].Name, "shared-a", "shared-b"}, names)
	})
	t.Run("one key", func(t *testing.T) {
		// A single key takes the "= $1" form of each query, which keeps
		// a generic plan: the same rows.
		single := func(t *testing.T, what string, call func() error) {
			t.Helper()
			one(t, what, call)
			require.NotContains(t, f.queries.sql[0], "ANY(", what)
		}
		users, err := f.counted.UsersByIDs(ctx, []int64{u2, u0})
		require.NoError(t, err)
		var user map[int64]tenancy.User
		single(t, "UsersByIDs", func() (err error) { user, err = f.counted.UsersByIDs(ctx, []int64{u2}); return })
		require.Equal(t, map[int64]tenancy.User{u2: users[u2]}, user)
		single(t, "UsersByIDs", func() (err error) { user, err = f.counted.UsersByIDs(ctx, []int64{missing}); return })
		require.Empty(t, user)

		var org map[int64]tenancy.Org
		single(t, "OrgsByIDs", func() (err error) { org, err = f.counted.OrgsByIDs(ctx, []int64{w.shared.ID}); return })
		require.Equal(t, map[int64]tenancy.Org{w.shared.ID: w.shared}, org)

		var ns map[int64]tenancy.Namespace
		single(t, "NamespacesByIDs", func() (err error) { ns, err = f.counted.NamespacesByIDs(ctx, []int64{w.nss[3].ID}); return })
		require.Equal(t, map[int64]tenancy.Namespace{w.nss[3].ID: w.nss[3]}, ns)

		var nss map[int64][]tenancy.Namespace
		single(t, "NamespacesByOrgIDs", func() (err error) {
			nss, err = f.counted.NamespacesByOrgIDs(ctx, []int64{w.shared.ID})
			return
		})
		require.Equal(t, map[int64][]tenancy.Namespace{w.shared.ID: {w.nss[3], w.nss[4]}}, nss)

		all, err := f.counted.MembersByNamespaceIDs(ctx, []int64{w.nss[3].ID, w.nss[1].ID})
		require.NoError(t, err)
		var members map[int64][]tenancy.Member
		single(t, "MembersByNamespaceIDs", func() (err error) {
			members, err = f.counted.MembersByNamespaceIDs(ctx, []int64{w.nss[3].ID})
			return
		})
		require.Equal(t, map[int64][]tenancy.Member{w.nss[3].ID: all[w.nss[3].ID]}, members)
		require.Len(t, members[w.nss[3].ID], 2)

		allOrgs, err := f.counted.OrgsByUserIDs(ctx, []int64{u1, u2})
		require.NoError(t, err)
		var orgs map[int64][]tenancy.OrgMembership
		single(t, "OrgsByUserIDs", func() (err error) { orgs, err = f.counted.OrgsByUserIDs(ctx, []int64{u1}); return })
		require.Equal(t, map[int64][]tenancy.OrgMembership{u1: allOrgs[u1]}, orgs)
		require.Len(t, orgs[u1], 2)

		allNss, err := f.counted.NamespacesByUserIDs(ctx, []int64{u1, u0})
		require.NoError(t, err)
		var userNss map[int64][]tenancy.NamespaceMembership
		single(t, "NamespacesByUserIDs", func() (err error) {
			userNss, err = f.counted.NamespacesByUserIDs(ctx, []int64{u1})
			return
		})
		require.Equal(t, map[int64][]tenancy.NamespaceMembership{u1: allNss[u1]}, userNss)
		require.Len(t, userNss[u1], 3)
	})
	t.Run("no keys, no query", func(t *testing.T) {
		f.queries.reset()
		got, err := f.counted.UsersByIDs(ctx, nil)
		require.NoError(t, err)
		require.Empty(t, got)
		require.Zero(t, f.queries.n.Load())
	})
	t.Run("too many keys", func(t *testing.T) {
		ids := make([]int64, 1001)
		for i := range ids {
			ids[i] = int64(i + 1)
		}
		_, err := f.counted.UsersByIDs(ctx, ids)
		require.Error(t, err)
	})
}

func TestAuthenticateIsOneIndexedQuery(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	_, err := f.svc.SignUp(anon(1), "auth@example.com", "a long password", "")
	require.NoError(t, err)
	tok, err := f.svc.LogIn(anon(1), "auth@example.com", "a long password")
	require.NoError(t, err)

	f.queries.reset()
	_, err = f.counted.Authenticate(ctx, tok.Secret)
	require.NoError(t, err)
	require.Equal(t, int64(2), f.queries.n.Load(), "first use: look-up and last-used write")
	f.queries.reset()
	_, err = f.counted.Authenticate(ctx, tok.Secret)
	require.NoError(t, err)
	require.Equal(t, int64(1), f.queries.n.Load(), "within the interval: look-up only")
	lookup := f.queries.sql[0]

	conn, err := f.db.Pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	_, err = conn.Exec(ctx, "SET enable_seqscan = off")
	require.NoError(t, err)
	rows, err := conn.Query(ctx, "EXPLAIN "+lookup, []byte("0123456789abcdef0123456789abcdef"), f.now)
	require.NoError(t, err)
	plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Contains(t, strings.Join(plan, "\n"), "auth_tokens_hash_key")
	require.Contains(t, strings.Join(plan, "\n"), "users_pkey")
}

func TestStoreErrorsBecomeDomainErrors(t *testing.T) {
	t.Parallel()
	f := setup(t)
	s := tenancystore.New(f.db.Pool)
	ctx := context.Background()
	_, err := s.UserByID(ctx, 42)
	require.Equal(t, errcode.NotFound, errcode.Of(err))
	_, err = s.InsertUser(ctx, tenancy.NewUserRow{Email: "dup@example.com", Status: tenancy.UserActive, Now: f.now})
	require.NoError(t, err)
	_, err = s.InsertUser(ctx, tenancy.NewUserRow{Email: "dup@example.com", Status: tenancy.UserActive, Now: f.now})
	require.Equal(t, errcode.Conflict, errcode.Of(err))
	require.NotContains(t, err.Error(), "users_email_key", "no SQL detail in domain errors")
	err = s.InsertMember(ctx, tenancy.Member{NamespaceID: 77, UserID: 1, Role: tenancy.RoleViewer, CreatedAt: f.now})
	require.Equal(t, errcode.NotFound, errcode.Of(err))
	_, err = s.InsertUser(ctx, tenancy.NewUserRow{Email: "Upper@example.com", Status: tenancy.UserActive, Now: f.now})
	require.Equal(t, errcode.Internal, errcode.Of(err), "a check violation is a bug, not input")

	// Rolled back on error: nothing of the transaction stays.
	err = s.InTx(ctx, func(tx tenancy.Tx) error {
		if _, err := tx.InsertUser(ctx, tenancy.NewUserRow{Email: "tx@example.com", Status: tenancy.UserActive, Now: f.now}); err != nil {
			return err
		}
		return errcode.New(errcode.Conflict, "stop")
	})
	require.Equal(t, errcode.Conflict, errcode.Of(err))
	_, _, err = s.UserByEmail(ctx, "tx@example.com")
	require.Equal(t, errcode.NotFound, errcode.Of(err))
}

func TestRateLimitWindows(t *testing.T) {
	t.Parallel()
	f := setup(t)
	s := tenancystore.New(f.db.Pool)
	ctx := context.Background()
	w := time.Minute
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, step := range []struct {
		start     time.Time
		cur, prev int
	}{
		{t0, 1, 0},
		{t0, 2, 0},
		{t0, 3, 0},
		{t0.Add(w), 1, 3},      // next window: the last one's count moves to prev
		{t0.Add(w), 2, 3},      //
		{t0.Add(3 * w), 1, 0},  // a gap: nothing carries over
		{t0.Add(2 * w), 2, 0},  // a replica behind counts in the newest window
		{t0.Add(4 * w), 1, 2},  //
		{t0.Add(10 * w), 1, 0}, //
	} {
		cur, prev, err := s.HitRateLimit(ctx, "k", step.start, w)
		require.NoError(t, err)
		require.Equal(t, [2]int{step.cur, step.prev}, [2]int{cur, prev}, "step %d", i)
	}
	cur, _, err := s.HitRateLimit(ctx, "other", t0, w)
	require.NoError(t, err)
	require.Equal(t, 1, cur, "keys are independent")

	// Concurrent hits on one key are all counted.
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			_, _, err := s.HitRateLimit(ctx, "hot", t0, w)
			require.NoError(t, err)
		})
	}
	wg.Wait()
	cur, _, err = s.HitRateLimit(ctx, "hot", t0, w)
	require.NoError(t, err)
	require.Equal(t, 21, cur)

	require.NoError(t, s.Prune(ctx, t0.Add(5*w), t0))
	var n int
	require.NoError(t, f.db.Pool.QueryRow(ctx, `SELECT count(*) FROM rate_limits`).Scan(&n))
	require.Equal(t, 1, n, "only the key with a recent window stays")
}

// TestOrgTreeMatchesTheBatchLoaders reads the tree below a user's orgs
// in one query and checks every level against the batch loaders, for
// users with an org shared with another, an org without namespaces and a
// namespace without members.
func TestOrgTreeMatchesTheBatchLoaders(t *testing.T) {
	t.Parallel()
	f := setup(t)
	w := f.world(t)
	ctx := context.Background()
	u0, u1, u2 := w.users[0].ID, w.users[1].ID, w.users[2].ID
	empty, err := f.svc.CreateOrg(as(u2), "empty", "")
	require.NoError(t, err)
	lonelyOrg, err := f.svc.CreateOrg(as(u2), "lonely", "")
	require.NoError(t, err)
	lonely, err := f.svc.CreateNamespace(as(u2), lonelyOrg.ID, "lonely")
	require.NoError(t, err)
	_, err = f.db.Pool.Exec(ctx, `DELETE FROM namespace_members WHERE namespace_id = $1`, lonely.ID)
	require.NoError(t, err)
	const missing = 999999

	for _, user := range []int64{u0, u1, u2, missing} {
		orgs, err := f.svc.OrgsByUserIDs(ctx, []int64{user})
		require.NoError(t, err)
		var orgIDs []int64
		for _, m := range orgs[user] {
			orgIDs = append(orgIDs, m.Org.ID)
		}
		nss, err := f.svc.NamespacesByOrgIDs(ctx, orgIDs)
		require.NoError(t, err)
		var nsIDs []int64
		for _, id := range orgIDs {
			for _, n := range nss[id] {
				nsIDs = append(nsIDs, n.ID)
			}
		}
		members, err := f.svc.MembersByNamespaceIDs(ctx, nsIDs)
		require.NoError(t, err)
		var memberIDs []int64
		for _, ms := range members {
			for _, m := range ms {
				memberIDs = append(memberIDs, m.UserID)
			}
		}
		memberUsers, err := f.svc.UsersByIDs(ctx, memberIDs)
		require.NoError(t, err)

		for _, depth := range []tenancy.OrgTreeDepth{tenancy.TreeNamespaces, tenancy.TreeMembers} {
			f.queries.reset()
			tree, err := f.counted.OrgTree(ctx, user, depth)
			require.NoError(t, err)
			require.Equal(t, int64(1), f.queries.n.Load(), "%v", f.queries.sql)

			require.Equal(t, orgs[user], tree.Orgs, "orgs of user %d", user)
			require.Len(t, tree.Namespaces, len(orgIDs))
			for _, id := range orgIDs {
				require.Contains(t, tree.Namespaces, id)
				require.Equal(t, len(nss[id]), len(tree.Namespaces[id]), "namespaces of org %d", id)
				if len(nss[id]) > 0 {
					require.Equal(t, nss[id], tree.Namespaces[id], "namespaces of org %d", id)
				}
			}
			if depth == tenancy.TreeNamespaces {
				require.Empty(t, tree.Members)
				require.Empty(t, tree.Users)
				continue
			}
			require.Len(t, tree.Members, len(nsIDs))
			for _, id := range nsIDs {
				require.Contains(t, tree.Members, id)
				require.Equal(t, len(members[id]), len(tree.Members[id]), "members of namespace %d", id)
				if len(members[id]) > 0 {
					require.Equal(t, members[id], tree.Members[id], "members of namespace %d", id)
				}
			}
			require.Equal(t, memberUsers, tree.Users)
		}
	}

	tree, err := f.svc.OrgTree(ctx, u2, tenancy.TreeMembers)
	require.NoError(t, err)
	require.Len(t, tree.Orgs, 3)
	require.Empty(t, tree.Namespaces[empty.ID])
	require.NotNil(t, tree.Namespaces[empty.ID])
	require.Equal(t, []tenancy.Namespace{lonely}, tree.Namespaces[lonelyOrg.ID])
	require.Empty(t, tree.Members[lonely.ID])
	require.NotNil(t, tree.Members[lonely.ID])
	tree, err = f.svc.OrgTree(ctx, u0, tenancy.TreeMembers)
	require.NoError(t, err)
	require.Len(t, tree.Members[w.nss[3].ID], 2, "a shared namespace with both its members")
	require.Contains(t, tree.Users, u1)

	_, err = f.svc.OrgTree(ctx, u0, 0)
	require.Error(t, err, "unknown depth")
}
