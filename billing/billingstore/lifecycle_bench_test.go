package billingstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/billing/billingstore"
	"github.com/tenantplane/tenantplane/internal/testenv"
)

// BenchmarkLifecyclePass100k times the debt lifecycle's scheduled pass
// over 100,000 prepaid orgs after the first (full) pass, when 1% of them
// were charged since (a quiet minute), next to one query reading every
// account.
func BenchmarkLifecyclePass100k(b *testing.B) { benchLifecyclePass(b, 100_000) }

type countingSuspender struct{ n int }

func (c *countingSuspender) Suspend(context.Context, int64, string) error { c.n++; return nil }
func (c *countingSuspender) Resume(context.Context, int64) error          { c.n++; return nil }

func benchLifecyclePass(b *testing.B, orgs int) {
	ctx := context.Background()
	db := testenv.Postgres(b)
	now := rt0.Add(2 * time.Hour)
	clock := func() time.Time { return now }
	s := billingstore.New(db.Pool, clock)
	_, err := db.Pool.Exec(ctx, `INSERT INTO orgs (name, created_at, updated_at)
		SELECT 'org-' || g, $1, $1 FROM generate_series(1, $2) g`, rt0, orgs)
	require.NoError(b, err)
	// A spread of balances: most well above every threshold, some low.
	_, err = db.Pool.Exec(ctx, `INSERT INTO billing_accounts (org_id, currency, cash_micros, created_at, updated_at)
		SELECT id, 'USD', CASE WHEN id % 50 = 0 THEN 1000000 ELSE 100000000 END, $1, $1 FROM orgs`, rt0)
	require.NoError(b, err)
	_, err = db.Pool.Exec(ctx, `VACUUM ANALYZE`)
	require.NoError(b, err)
	susp := &countingSuspender{}
	l, err := billing.NewLifecycle(billing.DefaultLifecycleConfig(), billing.LifecycleDeps{Store: s, Suspender: susp, Clock: clock, Log: discard()})
	require.NoError(b, err)
	// The first pass finds every org new and records its state.
	first := time.Now()
	require.NoError(b, l.Pass(ctx))
	firstPass := time.Since(first)
	var states int
	require.NoError(b, db.Pool.QueryRow(ctx, `SELECT count(*) FROM billing_debt_states`).Scan(&states))
	require.Equal(b, orgs, states)

	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		now = now.Add(time.Minute)
		charged := chargeSome(b, s, orgs/100, now, i)
		b.StartTimer()
		start := time.Now()
		require.NoError(b, l.Pass(ctx))
		elapsed := time.Since(start)
		b.StopTimer()
		start = time.Now()
		var n int
		require.NoError(b, db.Pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT org_id, cash_micros + credit_micros FROM billing_accounts) a`).Scan(&n))
		floor := time.Since(start)
		require.Equal(b, orgs, n)
		require.Zero(b, susp.n)
		b.ReportMetric(elapsed.Seconds(), "s/pass")
		b.ReportMetric(elapsed.Seconds()/floor.Seconds(), "x-floor")
		fmt.Printf("lifecycle pass over %d prepaid orgs, %d charged since the last: %.3fs (the first, full pass %.2fs); reading every account %.3fs; ratio %.1f\n",
			orgs, charged, elapsed.Seconds(), firstPass.Seconds(), floor.Seconds(), elapsed.Seconds()/floor.Seconds())
		b.StartTimer()
	}
}

var _ billing.Suspender = (*countingSuspender)(nil)

// chargeSome posts a small charge to n orgs spread over all of them, as a
// rating run does, without telling the lifecycle.
func chargeSome(b *testing.B, s *billingstore.Store, n int, at time.Time, round int) int {
	b.Helper()
	var ps []billing.Posting
	for k := range n {
		ps = append(ps, billing.Posting{OrgID: int64(1 + k*100), Kind: billing.KindCharge, Amount: -1000, Currency: "USD",
			Reference: fmt.Sprintf("bench:%d:%d", round, k), Actor: "system:bench", At: at})
	}
	for _, p := range ps {
		_, err := s.Post(context.Background(), p)
		require.NoError(b, err)
	}
	return len(ps)
}
