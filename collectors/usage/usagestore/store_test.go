package usagestore_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/collectors/usage"
	"github.com/tenantplane/tenantplane/collectors/usage/usagestore"
	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// day0 is the first day of partitions in these tests.
var day0 = time.Date(2031, 3, 10, 0, 0, 0, 0, time.UTC)

type bundle struct {
	ctx   context.Context
	pool  *pgxpool.Pool
	store *usagestore.Store
	org   int64
	ns    []int64 // ns-a, ns-b of org, ns-c of another org
}

func setup(t *testing.T) *bundle {
	t.Helper()
	db := testenv.Postgres(t)
	b := &bundle{ctx: t.Context(), pool: db.Pool, store: usagestore.New(db.Pool)}
	now := day0
	var other int64
	require.NoError(t, db.Pool.QueryRow(b.ctx, `INSERT INTO orgs (name, created_at, updated_at) VALUES ('acme', $1, $1) RETURNING id`, now).Scan(&b.org))
	require.NoError(t, db.Pool.QueryRow(b.ctx, `INSERT INTO orgs (name, created_at, updated_at) VALUES ('other', $1, $1) RETURNING id`, now).Scan(&other))
	for _, n := range []struct {
		name string
		org  int64
	}{{"ns-a", b.org}, {"ns-b", b.org}, {"ns-c", other}} {
		var id int64
		require.NoError(t, db.Pool.QueryRow(b.ctx, `INSERT INTO namespaces (org_id, name, state, created_at, updated_at) VALUES ($1, $2, 'active', $3, $3) RETURNING id`, n.org, n.name, now).Scan(&id))
		b.ns = append(b.ns, id)
	}
	created, err := b.store.EnsurePartitions(b.ctx, day0, day0.AddDate(0, 0, 3))
	require.NoError(t, err)
	require.Equal(t, 3+1, created, "three days and one month")
	return b
}

func minute(h, m int) time.Time {
	return day0.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute)
}

func (b *bundle) sum(t *testing.T, q string, args ...any) int64 {
	t.Helper()
	var n int64
	require.NoError(t, b.pool.QueryRow(b.ctx, q, args...).Scan(&n))
	return n
}

func TestWriteSameKeyTwiceIsNoDouble(t *testing.T) {
	t.Parallel()
	b := setup(t)
	samples := []usage.Sample{
		{NamespaceID: b.ns[0], Resource: usage.CPU, Minute: minute(1, 0), Quantity: 500},
		{NamespaceID: b.ns[0], Resource: usage.Memory, Minute: minute(1, 0), Quantity: 128},
		{NamespaceID: b.ns[1], Resource: usage.CPU, Minute: minute(1, 0), Quantity: 250},
	}
	res, err := b.store.Write(b.ctx, usage.SourceCompute, samples)
	require.NoError(t, err)
	require.Equal(t, usage.WriteResult{Inserted: 3}, res)

	// The same keys again, one with another quantity: all ignored.
	samples[0].Quantity = 999
	res, err = b.store.Write(b.ctx, usage.SourceCompute, samples)
	require.NoError(t, err)
	require.Equal(t, usage.WriteResult{Duplicates: 3}, res)
	require.Equal(t, int64(750), b.sum(t, `SELECT sum(quantity) FROM usage_minute WHERE resource = 'cpu'`))

	// Another source, or an event key, is another row.
	res, err = b.store.Write(b.ctx, "netmeter", []usage.Sample{
		{NamespaceID: b.ns[0], Resource: usage.NetworkInternetEgress, Class: "internet", Minute: minute(1, 0), Quantity: 10, Key: "e1"},
		{NamespaceID: b.ns[0], Resource: usage.NetworkInternetEgress, Class: "internet", Minute: minute(1, 0), Quantity: 20, Key: "e2"},
		{NamespaceID: b.ns[0], Resource: usage.NetworkInternetEgress, Class: "internet", Minute: minute(1, 0), Quantity: 20, Key: "e2"},
	})
	require.NoError(t, err)
	require.Equal(t, usage.WriteResult{Inserted: 2, Duplicates: 1}, res)
	require.Equal(t, int64(30), b.sum(t, `SELECT sum(quantity) FROM usage_minute WHERE resource = 'network.internet.egress'`))
}

