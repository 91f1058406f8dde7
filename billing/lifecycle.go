package billing

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/robfig/cron/v3"
)

// DebtState is where an org stands in the debt lifecycle.
type DebtState string

// The debt states, from best to worst.
const (
	// DebtNormal is a usable balance above the low-balance threshold.
	DebtNormal DebtState = "normal"
	// DebtLowBalance is a usable balance at or below the low-balance
	// threshold.
	DebtLowBalance DebtState = "low_balance"
	// DebtCritical is a usable balance at or below the critical threshold.
	DebtCritical DebtState = "critical"
	// DebtInDebt is a usable balance of zero or less, inside the grace
	// period.
	DebtInDebt DebtState = "debt"
	// DebtSuspended is debt past the grace period: every namespace of the
	// org is suspended until a payment brings the balance above zero.
	DebtSuspended DebtState = "suspended"
)

// Valid reports whether s is one of the debt states.
func (s DebtState) Valid() bool {
	switch s {
	case DebtNormal, DebtLowBalance, DebtCritical, DebtInDebt, DebtSuspended:
		return true
	}
	return false
}

// rank orders the states from best (0) to worst.
func (s DebtState) rank() int {
	switch s {
	case DebtLowBalance:
		return 1
	case DebtCritical:
		return 2
	case DebtInDebt:
		return 3
	case DebtSuspended:
		return 4
	}
	return 0
}

// DebtEvent names a recorded transition, and what its notice says.
type DebtEvent string

// The events of the debt lifecycle.
const (
	// DebtEventLowBalance, DebtEventCritical and DebtEventDebt: the
	// balance fell to that state.
	DebtEventLowBalance DebtEvent = "low_balance"
	DebtEventCritical   DebtEvent = "critical"
	DebtEventDebt       DebtEvent = "debt"
	// DebtEventSuspended: the grace period ended in debt; the org's
	// namespaces are being suspended.
	DebtEventSuspended DebtEvent = "suspended"
	// DebtEventResumed: a payment ended a suspension.
	DebtEventResumed DebtEvent = "resumed"
	// DebtEventRecovered: the balance rose to a better state without a
	// suspension to end.
	DebtEventRecovered DebtEvent = "recovered"
	// DebtEventWorkloadsDeleted: the workloads of a suspended org were
	// deleted after the deletion period.
	DebtEventWorkloadsDeleted DebtEvent = "workloads_deleted"
	// SpendEventLimitReached and SpendEventLimitLifted: a namespace's
	// month-to-date charges reached its spending limit, suspending it, or
	// the limit no longer holds (a new month, a higher limit), resuming it.
	SpendEventLimitReached DebtEvent = "spending_limit_reached"
	SpendEventLimitLifted  DebtEvent = "spending_limit_lifted"
)

// Reasons given to the Suspender, so that a namespace's audit log says why
// billing suspended it.
const (
	SuspendReasonDebt          = "billing: debt past the grace period"
	SuspendReasonSpendingLimit = "billing: monthly spending limit reached"
)

// HoldCause is why billing holds a namespace suspended.
type HoldCause string

// The causes of a hold.
const (
	HoldDebt          HoldCause = "debt"
	HoldSpendingLimit HoldCause = "spending_limit"
)

// DebtStatus is an org's recorded place in the lifecycle.
type DebtStatus struct {
	OrgID int64
	State DebtState
	// Since is when the org entered State.
	Since time.Time
	// DebtSince is when the usable balance fell to zero or below; set in
	// debt and suspended.
	DebtSince *time.Time
	// SuspendedAt is set while suspended.
	SuspendedAt *time.Time
	// WorkloadsDeletedAt is set once the workloads of a suspended org
	// were deleted.
	WorkloadsDeletedAt *time.Time
	// Usable and Currency are the balance at the last evaluation.
	Usable      Micros
	Currency    string
	EvaluatedAt time.Time
}

// DebtTransition is one recorded change of the lifecycle.
type DebtTransition struct {
	ID    int64
	OrgID int64
	// NamespaceID is set for spending-limit events.
	NamespaceID int64
	Event       DebtEvent
	From, To    DebtState
	Usable      Micros
	Currency    string
	// Cause says what moved it: "balance 12.000000 USD at or below the
	// low-balance threshold 20.000000 USD", "grace period of 72h ended".
	Cause string
	At    time.Time
}

// DebtThresholds are the usable balances at or below which an org is in
// low balance and critical, in micros of one currency.
type DebtThresholds struct {
	Low      Micros `json:"low"`
	Critical Micros `json:"critical"`
}

