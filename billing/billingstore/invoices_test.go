package billingstore_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/billing/billingstore"
	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/internal/testenv"
	"github.com/tenantplane/tenantplane/tenancy"
)

// nov is the period most tests invoice: November 2026.
var nov = billing.InvoicePeriod{Start: t0, End: t0.AddDate(0, 1, 0)}

func newNamespace(t *testing.T, pool *pgxpool.Pool, org int64, name string) int64 {
	t.Helper()
	var id int64
	require.NoError(t, pool.QueryRow(context.Background(),
		`INSERT INTO namespaces (org_id, name, state, created_at, updated_at) VALUES ($1, $2, 'active', $3, $3) RETURNING id`,
		org, name, t0).Scan(&id))
	return id
}

// postpaid puts org on a postpaid plan of the default price book.
func postpaid(t *testing.T, pool *pgxpool.Pool, org int64) {
	t.Helper()
	ctx := context.Background()
	_, err := pool.Exec(ctx, `INSERT INTO plans (name, billing_mode, price_book_id, created_at, updated_at)
		SELECT 'business', 'postpaid', id, $1, $1 FROM price_books WHERE name = 'default' ON CONFLICT DO NOTHING`, t0)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `UPDATE orgs SET plan = 'business' WHERE id = $1`, org)
	require.NoError(t, err)
}

var chargeSerial = map[*pgxpool.Pool]int{}
var chargeMu sync.Mutex

// charge writes one charge line as rating would (the columns of the
// charge_lines contract).
func charge(t *testing.T, pool *pgxpool.Pool, org, ns int64, resource string, hour time.Time, revision int, qty, amount int64) {
	t.Helper()
	chargeMu.Lock()
	chargeSerial[pool]++
	n := chargeSerial[pool]
	chargeMu.Unlock()
	_, err := pool.Exec(context.Background(), `INSERT INTO charge_lines (key, org_id, namespace_id, resource, class, hour,
		revision, quantity, amount_micros, currency, rated_at, usage_seq)
		VALUES ($1, $2, $3, $4, '', $5, $6, $7, $8, 'USD', $5, $9)`,
		fmt.Sprintf("test:%d", n), org, ns, resource, hour, revision, qty, amount, n)
	require.NoError(t, err)
}

type hookCalls struct {
	mu  sync.Mutex
	got []billing.Invoice
}

func (h *hookCalls) InvoiceFinalized(_ context.Context, inv billing.Invoice) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.got = append(h.got, inv)
	return nil
}

