package billing

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/tenantplane/tenantplane/internal/errcode"
)

// PreviewStore reads what the re-rating preview needs; it writes nothing.
type PreviewStore interface {
	PriceCatalog(ctx context.Context) (*PriceCatalog, error)
	// PreviewUsage returns the usage, all revisions summed, of every
	// namespace whose org's plan uses book, per namespace, resource,
	// class and hour in [from, to), by hour, namespace, resource, class.
	PreviewUsage(ctx context.Context, bookID int64, from, to time.Time) ([]ChargeUsage, error)
	// ChargedByBook returns, per org on book, the sum of its charge lines with
	// hours in [from, to).
	ChargedByBook(ctx context.Context, bookID int64, from, to time.Time) (map[int64]Micros, error)
	// MonthToDateBefore returns each key's rated usage with hours in its
	// month before t.
	MonthToDateBefore(ctx context.Context, keys []ChargeMonthKey, t time.Time) (map[ChargeMonthKey]int64, error)
}

// ChargePreviewOrg is one org's charges in the period: what was charged
// and what the draft would charge.
type ChargePreviewOrg struct {
	OrgID    int64
	Currency string
	Charged  Micros
	Draft    Micros
}

// ChargePreview is the outcome of rating a past period under a draft.
type ChargePreview struct {
	VersionID int64
	From, To  time.Time
	Orgs      []ChargePreviewOrg
	Charged   Micros
	Draft     Micros
}

// MaxPreviewPeriod bounds the period a preview rates.
const MaxPreviewPeriod = 31 * 24 * time.Hour

// PreviewRerating rates the usage of [from, to), whole hours, of every
// org on the draft's price book as if the draft had been in force from
// from, and compares it per org with what was charged. It writes nothing.
func (p *Pricing) PreviewRerating(ctx context.Context, versionID int64, from, to time.Time) (ChargePreview, error) {
	from, to = from.UTC(), to.UTC()
	switch {
	case !from.Equal(from.Truncate(time.Hour)) || !to.Equal(to.Truncate(time.Hour)):
		return ChargePreview{}, errcode.Invalid("from", "from and to must be whole hours (UTC)")
	case !to.After(from):
		return ChargePreview{}, errcode.Invalid("to", "must be after from")
	case to.Sub(from) > MaxPreviewPeriod:
		return ChargePreview{}, errcode.Invalid("to", "the period is at most 31 days")
	case to.After(p.now().UTC()):
		return ChargePreview{}, errcode.Invalid("to", "must not be in the future")
	}
	draft, err := p.store.PriceBookVersion(ctx, versionID)
	if err != nil {
		return ChargePreview{}, err
	}
	catalog, err := p.preview.PriceCatalog(ctx)
	if err != nil {
		return ChargePreview{}, fmt.Errorf("reading price books: %w", err)
	}
	book, ok := catalog.Book(draft.PriceBookID)
	if !ok {
		return ChargePreview{}, errcode.New(errcode.NotFound, "price book not found")
	}
	rows, err := p.preview.PreviewUsage(ctx, draft.PriceBookID, from, to)
	if err != nil {
		return ChargePreview{}, fmt.Errorf("reading usage: %w", err)
	}
	mtd := func(ctx context.Context, keys []ChargeMonthKey) (map[ChargeMonthKey]int64, error) {
		return p.preview.MonthToDateBefore(ctx, keys, from)
	}
	lines, err := RateUsage(ctx, rows, catalog.WithDraft(draft, from), mtd, p.now().UTC())
	if err != nil {
		return ChargePreview{}, err
	}
	charged, err := p.preview.ChargedByBook(ctx, draft.PriceBookID, from, to)
	if err != nil {
		return ChargePreview{}, fmt.Errorf("reading charges: %w", err)
	}
	byOrg := map[int64]*ChargePreviewOrg{}
	get := func(org int64) *ChargePreviewOrg {
		o := byOrg[org]
		if o == nil {
			o = &ChargePreviewOrg{OrgID: org, Currency: book.Currency}
			byOrg[org] = o
		}
		return o
	}
	for _, l := range lines {
		get(l.OrgID).Draft += l.Amount
	}
	for org, a := range charged {
		get(org).Charged += a
	}
	out := ChargePreview{VersionID: versionID, From: from, To: to}
	for _, o := range byOrg {
		out.Orgs = append(out.Orgs, *o)
		out.Charged += o.Charged
		out.Draft += o.Draft
	}
	sort.Slice(out.Orgs, func(i, j int) bool { return out.Orgs[i].OrgID < out.Orgs[j].OrgID })
	return out, nil
}
