package billing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Invoicer issues the monthly invoices: on its schedule it invoices every
// period whose issue day has come, however many passed while it was not
// running, and tells the InvoiceFinalized hook of each postpaid bill.
type Invoicer struct {
	store InvoiceStore
	cfg   InvoiceConfig
	hook  InvoiceFinalized
	log   *slog.Logger
	now   func() time.Time
}

// NewInvoicer returns an Invoicer; hook may be nil.
func NewInvoicer(store InvoiceStore, cfg InvoiceConfig, hook InvoiceFinalized, log *slog.Logger, now func() time.Time) (*Invoicer, error) {
	if store == nil || now == nil {
		return nil, errors.New("invoicer: store and clock are required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Invoicer{store: store, cfg: cfg, hook: hook, log: log, now: func() time.Time { return now().UTC() }}, nil
}

// Config returns the configuration the Invoicer runs with.
func (iv *Invoicer) Config() InvoiceConfig { return iv.cfg }

// RunResult is what one pass did.
type RunResult struct {
	// Periods is how many periods were completed.
	Periods int
	// Finalized is how many invoices were finalised.
	Finalized int
}

// Run invoices every due period after the last one completed (or, the
// first time, from the period of the earliest charge). A period is marked
// complete only when every org's invoice for it was finalised; an org
// that fails is logged and retried by the next pass.
func (iv *Invoicer) Run(ctx context.Context) (RunResult, error) {
	var res RunResult
	now := iv.now()
	last := iv.cfg.LastIssued(now)
	through, ok, err := iv.store.InvoicedThrough(ctx)
	if err != nil {
		return res, err
	}
	var p InvoicePeriod
	if ok {
		p = iv.cfg.PeriodOf(through)
	} else {
		first, found, err := iv.store.FirstChargeAt(ctx)
		if err != nil {
			return res, err
		}
		if !found {
			return res, nil
		}
		p = iv.cfg.PeriodOf(first)
	}
	for ; !p.Start.After(last.Start); p = p.Next() {
		n, err := iv.InvoicePeriod(ctx, p)
		res.Finalized += n
		if err != nil {
			return res, err
		}
		if err := iv.store.SetInvoicedThrough(ctx, p.End); err != nil {
			return res, err
		}
		res.Periods++
	}
	return res, nil
}

// InvoicePeriod generates and finalises the invoice of every org with
// charges in p that does not have one yet, and returns how many it
// finalised. It goes on past an org that fails and returns the first
// error at the end.
func (iv *Invoicer) InvoicePeriod(ctx context.Context, p InvoicePeriod) (int, error) {
	orgs, err := iv.store.OrgsToInvoice(ctx, p)
	if err != nil {
		return 0, fmt.Errorf("listing orgs to invoice for %s: %w", p.Start.Format(time.DateOnly), err)
	}
	n := 0
	var first error
	for _, org := range orgs {
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
		if _, err := iv.Issue(ctx, org, p); err != nil {
			iv.log.Error("invoicing org", "org", org, "period", p.Start, "err", err)
			if first == nil {
				first = fmt.Errorf("invoicing org %d for %s: %w", org, p.Start.Format(time.DateOnly), err)
			}
			continue
		}
		n++
	}
	return n, first
}

// Issue generates org's invoice for p, finalises it, and tells the hook
// when it is a postpaid bill. An invoice already past draft is returned
// as it is and the hook is not told again.
func (iv *Invoicer) Issue(ctx context.Context, orgID int64, p InvoicePeriod) (Invoice, error) {
	inv, err := iv.store.GenerateInvoice(ctx, orgID, p, iv.cfg.TaxRateBPS)
	if err != nil {
		return Invoice{}, err
	}
	if inv.Status != InvoiceStatusDraft {
		return inv, nil
	}
	if inv, err = iv.store.FinalizeInvoice(ctx, inv.ID); err != nil {
		return Invoice{}, err
	}
	iv.log.Info("invoice finalized", "invoice", inv.ID, "number", inv.DisplayNumber(), "org", orgID,
		"total", FormatMicros(inv.Total), "currency", inv.Currency, "mode", string(inv.BillingMode))
	if inv.BillingMode == Postpaid && iv.hook != nil {
		if err := iv.hook.InvoiceFinalized(ctx, inv); err != nil {
			iv.log.Error("invoice finalized hook", "invoice", inv.ID, "err", err)
		}
	}
	return inv, nil
}
