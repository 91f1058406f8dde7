package billing_test

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/billing"
)

func TestMulDivRoundHalfEven(t *testing.T) {
	t.Parallel()
	cases := []struct {
		a, b, d, want int64
	}{
		{5, 1, 2, 2},   // 2.5 → 2
		{7, 1, 2, 4},   // 3.5 → 4
		{-5, 1, 2, -2}, // -2.5 → -2
		{-7, 1, 2, -4}, // -3.5 → -4
		{1, 1, 3, 0},   // 0.33 → 0
		{2, 1, 3, 1},   // 0.67 → 1
		{-2, 1, 3, -1},
		{0, 99, 7, 0},
		// 90 CPU millicore-minutes... 1,500 millicores for 60 minutes at
		// 0.04 per core-hour = 0.06 = 60,000 micros.
		{1500 * 60, 40_000, 1000 * 60, 60_000},
		// 1 millicore-minute at 0.04/core-hour = 0.000666.. → 1 micro.
		{1, 40_000, 60_000, 1},
		// 1.5 micros exactly → 2 (even); 2.5 → 2.
		{3, 1, 2, 2},
		{math.MaxInt64, 2, 2, math.MaxInt64},
		{math.MinInt64, 1, 1, math.MinInt64},
		{math.MinInt64, 3, 3, math.MinInt64},
	}
	for _, c := range cases {
		got, err := billing.MulDivRound(c.a, c.b, c.d)
		require.NoError(t, err, "%d*%d/%d", c.a, c.b, c.d)
		require.Equal(t, c.want, got, "%d*%d/%d", c.a, c.b, c.d)
	}
	_, err := billing.MulDivRound(math.MaxInt64, 3, 2)
	require.Error(t, err)
	_, err = billing.MulDivRound(1, 1, 0)
	require.Error(t, err)
}

// TestMulDivRoundMatchesBig checks the 128-bit path against math/big on
// random operands, including ties.
func TestMulDivRoundMatchesBig(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200_000; i++ {
		a := r.Int64N(1<<40) - 1<<39
		b := r.Int64N(1 << 22)
		d := r.Int64N(1<<20) + 1
		if i%4 == 0 {
			d = 2 * (r.Int64N(1000) + 1) // many exact halves
		}
		got, err := billing.MulDivRound(a, b, d)
		require.NoError(t, err)
		require.Equal(t, bigHalfEven(a, b, d), got, "%d*%d/%d", a, b, d)
	}
}

func bigHalfEven(a, b, d int64) int64 {
	n := new(big.Int).Mul(big.NewInt(a), big.NewInt(b))
	r := new(big.Rat).SetFrac(n, big.NewInt(d))
	q, m := new(big.Int).QuoRem(n, big.NewInt(d), new(big.Int)) // truncated
	twice := new(big.Int).Abs(new(big.Int).Mul(m, big.NewInt(2)))
	switch twice.Cmp(big.NewInt(d)) {
	case 1:
		q.Add(q, big.NewInt(int64(r.Sign())))
	case 0:
		if q.Bit(0) == 1 {
			q.Add(q, big.NewInt(int64(r.Sign())))
		}
	}
	return q.Int64()
}

func TestFormatAndParseMicros(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		m int64
		s string
	}{
		{0, "0.000000"}, {1, "0.000001"}, {-1, "-0.000001"}, {12_345_678, "12.345678"},
		{-12_000_000, "-12.000000"}, {math.MaxInt64, "9223372036854.775807"}, {math.MinInt64, "-9223372036854.775808"},
	} {
		require.Equal(t, c.s, billing.FormatMicros(c.m))
		back, err := billing.ParseMicros(c.s)
		require.NoError(t, err)
		require.Equal(t, c.m, back)
	}
	for in, want := range map[string]int64{"12.5": 12_500_000, "100": 100_000_000, "+0.1": 100_000, "-3": -3_000_000} {
		got, err := billing.ParseMicros(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, bad := range []string{"", "1.", ".5", "1.0000001", "1e6", "abc", "--1", "9223372036854.775808", "1,5", " 1"} {
		_, err := billing.ParseMicros(bad)
		require.Error(t, err, bad)
	}
}
