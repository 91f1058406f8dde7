package billingstore_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/billing/billingstore"
	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var t0 = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

func newOrg(t *testing.T, pool *pgxpool.Pool, name string) int64 {
	t.Helper()
	var id int64
	require.NoError(t, pool.QueryRow(context.Background(),
		`INSERT INTO orgs (name, created_at, updated_at) VALUES ($1, $2, $2) RETURNING id`, name, t0).Scan(&id))
	return id
}

func posting(org int64, kind billing.Kind, amount int64, ref string, at time.Time) billing.Posting {
	return billing.Posting{OrgID: org, Kind: kind, Amount: amount, Currency: "USD", Reference: ref,
		Actor: "system:test", At: at, Description: "test"}
}

func TestPostIsIdempotentByReference(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	s := billingstore.New(db.Pool, func() time.Time { return t0 })
	ctx := context.Background()
	org := newOrg(t, db.Pool, "acme")

	p, err := s.Post(ctx, posting(org, billing.KindTopUp, 50_000_000, "topup:1", t0))
	require.NoError(t, err)
	require.False(t, p.Duplicate)
	require.Equal(t, int64(50_000_000), p.Balance.Cash)

	p, err = s.Post(ctx, posting(org, billing.KindCharge, -1_250_000, "charge:1", t0))
	require.NoError(t, err)
	require.Equal(t, int64(48_750_000), p.Balance.Usable())

	again, err := s.Post(ctx, posting(org, billing.KindCharge, -1_250_000, "charge:1", t0))
	require.NoError(t, err)
	require.True(t, again.Duplicate)
	require.Equal(t, p.Entries[0].ID, again.Entries[0].ID)
	require.Equal(t, int64(48_750_000), again.Balance.Usable())

	other := newOrg(t, db.Pool, "other")
	_, err = s.Post(ctx, posting(other, billing.KindCharge, -1, "charge:1", t0))
	require.Equal(t, errcode.Conflict, errcode.Of(err))

	eur := posting(org, billing.KindTopUp, 1, "topup:eur", t0)
	eur.Currency = "EUR"
	_, err = s.Post(ctx, eur)
	require.Equal(t, errcode.Conflict, errcode.Of(err))

	mm, err := s.Verify(ctx)
	require.NoError(t, err)
	require.Empty(t, mm)
}

func TestPostValidates(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	s := billingstore.New(db.Pool, func() time.Time { return t0 })
	org := newOrg(t, db.Pool, "acme")
	exp := t0.Add(-time.Hour)
	for name, p := range map[string]billing.Posting{
		"zero":            posting(org, billing.KindTopUp, 0, "a", t0),
		"negative top-up": posting(org, billing.KindTopUp, -1, "b", t0),
		"positive refund": posting(org, billing.KindRefund, 1, "c", t0),
		"no reason":       {OrgID: org, Kind: billing.KindAdjustment, Amount: 1, Currency: "USD", Reference: "d", Actor: "user:1", At: t0},
		"bad currency":    {OrgID: org, Kind: billing.KindTopUp, Amount: 1, Currency: "usd", Reference: "e", Actor: "x", At: t0},
		"expiry":          {OrgID: org, Kind: billing.KindCredit, Amount: 1, Currency: "USD", Reference: "f", Actor: "x", At: t0, ExpiresAt: &exp},
		"expiry on cash":  {OrgID: org, Kind: billing.KindTopUp, Amount: 1, Currency: "USD", Reference: "g", Actor: "x", At: t0, ExpiresAt: &t0},
		"unknown kind":    posting(org, "bonus", 1, "h", t0),
		"posted expiry":   posting(org, billing.KindCreditExpiry, -1, "i", t0),
	} {
		_, err := s.Post(context.Background(), p)
		require.Equal(t, errcode.BadUserInput, errcode.Of(err), name)
	}
	_, err := s.Post(context.Background(), posting(org+1000, billing.KindTopUp, 1, "j", t0))
	require.Equal(t, errcode.NotFound, errcode.Of(err))
}

