package isolationstore_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/internal/testenv"
	"github.com/tenantplane/tenantplane/isolation"
	"github.com/tenantplane/tenantplane/isolation/isolationstore"
	"github.com/tenantplane/tenantplane/tenancy"
	"github.com/tenantplane/tenantplane/tenancy/tenancystore"
)

func TestMain(m *testing.M) { testenv.Main(m) }

type bundle struct {
	db    *testenv.DB
	store *isolationstore.Store
	svc   *tenancy.Service
}

func setup(t *testing.T) *bundle {
	t.Helper()
	db := testenv.Postgres(t)
	cfg := tenancy.DefaultConfig()
	cfg.Argon2 = tenancy.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1, KeyLen: 32, SaltLen: 16}
	cfg.BaseURL = "https://console.test"
	svc, err := tenancy.New(tenancystore.New(db.Pool), cfg, nil, nil)
	require.NoError(t, err)
	s := isolationstore.New(db.Pool)
	t.Cleanup(s.Close)
	return &bundle{db: db, store: s, svc: svc}
}

var serial atomic.Int64

// signUp creates a user with their personal namespace through tenancy.
func (b *bundle) signUp(t *testing.T) (tenancy.User, tenancy.Namespace) {
	t.Helper()
	n := serial.Add(1)
	ctx := tenancy.WithActor(context.Background(), tenancy.Actor{IP: netip.AddrFrom4([4]byte{10, 9, byte(n >> 8), byte(n)})})
	u, err := b.svc.SignUp(ctx, fmt.Sprintf("u%d@example.test", n), "correct horse battery", "")
	require.NoError(t, err)
	nss, err := b.svc.MyNamespaces(tenancy.WithActor(context.Background(), tenancy.Actor{UserID: u.ID}), tenancy.PageArgs{})
	require.NoError(t, err)
	return u, nss.Edges[0].Node.Namespace
}

func (b *bundle) insertOutbox(t *testing.T, n int, at time.Time) {
	t.Helper()
	for i := range n {
		_, err := b.db.Pool.Exec(context.Background(), `INSERT INTO outbox (kind, key, created_at, next_attempt_at) VALUES ('test', $1, $2, $2)`,
			fmt.Sprintf("ns:%d", i+1), at)
		require.NoError(t, err)
	}
}

