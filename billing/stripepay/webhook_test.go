package stripepay_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/billing/billingstore"
	"github.com/tenantplane/tenantplane/billing/stripepay"
)

const (
	unit  billing.Micros = billing.MicrosPerUnit
	usd50                = 50 * unit
)

func TestTopUpIsCreditedOnceByItsPaymentIntent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tu := b.topUp(b.org, usd50)
	created := time.Now().Add(-time.Minute)

	require.Equal(t, http.StatusOK, b.send(event("evt_cs", "checkout.session.completed", created, checkoutCompleted(b.org, tu.ID, "pi_1", 5000))))
	require.Equal(t, http.StatusOK, b.send(event("evt_pi", "payment_intent.succeeded", created, paymentIntent(b.org, tu.ID, "pi_1", 5000))))

	bal := b.balance(b.org)
	require.Equal(t, usd50, bal.Cash)
	require.Equal(t, 1, b.count(`SELECT count(*) FROM ledger_entries WHERE reference = 'stripe:pi:pi_1' AND kind = 'top_up'`))
	require.Equal(t, 2, b.count(`SELECT count(*) FROM stripe_events WHERE processed_at IS NOT NULL`))
	got := b.topUpRow(tu.ID)
	require.Equal(t, stripepay.TopUpSucceeded, got.Status)
	require.Equal(t, "pi_1", got.PaymentIntentID)
	require.Equal(t, []int64{b.org}, b.observer.seen(), "told once, after the crediting commit")
	require.Equal(t, 1, b.count(`SELECT count(*) FROM audit_log WHERE action = 'stripe.checkout.session.completed' AND target = $1`, "org:"+itoa(b.org)))
	b.verified()
}

func TestSignaturesAndTimestampsAreChecked(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tu := b.topUp(b.org, usd50)
	payload := event("evt_sig", "payment_intent.succeeded", time.Now(), paymentIntent(b.org, tu.ID, "pi_sig", 5000))

	for name, header := range map[string]string{
		"forged":          sign(payload, time.Now(), "whsec_forged"),
		"stale":           sign(payload, time.Now().Add(-10*time.Minute), secret),
		"no header":       "",
		"malformed":       "t=abc,v1=zz",
		"other body":      sign([]byte(`{"id":"evt_other"}`), time.Now(), secret),
		"future, forged":  sign(payload, time.Now().Add(time.Minute), "whsec_x"),
		"scheme v0 alone": "t=" + itoa(time.Now().Unix()) + ",v0=" + "00",
	} {
		require.Equal(t, http.StatusBadRequest, b.deliver(payload, header), name)
	}
	require.Zero(t, b.count(`SELECT count(*) FROM stripe_events`), "nothing stored")
	require.Zero(t, b.count(`SELECT count(*) FROM ledger_entries`), "nothing credited")

	// During a rotation the previous secret still verifies.
	require.Equal(t, http.StatusOK, b.deliver(payload, sign(payload, time.Now(), oldSecret)))
	require.Equal(t, usd50, b.balance(b.org).Cash)
	b.verified()
}

func TestTheSameEventTenTimesAtOnceCreditsOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tu := b.topUp(b.org, usd50)
	payload := event("evt_many", "payment_intent.succeeded", time.Now(), paymentIntent(b.org, tu.ID, "pi_many", 5000))
	var wg sync.WaitGroup
	codes := make([]int, 10)
	for i := range codes {
		wg.Go(func() { codes[i] = b.send(payload) })
	}
	wg.Wait()
	for _, c := range codes {
		require.Equal(t, http.StatusOK, c)
	}
	require.Equal(t, usd50, b.balance(b.org).Cash)
	require.Equal(t, 1, b.count(`SELECT count(*) FROM ledger_entries`))
	require.Equal(t, 1, b.count(`SELECT count(*) FROM stripe_events WHERE id = 'evt_many' AND attempts = 1`))
	require.Equal(t, []int64{b.org}, b.observer.seen())
	b.verified()
}

