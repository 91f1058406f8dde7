package billing

import (
	"context"
	"fmt"
	"time"

	"github.com/tenantplane/tenantplane/internal/errcode"
)

// InvoiceStatus is where an invoice is in its life.
type InvoiceStatus string

// The states of an invoice: draft → finalized → paid | void; a draft may
// also be voided.
const (
	// InvoiceStatusDraft is being put together; its lines may still change.
	InvoiceStatusDraft InvoiceStatus = "draft"
	// InvoiceStatusFinalized is issued: numbered, its lines and totals frozen.
	InvoiceStatusFinalized InvoiceStatus = "finalized"
	// InvoiceStatusPaid is settled: a postpaid bill paid, or a prepaid
	// statement whose charges the balance paid as they were rated.
	InvoiceStatusPaid InvoiceStatus = "paid"
	// InvoiceStatusVoid is cancelled; it stays for the record.
	InvoiceStatusVoid InvoiceStatus = "void"
)

// BillingMode says how an org pays: from a prepaid balance, or by paying
// a monthly bill (plans.billing_mode).
type BillingMode string

// The billing modes of a plan.
const (
	Prepaid  BillingMode = "prepaid"
	Postpaid BillingMode = "postpaid"
)

// invoiceTransitions lists, for each state, the states it may move to.
var invoiceTransitions = map[InvoiceStatus][]InvoiceStatus{
	InvoiceStatusDraft:     {InvoiceStatusFinalized, InvoiceStatusVoid},
	InvoiceStatusFinalized: {InvoiceStatusPaid, InvoiceStatusVoid},
}

// CanTransition reports whether an invoice in state from may move to to.
func (from InvoiceStatus) CanTransition(to InvoiceStatus) bool {
	for _, s := range invoiceTransitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// CheckInvoiceTransition returns a CONFLICT error unless from may move to
// to; the store enforces the same rule with the state in its WHERE clause.
func CheckInvoiceTransition(from, to InvoiceStatus) error {
	if !from.CanTransition(to) {
		return errcode.New(errcode.Conflict, fmt.Sprintf("an invoice cannot go from %s to %s", from, to))
	}
	return nil
}

// Invoice is one org's bill or statement for one period.
type Invoice struct {
	ID          int64
	OrgID       int64
	PeriodStart time.Time
	PeriodEnd   time.Time
	BillingMode BillingMode
	Status      InvoiceStatus
	Currency    string
	// Subtotal is the sum of the lines' amounts.
	Subtotal Micros
	// TaxRateBPS is the tax rate in basis points (1/100 of a percent).
	TaxRateBPS int64
	// Tax is Subtotal × TaxRateBPS ÷ 10,000, rounded half to even once.
	Tax Micros
	// Total is Subtotal + Tax.
	Total Micros
	// Number is sequential across the platform, set at finalisation; 0
	// for a draft.
	Number      int64
	CreatedAt   time.Time
	UpdatedAt   time.Time
	FinalizedAt *time.Time
	PaidAt      *time.Time
	VoidedAt    *time.Time
	VoidReason  string
	Lines       []InvoiceLine
}

// DisplayNumber is the invoice number as printed, such as "INV-000042";
// empty for a draft.
func (inv Invoice) DisplayNumber() string {
	if inv.Number == 0 {
		return ""
	}
	return fmt.Sprintf("INV-%06d", inv.Number)
}

// InvoiceLine is what one namespace used of one resource in the period,
// summed over its charge lines.
type InvoiceLine struct {
	NamespaceID int64
	Namespace   string
	Resource    string
	// Quantity is in the resource's usage units.
	Quantity int64
	Amount   Micros
}

// InvoiceTotals computes the subtotal (the sum of the lines), the tax on
// it at rateBPS rounded half to even once, and the total.
func InvoiceTotals(lines []InvoiceLine, rateBPS int64) (subtotal, tax, total Micros, err error) {
	for _, l := range lines {
		s := subtotal + l.Amount
		if (l.Amount > 0 && s < subtotal) || (l.Amount < 0 && s > subtotal) {
			return 0, 0, 0, errcode.New(errcode.BadUserInput, "invoice subtotal out of range")
		}
		subtotal = s
	}
	tax, err = MulDivRound(subtotal, rateBPS, 10_000)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("computing tax: %w", err)
	}
	total = subtotal + tax
	if (tax > 0 && total < subtotal) || (tax < 0 && total > subtotal) {
		return 0, 0, 0, errcode.New(errcode.BadUserInput, "invoice total out of range")
	}
	return subtotal, tax, total, nil
}

// InvoicePeriod is the range [Start, End) that one invoice covers.
type InvoicePeriod struct {
	Start, End time.Time
}

// InvoiceConfig says which periods invoices cover, when they are issued,
// and the tax they carry.
type InvoiceConfig struct {
	// AnchorDay is the day of the month, 1 to 28, on which each period
	// starts at 00:00 UTC; 1 (the default) makes periods calendar months.
	AnchorDay int
	// IssueDay is the day of the month, after AnchorDay, on which the
	// period that ended on AnchorDay is invoiced and finalised; it leaves
	// late usage and its rating time to arrive. Default 3.
	IssueDay int
	// TaxRateBPS is the tax rate in basis points, 0 to 10,000.
	TaxRateBPS int64
}

// DefaultInvoiceConfig is calendar months, issued on the 3rd, no tax.
func DefaultInvoiceConfig() InvoiceConfig { return InvoiceConfig{AnchorDay: 1, IssueDay: 3} }

