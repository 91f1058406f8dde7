package billingstore_test

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/billing/billingstore"
	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/internal/testenv"
	"github.com/tenantplane/tenantplane/tenancy"
)

// clock is a settable clock for tests.
type clock struct{ t atomic.Int64 }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.set(t)
	return c
}
func (c *clock) set(t time.Time)     { c.t.Store(t.UnixNano()) }
func (c *clock) now() time.Time      { return time.Unix(0, c.t.Load()).UTC() }
func (c *clock) add(d time.Duration) { c.set(c.now().Add(d)) }

func userCtx(id int64) context.Context {
	return tenancy.WithActor(context.Background(), tenancy.Actor{UserID: id, IP: netip.MustParseAddr("203.0.113.9"), RequestID: "req-1"})
}

func newGiftCodes(t *testing.T, s *billingstore.Store, c *clock, perUser int) *billing.GiftCodes {
	t.Helper()
	cfg := billing.DefaultGiftCodeConfig()
	cfg.RedeemPerUser.Max = perUser
	cfg.RedeemPerOrg.Max = 1000
	g, err := billing.NewGiftCodes(s, cfg, nil, nil, c.now)
	require.NoError(t, err)
	return g
}

func TestGiftCodeRedemption(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	c := newClock(t0)
	s := billingstore.New(db.Pool, c.now)
	g := newGiftCodes(t, s, c, 1000)
	ctx := context.Background()
	admin := userCtx(1)
	a, b, third := newOrg(t, db.Pool, "a"), newOrg(t, db.Pool, "b"), newOrg(t, db.Pool, "third")

	code, gc, err := g.Create(admin, billing.GiftCodeInput{
		Amount: 5_000_000, Currency: "USD", ExpiresAt: t0.Add(7 * 24 * time.Hour),
		CreditValidFor: 30 * 24 * time.Hour, MaxRedemptions: 2, Note: "launch",
	})
	require.NoError(t, err)
	require.Equal(t, 2, gc.MaxRedemptions)
	require.Equal(t, 30*24*time.Hour, gc.CreditValidFor)
	require.Equal(t, "user:1", gc.CreatedBy)

	// Only the hash is stored, nowhere the code.
	var stored string
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT code_hash FROM gift_codes WHERE id = $1`, gc.ID).Scan(&stored))
	require.Equal(t, billing.HashGiftCode(billing.NormalizeGiftCode(code)), stored)
	var leaks int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM gift_codes g WHERE g::text LIKE '%' || $1 || '%'`,
		billing.NormalizeGiftCode(code)[:8]).Scan(&leaks))
	require.Zero(t, leaks)

	c.add(time.Hour)
	r, err := g.Redeem(userCtx(2), a, code)
	require.NoError(t, err)
	require.Equal(t, fmt.Sprintf("giftcode:%d:org:%d", gc.ID, a), r.Reference)
	require.Len(t, r.Posted.Entries, 1)
	e := r.Posted.Entries[0]
	require.Equal(t, billing.KindGiftCode, e.Kind)
	require.Equal(t, billing.Credit, e.Account)
	require.Equal(t, int64(5_000_000), r.Posted.Balance.UsableCredit)
	grants, err := s.CreditGrants(ctx, a, false, 10)
	require.NoError(t, err)
	require.Len(t, grants, 1)
	require.Equal(t, billing.KindGiftCode, grants[0].Source)
	require.Equal(t, c.now().Add(30*24*time.Hour), *grants[0].ExpiresAt)

	_, err = g.Redeem(userCtx(2), a, code)
	require.Equal(t, errcode.Conflict, errcode.Of(err), "one redemption per org")
	_, err = g.Redeem(userCtx(3), b, "  "+lower(code)+" ")
	require.NoError(t, err, "typed in lower case with spaces")
	_, err = g.Redeem(userCtx(4), third, code)
	require.Equal(t, errcode.Conflict, errcode.Of(err), "used up")

	other, _, err := g.Create(admin, billing.GiftCodeInput{Amount: 1, Currency: "USD", ExpiresAt: c.now().Add(2 * time.Hour), MaxRedemptions: 5})
	require.NoError(t, err)
	_, err = g.Redeem(userCtx(4), third, "0000-0000-0000-0000-0000")
	require.Equal(t, errcode.NotFound, errcode.Of(err))
	_, err = g.Redeem(userCtx(4), third, "not a code")
	require.Equal(t, errcode.BadUserInput, errcode.Of(err))
	c.add(2 * time.Hour)
	_, err = g.Redeem(userCtx(4), third, other)
	require.Equal(t, errcode.NotFound, errcode.Of(err), "the code has expired")

	var redemptions, audits int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT redemptions FROM gift_codes WHERE id = $1`, gc.ID).Scan(&redemptions))
	require.Equal(t, 2, redemptions)
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE action LIKE 'billing.giftcode.%'`).Scan(&audits))
	require.Equal(t, 4, audits, "two creations, two redemptions")

	list, err := g.List(ctx, 0, 1)
	require.NoError(t, err)
	require.Len(t, list, 1)
	list, err = g.List(ctx, list[0].ID, 10)
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.Equal(t, gc.ID, list[0].ID)

	mm, err := s.Verify(ctx)
	require.NoError(t, err)
	require.Empty(t, mm)
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func TestGiftCodeConcurrentRedemptionsStopAtMax(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	c := newClock(t0)
	s := billingstore.New(db.Pool, c.now)
	g := newGiftCodes(t, s, c, 1000)
	code, gc, err := g.Create(userCtx(1), billing.GiftCodeInput{Amount: 1_000_000, Currency: "USD", ExpiresAt: t0.Add(time.Hour), MaxRedemptions: 3})
	require.NoError(t, err)
	orgs := make([]int64, 10)
	for i := range orgs {
		orgs[i] = newOrg(t, db.Pool, fmt.Sprintf("org%d", i))
	}
	var wg sync.WaitGroup
	var ok, conflict atomic.Int64
	for i, org := range orgs {
		wg.Go(func() {
			_, err := g.Redeem(userCtx(int64(100+i)), org, code)
			switch {
			case err == nil:
				ok.Add(1)
			case errcode.Of(err) == errcode.Conflict:
				conflict.Add(1)
			default:
				t.Errorf("redeem: %v", err)
			}
		})
	}
	wg.Wait()
	require.Equal(t, int64(3), ok.Load())
	require.Equal(t, int64(7), conflict.Load())
	var n int
	require.NoError(t, db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM ledger_entries WHERE kind = 'gift_code'`).Scan(&n))
	require.Equal(t, 3, n)
	require.NoError(t, db.Pool.QueryRow(context.Background(), `SELECT redemptions FROM gift_codes WHERE id = $1`, gc.ID).Scan(&n))
	require.Equal(t, 3, n)
}

func TestGiftCodeRedemptionIsRateLimited(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	c := newClock(t0)
	s := billingstore.New(db.Pool, c.now)
	g := newGiftCodes(t, s, c, 3)
	org := newOrg(t, db.Pool, "acme")
	for range 3 {
		_, err := g.Redeem(userCtx(7), org, "0000-0000-0000-0000-0000")
		require.Equal(t, errcode.NotFound, errcode.Of(err))
	}
	_, err := g.Redeem(userCtx(7), org, "0000-0000-0000-0000-0000")
	require.Equal(t, errcode.RateLimited, errcode.Of(err), "failed guesses count")
	_, err = g.Redeem(userCtx(8), org, "0000-0000-0000-0000-0000")
	require.Equal(t, errcode.NotFound, errcode.Of(err), "another user has attempts of their own")
	// Two windows later the first user may try again.
	c.add(2 * time.Hour)
	_, err = g.Redeem(userCtx(7), org, "0000-0000-0000-0000-0000")
	require.Equal(t, errcode.NotFound, errcode.Of(err))
	_, err = g.Redeem(context.Background(), org, "0000-0000-0000-0000-0000")
	require.Equal(t, errcode.Unauthenticated, errcode.Of(err))
}
