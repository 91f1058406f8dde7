package billing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/tenancy"
)

// DebtDecision is what one evaluation of an org decided: its new status,
// the steps that led there, and what happens to the holds on its
// namespaces. The store fills Transitions with the rows it recorded.
type DebtDecision struct {
	Status DebtStatus
	Steps  []DebtStep
	// PlaceHolds holds every namespace of the org for debt (suspended).
	PlaceHolds bool
	// ReleaseHolds releases the org's debt holds (a payment).
	ReleaseHolds bool
	Transitions  []DebtTransition
}

// SpendStep is what an evaluation of a namespace's spending limit decided.
type SpendStep struct {
	// Place holds the namespace (limit reached); otherwise the hold is
	// released (limit lifted).
	Place bool
	Event DebtEvent
	Cause string
}

// HoldWork is a hold whose namespace must be suspended or resumed.
type HoldWork struct {
	NamespaceID int64
	OrgID       int64
	Cause       HoldCause
	// Released holds are resumed (when Resume is set) and then dropped;
	// the others are suspended.
	Released bool
	// Resume is set on a released hold when billing suspended the
	// namespace and no other hold keeps it suspended.
	Resume bool
}

// LifecycleStore keeps the debt lifecycle in Postgres; billingstore
// implements it.
type LifecycleStore interface {
	// UpdateDebt locks the org's debt status (State is empty for an org
	// never evaluated), reads its balance at now and calls decide; in the
	// same transaction it records what decide returns: the status, each
	// step as a transition with an audit row, a mail to the org's owners
	// and billing members, and a webhook delivery when the org has a
	// webhook; and it places or releases the org's debt holds.
	UpdateDebt(ctx context.Context, orgID int64, now time.Time, defaultCurrency string,
		decide func(DebtStatus, Balance) DebtDecision) (DebtDecision, error)
	// DebtOrgs lists, in ascending order after after, the prepaid orgs
	// with a billing account: all of them, or only those whose state may
	// have changed since UpdateDebt last evaluated them (never evaluated,
	// in debt or suspended, with ledger entries since, on another plan,
	// or with credit lapsed by now).
	DebtOrgs(ctx context.Context, after int64, limit int, all bool, now time.Time) ([]int64, error)
	// DebtStatus returns the org's status; State is empty when never
	// evaluated.
	DebtStatus(ctx context.Context, orgID int64) (DebtStatus, error)
	// DebtTransitions lists the org's transitions, newest first, with IDs
	// below before (0: from the newest).
	DebtTransitions(ctx context.Context, orgID int64, before int64, limit int) ([]DebtTransition, error)
	// Charged is what the org's charge entries with a time in (from, to]
	// add up to, as a positive amount.
	Charged(ctx context.Context, orgID int64, from, to time.Time) (Micros, error)

	// HoldWork lists holds to act on (orgID 0: of every org).
	HoldWork(ctx context.Context, orgID int64, limit int) ([]HoldWork, error)
	// HoldApplied records that a hold's namespace was suspended, and
	// HoldFailed an attempt that failed.
	HoldApplied(ctx context.Context, nsID int64, cause HoldCause) error
	HoldFailed(ctx context.Context, nsID int64, cause HoldCause, msg string) error
	// DropHold deletes a released hold once its namespace was resumed (or
	// another hold keeps it), handing its ownership to that other hold.
	DropHold(ctx context.Context, nsID int64, cause HoldCause) error
	// DebtHeldNamespaces lists the namespaces the org's debt holds keep
	// suspended.
	DebtHeldNamespaces(ctx context.Context, orgID int64) ([]int64, error)
	// WorkloadsDeleted records, if the org is still suspended and its
	// workloads were not deleted yet, that they were, as a transition
	// notified like the others; false when it no longer applies.
	WorkloadsDeleted(ctx context.Context, orgID int64, now time.Time) (bool, error)

	// SpendingLimitIDs lists namespaces with a spending limit or a
	// spending hold, ascending after after.
	SpendingLimitIDs(ctx context.Context, after int64, limit int) ([]int64, error)
	// UpdateSpend locks the namespace's limit, reads its month-to-date
	// spend at now and whether it is held, and calls decide (exists is
	// false when it has no limit); a non-nil step is recorded as a
	// transition, notified, and places or releases the hold.
	UpdateSpend(ctx context.Context, nsID int64, now time.Time,
		decide func(l SpendingLimit, exists bool) *SpendStep) (*DebtTransition, error)
	// SetSpendingLimit sets (amount > 0) or removes (amount 0) a
	// namespace's limit, in the currency of its org, with an audit row.
	SetSpendingLimit(ctx context.Context, nsID int64, amount Micros, defaultCurrency string, by tenancy.Actor, now time.Time) error
	// SpendingLimit returns one namespace's limit (NOT_FOUND without one)
	// and SpendingLimits every limit of an org, with spend at now.
	SpendingLimit(ctx context.Context, nsID int64, now time.Time) (SpendingLimit, error)
	SpendingLimits(ctx context.Context, orgID int64, now time.Time) ([]SpendingLimit, error)

	// SetWebhook sets the org's webhook URL and secret, RemoveWebhook
	// removes it (NOT_FOUND without one), each with an audit row.
	SetWebhook(ctx context.Context, orgID int64, url, secret string, by tenancy.Actor, now time.Time) (WebhookEndpoint, error)
	RemoveWebhook(ctx context.Context, orgID int64, by tenancy.Actor, now time.Time) error
	// Webhook returns the org's webhook, NOT_FOUND without one.
	Webhook(ctx context.Context, orgID int64) (WebhookEndpoint, error)
	// ClaimWebhookDeliveries leases up to limit due deliveries until
	// now+lease, counting an attempt each; deliveries of an org without a
	// webhook any more are given up.
	ClaimWebhookDeliveries(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]WebhookDelivery, error)
	// WebhookDelivered records success; WebhookFailed a failure, due
	// again at next, or given up when next is nil.
	WebhookDelivered(ctx context.Context, id int64, status int, now time.Time) error
	WebhookFailed(ctx context.Context, id int64, status int, msg string, next *time.Time, now time.Time) error
}

