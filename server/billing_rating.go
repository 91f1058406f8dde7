package server

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/robfig/cron/v3"
	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/billing/billingstore"
	"github.com/tenantplane/tenantplane/internal/leader"
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
	fs.StringVar(&c.DefaultCurrency, "billing-default-currency", c.DefaultCurrency, "currency of new price books")
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
}

func newRating(cfg Config, a *app) (*ratingParts, error) {
	store := billingstore.New(a.pool, clock)
	rater, err := billing.NewRater(store, cfg.BillingRating.rating(), a.log.With("component", "rating"), clock)
	if err != nil {
		return nil, err
	}
	pricing, err := billing.NewPricing(store, store, store, cfg.BillingRating.rating(), clock)
	if err != nil {
		return nil, err
	}
	return &ratingParts{rater: rater, pricing: pricing}, nil
}

// run takes part in the election of the rating leader, which rates at
// once and then on the schedule while it leads.
func (p *ratingParts) run(kube kubernetes.Interface, cfg Config, log *slog.Logger) func(context.Context) error {
	return func(ctx context.Context) error {
		err := leader.Run(ctx, kube, leader.Config{Namespace: cfg.Isolation.LeaseNamespace, Name: "tenantplane-billing-rating"},
			log.With("component", "rating"), p.rater.Run)
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("rating: %w", err)
		}
		return nil
	}
}
