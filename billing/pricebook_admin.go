package billing

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/tenancy"
)

// PriceBookStore keeps price books, their versions and prices, and plans.
// Every change writes an audit row in its transaction.
type PriceBookStore interface {
	PriceBooks(ctx context.Context) ([]PriceBook, error)
	PriceBook(ctx context.Context, id int64) (PriceBook, error)
	CreatePriceBook(ctx context.Context, b PriceBook, by tenancy.Actor) (PriceBook, error)
	// PriceBookVersions returns a book's versions, drafts too, with prices.
	PriceBookVersions(ctx context.Context, bookID int64) ([]PriceBookVersion, error)
	PriceBookVersion(ctx context.Context, id int64) (PriceBookVersion, error)
	// CreatePriceBookVersion makes a draft, with the prices of version
	// copyFrom of the same book when it is not 0.
	CreatePriceBookVersion(ctx context.Context, bookID int64, note string, copyFrom int64, by tenancy.Actor) (PriceBookVersion, error)
	// SetPrice adds or replaces the price of its resource and class in a
	// draft; CONFLICT when the version is published.
	SetPrice(ctx context.Context, p Price, by tenancy.Actor) (PriceBookVersion, error)
	// DeletePrice removes a price from a draft.
	DeletePrice(ctx context.Context, versionID int64, resource, class string, by tenancy.Actor) (PriceBookVersion, error)
	// PublishPriceBookVersion publishes a draft to take effect at
	// effectiveFrom; CONFLICT when it is published or another version of
	// the book takes effect then.
	PublishPriceBookVersion(ctx context.Context, id int64, effectiveFrom, now time.Time, by tenancy.Actor) (PriceBookVersion, error)
	Plans(ctx context.Context) ([]Plan, error)
	Plan(ctx context.Context, name string) (Plan, error)
	// SetPlan creates or updates a plan.
	SetPlan(ctx context.Context, p Plan, by tenancy.Actor) (Plan, error)
}

// ChargeSample is one minute of usage behind a charge line.
type ChargeSample struct {
	Minute   time.Time
	Source   string
	Key      string
	Quantity int64
}

// ChargeReader reads charge lines and what they came from.
type ChargeReader interface {
	// Charge returns one line; NOT_FOUND when it does not exist.
	Charge(ctx context.Context, id int64) (ChargeLine, error)
	// ChargeSamples returns the minute samples of the line's namespace,
	// resource, class and hour. Minute samples are kept for days only: an
	// older line has none left, and its rollup is its explanation.
	ChargeSamples(ctx context.Context, l ChargeLine) ([]ChargeSample, error)
	// OrgCharges returns up to limit lines of an org with hours in
	// [from, to), by id, after the line afterID.
	OrgCharges(ctx context.Context, orgID int64, from, to time.Time, afterID int64, limit int) ([]ChargeLine, error)
}

// Pricing is the admin side of prices and plans, and what orgs read of
// their charges. Authorization is the caller's.
type Pricing struct {
	store   PriceBookStore
	charges ChargeReader
	preview PreviewStore
	cfg     RatingConfig
	now     func() time.Time
}

// NewPricing returns the pricing service.
func NewPricing(store PriceBookStore, charges ChargeReader, preview PreviewStore, cfg RatingConfig, now func() time.Time) (*Pricing, error) {
	if store == nil || charges == nil || preview == nil || now == nil {
		return nil, errors.New("pricing: stores and clock are required")
	}
	if err := cfg.withDefaults(); err != nil {
		return nil, fmt.Errorf("pricing: %w", err)
	}
	return &Pricing{store: store, charges: charges, preview: preview, cfg: cfg, now: now}, nil
}

// PriceBooks lists the books.
func (p *Pricing) PriceBooks(ctx context.Context) ([]PriceBook, error) {
	return p.store.PriceBooks(ctx)
}

// PriceBook returns a book.
func (p *Pricing) PriceBook(ctx context.Context, id int64) (PriceBook, error) {
	return p.store.PriceBook(ctx, id)
}

// CreatePriceBook makes a book, in the default currency when none is given.
func (p *Pricing) CreatePriceBook(ctx context.Context, name, currency string, by tenancy.Actor) (PriceBook, error) {
	if currency == "" {
		currency = p.cfg.DefaultCurrency
	}
	b := PriceBook{Name: strings.TrimSpace(name), Currency: currency}
	if err := b.Validate(); err != nil {
		return PriceBook{}, err
	}
	return p.store.CreatePriceBook(ctx, b, by)
}

