package billing

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/tenancy"
)

// MaxAdminReason bounds the reason an admin gives for a change, in bytes.
const MaxAdminReason = 500

// MaxIdempotencyKey bounds the key that makes an admin's posting safe to
// retry.
const MaxIdempotencyKey = 100

// AdminReason checks and trims the reason an admin gives: required,
// printable, at most MaxAdminReason bytes.
func AdminReason(s string) (string, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return "", errcode.Invalid("reason", "is required")
	case len(s) > MaxAdminReason:
		return "", errcode.Invalid("reason", fmt.Sprintf("must be at most %d bytes", MaxAdminReason))
	case !utf8.ValidString(s) || strings.ContainsFunc(s, unicode.IsControl):
		return "", errcode.Invalid("reason", "must be printable text")
	}
	return s, nil
}

// AdminPosting is an admin's change of an org's money: an adjustment of
// cash (either sign) or a grant of credit (positive, optionally
// expiring).
type AdminPosting struct {
	OrgID    int64
	Kind     Kind // KindAdjustment or KindCredit
	Amount   Micros
	Currency string
	// ExpiresAt is when granted credit expires; nil means never.
	ExpiresAt *time.Time
	Reason    string
	// IdempotencyKey makes a retry post once; empty makes a new key.
	IdempotencyKey string
}

// AdminAudit is an admin change and who made it, for the audit row written in
// its transaction.
type AdminAudit struct {
	By     tenancy.Actor
	Action string // "billing.adjust", "billing.credit", "org.plan"
	Target string // "org:7"
	Detail map[string]any
}

// AdminStore writes admin changes, each with its audit row in one
// transaction; *billingstore.Store is one.
type AdminStore interface {
	// PostAudited posts p and writes the audit row a in one transaction.
	PostAudited(ctx context.Context, p Posting, a AdminAudit) (Posted, error)
	// SetOrgPlan sets an org's plan, writes an outbox row for the
	// reconciler (key "org:ID") and the audit row a, in one transaction;
	// it returns the plan before. An unknown org or plan is NOT_FOUND.
	SetOrgPlan(ctx context.Context, orgID int64, plan string, a AdminAudit) (string, error)
	// Invoice returns org's invoice id; one of another org is NOT_FOUND.
	Invoice(ctx context.Context, orgID, id int64) (Invoice, error)
	// VoidInvoice moves a draft or finalised invoice to void with the
	// reason, and writes its audit row, in one transaction.
	VoidInvoice(ctx context.Context, id int64, reason string, by tenancy.Actor) (Invoice, error)
	// MarkInvoicePaid moves a finalised invoice to paid, posts payment
	// when it is set, and writes the audit row with the reason, in one
	// transaction.
	MarkInvoicePaid(ctx context.Context, id int64, payment *Posting, reason string, by tenancy.Actor) (Invoice, error)
}

// Admin performs platform admins' changes to money, plans and invoices. The GraphQL
// layer authorizes each call; Admin refuses anyone but a platform admin
// or the platform itself once more, validates, and records the reason.
type Admin struct {
	store AdminStore
	now   func() time.Time
}

// NewAdmin returns an Admin over store; now stamps the postings.
func NewAdmin(store AdminStore, now func() time.Time) (*Admin, error) {
	if store == nil || now == nil {
		return nil, errors.New("billing admin: a store and a clock are required")
	}
	return &Admin{store: store, now: func() time.Time { return now().UTC() }}, nil
}

func adminActor(ctx context.Context) (tenancy.Actor, string, error) {
	a, ok := tenancy.ActorFrom(ctx)
	switch {
	case !ok || (a.UserID == 0 && a.System == ""):
		return a, "", errcode.New(errcode.Unauthenticated, "authentication required")
	case a.UserID != 0 && !a.PlatformAdmin:
		return a, "", errcode.New(errcode.Forbidden, "platform admins only")
	}
	return a, a.Key(), nil
}

func orgTarget(id int64) string { return "org:" + strconv.FormatInt(id, 10) }

// Post adjusts a balance or grants credit, with the ledger entry and the
// audit row in one transaction.
func (m *Admin) Post(ctx context.Context, in AdminPosting) (Posted, error) {
	a, actor, err := adminActor(ctx)
	if err != nil {
		return Posted{}, err
	}
	if in.Reason, err = AdminReason(in.Reason); err != nil {
		return Posted{}, err
	}
	var action string
	switch in.Kind {
	case KindAdjustment:
		action = "billing.adjust"
	case KindCredit:
		action = "billing.credit"
		if in.Amount <= 0 {
			return Posted{}, errcode.Invalid("amount", "credit must be positive")
		}
	default:
		return Posted{}, errcode.Invalid("kind", "admins adjust balances or grant credit")
	}
	key := strings.TrimSpace(in.IdempotencyKey)
	if len(key) > MaxIdempotencyKey || strings.ContainsFunc(key, unicode.IsControl) {
		return Posted{}, errcode.Invalid("idempotencyKey", fmt.Sprintf("must be printable and at most %d bytes", MaxIdempotencyKey))
	}
	if key == "" {
		b := make([]byte, 12)
		_, _ = rand.Read(b)
		key = hex.EncodeToString(b)
	}
	at := m.now()
	p := Posting{
		OrgID: in.OrgID, Kind: in.Kind, Amount: in.Amount, Currency: in.Currency,
		Reference:   fmt.Sprintf("admin:%s:org:%d:%s", in.Kind, in.OrgID, key),
		Description: in.Reason, Actor: actor, At: at, ExpiresAt: in.ExpiresAt,
	}
	if err := p.Validate(); err != nil {
		return Posted{}, err
	}
	detail := map[string]any{"amount": FormatMicros(in.Amount), "currency": in.Currency, "reason": in.Reason, "reference": p.Reference}
	if in.ExpiresAt != nil {
		detail["expires_at"] = in.ExpiresAt.UTC().Format(time.RFC3339)
	}
	posted, err := m.store.PostAudited(ctx, p, AdminAudit{By: a, Action: action, Target: orgTarget(in.OrgID), Detail: detail})
	if err != nil {
		return Posted{}, fmt.Errorf("%s org %d: %w", action, in.OrgID, err)
	}
	return posted, nil
}

