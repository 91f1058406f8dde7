package tenancy_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/internal/testenv"
	"github.com/tenantplane/tenantplane/tenancy"
	"github.com/tenantplane/tenantplane/tenancy/tenancystore"
)

// replica is one more server over the bundle's database: its own service,
// whose statements are counted, and its own token feed.
type replica struct {
	svc     *tenancy.Service
	queries *testenv.QueryCounter
	feed    *tenancystore.TokenFeed
}

func (b *bundle) replica(tweak ...func(*tenancy.Config)) *replica {
	b.t.Helper()
	return b.replicaWith(nil, tweak...)
}

// replicaWith is replica with its feed set up by feedTweak before it runs.
func (b *bundle) replicaWith(feedTweak func(*tenancystore.TokenFeed), tweak ...func(*tenancy.Config)) *replica {
	b.t.Helper()
	pool, queries := b.db.CountingPool(b.t, 4)
	cfg := b.cfg
	for _, f := range tweak {
		f(&cfg)
	}
	svc, err := tenancy.New(tenancystore.New(pool), cfg, nil, b.clock.Now)
	require.NoError(b.t, err)
	feedPool, _ := b.db.CountingPool(b.t, 1)
	r := &replica{svc: svc, queries: queries,
		feed: tenancystore.NewTokenFeed(feedPool, svc.TokenCache(), nil, 50*time.Millisecond)}
	if feedTweak != nil {
		feedTweak(r.feed)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.feed.Run(ctx) }()
	b.t.Cleanup(func() {
		cancel()
		require.NoError(b.t, <-done)
	})
	select {
	case <-r.feed.Ready():
	case <-time.After(10 * time.Second):
		b.t.Fatal("token feed not listening")
	}
	return r
}

// statements is how many statements authenticating secret sends, and its
// answer.
func (r *replica) statements(t *testing.T, secret string) (int64, tenancy.Principal, error) {
	t.Helper()
	before := r.queries.Count()
	p, err := r.svc.Authenticate(context.Background(), secret)
	return r.queries.Count() - before, p, err
}

// refusedWithin waits until r refuses secret, at most d.
func (r *replica) refusedWithin(t *testing.T, secret string, d time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool {
		_, err := r.svc.Authenticate(context.Background(), secret)
		return errcode.Of(err) == errcode.Unauthenticated
	}, d, 5*time.Millisecond, "the token still works")
}

func TestTokenCacheAnswersWithoutAStatement(t *testing.T) {
	t.Parallel()
	b := setup(t)
	u := b.user("cache@example.com")
	tok, err := b.svc.CreateAPIToken(as(u.ID), "ci", 0)
	require.NoError(t, err)
	r := b.replica()

	n, p, err := r.statements(t, tok.Secret)
	require.NoError(t, err)
	require.Equal(t, u.ID, p.UserID)
	require.Equal(t, int64(2), n, "the token, and its first use recorded")
	n, p2, err := r.statements(t, tok.Secret)
	require.NoError(t, err)
	require.Equal(t, p, p2)
	require.Zero(t, n, "answered from the cache")
	require.Equal(t, 1, r.svc.TokenCache().Len())

	// A wrong secret of the right shape is asked of the database, and
	// not remembered.
	bad := tok.Secret[:len(tok.Secret)-1] + string("ab"[len(tok.Secret)%2])
	if bad == tok.Secret {
		bad = tok.Secret[:len(tok.Secret)-1] + "c"
	}
	for range 2 {
		n, _, err = r.statements(t, bad)
		requireCode(t, err, errcode.Unauthenticated)
		require.Equal(t, int64(1), n)
	}

	// After the TTL it asks again.
	b.clock.Advance(b.cfg.TokenCacheTTL)
	n, _, err = r.statements(t, tok.Secret)
	require.NoError(t, err)
	require.Equal(t, int64(1), n)
}