func TestAnOlderEventNeverOverwritesNewerState(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tu := b.topUp(b.org, usd50)
	first, later := time.Now().Add(-2*time.Minute), time.Now().Add(-time.Minute)
	failed := paymentIntent(b.org, tu.ID, "pi_ooo", 0)
	failed["status"] = "requires_payment_method"
	failed["last_payment_error"] = map[string]any{"code": "card_declined", "message": "Your card was declined."}

	// The retry succeeded (later); the first attempt's failure (earlier)
	// arrives after it.
	require.Equal(t, http.StatusOK, b.send(event("evt_ok", "payment_intent.succeeded", later, paymentIntent(b.org, tu.ID, "pi_ooo", 5000))))
	require.Equal(t, http.StatusOK, b.send(event("evt_fail", "payment_intent.payment_failed", first, failed)))
	got := b.topUpRow(tu.ID)
	require.Equal(t, stripepay.TopUpSucceeded, got.Status)
	require.Empty(t, got.Failure)
	require.Equal(t, usd50, b.balance(b.org).Cash)

	// In order, the failure is recorded, then the success.
	tu2 := b.topUp(b.org, usd50)
	failed2 := paymentIntent(b.org, tu2.ID, "pi_io", 0)
	failed2["last_payment_error"] = map[string]any{"message": "Your card was declined."}
	require.Equal(t, http.StatusOK, b.send(event("evt_fail2", "payment_intent.payment_failed", first, failed2)))
	got = b.topUpRow(tu2.ID)
	require.Equal(t, stripepay.TopUpFailed, got.Status)
	require.Equal(t, "Your card was declined.", got.Failure)
	require.Equal(t, http.StatusOK, b.send(event("evt_ok2", "payment_intent.succeeded", later, paymentIntent(b.org, tu2.ID, "pi_io", 5000))))
	require.Equal(t, stripepay.TopUpSucceeded, b.topUpRow(tu2.ID).Status)
	require.Equal(t, 2*usd50, b.balance(b.org).Cash)
	b.verified()
}

func TestRefundsDebitOnlyTheRefundedDelta(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tu := b.topUp(b.org, usd50)
	now := time.Now()
	require.Equal(t, http.StatusOK, b.send(event("evt_paid", "payment_intent.succeeded", now.Add(-time.Hour), paymentIntent(b.org, tu.ID, "pi_r", 5000))))
	charge := func(refunded int64) map[string]any {
		return map[string]any{"id": "ch_r", "object": "charge", "amount": 5000, "amount_refunded": refunded,
			"currency": "usd", "payment_intent": "pi_r", "refunded": refunded == 5000}
	}
	require.Equal(t, http.StatusOK, b.send(event("evt_r1", "charge.refunded", now.Add(-30*time.Minute), charge(1000))))
	require.Equal(t, 40*unit, b.balance(b.org).Cash)
	require.Equal(t, http.StatusOK, b.send(event("evt_r2", "charge.refunded", now.Add(-20*time.Minute), charge(2500))))
	require.Equal(t, 25*unit, b.balance(b.org).Cash)
	// A stale refund event under a new id, and a repeat, debit nothing.
	require.Equal(t, http.StatusOK, b.send(event("evt_r0", "charge.refunded", now.Add(-40*time.Minute), charge(1000))))
	require.Equal(t, http.StatusOK, b.send(event("evt_r2", "charge.refunded", now.Add(-20*time.Minute), charge(2500))))
	bal := b.balance(b.org)
	require.Equal(t, 25*unit, bal.Cash)
	require.Equal(t, 2, b.count(`SELECT count(*) FROM ledger_entries WHERE kind = 'refund'`))
	require.Equal(t, -25*unit, int64(b.count(`SELECT sum(amount_micros) FROM ledger_entries WHERE kind = 'refund'`)))
	b.verified()
}

