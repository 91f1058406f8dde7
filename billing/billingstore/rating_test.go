package billingstore_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/billing/billingstore"
	"github.com/tenantplane/tenantplane/collectors/usage"
	"github.com/tenantplane/tenantplane/collectors/usage/usagestore"
	"github.com/tenantplane/tenantplane/internal/testenv"
	"github.com/tenantplane/tenantplane/tenancy"
)

// The environment of the rating process that the crash tests start: this
// test binary again, which rates and exits instead of running tests.
const (
	helperDBEnv    = "TENANTPLANE_RATING_HELPER_DB"
	helperBatchEnv = "TENANTPLANE_RATING_HELPER_BATCH"
)

func init() {
	url := os.Getenv(helperDBEnv)
	if url == "" {
		return
	}
	batch, _ := strconv.Atoi(os.Getenv(helperBatchEnv))
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, url)
	if err == nil {
		var r *billing.Rater
		r, err = billing.NewRater(billingstore.New(pool, time.Now), billing.RatingConfig{BatchSize: batch},
			slog.New(slog.NewTextHandler(io.Discard, nil)), time.Now)
		if err == nil {
			_, err = r.RateAll(ctx)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "rating:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

var rt0 = time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)

// prices are what the rating tests charge, per priced unit.
var prices = map[string]int64{
	"cpu":                     40_000, // 0.04 per core-hour
	"memory":                  5_000,  // 0.005 per GiB-hour
	"storage":                 100,    // 0.0001 per GiB-hour
	"network.internet.egress": 90_000, // 0.09 per GiB
}

// setupPrices publishes a USD book with prices and a plan "metered" bound
// to it, and returns the version.
func setupPrices(t testing.TB, s *billingstore.Store) billing.PriceBookVersion {
	t.Helper()
	ctx := context.Background()
	by := tenancy.Actor{UserID: 1}
	book, err := s.CreatePriceBook(ctx, billing.PriceBook{Name: "metered", Currency: "USD"}, by)
	require.NoError(t, err)
	v, err := s.CreatePriceBookVersion(ctx, book.ID, "first", 0, by)
	require.NoError(t, err)
	for r, p := range prices {
		_, err = s.SetPrice(ctx, billing.Price{VersionID: v.ID, Resource: r, Mode: billing.PriceUnit,
			UnitDivisor: billing.PriceUnitDivisor(r), Tiers: []billing.Tier{{UnitPrice: p}}}, by)
		require.NoError(t, err)
	}
	v, err = s.PublishPriceBookVersion(ctx, v.ID, rt0.AddDate(0, -1, 0), rt0.AddDate(0, -1, -1), by)
	require.NoError(t, err)
	_, err = s.SetPlan(ctx, billing.Plan{Name: "metered", BillingMode: billing.PlanPrepaid, PriceBookID: book.ID}, by)
	require.NoError(t, err)
	return v
}

type fixture struct {
	orgs    []int64
	nsOrg   map[int64]int64
	samples []usage.Sample
}

// seedUsage makes orgs with two namespaces each on plan "metered" and
// writes random minute samples of four resources for hours hours from rt0.
func seedUsage(t *testing.T, pool *pgxpool.Pool, orgs, hours int, seed uint64) fixture {
	t.Helper()
	ctx := context.Background()
	f := fixture{nsOrg: map[int64]int64{}}
	r := rand.New(rand.NewPCG(seed, 7))
	for i := range orgs {
		var org int64
		require.NoError(t, pool.QueryRow(ctx, `INSERT INTO orgs (name, plan, created_at, updated_at)
			VALUES ($1, 'metered', $2, $2) RETURNING id`, fmt.Sprintf("org-%d", i), rt0).Scan(&org))
		f.orgs = append(f.orgs, org)
		for j := range 2 {
			var ns int64
			require.NoError(t, pool.QueryRow(ctx, `INSERT INTO namespaces (org_id, name, state, created_at, updated_at)
				VALUES ($1, $2, 'active', $3, $3) RETURNING id`, org, fmt.Sprintf("ns-%d-%d", i, j), rt0).Scan(&ns))
			f.nsOrg[ns] = org
			for m := range hours * 60 {
				minute := rt0.Add(time.Duration(m) * time.Minute)
				f.samples = append(f.samples,
					usage.Sample{NamespaceID: ns, Resource: "cpu", Minute: minute, Quantity: r.Int64N(4000)},
					usage.Sample{NamespaceID: ns, Resource: "memory", Minute: minute, Quantity: r.Int64N(8192)},
					usage.Sample{NamespaceID: ns, Resource: "storage", Class: "ssd", Minute: minute, Quantity: 10240 + r.Int64N(100)},
					usage.Sample{NamespaceID: ns, Resource: "network.internet.egress", Class: "internet", Minute: minute, Quantity: r.Int64N(50 << 20)},
				)
			}
		}
	}
	us := usagestore.New(pool)
	_, err := us.EnsurePartitions(ctx, rt0.AddDate(0, 0, -1), rt0.AddDate(0, 0, 3))
	require.NoError(t, err)
	_, err = us.Write(ctx, usage.SourceCompute, f.samples)
	require.NoError(t, err)
	closed, err := us.CloseHours(ctx, rt0.Add(time.Duration(hours)*time.Hour), rt0, hours, rt0.Add(time.Duration(hours)*time.Hour))
	require.NoError(t, err)
	require.Equal(t, rt0.Add(time.Duration(hours)*time.Hour), closed)
	return f
}

// expected works out each org's charges from the samples alone: the
// samples summed per namespace, resource, class and hour, times the
// price, divided by the unit, rounded half to even with math/big.
func (f fixture) expected() map[int64]int64 {
	type k struct {
		ns       int64
		res, cls string
		hour     time.Time
	}
	sums := map[k]int64{}
	for _, s := range f.samples {
		sums[k{s.NamespaceID, s.Resource, s.Class, s.Minute.Truncate(time.Hour)}] += s.Quantity
	}
	out := map[int64]int64{}
	for key, q := range sums {
		out[f.nsOrg[key.ns]] += halfEven(q*prices[key.res], billing.PriceUnitDivisor(key.res))
	}
	return out
}

// halfEven returns n÷d, n ≥ 0, rounded half to even, in math/big.
func halfEven(n, d int64) int64 {
	q, r := new(big.Int).QuoRem(big.NewInt(n), big.NewInt(d), new(big.Int))
	switch r.Lsh(r, 1).Cmp(big.NewInt(d)) {
	case 1:
		q.Add(q, big.NewInt(1))
	case 0:
		if q.Bit(0) == 1 {
			q.Add(q, big.NewInt(1))
		}
	}
	return q.Int64()
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newRater(t *testing.T, s *billingstore.Store, batch int) *billing.Rater {
	t.Helper()
	r, err := billing.NewRater(s, billing.RatingConfig{BatchSize: batch}, slog.New(slog.NewTextHandler(io.Discard, nil)),
		func() time.Time { return rt0.Add(24 * time.Hour) })
	require.NoError(t, err)
	return r
}

// checkMoney asserts that every org's balance is start less what the
// samples cost, that the ledger agrees with its balance rows, and that
// the charge lines sum to the ledger's charges.
func checkMoney(t *testing.T, pool *pgxpool.Pool, s *billingstore.Store, f fixture, start int64) {
	t.Helper()
	ctx := context.Background()
	want := f.expected()
	for _, org := range f.orgs {
		b, err := s.Balance(ctx, org, rt0, "USD")
		require.NoError(t, err)
		require.Equal(t, start-want[org], b.Cash+b.Credit, "org %d", org)
	}
	mm, err := s.Verify(ctx)
	require.NoError(t, err)
	require.Empty(t, mm)
	var lines, ledger, n, rows int64
	require.NoError(t, pool.QueryRow(ctx, `SELECT coalesce(sum(amount_micros), 0)::bigint, count(*) FROM charge_lines`).Scan(&lines, &n))
	require.NoError(t, pool.QueryRow(ctx, `SELECT coalesce(sum(amount_micros), 0)::bigint FROM ledger_entries WHERE kind = 'charge'`).Scan(&ledger))
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM usage_hourly`).Scan(&rows))
	require.Equal(t, -ledger, lines, "lines sum to the ledger's charges")
	require.Equal(t, rows, n, "one line per rollup row")
	var orphans int64
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM charge_lines c WHERE ledger_reference IS NOT NULL
		AND NOT EXISTS (SELECT 1 FROM ledger_entries e WHERE e.reference = c.ledger_reference AND e.org_id = c.org_id)`).Scan(&orphans))
	require.Zero(t, orphans, "every line's reference is a posting of its org")
}

