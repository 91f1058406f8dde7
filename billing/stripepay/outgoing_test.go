package stripepay_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/billing/stripepay"
	"github.com/tenantplane/tenantplane/internal/errcode"
)

func TestCustomerIsCreatedOnceAndKeptInSync(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	c, err := b.svc.Customer(ctx, b.org)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(c.CustomerID, "cus_"), c.CustomerID)
	require.Equal(t, "owner@acme.example", c.Email)
	require.Equal(t, "acme Inc.", c.Name)

	again, err := b.svc.Customer(ctx, b.org)
	require.NoError(t, err)
	require.Equal(t, c.CustomerID, again.CustomerID)
	require.Equal(t, 1, b.count(`SELECT count(*) FROM stripe_customers`))

	_, err = b.db.Pool.Exec(ctx, `UPDATE orgs SET display_name = 'Acme Corporation' WHERE id = $1`, b.org)
	require.NoError(t, err)
	require.NoError(t, b.svc.SyncCustomer(ctx, b.org))
	synced, err := b.store.Customer(ctx, b.org)
	require.NoError(t, err)
	require.Equal(t, c.CustomerID, synced.CustomerID)
	require.Equal(t, "Acme Corporation", synced.Name)
	require.Equal(t, 1, b.count(`SELECT count(*) FROM audit_log WHERE action = 'billing.stripe.customer_sync'`))

	// An org without a customer has nothing to sync; an unknown org has no contact.
	other := newOrg(t, b.db.Pool, "other", "o@other.example")
	require.NoError(t, b.svc.SyncCustomer(ctx, other))
	require.Equal(t, 1, b.count(`SELECT count(*) FROM stripe_customers`))
	_, err = b.svc.Customer(ctx, 99999)
	require.Equal(t, errcode.NotFound, errcode.Of(err))
}

func TestTopUpStartsACheckoutSession(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	for name, amount := range map[string]int64{
		"below the minimum": 4_990_000, "above the maximum": 10_000_000_001, "a fraction of a cent": 5_000_001,
	} {
		_, err := b.svc.TopUp(ctx, b.org, amount, "user:1")
		require.Equal(t, errcode.BadUserInput, errcode.Of(err), name)
	}
	require.Zero(t, b.count(`SELECT count(*) FROM stripe_topups`))

	tu := b.topUp(b.org, 12_340_000)
	require.True(t, strings.HasPrefix(tu.CheckoutSessionID, "cs_"), tu.CheckoutSessionID)
	require.True(t, strings.HasPrefix(tu.CheckoutURL, "https://"), tu.CheckoutURL)
	stored := b.topUpRow(tu.ID)
	require.Equal(t, stripepay.TopUpPending, stored.Status)
	require.Equal(t, tu.CheckoutSessionID, stored.CheckoutSessionID)
	require.Equal(t, tu.CheckoutURL, stored.CheckoutURL)
	require.Equal(t, "USD", stored.Currency)
	require.Equal(t, int64(12_340_000), stored.Amount)
	require.Equal(t, 1, b.count(`SELECT count(*) FROM audit_log WHERE action = 'billing.topup.start' AND actor = 'user:1'`))
	require.Equal(t, 1, b.count(`SELECT count(*) FROM stripe_customers WHERE org_id = $1`, b.org))
}

