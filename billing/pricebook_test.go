package billing_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/collectors/usage"
)

func unitPrice(resource, class string, price int64) billing.Price {
	return billing.Price{Resource: resource, Class: class, Mode: billing.PriceUnit,
		UnitDivisor: billing.PriceUnitDivisor(resource), Tiers: []billing.Tier{{UnitPrice: price}}}
}

// TestPriceAmountUnit checks unit prices against amounts worked out by
// hand.
func TestPriceAmountUnit(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		price    billing.Price
		quantity int64
		want     int64
	}{
		// 1.5 cores for an hour = 90,000 millicore-minutes = 1.5 core-hours
		// at 0.04 = 0.06.
		{"cpu 1.5 core-hours", unitPrice("cpu", "", 40_000), 1500 * 60, 60_000},
		// 250 millicores for an hour = 0.25 core-hour at 0.034 = 0.0085.
		{"cpu quarter core", unitPrice("cpu", "", 34_000), 250 * 60, 8_500},
		// 1 millicore-minute at 0.04 = 0.000000666.. → 1 micro.
		{"cpu one millicore-minute", unitPrice("cpu", "", 40_000), 1, 1},
		// 45,000 millicore-minutes at 0.000002: 1.5 micros → 2 (even).
		{"cpu half up to even", unitPrice("cpu", "", 2), 45_000, 2},
		// 75,000 millicore-minutes at 0.000002: 2.5 micros → 2 (even).
		{"cpu half down to even", unitPrice("cpu", "", 2), 75_000, 2},
		// 512 MiB for an hour = 0.5 GiB-hour at 0.005 = 0.0025.
		{"memory half GiB-hour", unitPrice("memory", "", 5_000), 512 * 60, 2_500},
		// 100 GiB of storage for an hour at 0.0001 per GiB-hour = 0.01.
		{"storage 100 GiB-hours", unitPrice("storage", "ssd", 100), 100 * 1024 * 60, 10_000},
		// 1 GPU for 30 minutes at 2.50 per device-hour = 1.25.
		{"gpu half hour", unitPrice("gpu", "nvidia.com/gpu", 2_500_000), 30, 1_250_000},
		// 3 GiB of internet egress at 0.09 = 0.27.
		{"egress 3 GiB", unitPrice("network.internet.egress", "", 90_000), 3 << 30, 270_000},
		// 1 MiB of egress at 0.09 per GiB = 0.0000878.. → 88 micros.
		{"egress 1 MiB", unitPrice("network.internet.egress", "", 90_000), 1 << 20, 88},
		// 1.5 GiB at 0.000001: 1.5 micros → 2; 2.5 GiB → 2.
		{"egress tie up", unitPrice("network.internet.egress", "", 1), 3 << 29, 2},
		{"egress tie down", unitPrice("network.internet.egress", "", 1), 5 << 29, 2},
		// A correction of -0.5 core-hour at 0.04 gives back 0.02.
		{"negative correction", unitPrice("cpu", "", 40_000), -30_000, -20_000},
		{"free", unitPrice("cpu", "", 0), 1 << 40, 0},
	}
	for _, c := range cases {
		require.NoError(t, c.price.Validate(), c.name)
		got, up, err := c.price.Amount(12345, c.quantity)
		require.NoError(t, err, c.name)
		require.Equal(t, c.want, got, c.name)
		require.Equal(t, c.price.Tiers[0].UnitPrice, up, c.name)
	}
}

