package stripepay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/internal/errcode"
)

// Service takes payments through Stripe. It is safe for concurrent use.
type Service struct {
	cfg      Config
	store    Store
	api      *api
	observer billing.BalanceObserver
	log      *slog.Logger
	now      func() time.Time
	metrics  *metrics
}

// Deps are what a Service calls besides Stripe.
type Deps struct {
	// Store keeps customers, top-ups, invoices and events. Required.
	Store Store
	// Observer is told after commit that an org's balance changed; nil
	// tells no one.
	Observer billing.BalanceObserver
	// Registerer receives the metrics; nil registers none.
	Registerer prometheus.Registerer
	// Logger; nil discards.
	Logger *slog.Logger
	// Clock is the current time; required.
	Clock func() time.Time
}

// New returns a Service after validating cfg.
func New(cfg Config, deps Deps) (*Service, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if deps.Store == nil || deps.Clock == nil {
		return nil, errors.New("stripepay: a store and a clock are required")
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	now := deps.Clock
	return &Service{
		cfg: cfg, store: deps.Store, api: newAPI(cfg), observer: deps.Observer, log: deps.Logger,
		now: func() time.Time { return now().UTC() }, metrics: m,
	}, nil
}

// Customer returns the org's Stripe customer, creating it the first time
// with an idempotency key derived from the org, so that a retry after a
// lost response, or two replicas at once, never makes a second; the email
// and name Stripe has are brought up to date.
func (s *Service) Customer(ctx context.Context, orgID int64) (Customer, error) {
	contact, err := s.store.Contact(ctx, orgID)
	if err != nil {
		return Customer{}, err
	}
	c, err := s.store.Customer(ctx, orgID)
	switch {
	case err == nil:
		return c, s.sync(ctx, c, contact)
	case errcode.Of(err) != errcode.NotFound:
		return Customer{}, err
	}
	id, err := s.api.createCustomer(ctx, orgID, contact.Email, contact.Name)
	if err != nil {
		return Customer{}, err
	}
	now := s.now()
	c, err = s.store.SaveCustomer(ctx, Customer{OrgID: orgID, CustomerID: id, Email: contact.Email, Name: contact.Name,
		CreatedAt: now, UpdatedAt: now})
	if err != nil {
		return Customer{}, err
	}
	return c, s.sync(ctx, c, contact)
}

// SyncCustomer brings the email and name of the org's Stripe customer up
// to date, if it has one.
func (s *Service) SyncCustomer(ctx context.Context, orgID int64) error {
	c, err := s.store.Customer(ctx, orgID)
	if errcode.Of(err) == errcode.NotFound {
		return nil
	}
	if err != nil {
		return err
	}
	contact, err := s.store.Contact(ctx, orgID)
	if err != nil {
		return err
	}
	return s.sync(ctx, c, contact)
}

func (s *Service) sync(ctx context.Context, c Customer, contact Contact) error {
	if c.Email == contact.Email && c.Name == contact.Name {
		return nil
	}
	if err := s.api.updateCustomer(ctx, c.CustomerID, contact.Email, contact.Name); err != nil {
		return err
	}
	return s.store.UpdateCustomerContact(ctx, c.OrgID, contact.Email, contact.Name, s.now())
}

// TopUp starts a top-up of amount for an org: a pending top-up row, then
// a Checkout Session whose metadata carries the org and the top-up, whose
// URL the payer follows. actor is who asks ("user:42").
func (s *Service) TopUp(ctx context.Context, orgID int64, amount billing.Micros, actor string) (TopUp, error) {
	if amount < s.cfg.MinTopUp || amount > s.cfg.MaxTopUp {
		return TopUp{}, errcode.Invalid("amount", fmt.Sprintf("must be between %s and %s",
			billing.FormatMicros(s.cfg.MinTopUp), billing.FormatMicros(s.cfg.MaxTopUp)))
	}
	currency, err := s.store.CurrencyOf(ctx, orgID, s.cfg.Currency)
	if err != nil {
		return TopUp{}, err
	}
	minor, err := ToMinor(amount, currency)
	if err != nil {
		return TopUp{}, err
	}
	cust, err := s.Customer(ctx, orgID)
	if err != nil {
		return TopUp{}, err
	}
	now := s.now()
	t, err := s.store.CreateTopUp(ctx, TopUp{OrgID: orgID, Amount: amount, Currency: currency, Status: TopUpPending,
		CreatedBy: actor, CreatedAt: now, UpdatedAt: now},
		Audit{Actor: actor, Action: "billing.topup.start", Target: orgTarget(orgID),
			Detail: map[string]any{"amount": billing.FormatMicros(amount), "currency": currency}})
	if err != nil {
		return TopUp{}, err
	}
	auto, err := s.store.AutoTopUp(ctx, orgID)
	if err != nil && errcode.Of(err) != errcode.NotFound {
		return TopUp{}, err
	}
	id, url, err := s.api.createCheckout(ctx, checkout{customerID: cust.CustomerID, topUpID: t.ID, orgID: orgID,
		minor: minor, currency: currency, success: s.cfg.SuccessURL, cancel: s.cfg.CancelURL, saveForLater: auto.Enabled})
	if err != nil {
		_ = s.store.FailTopUp(ctx, t.ID, "checkout session not created", s.now())
		return TopUp{}, err
	}
	if err := s.store.SetTopUpCheckout(ctx, t.ID, id, url, s.now()); err != nil {
		return TopUp{}, err
	}
	t.CheckoutSessionID, t.CheckoutURL = id, url
	return t, nil
}

// SetAutoTopUp stores an org's automatic top-up setting.
func (s *Service) SetAutoTopUp(ctx context.Context, a AutoTopUp, actor string) (AutoTopUp, error) {
	switch {
	case a.OrgID <= 0:
		return AutoTopUp{}, errcode.Invalid("org", "is required")
	case a.Threshold < 0:
		return AutoTopUp{}, errcode.Invalid("threshold", "must not be negative")
	case a.Amount < s.cfg.MinTopUp || a.Amount > s.cfg.MaxTopUp:
		return AutoTopUp{}, errcode.Invalid("amount", fmt.Sprintf("must be between %s and %s",
			billing.FormatMicros(s.cfg.MinTopUp), billing.FormatMicros(s.cfg.MaxTopUp)))
	case a.Enabled && a.PaymentMethodID == "":
		return AutoTopUp{}, errcode.Invalid("paymentMethodId", "is required to enable automatic top-ups")
	case len(a.PaymentMethodID) > 255:
		return AutoTopUp{}, errcode.Invalid("paymentMethodId", "is too long")
	}
	a.UpdatedBy, a.UpdatedAt = actor, s.now()
	return s.store.SetAutoTopUp(ctx, a, Audit{Actor: actor, Action: "billing.autotopup.set", Target: orgTarget(a.OrgID),
		Detail: map[string]any{"enabled": a.Enabled, "threshold": billing.FormatMicros(a.Threshold),
			"amount": billing.FormatMicros(a.Amount)}})
}

// AutoTopUp returns an org's automatic top-up setting; a disabled zero
// setting when it has none.
func (s *Service) AutoTopUp(ctx context.Context, orgID int64) (AutoTopUp, error) {
	a, err := s.store.AutoTopUp(ctx, orgID)
	if errcode.Of(err) == errcode.NotFound {
		return AutoTopUp{OrgID: orgID}, nil
	}
	return a, err
}

// RunAutoTopUps charges the saved payment method of every org whose
// usable balance is below its threshold, at most one pending per org; the
// payment_intent.succeeded or payment_intent.payment_failed webhook
// settles each, exactly as it settles a Checkout top-up.
func (s *Service) RunAutoTopUps(ctx context.Context) (int, error) {
	now := s.now()
	// First the top-ups an earlier run recorded and never charged: each
	// blocks its org's next one while it is pending.
	var errs []error
	if err := s.chargeUncharged(ctx, now); err != nil {
		errs = append(errs, err)
	}
	due, err := s.store.DueAutoTopUps(ctx, now, now.Add(-s.cfg.AutoTopUpRetry), s.cfg.Currency)
	if err != nil {
		return 0, errors.Join(append(errs, err)...)
	}
	started := 0
	for _, d := range due {
		if err := s.autoTopUp(ctx, d); err != nil {
			if errcode.Of(err) == errcode.Conflict {
				continue // another replica or run started it
			}
			errs = append(errs, fmt.Errorf("automatic top-up of org %d: %w", d.OrgID, err))
			continue
		}
		started++
	}
	return started, errors.Join(errs...)
}

// Charging an uncharged top-up again is safe only with the idempotency
// key of the first attempt, which Stripe keeps 24 hours: a charge that did
// reach Stripe is answered, not repeated. An automatic top-up is left
// uncharged this long before it is taken for stopped (a charge takes
// seconds), and failed once Stripe may have forgotten its key.
const (
	unchargedAfter   = 10 * time.Minute
	idempotencyLimit = 23 * time.Hour
)

// chargeUncharged charges, under their first idempotency key, the
// automatic top-ups that a run recorded and stopped before charging, and
// fails those too old for the key to hold.
func (s *Service) chargeUncharged(ctx context.Context, now time.Time) error {
	stale, err := s.store.UnchargedAutoTopUps(ctx, now.Add(-unchargedAfter))
	if err != nil {
		return err
	}
	var errs []error
	for _, u := range stale {
		if now.Sub(u.CreatedAt) > idempotencyLimit || u.PaymentMethodID == "" {
			reason := "never charged: stopped before Stripe answered, too long ago to charge again safely"
			if u.PaymentMethodID == "" {
				reason = "never charged: the automatic top-up setting is gone"
			}
			if err := s.store.FailTopUp(ctx, u.ID, reason, s.now()); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		t := TopUp{ID: u.ID, OrgID: u.OrgID, Amount: u.Amount, Currency: u.Currency}
		if err := s.charge(ctx, t, u.CustomerID, u.PaymentMethodID); err != nil {
			errs = append(errs, fmt.Errorf("charging automatic top-up %d again: %w", u.ID, err))
		}
	}
	return errors.Join(errs...)
}

func (s *Service) autoTopUp(ctx context.Context, d AutoTopUpDue) error {
	if _, err := ToMinor(d.Amount, d.Currency); err != nil {
		return err
	}
	now := s.now()
	t, err := s.store.CreateTopUp(ctx, TopUp{OrgID: d.OrgID, Amount: d.Amount, Currency: d.Currency, Automatic: true,
		Status: TopUpPending, CreatedBy: "system:billing", CreatedAt: now, UpdatedAt: now},
		Audit{Actor: "system:billing", Action: "billing.topup.auto", Target: orgTarget(d.OrgID),
			Detail: map[string]any{"amount": billing.FormatMicros(d.Amount), "usable": billing.FormatMicros(d.Usable)}})
	if err != nil {
		return err
	}
	return s.charge(ctx, t, d.CustomerID, d.PaymentMethodID)
}

// charge charges a recorded automatic top-up off-session, under an
// idempotency key of its id, and records the PaymentIntent; its webhook
// credits it. A refusal fails the top-up.
func (s *Service) charge(ctx context.Context, t TopUp, customerID, paymentMethodID string) error {
	minor, err := ToMinor(t.Amount, t.Currency)
	if err != nil {
		return err
	}
	pi, err := s.api.chargeOffSession(ctx, offSession{customerID: customerID, paymentMethodID: paymentMethodID,
		topUpID: t.ID, orgID: t.OrgID, minor: minor, currency: t.Currency})
	if err != nil {
		_ = s.store.FailTopUp(ctx, t.ID, "payment declined or not attempted", s.now())
		return err
	}
	if err := s.store.SetTopUpPaymentIntent(ctx, t.ID, pi.ID, s.now()); err != nil {
		return err
	}
	s.metrics.autoTopUps.Inc()
	return nil
}

func orgTarget(orgID int64) string { return fmt.Sprintf("org:%d", orgID) }
