package stripepay

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v76"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/internal/errcode"
)

// The event types that move money or state; every other type is stored
// and acknowledged.
const (
	evCheckoutCompleted = "checkout.session.completed"
	evPaymentSucceeded  = "payment_intent.succeeded"
	evPaymentFailed     = "payment_intent.payment_failed"
	evInvoicePaid       = "invoice.paid"
	evInvoiceFailed     = "invoice.payment_failed"
	evInvoiceVoided     = "invoice.voided"
	evChargeRefunded    = "charge.refunded"
	evDisputeCreated    = "charge.dispute.created"
)

// HandledTypes are the event types that have an effect.
var HandledTypes = []string{evCheckoutCompleted, evPaymentSucceeded, evPaymentFailed, evInvoicePaid,
	evInvoiceFailed, evInvoiceVoided, evChargeRefunded, evDisputeCreated}

// Outcome is what handling one delivery of an event did.
type Outcome struct {
	// Duplicate is true when the event had been processed before; the
	// delivery changed nothing.
	Duplicate bool
	// Result says what processing did ("credited 12.000000 USD to org 7",
	// "ignored: …").
	Result string
}

// expandable is a field Stripe sends as an id or, expanded, as an object
// with an id.
type expandable struct{ ID string }

func (x *expandable) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		x.ID = ""
		return nil
	case len(b) > 0 && b[0] == '"':
		return json.Unmarshal(b, &x.ID)
	}
	var o struct {
		ID string `json:"id"`
	}
	err := json.Unmarshal(b, &o)
	x.ID = o.ID
	return err
}

type checkoutObject struct {
	ID            string            `json:"id"`
	PaymentIntent expandable        `json:"payment_intent"`
	AmountTotal   int64             `json:"amount_total"`
	Currency      string            `json:"currency"`
	PaymentStatus string            `json:"payment_status"`
	Metadata      map[string]string `json:"metadata"`
}