// TestPriceAmountGraduated checks graduated tiers: the exact cost of
// each tier's part is summed before the one rounding.
func TestPriceAmountGraduated(t *testing.T) {
	t.Parallel()
	// First 10 core-hours of the month at 0.05, the next 90 at 0.04, the
	// rest at 0.03.
	p := billing.Price{Resource: "cpu", Mode: billing.PriceGraduated, UnitDivisor: 60_000, Tiers: []billing.Tier{
		{UpToUnits: 10, UnitPrice: 50_000}, {UpToUnits: 100, UnitPrice: 40_000}, {UnitPrice: 30_000},
	}}
	require.NoError(t, p.Validate())
	const ch = 60_000 // one core-hour in millicore-minutes
	cases := []struct {
		name            string
		start, quantity int64
		want, unitPrice int64
	}{
		{"inside the first tier", 0, 4 * ch, 200_000, 50_000},
		// 8 to 12 core-hours: 2 × 0.05 + 2 × 0.04 = 0.18.
		{"across the first boundary", 8 * ch, 4 * ch, 180_000, 40_000},
		// 5 to 105: 5 × 0.05 + 90 × 0.04 + 5 × 0.03 = 0.25 + 3.6 + 0.15 = 4.0.
		{"across two boundaries", 5 * ch, 100 * ch, 4_000_000, 30_000},
		{"past the last boundary", 200 * ch, ch, 30_000, 30_000},
		// 1 millicore-minute on each side of the 10 core-hour boundary:
		// (0.05 + 0.04) / 60,000 = 0.0000015 → 2 micros (one rounding;
		// rounding each tier apart would give 1 + 1 = 2 here, but see the
		// next case).
		{"exact sum then one rounding", 10*ch - 1, 2, 2, 40_000},
		{"a correction gives back what the units cost", 12 * ch, -4 * ch, -180_000, 40_000},
	}
	for _, c := range cases {
		got, up, err := p.Amount(c.start, c.quantity)
		require.NoError(t, err, c.name)
		require.Equal(t, c.want, got, c.name)
		require.Equal(t, c.unitPrice, up, c.name)
	}
}

// TestPriceGraduatedRoundsOnce: two tier parts of 0.6 micro each make 1.2
// micros, rounded once to 1; rounding each part would give 2.
func TestPriceGraduatedRoundsOnce(t *testing.T) {
	t.Parallel()
	p := billing.Price{Resource: "requests", Mode: billing.PriceGraduated, UnitDivisor: 10, Tiers: []billing.Tier{
		{UpToUnits: 1, UnitPrice: 6}, {UnitPrice: 3},
	}}
	require.NoError(t, p.Validate())
	// Units 9 and 10..11: 1 × 6/10 + 2 × 3/10 = 1.2 → 1.
	got, _, err := p.Amount(9, 3)
	require.NoError(t, err)
	require.Equal(t, int64(1), got)
}

func TestPriceValidate(t *testing.T) {
	t.Parallel()
	ok := unitPrice("cpu", "", 1)
	require.NoError(t, ok.Validate())
	bad := map[string]billing.Price{
		"no tiers":         {Resource: "cpu", Mode: billing.PriceUnit, UnitDivisor: 1},
		"unit with end":    {Resource: "cpu", Mode: billing.PriceUnit, UnitDivisor: 1, Tiers: []billing.Tier{{UpToUnits: 5, UnitPrice: 1}}},
		"negative":         {Resource: "cpu", Mode: billing.PriceUnit, UnitDivisor: 1, Tiers: []billing.Tier{{UnitPrice: -1}}},
		"ends decrease":    {Resource: "cpu", Mode: billing.PriceGraduated, UnitDivisor: 1, Tiers: []billing.Tier{{UpToUnits: 5, UnitPrice: 1}, {UpToUnits: 5, UnitPrice: 1}, {UnitPrice: 1}}},
		"last has end":     {Resource: "cpu", Mode: billing.PriceGraduated, UnitDivisor: 1, Tiers: []billing.Tier{{UpToUnits: 5, UnitPrice: 1}}},
		"bad mode":         {Resource: "cpu", Mode: "flat", UnitDivisor: 1, Tiers: []billing.Tier{{UnitPrice: 1}}},
		"bad resource":     {Resource: "CPU", Mode: billing.PriceUnit, UnitDivisor: 1, Tiers: []billing.Tier{{UnitPrice: 1}}},
		"no divisor":       {Resource: "cpu", Mode: billing.PriceUnit, Tiers: []billing.Tier{{UnitPrice: 1}}},
		"huge tier bounds": {Resource: "cpu", Mode: billing.PriceGraduated, UnitDivisor: 1, Tiers: []billing.Tier{{UpToUnits: 1 << 33, UnitPrice: 1}, {UnitPrice: 1}}},
	}
	for name, p := range bad {
		require.Error(t, p.Validate(), name)
	}
}

