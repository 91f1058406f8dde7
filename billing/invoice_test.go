package billing_test

import (
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/internal/errcode"
)

func TestInvoiceTransitions(t *testing.T) {
	t.Parallel()
	all := []billing.InvoiceStatus{billing.InvoiceStatusDraft, billing.InvoiceStatusFinalized, billing.InvoiceStatusPaid, billing.InvoiceStatusVoid}
	allowed := map[[2]billing.InvoiceStatus]bool{
		{billing.InvoiceStatusDraft, billing.InvoiceStatusFinalized}: true,
		{billing.InvoiceStatusDraft, billing.InvoiceStatusVoid}:      true,
		{billing.InvoiceStatusFinalized, billing.InvoiceStatusPaid}:  true,
		{billing.InvoiceStatusFinalized, billing.InvoiceStatusVoid}:  true,
	}
	for _, from := range all {
		for _, to := range all {
			want := allowed[[2]billing.InvoiceStatus{from, to}]
			require.Equal(t, want, from.CanTransition(to), "%s → %s", from, to)
			err := billing.CheckInvoiceTransition(from, to)
			if want {
				require.NoError(t, err)
			} else {
				require.Equal(t, errcode.Conflict, errcode.Of(err), "%s → %s", from, to)
			}
		}
	}
	require.False(t, billing.InvoiceStatus("bogus").CanTransition(billing.InvoiceStatusPaid))
}

func TestInvoiceTotalsRoundTaxHalfEvenOnce(t *testing.T) {
	t.Parallel()
	line := func(amounts ...int64) []billing.InvoiceLine {
		out := make([]billing.InvoiceLine, len(amounts))
		for i, a := range amounts {
			out[i] = billing.InvoiceLine{NamespaceID: int64(i + 1), Resource: "cpu", Amount: a}
		}
		return out
	}
	cases := []struct {
		name                string
		lines               []billing.InvoiceLine
		bps                 int64
		sub, tax, wantTotal int64
	}{
		{"no lines", nil, 2000, 0, 0, 0},
		{"no tax", line(1_000_000, 250_000), 0, 1_250_000, 0, 1_250_000},
		{"20%", line(10_000_000), 2000, 10_000_000, 2_000_000, 12_000_000},
		// 0.5 micro of tax rounds to even: 0.
		{"half down to even", line(1), 5000, 1, 0, 1},
		// 1.5 → 2.
		{"half up to even", line(3), 5000, 3, 2, 5},
		// Rounded once on the subtotal: per line, each 0.5 would round to 0.
		{"once on subtotal", line(1, 1, 1, 1), 5000, 4, 2, 6},
		// 7.25% of 33 = 2.3925 → 2.
		{"odd rate", line(33), 725, 33, 2, 35},
		{"negative correction", line(500, -800), 1000, -300, -30, -330},
		{"all tax", line(123), 10_000, 123, 123, 246},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sub, tax, total, err := billing.InvoiceTotals(c.lines, c.bps)
			require.NoError(t, err)
			require.Equal(t, []int64{c.sub, c.tax, c.wantTotal}, []int64{sub, tax, total})
		})
	}
	_, _, _, err := billing.InvoiceTotals(line(1<<62, 1<<62), 0)
	require.Equal(t, errcode.BadUserInput, errcode.Of(err))
}

// TestInvoiceTotalsProperty: for random lines and rates, the total is the
// sum of the lines plus the tax, and the tax is the exact rational
// subtotal × rate ÷ 10,000 rounded half to even.
func TestInvoiceTotalsProperty(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 11))
	for range 20_000 {
		n := rng.IntN(30)
		lines := make([]billing.InvoiceLine, n)
		want := new(big.Int)
		for i := range lines {
			a := rng.Int64N(2_000_000_000_000) - 200_000_000_000 // corrections are negative
			lines[i] = billing.InvoiceLine{Amount: a}
			want.Add(want, big.NewInt(a))
		}
		bps := rng.Int64N(10_001)
		sub, tax, total, err := billing.InvoiceTotals(lines, bps)
		require.NoError(t, err)
		require.Equal(t, want.Int64(), sub)
		require.Equal(t, sub+tax, total)
		require.Equal(t, halfEven(sub, bps, 10_000), tax, "subtotal %d at %d bps", sub, bps)
	}
}

// halfEven is a×b÷d rounded half to even with math/big, independently of
// MulDivRound.
func halfEven(a, b, d int64) int64 {
	r := new(big.Rat).SetFrac(new(big.Int).Mul(big.NewInt(a), big.NewInt(b)), big.NewInt(d))
	fl := new(big.Int).Div(r.Num(), r.Denom()) // Euclidean: floor for positive denominators
	frac := new(big.Rat).Sub(r, new(big.Rat).SetInt(fl))
	switch frac.Cmp(big.NewRat(1, 2)) {
	case 1:
		fl.Add(fl, big.NewInt(1))
	case 0:
		if fl.Bit(0) == 1 {
			fl.Add(fl, big.NewInt(1))
		}
	}
	return fl.Int64()
}

