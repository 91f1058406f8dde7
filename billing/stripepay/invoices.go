package stripepay

import (
	"context"
	"fmt"

	"github.com/tenantplane/tenantplane/internal/errcode"
)

// invoiceDaysUntilDue is how long a pushed invoice gives the payer.
const invoiceDaysUntilDue = 14

// PushInvoice sends a finalized postpaid invoice to Stripe: an invoice,
// one invoice item per line and the finalization, each with an
// idempotency key derived from our invoice and line ids, so a retry never
// bills twice; then stores the Stripe id and the hosted URL. An invoice
// pushed before is left alone.
func (s *Service) PushInvoice(ctx context.Context, inv Invoice) (StripeInvoice, error) {
	if prior, err := s.store.StripeInvoice(ctx, inv.ID); err == nil {
		return prior, nil
	} else if errcode.Of(err) != errcode.NotFound {
		return StripeInvoice{}, err
	}
	if inv.ID <= 0 || inv.OrgID <= 0 {
		return StripeInvoice{}, errcode.Invalid("invoice", "needs an id and an org")
	}
	if _, err := ToMinor(inv.Total, inv.Currency); err != nil {
		return StripeInvoice{}, fmt.Errorf("invoice %d total: %w", inv.ID, err)
	}
	cust, err := s.Customer(ctx, inv.OrgID)
	if err != nil {
		return StripeInvoice{}, err
	}
	si, err := s.api.pushInvoice(ctx, cust.CustomerID, inv, invoiceDaysUntilDue)
	if err != nil {
		return StripeInvoice{}, err
	}
	out := StripeInvoice{InvoiceID: inv.ID, OrgID: inv.OrgID, StripeInvoiceID: si.ID, HostedURL: si.HostedInvoiceURL,
		Status: "open", Amount: inv.Total, Currency: inv.Currency}
	if err := s.store.SaveStripeInvoice(ctx, out, s.now()); err != nil {
		return StripeInvoice{}, err
	}
	return out, nil
}

// StripeInvoice returns what Stripe has of our invoice; NOT_FOUND if it
// was not pushed.
func (s *Service) StripeInvoice(ctx context.Context, invoiceID int64) (StripeInvoice, error) {
	return s.store.StripeInvoice(ctx, invoiceID)
}