// ChangePlan sets an org's plan with the reason, and returns the plan
// before. The reconciler applies the plan's quotas to the org's
// namespaces.
func (m *Admin) ChangePlan(ctx context.Context, orgID int64, plan, reason string) (string, error) {
	a, _, err := adminActor(ctx)
	if err != nil {
		return "", err
	}
	if reason, err = AdminReason(reason); err != nil {
		return "", err
	}
	plan = strings.TrimSpace(plan)
	if !validPlanName(plan) {
		return "", errcode.Invalid("plan", "must be a plan name: lower-case letters, digits and '-', at most 63")
	}
	old, err := m.store.SetOrgPlan(ctx, orgID, plan, AdminAudit{By: a, Action: "org.plan", Target: orgTarget(orgID),
		Detail: map[string]any{"plan": plan, "reason": reason}})
	if err != nil {
		return "", fmt.Errorf("changing plan of org %d: %w", orgID, err)
	}
	return old, nil
}

func validPlanName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' && i > 0) {
			return false
		}
	}
	return true
}

// VoidInvoice cancels an org's draft or finalised invoice with the reason.
// No money moves: the charges it summed stay in the ledger, and an admin
// gives money back with an adjustment.
func (m *Admin) VoidInvoice(ctx context.Context, orgID, id int64, reason string) (Invoice, error) {
	a, _, err := adminActor(ctx)
	if err != nil {
		return Invoice{}, err
	}
	if reason, err = AdminReason(reason); err != nil {
		return Invoice{}, err
	}
	if _, err := m.store.Invoice(ctx, orgID, id); err != nil {
		return Invoice{}, fmt.Errorf("voiding invoice %d of org %d: %w", id, orgID, err)
	}
	inv, err := m.store.VoidInvoice(ctx, id, reason, a)
	if err != nil {
		return Invoice{}, fmt.Errorf("voiding invoice %d of org %d: %w", id, orgID, err)
	}
	return inv, nil
}

// InvoicePaymentReference is the ledger reference of the payment an admin
// records for invoice id, so that it is posted at most once.
func InvoicePaymentReference(id int64) string {
	return "admin:invoice:" + strconv.FormatInt(id, 10) + ":paid"
}

// MarkInvoicePaid records that an org paid its finalised postpaid invoice
// outside Stripe, by bank transfer say: the invoice becomes paid and a
// payment of its total (when positive) is posted to the org's cash, in one
// transaction with the audit row and the reason. A prepaid statement is
// refused: its balance paid its charges as they were rated.
func (m *Admin) MarkInvoicePaid(ctx context.Context, orgID, id int64, reason string) (Invoice, error) {
	a, actor, err := adminActor(ctx)
	if err != nil {
		return Invoice{}, err
	}
	if reason, err = AdminReason(reason); err != nil {
		return Invoice{}, err
	}
	inv, err := m.store.Invoice(ctx, orgID, id)
	if err != nil {
		return Invoice{}, fmt.Errorf("marking invoice %d of org %d paid: %w", id, orgID, err)
	}
	if inv.BillingMode != Postpaid {
		return Invoice{}, errcode.New(errcode.Conflict, "a prepaid statement is settled by the balance as its charges are rated; only postpaid invoices are paid")
	}
	if err := CheckInvoiceTransition(inv.Status, InvoiceStatusPaid); err != nil {
		return Invoice{}, err
	}
	var payment *Posting
	if inv.Total > 0 {
		payment = &Posting{OrgID: inv.OrgID, Kind: KindPayment, Amount: inv.Total, Currency: inv.Currency,
			Reference: InvoicePaymentReference(inv.ID), Description: reason, Actor: actor, At: m.now()}
		if err := payment.Validate(); err != nil {
			return Invoice{}, err
		}
	}
	paid, err := m.store.MarkInvoicePaid(ctx, id, payment, reason, a)
	if err != nil {
		return Invoice{}, fmt.Errorf("marking invoice %d of org %d paid: %w", id, orgID, err)
	}
	return paid, nil
}
