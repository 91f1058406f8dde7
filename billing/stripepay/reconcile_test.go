package stripepay_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/billing/stripepay"
	"github.com/tenantplane/tenantplane/internal/errcode"
)

func TestReconcileListsStripePaymentsAndEvents(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	_, err := b.svc.LastReconciliation(ctx)
	require.Equal(t, errcode.NotFound, errcode.Of(err))

	// stripe-mock lists one PaymentIntent that is no top-up of ours and
	// one event of a type we do not handle: nothing to report.
	r, err := b.svc.Reconcile(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, r.Payments)
	require.Zero(t, r.Events)
	require.Empty(t, r.Discrepancies)
	require.Equal(t, t0.Add(-72*time.Hour), r.Since)
	last, err := b.svc.LastReconciliation(ctx)
	require.NoError(t, err)
	require.Equal(t, r.ID, last.ID)
	require.Zero(t, metricValue(t, b, "tenantplane_stripe_reconcile_discrepancies", "kind", "missing_payment"))
}

func TestReconcileReportsWhatTheLedgerLacksOrHoldsDifferently(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	tu := b.topUp(b.org, usd50)
	tu2 := b.topUp(b.org, usd50)
	require.Equal(t, http.StatusOK, b.send(event("evt_ok", "payment_intent.succeeded", time.Now(), paymentIntent(b.org, tu.ID, "pi_ok", 5000))))
	require.Equal(t, http.StatusOK, b.send(event("evt_short", "payment_intent.succeeded", time.Now(), paymentIntent(b.org, tu2.ID, "pi_short", 5000))))

	ourMeta := func(topUp int64) map[string]string {
		return map[string]string{"tenantplane_org_id": itoa(b.org), "tenantplane_topup_id": itoa(topUp), "tenantplane_purpose": "top_up"}
	}
	payments := []stripepay.RemotePayment{
		{ID: "pi_ok", Status: "succeeded", Amount: 5000, Currency: "usd", Metadata: ourMeta(tu.ID)},
		{ID: "pi_short", Status: "succeeded", Amount: 6000, Currency: "usd", Metadata: ourMeta(tu2.ID)},
		{ID: "pi_lost", Status: "succeeded", Amount: 700, Currency: "usd", Metadata: ourMeta(77)},
		{ID: "pi_pending", Status: "processing", Amount: 0, Currency: "usd", Metadata: ourMeta(78)},
		{ID: "pi_theirs", Status: "succeeded", Amount: 900, Currency: "usd"},
	}
	events := []stripepay.RemoteEvent{
		{ID: "evt_ok", Type: "payment_intent.succeeded", Created: t0},
		{ID: "evt_unseen", Type: "invoice.paid", Created: t0},
		{ID: "evt_plan", Type: "plan.created", Created: t0},
	}
	r, err := b.svc.ReconcileLists(ctx, payments, events)
	require.NoError(t, err)
	require.Equal(t, 2, r.Events)
	kinds := map[string]string{}
	for _, d := range r.Discrepancies {
		kinds[d.ObjectID] = d.Kind
	}
	require.Equal(t, map[string]string{"pi_short": "amount_differs", "pi_lost": "missing_payment", "evt_unseen": "missing_event"}, kinds)

	last, err := b.svc.LastReconciliation(ctx)
	require.NoError(t, err)
	require.ElementsMatch(t, r.Discrepancies, last.Discrepancies)
	require.Equal(t, float64(1), metricValue(t, b, "tenantplane_stripe_reconcile_discrepancies", "kind", "amount_differs"))
	require.Equal(t, float64(1), metricValue(t, b, "tenantplane_stripe_reconcile_discrepancies", "kind", "missing_payment"))
	require.Equal(t, float64(1), metricValue(t, b, "tenantplane_stripe_reconcile_discrepancies", "kind", "missing_event"))

	// Once the ledger has what Stripe has, the next run is clean.
	require.Equal(t, http.StatusOK, b.send(event("evt_unseen", "invoice.paid", time.Now(),
		map[string]any{"id": "in_unknown", "object": "invoice", "amount_paid": 0, "currency": "usd"})))
	r, err = b.svc.ReconcileLists(ctx, payments[:1], events)
	require.NoError(t, err)
	require.Empty(t, r.Discrepancies)
	require.Zero(t, metricValue(t, b, "tenantplane_stripe_reconcile_discrepancies", "kind", "missing_event"))
	require.Equal(t, 1, b.count(`SELECT count(*) FROM stripe_reconciliations`), "older runs dropped")
}