// grantAll gives every org 5.00 of cash and 1.00 of credit expiring in a
// year, so charges use credit first and then cash.
func grantAll(t *testing.T, s *billingstore.Store, orgs []int64) int64 {
	t.Helper()
	exp := rt0.AddDate(1, 0, 0)
	for _, org := range orgs {
		_, err := s.Post(context.Background(), posting(org, billing.KindTopUp, 5_000_000, fmt.Sprintf("topup:%d", org), rt0))
		require.NoError(t, err)
		p := posting(org, billing.KindCredit, 1_000_000, fmt.Sprintf("credit:%d", org), rt0)
		p.ExpiresAt = &exp
		_, err = s.Post(context.Background(), p)
		require.NoError(t, err)
	}
	return 6_000_000
}

func TestRatingChargesOnceAndCorrectsLateUsage(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	ctx := context.Background()
	s := billingstore.New(db.Pool, func() time.Time { return rt0.Add(24 * time.Hour) })
	setupPrices(t, s)
	f := seedUsage(t, db.Pool, 3, 2, 1)
	start := grantAll(t, s, f.orgs)
	r := newRater(t, s, 7)

	run, err := r.RateAll(ctx)
	require.NoError(t, err)
	require.Equal(t, 3*2*4*2, run.Rows)
	require.Equal(t, run.Rows, run.Lines)
	checkMoney(t, db.Pool, s, f, start)

	again, err := r.RateAll(ctx)
	require.NoError(t, err)
	require.Equal(t, billing.RatingRun{}, again, "rerating adds nothing")

	// Usage of a closed hour arrives late: a correction line, not a
	// second charge of the hour.
	ns := f.samples[0].NamespaceID
	late := usage.Sample{NamespaceID: ns, Resource: "cpu", Minute: rt0.Add(30 * time.Minute), Quantity: 90_000, Key: "late-1"}
	us := usagestore.New(db.Pool)
	_, err = us.Write(ctx, "meter", []usage.Sample{late})
	require.NoError(t, err)
	n, err := us.Correct(ctx, rt0.AddDate(0, 0, -1), rt0.Add(3*time.Hour))
	require.NoError(t, err)
	require.Equal(t, 1, n)
	f.samples = append(f.samples, late)
	run, err = r.RateAll(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, run.Lines)
	require.Equal(t, int64(60_000), run.Amount) // 1.5 core-hours at 0.04
	checkMoney(t, db.Pool, s, f, start)
	var rev int
	var key string
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT revision, key FROM charge_lines ORDER BY id DESC LIMIT 1`).Scan(&rev, &key))
	require.Equal(t, 1, rev)
	require.Equal(t, billing.ChargeLineKey(ns, "cpu", "", rt0, 1), key)

	// The line explains itself down to its samples.
	var id int64
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT id FROM charge_lines WHERE key = $1`, billing.ChargeLineKey(ns, "cpu", "", rt0, 0)).Scan(&id))
	l, err := s.Charge(ctx, id)
	require.NoError(t, err)
	samples, err := s.ChargeSamples(ctx, l)
	require.NoError(t, err)
	require.Len(t, samples, 61) // 60 minutes from compute and the late event
	var sum int64
	for _, c := range samples {
		sum += c.Quantity
	}
	require.Equal(t, l.Quantity+late.Quantity, sum)
	require.Equal(t, int64(40_000), l.UnitPrice)
	page, err := s.OrgCharges(ctx, l.OrgID, rt0, rt0.Add(time.Hour), 0, 100)
	require.NoError(t, err)
	require.Len(t, page, 2*4+1)
}