// Validate checks that Low > Critical > 0.
func (t DebtThresholds) Validate() error {
	if t.Critical <= 0 || t.Low <= t.Critical {
		return fmt.Errorf("thresholds low %s and critical %s must satisfy low > critical > 0",
			FormatMicros(t.Low), FormatMicros(t.Critical))
	}
	return nil
}

// LifecycleConfig configures the debt lifecycle.
type LifecycleConfig struct {
	// Thresholds applies to every currency without an entry in
	// CurrencyThresholds.
	Thresholds DebtThresholds
	// CurrencyThresholds overrides Thresholds per currency ("EUR").
	CurrencyThresholds map[string]DebtThresholds
	// Grace is how long an org stays in debt before its namespaces are
	// suspended.
	Grace time.Duration
	// DeleteWorkloadsAfter is how long after a suspension the workloads of
	// the org's namespaces are deleted; zero never deletes them.
	DeleteWorkloadsAfter time.Duration
	// Schedule is the cron schedule of the pass over the orgs whose state
	// may have changed (robfig/cron syntax, such as "@every 1m").
	Schedule string
	// FullPassEvery is how often a pass evaluates every org instead (1h),
	// as the first pass after start does.
	FullPassEvery time.Duration
	// DefaultCurrency is the currency of an org without a billing account.
	DefaultCurrency string
	// Webhook configures outgoing webhooks.
	Webhook WebhookConfig
	// BatchSize is how many orgs a pass reads at a time.
	BatchSize int
}

// DefaultLifecycleConfig returns the defaults: low balance at 10, critical
// at 2 units of currency, three days of grace, no deletion, a pass every
// minute.
func DefaultLifecycleConfig() LifecycleConfig {
	return LifecycleConfig{
		Thresholds:      DebtThresholds{Low: 10 * MicrosPerUnit, Critical: 2 * MicrosPerUnit},
		Grace:           72 * time.Hour,
		Schedule:        "@every 1m",
		FullPassEvery:   time.Hour,
		DefaultCurrency: "USD",
		Webhook:         DefaultWebhookConfig(),
		BatchSize:       500,
	}
}

// Validate checks every setting.
func (c LifecycleConfig) Validate() error {
	if err := c.Thresholds.Validate(); err != nil {
		return fmt.Errorf("lifecycle config: %w", err)
	}
	for cur, t := range c.CurrencyThresholds {
		if !ValidCurrency(cur) {
			return fmt.Errorf("lifecycle config: currency %q is not a three-letter upper-case code", cur)
		}
		if err := t.Validate(); err != nil {
			return fmt.Errorf("lifecycle config: %s: %w", cur, err)
		}
	}
	switch {
	case c.Grace < 0 || c.Grace > 90*24*time.Hour:
		return fmt.Errorf("lifecycle config: grace %s is not within 0..90 days", c.Grace)
	case c.DeleteWorkloadsAfter < 0 || c.DeleteWorkloadsAfter > 365*24*time.Hour:
		return fmt.Errorf("lifecycle config: delete-workloads-after %s is not within 0..365 days", c.DeleteWorkloadsAfter)
	case c.DeleteWorkloadsAfter > 0 && c.DeleteWorkloadsAfter < time.Hour:
		return fmt.Errorf("lifecycle config: delete-workloads-after %s is shorter than an hour", c.DeleteWorkloadsAfter)
	case !ValidCurrency(c.DefaultCurrency):
		return fmt.Errorf("lifecycle config: default currency %q is not a three-letter upper-case code", c.DefaultCurrency)
	case c.FullPassEvery < time.Minute || c.FullPassEvery > 7*24*time.Hour:
		return fmt.Errorf("lifecycle config: full pass every %s is not within 1m..7 days", c.FullPassEvery)
	case c.BatchSize < 1 || c.BatchSize > 10_000:
		return fmt.Errorf("lifecycle config: batch size %d is not within 1..10000", c.BatchSize)
	}
	if _, err := cron.ParseStandard(c.Schedule); err != nil {
		return fmt.Errorf("lifecycle config: schedule %q: %w", c.Schedule, err)
	}
	if err := c.Webhook.Validate(); err != nil {
		return fmt.Errorf("lifecycle config: %w", err)
	}
	return nil
}

// ThresholdsFor returns the thresholds of a currency.
func (c LifecycleConfig) ThresholdsFor(currency string) DebtThresholds {
	if t, ok := c.CurrencyThresholds[currency]; ok {
		return t
	}
	return c.Thresholds
}

// DebtLevel is the state a usable balance alone puts an org in, without
// the grace period: normal, low balance, critical or debt.
func DebtLevel(usable Micros, t DebtThresholds) DebtState {
	switch {
	case usable <= 0:
		return DebtInDebt
	case usable <= t.Critical:
		return DebtCritical
	case usable <= t.Low:
		return DebtLowBalance
	}
	return DebtNormal
}