func TestInvoicePeriods(t *testing.T) {
	t.Parallel()
	d := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		require.NoError(t, err)
		return v
	}
	cases := []struct {
		name              string
		anchor, issue     int
		now               string
		start, end        string // PeriodOf(now)
		lastStart, issued string // LastIssued(now) and its issue time
	}{
		{"calendar month", 1, 3, "2026-11-15T10:00:00Z", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z", "2026-10-01T00:00:00Z", "2026-11-03T00:00:00Z"},
		{"before issue day", 1, 3, "2026-11-02T23:59:59Z", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z", "2026-09-01T00:00:00Z", "2026-10-03T00:00:00Z"},
		{"on issue day", 1, 3, "2026-11-03T00:00:00Z", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z", "2026-10-01T00:00:00Z", "2026-11-03T00:00:00Z"},
		{"new year", 1, 3, "2027-01-05T00:00:00Z", "2027-01-01T00:00:00Z", "2027-02-01T00:00:00Z", "2026-12-01T00:00:00Z", "2027-01-03T00:00:00Z"},
		{"anchor 15, before anchor", 15, 18, "2026-03-10T00:00:00Z", "2026-02-15T00:00:00Z", "2026-03-15T00:00:00Z", "2026-01-15T00:00:00Z", "2026-02-18T00:00:00Z"},
		{"anchor 15, after issue", 15, 18, "2026-03-20T00:00:00Z", "2026-03-15T00:00:00Z", "2026-04-15T00:00:00Z", "2026-02-15T00:00:00Z", "2026-03-18T00:00:00Z"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := billing.InvoiceConfig{AnchorDay: c.anchor, IssueDay: c.issue}
			require.NoError(t, cfg.Validate())
			p := cfg.PeriodOf(d(c.now))
			require.Equal(t, billing.InvoicePeriod{Start: d(c.start), End: d(c.end)}, p)
			require.Equal(t, p, p.Previous().Next())
			last := cfg.LastIssued(d(c.now))
			require.Equal(t, d(c.lastStart), last.Start)
			require.Equal(t, d(c.issued), cfg.IssueAt(last))
			require.False(t, cfg.IssueAt(last).After(d(c.now)))
			require.True(t, cfg.IssueAt(last.Next()).After(d(c.now)), "the next period is not due yet")
		})
	}
	for _, bad := range []billing.InvoiceConfig{
		{AnchorDay: 0, IssueDay: 3}, {AnchorDay: 29, IssueDay: 30}, {AnchorDay: 1, IssueDay: 29}, {AnchorDay: 28, IssueDay: 28}, {AnchorDay: 5, IssueDay: 2},
		{AnchorDay: 1, IssueDay: 3, TaxRateBPS: -1}, {AnchorDay: 1, IssueDay: 3, TaxRateBPS: 10_001},
	} {
		require.Error(t, bad.Validate(), "%+v", bad)
	}
	require.NoError(t, billing.DefaultInvoiceConfig().Validate())
}

func TestRenderInvoiceHTMLEscapes(t *testing.T) {
	t.Parallel()
	fin := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	inv := billing.Invoice{
		ID: 9, OrgID: 4, PeriodStart: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), PeriodEnd: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
		BillingMode: billing.Postpaid, Status: billing.InvoiceStatusFinalized, Currency: "EUR",
		Subtotal: 1_500_000, TaxRateBPS: 1950, Tax: 292_500, Total: 1_792_500, Number: 42, FinalizedAt: &fin,
		Lines: []billing.InvoiceLine{{NamespaceID: 3, Namespace: "ns-<script>", Resource: "cpu", Quantity: 60_000, Amount: 1_500_000}},
	}
	out, err := billing.RenderInvoiceHTML(billing.InvoiceDocument{Invoice: inv, OrgName: "acme", OrgDisplayName: `Acme "&" Co`, Issuer: "Tenantplane"})
	require.NoError(t, err)
	html := string(out)
	for _, want := range []string{
		"<title>Invoice INV-000042</title>", "2026-11-01 to 2026-11-30", "ns-&lt;script&gt;", "Acme &#34;&amp;&#34; Co (acme)",
		"1.500000 EUR", "Tax (19.50%)", "0.292500 EUR", "1.792500 EUR", "Issued</dt><dd>2026-12-03",
	} {
		require.Contains(t, html, want)
	}
	require.NotContains(t, html, "<script>")

	inv.BillingMode, inv.Number, inv.Status, inv.Lines = billing.Prepaid, 0, billing.InvoiceStatusDraft, nil
	out, err = billing.RenderInvoiceHTML(billing.InvoiceDocument{Invoice: inv, OrgName: "acme"})
	require.NoError(t, err)
	require.True(t, strings.Contains(string(out), "<title>Statement (draft)</title>"))
	require.Contains(t, string(out), "No charges in this period.")
}