func TestTokenCacheForgetsAtOnceOnItsReplicaAndSoonOnOthers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a, other := b.replica(), b.replica()
	u := b.user("revoke@example.com")
	api, err := a.svc.CreateAPIToken(as(u.ID), "ci", 0)
	require.NoError(t, err)
	session, err := a.svc.LogIn(anon(), u.Email, password)
	require.NoError(t, err)
	for _, r := range []*replica{a, other} {
		for _, s := range []string{api.Secret, session.Secret} {
			_, err := r.svc.Authenticate(context.Background(), s)
			require.NoError(t, err)
			n, _, err := r.statements(t, s)
			require.NoError(t, err)
			require.Zero(t, n)
		}
	}

	// Revoking on a: refused there with no delay, and on the other
	// replica once the notification arrives.
	require.NoError(t, a.svc.RevokeAPIToken(as(u.ID), api.ID))
	_, err = a.svc.Authenticate(context.Background(), api.Secret)
	requireCode(t, err, errcode.Unauthenticated)
	other.refusedWithin(t, api.Secret, time.Second)

	// Log-out, the same.
	p, err := a.svc.Authenticate(context.Background(), session.Secret)
	require.NoError(t, err)
	require.NoError(t, a.svc.LogOut(as(u.ID), p.TokenID))
	_, err = a.svc.Authenticate(context.Background(), session.Secret)
	requireCode(t, err, errcode.Unauthenticated)
	other.refusedWithin(t, session.Secret, time.Second)

	// Disabling a user stops every token of theirs.
	v := b.user("disabled@example.com")
	vt, err := a.svc.CreateAPIToken(as(v.ID), "ci", 0)
	require.NoError(t, err)
	for _, r := range []*replica{a, other} {
		_, err := r.svc.Authenticate(context.Background(), vt.Secret)
		require.NoError(t, err)
	}
	require.NoError(t, a.svc.DisableUser(system("test"), v.ID))
	_, err = a.svc.Authenticate(context.Background(), vt.Secret)
	requireCode(t, err, errcode.Unauthenticated)
	other.refusedWithin(t, vt.Secret, time.Second)
}

func TestTokenCacheHearsChangesMadeOutsideTheService(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.replica()
	ctx := context.Background()
	u := b.user("sql@example.com")
	tok, err := b.svc.CreateAPIToken(as(u.ID), "ci", 0)
	require.NoError(t, err)
	warm := func() tenancy.Principal {
		t.Helper()
		p, err := r.svc.Authenticate(ctx, tok.Secret)
		require.NoError(t, err)
		n, _, err := r.statements(t, tok.Secret)
		require.NoError(t, err)
		require.Zero(t, n)
		return p
	}

	// A platform role granted by hand shows within a second.
	require.False(t, warm().PlatformAdmin)
	_, err = b.db.Pool.Exec(ctx, `UPDATE users SET platform_admin = true WHERE id = $1`, u.ID)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		p, err := r.svc.Authenticate(ctx, tok.Secret)
		return err == nil && p.PlatformAdmin
	}, time.Second, 5*time.Millisecond)

	// So does a new email address.
	warm()
	_, err = b.db.Pool.Exec(ctx, `UPDATE users SET email = 'renamed@example.com' WHERE id = $1`, u.ID)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		p, err := r.svc.Authenticate(ctx, tok.Secret)
		return err == nil && p.Email == "renamed@example.com"
	}, time.Second, 5*time.Millisecond)

	// A token shortened to the past, or deleted.
	warm()
	_, err = b.db.Pool.Exec(ctx, `UPDATE auth_tokens SET expires_at = $2 WHERE id = $1`, tok.ID, b.clock.Now().Add(-time.Second))
	require.NoError(t, err)
	r.refusedWithin(t, tok.Secret, time.Second)
	tok2, err := b.svc.CreateAPIToken(as(u.ID), "ci-2", 0)
	require.NoError(t, err)
	_, err = r.svc.Authenticate(ctx, tok2.Secret)
	require.NoError(t, err)
	_, err = b.db.Pool.Exec(ctx, `DELETE FROM auth_tokens WHERE id = $1`, tok2.ID)
	require.NoError(t, err)
	r.refusedWithin(t, tok2.Secret, time.Second)

	// A notification it cannot read forgets every token.
	tok3, err := b.svc.CreateAPIToken(as(u.ID), "ci-3", 0)
	require.NoError(t, err)
	_, err = r.svc.Authenticate(ctx, tok3.Secret)
	require.NoError(t, err)
	require.Equal(t, 1, r.svc.TokenCache().Len())
	_, err = b.db.Pool.Exec(ctx, `SELECT pg_notify($1, 'not a user')`, tenancystore.AuthChannel)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return r.svc.TokenCache().Len() == 0 }, time.Second, 5*time.Millisecond)
	require.True(t, r.svc.TokenCache().Serving())
}