// DebtStep is one change NextDebtState decides.
type DebtStep struct {
	Event DebtEvent
	From  DebtState
	To    DebtState
	Cause string
}

// NextDebtState is the lifecycle's pure rule: from an org's status and its
// usable balance at now, the steps to its new state, in order (none when
// it stays). The status returned is the new one.
//
//   - In debt past the grace period: suspended.
//   - Suspended: stays suspended while the balance is zero or less;
//     above zero it is resumed to the state its balance gives.
//   - Otherwise the state the balance gives (DebtLevel); entering debt
//     starts the grace period, and a grace of zero suspends at once.
func NextDebtState(st DebtStatus, usable Micros, currency string, now time.Time, cfg LifecycleConfig) (DebtStatus, []DebtStep) {
	t := cfg.ThresholdsFor(currency)
	level := DebtLevel(usable, t)
	next := st
	next.Usable, next.Currency, next.EvaluatedAt = usable, currency, now
	if !st.State.Valid() {
		next.State, next.Since = DebtNormal, now
		st = next
	}
	var steps []DebtStep
	move := func(to DebtState, ev DebtEvent, cause string) {
		steps = append(steps, DebtStep{Event: ev, From: next.State, To: to, Cause: cause})
		next.State, next.Since = to, now
	}
	bal := FormatMicros(usable) + " " + currency
	switch {
	case st.State == DebtSuspended && level == DebtInDebt:
		// Stays suspended until paid.
	case st.State == DebtSuspended:
		move(level, DebtEventResumed, "usable balance "+bal+" is above zero again")
		next.DebtSince, next.SuspendedAt, next.WorkloadsDeletedAt = nil, nil, nil
	case level == DebtInDebt:
		if st.State != DebtInDebt {
			move(DebtInDebt, DebtEventDebt, "usable balance "+bal+" is zero or less")
			next.DebtSince = &now
		}
		if !now.Before(next.DebtSince.Add(cfg.Grace)) {
			move(DebtSuspended, DebtEventSuspended, fmt.Sprintf("still in debt (%s) after the grace period of %s", bal, cfg.Grace))
			next.SuspendedAt = &now
		}
	case level != st.State:
		next.DebtSince = nil
		ev := DebtEventRecovered
		cause := "usable balance " + bal + " is above the threshold " + thresholdOf(st.State, t)
		if level.rank() > st.State.rank() {
			ev = DebtEvent(level)
			cause = "usable balance " + bal + " is at or below the threshold " + thresholdOf(level, t)
		}
		move(level, ev, cause+" "+currency)
	}
	return next, steps
}

func thresholdOf(s DebtState, t DebtThresholds) string {
	switch s {
	case DebtLowBalance:
		return FormatMicros(t.Low)
	case DebtCritical:
		return FormatMicros(t.Critical)
	}
	return FormatMicros(0)
}

// DeletionDue reports whether the workloads of a suspended org are due for
// deletion at now: deletion is configured, the org has been suspended for
// DeleteWorkloadsAfter, and they were not deleted yet.
func DeletionDue(st DebtStatus, now time.Time, cfg LifecycleConfig) bool {
	return cfg.DeleteWorkloadsAfter > 0 && st.State == DebtSuspended && st.SuspendedAt != nil &&
		st.WorkloadsDeletedAt == nil && !now.Before(st.SuspendedAt.Add(cfg.DeleteWorkloadsAfter))
}

// Suspender suspends and resumes one namespace; isolation implements it
// and server wires it. Both are idempotent: suspending a suspended
// namespace or resuming an active one changes nothing.
type Suspender interface {
	Suspend(ctx context.Context, namespaceID int64, reason string) error
	Resume(ctx context.Context, namespaceID int64) error
}

// WorkloadRemover deletes the workloads (not the data) of one tenant
// namespace that is suspended; server wires an implementation that talks
// to Kubernetes. It must refuse any namespace that is not a tenant's.
type WorkloadRemover interface {
	RemoveWorkloads(ctx context.Context, namespaceID int64) error
}

// DebtForecast is how fast an org spends and when, at that rate, it will
// be suspended.
type DebtForecast struct {
	// BurnPerHour is the average charged per hour over the last 24 hours.
	BurnPerHour Micros
	// SuspensionAt is when the org will be suspended at that rate: the end
	// of the grace period after the balance reaches zero. Nil when it
	// spends nothing, or is suspended already.
	SuspensionAt *time.Time
	// TimeLeft is SuspensionAt less now (zero or more), when SuspensionAt
	// is set.
	TimeLeft *time.Duration
}

