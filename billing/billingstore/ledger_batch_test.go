package billingstore_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/billing/billingstore"
	"github.com/tenantplane/tenantplane/internal/testenv"
)

// TestPostChargesEqualsPost posts the same charges through Post, one by
// one, in one database and through PostCharges, in batches, in another:
// the entries (accounts, grants, amounts, parts), the grants and the
// balances come out the same.
func TestPostChargesEqualsPost(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	one, many := testenv.Postgres(t), testenv.Postgres(t)
	s1 := billingstore.New(one.Pool, func() time.Time { return t0 })
	s2 := billingstore.New(many.Pool, func() time.Time { return t0 })
	r := rand.New(rand.NewPCG(9, 9))
	var charges []billing.Posting
	var orgs []int64
	for i := range 12 {
		o1, o2 := newOrg(t, one.Pool, fmt.Sprintf("org-%d", i)), newOrg(t, many.Pool, fmt.Sprintf("org-%d", i))
		require.Equal(t, o1, o2)
		orgs = append(orgs, o1)
		// Grants expiring at different times, some before the later
		// charges; cash for some orgs only.
		for g := range i % 4 {
			exp := t0.Add(time.Duration(1+r.IntN(10)) * time.Hour)
			p := posting(o1, billing.KindCredit, int64(1+r.IntN(300)), fmt.Sprintf("credit:%d:%d", i, g), t0)
			if g != 2 {
				p.ExpiresAt = &exp
			}
			for _, s := range []*billingstore.Store{s1, s2} {
				_, err := s.Post(ctx, p)
				require.NoError(t, err)
			}
		}
	}
	for k := range 120 {
		org := orgs[r.IntN(len(orgs))]
		amount := -int64(1 + r.IntN(200))
		if k%17 == 0 {
			amount = int64(1 + r.IntN(50)) // a correction that gives back
		}
		charges = append(charges, posting(org, billing.KindCharge, amount, fmt.Sprintf("rating:%d", k),
			t0.Add(time.Duration(r.IntN(12))*time.Hour)))
	}
	// Some references twice: the second posting changes nothing.
	dup := charges[5]
	for _, p := range append(charges, dup) {
		_, err := s1.Post(ctx, p)
		require.NoError(t, err)
	}
	n := 0
	for i := 0; i < len(charges); i += 25 {
		k, err := s2.PostCharges(ctx, charges[i:min(i+25, len(charges))])
		require.NoError(t, err)
		n += k
	}
	k, err := s2.PostCharges(ctx, []billing.Posting{dup})
	require.NoError(t, err)
	require.Zero(t, k)
	require.Equal(t, len(charges), n)

	const qEntries = `SELECT org_id, kind, account, coalesce(credit_grant_id, 0), amount_micros, currency, reference, part,
		description, actor, occurred_at FROM ledger_entries ORDER BY reference, part`
	const qGrants = `SELECT id, org_id, remaining_micros FROM credit_grants ORDER BY id`
	const qAccounts = `SELECT org_id, currency, cash_micros, credit_micros, entry_count FROM billing_accounts ORDER BY org_id`
	for _, q := range []string{qEntries, qGrants, qAccounts} {
		require.Equal(t, rowsOf(t, one.Pool, q), rowsOf(t, many.Pool, q), q)
	}
	for _, s := range []*billingstore.Store{s1, s2} {
		mm, err := s.Verify(ctx)
		require.NoError(t, err)
		require.Empty(t, mm)
	}
	// Charges are all PostCharges takes; another org's reference is
	// refused as Post refuses it.
	_, err = s2.PostCharges(ctx, []billing.Posting{posting(orgs[0], billing.KindTopUp, 1, "x", t0)})
	require.Error(t, err)
	other := charges[0]
	other.OrgID = orgs[len(orgs)-1]
	if other.OrgID == charges[0].OrgID {
		other.OrgID = orgs[0]
	}
	_, err = s2.PostCharges(ctx, []billing.Posting{other})
	require.Error(t, err)
}

type queryer interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func rowsOf(t *testing.T, db queryer, q string) [][]any {
	t.Helper()
	rows, err := db.Query(context.Background(), q)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([]any, error) { return r.Values() })
	require.NoError(t, err)
	return out
}
