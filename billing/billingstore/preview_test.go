package billingstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/billing/billingstore"
	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/internal/testenv"
	"github.com/tenantplane/tenantplane/tenancy"
)

// TestPreviewAndPublish rates a past period under a draft that doubles
// the CPU price without writing anything, then publishes it: it applies
// from its effective hour on, never to hours already charged, and its
// prices are frozen.
func TestPreviewAndPublish(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	ctx := context.Background()
	now := rt0.Add(24 * time.Hour)
	s := billingstore.New(db.Pool, func() time.Time { return now })
	v1 := setupPrices(t, s)
	f := seedUsage(t, db.Pool, 2, 2, 11)
	_, err := newRater(t, s, 100).RateAll(ctx)
	require.NoError(t, err)
	p, err := billing.NewPricing(s, s, s, billing.RatingConfig{}, func() time.Time { return now })
	require.NoError(t, err)
	by := tenancy.Actor{UserID: 1}

	draft, err := p.CreateDraft(ctx, v1.PriceBookID, "double cpu", v1.ID, by)
	require.NoError(t, err)
	require.Len(t, draft.Prices, len(prices))
	draft, err = p.SetPrice(ctx, billing.Price{VersionID: draft.ID, Resource: "cpu", Mode: billing.PriceUnit,
		Tiers: []billing.Tier{{UnitPrice: 80_000}}}, by)
	require.NoError(t, err)

	count := func() (n int64) {
		require.NoError(t, db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM charge_lines) + (SELECT count(*) FROM ledger_entries)`).Scan(&n))
		return n
	}
	before := count()
	pv, err := p.PreviewRerating(ctx, draft.ID, rt0, rt0.Add(2*time.Hour))
	require.NoError(t, err)
	require.Equal(t, before, count(), "the preview writes nothing")
	require.Len(t, pv.Orgs, len(f.orgs))
	want := f.expected()
	for _, o := range pv.Orgs {
		require.Equal(t, want[o.OrgID], o.Charged)
		// The draft charges what was charged plus each CPU line again
		// (twice the price, rounded once per line).
		rows, err := db.Pool.Query(ctx, `SELECT quantity, amount_micros FROM charge_lines WHERE org_id = $1 AND resource = 'cpu'`, o.OrgID)
		require.NoError(t, err)
		extra := int64(0)
		for rows.Next() {
			var q, a int64
			require.NoError(t, rows.Scan(&q, &a))
			extra += halfEven(q*80_000, 60_000) - a
		}
		require.NoError(t, rows.Err())
		require.Equal(t, o.Charged+extra, o.Draft, "org %d", o.OrgID)
	}

	_, err = p.Publish(ctx, draft.ID, rt0, by)
	require.Equal(t, errcode.BadUserInput, errcode.Of(err), "a version cannot take effect in the past")
	_, err = p.Publish(ctx, draft.ID, now.Add(90*time.Minute), by)
	require.Equal(t, errcode.BadUserInput, errcode.Of(err), "whole hours only")
	pub, err := p.Publish(ctx, draft.ID, now.Add(2*time.Hour), by)
	require.NoError(t, err)
	require.False(t, pub.Draft())
	_, err = p.SetPrice(ctx, billing.Price{VersionID: draft.ID, Resource: "cpu", Mode: billing.PriceUnit,
		Tiers: []billing.Tier{{UnitPrice: 1}}}, by)
	require.Equal(t, errcode.Conflict, errcode.Of(err))
	_, err = db.Pool.Exec(ctx, `UPDATE price_tiers SET unit_price_micros = 1`)
	require.ErrorContains(t, err, "cannot change", "published prices are frozen in the database too")
	run, err := newRater(t, s, 100).RateAll(ctx)
	require.NoError(t, err)
	require.Zero(t, run.Lines)
	checkMoney(t, db.Pool, s, f, 0)

	var audits int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE action LIKE 'billing.%'`).Scan(&audits))
	require.GreaterOrEqual(t, audits, 1+1+len(prices)+1+1+1+1+1)
}