// Versions lists a book's versions.
func (p *Pricing) Versions(ctx context.Context, bookID int64) ([]PriceBookVersion, error) {
	return p.store.PriceBookVersions(ctx, bookID)
}

// Version returns one version with its prices.
func (p *Pricing) Version(ctx context.Context, id int64) (PriceBookVersion, error) {
	return p.store.PriceBookVersion(ctx, id)
}

// CreateDraft makes a draft version of a book, copying version copyFrom
// (0: empty).
func (p *Pricing) CreateDraft(ctx context.Context, bookID int64, note string, copyFrom int64, by tenancy.Actor) (PriceBookVersion, error) {
	if len(note) > 500 {
		return PriceBookVersion{}, errcode.Invalid("note", "must be at most 500 characters")
	}
	return p.store.CreatePriceBookVersion(ctx, bookID, note, copyFrom, by)
}

// SetPrice sets a price in a draft. A unit divisor of 0 takes the
// resource's (PriceUnitDivisor).
func (p *Pricing) SetPrice(ctx context.Context, pr Price, by tenancy.Actor) (PriceBookVersion, error) {
	if pr.UnitDivisor == 0 {
		pr.UnitDivisor = PriceUnitDivisor(pr.Resource)
	}
	if err := pr.Validate(); err != nil {
		return PriceBookVersion{}, err
	}
	return p.store.SetPrice(ctx, pr, by)
}

// DeletePrice removes a price from a draft.
func (p *Pricing) DeletePrice(ctx context.Context, versionID int64, resource, class string, by tenancy.Actor) (PriceBookVersion, error) {
	return p.store.DeletePrice(ctx, versionID, resource, class, by)
}

// Publish publishes a draft to take effect at effectiveFrom, a whole hour
// after now: rated hours keep the version they were rated with.
func (p *Pricing) Publish(ctx context.Context, versionID int64, effectiveFrom time.Time, by tenancy.Actor) (PriceBookVersion, error) {
	now := p.now().UTC()
	effectiveFrom = effectiveFrom.UTC()
	switch {
	case !effectiveFrom.Equal(effectiveFrom.Truncate(time.Hour)):
		return PriceBookVersion{}, errcode.Invalid("effectiveFrom", "must be a whole hour (UTC)")
	case !effectiveFrom.After(now):
		return PriceBookVersion{}, errcode.Invalid("effectiveFrom", "must be in the future: charged hours keep their prices")
	}
	return p.store.PublishPriceBookVersion(ctx, versionID, effectiveFrom, now, by)
}

// Plans lists the plans.
func (p *Pricing) Plans(ctx context.Context) ([]Plan, error) { return p.store.Plans(ctx) }

// SetPlan creates or updates a plan.
func (p *Pricing) SetPlan(ctx context.Context, pl Plan, by tenancy.Actor) (Plan, error) {
	if err := pl.Validate(); err != nil {
		return Plan{}, err
	}
	return p.store.SetPlan(ctx, pl, by)
}

// Charge returns one charge line of an org; NOT_FOUND when the line is
// another org's, exactly as when it does not exist.
func (p *Pricing) Charge(ctx context.Context, orgID, id int64) (ChargeLine, error) {
	l, err := p.charges.Charge(ctx, id)
	if err != nil {
		return ChargeLine{}, err
	}
	if l.OrgID != orgID {
		return ChargeLine{}, errcode.New(errcode.NotFound, "charge not found")
	}
	return l, nil
}

// ChargeSamples returns the minute samples behind a line.
func (p *Pricing) ChargeSamples(ctx context.Context, l ChargeLine) ([]ChargeSample, error) {
	return p.charges.ChargeSamples(ctx, l)
}

// MaxChargePage bounds a page of charge lines.
const MaxChargePage = 500

// OrgCharges returns a page of up to limit of an org's charge lines with
// hours in [from, to), by id after afterID, and whether more follow.
func (p *Pricing) OrgCharges(ctx context.Context, orgID int64, from, to time.Time, afterID int64, limit int) ([]ChargeLine, bool, error) {
	if !to.After(from) {
		return nil, false, errcode.Invalid("to", "must be after from")
	}
	if limit <= 0 || limit > MaxChargePage {
		return nil, false, errcode.Invalid("first", fmt.Sprintf("must be 1 to %d", MaxChargePage))
	}
	ls, err := p.charges.OrgCharges(ctx, orgID, from.UTC(), to.UTC(), afterID, limit+1)
	if err != nil {
		return nil, false, err
	}
	if len(ls) > limit {
		return ls[:limit], true, nil
	}
	return ls, false, nil
}
