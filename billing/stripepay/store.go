package stripepay

import (
	"context"
	"time"

	"github.com/tenantplane/tenantplane/billing"
)

// Customer is the Stripe customer of an org.
type Customer struct {
	OrgID      int64
	CustomerID string
	// Email and Name are what Stripe was last told.
	Email     string
	Name      string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Contact is who Stripe should address for an org: its display name (or
// name) and the email of its first owner.
type Contact struct {
	OrgID int64
	Email string
	Name  string
}

// TopUpStatus is where a top-up stands.
type TopUpStatus string

// The states of a top-up.
const (
	TopUpPending   TopUpStatus = "pending"
	TopUpSucceeded TopUpStatus = "succeeded"
	TopUpFailed    TopUpStatus = "failed"
)

// TopUp is money an org asked to add to its balance.
type TopUp struct {
	ID                int64
	OrgID             int64
	Amount            billing.Micros
	Currency          string
	Automatic         bool
	Status            TopUpStatus
	CheckoutSessionID string
	CheckoutURL       string
	PaymentIntentID   string
	Failure           string
	CreatedBy         string
	CreatedAt         time.Time
	UpdatedAt         time.Time
}

// AutoTopUp is an org's automatic top-up setting.
type AutoTopUp struct {
	OrgID           int64
	Enabled         bool
	Threshold       billing.Micros
	Amount          billing.Micros
	PaymentMethodID string
	UpdatedBy       string
	UpdatedAt       time.Time
}

// AutoTopUpDue is an org whose usable balance is below its automatic
// top-up threshold, with nothing under way and no recent failure.
type AutoTopUpDue struct {
	AutoTopUp
	CustomerID string
	Currency   string
	Usable     billing.Micros
}

// UnchargedTopUp is an automatic top-up recorded but never charged: the
// run that recorded it stopped before Stripe answered.
type UnchargedTopUp struct {
	ID              int64
	OrgID           int64
	Amount          billing.Micros
	Currency        string
	CreatedAt       time.Time
	CustomerID      string
	PaymentMethodID string // the org's saved one now; "" when its setting is gone
}

// StripeInvoice is where an invoice stands at Stripe.
type StripeInvoice struct {
	InvoiceID       int64
	OrgID           int64
	StripeInvoiceID string
	HostedURL       string
	Status          string // open, paid, payment_failed, void
	Amount          billing.Micros
	Currency        string
}

// RawEvent is a verified webhook event as received.
type RawEvent struct {
	ID      string
	Type    string
	Created time.Time
	Payload []byte
}

// ObjectState is the newest event applied to a Stripe object.
type ObjectState struct {
	ObjectID     string
	Status       string
	EventCreated time.Time
	EventID      string
	// Exists is false for an object no event has touched yet.
	Exists bool
}

// Payment maps a PaymentIntent that credited an org to that org.
type Payment struct {
	PaymentIntentID string
	OrgID           int64
	Purpose         string // top_up or invoice
	Amount          billing.Micros
	Currency        string
	Reference       string
}

// Charge is how much of a Stripe charge has been refunded so far.
type Charge struct {
	ChargeID string
	OrgID    int64
	Refunded billing.Micros
	Currency string
}

// Dispute is a chargeback against an org.
type Dispute struct {
	DisputeID string
	OrgID     int64
	ChargeID  string
	Amount    billing.Micros
	Currency  string
	Reason    string
}

// Audit is one audit log row written in the transaction of the change.
type Audit struct {
	Actor  string
	Action string
	Target string
	Detail map[string]any
}

// Discrepancy is a Stripe payment or event our ledger lacks or holds
// differently.
type Discrepancy struct {
	// Kind is missing_payment, amount_differs, org_differs or
	// missing_event.
	Kind     string
	ObjectID string
	OrgID    int64 // 0 when unknown
	Detail   string
}

// Reconciliation is the outcome of one reconciliation run.
type Reconciliation struct {
	ID            int64
	StartedAt     time.Time
	Since         time.Time
	Payments      int
	Events        int
	Discrepancies []Discrepancy
}

// LedgerRef is what the ledger holds under one reference.
type LedgerRef struct {
	OrgID    int64
	Amount   billing.Micros
	Currency string
}

// Store keeps what payments know; billingstore implements it.
type Store interface {
	// Customer returns the org's customer; NOT_FOUND if it has none.
	Customer(ctx context.Context, orgID int64) (Customer, error)
	// Contact returns who Stripe should address for an org.
	Contact(ctx context.Context, orgID int64) (Contact, error)
	// SaveCustomer stores c unless the org has a customer already, and
	// returns the stored one.
	SaveCustomer(ctx context.Context, c Customer) (Customer, error)
	// UpdateCustomerContact records that Stripe now has email and name.
	UpdateCustomerContact(ctx context.Context, orgID int64, email, name string, at time.Time) error
	// CurrencyOf returns the currency of the org's balance, or def when it
	// has none yet.
	CurrencyOf(ctx context.Context, orgID int64, def string) (string, error)

	// CreateTopUp stores a new pending top-up and its audit row in one
	// transaction. An automatic one fails with CONFLICT while another of
	// the org is pending.
	CreateTopUp(ctx context.Context, t TopUp, a Audit) (TopUp, error)
	// SetTopUpCheckout records the Checkout Session of a top-up.
	SetTopUpCheckout(ctx context.Context, id int64, sessionID, url string, at time.Time) error
	// SetTopUpPaymentIntent records the PaymentIntent of a top-up.
	SetTopUpPaymentIntent(ctx context.Context, id int64, pi string, at time.Time) error
	// FailTopUp marks a pending top-up failed with a reason.
	FailTopUp(ctx context.Context, id int64, reason string, at time.Time) error
	// TopUp returns one top-up; NOT_FOUND if there is none.
	TopUp(ctx context.Context, id int64) (TopUp, error)
	// SetAutoTopUp stores an org's automatic top-up setting and its audit
	// row.
	SetAutoTopUp(ctx context.Context, s AutoTopUp, a Audit) (AutoTopUp, error)
	// AutoTopUp returns an org's setting; NOT_FOUND if it has none.
	AutoTopUp(ctx context.Context, orgID int64) (AutoTopUp, error)
	// DueAutoTopUps lists the enabled settings whose org's usable balance
	// at now is below the threshold, that have a customer, nothing
	// pending, and no automatic top-up failed since failedSince.
	DueAutoTopUps(ctx context.Context, now, failedSince time.Time, defaultCurrency string) ([]AutoTopUpDue, error)
	// UnchargedAutoTopUps lists the automatic top-ups still pending
	// without a PaymentIntent that were recorded before before.
	UnchargedAutoTopUps(ctx context.Context, before time.Time) ([]UnchargedTopUp, error)

	// StripeInvoice returns what Stripe has of our invoice; NOT_FOUND if
	// it was not pushed yet.
	StripeInvoice(ctx context.Context, invoiceID int64) (StripeInvoice, error)
	// SaveStripeInvoice records an invoice pushed to Stripe, with an audit
	// row.
	SaveStripeInvoice(ctx context.Context, inv StripeInvoice, at time.Time) error
	// UnpushedInvoices lists up to limit finalized postpaid invoices, with
	// their lines, that have not been pushed to Stripe, oldest first.
	UnpushedInvoices(ctx context.Context, limit int) ([]billing.Invoice, error)

	// RecordEvent stores a verified event unless it is stored already, and
	// reports whether it has been processed.
	RecordEvent(ctx context.Context, e RawEvent, at time.Time) (processed bool, err error)
	// ProcessEvent runs fn in one transaction with the event's row locked,
	// unless the event was processed already (duplicate true); when fn
	// succeeds it marks the event processed with fn's outcome in the same
	// transaction.
	ProcessEvent(ctx context.Context, id string, at time.Time, fn func(EventTx) (string, error)) (duplicate bool, err error)
	// EventFailed counts a failed attempt at an event and keeps its error.
	EventFailed(ctx context.Context, id, msg string) error

	// LedgerRefs returns what the ledger holds under each of refs that it
	// has.
	LedgerRefs(ctx context.Context, refs []string) (map[string]LedgerRef, error)
	// ProcessedEvents returns which of ids have been processed.
	ProcessedEvents(ctx context.Context, ids []string) (map[string]bool, error)
	// SaveReconciliation stores a run and its discrepancies and drops the
	// older runs.
	SaveReconciliation(ctx context.Context, r Reconciliation) (Reconciliation, error)
	// LastReconciliation returns the newest run; NOT_FOUND before the
	// first.
	LastReconciliation(ctx context.Context) (Reconciliation, error)
}

// EventTx is what processing one event may do, inside its transaction.
type EventTx interface {
	// Post moves money through the ledger.
	Post(ctx context.Context, p billing.Posting) (billing.Posted, error)
	// LockObject returns the newest event applied to a Stripe object,
	// locking it until the transaction ends.
	LockObject(ctx context.Context, objectID string) (ObjectState, error)
	// SetObject records s as the newest event applied to its object.
	SetObject(ctx context.Context, s ObjectState, at time.Time) error
	// TopUp returns a top-up; NOT_FOUND if there is none.
	TopUp(ctx context.Context, id int64) (TopUp, error)
	// SetTopUpStatus sets a top-up's status, PaymentIntent (when not
	// empty) and failure reason.
	SetTopUpStatus(ctx context.Context, id int64, status TopUpStatus, pi, failure string, at time.Time) error
	// RecordPayment maps a PaymentIntent to the org it credited; a second
	// record of the same PaymentIntent changes nothing.
	RecordPayment(ctx context.Context, p Payment, at time.Time) error
	// PaymentOrg returns the org a PaymentIntent credited, if any.
	PaymentOrg(ctx context.Context, pi string) (int64, bool, error)
	// CustomerOrg returns the org of a Stripe customer, if any.
	CustomerOrg(ctx context.Context, customerID string) (int64, bool, error)
	// Charge returns what has been refunded of a charge, if it is known.
	Charge(ctx context.Context, chargeID string) (Charge, bool, error)
	// SaveCharge records what has been refunded of a charge.
	SaveCharge(ctx context.Context, c Charge, at time.Time) error
	// RecordDispute stores a dispute; a second record changes nothing.
	RecordDispute(ctx context.Context, d Dispute, at time.Time) error
	// InvoiceByStripeID returns a pushed invoice by its Stripe id, if any.
	InvoiceByStripeID(ctx context.Context, stripeID string) (StripeInvoice, bool, error)
	// SetInvoiceStatus sets a pushed invoice's status; paid and void also
	// move our invoice to that state when it may still move there.
	SetInvoiceStatus(ctx context.Context, invoiceID int64, status string, at time.Time) error
	// Audit writes an audit log row.
	Audit(ctx context.Context, a Audit, at time.Time) error
}