func TestWriteRejectsBadSamples(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for name, s := range map[string]usage.Sample{
		"negative":       {NamespaceID: b.ns[0], Resource: usage.CPU, Minute: minute(0, 0), Quantity: -1},
		"not a minute":   {NamespaceID: b.ns[0], Resource: usage.CPU, Minute: minute(0, 0).Add(time.Second)},
		"bad resource":   {NamespaceID: b.ns[0], Resource: "CPU", Minute: minute(0, 0)},
		"no namespace":   {Resource: usage.CPU, Minute: minute(0, 0)},
		"not utc":        {NamespaceID: b.ns[0], Resource: usage.CPU, Minute: minute(0, 0).In(time.FixedZone("x", 3600))},
		"key with space": {NamespaceID: b.ns[0], Resource: usage.CPU, Minute: minute(0, 0), Key: "a b"},
	} {
		_, err := b.store.Write(b.ctx, usage.SourceCompute, []usage.Sample{s})
		require.Equal(t, errcode.BadUserInput, errcode.Of(err), name)
	}
	require.Equal(t, int64(0), b.sum(t, `SELECT count(*) FROM usage_minute`))
}

func TestWriteMinutesAdvancesWatermarkOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, ok, err := b.store.Watermark(b.ctx, usage.SourceCompute)
	require.NoError(t, err)
	require.False(t, ok)

	batch := usage.MinuteBatch{
		Source: usage.SourceCompute, From: minute(0, 0), Through: minute(0, 2),
		Samples: []usage.Sample{
			{NamespaceID: b.ns[0], Resource: usage.CPU, Minute: minute(0, 0), Quantity: 1},
			{NamespaceID: b.ns[0], Resource: usage.CPU, Minute: minute(0, 1), Quantity: 2},
		},
		Gaps: []usage.Gap{{Start: minute(0, 0), End: minute(0, 1), Reason: usage.GapNotObserved}},
	}
	require.NoError(t, b.store.WriteMinutes(b.ctx, batch))
	w, ok, err := b.store.Watermark(b.ctx, usage.SourceCompute)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, usage.Watermark{Since: minute(0, 0), Through: minute(0, 2)}, w)

	// A second writer of the same minutes (a leader that lost its lease)
	// is refused and nothing of it is stored.
	batch.Samples[0].Quantity = 100
	err = b.store.WriteMinutes(b.ctx, batch)
	require.Equal(t, errcode.Conflict, errcode.Of(err))
	require.Equal(t, int64(3), b.sum(t, `SELECT sum(quantity) FROM usage_minute`))

	// Samples outside [from, through) are refused.
	err = b.store.WriteMinutes(b.ctx, usage.MinuteBatch{Source: usage.SourceCompute, From: minute(0, 2), Through: minute(0, 3),
		Samples: []usage.Sample{{NamespaceID: b.ns[0], Resource: usage.CPU, Minute: minute(0, 3)}}})
	require.Equal(t, errcode.BadUserInput, errcode.Of(err))

	gaps, err := b.store.Gaps(b.ctx, minute(0, 0), minute(1, 0))
	require.NoError(t, err)
	require.Equal(t, []usage.Gap{{Source: usage.SourceCompute, Start: minute(0, 0), End: minute(0, 1), Reason: usage.GapNotObserved}}, gaps)
}

