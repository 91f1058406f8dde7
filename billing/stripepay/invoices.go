package stripepay

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/internal/errcode"
)

// invoiceDaysUntilDue is how long a pushed invoice gives the payer.
const invoiceDaysUntilDue = 14

var _ billing.InvoiceFinalized = (*Service)(nil)

// InvoiceFinalized implements billing.InvoiceFinalized: a finalized
// postpaid invoice is pushed to Stripe at once. An invoice that fails to
// push is pushed by PushPendingInvoices later.
func (s *Service) InvoiceFinalized(ctx context.Context, inv billing.Invoice) error {
	if inv.BillingMode != billing.Postpaid || inv.Status != billing.InvoiceStatusFinalized {
		return nil
	}
	_, err := s.PushInvoice(ctx, inv)
	return err
}

// invoiceItems turns an invoice into Stripe invoice items in the
// currency's smallest unit: one per line, the tax, and, since Stripe bills
// whole smallest units, a rounding item that makes the items sum to the
// total rounded half to even. Each has a key derived from the line.
func invoiceItems(inv billing.Invoice) (items []invoiceItem, total int64, err error) {
	per := microsPerMinor(inv.Currency)
	if total, err = billing.RoundDiv(inv.Total, per); err != nil {
		return nil, 0, err
	}
	sum := int64(0)
	add := func(key, desc string, m billing.Micros) error {
		minor, err := billing.RoundDiv(m, per)
		if err != nil {
			return err
		}
		if minor != 0 {
			items = append(items, invoiceItem{key: key, description: desc, minor: minor})
			sum += minor
		}
		return nil
	}
	for i, l := range inv.Lines {
		desc := fmt.Sprintf("%s: %s, %d units", l.Namespace, l.Resource, l.Quantity)
		if err := add("line-"+strconv.Itoa(i), desc, l.Amount); err != nil {
			return nil, 0, err
		}
	}
	if inv.Tax != 0 {
		if err := add("tax", fmt.Sprintf("Tax (%s%%)", strconv.FormatFloat(float64(inv.TaxRateBPS)/100, 'f', -1, 64)), inv.Tax); err != nil {
			return nil, 0, err
		}
	}
	if d := total - sum; d != 0 {
		items = append(items, invoiceItem{key: "rounding", description: "Rounding to whole " + inv.Currency + " units", minor: d})
	}
	return items, total, nil
}

// PushInvoice sends a finalized postpaid invoice to Stripe: an invoice,
// its items and the finalization, each with an idempotency key derived
// from our invoice and line, so a retry never bills twice; then stores the
// Stripe id and hosted URL. An invoice pushed before is returned as
// stored; one with nothing to pay is not pushed (NOT_FOUND).
func (s *Service) PushInvoice(ctx context.Context, inv billing.Invoice) (StripeInvoice, error) {
	if prior, err := s.store.StripeInvoice(ctx, inv.ID); err == nil {
		return prior, nil
	} else if errcode.Of(err) != errcode.NotFound {
		return StripeInvoice{}, err
	}
	if inv.ID <= 0 || inv.OrgID <= 0 || inv.Status != billing.InvoiceStatusFinalized {
		return StripeInvoice{}, errcode.Invalid("invoice", "must be a finalized invoice of an org")
	}
	items, total, err := invoiceItems(inv)
	if err != nil {
		return StripeInvoice{}, fmt.Errorf("invoice %d: %w", inv.ID, err)
	}
	if total <= 0 {
		return StripeInvoice{}, errcode.New(errcode.NotFound, "the invoice has nothing to pay")
	}
	cust, err := s.Customer(ctx, inv.OrgID)
	if err != nil {
		return StripeInvoice{}, err
	}
	si, err := s.api.pushInvoice(ctx, cust.CustomerID, inv, items, invoiceDaysUntilDue)
	if err != nil {
		return StripeInvoice{}, err
	}
	amount, err := FromMinor(total, inv.Currency)
	if err != nil {
		return StripeInvoice{}, err
	}
	out := StripeInvoice{InvoiceID: inv.ID, OrgID: inv.OrgID, StripeInvoiceID: si.ID, HostedURL: si.HostedInvoiceURL,
		Status: "open", Amount: amount, Currency: inv.Currency}
	if err := s.store.SaveStripeInvoice(ctx, out, s.now()); err != nil {
		return StripeInvoice{}, err
	}
	return out, nil
}

// PushPendingInvoices pushes the finalized postpaid invoices that have
// not reached Stripe yet, such as those whose push failed.
func (s *Service) PushPendingInvoices(ctx context.Context) (int, error) {
	invs, err := s.store.UnpushedInvoices(ctx, 100)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, inv := range invs {
		if _, err := s.PushInvoice(ctx, inv); err != nil {
			if errcode.Of(err) != errcode.NotFound {
				errs = append(errs, err)
			}
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// StripeInvoice returns what Stripe has of our invoice; NOT_FOUND if it
// was not pushed.
func (s *Service) StripeInvoice(ctx context.Context, invoiceID int64) (StripeInvoice, error) {
	return s.store.StripeInvoice(ctx, invoiceID)
}