func TestDisputesDebitAndFlagTheOrg(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tu := b.topUp(b.org, usd50)
	now := time.Now()
	require.Equal(t, http.StatusOK, b.send(event("evt_p", "payment_intent.succeeded", now.Add(-time.Hour), paymentIntent(b.org, tu.ID, "pi_d", 5000))))
	dp := map[string]any{"id": "dp_1", "object": "dispute", "amount": 5000, "currency": "usd", "charge": "ch_d",
		"payment_intent": "pi_d", "reason": "fraudulent", "status": "needs_response"}
	for range 2 {
		require.Equal(t, http.StatusOK, b.send(event("evt_dp", "charge.dispute.created", now, dp)))
	}
	require.Zero(t, b.balance(b.org).Cash)
	require.Equal(t, 1, b.count(`SELECT count(*) FROM stripe_disputes WHERE org_id = $1 AND reason = 'fraudulent'`, b.org))
	require.Equal(t, 1, b.count(`SELECT count(*) FROM ledger_entries WHERE kind = 'dispute' AND amount_micros = $1`, -usd50))
	require.Equal(t, []int64{b.org, b.org}, b.observer.seen(), "the top-up and the dispute")
	b.verified()
}

func TestUnknownTypesAreStoredAndAcknowledged(t *testing.T) {
	t.Parallel()
	b := setup(t)
	payload := event("evt_plan", "plan.created", time.Now(), map[string]any{"id": "plan_1", "object": "plan"})
	require.Equal(t, http.StatusOK, b.send(payload))
	var raw []byte
	var outcome string
	require.NoError(t, b.db.Pool.QueryRow(context.Background(),
		`SELECT payload, outcome FROM stripe_events WHERE id = 'evt_plan' AND processed_at IS NOT NULL`).Scan(&raw, &outcome))
	require.Equal(t, payload, raw, "stored byte for byte")
	require.Equal(t, "stored: type not handled", outcome)

	// A top-up event about a top-up that is not ours credits nothing.
	require.Equal(t, http.StatusOK, b.send(event("evt_foreign", "payment_intent.succeeded", time.Now(), paymentIntent(b.org, 999, "pi_x", 5000))))
	require.Zero(t, b.count(`SELECT count(*) FROM ledger_entries`))
}

// failingStore fails the first n events it processes after their ledger
// posting, inside their transaction.
type failingStore struct {
	*billingstore.Store
	mu    sync.Mutex
	fails int
}

var errInjected = errors.New("injected failure")

func (f *failingStore) ProcessEvent(ctx context.Context, id string, at time.Time, fn func(stripepay.EventTx) (string, error)) (bool, error) {
	return f.Store.ProcessEvent(ctx, id, at, func(tx stripepay.EventTx) (string, error) {
		out, err := fn(tx)
		f.mu.Lock()
		defer f.mu.Unlock()
		if err == nil && f.fails > 0 {
			f.fails--
			return "", errInjected
		}
		return out, err
	})
}

func TestAFailureMidProcessingAppliesNothingAndARetryAppliesAll(t *testing.T) {
	t.Parallel()
	fs := &failingStore{fails: 1}
	b := setup(t, func(_ *stripepay.Config, d *stripepay.Deps) {
		fs.Store = d.Store.(*billingstore.Store)
		d.Store = fs
	})
	tu := b.topUp(b.org, usd50)
	payload := event("evt_retry", "checkout.session.completed", time.Now(), checkoutCompleted(b.org, tu.ID, "pi_retry", 5000))

	require.Equal(t, http.StatusInternalServerError, b.send(payload))
	require.Zero(t, b.balance(b.org).Cash)
	require.Zero(t, b.count(`SELECT count(*) FROM ledger_entries`))
	require.Zero(t, b.count(`SELECT count(*) FROM stripe_payments`))
	require.Equal(t, stripepay.TopUpPending, b.topUpRow(tu.ID).Status)
	require.Equal(t, 1, b.count(`SELECT count(*) FROM stripe_events WHERE id = 'evt_retry' AND processed_at IS NULL
		AND attempts = 1 AND last_error LIKE '%injected failure%'`), "stored raw, unprocessed, with its error")
	require.Empty(t, b.observer.seen())
	b.verified()

	require.Equal(t, http.StatusOK, b.send(payload))
	require.Equal(t, http.StatusOK, b.send(payload))
	require.Equal(t, usd50, b.balance(b.org).Cash)
	require.Equal(t, stripepay.TopUpSucceeded, b.topUpRow(tu.ID).Status)
	require.Equal(t, 1, b.count(`SELECT count(*) FROM ledger_entries`))
	require.Equal(t, []int64{b.org}, b.observer.seen())
	b.verified()
}