func TestAutomaticTopUpChargesTheSavedMethodOnceBelowThreshold(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	_, err := b.svc.SetAutoTopUp(ctx, stripepay.AutoTopUp{OrgID: b.org, Enabled: true, Threshold: 10 * unit, Amount: 20 * unit}, "user:1")
	require.Equal(t, errcode.BadUserInput, errcode.Of(err), "no payment method")
	_, err = b.svc.SetAutoTopUp(ctx, stripepay.AutoTopUp{OrgID: b.org, Enabled: true, Threshold: 10 * unit, Amount: unit, PaymentMethodID: "pm_1"}, "user:1")
	require.Equal(t, errcode.BadUserInput, errcode.Of(err), "below the minimum top-up")
	set, err := b.svc.SetAutoTopUp(ctx, stripepay.AutoTopUp{OrgID: b.org, Enabled: true, Threshold: 10 * unit, Amount: 20 * unit,
		PaymentMethodID: "pm_card_visa"}, "user:1")
	require.NoError(t, err)
	require.True(t, set.Enabled)

	// No customer yet: nothing is due.
	n, err := b.svc.RunAutoTopUps(ctx)
	require.NoError(t, err)
	require.Zero(t, n)
	_, err = b.svc.Customer(ctx, b.org)
	require.NoError(t, err)

	n, err = b.svc.RunAutoTopUps(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	var id int64
	var pi string
	require.NoError(t, b.db.Pool.QueryRow(ctx, `SELECT id, payment_intent_id FROM stripe_topups WHERE automatic AND status = 'pending'`).Scan(&id, &pi))
	require.True(t, strings.HasPrefix(pi, "pi_"), pi)

	// While it is pending, no second one.
	n, err = b.svc.RunAutoTopUps(ctx)
	require.NoError(t, err)
	require.Zero(t, n)

	// Its webhook credits it, and the balance is above the threshold.
	require.Equal(t, http.StatusOK, b.send(event("evt_auto", "payment_intent.succeeded", time.Now(), paymentIntent(b.org, id, pi, 2000))))
	require.Equal(t, 20*unit, b.balance(b.org).Cash)
	require.Equal(t, stripepay.TopUpSucceeded, b.topUpRow(id).Status)
	n, err = b.svc.RunAutoTopUps(ctx)
	require.NoError(t, err)
	require.Zero(t, n)
	require.Equal(t, float64(1), metricValue(t, b, "tenantplane_stripe_auto_topups_total"))
	b.verified()
}

// finalizedInvoice stores a finalized postpaid invoice of org with two
// lines and tax, and returns it as the invoice store reads it.
func finalizedInvoice(t *testing.T, b *bundle, org int64) billing.Invoice {
	t.Helper()
	ctx := context.Background()
	var id int64
	require.NoError(t, b.db.Pool.QueryRow(ctx, `INSERT INTO invoices (org_id, period_start, period_end, billing_mode, status,
		currency, subtotal_micros, tax_rate_bps, tax_micros, total_micros, number, created_at, updated_at, finalized_at)
		VALUES ($1, '2026-10-01', '2026-11-01', 'postpaid', 'finalized', 'USD', 12345678, 1000, 1234568, 13580246, 1, $2, $2, $2)
		RETURNING id`, org, t0).Scan(&id))
	_, err := b.db.Pool.Exec(ctx, `INSERT INTO invoice_lines (invoice_id, line, namespace_id, namespace, resource, quantity, amount_micros)
		VALUES ($1, 0, 1, 'ns-a', 'cpu', 600000, 10000000), ($1, 1, 1, 'ns-a', 'memory', 9999, 2345678)`, id)
	require.NoError(t, err)
	inv, err := b.store.Invoice(ctx, org, id)
	require.NoError(t, err)
	require.Len(t, inv.Lines, 2)
	return inv
}

func TestFinalizedPostpaidInvoicesArePushedOnceAndPaidByWebhook(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	inv := finalizedInvoice(t, b, b.org)

	require.NoError(t, b.svc.InvoiceFinalized(ctx, inv))
	si, err := b.svc.StripeInvoice(ctx, inv.ID)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(si.StripeInvoiceID, "in_"), si.StripeInvoiceID)
	// stripe-mock's finalized invoice has no hosted URL; Stripe's has.
	require.Equal(t, "open", si.Status)
	require.Equal(t, int64(13_580_000), si.Amount, "the total rounded half to even to whole cents")

	// Pushed once: a second finalization notice and the schedule change nothing.
	require.NoError(t, b.svc.InvoiceFinalized(ctx, inv))
	n, err := b.svc.PushPendingInvoices(ctx)
	require.NoError(t, err)
	require.Zero(t, n)
	require.Equal(t, 1, b.count(`SELECT count(*) FROM stripe_invoices`))

	invoice := func(paid int64) map[string]any {
		return map[string]any{"id": si.StripeInvoiceID, "object": "invoice", "amount_paid": paid, "currency": "usd",
			"status": "paid", "payment_intent": "pi_inv", "metadata": map[string]any{"tenantplane_invoice_id": itoa(inv.ID)}}
	}
	now := time.Now()
	// The failure of an earlier attempt arrives after the payment.
	require.Equal(t, http.StatusOK, b.send(event("evt_inv_paid", "invoice.paid", now, invoice(1358))))
	require.Equal(t, http.StatusOK, b.send(event("evt_inv_fail", "invoice.payment_failed", now.Add(-time.Hour), invoice(0))))
	require.Equal(t, http.StatusOK, b.send(event("evt_inv_void", "invoice.voided", now.Add(-2*time.Hour), invoice(0))))
	si, err = b.svc.StripeInvoice(ctx, inv.ID)
	require.NoError(t, err)
	require.Equal(t, "paid", si.Status)
	paid, err := b.store.Invoice(ctx, b.org, inv.ID)
	require.NoError(t, err)
	require.Equal(t, billing.InvoiceStatusPaid, paid.Status)
	require.Equal(t, 13_580_000, b.count(`SELECT amount_micros FROM ledger_entries WHERE kind = 'payment' AND reference = $1`,
		"stripe:invoice:"+si.StripeInvoiceID))
	require.Equal(t, []int64{b.org}, b.observer.seen())
	b.verified()
}

