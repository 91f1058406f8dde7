package server

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/billing/billingstore"
)

// BillingLifecycleConfig is how the debt lifecycle warns, suspends and
// resumes orgs, as flags.
type BillingLifecycleConfig struct {
	// LowBalance and Critical are the usable balances, in currency units
	// ("10", "2.5"), at or below which an org is warned.
	LowBalance string
	Critical   string
	// CurrencyThresholds override them per currency: "EUR=9:2", "JPY=1500:300".
	CurrencyThresholds []string
	// Grace is how long an org stays in debt before it is suspended.
	Grace time.Duration
	// DeleteWorkloadsAfter deletes a suspended org's workloads that long
	// after the suspension; zero never does.
	DeleteWorkloadsAfter time.Duration
	// Schedule is the cron schedule of the pass over the orgs whose state
	// may have changed; FullPassEvery how often it evaluates every org.
	Schedule      string
	FullPassEvery time.Duration
	// DefaultCurrency is the currency of orgs without a billing account:
	// the platform's, from --billing-default-currency.
	DefaultCurrency string
	// WebhookAllowNets are networks webhooks may reach although internal.
	WebhookAllowNets []string
	// WebhookAllowHTTP accepts http:// webhook URLs.
	WebhookAllowHTTP bool
	// WebhookTimeout bounds one delivery; WebhookMaxAttempts is how often
	// one is tried.
	WebhookTimeout     time.Duration
	WebhookMaxAttempts int
}

func defaultBillingLifecycleConfig() BillingLifecycleConfig {
	d := billing.DefaultLifecycleConfig()
	return BillingLifecycleConfig{
		LowBalance: strings.TrimRight(strings.TrimRight(billing.FormatMicros(d.Thresholds.Low), "0"), "."),
		Critical:   strings.TrimRight(strings.TrimRight(billing.FormatMicros(d.Thresholds.Critical), "0"), "."),
		Grace:      d.Grace, Schedule: d.Schedule, FullPassEvery: d.FullPassEvery, DefaultCurrency: d.DefaultCurrency,
		WebhookTimeout: d.Webhook.Timeout, WebhookMaxAttempts: d.Webhook.MaxAttempts,
	}
}

func (c *BillingLifecycleConfig) bindFlags(fs *pflag.FlagSet) {
	p := "billing-lifecycle-"
	fs.StringVar(&c.LowBalance, p+"low-balance", c.LowBalance, "usable balance (currency units) at or below which an org is warned of a low balance")
	fs.StringVar(&c.Critical, p+"critical", c.Critical, "usable balance (currency units) at or below which an org is warned it is critical")
	fs.StringArrayVar(&c.CurrencyThresholds, p+"currency-thresholds", c.CurrencyThresholds, "thresholds of one currency, CUR=LOW:CRITICAL (repeatable)")
	fs.DurationVar(&c.Grace, p+"grace", c.Grace, "how long an org stays in debt before its namespaces are suspended")
	fs.DurationVar(&c.DeleteWorkloadsAfter, p+"delete-workloads-after", c.DeleteWorkloadsAfter, "delete a suspended org's workloads this long after the suspension (0: never)")
	fs.StringVar(&c.Schedule, p+"schedule", c.Schedule, "cron schedule of the pass over the orgs whose balance, plan or debt may have changed")
	fs.DurationVar(&c.FullPassEvery, p+"full-pass-every", c.FullPassEvery, "how often the pass evaluates every org (and the first pass after start)")
	fs.StringSliceVar(&c.WebhookAllowNets, p+"webhook-allow-nets", c.WebhookAllowNets, "internal networks org webhooks may reach anyway (CIDRs, comma-separated)")
	fs.BoolVar(&c.WebhookAllowHTTP, p+"webhook-allow-http", c.WebhookAllowHTTP, "accept http:// org webhook URLs")
	fs.DurationVar(&c.WebhookTimeout, p+"webhook-timeout", c.WebhookTimeout, "time allowed for one webhook delivery")
	fs.IntVar(&c.WebhookMaxAttempts, p+"webhook-max-attempts", c.WebhookMaxAttempts, "attempts of a webhook delivery before it is given up")
}

// lifecycleConfig turns the flags into billing's configuration, validated.
func (c *BillingLifecycleConfig) lifecycleConfig() (billing.LifecycleConfig, error) {
	cfg := billing.DefaultLifecycleConfig()
	var err error
	if cfg.Thresholds.Low, err = billing.ParseMicros(c.LowBalance); err != nil {
		return cfg, &configError{"--billing-lifecycle-low-balance", err.Error()}
	}
	if cfg.Thresholds.Critical, err = billing.ParseMicros(c.Critical); err != nil {
		return cfg, &configError{"--billing-lifecycle-critical", err.Error()}
	}
	for _, s := range c.CurrencyThresholds {
		cur, rest, ok1 := strings.Cut(s, "=")
		low, crit, ok2 := strings.Cut(rest, ":")
		var t billing.DebtThresholds
		var e1, e2 error
		t.Low, e1 = billing.ParseMicros(low)
		t.Critical, e2 = billing.ParseMicros(crit)
		if !ok1 || !ok2 || e1 != nil || e2 != nil {
			return cfg, &configError{"--billing-lifecycle-currency-thresholds", fmt.Sprintf("%q is not CUR=LOW:CRITICAL", s)}
		}
		if cfg.CurrencyThresholds == nil {
			cfg.CurrencyThresholds = map[string]billing.DebtThresholds{}
		}
		cfg.CurrencyThresholds[cur] = t
	}
	for _, n := range c.WebhookAllowNets {
		p, err := netip.ParsePrefix(n)
		if err != nil {
			return cfg, &configError{"--billing-lifecycle-webhook-allow-nets", err.Error()}
		}
		cfg.Webhook.AllowedNets = append(cfg.Webhook.AllowedNets, p.Masked())
	}
	cfg.Grace, cfg.DeleteWorkloadsAfter, cfg.Schedule, cfg.DefaultCurrency = c.Grace, c.DeleteWorkloadsAfter, c.Schedule, c.DefaultCurrency
	cfg.FullPassEvery = c.FullPassEvery
	cfg.Webhook.AllowHTTP, cfg.Webhook.Timeout, cfg.Webhook.MaxAttempts = c.WebhookAllowHTTP, c.WebhookTimeout, c.WebhookMaxAttempts
	if err := cfg.Validate(); err != nil {
		return cfg, &configError{"--billing-lifecycle-*", err.Error()}
	}
	return cfg, nil
}

func (c *BillingLifecycleConfig) validate() error {
	_, err := c.lifecycleConfig()
	return err
}

// newLifecycle wires the debt lifecycle: Postgres through store,
// suspension through isolation.Suspension, workload deletion through the
// isolation reconciler; its metrics go to reg.
func newLifecycle(cfg BillingLifecycleConfig, a *app, store *billingstore.Store, now func() time.Time, reg prometheus.Registerer) (*billing.Lifecycle, error) {
	lcfg, err := cfg.lifecycleConfig()
	if err != nil {
		return nil, err
	}
	deps := billing.LifecycleDeps{
		Store:      store,
		Suspender:  a.isolation.suspension,
		Log:        a.log.With("component", "billing-lifecycle"),
		Clock:      now,
		Registerer: reg,
	}
	if lcfg.DeleteWorkloadsAfter > 0 {
		deps.Remover = a.isolation.reconciler
	}
	return billing.NewLifecycle(lcfg, deps)
}