// LifecycleDeps are what the lifecycle calls.
type LifecycleDeps struct {
	// Store is required.
	Store LifecycleStore
	// Suspender is required.
	Suspender Suspender
	// Remover deletes workloads; required when DeleteWorkloadsAfter is set.
	Remover WorkloadRemover
	// HTTPClient delivers webhooks; nil builds NewWebhookClient.
	HTTPClient *http.Client
	// Log receives what goes wrong; nil discards.
	Log *slog.Logger
	// Clock is the current time; nil means time.Now in UTC.
	Clock func() time.Time
	// Registerer takes the lifecycle's metrics; nil keeps them
	// unregistered.
	Registerer prometheus.Registerer
}

// Lifecycle runs the debt lifecycle: it evaluates orgs on a schedule and
// when a balance changes, suspends and resumes namespaces through the
// Suspender, enforces spending limits, delivers webhooks, and answers the
// GraphQL layer. It implements BalanceObserver.
type Lifecycle struct {
	cfg     LifecycleConfig
	store   LifecycleStore
	susp    Suspender
	remover WorkloadRemover
	client  *http.Client
	log     *slog.Logger
	now     func() time.Time
	metrics *lifecycleMetrics

	mu       sync.Mutex
	lastFull time.Time // when a pass last evaluated every org
}

var _ BalanceObserver = (*Lifecycle)(nil)