func TestPriceUnitDivisor(t *testing.T) {
	t.Parallel()
	for r, want := range map[string]int64{
		"cpu": 60_000, "memory": 61_440, "storage": 61_440, "gpu": 60,
		"network.internet.egress": 1 << 30, "network.cluster.ingress": 1 << 30, "requests": 1,
	} {
		require.Equal(t, want, billing.PriceUnitDivisor(r), r)
	}
}

func parseAt(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

func ptr[T any](v T) *T { return &v }

// TestRateUsage rates rows under two versions of a book: the version in
// force for each hour applies, class prices win over the resource's, and
// unpriced resources (cluster traffic) are free.
func TestRateUsage(t *testing.T) {
	t.Parallel()
	book := billing.PriceBook{ID: 1, Name: "default", Currency: "USD"}
	v1 := billing.PriceBookVersion{ID: 10, PriceBookID: 1, EffectiveFrom: ptr(parseAt("2026-01-01T00:00:00Z")), PublishedAt: ptr(parseAt("2025-12-01T00:00:00Z")),
		Prices: []billing.Price{unitPrice("cpu", "", 40_000), unitPrice("storage", "", 100), unitPrice("storage", "fast", 300), unitPrice("network.internet.egress", "", 90_000)}}
	v2 := billing.PriceBookVersion{ID: 11, PriceBookID: 1, EffectiveFrom: ptr(parseAt("2026-03-01T12:00:00Z")), PublishedAt: ptr(parseAt("2026-02-01T00:00:00Z")),
		Prices: []billing.Price{unitPrice("cpu", "", 50_000)}}
	draft := billing.PriceBookVersion{ID: 12, PriceBookID: 1, Prices: []billing.Price{unitPrice("cpu", "", 1)}}
	cat := billing.NewPriceCatalog([]billing.PriceBook{book}, []billing.PriceBookVersion{v2, v1, draft})
	row := func(ns int64, hour, res, class string, q int64, rev int) billing.ChargeUsage {
		return billing.ChargeUsage{OrgID: 7, PriceBookID: 1, Hourly: usage.Hourly{NamespaceID: ns, Hour: parseAt(hour), Resource: res, Class: class, Quantity: q, Revision: rev, Seq: q}}
	}
	rows := []billing.ChargeUsage{
		row(3, "2026-03-01T11:00:00Z", "cpu", "", 120_000, 0),                  // v1: 2 core-hours × 0.04
		row(3, "2026-03-01T12:00:00Z", "cpu", "", 120_000, 0),                  // v2: 2 core-hours × 0.05
		row(3, "2026-03-01T11:00:00Z", "storage", "fast", 61_440, 0),           // 1 GiB-hour × 0.0003
		row(3, "2026-03-01T11:00:00Z", "storage", "slow", 61_440, 0),           // 1 GiB-hour × 0.0001
		row(3, "2026-03-01T11:00:00Z", "network.cluster.egress", "", 1<<30, 0), // free
		row(3, "2026-03-01T11:00:00Z", "cpu", "", 60_000, 1),                   // correction, v1
		row(3, "2025-12-31T23:00:00Z", "cpu", "", 60_000, 0),                   // before any version
	}
	lines, err := billing.RateUsage(context.Background(), rows, cat, nil, parseAt("2026-03-02T00:00:00Z"))
	require.NoError(t, err)
	type got struct {
		amount, version, unitPrice int64
		key                        string
	}
	var g []got
	for _, l := range lines {
		g = append(g, got{l.Amount, l.PriceBookVersionID, l.UnitPrice, l.Key})
		require.Equal(t, "USD", l.Currency)
	}
	require.Equal(t, []got{
		{80_000, 10, 40_000, "ns:3:cpu::2026-03-01T11Z:r0"},
		{100_000, 11, 50_000, "ns:3:cpu::2026-03-01T12Z:r0"},
		{300, 10, 300, "ns:3:storage:fast:2026-03-01T11Z:r0"},
		{100, 10, 100, "ns:3:storage:slow:2026-03-01T11Z:r0"},
		{0, 10, 0, "ns:3:network.cluster.egress::2026-03-01T11Z:r0"},
		{40_000, 10, 40_000, "ns:3:cpu::2026-03-01T11Z:r1"},
		{0, 0, 0, "ns:3:cpu::2025-12-31T23Z:r0"},
	}, g)

	// The draft, in force from noon, reprices only the hours from then.
	lines, err = billing.RateUsage(context.Background(), rows[:2], cat.WithDraft(draft, parseAt("2026-03-01T12:00:00Z")), nil, parseAt("2026-03-02T00:00:00Z"))
	require.NoError(t, err)
	require.Equal(t, int64(80_000), lines[0].Amount)
	require.Equal(t, int64(2), lines[1].Amount) // 120,000 × 1 / 60,000
	require.Equal(t, int64(12), lines[1].PriceBookVersionID)
}

// TestRateUsageGraduatedCountsTheMonth: tiers count the org's usage in the
// month before the rows, then the rows in order; a new month starts again.
func TestRateUsageGraduatedCountsTheMonth(t *testing.T) {
	t.Parallel()
	grad := billing.Price{ID: 5, Resource: "cpu", Mode: billing.PriceGraduated, UnitDivisor: 60_000,
		Tiers: []billing.Tier{{UpToUnits: 10, UnitPrice: 50_000}, {UnitPrice: 40_000}}}
	v := billing.PriceBookVersion{ID: 1, PriceBookID: 1, EffectiveFrom: ptr(parseAt("2026-01-01T00:00:00Z")), PublishedAt: ptr(parseAt("2026-01-01T00:00:00Z")),
		Prices: []billing.Price{grad}}
	cat := billing.NewPriceCatalog([]billing.PriceBook{{ID: 1, Currency: "EUR"}}, []billing.PriceBookVersion{v})
	row := func(ns int64, hour string, q int64) billing.ChargeUsage {
		return billing.ChargeUsage{OrgID: 7, PriceBookID: 1, Hourly: usage.Hourly{NamespaceID: ns, Hour: parseAt(hour), Resource: "cpu", Quantity: q}}
	}
	var asked []billing.ChargeMonthKey
	mtd := func(_ context.Context, keys []billing.ChargeMonthKey) (map[billing.ChargeMonthKey]int64, error) {
		asked = keys
		return map[billing.ChargeMonthKey]int64{{OrgID: 7, Resource: "cpu", Month: parseAt("2026-03-01T00:00:00Z")}: 9 * 60_000}, nil
	}
	lines, err := billing.RateUsage(context.Background(), []billing.ChargeUsage{
		row(1, "2026-03-31T22:00:00Z", 60_000), // core-hour 10: 0.05
		row(2, "2026-03-31T22:00:00Z", 60_000), // core-hour 11: 0.04
		row(1, "2026-04-01T00:00:00Z", 60_000), // a new month: 0.05
	}, cat, mtd, parseAt("2026-04-01T02:00:00Z"))
	require.NoError(t, err)
	require.Len(t, asked, 2)
	require.Equal(t, []int64{50_000, 40_000, 50_000}, []int64{lines[0].Amount, lines[1].Amount, lines[2].Amount})
	require.Equal(t, []int64{9 * 60_000, 10 * 60_000, 0}, []int64{lines[0].TierStart, lines[1].TierStart, lines[2].TierStart})
}