// TestRatingCrashes kills a rating process with SIGKILL at random points
// in 30 runs over the same usage; afterwards every balance is what the
// samples cost, each line is charged once, and the ledger agrees.
func TestRatingCrashes(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	s := billingstore.New(db.Pool, func() time.Time { return rt0.Add(24 * time.Hour) })
	setupPrices(t, s)
	f := seedUsage(t, db.Pool, 20, 6, 2)
	start := grantAll(t, s, f.orgs)
	r := rand.New(rand.NewPCG(3, 4))
	var total int64
	require.NoError(t, db.Pool.QueryRow(context.Background(), `SELECT max(seq) FROM usage_hourly`).Scan(&total))
	midway := 0
	var seqs []int64
	for range 30 {
		// Batches of two rows: many commits per run, so most runs are
		// killed with part of the usage rated however fast a batch is.
		cmd := helper(t, db.URL, 2)
		require.NoError(t, cmd.Start())
		// The process takes some 100 ms to start and connect; rating
		// all of the usage takes a few hundred more.
		time.Sleep(time.Duration(80+r.IntN(120)) * time.Millisecond)
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		_ = cmd.Wait()
		var seq int64
		require.NoError(t, db.Pool.QueryRow(context.Background(), `SELECT last_seq FROM rating_state`).Scan(&seq))
		if seq > 0 && seq < total && (len(seqs) == 0 || seq > seqs[len(seqs)-1]) {
			midway++
		}
		seqs = append(seqs, seq)
	}
	t.Logf("watermark after each killed run: %v of %d", seqs, total)
	require.Greater(t, midway, 3, "runs were killed halfway")
	cmd := helper(t, db.URL, 5)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	checkMoney(t, db.Pool, s, f, start)
}