type paymentIntentObject struct {
	ID               string            `json:"id"`
	AmountReceived   int64             `json:"amount_received"`
	Currency         string            `json:"currency"`
	Metadata         map[string]string `json:"metadata"`
	LastPaymentError *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"last_payment_error"`
}

type invoiceObject struct {
	ID            string            `json:"id"`
	AmountPaid    int64             `json:"amount_paid"`
	Currency      string            `json:"currency"`
	Metadata      map[string]string `json:"metadata"`
	PaymentIntent expandable        `json:"payment_intent"`
}

type chargeObject struct {
	ID             string     `json:"id"`
	AmountRefunded int64      `json:"amount_refunded"`
	Currency       string     `json:"currency"`
	PaymentIntent  expandable `json:"payment_intent"`
	Customer       expandable `json:"customer"`
}

type disputeObject struct {
	ID            string     `json:"id"`
	Amount        int64      `json:"amount"`
	Currency      string     `json:"currency"`
	Charge        expandable `json:"charge"`
	PaymentIntent expandable `json:"payment_intent"`
	Reason        string     `json:"reason"`
}

// HandleEvent stores a verified event raw, unless it is stored already,
// then processes it once: its ledger effect, its state changes and the
// mark that it was processed commit together, or nothing does. A
// delivery of an event already processed changes nothing. After commit,
// the observer hears of every org whose balance moved.
func (s *Service) HandleEvent(ctx context.Context, raw []byte, e stripe.Event) (Outcome, error) {
	if e.ID == "" || e.Type == "" {
		return Outcome{}, errcode.Invalid("event", "has no id or type")
	}
	now := s.now()
	created := time.Unix(e.Created, 0).UTC()
	processed, err := s.store.RecordEvent(ctx, RawEvent{ID: e.ID, Type: string(e.Type), Created: created, Payload: raw}, now)
	if err != nil {
		return Outcome{}, fmt.Errorf("storing event %s: %w", e.ID, err)
	}
	if processed {
		s.metrics.events.WithLabelValues(metricType(string(e.Type)), "duplicate").Inc()
		return Outcome{Duplicate: true}, nil
	}
	var moved []int64
	var result string
	dup, err := s.store.ProcessEvent(ctx, e.ID, now, func(tx EventTx) (string, error) {
		moved = moved[:0]
		var err error
		result, err = s.apply(ctx, tx, e, created, &moved)
		return result, err
	})
	if err != nil {
		s.metrics.events.WithLabelValues(metricType(string(e.Type)), "failed").Inc()
		if ferr := s.store.EventFailed(ctx, e.ID, err.Error()); ferr != nil {
			s.log.Warn("recording a failed stripe event", "event", e.ID, "err", ferr)
		}
		return Outcome{}, fmt.Errorf("processing event %s (%s): %w", e.ID, e.Type, err)
	}
	if dup {
		s.metrics.events.WithLabelValues(metricType(string(e.Type)), "duplicate").Inc()
		return Outcome{Duplicate: true}, nil
	}
	s.metrics.events.WithLabelValues(metricType(string(e.Type)), "processed").Inc()
	if s.observer != nil {
		for _, org := range moved {
			s.observer.BalanceChanged(ctx, org)
		}
	}
	return Outcome{Result: result}, nil
}

// metricType keeps the label set of the events metric bounded.
func metricType(t string) string {
	for _, h := range HandledTypes {
		if h == t {
			return t
		}
	}
	return "other"
}

func (s *Service) apply(ctx context.Context, tx EventTx, e stripe.Event, created time.Time, moved *[]int64) (string, error) {
	if e.Data == nil {
		return "ignored: no data", nil
	}
	raw := e.Data.Raw
	decode := func(v any) error {
		if err := json.Unmarshal(raw, v); err != nil {
			return errcode.Invalid("event", "data.object does not decode: "+err.Error())
		}
		return nil
	}
	h := eventCtx{s: s, tx: tx, id: e.ID, typ: string(e.Type), created: created, moved: moved}
	switch e.Type {
	case evCheckoutCompleted:
		var o checkoutObject
		if err := decode(&o); err != nil {
			return "", err
		}
		if o.PaymentStatus != "paid" {
			return "ignored: checkout session not paid yet (" + o.PaymentStatus + ")", nil
		}
		pi := o.PaymentIntent.ID
		if pi == "" {
			pi = o.ID
		}
		return h.topUpPaid(ctx, pi, o.AmountTotal, o.Currency, o.Metadata)
	case evPaymentSucceeded:
		var o paymentIntentObject
		if err := decode(&o); err != nil {
			return "", err
		}
		if o.Metadata[metaPurpose] != purposeTopUp {
			return "ignored: not a top-up", nil
		}
		return h.topUpPaid(ctx, o.ID, o.AmountReceived, o.Currency, o.Metadata)
	case evPaymentFailed:
		var o paymentIntentObject
		if err := decode(&o); err != nil {
			return "", err
		}
		if o.Metadata[metaPurpose] != purposeTopUp {
			return "ignored: not a top-up", nil
		}
		reason := "payment failed"
		if o.LastPaymentError != nil && o.LastPaymentError.Message != "" {
			reason = o.LastPaymentError.Message
		}
		return h.topUpFailed(ctx, o.ID, o.Metadata, reason)
	case evInvoicePaid, evInvoiceFailed, evInvoiceVoided:
		var o invoiceObject
		if err := decode(&o); err != nil {
			return "", err
		}
		return h.invoice(ctx, o)
	case evChargeRefunded:
		var o chargeObject
		if err := decode(&o); err != nil {
			return "", err
		}
		return h.refund(ctx, o)
	case evDisputeCreated:
		var o disputeObject
		if err := decode(&o); err != nil {
			return "", err
		}
		return h.dispute(ctx, o)
	}
	return "stored: type not handled", nil
}

// eventCtx is one event being processed inside its transaction.
type eventCtx struct {
	s       *Service
	tx      EventTx
	id, typ string
	created time.Time
	moved   *[]int64
}

// advance records that this event set objectID to status, unless a newer
// event got there first; it reports whether it did.
func (h eventCtx) advance(ctx context.Context, objectID, status string) (bool, error) {
	prev, err := h.tx.LockObject(ctx, objectID)
	if err != nil {
		return false, err
	}
	if !supersedes(prev, h.created, status) {
		return false, nil
	}
	return true, h.tx.SetObject(ctx, ObjectState{ObjectID: objectID, Status: status, EventCreated: h.created,
		EventID: h.id, Exists: true}, h.s.now())
}

func (h eventCtx) post(ctx context.Context, p billing.Posting) (billing.Posted, error) {
	p.Actor, p.At = "stripe", h.created
	out, err := h.tx.Post(ctx, p)
	if err != nil {
		return out, fmt.Errorf("posting %s: %w", p.Reference, err)
	}
	if !out.Duplicate {
		*h.moved = append(*h.moved, p.OrgID)
	}
	return out, nil
}

func (h eventCtx) audit(ctx context.Context, orgID int64, detail map[string]any) error {
	detail["event"] = h.id
	return h.tx.Audit(ctx, Audit{Actor: "stripe", Action: "stripe." + h.typ, Target: orgTarget(orgID), Detail: detail}, h.s.now())
}

// ourTopUp finds the top-up that metadata names and checks that it is the
// named org's.
func (h eventCtx) ourTopUp(ctx context.Context, meta map[string]string) (TopUp, bool, error) {
	org, okOrg := parseID(meta[metaOrg])
	id, okTopUp := parseID(meta[metaTopUp])
	if !okOrg || !okTopUp {
		return TopUp{}, false, nil // metadata of no top-up of ours
	}
	t, err := h.tx.TopUp(ctx, id)
	if errcode.Of(err) == errcode.NotFound {
		return TopUp{}, false, nil
	}
	if err != nil {
		return TopUp{}, false, err
	}
	return t, t.OrgID == org, nil
}

// topUpPaid credits a paid top-up once, by its PaymentIntent, whichever of
// its events comes first.
func (h eventCtx) topUpPaid(ctx context.Context, pi string, minor int64, currency string, meta map[string]string) (string, error) {
	t, ok, err := h.ourTopUp(ctx, meta)
	if err != nil || !ok {
		return "ignored: no top-up of ours", err
	}
	cur := strings.ToUpper(currency)
	amount, err := FromMinor(minor, cur)
	if err != nil {
		return "", err
	}
	if amount <= 0 {
		return "ignored: nothing received", nil
	}
	// Every event about a payment locks its object first, then the
	// account, then the top-up, so that two of them never deadlock.
	applied, err := h.advance(ctx, pi, string(TopUpSucceeded))
	if err != nil {
		return "", err
	}
	ref := "stripe:pi:" + pi
	posted, err := h.post(ctx, billing.Posting{OrgID: t.OrgID, Kind: billing.KindTopUp, Amount: amount, Currency: cur,
		Reference: ref, Description: fmt.Sprintf("top-up %d", t.ID)})
	if err != nil {
		return "", err
	}
	if err := h.tx.RecordPayment(ctx, Payment{PaymentIntentID: pi, OrgID: t.OrgID, Purpose: purposeTopUp,
		Amount: amount, Currency: cur, Reference: ref}, h.s.now()); err != nil {
		return "", err
	}
	if applied {
		if err := h.tx.SetTopUpStatus(ctx, t.ID, TopUpSucceeded, pi, "", h.s.now()); err != nil {
			return "", err
		}
	}
	if posted.Duplicate {
		return "already credited by " + ref, nil
	}
	if err := h.audit(ctx, t.OrgID, map[string]any{"topup": t.ID, "amount": billing.FormatMicros(amount), "currency": cur}); err != nil {
		return "", err
	}
	return fmt.Sprintf("credited %s %s to org %d", billing.FormatMicros(amount), cur, t.OrgID), nil
}

func (h eventCtx) topUpFailed(ctx context.Context, pi string, meta map[string]string, reason string) (string, error) {
	t, ok, err := h.ourTopUp(ctx, meta)
	if err != nil || !ok {
		return "ignored: no top-up of ours", err
	}
	applied, err := h.advance(ctx, pi, string(TopUpFailed))
	if err != nil || !applied {
		return "ignored: a newer event settled the payment", err
	}
	if len(reason) > 500 {
		reason = reason[:500]
	}
	if err := h.tx.SetTopUpStatus(ctx, t.ID, TopUpFailed, pi, reason, h.s.now()); err != nil {
		return "", err
	}
	if err := h.audit(ctx, t.OrgID, map[string]any{"topup": t.ID, "reason": reason}); err != nil {
		return "", err
	}
	return fmt.Sprintf("top-up %d failed", t.ID), nil
}

func (h eventCtx) invoice(ctx context.Context, o invoiceObject) (string, error) {
	inv, found, err := h.tx.InvoiceByStripeID(ctx, o.ID)
	if err != nil || !found {
		return "ignored: no invoice of ours", err
	}
	status := map[string]string{evInvoicePaid: "paid", evInvoiceFailed: "payment_failed", evInvoiceVoided: "void"}[h.typ]
	result := "invoice " + strconv.FormatInt(inv.InvoiceID, 10) + " " + status
	applied, err := h.advance(ctx, o.ID, status)
	if err != nil {
		return "", err
	}
	if h.typ == evInvoicePaid {
		cur := strings.ToUpper(o.Currency)
		amount, err := FromMinor(o.AmountPaid, cur)
		if err != nil {
			return "", err
		}
		if amount > 0 {
			ref := "stripe:invoice:" + o.ID
			if _, err := h.post(ctx, billing.Posting{OrgID: inv.OrgID, Kind: billing.KindPayment, Amount: amount,
				Currency: cur, Reference: ref, Description: fmt.Sprintf("invoice %d", inv.InvoiceID)}); err != nil {
				return "", err
			}
			if o.PaymentIntent.ID != "" {
				if err := h.tx.RecordPayment(ctx, Payment{PaymentIntentID: o.PaymentIntent.ID, OrgID: inv.OrgID,
					Purpose: purposeInvoice, Amount: amount, Currency: cur, Reference: ref}, h.s.now()); err != nil {
					return "", err
				}
			}
		}
	}
	if !applied {
		return result + "; state kept: a newer event came first", nil
	}
	if err := h.tx.SetInvoiceStatus(ctx, inv.InvoiceID, status, h.created); err != nil {
		return "", err
	}
	return result, h.audit(ctx, inv.OrgID, map[string]any{"invoice": inv.InvoiceID, "status": status})
}

// orgOfPayment finds the org a PaymentIntent credited, or else the org of
// the customer.
func (h eventCtx) orgOfPayment(ctx context.Context, pi, customer string) (int64, bool, error) {
	if pi != "" {
		if org, ok, err := h.tx.PaymentOrg(ctx, pi); err != nil || ok {
			return org, ok, err
		}
	}
	if customer != "" {
		return h.tx.CustomerOrg(ctx, customer)
	}
	return 0, false, nil
}

// refund debits what a charge.refunded event adds to the refunds already
// debited: the event carries the running total, so a repeated or older
// event debits nothing.
func (h eventCtx) refund(ctx context.Context, o chargeObject) (string, error) {
	org, ok, err := h.orgOfPayment(ctx, o.PaymentIntent.ID, o.Customer.ID)
	if err != nil || !ok {
		return "ignored: charge of no org of ours", err
	}
	cur := strings.ToUpper(o.Currency)
	total, err := FromMinor(o.AmountRefunded, cur)
	if err != nil {
		return "", err
	}
	if _, err := h.advance(ctx, o.ID, "refunded"); err != nil {
		return "", err
	}
	prev, _, err := h.tx.Charge(ctx, o.ID)
	if err != nil {
		return "", err
	}
	delta := total - prev.Refunded
	if delta <= 0 {
		return fmt.Sprintf("refunds of %s already debited", o.ID), nil
	}
	if _, err := h.post(ctx, billing.Posting{OrgID: org, Kind: billing.KindRefund, Amount: -delta, Currency: cur,
		Reference: fmt.Sprintf("stripe:refund:%s:%d", o.ID, o.AmountRefunded), Description: "refund of " + o.ID}); err != nil {
		return "", err
	}
	if err := h.tx.SaveCharge(ctx, Charge{ChargeID: o.ID, OrgID: org, Refunded: total, Currency: cur}, h.s.now()); err != nil {
		return "", err
	}
	if err := h.audit(ctx, org, map[string]any{"charge": o.ID, "refunded": billing.FormatMicros(delta), "currency": cur}); err != nil {
		return "", err
	}
	return fmt.Sprintf("debited refund of %s %s from org %d", billing.FormatMicros(delta), cur, org), nil
}

// dispute debits a chargeback and flags the org.
func (h eventCtx) dispute(ctx context.Context, o disputeObject) (string, error) {
	org, ok, err := h.orgOfPayment(ctx, o.PaymentIntent.ID, "")
	if err == nil && !ok && o.Charge.ID != "" {
		var c Charge
		c, ok, err = h.tx.Charge(ctx, o.Charge.ID)
		org = c.OrgID
	}
	if err != nil || !ok {
		return "ignored: dispute of no org of ours", err
	}
	cur := strings.ToUpper(o.Currency)
	amount, err := FromMinor(o.Amount, cur)
	if err != nil {
		return "", err
	}
	if amount <= 0 {
		return "ignored: dispute of nothing", nil
	}
	if _, err := h.advance(ctx, o.ID, "disputed"); err != nil {
		return "", err
	}
	if _, err := h.post(ctx, billing.Posting{OrgID: org, Kind: billing.KindDispute, Amount: -amount, Currency: cur,
		Reference: "stripe:dispute:" + o.ID, Description: "dispute " + o.ID + " of " + o.Charge.ID}); err != nil {
		return "", err
	}
	if err := h.tx.RecordDispute(ctx, Dispute{DisputeID: o.ID, OrgID: org, ChargeID: o.Charge.ID, Amount: amount,
		Currency: cur, Reason: o.Reason}, h.s.now()); err != nil {
		return "", err
	}
	if err := h.audit(ctx, org, map[string]any{"dispute": o.ID, "amount": billing.FormatMicros(amount),
		"currency": cur, "reason": o.Reason, "flagged": true}); err != nil {
		return "", err
	}
	return fmt.Sprintf("debited dispute of %s %s from org %d and flagged it", billing.FormatMicros(amount), cur, org), nil
}

// parseID reads a positive decimal id.
func parseID(s string) (int64, bool) {
	id, err := strconv.ParseInt(s, 10, 64)
	return id, err == nil && id > 0
}
