package server

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/billing/billingstore"
	"github.com/tenantplane/tenantplane/internal/testenv"
)

func TestBillingVerifyCommand(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	ctx := context.Background()
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	var org, ns int64
	require.NoError(t, db.Pool.QueryRow(ctx, `INSERT INTO orgs (name, created_at, updated_at) VALUES ('acme', $1, $1) RETURNING id`, t0).Scan(&org))
	require.NoError(t, db.Pool.QueryRow(ctx, `INSERT INTO namespaces (org_id, name, state, created_at, updated_at)
		VALUES ($1, 'ns-acme', 'active', $2, $2) RETURNING id`, org, t0).Scan(&ns))
	s := billingstore.New(db.Pool, func() time.Time { return t0.AddDate(0, 1, 5) })
	for i, p := range []billing.Posting{
		{Kind: billing.KindTopUp, Amount: 20_000_000},
		{Kind: billing.KindCredit, Amount: 1_000_000},
		{Kind: billing.KindCharge, Amount: -1_500_000},
	} {
		p.OrgID, p.Currency, p.Reference, p.Actor, p.At = org, "USD", fmt.Sprintf("ref:%d", i), "system:test", t0
		_, err := s.Post(ctx, p)
		require.NoError(t, err)
	}
	_, err := db.Pool.Exec(ctx, `INSERT INTO charge_lines (key, org_id, namespace_id, resource, class, hour, revision,
		quantity, amount_micros, currency, rated_at, usage_seq) VALUES ('k1', $1, $2, 'cpu', '', $3, 0, 60000, 1500000, 'USD', $3, 1)`,
		org, ns, t0)
	require.NoError(t, err)
	inv, err := s.GenerateInvoice(ctx, org, billing.InvoicePeriod{Start: t0, End: t0.AddDate(0, 1, 0)}, 2000)
	require.NoError(t, err)
	_, err = s.FinalizeInvoice(ctx, inv.ID)
	require.NoError(t, err)

	code, out, errOut := run(t, "billing", "verify", "--database-url", db.URL)
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "ok: every balance equals its ledger; 1 issued invoices equal their lines and charges\n", out)

	// A balance row that drifted from its ledger, and an invoice whose
	// tax is not its rate of the subtotal.
	_, err = db.Pool.Exec(ctx, `UPDATE billing_accounts SET cash_micros = cash_micros + 1 WHERE org_id = $1`, org)
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, `UPDATE invoices SET tax_micros = tax_micros + 1, total_micros = total_micros + 1 WHERE id = $1`, inv.ID)
	require.NoError(t, err)
	code, out, errOut = run(t, "billing", "verify", "--database-url", db.URL)
	require.Equal(t, 1, code)
	require.Equal(t, fmt.Sprintf(
		"org %d: balance row cash 19.500001 credit 0.000000 entries 4; ledger cash 19.500000 credit 0.000000 entries 4; grants 0.000000\n"+
			"invoice %d (INV-000001, org %d): tax 0.300001 is not 2000 bps of the subtotal (0.300000)\n", org, inv.ID, org), out)
	require.Contains(t, errOut, "billing verify found mismatches: 1 balances, 1 invoice problems")

	code, _, errOut = run(t, "billing", "verify")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "--database-url")
}

func TestInvoicingConfigValidates(t *testing.T) {
	t.Parallel()
	require.NoError(t, func() error { c := defaultInvoicingConfig(); return c.validate() }())
	for name, mutate := range map[string]func(*InvoicingConfig){
		"anchor":      func(c *InvoicingConfig) { c.AnchorDay = 0 },
		"issue":       func(c *InvoicingConfig) { c.IssueDay = c.AnchorDay },
		"tax":         func(c *InvoicingConfig) { c.TaxRateBPS = 10_001 },
		"schedule":    func(c *InvoicingConfig) { c.InvoiceSchedule = "every hour" },
		"expiry cron": func(c *InvoicingConfig) { c.CreditExpirySchedule = "* * *" },
		"attempts":    func(c *InvoicingConfig) { c.GiftCodeRedeemPerUser = 0 },
	} {
		c := defaultInvoicingConfig()
		mutate(&c)
		var ce *configError
		require.ErrorAs(t, c.validate(), &ce, name)
	}
}

// TestInvoicingLeaderRunsThePasses runs the invoicing jobs every second
// on the billing schedule and waits for an expired grant to be written off and a past period to be
// invoiced.
func TestInvoicingLeaderRunsThePasses(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := defaultInvoicingConfig()
	cfg.InvoiceSchedule, cfg.CreditExpirySchedule = "@every 1s", "@every 1s"
	require.NoError(t, cfg.validate())
	log := newLogger(t.Output(), "debug")
	p, err := newInvoicing(cfg, billingstore.New(db.Pool, clock), nil, nil, log)
	require.NoError(t, err)
	sched, err := newBillingSchedule(log, prometheus.NewRegistry(), p.jobs()...)
	require.NoError(t, err)

	past := time.Date(2025, 3, 4, 5, 0, 0, 0, time.UTC)
	var org int64
	require.NoError(t, db.Pool.QueryRow(ctx, `INSERT INTO orgs (name, created_at, updated_at) VALUES ('acme', $1, $1) RETURNING id`, past).Scan(&org))
	exp := past.Add(time.Hour)
	_, err = p.store.Post(ctx, billing.Posting{OrgID: org, Kind: billing.KindCredit, Amount: 5, Currency: "USD",
		Reference: "credit:1", Actor: "system:test", At: past, ExpiresAt: &exp})
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, `INSERT INTO charge_lines (key, org_id, namespace_id, resource, class, hour, revision,
		quantity, amount_micros, currency, rated_at, usage_seq) VALUES ('k1', $1, 1, 'cpu', '', $2, 0, 1, 7, 'USD', $2, 1)`, org, past)
	require.NoError(t, err)

	done := make(chan error, 1)
	go func() { done <- sched.lead(ctx) }()
	require.Eventually(t, func() bool {
		var expired, invoiced int
		require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM ledger_entries WHERE kind = 'credit_expiry'`).Scan(&expired))
		require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM invoices WHERE status = 'paid' AND total_micros = 7`).Scan(&invoiced))
		return expired == 1 && invoiced == 1
	}, 20*time.Second, 200*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
}