// TestRatingTwoProcessesAtOnce: two raters started together charge each
// line once.
func TestRatingTwoProcessesAtOnce(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	s := billingstore.New(db.Pool, func() time.Time { return rt0.Add(24 * time.Hour) })
	setupPrices(t, s)
	f := seedUsage(t, db.Pool, 10, 3, 5)
	start := grantAll(t, s, f.orgs)
	a, b := helper(t, db.URL, 3), helper(t, db.URL, 3)
	require.NoError(t, a.Start())
	require.NoError(t, b.Start())
	require.NoError(t, a.Wait())
	require.NoError(t, b.Wait())
	checkMoney(t, db.Pool, s, f, start)
}

func helper(t *testing.T, url string, batch int) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperDBEnv+"="+url, helperBatchEnv+"="+strconv.Itoa(batch))
	return cmd
}

// TestRatingAfterTheWatermarkWasMovedBack rates, then moves the watermark
// back by hand, adds a correction and rates again: the batches that hold
// lines already written go through the path that skips their keys, so
// only the correction is charged, once, and every line keeps a posting
// of its org.
func TestRatingAfterTheWatermarkWasMovedBack(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	ctx := context.Background()
	s := billingstore.New(db.Pool, func() time.Time { return rt0.Add(24 * time.Hour) })
	setupPrices(t, s)
	f := seedUsage(t, db.Pool, 4, 2, 11)
	start := grantAll(t, s, f.orgs)
	r := newRater(t, s, 10)
	first, err := r.RateAll(ctx)
	require.NoError(t, err)
	require.Equal(t, first.Rows, first.Lines)
	checkMoney(t, db.Pool, s, f, start)

	ns := f.samples[len(f.samples)-1].NamespaceID
	late := usage.Sample{NamespaceID: ns, Resource: "memory", Minute: rt0.Add(70 * time.Minute), Quantity: 61_440, Key: "late-1"}
	us := usagestore.New(db.Pool)
	_, err = us.Write(ctx, "meter", []usage.Sample{late})
	require.NoError(t, err)
	n, err := us.Correct(ctx, rt0.AddDate(0, 0, -1), rt0.Add(3*time.Hour))
	require.NoError(t, err)
	require.Equal(t, 1, n)
	f.samples = append(f.samples, late)
	_, err = db.Pool.Exec(ctx, `UPDATE rating_state SET last_seq = $1`, first.LastSeq-15)
	require.NoError(t, err)

	again, err := r.RateAll(ctx)
	require.NoError(t, err)
	require.Equal(t, 16, again.Rows)
	require.Equal(t, 1, again.Lines)
	require.Equal(t, 1, again.Postings)
	require.Equal(t, int64(5_000), again.Amount) // one GiB-hour at 0.005
	checkMoney(t, db.Pool, s, f, start)
}
