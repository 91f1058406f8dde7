package billingstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/billing/billingstore"
	"github.com/tenantplane/tenantplane/collectors/usage/usagestore"
	"github.com/tenantplane/tenantplane/internal/testenv"
)

// BenchmarkRating10k rates one hour of 10,000 namespaces × 4 resources
// from their minute samples (2.4 million): closing the hour (the rollup),
// rating and posting to the ledger, each namespace its own org.
func BenchmarkRating10k(b *testing.B) { benchRating(b, 10_000) }

// BenchmarkRating100k is the same for 100,000 namespaces (24 million
// samples).
func BenchmarkRating100k(b *testing.B) { benchRating(b, 100_000) }

var benchResources = []struct{ resource, class string }{
	{"cpu", ""}, {"memory", ""}, {"storage", "ssd"}, {"network.internet.egress", "internet"},
}

func benchRating(b *testing.B, namespaces int) {
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		h := seedRatingBench(b, namespaces)

		// The floor: one GROUP BY over the hour's samples.
		start := time.Now()
		groups := floorGroupBy(b, h.db.Pool)
		floor := time.Since(start)
		require.Equal(b, len(h.ids)*len(benchResources), groups)

		r, err := billing.NewRater(h.s, billing.RatingConfig{}, discard(), h.now)
		require.NoError(b, err)
		b.StartTimer()
		start = time.Now()
		closed, err := h.us.CloseHours(ctx, rt0.Add(time.Hour), rt0, 1, h.now())
		require.NoError(b, err)
		rolled := time.Since(start)
		run, err := r.RateAll(ctx)
		require.NoError(b, err)
		elapsed := time.Since(start)
		b.StopTimer()
		require.Equal(b, rt0.Add(time.Hour), closed)
		require.Equal(b, groups, run.Lines)
		require.Equal(b, len(h.ids), run.Postings)
		mm, err := h.s.Verify(ctx)
		require.NoError(b, err)
		require.Empty(b, mm)
		b.ReportMetric(elapsed.Seconds(), "s/hour")
		b.ReportMetric(floor.Seconds(), "floor-s")
		b.ReportMetric(elapsed.Seconds()/floor.Seconds(), "x-floor")
		fmt.Printf("rating %d namespaces × %d resources (%d samples): %.2fs (rollup %.2fs, rating and ledger %.2fs); GROUP BY floor %.2fs; ratio %.1f\n",
			len(h.ids), len(benchResources), h.samples, elapsed.Seconds(), rolled.Seconds(), (elapsed - rolled).Seconds(),
			floor.Seconds(), elapsed.Seconds()/floor.Seconds())
		b.StartTimer()
	}
}

// ratingBench is a database holding one org per namespace on the metered
// plan and one hour of minute samples for each, not closed yet.
type ratingBench struct {
	db      *testenv.DB
	s       *billingstore.Store
	us      *usagestore.Store
	now     func() time.Time
	ids     []int64
	samples int
}

func seedRatingBench(b testing.TB, namespaces int) ratingBench {
	ctx := context.Background()
	db := testenv.Postgres(b)
	now := func() time.Time { return rt0.Add(2 * time.Hour) }
	s := billingstore.New(db.Pool, now)
	setupPrices(b, s)
	_, err := db.Pool.Exec(ctx, `INSERT INTO orgs (name, plan, created_at, updated_at)
		SELECT 'org-' || g, 'metered', $1, $1 FROM generate_series(1, $2) g`, rt0, namespaces)
	require.NoError(b, err)
	_, err = db.Pool.Exec(ctx, `INSERT INTO namespaces (org_id, name, state, created_at, updated_at)
		SELECT id, 'ns-' || id, 'active', $1, $1 FROM orgs WHERE name LIKE 'org-%' ORDER BY id`, rt0)
	require.NoError(b, err)
	rows, err := db.Pool.Query(ctx, `SELECT id FROM namespaces ORDER BY id`)
	require.NoError(b, err)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	require.NoError(b, err)
	us := usagestore.New(db.Pool)
	_, err = us.EnsurePartitions(ctx, rt0, rt0.AddDate(0, 0, 1))
	require.NoError(b, err)
	total := len(ids) * len(benchResources) * 60
	n := 0
	_, err = db.Pool.CopyFrom(ctx, pgx.Identifier{"usage_minute"},
		[]string{"namespace_id", "minute", "resource", "class", "source", "key", "quantity"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if n == total {
				return nil, nil
			}
			m, r, ns := n%60, (n/60)%len(benchResources), ids[n/(60*len(benchResources))]
			n++
			return []any{ns, rt0.Add(time.Duration(m) * time.Minute), benchResources[r].resource, benchResources[r].class,
				"compute", "", int64(100 + (n*7919)%4000)}, nil
		}))
	require.NoError(b, err)
	_, err = db.Pool.Exec(ctx, `VACUUM ANALYZE usage_minute`)
	require.NoError(b, err)
	// Write back what seeding dirtied (gigabytes at 100,000 namespaces),
	// so the checkpoint it set off does not run inside the timed part.
	_, err = db.Pool.Exec(ctx, `CHECKPOINT`)
	require.NoError(b, err)
	return ratingBench{db: db, s: s, us: us, now: now, ids: ids, samples: total}
}

// floorGroupBy runs the single GROUP BY over the hour's samples and
// returns how many groups it made.
func floorGroupBy(b testing.TB, db *pgxpool.Pool) int {
	var groups int
	require.NoError(b, db.QueryRow(context.Background(), `SELECT count(*) FROM (SELECT namespace_id, resource, class, sum(quantity)
		FROM usage_minute WHERE minute >= $1 AND minute < $1 + interval '1 hour' GROUP BY 1, 2, 3) g`, rt0).Scan(&groups))
	return groups
}