func TestInvoicerIssuesEachDuePeriodOnce(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	ctx := context.Background()
	c := newClock(t0.AddDate(0, 1, 1)) // Dec 2nd: November is not due before the 3rd
	s := billingstore.New(db.Pool, c.now)
	hook := &hookCalls{}
	cfg := billing.DefaultInvoiceConfig()
	cfg.TaxRateBPS = 1000
	iv, err := billing.NewInvoicer(s, cfg, hook, nil, c.now)
	require.NoError(t, err)

	pre, post := newOrg(t, db.Pool, "prepaid"), newOrg(t, db.Pool, "postpaid")
	postpaid(t, db.Pool, post)
	web, db1 := newNamespace(t, db.Pool, pre, "ns-web"), newNamespace(t, db.Pool, pre, "ns-db")
	api := newNamespace(t, db.Pool, post, "ns-api")

	oct := t0.AddDate(0, -1, 0)
	charge(t, db.Pool, pre, web, "cpu", oct.Add(5*time.Hour), 0, 60_000, 400_001) // October
	charge(t, db.Pool, pre, web, "cpu", t0, 0, 60_000, 1_000_000)                 // first hour of November
	charge(t, db.Pool, pre, web, "cpu", t0.Add(time.Hour), 0, 30_000, 500_000)    // same line
	charge(t, db.Pool, pre, web, "cpu", t0.Add(time.Hour), 1, 6_000, 50_000)      // a correction, same line
	charge(t, db.Pool, pre, web, "memory", t0.Add(2*time.Hour), 0, 1024, 123_457) // another resource
	charge(t, db.Pool, pre, db1, "cpu", nov.End.Add(-time.Hour), 0, 1, 7)         // last hour of November
	charge(t, db.Pool, pre, db1, "cpu", nov.End, 0, 1, 1_000_000)                 // December
	charge(t, db.Pool, post, api, "network.internet.egress", t0.Add(3*time.Hour), 0, 1<<30, 90_000)

	res, err := iv.Run(ctx)
	require.NoError(t, err)
	require.Equal(t, billing.RunResult{Periods: 1, Finalized: 1}, res, "October only")
	through, ok, err := s.InvoicedThrough(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, t0, through)

	c.set(t0.AddDate(0, 1, 2)) // Dec 3rd
	res, err = iv.Run(ctx)
	require.NoError(t, err)
	require.Equal(t, billing.RunResult{Periods: 1, Finalized: 2}, res)

	invs, err := s.Invoices(ctx, pre, 0, 10)
	require.NoError(t, err)
	require.Len(t, invs, 2)
	novPre, octPre := invs[0], invs[1]
	require.Equal(t, int64(1), octPre.Number)
	require.Equal(t, int64(400_001), octPre.Subtotal)
	require.Equal(t, int64(40_000), octPre.Tax) // 40,000.1 → 40,000

	require.Equal(t, nov.Start, novPre.PeriodStart)
	require.Equal(t, nov.End, novPre.PeriodEnd)
	require.Equal(t, billing.Prepaid, novPre.BillingMode)
	require.Equal(t, billing.InvoiceStatusPaid, novPre.Status, "a prepaid statement is settled by the balance")
	require.NotNil(t, novPre.PaidAt)
	require.Equal(t, []billing.InvoiceLine{
		{NamespaceID: db1, Namespace: "ns-db", Resource: "cpu", Quantity: 1, Amount: 7},
		{NamespaceID: web, Namespace: "ns-web", Resource: "cpu", Quantity: 96_000, Amount: 1_550_000},
		{NamespaceID: web, Namespace: "ns-web", Resource: "memory", Quantity: 1024, Amount: 123_457},
	}, novPre.Lines)
	require.Equal(t, int64(1_673_464), novPre.Subtotal)
	require.Equal(t, int64(167_346), novPre.Tax) // 167,346.4
	require.Equal(t, int64(1_840_810), novPre.Total)

	invs, err = s.Invoices(ctx, post, 0, 10)
	require.NoError(t, err)
	require.Len(t, invs, 1)
	bill := invs[0]
	require.Equal(t, billing.InvoiceStatusFinalized, bill.Status)
	require.Equal(t, billing.Postpaid, bill.BillingMode)
	require.Equal(t, int64(99_000), bill.Total)
	require.ElementsMatch(t, []int64{2, 3}, []int64{bill.Number, novPre.Number}, "numbers are sequential")
	require.Len(t, hook.got, 1, "the hook hears of postpaid bills only")
	require.Equal(t, bill.ID, hook.got[0].ID)
	require.Equal(t, bill.Lines, hook.got[0].Lines)

	// Again: nothing more, the hook is not told twice.
	res, err = iv.Run(ctx)
	require.NoError(t, err)
	require.Equal(t, billing.RunResult{}, res)
	again, err := iv.Issue(ctx, post, nov)
	require.NoError(t, err)
	require.Equal(t, bill.ID, again.ID)
	require.Len(t, hook.got, 1)

	sums, err := s.InvoiceSums(ctx)
	require.NoError(t, err)
	require.Len(t, sums, 3)
	for _, v := range sums {
		require.Empty(t, v.Problems(), "%+v", v)
	}

	// Late usage rated after the statement was issued shows in verify.
	charge(t, db.Pool, pre, web, "cpu", t0.Add(10*time.Hour), 1, 1, 3)
	sums, err = s.InvoiceSums(ctx)
	require.NoError(t, err)
	var problems []string
	for _, v := range sums {
		problems = append(problems, v.Problems()...)
	}
	require.Equal(t, []string{"subtotal 1.673464 differs from the sum of the period's charge lines 1.673467"}, problems)

	var audits int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE action LIKE 'billing.invoice.%'`).Scan(&audits))
	require.Equal(t, 3+3+2, audits, "a draft and a finalisation each, and the two statements paid")
}

func TestInvoiceTransitionsInTheStore(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	ctx := context.Background()
	c := newClock(t0.AddDate(0, 1, 5))
	s := billingstore.New(db.Pool, c.now)
	org := newOrg(t, db.Pool, "acme")
	postpaid(t, db.Pool, org)
	ns := newNamespace(t, db.Pool, org, "ns-a")
	charge(t, db.Pool, org, ns, "cpu", t0, 0, 10, 2_000_000)
	admin := tenancy.Actor{UserID: 1}

	draft, err := s.GenerateInvoice(ctx, org, nov, 0)
	require.NoError(t, err)
	require.Equal(t, billing.InvoiceStatusDraft, draft.Status)
	require.Zero(t, draft.Number)
	_, err = s.MarkInvoicePaid(ctx, draft.ID, nil, "", admin)
	require.Equal(t, errcode.Conflict, errcode.Of(err), "draft → paid")

	// A draft follows its charges until it is finalised.
	charge(t, db.Pool, org, ns, "cpu", t0.Add(time.Hour), 0, 5, 1_000_000)
	draft2, err := s.GenerateInvoice(ctx, org, nov, 0)
	require.NoError(t, err)
	require.Equal(t, draft.ID, draft2.ID)
	require.Equal(t, int64(3_000_000), draft2.Total)

	// Finalising at once from many places numbers it once.
	var wg sync.WaitGroup
	results := make([]error, 8)
	for i := range results {
		wg.Go(func() {
			_, results[i] = s.FinalizeInvoice(ctx, draft.ID)
		})
	}
	wg.Wait()
	okCount := 0
	for _, err := range results {
		if err == nil {
			okCount++
		} else {
			require.Equal(t, errcode.Conflict, errcode.Of(err))
		}
	}
	require.Equal(t, 1, okCount)
	var last int64
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT last FROM invoice_numbers`).Scan(&last))
	require.Equal(t, int64(1), last, "no number taken by the ones that lost")

	// Finalised: new charges no longer change it.
	charge(t, db.Pool, org, ns, "cpu", t0.Add(2*time.Hour), 0, 5, 1_000_000)
	fin, err := s.GenerateInvoice(ctx, org, nov, 0)
	require.NoError(t, err)
	require.Equal(t, billing.InvoiceStatusFinalized, fin.Status)
	require.Equal(t, int64(3_000_000), fin.Total)
	require.Len(t, fin.Lines, 1)

	// Sent to Stripe, it is settled or voided there, not by hand.
	_, err = db.Pool.Exec(ctx, `INSERT INTO stripe_invoices (invoice_id, org_id, stripe_invoice_id, status,
		amount_micros, currency, created_at, updated_at) VALUES ($1, $2, 'in_test', 'open', $3, 'USD', $4, $4)`,
		fin.ID, org, fin.Total, c.now())
	require.NoError(t, err)
	_, err = s.MarkInvoicePaid(ctx, fin.ID, nil, "bank transfer", admin)
	require.ErrorContains(t, err, "sent to Stripe")
	_, err = s.VoidInvoice(ctx, fin.ID, "mistake", admin)
	require.ErrorContains(t, err, "sent to Stripe")
	_, err = db.Pool.Exec(ctx, `DELETE FROM stripe_invoices WHERE invoice_id = $1`, fin.ID)
	require.NoError(t, err)

	pay := posting(org, billing.KindPayment, fin.Total, "stripe:in_1", c.now())
	wrong := pay
	wrong.OrgID = newOrg(t, db.Pool, "other")
	_, err = s.MarkInvoicePaid(ctx, fin.ID, &wrong, "", tenancy.Actor{System: "stripe"})
	require.Equal(t, errcode.Conflict, errcode.Of(err))
	paid, err := s.MarkInvoicePaid(ctx, fin.ID, &pay, "", tenancy.Actor{System: "stripe"})
	require.NoError(t, err)
	require.Equal(t, billing.InvoiceStatusPaid, paid.Status)
	bal, err := s.Balance(ctx, org, c.now(), "USD")
	require.NoError(t, err)
	require.Equal(t, int64(3_000_000), bal.Cash)
	_, err = s.MarkInvoicePaid(ctx, fin.ID, &pay, "again", admin)
	require.Equal(t, errcode.Conflict, errcode.Of(err), "paid twice")
	_, err = s.VoidInvoice(ctx, fin.ID, "mistake", admin)
	require.Equal(t, errcode.Conflict, errcode.Of(err), "paid → void")

	// The other ways out: draft → void and finalized → void.
	dec := nov.Next()
	charge(t, db.Pool, org, ns, "cpu", dec.Start, 0, 1, 1)
	d, err := s.GenerateInvoice(ctx, org, dec, 0)
	require.NoError(t, err)
	_, err = s.VoidInvoice(ctx, d.ID, "", admin)
	require.Equal(t, errcode.BadUserInput, errcode.Of(err))
	v, err := s.VoidInvoice(ctx, d.ID, "test account", admin)
	require.NoError(t, err)
	require.Equal(t, billing.InvoiceStatusVoid, v.Status)
	require.Equal(t, "test account", v.VoidReason)
	_, err = s.FinalizeInvoice(ctx, d.ID)
	require.Equal(t, errcode.Conflict, errcode.Of(err), "void → finalized")
	_, err = s.FinalizeInvoice(ctx, 999_999)
	require.Equal(t, errcode.NotFound, errcode.Of(err))

	got, err := s.Invoice(ctx, org, fin.ID)
	require.NoError(t, err)
	require.Equal(t, paid.Number, got.Number)
	_, err = s.Invoice(ctx, wrong.OrgID, fin.ID)
	require.Equal(t, errcode.NotFound, errcode.Of(err), "another org's invoice")
	byStatus, err := s.InvoicesByStatus(ctx, billing.InvoiceStatusVoid, 0, 10)
	require.NoError(t, err)
	require.Len(t, byStatus, 1)
	require.Equal(t, d.ID, byStatus[0].ID)
}