func TestTokenCacheServesOnlyWhileItsFeedListens(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	u := b.user("feed@example.com")
	tok, err := b.svc.CreateAPIToken(as(u.ID), "ci", 0)
	require.NoError(t, err)

	// Without a feed, every request asks the database.
	pool, queries := b.db.CountingPool(t, 2)
	alone, err := tenancy.New(tenancystore.New(pool), b.cfg, nil, b.clock.Now)
	require.NoError(t, err)
	for range 3 {
		before := queries.Count()
		_, err := alone.Authenticate(ctx, tok.Secret)
		require.NoError(t, err)
		require.GreaterOrEqual(t, queries.Count()-before, int64(1))
	}
	require.Zero(t, alone.TokenCache().Len())

	// With one, the cache serves until the feed's connection is lost...
	r := b.replica()
	_, err = r.svc.Authenticate(ctx, tok.Secret)
	require.NoError(t, err)
	require.Equal(t, 1, r.svc.TokenCache().Len())
	_, err = b.db.Pool.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND query ILIKE 'listen%tenantplane_auth%'`)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return !r.svc.TokenCache().Serving() }, 5*time.Second, 5*time.Millisecond)
	require.Zero(t, r.svc.TokenCache().Len())
	// ...a revocation nobody hears meanwhile still holds...
	_, err = b.db.Pool.Exec(ctx, `UPDATE auth_tokens SET revoked_at = $2 WHERE id = $1`, tok.ID, b.clock.Now())
	require.NoError(t, err)
	_, err = r.svc.Authenticate(ctx, tok.Secret)
	requireCode(t, err, errcode.Unauthenticated)
	// ...and it serves again once the feed listens again.
	require.Eventually(t, r.svc.TokenCache().Serving, 5*time.Second, 5*time.Millisecond)
	tok2, err := b.svc.CreateAPIToken(as(u.ID), "ci-2", 0)
	require.NoError(t, err)
	_, err = r.svc.Authenticate(ctx, tok2.Secret)
	require.NoError(t, err)
	n, _, err := r.statements(t, tok2.Secret)
	require.NoError(t, err)
	require.Zero(t, n)
}

func TestTokenCacheKeepsExpiryAndLastUse(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.replica(func(c *tenancy.Config) { c.TokenCacheTTL = time.Hour })
	ctx := context.Background()
	u := b.user("expiry@example.com")
	tok, err := b.svc.CreateAPIToken(as(u.ID), "ci", 30*time.Minute)
	require.NoError(t, err)
	_, err = r.svc.Authenticate(ctx, tok.Secret)
	require.NoError(t, err)
	lastUsed := func() time.Time {
		var at time.Time
		require.NoError(t, b.db.Pool.QueryRow(ctx, `SELECT last_used_at FROM auth_tokens WHERE id = $1`, tok.ID).Scan(&at))
		return at.UTC()
	}
	require.Equal(t, b.clock.Now(), lastUsed())

	// Use is still recorded every LastUsedInterval, from the cache: one
	// statement, the write.
	b.clock.Advance(b.cfg.LastUsedInterval + time.Second)
	n, _, err := r.statements(t, tok.Secret)
	require.NoError(t, err)
	require.Equal(t, int64(1), n)
	require.Equal(t, b.clock.Now(), lastUsed())
	n, _, err = r.statements(t, tok.Secret)
	require.NoError(t, err)
	require.Zero(t, n)

	// The token's own expiry ends its entry, though the TTL is longer.
	b.clock.Advance(30 * time.Minute)
	_, err = r.svc.Authenticate(ctx, tok.Secret)
	requireCode(t, err, errcode.Unauthenticated)
}

func TestTokenCacheOff(t *testing.T) {
	t.Parallel()
	b := setup(t)
	u := b.user("off@example.com")
	tok, err := b.svc.CreateAPIToken(as(u.ID), "ci", 0)
	require.NoError(t, err)
	pool, queries := b.db.CountingPool(t, 2)
	cfg := b.cfg
	cfg.TokenCacheTTL = 0
	off, err := tenancy.New(tenancystore.New(pool), cfg, nil, b.clock.Now)
	require.NoError(t, err)
	require.Nil(t, off.TokenCache())
	// Its feed has nothing to keep.
	require.NoError(t, tenancystore.NewTokenFeed(pool, off.TokenCache(), nil, 0).Run(context.Background()))
	for range 2 {
		before := queries.Count()
		_, err := off.Authenticate(context.Background(), tok.Secret)
		require.NoError(t, err)
		require.GreaterOrEqual(t, queries.Count()-before, int64(1))
	}
}

// TestTokenCacheStopsServingWhenItsFeedHearsNothing: a feed connection the
// network stalls without a reset looks alive; the feed's heartbeat notices
// the silence and the cache stops serving until the feed hears again. The
// stall is the feed's backend stopped (SIGSTOP).
func TestTokenCacheStopsServingWhenItsFeedHearsNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	r := b.replicaWith(func(f *tenancystore.TokenFeed) { f.Heartbeat = 100 * time.Millisecond })
	u := b.user("silent@example.com")
	tok, err := b.svc.CreateAPIToken(as(u.ID), "ci", 0)
	require.NoError(t, err)
	_, err = r.svc.Authenticate(ctx, tok.Secret)
	require.NoError(t, err)
	// Pings keep it serving past three heartbeats.
	time.Sleep(500 * time.Millisecond)
	require.Eventually(t, func() bool { return r.svc.TokenCache().Serving() }, 2*time.Second, 10*time.Millisecond)

	var pid int
	require.NoError(t, b.db.Pool.QueryRow(ctx, `SELECT pid FROM pg_stat_activity
		WHERE datname = current_database() AND query ILIKE 'listen%tenantplane_auth%'`).Scan(&pid))
	require.NoError(t, syscall.Kill(pid, syscall.SIGSTOP))
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
	require.Eventually(t, func() bool { return !r.svc.TokenCache().Serving() }, 2*time.Second, 10*time.Millisecond)
	// A revocation its feed cannot hear still holds.
	_, err = b.db.Pool.Exec(ctx, `UPDATE auth_tokens SET revoked_at = $2 WHERE id = $1`, tok.ID, b.clock.Now())
	require.NoError(t, err)
	_, err = r.svc.Authenticate(ctx, tok.Secret)
	requireCode(t, err, errcode.Unauthenticated)

	// Heard again: it serves, and remembers nothing from before.
	require.NoError(t, syscall.Kill(pid, syscall.SIGCONT))
	require.Eventually(t, r.svc.TokenCache().Serving, 2*time.Second, 10*time.Millisecond)
	_, err = r.svc.Authenticate(ctx, tok.Secret)
	requireCode(t, err, errcode.Unauthenticated)
}