func TestClaimOutboxSkipsLockedRows(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	_, err := b.db.Pool.Exec(ctx, `DELETE FROM outbox`)
	require.NoError(t, err)
	b.insertOutbox(t, 60, now)

	var mu sync.Mutex
	var claimed []int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				items, err := b.store.ClaimOutbox(ctx, now, time.Minute, 5)
				require.NoError(t, err)
				if len(items) == 0 {
					return
				}
				mu.Lock()
				for _, it := range items {
					require.Equal(t, 1, it.Attempts)
					claimed = append(claimed, it.ID)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	require.Len(t, claimed, 60)
	slices.Sort(claimed)
	require.Len(t, slices.Compact(claimed), 60, "no row claimed twice")

	// Claimed rows wait for their lease; then they are due again.
	items, err := b.store.ClaimOutbox(ctx, now.Add(59*time.Second), time.Minute, 100)
	require.NoError(t, err)
	require.Empty(t, items)
	items, err = b.store.ClaimOutbox(ctx, now.Add(61*time.Second), time.Minute, 100)
	require.NoError(t, err)
	require.Len(t, items, 60)
	require.Equal(t, 2, items[0].Attempts)
}

func TestOutboxCompleteRetryAndStats(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	_, err := b.db.Pool.Exec(ctx, `DELETE FROM outbox`)
	require.NoError(t, err)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	b.insertOutbox(t, 3, now.Add(-time.Minute))
	items, err := b.store.ClaimOutbox(ctx, now, time.Minute, 10)
	require.NoError(t, err)
	require.Len(t, items, 3)

	require.NoError(t, b.store.CompleteOutbox(ctx, []int64{items[0].ID}, now))
	require.NoError(t, b.store.RetryOutbox(ctx, []int64{items[1].ID}, "apiserver said no", now.Add(4*time.Second)))
	st, err := b.store.OutboxStats(ctx, now)
	require.NoError(t, err)
	require.Equal(t, isolation.OutboxStats{Pending: 2, Failing: 1, OldestAge: time.Minute, MaxAttempts: 1}, st)

	var lastErr string
	var next time.Time
	require.NoError(t, b.db.Pool.QueryRow(ctx, `SELECT last_error, next_attempt_at FROM outbox WHERE id = $1`, items[1].ID).Scan(&lastErr, &next))
	require.Equal(t, "apiserver said no", lastErr)
	require.True(t, next.Equal(now.Add(4*time.Second)))
	// Due again after its backoff, not before.
	again, err := b.store.ClaimOutbox(ctx, now.Add(3*time.Second), time.Minute, 10)
	require.NoError(t, err)
	require.Empty(t, again)
	again, err = b.store.ClaimOutbox(ctx, now.Add(5*time.Second), time.Minute, 10)
	require.NoError(t, err)
	require.Len(t, again, 1)
	require.Equal(t, items[1].ID, again[0].ID)
	require.Equal(t, 2, again[0].Attempts)

	// A completed row is never retried.
	require.NoError(t, b.store.RetryOutbox(ctx, []int64{items[0].ID}, "late", now))
	var done bool
	require.NoError(t, b.db.Pool.QueryRow(ctx, `SELECT done_at IS NOT NULL AND last_error = '' FROM outbox WHERE id = $1`, items[0].ID).Scan(&done))
	require.True(t, done)
}

func TestWaitOutboxWakesOnInsert(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	start := time.Now()
	require.NoError(t, b.store.WaitOutbox(ctx, 100*time.Millisecond), "a timeout is no error")
	require.GreaterOrEqual(t, time.Since(start), 100*time.Millisecond)

	// The first call started listening; an insert now wakes the next.
	woke := make(chan error, 1)
	go func() { woke <- b.store.WaitOutbox(ctx, time.Minute) }()
	time.Sleep(200 * time.Millisecond)
	start = time.Now()
	b.insertOutbox(t, 1, time.Now())
	select {
	case err := <-woke:
		require.NoError(t, err)
		require.Less(t, time.Since(start), 5*time.Second)
	case <-time.After(30 * time.Second):
		t.Fatal("WaitOutbox did not wake on an insert")
	}
}

func TestTenantsAndUsers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	owner, ns := b.signUp(t)
	dev, devNS := b.signUp(t)
	_, err := b.svc.AddMember(tenancy.WithActor(ctx, tenancy.Actor{UserID: owner.ID}), ns.ID, dev.ID, tenancy.RoleDeveloper)
	require.NoError(t, err)
	require.NoError(t, b.svc.DisableUser(tenancy.WithActor(ctx, tenancy.Actor{System: "test"}), dev.ID))

	ts, err := b.store.Tenants(ctx, []int64{ns.ID, devNS.ID, 987654})
	require.NoError(t, err)
	require.Len(t, ts, 2)
	got := ts[ns.ID]
	require.Equal(t, isolation.Tenant{
		ID: ns.ID, Name: ns.Name, OrgID: ns.OrgID, Plan: "free", State: tenancy.NamespaceActive,
		Members: []isolation.Member{
			{UserID: owner.ID, Role: tenancy.RoleOwner},
			{UserID: dev.ID, Role: tenancy.RoleDeveloper, Disabled: true},
		},
	}, got)

	users, err := b.store.Users(ctx, []int64{owner.ID, dev.ID, 987654})
	require.NoError(t, err)
	require.Equal(t, map[int64]isolation.User{
		owner.ID: {ID: owner.ID, Namespaces: 1},
		dev.ID:   {ID: dev.ID, Disabled: true, Namespaces: 2},
	}, users)

	ids, err := b.store.NamespaceIDsOfUser(ctx, dev.ID)
	require.NoError(t, err)
	require.ElementsMatch(t, []int64{ns.ID, devNS.ID}, ids)
	ids, err = b.store.NamespaceIDsOfOrg(ctx, ns.OrgID)
	require.NoError(t, err)
	require.Equal(t, []int64{ns.ID}, ids)

	// Paging over every namespace; a namespace whose deletion Kubernetes
	// finished drops out.
	all, err := b.store.NamespaceIDs(ctx, 0, 1)
	require.NoError(t, err)
	require.Equal(t, []int64{min(ns.ID, devNS.ID)}, all)
	require.NoError(t, b.store.NamespaceDeleted(ctx, ns.ID, time.Now()))
	require.NoError(t, b.store.NamespaceDeleted(ctx, ns.ID, time.Now()), "recording twice is fine")
	all, err = b.store.NamespaceIDs(ctx, 0, 100)
	require.NoError(t, err)
	require.Equal(t, []int64{devNS.ID}, all)
}

