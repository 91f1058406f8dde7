package stripepay

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/tenantplane/tenantplane/billing"
)

// Config is how payments talk to Stripe and what they allow.
type Config struct {
	// APIKey is the secret API key (sk_live_… or sk_test_…). Required.
	APIKey string
	// APIURL is the base URL of the Stripe API; empty means Stripe itself.
	// Tests and `tenantplane dev` point it at stripe-mock.
	APIURL string
	// WebhookSecrets are the signing secrets of the webhook endpoint
	// (whsec_…); an event signed with any of them is accepted, so a secret
	// can be rolled without losing events. At least one is required.
	WebhookSecrets []string
	// WebhookTolerance is how old a signature's timestamp may be; default
	// 5 minutes.
	WebhookTolerance time.Duration
	// MaxWebhookBytes caps a webhook body; default 512 KiB.
	MaxWebhookBytes int64
	// SuccessURL and CancelURL are where Checkout sends the payer back.
	// Required.
	SuccessURL string
	CancelURL  string
	// MinTopUp and MaxTopUp bound a top-up, in micros; defaults 5 and
	// 10,000 units.
	MinTopUp billing.Micros
	MaxTopUp billing.Micros
	// Currency is the currency of an org that has no balance yet; default
	// USD.
	Currency string
	// AutoTopUpRetry is how long after a failed automatic top-up the next
	// is tried; default 6 hours.
	AutoTopUpRetry time.Duration
	// ReconcileWindow is how far back reconciliation looks; default 72h.
	ReconcileWindow time.Duration
	// ReconcileSchedule is the cron schedule of reconciliation; default
	// every hour at minute 17.
	ReconcileSchedule string
	// AutoTopUpSchedule is the cron schedule of automatic top-ups; default
	// every five minutes.
	AutoTopUpSchedule string
	// HTTPClient makes the API calls; nil means a client with a 30s
	// timeout.
	HTTPClient *http.Client
}

// validate fills in defaults and checks every setting.
func (c *Config) validate() error {
	if c.WebhookTolerance == 0 {
		c.WebhookTolerance = 5 * time.Minute
	}
	if c.MaxWebhookBytes == 0 {
		c.MaxWebhookBytes = 512 << 10
	}
	if c.MinTopUp == 0 {
		c.MinTopUp = 5 * billing.MicrosPerUnit
	}
	if c.MaxTopUp == 0 {
		c.MaxTopUp = 10_000 * billing.MicrosPerUnit
	}
	if c.Currency == "" {
		c.Currency = "USD"
	}
	if c.AutoTopUpRetry == 0 {
		c.AutoTopUpRetry = 6 * time.Hour
	}
	if c.ReconcileWindow == 0 {
		c.ReconcileWindow = 72 * time.Hour
	}
	if c.ReconcileSchedule == "" {
		c.ReconcileSchedule = "17 * * * *"
	}
	if c.AutoTopUpSchedule == "" {
		c.AutoTopUpSchedule = "*/5 * * * *"
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	switch {
	case c.APIKey == "":
		return errors.New("stripe config: an API key is required")
	case len(c.WebhookSecrets) == 0:
		return errors.New("stripe config: at least one webhook secret is required")
	case c.WebhookTolerance < time.Second || c.WebhookTolerance > time.Hour:
		return fmt.Errorf("stripe config: webhook tolerance %s is not between 1s and 1h", c.WebhookTolerance)
	case c.MaxWebhookBytes < 1024 || c.MaxWebhookBytes > 16<<20:
		return fmt.Errorf("stripe config: max webhook bytes %d is not between 1 KiB and 16 MiB", c.MaxWebhookBytes)
	case c.MinTopUp <= 0 || c.MaxTopUp < c.MinTopUp:
		return fmt.Errorf("stripe config: top-up bounds %s..%s are not positive and ordered",
			billing.FormatMicros(c.MinTopUp), billing.FormatMicros(c.MaxTopUp))
	case !billing.ValidCurrency(c.Currency):
		return fmt.Errorf("stripe config: currency %q is not a three-letter upper-case code", c.Currency)
	case c.AutoTopUpRetry < time.Minute:
		return fmt.Errorf("stripe config: automatic top-up retry %s is under a minute", c.AutoTopUpRetry)
	case c.ReconcileWindow < time.Hour || c.ReconcileWindow > 30*24*time.Hour:
		return fmt.Errorf("stripe config: reconcile window %s is not between 1h and 30 days", c.ReconcileWindow)
	}
	for _, s := range c.WebhookSecrets {
		if s == "" {
			return errors.New("stripe config: a webhook secret is empty")
		}
	}
	for name, u := range map[string]string{"success URL": c.SuccessURL, "cancel URL": c.CancelURL} {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
			return fmt.Errorf("stripe config: %s %q is not an absolute http(s) URL", name, u)
		}
	}
	if c.APIURL != "" {
		p, err := url.Parse(c.APIURL)
		if err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
			return fmt.Errorf("stripe config: API URL %q is not an absolute http(s) URL", c.APIURL)
		}
	}
	for name, spec := range map[string]string{"reconcile": c.ReconcileSchedule, "automatic top-up": c.AutoTopUpSchedule} {
		if _, err := cron.ParseStandard(spec); err != nil {
			return fmt.Errorf("stripe config: %s schedule %q: %w", name, spec, err)
		}
	}
	return nil
}