func TestCloseHoursThenLateDataIsACorrection(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var samples []usage.Sample
	for m := range 120 { // two hours, 10 a minute in ns-a, 1 in ns-b
		samples = append(samples,
			usage.Sample{NamespaceID: b.ns[0], Resource: usage.CPU, Minute: minute(0, m), Quantity: 10},
			usage.Sample{NamespaceID: b.ns[1], Resource: usage.CPU, Minute: minute(0, m), Quantity: 1})
	}
	_, err := b.store.Write(b.ctx, usage.SourceCompute, samples)
	require.NoError(t, err)

	closed, err := b.store.CloseHours(b.ctx, minute(1, 0), minute(0, 0), 10, minute(1, 5))
	require.NoError(t, err)
	require.Equal(t, minute(1, 0), closed)
	// Nothing more closes before the bound.
	closed, err = b.store.CloseHours(b.ctx, minute(1, 0), minute(0, 0), 10, minute(1, 5))
	require.NoError(t, err)
	require.Equal(t, minute(1, 0), closed)

	rows, err := b.store.HourlySince(b.ctx, 0, 100)
	require.NoError(t, err)
	require.Len(t, rows, 2)
	require.Equal(t, usage.Hourly{NamespaceID: b.ns[0], Hour: minute(0, 0), Resource: usage.CPU, Quantity: 600, Seq: rows[0].Seq}, rows[0])
	require.Equal(t, int64(60), rows[1].Quantity)

	// A late event inside the closed hour, and one in the open hour.
	_, err = b.store.Write(b.ctx, "meter", []usage.Sample{
		{NamespaceID: b.ns[0], Resource: usage.CPU, Minute: minute(0, 30), Quantity: 7, Key: "late-1"},
		{NamespaceID: b.ns[0], Resource: usage.CPU, Minute: minute(1, 30), Quantity: 5, Key: "open-1"},
	})
	require.NoError(t, err)
	n, err := b.store.Correct(b.ctx, day0, minute(1, 40))
	require.NoError(t, err)
	require.Equal(t, 1, n)
	later, err := b.store.HourlySince(b.ctx, rows[1].Seq, 100)
	require.NoError(t, err)
	require.Equal(t, []usage.Hourly{{NamespaceID: b.ns[0], Hour: minute(0, 0), Resource: usage.CPU, Revision: 1, Quantity: 7, Seq: later[0].Seq}}, later)
	// Correcting again finds nothing to do.
	n, err = b.store.Correct(b.ctx, day0, minute(1, 41))
	require.NoError(t, err)
	require.Zero(t, n)

	// Hour series: the closed hour from the rollup with its correction,
	// the open hour from the minutes.
	series, err := b.store.Series(b.ctx, usage.Scope{NamespaceID: b.ns[0]}, minute(0, 0), minute(2, 0), usage.ByHour)
	require.NoError(t, err)
	require.Equal(t, map[usage.SeriesKey][]usage.Point{
		{Resource: usage.CPU}: {{Start: minute(0, 0), Quantity: 607}, {Start: minute(1, 0), Quantity: 605}},
	}, series)
	// The org sums its namespaces; by day.
	series, err = b.store.Series(b.ctx, usage.Scope{OrgID: b.org}, day0, day0.AddDate(0, 0, 1), usage.ByDay)
	require.NoError(t, err)
	require.Equal(t, map[usage.SeriesKey][]usage.Point{{Resource: usage.CPU}: {{Start: day0, Quantity: 607 + 605 + 120}}}, series)
	// By minute, from the samples.
	series, err = b.store.Series(b.ctx, usage.Scope{NamespaceID: b.ns[0]}, minute(0, 29), minute(0, 31), usage.ByMinute)
	require.NoError(t, err)
	require.Equal(t, map[usage.SeriesKey][]usage.Point{{Resource: usage.CPU}: {{Start: minute(0, 29), Quantity: 10}, {Start: minute(0, 30), Quantity: 17}}}, series)
}