func TestHostClaimsAreExclusive(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	a, aNS := b.signUp(t)
	_, bNS := b.signUp(t)
	change := func(nsID int64, host string) isolation.HostChange {
		return isolation.HostChange{NamespaceID: nsID, Host: host, Actor: tenancy.UserKey(a.ID), At: time.Now().UTC()}
	}
	require.NoError(t, b.store.ClaimHost(ctx, change(aNS.ID, "www.a.example")))
	require.Equal(t, errcode.Conflict, errcode.Of(b.store.ClaimHost(ctx, change(bNS.ID, "www.a.example"))))
	require.NoError(t, b.store.ClaimHost(ctx, change(aNS.ID, "www.a.example")), "claiming again is fine")
	require.Equal(t, errcode.NotFound, errcode.Of(b.store.ClaimHost(ctx, change(987654, "x.example"))))

	hosts, err := b.store.Hosts(ctx, aNS.ID)
	require.NoError(t, err)
	require.Len(t, hosts, 1)
	require.NoError(t, b.store.ReleaseHost(ctx, change(aNS.ID, "www.a.example")))
	require.Equal(t, errcode.NotFound, errcode.Of(b.store.ReleaseHost(ctx, change(aNS.ID, "www.a.example"))))
	ts, err := b.store.Tenants(ctx, []int64{aNS.ID})
	require.NoError(t, err)
	require.Empty(t, ts[aNS.ID].Hosts)
	require.Equal(t, []string{"www.a.example"}, ts[aNS.ID].ReleasedHosts)
	require.Equal(t, errcode.Conflict, errcode.Of(b.store.ClaimHost(ctx, change(bNS.ID, "www.a.example"))), "held after release")

	require.NoError(t, b.store.ForgetReleasedHosts(ctx, aNS.ID, []string{"www.a.example"}))
	require.Equal(t, errcode.Conflict, errcode.Of(b.store.ClaimHost(ctx, change(bNS.ID, "www.a.example"))), "held while in use")
	require.NoError(t, b.store.ForgetReleasedHosts(ctx, aNS.ID, nil))
	require.NoError(t, b.store.ClaimHost(ctx, change(bNS.ID, "www.a.example")), "free once unused")

	var audits, outbox int
	require.NoError(t, b.db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE action LIKE 'host.%'`).Scan(&audits))
	require.NoError(t, b.db.Pool.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE kind LIKE 'host.%'`).Scan(&outbox))
	require.Equal(t, 4, audits, "each successful claim and release is audited")
	require.Equal(t, 4, outbox, "and queued for Kubernetes")

	// A namespace being deleted takes no claims, and its deletion frees
	// them.
	require.NoError(t, b.store.ClaimHost(ctx, change(aNS.ID, "api.a.example")))
	_, err = b.svc.DeleteNamespace(tenancy.WithActor(ctx, tenancy.Actor{UserID: a.ID}), aNS.ID)
	require.NoError(t, err)
	require.Equal(t, errcode.Conflict, errcode.Of(b.store.ClaimHost(ctx, change(aNS.ID, "more.a.example"))))
	require.NoError(t, b.store.NamespaceDeleted(ctx, aNS.ID, time.Now()))
	require.NoError(t, b.store.ClaimHost(ctx, change(bNS.ID, "api.a.example")))
}