// TestInvoiceTotalsEqualLinesProperty: over random charge lines, random
// periods and tax rates, every issued invoice's subtotal is the sum of its
// lines and of the period's charge lines, and its total that plus the
// tax on it.
func TestInvoiceTotalsEqualLinesProperty(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(2026, 11))
	c := newClock(t0)
	s := billingstore.New(db.Pool, c.now)
	type key struct {
		org   int64
		start time.Time
	}
	want := map[key]int64{}
	var orgs []int64
	for i := range 6 {
		org := newOrg(t, db.Pool, fmt.Sprintf("org%d", i))
		if i%2 == 1 {
			postpaid(t, db.Pool, org)
		}
		orgs = append(orgs, org)
		var nss []int64
		for j := range 1 + rng.IntN(3) {
			nss = append(nss, newNamespace(t, db.Pool, org, fmt.Sprintf("ns-%d-%d", i, j)))
		}
		for range 40 + rng.IntN(80) {
			hour := t0.Add(time.Duration(rng.IntN(24*120)) * time.Hour)
			amount := rng.Int64N(50_000_000) - 2_000_000
			resource := []string{"cpu", "memory", "storage", "network.internet.egress"}[rng.IntN(4)]
			charge(t, db.Pool, org, nss[rng.IntN(len(nss))], resource, hour, rng.IntN(2), rng.Int64N(1<<40), amount)
			want[key{org, billing.DefaultInvoiceConfig().PeriodOf(hour).Start}] += amount
		}
	}
	for round := range 3 {
		// Jan 5th issues November and December, then January, then February.
		c.set(t0.AddDate(0, round+2, 4))
		cfg := billing.DefaultInvoiceConfig()
		cfg.TaxRateBPS = rng.Int64N(3000)
		iv, err := billing.NewInvoicer(s, cfg, nil, nil, c.now)
		require.NoError(t, err)
		if round == 0 {
			// Drafts of a few orgs first: generation is idempotent.
			for _, org := range orgs[:3] {
				_, err := s.GenerateInvoice(ctx, org, nov, cfg.TaxRateBPS)
				require.NoError(t, err)
			}
		}
		_, err = iv.Run(ctx)
		require.NoError(t, err)
	}
	sums, err := s.InvoiceSums(ctx)
	require.NoError(t, err)
	require.Len(t, sums, len(want), "one invoice per org and period with charges")
	numbers := map[int64]bool{}
	for _, v := range sums {
		require.Empty(t, v.Problems(), "%+v", v)
		require.False(t, numbers[v.Number])
		numbers[v.Number] = true
		inv, err := s.Invoice(ctx, v.OrgID, v.InvoiceID)
		require.NoError(t, err)
		require.Equal(t, want[key{inv.OrgID, inv.PeriodStart}], inv.Subtotal)
		var lines int64
		for _, l := range inv.Lines {
			lines += l.Amount
		}
		require.Equal(t, lines, inv.Subtotal)
		require.Equal(t, inv.Subtotal+inv.Tax, inv.Total)
	}
	for n := int64(1); n <= int64(len(sums)); n++ {
		require.True(t, numbers[n], "numbers run 1..%d without gaps", len(sums))
	}
}
