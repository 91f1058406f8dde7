package billing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/tenantplane/tenantplane/collectors/usage"
)

// ChargeUsage is one usage rollup row to rate, with the org that owns its
// namespace and the price book of the org's plan when it is rated.
type ChargeUsage struct {
	usage.Hourly
	OrgID       int64
	PriceBookID int64
}

// ChargeLine is the money of one usage rollup row: revision 0 rates an
// hour's total, a higher revision a correction from late usage. Amount is
// positive when the org owes it.
type ChargeLine struct {
	ID          int64
	Key         string
	OrgID       int64
	NamespaceID int64
	Resource    string
	Class       string
	Hour        time.Time
	Revision    int
	// Quantity is in usage units (millicore-minutes, MiB-minutes, bytes).
	Quantity int64
	Amount   Micros
	Currency string
	// PriceBookVersionID is the version in force for the hour; 0 when
	// the book had none and the usage was free.
	PriceBookVersionID int64
	// PriceID is the price applied; 0 when the resource has none (free).
	PriceID int64
	// UnitPrice is per priced unit (core-hour, GiB-hour, GiB), of the
	// tier the line ended in; UnitDivisor usage units make a priced unit.
	UnitPrice   Micros
	UnitDivisor int64
	// TierStart is the org's usage of the resource and class in the month
	// before the line, which graduated tiers count from.
	TierStart int64
	// LedgerReference is the posting that moved the line's money; "" when
	// the org's lines of the run summed to zero and nothing was posted.
	LedgerReference string
	UsageSeq        int64
	RatedAt         time.Time
}

// ChargeLineKey returns the deterministic key of the line that rates one
// usage rollup row.
func ChargeLineKey(namespaceID int64, resource, class string, hour time.Time, revision int) string {
	b := make([]byte, 0, 64+len(class))
	b = append(b, "ns:"...)
	b = strconv.AppendInt(b, namespaceID, 10)
	b = append(b, ':')
	b = append(b, resource...)
	b = append(b, ':')
	b = append(b, class...)
	b = append(b, ':')
	b = hour.UTC().AppendFormat(b, "2006-01-02T15Z")
	b = append(b, ":r"...)
	b = strconv.AppendInt(b, int64(revision), 10)
	return string(b)
}

// ChargeMonthKey names an org's usage of one resource and class in one
// UTC month, which graduated tiers count.
type ChargeMonthKey struct {
	OrgID    int64
	Resource string
	Class    string
	Month    time.Time
}

// ChargeMonthToDate returns, for each key, the usage already rated for it
// (the sum of the quantities of its charge lines).
type ChargeMonthToDate func(ctx context.Context, keys []ChargeMonthKey) (map[ChargeMonthKey]int64, error)

func monthOf(t time.Time) time.Time {
	y, m, _ := t.UTC().Date()
	return time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
}

