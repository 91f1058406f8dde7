package server

import (
	"context"
	"log/slog"

	"github.com/robfig/cron/v3"
	"github.com/spf13/pflag"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/billing/billingstore"
)

// BillingRatingConfig is how usage is rated into charges.
type BillingRatingConfig struct {
	// Schedule is the cron schedule (UTC) of rating runs.
	Schedule string
	// BatchSize is how many usage rollup rows one transaction rates.
	BatchSize int
	// DefaultCurrency is the currency of new price books.
	DefaultCurrency string
}

func defaultBillingRatingConfig() BillingRatingConfig {
	return BillingRatingConfig{Schedule: "5 * * * *", BatchSize: 20_000, DefaultCurrency: "USD"}
}

func (c *BillingRatingConfig) bindFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Schedule, "billing-rating-schedule", c.Schedule, "cron schedule (UTC) of rating runs; each rates every closed hour not yet rated")
	fs.IntVar(&c.BatchSize, "billing-rating-batch", c.BatchSize, "usage rollup rows rated per transaction")
	fs.StringVar(&c.DefaultCurrency, "billing-default-currency", c.DefaultCurrency, "the platform's currency: of new price books, top-ups and orgs without a billing account yet")
}

func (c *BillingRatingConfig) validate() error {
	if _, err := cron.ParseStandard(c.Schedule); err != nil {
		return &configError{"--billing-rating-schedule", err.Error()}
	}
	if c.BatchSize <= 0 {
		return &configError{"--billing-rating-batch", "must be positive"}
	}
	if !billing.ValidCurrency(c.DefaultCurrency) {
		return &configError{"--billing-default-currency", "must be a three-letter upper-case code"}
	}
	return nil
}

func (c BillingRatingConfig) rating() billing.RatingConfig {
	return billing.RatingConfig{Schedule: c.Schedule, BatchSize: c.BatchSize, DefaultCurrency: c.DefaultCurrency}
}

// ratingParts is what rating contributes to the app.
type ratingParts struct {
	rater   *billing.Rater
	pricing *billing.Pricing
	log     *slog.Logger
}

// newRating builds the rater and the price book service over store. The
// debt lifecycle sees new charges at its next pass (every minute by
// default), not once per org after each batch: at 100,000 orgs that would
// be a second pass inside every rating run.
func newRating(cfg BillingRatingConfig, store *billingstore.Store, log *slog.Logger) (*ratingParts, error) {
	log = log.With("component", "rating")
	rater, err := billing.NewRater(store, cfg.rating(), log, clock)
	if err != nil {
		return nil, err
	}
	pricing, err := billing.NewPricing(store, store, store, cfg.rating(), clock)
	if err != nil {
		return nil, err
	}
	return &ratingParts{rater: rater, pricing: pricing, log: log}, nil
}

// jobs rates every closed hour not yet rated, on the schedule and as soon
// as a replica starts leading.
func (p *ratingParts) jobs() []billing.Job {
	return []billing.Job{{Name: "rating", Schedule: p.rater.Config().Schedule, AtStart: true, Run: p.rate}}
}

func (p *ratingParts) rate(ctx context.Context) error {
	run, err := p.rater.RateAll(ctx)
	if run.Rows > 0 {
		p.log.Info("usage rated", "rows", run.Rows, "lines", run.Lines, "postings", run.Postings,
			"amount", billing.FormatMicros(run.Amount), "seq", run.LastSeq)
	}
	return err
}
