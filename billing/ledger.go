package billing

import (
	"context"
	"time"

	"github.com/tenantplane/tenantplane/internal/errcode"
)

// Kind says what a ledger entry is for.
type Kind string

// The kinds of ledger entries.
const (
	// KindCharge is rated usage (negative), or a correction of it.
	KindCharge Kind = "charge"
	// KindTopUp is prepaid money received (positive, cash).
	KindTopUp Kind = "top_up"
	// KindPayment is a postpaid invoice paid (positive, cash).
	KindPayment Kind = "payment"
	// KindCredit is credit granted by the platform (positive, a grant).
	KindCredit Kind = "credit"
	// KindGiftCode is credit from a redeemed gift code (positive, a grant).
	KindGiftCode Kind = "gift_code"
	// KindCreditExpiry writes off what a grant had left at its expiry.
	KindCreditExpiry Kind = "credit_expiry"
	// KindRefund is money given back to the payer (negative, cash).
	KindRefund Kind = "refund"
	// KindDispute is money taken back by a chargeback (negative, cash).
	KindDispute Kind = "dispute"
	// KindAdjustment is an admin's correction with a reason (either sign,
	// cash).
	KindAdjustment Kind = "adjustment"
)

// Account says which part of a balance an entry moves.
type Account string

// The two parts of a balance.
const (
	// Cash is money paid in, less what it paid for.
	Cash Account = "cash"
	// Credit is granted credit, held in grants with optional expiry.
	Credit Account = "credit"
)

// MaxReference bounds the length of a posting's reference.
const MaxReference = 200

// Posting is one change of an org's balance as its author states it; the
// ledger turns it into one or more entries. Reference makes it idempotent:
// a second posting with the same reference changes nothing.
type Posting struct {
	OrgID int64
	Kind  Kind
	// Amount is signed: positive adds to the balance. A negative charge is
	// paid from usable credit first, earliest expiry first, then cash.
	Amount   Micros
	Currency string
	// Reference is unique across the ledger, such as
	// "charge:org:7:2026-11-27T13:00Z" or "stripe:evt_123".
	Reference   string
	Description string
	// Actor is who caused it: "system:billing", "user:42", "stripe".
	Actor string
	// At is when the money moved (the hour charged, the payment's time).
	At time.Time
	// ExpiresAt is when credit of kind KindCredit or KindGiftCode expires;
	// nil means never.
	ExpiresAt *time.Time
}

// Validate checks a posting's fields against its kind.
func (p Posting) Validate() error {
	switch {
	case p.OrgID <= 0:
		return errcode.Invalid("org", "is required")
	case p.Amount == 0:
		return errcode.Invalid("amount", "must not be zero")
	case !ValidCurrency(p.Currency):
		return errcode.Invalid("currency", "must be a three-letter upper-case code")
	case p.Reference == "" || len(p.Reference) > MaxReference:
		return errcode.Invalid("reference", "must be 1 to 200 characters")
	case p.Actor == "":
		return errcode.Invalid("actor", "is required")
	case p.At.IsZero():
		return errcode.Invalid("at", "is required")
	}
	switch p.Kind {
	case KindTopUp, KindPayment, KindCredit, KindGiftCode:
		if p.Amount < 0 {
			return errcode.Invalid("amount", "must be positive for "+string(p.Kind))
		}
	case KindRefund, KindDispute:
		if p.Amount > 0 {
			return errcode.Invalid("amount", "must be negative for "+string(p.Kind))
		}
	case KindAdjustment:
		if p.Description == "" {
			return errcode.Invalid("reason", "is required for an adjustment")
		}
	case KindCharge:
	case KindCreditExpiry:
		return errcode.Invalid("kind", "credit expiry is posted by the ledger itself")
	default:
		return errcode.Invalid("kind", "unknown ledger entry kind")
	}
	if p.ExpiresAt != nil && p.Kind != KindCredit && p.Kind != KindGiftCode {
		return errcode.Invalid("expiresAt", "applies only to credit")
	}
	if p.ExpiresAt != nil && !p.ExpiresAt.After(p.At) {
		return errcode.Invalid("expiresAt", "must be after the grant")
	}
	return nil
}

// Entry is one row of the ledger.
type Entry struct {
	ID            int64
	OrgID         int64
	Kind          Kind
	Account       Account
	CreditGrantID int64 // 0 for cash
	Amount        Micros
	Currency      string
	Reference     string
	Part          int
	Description   string
	Actor         string
	OccurredAt    time.Time
	CreatedAt     time.Time
}

// Balance is an org's money at one moment.
type Balance struct {
	OrgID    int64
	Currency string
	// Cash is the sum of the cash entries; it is negative in debt.
	Cash Micros
	// Credit is what the grants have left, expired or not.
	Credit Micros
	// UsableCredit is the part of Credit not expired at the time asked.
	UsableCredit Micros
	UpdatedAt    time.Time
}

// Usable is what the org can still spend: cash plus unexpired credit.
func (b Balance) Usable() Micros { return b.Cash + b.UsableCredit }

// Posted is what a posting did.
type Posted struct {
	// Duplicate is true when the reference was already posted; nothing
	// changed and Entries holds the entries of the first posting.
	Duplicate bool
	Entries   []Entry
	Balance   Balance
}

// CreditGrant is credit an org holds apart from cash.
type CreditGrant struct {
	ID        int64
	OrgID     int64
	Source    Kind // KindCredit or KindGiftCode
	Amount    Micros
	Remaining Micros
	ExpiresAt *time.Time
	Reference string
	CreatedAt time.Time
}

// Mismatch is an org whose balance row differs from the sum of its ledger
// entries or of its grants.
type Mismatch struct {
	OrgID                    int64
	CashRow, CashEntries     Micros
	CreditRow, CreditEntries Micros
	CreditGrants             Micros
	EntryCountRow, Entries   int64
}

// Ledger is the append-only store of money.
type Ledger interface {
	// Post applies p in one transaction: the entries, the grant it
	// creates or the grants it uses, and the balance row.
	Post(ctx context.Context, p Posting) (Posted, error)
	// Balance returns the org's balance with credit usable at now; an
	// org without entries has a zero balance in defaultCurrency.
	Balance(ctx context.Context, orgID int64, now time.Time, defaultCurrency string) (Balance, error)
	// ExpireCredits writes off what every grant expired at or before now
	// has left, one credit_expiry entry per grant, and returns how many.
	ExpireCredits(ctx context.Context, now time.Time) (int, error)
	// Verify compares every balance row with the sums of its entries and
	// grants and returns each org where they differ.
	Verify(ctx context.Context) ([]Mismatch, error)
}

// BalanceObserver is told, after the transaction that moved an org's
// balance has committed, that the balance changed; the debt lifecycle
// implements it to warn, suspend or resume at once instead of at its next
// scheduled pass.
type BalanceObserver interface {
	BalanceChanged(ctx context.Context, orgID int64)
}