// RateUsage prices rows, in their order, under catalog. Graduated prices
// count from each org's usage in the month before the rows, which
// monthToDate gives (it is called once, and only when a graduated price
// applies), plus the rows before in the same call. Usage without a price
// book version or a price is free: its line has a zero amount.
func RateUsage(ctx context.Context, rows []ChargeUsage, catalog *PriceCatalog, monthToDate ChargeMonthToDate, ratedAt time.Time) ([]ChargeLine, error) {
	type priced struct {
		v *PriceBookVersion
		p *Price
	}
	prices := make([]priced, len(rows))
	var keys []ChargeMonthKey
	seen := map[ChargeMonthKey]bool{}
	for i := range rows {
		r := &rows[i]
		v, ok := catalog.VersionAt(r.PriceBookID, r.Hour)
		if !ok {
			continue
		}
		prices[i].v = v
		p, ok := v.PriceFor(r.Resource, r.Class)
		if !ok {
			continue
		}
		prices[i].p = p
		if p.Mode == PriceGraduated && len(p.Tiers) > 1 {
			k := ChargeMonthKey{OrgID: r.OrgID, Resource: r.Resource, Class: r.Class, Month: monthOf(r.Hour)}
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	running := map[ChargeMonthKey]int64{}
	if len(keys) > 0 {
		if monthToDate == nil {
			return nil, errors.New("rating usage: graduated prices need the month's usage so far")
		}
		got, err := monthToDate(ctx, keys)
		if err != nil {
			return nil, fmt.Errorf("reading usage of the month so far: %w", err)
		}
		for _, k := range keys {
			running[k] = got[k]
		}
	}
	lines := make([]ChargeLine, len(rows))
	for i := range rows {
		r := &rows[i]
		book, ok := catalog.Book(r.PriceBookID)
		if !ok {
			return nil, fmt.Errorf("rating usage of namespace %d: price book %d is unknown", r.NamespaceID, r.PriceBookID)
		}
		l := ChargeLine{
			Key:   ChargeLineKey(r.NamespaceID, r.Resource, r.Class, r.Hour, r.Revision),
			OrgID: r.OrgID, NamespaceID: r.NamespaceID, Resource: r.Resource, Class: r.Class,
			Hour: r.Hour.UTC(), Revision: r.Revision, Quantity: r.Quantity, Currency: book.Currency,
			UnitDivisor: PriceUnitDivisor(r.Resource), UsageSeq: r.Seq, RatedAt: ratedAt,
		}
		pr := prices[i]
		if pr.v != nil {
			l.PriceBookVersionID = pr.v.ID
		}
		if pr.p != nil {
			p := pr.p
			l.PriceID, l.UnitDivisor = p.ID, p.UnitDivisor
			if p.Mode == PriceGraduated && len(p.Tiers) > 1 {
				k := ChargeMonthKey{OrgID: r.OrgID, Resource: r.Resource, Class: r.Class, Month: monthOf(r.Hour)}
				l.TierStart = running[k]
				running[k] += r.Quantity
			}
			var err error
			if l.Amount, l.UnitPrice, err = p.Amount(l.TierStart, r.Quantity); err != nil {
				return nil, fmt.Errorf("rating %s: %w", l.Key, err)
			}
		}
		lines[i] = l
	}
	return lines, nil
}

// ChargeRateFunc prices the rows of one batch; the store calls it inside
// the transaction that writes the lines.
type ChargeRateFunc func(ctx context.Context, rows []ChargeUsage, monthToDate ChargeMonthToDate) ([]ChargeLine, error)

// ChargeBatch is what one batch of rating did.
type ChargeBatch struct {
	// Rows is how many usage rollup rows were read; 0 when none was left.
	Rows int
	// Lines is how many charge lines were new; Postings how many ledger
	// postings they made.
	Lines    int
	Postings int
	// Amount is the sum of the new lines.
	Amount Micros
	// LastSeq is the rating watermark after the batch.
	LastSeq int64
}

// ChargeStore is the storage of rating.
type ChargeStore interface {
	// PriceCatalog returns every price book with its published versions.
	PriceCatalog(ctx context.Context) (*PriceCatalog, error)
	// RateNext rates, in one transaction, up to limit usage rollup rows
	// after the rating watermark: it locks the watermark, reads the rows
	// with their orgs and price books, calls rate, writes the lines whose
	// keys are new, posts each org's new lines to the ledger as one
	// charge, and moves the watermark past the rows.
	RateNext(ctx context.Context, limit int, rate ChargeRateFunc) (ChargeBatch, error)
}

// RatingConfig is how rating runs.
type RatingConfig struct {
	// Schedule is the cron schedule of rating runs (five fields, UTC);
	// default "5 * * * *", five minutes past each hour.
	Schedule string
	// BatchSize is how many usage rollup rows one transaction rates;
	// default 20,000.
	BatchSize int
	// DefaultCurrency is the currency of new price books and of orgs
	// without a balance; default USD.
	DefaultCurrency string
}

func (c *RatingConfig) withDefaults() error {
	if c.Schedule == "" {
		c.Schedule = "5 * * * *"
	}
	if c.BatchSize == 0 {
		c.BatchSize = 20_000
	}
	if c.DefaultCurrency == "" {
		c.DefaultCurrency = "USD"
	}
	if c.BatchSize < 0 {
		return errors.New("batch size must be positive")
	}
	if !ValidCurrency(c.DefaultCurrency) {
		return fmt.Errorf("default currency %q is not a three-letter upper-case code", c.DefaultCurrency)
	}
	if _, err := cron.ParseStandard(c.Schedule); err != nil {
		return fmt.Errorf("schedule %q: %w", c.Schedule, err)
	}
	return nil
}

// Rater rates every closed hour of usage into charge lines and ledger
// charges. Run it on one replica (the billing leader); a second one at
// the same time waits for the first and charges nothing twice.
type Rater struct {
	store ChargeStore
	cfg   RatingConfig
	log   *slog.Logger
	now   func() time.Time
	mu    sync.Mutex // one run at a time in this process
}

// NewRater returns a Rater over store.
func NewRater(store ChargeStore, cfg RatingConfig, log *slog.Logger, now func() time.Time) (*Rater, error) {
	if store == nil || log == nil || now == nil {
		return nil, errors.New("rater: store, logger and clock are required")
	}
	if err := cfg.withDefaults(); err != nil {
		return nil, fmt.Errorf("rater: %w", err)
	}
	return &Rater{store: store, cfg: cfg, log: log, now: now}, nil
}

// Config returns the configuration with defaults filled in.
func (r *Rater) Config() RatingConfig { return r.cfg }

// RatingRun is what one rating run did.
type RatingRun struct {
	Batches  int
	Rows     int
	Lines    int
	Postings int
	Amount   Micros
	LastSeq  int64
}

// RateAll rates every usage rollup row after the watermark, batch by
// batch, until none is left. Hours are rated once their rollup exists,
// however long ago they closed.
func (r *Rater) RateAll(ctx context.Context) (RatingRun, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var run RatingRun
	catalog, err := r.store.PriceCatalog(ctx)
	if err != nil {
		return run, fmt.Errorf("reading price books: %w", err)
	}
	ratedAt := r.now().UTC()
	rate := func(ctx context.Context, rows []ChargeUsage, mtd ChargeMonthToDate) ([]ChargeLine, error) {
		return RateUsage(ctx, rows, catalog, mtd, ratedAt)
	}
	for {
		b, err := r.store.RateNext(ctx, r.cfg.BatchSize, rate)
		if err != nil {
			return run, fmt.Errorf("rating usage after seq %d: %w", run.LastSeq, err)
		}
		if b.Rows == 0 {
			return run, nil
		}
		run.Batches++
		run.Rows += b.Rows
		run.Lines += b.Lines
		run.Postings += b.Postings
		run.Amount += b.Amount
		run.LastSeq = b.LastSeq
	}
}