func TestChargesUseCreditEarliestExpiryFirst(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	s := billingstore.New(db.Pool, func() time.Time { return t0 })
	ctx := context.Background()
	org := newOrg(t, db.Pool, "acme")
	day := 24 * time.Hour
	grant := func(ref string, amount int64, exp *time.Time) int64 {
		p := posting(org, billing.KindCredit, amount, ref, t0)
		p.ExpiresAt = exp
		out, err := s.Post(ctx, p)
		require.NoError(t, err)
		return out.Entries[0].CreditGrantID
	}
	in2, in1, in3 := t0.Add(2*day), t0.Add(day), t0.Add(3*day)
	a := grant("credit:a", 10, &in2)
	b := grant("credit:b", 5, &in1)
	c := grant("credit:c", 3, nil)
	old := grant("credit:old", 100, &in3)
	_, err := s.Post(ctx, posting(org, billing.KindTopUp, 20, "topup", t0))
	require.NoError(t, err)

	// At 3½ days "old" has expired and is not used, though not yet written off.
	p, err := s.Post(ctx, posting(org, billing.KindCharge, -12, "charge:1", t0.Add(time.Hour)))
	require.NoError(t, err)
	require.Equal(t, []int64{b, a}, grantsOf(p.Entries))
	require.Equal(t, []int64{-5, -7}, amountsOf(p.Entries))

	late := t0.Add(3*day + 12*time.Hour)
	p, err = s.Post(ctx, posting(org, billing.KindCharge, -10, "charge:2", late))
	require.NoError(t, err)
	// a and b have expired by then too: only c and cash pay.
	require.Equal(t, []int64{c, 0}, grantsOf(p.Entries))
	require.Equal(t, []int64{-3, -7}, amountsOf(p.Entries))
	require.Equal(t, billing.Cash, p.Entries[1].Account)

	n, err := s.ExpireCredits(ctx, late)
	require.NoError(t, err)
	require.Equal(t, 2, n) // a (3 left) and old (100 left); b is used up
	n, err = s.ExpireCredits(ctx, late)
	require.NoError(t, err)
	require.Zero(t, n)
	bal, err := s.Balance(ctx, org, late, "USD")
	require.NoError(t, err)
	require.Equal(t, billing.Balance{OrgID: org, Currency: "USD", Cash: 13, Credit: 0, UsableCredit: 0, UpdatedAt: t0}, bal)
	_ = old

	mm, err := s.Verify(ctx)
	require.NoError(t, err)
	require.Empty(t, mm)
}

func grantsOf(es []billing.Entry) []int64 {
	out := make([]int64, len(es))
	for i, e := range es {
		out[i] = e.CreditGrantID
	}
	return out
}

func amountsOf(es []billing.Entry) []int64 {
	out := make([]int64, len(es))
	for i, e := range es {
		out[i] = e.Amount
	}
	return out
}

func TestConcurrentPostingsApplyOnce(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	s := billingstore.New(db.Pool, func() time.Time { return t0 })
	ctx := context.Background()
	org := newOrg(t, db.Pool, "acme")
	exp := t0.Add(48 * time.Hour)
	cp := posting(org, billing.KindCredit, 1000, "credit", t0)
	cp.ExpiresAt = &exp
	_, err := s.Post(ctx, cp)
	require.NoError(t, err)

	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			ref := fmt.Sprintf("charge:%d", i%10) // each reference four times
			_, err := s.Post(ctx, posting(org, billing.KindCharge, -150, ref, t0.Add(time.Hour)))
			require.NoError(t, err)
		})
	}
	wg.Wait()
	bal, err := s.Balance(ctx, org, t0, "USD")
	require.NoError(t, err)
	require.Equal(t, int64(0), bal.Credit)
	require.Equal(t, int64(-500), bal.Cash)
	mm, err := s.Verify(ctx)
	require.NoError(t, err)
	require.Empty(t, mm)
}

func TestLedgerIsAppendOnlyAndVerifyFindsDrift(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	s := billingstore.New(db.Pool, func() time.Time { return t0 })
	ctx := context.Background()
	org := newOrg(t, db.Pool, "acme")
	_, err := s.Post(ctx, posting(org, billing.KindTopUp, 7, "topup", t0))
	require.NoError(t, err)

	_, err = db.Pool.Exec(ctx, `UPDATE ledger_entries SET amount_micros = 8`)
	require.ErrorContains(t, err, "append-only")
	_, err = db.Pool.Exec(ctx, `DELETE FROM ledger_entries`)
	require.ErrorContains(t, err, "append-only")

	_, err = db.Pool.Exec(ctx, `UPDATE billing_accounts SET cash_micros = 9`)
	require.NoError(t, err)
	mm, err := s.Verify(ctx)
	require.NoError(t, err)
	require.Equal(t, []billing.Mismatch{{OrgID: org, CashRow: 9, CashEntries: 7, EntryCountRow: 1, Entries: 1}}, mm)
}
