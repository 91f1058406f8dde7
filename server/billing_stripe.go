package server

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/billing/billingstore"
	"github.com/tenantplane/tenantplane/billing/stripepay"
)

// StripeConfig is how payments reach Stripe. Payments are off while the
// API key is empty.
type StripeConfig struct {
	// APIKey is the secret key, sk_live_… or sk_test_….
	APIKey string
	// APIURL is the API base URL; empty for Stripe itself (stripe-mock in
	// dev).
	APIURL string
	// WebhookSecrets are the webhook endpoint's signing secrets; several
	// while one is rolled.
	WebhookSecrets []string
	// WebhookTolerance is how old a webhook signature may be.
	WebhookTolerance time.Duration
	// SuccessURL and CancelURL are where Checkout returns the payer.
	SuccessURL string
	CancelURL  string
	// MinTopUp and MaxTopUp bound a top-up, in currency units.
	MinTopUp string
	MaxTopUp string
	// Currency is the currency of an org without a balance yet: the
	// platform's, from --billing-default-currency.
	Currency string
	// ReconcileSchedule and AutoTopUpSchedule are cron schedules (UTC).
	ReconcileSchedule string
	AutoTopUpSchedule string
	// ReconcileWindow is how far back reconciliation looks.
	ReconcileWindow time.Duration
	// AutoTopUpRetry is the pause after a failed automatic top-up.
	AutoTopUpRetry time.Duration
}

func defaultStripeConfig() StripeConfig {
	return StripeConfig{
		WebhookTolerance: 5 * time.Minute, MinTopUp: "5", MaxTopUp: "10000", Currency: "USD",
		ReconcileSchedule: "17 * * * *", AutoTopUpSchedule: "*/5 * * * *",
		ReconcileWindow: 72 * time.Hour, AutoTopUpRetry: 6 * time.Hour,
	}
}

func (c *StripeConfig) bindFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.APIKey, "stripe-api-key", c.APIKey, "Stripe secret API key; empty turns payments off")
	fs.StringVar(&c.APIURL, "stripe-api-url", c.APIURL, "Stripe API base URL; empty for Stripe itself (dev: empty starts stripe-mock)")
	fs.StringSliceVar(&c.WebhookSecrets, "stripe-webhook-secret", c.WebhookSecrets, "webhook signing secrets, comma-separated (several while one is rolled)")
	fs.DurationVar(&c.WebhookTolerance, "stripe-webhook-tolerance", c.WebhookTolerance, "how old a webhook signature may be")
	fs.StringVar(&c.SuccessURL, "stripe-success-url", c.SuccessURL, "where Checkout sends the payer after paying")
	fs.StringVar(&c.CancelURL, "stripe-cancel-url", c.CancelURL, "where Checkout sends the payer who cancels")
	fs.StringVar(&c.MinTopUp, "stripe-min-topup", c.MinTopUp, "smallest top-up, in currency units")
	fs.StringVar(&c.MaxTopUp, "stripe-max-topup", c.MaxTopUp, "largest top-up, in currency units")
	fs.StringVar(&c.ReconcileSchedule, "stripe-reconcile-schedule", c.ReconcileSchedule, "cron schedule (UTC) of reconciliation with Stripe")
	fs.StringVar(&c.AutoTopUpSchedule, "stripe-autotopup-schedule", c.AutoTopUpSchedule, "cron schedule (UTC) of automatic top-ups and of pushing unsent invoices")
	fs.DurationVar(&c.ReconcileWindow, "stripe-reconcile-window", c.ReconcileWindow, "how far back reconciliation compares")
	fs.DurationVar(&c.AutoTopUpRetry, "stripe-autotopup-retry", c.AutoTopUpRetry, "pause after a failed automatic top-up")
}

// enabled reports whether payments are configured.
func (c *StripeConfig) enabled() bool { return c.APIKey != "" }

// config converts the flags into the payments' own Config.
func (c *StripeConfig) config() (stripepay.Config, error) {
	minTop, err := billing.ParseMicros(c.MinTopUp)
	if err != nil {
		return stripepay.Config{}, &configError{"--stripe-min-topup", err.Error()}
	}
	maxTop, err := billing.ParseMicros(c.MaxTopUp)
	if err != nil {
		return stripepay.Config{}, &configError{"--stripe-max-topup", err.Error()}
	}
	return stripepay.Config{
		APIKey: c.APIKey, APIURL: c.APIURL, WebhookSecrets: c.WebhookSecrets, WebhookTolerance: c.WebhookTolerance,
		SuccessURL: c.SuccessURL, CancelURL: c.CancelURL, MinTopUp: minTop, MaxTopUp: maxTop, Currency: c.Currency,
		ReconcileSchedule: c.ReconcileSchedule, AutoTopUpSchedule: c.AutoTopUpSchedule,
		ReconcileWindow: c.ReconcileWindow, AutoTopUpRetry: c.AutoTopUpRetry,
	}, nil
}

// validate checks the settings when payments are on, by building the
// payments' own Config and validating it.
func (c *StripeConfig) validate() error {
	if !c.enabled() {
		return nil
	}
	sc, err := c.config()
	if err != nil {
		return err
	}
	if _, err := stripepay.New(sc, stripepay.Deps{Store: noStore{}, Clock: clock}); err != nil {
		return &configError{"--stripe-*", err.Error()}
	}
	return nil
}

// noStore stands in for the store while only the configuration is
// checked; it is never called.
type noStore struct{ stripepay.Store }

// newStripe builds the payments service, or nil when payments are off.
func newStripe(cfg Config, a *app, store *billingstore.Store, observer billing.BalanceObserver, reg prometheus.Registerer) (*stripepay.Service, error) {
	if !cfg.Stripe.enabled() {
		return nil, nil
	}
	sc, err := cfg.Stripe.config()
	if err != nil {
		return nil, err
	}
	svc, err := stripepay.New(sc, stripepay.Deps{Store: store, Observer: observer,
		Registerer: reg, Logger: a.log.With("component", "stripe"), Clock: clock})
	if err != nil {
		return nil, &configError{"--stripe-*", err.Error()}
	}
	return svc, nil
}
