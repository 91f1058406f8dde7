package stripepay

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/internal/errcode"
)

// The kinds of discrepancy.
const (
	kindMissingPayment = "missing_payment"
	kindAmountDiffers  = "amount_differs"
	kindOrgDiffers     = "org_differs"
	kindMissingEvent   = "missing_event"
)

// reconcileLimit bounds how many payments and events one run reads.
const reconcileLimit = 10_000

// Reconcile lists the PaymentIntents and events Stripe has from the
// reconcile window, compares them with the ledger and the events we
// processed, stores the discrepancies and sets the metric.
func (s *Service) Reconcile(ctx context.Context) (Reconciliation, error) {
	started := s.now()
	since := started.Add(-s.cfg.ReconcileWindow)
	payments, err := s.api.listPayments(ctx, since, reconcileLimit)
	if err != nil {
		return Reconciliation{}, err
	}
	events, err := s.api.listEvents(ctx, since, HandledTypes, reconcileLimit)
	if err != nil {
		return Reconciliation{}, err
	}
	return s.reconcile(ctx, started, since, payments, events)
}

func (s *Service) reconcile(ctx context.Context, started, since time.Time, payments []remotePayment, events []remoteEvent) (Reconciliation, error) {
	var refs []string
	for _, p := range payments {
		if ours(p) {
			refs = append(refs, "stripe:pi:"+p.ID)
		}
	}
	held, err := s.store.LedgerRefs(ctx, refs)
	if err != nil {
		return Reconciliation{}, err
	}
	var handled []remoteEvent
	var ids []string
	for _, e := range events {
		if metricType(e.Type) != "other" {
			handled = append(handled, e)
			ids = append(ids, e.ID)
		}
	}
	done, err := s.store.ProcessedEvents(ctx, ids)
	if err != nil {
		return Reconciliation{}, err
	}
	r := Reconciliation{StartedAt: started, Since: since, Payments: len(payments), Events: len(handled),
		Discrepancies: compare(payments, held, handled, done)}
	if r, err = s.store.SaveReconciliation(ctx, r); err != nil {
		return Reconciliation{}, err
	}
	counts := map[string]int{}
	for _, d := range r.Discrepancies {
		counts[d.Kind]++
	}
	for _, k := range discrepancyKinds {
		s.metrics.discrepancies.WithLabelValues(k).Set(float64(counts[k]))
	}
	s.metrics.lastReconcile.Set(float64(s.now().Unix()))
	if len(r.Discrepancies) > 0 {
		s.log.Warn("stripe reconciliation found discrepancies", "count", len(r.Discrepancies))
	}
	return r, nil
}

// ours reports whether a PaymentIntent is a top-up of ours that Stripe
// says succeeded.
func ours(p remotePayment) bool {
	return p.Status == "succeeded" && p.Metadata[metaPurpose] == purposeTopUp && p.Metadata[metaOrg] != ""
}

// compare returns what the ledger lacks or holds differently: each
// succeeded top-up must be credited under its PaymentIntent's reference to
// the org and for the amount Stripe received, and each event of a handled
// type must have been processed.
func compare(payments []remotePayment, held map[string]LedgerRef, events []remoteEvent, processed map[string]bool) []Discrepancy {
	var out []Discrepancy
	for _, p := range payments {
		if !ours(p) {
			continue
		}
		org, _ := strconv.ParseInt(p.Metadata[metaOrg], 10, 64)
		cur := strings.ToUpper(p.Currency)
		want, err := FromMinor(p.Amount, cur)
		if err != nil {
			out = append(out, Discrepancy{Kind: kindAmountDiffers, ObjectID: p.ID, OrgID: org, Detail: err.Error()})
			continue
		}
		got, ok := held["stripe:pi:"+p.ID]
		switch {
		case !ok:
			out = append(out, Discrepancy{Kind: kindMissingPayment, ObjectID: p.ID, OrgID: org,
				Detail: fmt.Sprintf("stripe received %s %s; the ledger has no credit", billing.FormatMicros(want), cur)})
		case got.OrgID != org:
			out = append(out, Discrepancy{Kind: kindOrgDiffers, ObjectID: p.ID, OrgID: org,
				Detail: fmt.Sprintf("stripe says org %d; the ledger credited org %d", org, got.OrgID)})
		case got.Amount != want || got.Currency != cur:
			out = append(out, Discrepancy{Kind: kindAmountDiffers, ObjectID: p.ID, OrgID: org,
				Detail: fmt.Sprintf("stripe received %s %s; the ledger credited %s %s",
					billing.FormatMicros(want), cur, billing.FormatMicros(got.Amount), got.Currency)})
		}
	}
	for _, e := range events {
		if !processed[e.ID] {
			out = append(out, Discrepancy{Kind: kindMissingEvent, ObjectID: e.ID,
				Detail: fmt.Sprintf("%s of %s not processed", e.Type, e.Created.Format(time.RFC3339))})
		}
	}
	return out
}

// LastReconciliation returns the newest reconciliation; NOT_FOUND before
// the first.
func (s *Service) LastReconciliation(ctx context.Context) (Reconciliation, error) {
	r, err := s.store.LastReconciliation(ctx)
	if errcode.Of(err) == errcode.NotFound {
		return Reconciliation{}, errcode.New(errcode.NotFound, "no reconciliation has run yet")
	}
	return r, err
}