func TestUnpushedInvoicesArePushedOnSchedule(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	a := finalizedInvoice(t, b, b.org)
	n, err := b.svc.PushPendingInvoices(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	si, err := b.svc.StripeInvoice(ctx, a.ID)
	require.NoError(t, err)
	require.Equal(t, a.OrgID, si.OrgID)

	// A voided invoice at Stripe voids ours.
	require.Equal(t, http.StatusOK, b.send(event("evt_void", "invoice.voided", time.Now(),
		map[string]any{"id": si.StripeInvoiceID, "object": "invoice", "amount_paid": 0, "currency": "usd", "status": "void"})))
	got, err := b.store.Invoice(ctx, b.org, a.ID)
	require.NoError(t, err)
	require.Equal(t, billing.InvoiceStatusVoid, got.Status)
	require.Zero(t, b.count(`SELECT count(*) FROM ledger_entries`))
}

// TestUnchargedAutomaticTopUpIsChargedAgainUnderItsKey: a run that
// recorded an automatic top-up and stopped before Stripe answered left it
// pending with no PaymentIntent, which blocks the org's next one. The next
// run charges it under its first idempotency key, or fails it when that
// key may be gone.
func TestUnchargedAutomaticTopUpIsChargedAgainUnderItsKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	_, err := b.svc.Customer(ctx, b.org)
	require.NoError(t, err)
	_, err = b.svc.SetAutoTopUp(ctx, stripepay.AutoTopUp{OrgID: b.org, Enabled: true, Threshold: 10 * unit, Amount: 20 * unit,
		PaymentMethodID: "pm_card_visa"}, "user:1")
	require.NoError(t, err)
	stopped := func(org int64, ago time.Duration) int64 {
		t.Helper()
		var id int64
		require.NoError(t, b.db.Pool.QueryRow(ctx, `INSERT INTO stripe_topups (org_id, amount_micros, currency, automatic, status,
			created_by, created_at, updated_at) VALUES ($1, $2, 'USD', true, 'pending', 'system:billing', $3, $3) RETURNING id`,
			org, 20*unit, t0.Add(-ago)).Scan(&id))
		return id
	}

	// Just recorded: it may be charging now; left alone, and it blocks.
	recent := stopped(b.org, time.Minute)
	n, err := b.svc.RunAutoTopUps(ctx)
	require.NoError(t, err)
	require.Zero(t, n)
	require.Empty(t, b.topUpRow(recent).PaymentIntentID)

	// Stopped a while ago: charged under its key, still one at a time.
	_, err = b.db.Pool.Exec(ctx, `UPDATE stripe_topups SET created_at = $2 WHERE id = $1`, recent, t0.Add(-15*time.Minute))
	require.NoError(t, err)
	// Another org's, too old for its key: failed, which lets its next
	// one start once the retry pause is over.
	other := newOrg(t, b.db.Pool, "globex", "owner@globex.example")
	_, err = b.svc.Customer(ctx, other)
	require.NoError(t, err)
	_, err = b.svc.SetAutoTopUp(ctx, stripepay.AutoTopUp{OrgID: other, Enabled: true, Threshold: 10 * unit, Amount: 20 * unit,
		PaymentMethodID: "pm_card_visa"}, "user:1")
	require.NoError(t, err)
	old := stopped(other, 30*time.Hour)
	n, err = b.svc.RunAutoTopUps(ctx)
	require.NoError(t, err)
	require.Zero(t, n)
	charged := b.topUpRow(recent)
	require.Equal(t, stripepay.TopUpPending, charged.Status)
	require.True(t, strings.HasPrefix(charged.PaymentIntentID, "pi_"), charged.PaymentIntentID)
	failed := b.topUpRow(old)
	require.Equal(t, stripepay.TopUpFailed, failed.Status)
	require.Contains(t, failed.Failure, "too long ago")
	var pending int
	require.NoError(t, b.db.Pool.QueryRow(ctx, `SELECT count(*) FROM stripe_topups WHERE status = 'pending'`).Scan(&pending))
	require.Equal(t, 1, pending)
	require.Equal(t, float64(1), metricValue(t, b, "tenantplane_stripe_auto_topups_total"))
}