func TestPartitionsAreDroppedByDay(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.store.Write(b.ctx, usage.SourceCompute, []usage.Sample{
		{NamespaceID: b.ns[0], Resource: usage.CPU, Minute: minute(0, 0), Quantity: 1},
		{NamespaceID: b.ns[0], Resource: usage.CPU, Minute: minute(24, 0), Quantity: 2},
	})
	require.NoError(t, err)
	dropped, err := b.store.DropPartitionsBefore(b.ctx, day0.AddDate(0, 0, 1))
	require.NoError(t, err)
	require.Equal(t, []string{"usage_minute_p20310310"}, dropped)
	require.Equal(t, int64(2), b.sum(t, `SELECT sum(quantity) FROM usage_minute`))
	// A write into a day whose partition is gone fails, and says so.
	_, err = b.store.Write(b.ctx, usage.SourceCompute, []usage.Sample{{NamespaceID: b.ns[0], Resource: usage.CPU, Minute: minute(0, 1), Quantity: 1}})
	require.ErrorContains(t, err, "no usage partition")
	created, err := b.store.EnsurePartitions(b.ctx, day0, day0.AddDate(0, 0, 4))
	require.NoError(t, err)
	require.Equal(t, 2, created, "the dropped day and one more")
}

func TestNamespaceLookups(t *testing.T) {
	t.Parallel()
	b := setup(t)
	all, err := b.store.TenantNamespaces(b.ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]int64{"ns-a": b.ns[0], "ns-b": b.ns[1], "ns-c": b.ns[2]}, all)
	some, err := b.store.NamespaceIDs(b.ctx, []string{"ns-b", "kube-system"})
	require.NoError(t, err)
	require.Equal(t, map[string]int64{"ns-b": b.ns[1]}, some)
}

// TestCloseHoursNumbersSeqInOrder closes two hours of several namespaces,
// resources and classes: each hour's rows take consecutive seq values in
// (namespace, resource, class) order, the later hour after the earlier,
// and a correction after both, with nothing taken twice.
func TestCloseHoursNumbersSeqInOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var samples []usage.Sample
	for h := range 2 {
		for _, ns := range []int64{b.ns[2], b.ns[0], b.ns[1]} {
			for _, r := range []struct{ res, class string }{{usage.Storage, "ssd"}, {usage.CPU, ""}, {usage.Storage, "hdd"}, {usage.Memory, ""}} {
				for m := range 3 {
					samples = append(samples, usage.Sample{NamespaceID: ns, Resource: r.res, Class: r.class, Minute: minute(h, 10*m), Quantity: int64(1 + h + m)})
				}
			}
		}
	}
	_, err := b.store.Write(b.ctx, usage.SourceCompute, samples)
	require.NoError(t, err)
	closed, err := b.store.CloseHours(b.ctx, minute(2, 0), minute(0, 0), 10, minute(2, 5))
	require.NoError(t, err)
	require.Equal(t, minute(2, 0), closed)

	_, err = b.store.Write(b.ctx, "meter", []usage.Sample{{NamespaceID: b.ns[1], Resource: usage.CPU, Minute: minute(0, 59), Quantity: 4, Key: "late-1"}})
	require.NoError(t, err)
	n, err := b.store.Correct(b.ctx, day0, minute(2, 10))
	require.NoError(t, err)
	require.Equal(t, 1, n)

	rows, err := b.store.HourlySince(b.ctx, 0, 100)
	require.NoError(t, err)
	require.Len(t, rows, 2*3*4+1)
	ids := []int64{b.ns[0], b.ns[1], b.ns[2]}
	want := []usage.Hourly{}
	for h := range 2 {
		for _, ns := range ids {
			for _, r := range []struct{ res, class string }{{usage.CPU, ""}, {usage.Memory, ""}, {usage.Storage, "hdd"}, {usage.Storage, "ssd"}} {
				want = append(want, usage.Hourly{NamespaceID: ns, Hour: minute(h, 0), Resource: r.res, Class: r.class, Quantity: int64(3*(1+h) + 3)})
			}
		}
	}
	want = append(want, usage.Hourly{NamespaceID: b.ns[1], Hour: minute(0, 0), Resource: usage.CPU, Revision: 1, Quantity: 4})
	for i := range rows {
		if i > 0 {
			require.Equal(t, rows[i-1].Seq+1, rows[i].Seq, "row %d", i)
		}
		want[i].Seq = rows[i].Seq
	}
	require.Equal(t, want, rows)
}