// ForecastDebt computes the forecast from the status, the usable balance,
// what was charged in the last 24 hours (a positive amount) and now. In
// debt, the suspension is due at the end of the grace period whatever the
// rate; otherwise only an org that spends has one.
func ForecastDebt(st DebtStatus, usable, charged24h Micros, now time.Time, cfg LifecycleConfig) DebtForecast {
	f := DebtForecast{}
	if charged24h > 0 {
		f.BurnPerHour, _ = RoundDiv(charged24h, 24)
	}
	var at time.Time
	switch {
	case st.State == DebtSuspended:
		return f
	case usable <= 0 && st.DebtSince != nil:
		at = st.DebtSince.Add(cfg.Grace)
	case charged24h <= 0:
		// Spends nothing: an org that was never billed, or one the
		// lifecycle has not seen in debt yet and that stopped spending.
		return f
	case usable <= 0:
		at = now.Add(cfg.Grace)
	default:
		// usable / (charged24h per 24h), in whole seconds, exact in 128 bits.
		secs, err := MulDivRound(usable, 24*3600, charged24h)
		if err != nil || secs > int64(100*365*24*3600) {
			return f
		}
		at = now.Add(time.Duration(secs)*time.Second + cfg.Grace)
	}
	left := max(at.Sub(now), 0)
	f.SuspensionAt, f.TimeLeft = &at, &left
	return f
}

// WebhookEndpoint is an org's configured webhook.
type WebhookEndpoint struct {
	OrgID     int64
	URL       string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// SpendingLimit is a namespace's monthly spending limit with what it was
// charged this month.
type SpendingLimit struct {
	NamespaceID int64
	OrgID       int64
	Amount      Micros
	Currency    string
	// MonthSpend is what the namespace was charged since the start of the
	// month (UTC), from the charge lines.
	MonthSpend Micros
	// Held is true while the limit holds the namespace suspended.
	Held      bool
	UpdatedBy string
	UpdatedAt time.Time
}

// MonthStart returns the first instant of t's calendar month in UTC.
func MonthStart(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

// WebhookConfig configures outgoing webhooks.
type WebhookConfig struct {
	// AllowedNets are networks a webhook may reach although they are
	// loopback, private or link-local (refused otherwise), such as
	// 127.0.0.0/8 in tests.
	AllowedNets []netip.Prefix
	// AllowHTTP accepts http:// URLs; otherwise only https://.
	AllowHTTP bool
	// Timeout bounds one delivery attempt.
	Timeout time.Duration
	// MaxAttempts is how often a delivery is tried before it is given up.
	MaxAttempts int
	// RetryBase and RetryMax bound the exponential backoff between
	// attempts.
	RetryBase time.Duration
	RetryMax  time.Duration
	// Poll is how often due deliveries are looked for.
	Poll time.Duration
	// SignatureTolerance is how old a signature's timestamp may be for
	// VerifyWebhookSignature; receivers should use the same.
	SignatureTolerance time.Duration
}

// DefaultWebhookConfig returns the defaults: https only, public addresses
// only, ten attempts over about a day.
func DefaultWebhookConfig() WebhookConfig {
	return WebhookConfig{
		Timeout: 10 * time.Second, MaxAttempts: 10,
		RetryBase: 30 * time.Second, RetryMax: 6 * time.Hour,
		Poll: 5 * time.Second, SignatureTolerance: 5 * time.Minute,
	}
}

// Validate checks every setting.
func (c WebhookConfig) Validate() error {
	for _, p := range c.AllowedNets {
		if !p.IsValid() {
			return fmt.Errorf("webhook config: allowed network %v is not valid", p)
		}
	}
	switch {
	case c.Timeout <= 0 || c.Timeout > time.Minute:
		return fmt.Errorf("webhook config: timeout %s is not within 0..1m", c.Timeout)
	case c.MaxAttempts < 1 || c.MaxAttempts > 50:
		return fmt.Errorf("webhook config: max attempts %d is not within 1..50", c.MaxAttempts)
	case c.RetryBase <= 0 || c.RetryMax < c.RetryBase:
		return fmt.Errorf("webhook config: need 0 < retry base %s <= retry max %s", c.RetryBase, c.RetryMax)
	case c.Poll <= 0 || c.Poll > time.Hour:
		return fmt.Errorf("webhook config: poll %s is not within 0..1h", c.Poll)
	case c.SignatureTolerance <= 0:
		return fmt.Errorf("webhook config: signature tolerance must be positive")
	}
	return nil
}