// Validate checks the configuration.
func (c InvoiceConfig) Validate() error {
	switch {
	case c.AnchorDay < 1 || c.AnchorDay > 28:
		return fmt.Errorf("invoice config: anchor day %d is not between 1 and 28", c.AnchorDay)
	case c.IssueDay <= c.AnchorDay || c.IssueDay > 28:
		return fmt.Errorf("invoice config: issue day %d is not after the anchor day %d and at most 28", c.IssueDay, c.AnchorDay)
	case c.TaxRateBPS < 0 || c.TaxRateBPS > 10_000:
		return fmt.Errorf("invoice config: tax rate %d bps is not between 0 and 10000", c.TaxRateBPS)
	}
	return nil
}

// PeriodOf returns the period that contains t.
func (c InvoiceConfig) PeriodOf(t time.Time) InvoicePeriod {
	t = t.UTC()
	start := time.Date(t.Year(), t.Month(), c.AnchorDay, 0, 0, 0, 0, time.UTC)
	if start.After(t) {
		start = start.AddDate(0, -1, 0)
	}
	return InvoicePeriod{Start: start, End: start.AddDate(0, 1, 0)}
}

// Previous returns the period before p.
func (p InvoicePeriod) Previous() InvoicePeriod {
	return InvoicePeriod{Start: p.Start.AddDate(0, -1, 0), End: p.Start}
}

// Next returns the period after p.
func (p InvoicePeriod) Next() InvoicePeriod {
	return InvoicePeriod{Start: p.End, End: p.End.AddDate(0, 1, 0)}
}

// IssueAt is when period p is invoiced: IssueDay of the month p ends in.
func (c InvoiceConfig) IssueAt(p InvoicePeriod) time.Time {
	return time.Date(p.End.Year(), p.End.Month(), c.IssueDay, 0, 0, 0, 0, time.UTC)
}

// LastIssued returns the latest period whose issue time is at or before
// now.
func (c InvoiceConfig) LastIssued(now time.Time) InvoicePeriod {
	p := c.PeriodOf(now).Previous()
	if c.IssueAt(p).After(now) {
		p = p.Previous()
	}
	return p
}

// InvoiceFinalized is told, after the transaction that finalised it has
// committed, of each invoice finalised for a postpaid org; the Stripe
// integration implements it to send the bill. An error is logged: the
// invoice stays finalised, and the implementation must find invoices it
// has not sent (InvoiceStore.InvoicesByStatus) on its own schedule.
type InvoiceFinalized interface {
	InvoiceFinalized(ctx context.Context, inv Invoice) error
}

// InvoiceStore keeps invoices; billingstore.Store is one.
type InvoiceStore interface {
	// GenerateInvoice creates the draft of org's invoice for p from its
	// charge lines, or recomputes it while it is a draft, and returns
	// it. It is idempotent per org and period: an invoice past draft is
	// returned as it is.
	GenerateInvoice(ctx context.Context, orgID int64, p InvoicePeriod, taxRateBPS int64) (Invoice, error)
	// FinalizeInvoice numbers a draft and freezes it; a prepaid
	// statement is paid at once, since its charges were paid as rated.
	FinalizeInvoice(ctx context.Context, id int64) (Invoice, error)
	// OrgsToInvoice lists the orgs with charge lines in p that have no
	// invoice past draft for it.
	OrgsToInvoice(ctx context.Context, p InvoicePeriod) ([]int64, error)
	// FirstChargeAt is the time of the earliest charge in the ledger, and
	// false when there is none.
	FirstChargeAt(ctx context.Context) (time.Time, bool, error)
	// InvoicedThrough is the end of the latest period the invoice pass
	// completed, and false before the first.
	InvoicedThrough(ctx context.Context) (time.Time, bool, error)
	// SetInvoicedThrough records that every invoice of periods ending at
	// or before end is finalised.
	SetInvoicedThrough(ctx context.Context, end time.Time) error
}

// InvoiceSums are an issued invoice's stored totals beside the sums they
// must equal: of its own lines, and of the charge lines of its org and
// period as they are now (a charge rated after the invoice was finalised
// shows as a difference).
type InvoiceSums struct {
	InvoiceID, OrgID, Number int64
	Subtotal, Tax, Total     Micros
	TaxRateBPS               int64
	LineSum                  Micros
	ChargeSum                Micros
}

// Problems lists what is wrong with s, nothing when it is right.
func (s InvoiceSums) Problems() []string {
	var out []string
	if s.LineSum != s.Subtotal {
		out = append(out, fmt.Sprintf("subtotal %s differs from the sum of its lines %s", FormatMicros(s.Subtotal), FormatMicros(s.LineSum)))
	}
	if s.ChargeSum != s.Subtotal {
		out = append(out, fmt.Sprintf("subtotal %s differs from the sum of the period's charge lines %s", FormatMicros(s.Subtotal), FormatMicros(s.ChargeSum)))
	}
	tax, err := MulDivRound(s.Subtotal, s.TaxRateBPS, 10_000)
	if err != nil || tax != s.Tax {
		out = append(out, fmt.Sprintf("tax %s is not %d bps of the subtotal (%s)", FormatMicros(s.Tax), s.TaxRateBPS, FormatMicros(tax)))
	}
	if s.Subtotal+s.Tax != s.Total {
		out = append(out, fmt.Sprintf("total %s is not subtotal plus tax", FormatMicros(s.Total)))
	}
	return out
}