// NewLifecycle validates cfg and returns a Lifecycle.
func NewLifecycle(cfg LifecycleConfig, deps LifecycleDeps) (*Lifecycle, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch {
	case deps.Store == nil:
		return nil, errors.New("lifecycle: a store is required")
	case deps.Suspender == nil:
		return nil, errors.New("lifecycle: a suspender is required")
	case cfg.DeleteWorkloadsAfter > 0 && deps.Remover == nil:
		return nil, errors.New("lifecycle: deleting workloads needs a workload remover")
	}
	m, err := newLifecycleMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	l := &Lifecycle{cfg: cfg, store: deps.Store, susp: deps.Suspender, remover: deps.Remover,
		client: deps.HTTPClient, log: deps.Log, now: deps.Clock, metrics: m}
	if l.client == nil {
		l.client = NewWebhookClient(cfg.Webhook)
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if l.now == nil {
		l.now = time.Now
	}
	return l, nil
}

func (l *Lifecycle) clock() time.Time { return l.now().UTC() }

// systemCtx carries the billing system actor that the Suspender's
// state changes are recorded under.
func systemCtx(ctx context.Context) context.Context {
	return tenancy.WithActor(ctx, tenancy.Actor{System: "billing"})
}

// BalanceChanged implements BalanceObserver: it evaluates the org at once,
// logging what fails (the next pass retries).
func (l *Lifecycle) BalanceChanged(ctx context.Context, orgID int64) {
	if err := l.EvaluateOrg(ctx, orgID); err != nil {
		l.log.Warn("evaluating debt after a balance change", "org", orgID, "err", err)
	}
}

// EvaluateOrg moves one org through the lifecycle as its balance says,
// then suspends or resumes its held namespaces, and deletes workloads when
// that is due.
func (l *Lifecycle) EvaluateOrg(ctx context.Context, orgID int64) error {
	now := l.clock()
	d, err := l.store.UpdateDebt(ctx, orgID, now, l.cfg.DefaultCurrency, func(st DebtStatus, b Balance) DebtDecision {
		next, steps := NextDebtState(st, b.Usable(), b.Currency, now, l.cfg)
		return DebtDecision{
			Status: next, Steps: steps,
			PlaceHolds:   next.State == DebtSuspended,
			ReleaseHolds: st.State == DebtSuspended && next.State != DebtSuspended,
		}
	})
	if err != nil {
		return fmt.Errorf("evaluating debt of org %d: %w", orgID, err)
	}
	for _, tr := range d.Transitions {
		l.metrics.transitions.WithLabelValues(string(tr.To)).Inc()
		l.log.Info("debt transition", "org", orgID, "event", tr.Event, "from", tr.From, "to", tr.To, "usable", FormatMicros(tr.Usable))
	}
	var errs []error
	if err := l.applyHolds(ctx, orgID); err != nil {
		errs = append(errs, err)
	}
	if DeletionDue(d.Status, now, l.cfg) {
		if err := l.deleteWorkloads(ctx, orgID, now); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// applyHolds suspends the held namespaces that are active and resumes the
// released ones (orgID 0: of every org).
func (l *Lifecycle) applyHolds(ctx context.Context, orgID int64) error {
	work, err := l.store.HoldWork(ctx, orgID, 10_000)
	if err != nil {
		return fmt.Errorf("listing holds: %w", err)
	}
	sctx := systemCtx(ctx)
	var errs []error
	for _, w := range work {
		if err := l.applyHold(sctx, w); err != nil {
			errs = append(errs, err)
			if ferr := l.store.HoldFailed(ctx, w.NamespaceID, w.Cause, err.Error()); ferr != nil {
				errs = append(errs, ferr)
			}
		}
	}
	return errors.Join(errs...)
}

func (l *Lifecycle) applyHold(ctx context.Context, w HoldWork) error {
	if !w.Released {
		reason := SuspendReasonDebt
		if w.Cause == HoldSpendingLimit {
			reason = SuspendReasonSpendingLimit
		}
		if err := l.susp.Suspend(ctx, w.NamespaceID, reason); err != nil {
			l.metrics.holdFailures.WithLabelValues("suspend").Inc()
			return fmt.Errorf("suspending namespace %d: %w", w.NamespaceID, err)
		}
		return l.store.HoldApplied(ctx, w.NamespaceID, w.Cause)
	}
	if w.Resume {
		if err := l.susp.Resume(ctx, w.NamespaceID); err != nil {
			l.metrics.holdFailures.WithLabelValues("resume").Inc()
			return fmt.Errorf("resuming namespace %d: %w", w.NamespaceID, err)
		}
	}
	return l.store.DropHold(ctx, w.NamespaceID, w.Cause)
}

// deleteWorkloads removes the workloads of every namespace the org's debt
// holds keep suspended, then records it once.
func (l *Lifecycle) deleteWorkloads(ctx context.Context, orgID int64, now time.Time) error {
	ids, err := l.store.DebtHeldNamespaces(ctx, orgID)
	if err != nil {
		return fmt.Errorf("listing held namespaces of org %d: %w", orgID, err)
	}
	// A payment that arrived meanwhile cancels the deletion.
	st, err := l.store.DebtStatus(ctx, orgID)
	if err != nil {
		return fmt.Errorf("reading debt of org %d: %w", orgID, err)
	}
	if !DeletionDue(st, now, l.cfg) {
		return nil
	}
	var errs []error
	for _, id := range ids {
		if err := l.remover.RemoveWorkloads(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("deleting workloads of namespace %d: %w", id, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if _, err := l.store.WorkloadsDeleted(ctx, orgID, now); err != nil {
		return fmt.Errorf("recording deleted workloads of org %d: %w", orgID, err)
	}
	l.log.Info("deleted workloads of suspended org", "org", orgID, "namespaces", len(ids))
	return nil
}

// EvaluateSpend checks one namespace's spending limit: reached, the
// namespace is held (suspended); no longer reached (a new month, a higher
// or removed limit), the hold is released (resumed).
func (l *Lifecycle) EvaluateSpend(ctx context.Context, nsID int64) error {
	now := l.clock()
	tr, err := l.store.UpdateSpend(ctx, nsID, now, func(lim SpendingLimit, exists bool) *SpendStep {
		return NextSpendStep(lim, exists)
	})
	if err != nil {
		return fmt.Errorf("evaluating spending limit of namespace %d: %w", nsID, err)
	}
	if tr != nil {
		l.log.Info("spending limit", "namespace", nsID, "event", tr.Event)
		return l.applyHolds(ctx, tr.OrgID)
	}
	return nil
}

// NextSpendStep is the pure rule of spending limits: a namespace whose
// month-to-date spend reached its limit is held; a held one whose limit
// was removed, raised above the spend, or whose month turned, is released.
func NextSpendStep(lim SpendingLimit, exists bool) *SpendStep {
	reached := exists && lim.MonthSpend >= lim.Amount
	switch {
	case reached && !lim.Held:
		return &SpendStep{Place: true, Event: SpendEventLimitReached,
			Cause: fmt.Sprintf("charged %s %s this month, limit %s", FormatMicros(lim.MonthSpend), lim.Currency, FormatMicros(lim.Amount))}
	case !reached && lim.Held && !exists:
		return &SpendStep{Event: SpendEventLimitLifted, Cause: "the spending limit was removed"}
	case !reached && lim.Held:
		return &SpendStep{Event: SpendEventLimitLifted,
			Cause: fmt.Sprintf("charged %s %s this month, below the limit %s", FormatMicros(lim.MonthSpend), lim.Currency, FormatMicros(lim.Amount))}
	}
	return nil
}

// Pass evaluates the orgs whose state may have changed (every org on its
// first run and then every FullPassEvery, so that new thresholds reach
// all of them), every spending limit, retries holds that failed, and
// delivers due webhooks. It is what the schedule runs.
func (l *Lifecycle) Pass(ctx context.Context) error {
	now := l.clock()
	l.mu.Lock()
	all := l.lastFull.IsZero() || now.Sub(l.lastFull) >= l.cfg.FullPassEvery
	l.mu.Unlock()
	errs, err := l.eachID(ctx, "orgs", func(ctx context.Context, after int64, limit int) ([]int64, error) {
		return l.store.DebtOrgs(ctx, after, limit, all, now)
	}, l.EvaluateOrg)
	if err != nil {
		return err
	}
	if all {
		l.mu.Lock()
		l.lastFull = now
		l.mu.Unlock()
	}
	spendErrs, err := l.eachID(ctx, "spending limits", l.store.SpendingLimitIDs, l.EvaluateSpend)
	if err != nil {
		return err
	}
	errs = append(errs, spendErrs...)
	if err := l.applyHolds(ctx, 0); err != nil {
		errs = append(errs, err)
	}
	if _, err := l.DeliverWebhooks(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// eachID calls eval for every id that list returns, page by page of
// BatchSize ids after the last one, and returns eval's errors; it stops
// only when a page cannot be listed.
func (l *Lifecycle) eachID(ctx context.Context, what string, list func(ctx context.Context, after int64, limit int) ([]int64, error),
	eval func(ctx context.Context, id int64) error,
) ([]error, error) {
	var errs []error
	for after := int64(0); ; {
		ids, err := list(ctx, after, l.cfg.BatchSize)
		if err != nil {
			return errs, fmt.Errorf("listing %s: %w", what, err)
		}
		for _, id := range ids {
			if err := eval(ctx, id); err != nil {
				errs = append(errs, err)
			}
		}
		if len(ids) < l.cfg.BatchSize {
			return errs, nil
		}
		after = ids[len(ids)-1]
	}
}

// DeliverWebhooks sends every due delivery once and returns how many
// succeeded.
func (l *Lifecycle) DeliverWebhooks(ctx context.Context) (int, error) {
	now := l.clock()
	lease := 2*l.cfg.Webhook.Timeout + time.Minute
	due, err := l.store.ClaimWebhookDeliveries(ctx, now, lease, 100)
	if err != nil {
		return 0, fmt.Errorf("claiming webhook deliveries: %w", err)
	}
	ok := 0
	var errs []error
	for _, d := range due {
		status, derr := deliverWebhook(ctx, l.client, d, l.clock())
		if derr == nil {
			ok++
			if err := l.store.WebhookDelivered(ctx, d.ID, status, l.clock()); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		var next *time.Time
		outcome := "given_up"
		if d.Attempts < l.cfg.Webhook.MaxAttempts {
			t := l.clock().Add(WebhookBackoff(d.Attempts, l.cfg.Webhook))
			next, outcome = &t, "retry"
		}
		l.metrics.webhookFailures.WithLabelValues(outcome).Inc()
		l.log.Warn("webhook delivery failed", "delivery", d.ID, "org", d.Transition.OrgID, "attempt", d.Attempts,
			"given_up", next == nil, "err", derr)
		if err := l.store.WebhookFailed(ctx, d.ID, status, derr.Error(), next, l.clock()); err != nil {
			errs = append(errs, err)
		}
	}
	return ok, errors.Join(errs...)
}

// Jobs are the pass over every org on the schedule and webhook
// deliveries every Webhook.Poll. Run them on the leader only.
func (l *Lifecycle) Jobs() []Job {
	return []Job{
		{Name: "debt-lifecycle", Schedule: l.cfg.Schedule, Run: l.Pass},
		{Name: "webhook-delivery", Schedule: "@every " + l.cfg.Webhook.Poll.String(), Run: func(ctx context.Context) error {
			_, err := l.DeliverWebhooks(ctx)
			return err
		}},
	}
}

// DebtReport is an org's debt status with its forecast.
type DebtReport struct {
	Status   DebtStatus
	Forecast DebtForecast
}

// Debt reports an org's status (normal when never evaluated) and its burn
// rate over the last 24 hours with the time left until suspension.
func (l *Lifecycle) Debt(ctx context.Context, orgID int64) (DebtReport, error) {
	now := l.clock()
	st, err := l.store.DebtStatus(ctx, orgID)
	if err != nil {
		return DebtReport{}, fmt.Errorf("reading debt of org %d: %w", orgID, err)
	}
	if st.State == "" {
		st = DebtStatus{OrgID: orgID, State: DebtNormal, Currency: l.cfg.DefaultCurrency, Since: now}
	}
	charged, err := l.store.Charged(ctx, orgID, now.Add(-24*time.Hour), now)
	if err != nil {
		return DebtReport{}, fmt.Errorf("reading charges of org %d: %w", orgID, err)
	}
	return DebtReport{Status: st, Forecast: ForecastDebt(st, st.Usable, charged, now, l.cfg)}, nil
}

// Transitions lists an org's transitions, newest first.
func (l *Lifecycle) Transitions(ctx context.Context, orgID, before int64, limit int) ([]DebtTransition, error) {
	if limit < 1 || limit > 100 {
		return nil, errcode.Invalid("first", "must be between 1 and 100")
	}
	return l.store.DebtTransitions(ctx, orgID, before, limit)
}

// SetWebhook sets the org's webhook URL with a new secret, returned once.
func (l *Lifecycle) SetWebhook(ctx context.Context, orgID int64, rawURL string, by tenancy.Actor) (WebhookEndpoint, string, error) {
	u, err := ValidateWebhookURL(rawURL, l.cfg.Webhook)
	if err != nil {
		return WebhookEndpoint{}, "", err
	}
	secret, err := NewWebhookSecret()
	if err != nil {
		return WebhookEndpoint{}, "", err
	}
	w, err := l.store.SetWebhook(ctx, orgID, u, secret, by, l.clock())
	if err != nil {
		return WebhookEndpoint{}, "", fmt.Errorf("setting webhook of org %d: %w", orgID, err)
	}
	return w, secret, nil
}

// RemoveWebhook removes the org's webhook; pending deliveries are given
// up.
func (l *Lifecycle) RemoveWebhook(ctx context.Context, orgID int64, by tenancy.Actor) error {
	return l.store.RemoveWebhook(ctx, orgID, by, l.clock())
}

// Webhook returns the org's webhook, NOT_FOUND without one.
func (l *Lifecycle) Webhook(ctx context.Context, orgID int64) (WebhookEndpoint, error) {
	return l.store.Webhook(ctx, orgID)
}

// SetSpendingLimit sets a namespace's monthly spending limit (nil removes
// it) and applies it at once.
func (l *Lifecycle) SetSpendingLimit(ctx context.Context, nsID int64, amount *Micros, by tenancy.Actor) error {
	a := Micros(0)
	if amount != nil {
		if *amount <= 0 {
			return errcode.Invalid("limit", "must be positive; leave it out to remove the limit")
		}
		a = *amount
	}
	if err := l.store.SetSpendingLimit(ctx, nsID, a, l.cfg.DefaultCurrency, by, l.clock()); err != nil {
		return fmt.Errorf("setting spending limit of namespace %d: %w", nsID, err)
	}
	return l.EvaluateSpend(ctx, nsID)
}

// SpendingLimit returns a namespace's limit, NOT_FOUND without one.
func (l *Lifecycle) SpendingLimit(ctx context.Context, nsID int64) (SpendingLimit, error) {
	return l.store.SpendingLimit(ctx, nsID, l.clock())
}

// SpendingLimits lists an org's spending limits.
func (l *Lifecycle) SpendingLimits(ctx context.Context, orgID int64) ([]SpendingLimit, error) {
	return l.store.SpendingLimits(ctx, orgID, l.clock())
}
