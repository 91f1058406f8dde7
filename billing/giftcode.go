package billing

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/tenancy"
)

// GiftCode is a code that grants credit to each org that redeems it. Only
// a hash of the code is kept.
type GiftCode struct {
	ID       int64
	Amount   Micros
	Currency string
	// ExpiresAt is when the code stops being redeemable.
	ExpiresAt time.Time
	// CreditValidFor is how long the credit of a redemption lasts; zero
	// means it never expires.
	CreditValidFor time.Duration
	MaxRedemptions int
	Redemptions    int
	Note           string
	CreatedBy      string
	CreatedAt      time.Time
}

// GiftCodeInput is what a platform admin asks for when creating a code.
type GiftCodeInput struct {
	Amount         Micros
	Currency       string
	ExpiresAt      time.Time
	CreditValidFor time.Duration
	MaxRedemptions int
	Note           string
}

// Bounds of a gift code.
const (
	// MaxGiftCodeRedemptions bounds how many orgs may redeem one code.
	MaxGiftCodeRedemptions = 1_000_000
	// MaxGiftCodeNote bounds the note's length in bytes.
	MaxGiftCodeNote = 500
	// giftCodeGroups × giftCodeGroupLen characters, 5 bits each: 100 bits.
	giftCodeGroups   = 5
	giftCodeGroupLen = 4
)

// Validate checks the input against now.
func (in GiftCodeInput) Validate(now time.Time) error {
	switch {
	case in.Amount <= 0:
		return errcode.Invalid("amount", "must be positive")
	case !ValidCurrency(in.Currency):
		return errcode.Invalid("currency", "must be a three-letter upper-case code")
	case !in.ExpiresAt.After(now):
		return errcode.Invalid("expiresAt", "must be in the future")
	case in.CreditValidFor < 0:
		return errcode.Invalid("creditValidFor", "must not be negative")
	case in.CreditValidFor > 0 && in.CreditValidFor < time.Hour:
		return errcode.Invalid("creditValidFor", "must be at least an hour, or zero for credit that never expires")
	case in.MaxRedemptions < 1 || in.MaxRedemptions > MaxGiftCodeRedemptions:
		return errcode.Invalid("maxRedemptions", fmt.Sprintf("must be between 1 and %d", MaxGiftCodeRedemptions))
	case len(in.Note) > MaxGiftCodeNote:
		return errcode.Invalid("note", fmt.Sprintf("must be at most %d bytes", MaxGiftCodeNote))
	}
	return nil
}

// giftCodeAlphabet is Crockford's base 32: no I, L, O or U, so a code read
// aloud or typed cannot be misread.
const giftCodeAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// NewGiftCodeSecret returns a fresh random code such as
// "7QK2-M9XD-0AR4-PZ3E-HV6T": 100 bits from crypto/rand.
func NewGiftCodeSecret() (string, error) {
	raw := make([]byte, giftCodeGroups*giftCodeGroupLen)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("reading random bytes: %w", err)
	}
	var b strings.Builder
	for i, r := range raw {
		if i > 0 && i%giftCodeGroupLen == 0 {
			b.WriteByte('-')
		}
		b.WriteByte(giftCodeAlphabet[r&31])
	}
	return b.String(), nil
}

// NormalizeGiftCode returns the code as it is hashed: upper case, without
// dashes or spaces, with the letters Crockford's base 32 reads as digits
// (O → 0, I and L → 1) replaced. It returns "" for anything that cannot be
// a code.
func NormalizeGiftCode(s string) string {
	if len(s) > 64 {
		return ""
	}
	var b strings.Builder
	for _, r := range strings.ToUpper(s) {
		switch {
		case r == '-' || r == ' ':
			continue
		case r == 'O':
			r = '0'
		case r == 'I' || r == 'L':
			r = '1'
		}
		if !strings.ContainsRune(giftCodeAlphabet, r) {
			return ""
		}
		b.WriteRune(r)
	}
	if b.Len() != giftCodeGroups*giftCodeGroupLen {
		return ""
	}
	return b.String()
}

// HashGiftCode returns the hex SHA-256 of a normalised code, the only
// form of it that is stored. The code carries 100 random bits, so a plain
// hash suffices: there is no dictionary to attack.
func HashGiftCode(normalized string) string {
	sum := sha256.Sum256([]byte(normalized))
	return hex.EncodeToString(sum[:])
}

// GiftCodeRedemption is one org's redemption of a code.
type GiftCodeRedemption struct {
	GiftCodeID int64
	OrgID      int64
	// Reference is the ledger reference of the credit posted.
	Reference  string
	RedeemedBy string
	RedeemedAt time.Time
	Posted     Posted
}

// GiftCodeStore keeps gift codes; billingstore.Store is one.
type GiftCodeStore interface {
	// CreateGiftCode stores a code by its hash, with an audit row.
	CreateGiftCode(ctx context.Context, hash string, in GiftCodeInput, by tenancy.Actor, now time.Time) (GiftCode, error)
	// RedeemGiftCode redeems the code with hash for org at now in one
	// transaction: the redemption, the count, the gift_code credit
	// through the ledger, and an audit row. Unknown or expired codes are
	// NOT_FOUND; a code used up, or already redeemed by org, CONFLICT.
	RedeemGiftCode(ctx context.Context, hash string, orgID int64, by tenancy.Actor, now time.Time) (GiftCodeRedemption, error)
	// GiftCodes lists codes, newest first, with IDs below beforeID when
	// it is positive.
	GiftCodes(ctx context.Context, beforeID int64, limit int) ([]GiftCode, error)
	// HitRateLimit counts one event for key in the fixed window that
	// starts at windowStart and returns its count and the previous
	// window's (the rate_limits table that tenancy also uses).
	HitRateLimit(ctx context.Context, key string, windowStart time.Time, window time.Duration) (cur, prev int, err error)
}

// GiftCodeConfig bounds redemption attempts, which are guesses at codes.
type GiftCodeConfig struct {
	// RedeemPerUser bounds attempts by one user.
	RedeemPerUser tenancy.RateLimit
	// RedeemPerOrg bounds attempts for one org, by all its members.
	RedeemPerOrg tenancy.RateLimit
}

// DefaultGiftCodeConfig allows ten attempts an hour per user and twenty
// per org.
func DefaultGiftCodeConfig() GiftCodeConfig {
	return GiftCodeConfig{
		RedeemPerUser: tenancy.RateLimit{Max: 10, Window: time.Hour},
		RedeemPerOrg:  tenancy.RateLimit{Max: 20, Window: time.Hour},
	}
}

// GiftCodes creates and redeems gift codes.
type GiftCodes struct {
	store GiftCodeStore
	cfg   GiftCodeConfig
	log   *slog.Logger
	now   func() time.Time
	// observer, when set, hears of each redemption after it commits.
	observer BalanceObserver
}

// NewGiftCodes returns the gift code service. observer may be nil.
func NewGiftCodes(store GiftCodeStore, cfg GiftCodeConfig, observer BalanceObserver, log *slog.Logger, now func() time.Time) (*GiftCodes, error) {
	if store == nil || now == nil {
		return nil, errors.New("gift codes: store and clock are required")
	}
	for name, l := range map[string]tenancy.RateLimit{"per user": cfg.RedeemPerUser, "per org": cfg.RedeemPerOrg} {
		if l.Max <= 0 || l.Window < time.Second {
			return nil, fmt.Errorf("gift codes: rate limit %s needs Max > 0 and Window >= 1s", name)
		}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &GiftCodes{store: store, cfg: cfg, log: log, now: func() time.Time { return now().UTC() }, observer: observer}, nil
}

// Create makes a code for the acting platform admin and returns it in
// clear, the one time it is ever shown. The caller has authorised the
// admin.
func (g *GiftCodes) Create(ctx context.Context, in GiftCodeInput) (string, GiftCode, error) {
	now := g.now()
	in.ExpiresAt = in.ExpiresAt.UTC()
	in.Note = strings.TrimSpace(in.Note)
	if err := in.Validate(now); err != nil {
		return "", GiftCode{}, err
	}
	code, err := NewGiftCodeSecret()
	if err != nil {
		return "", GiftCode{}, err
	}
	a, _ := tenancy.ActorFrom(ctx)
	gc, err := g.store.CreateGiftCode(ctx, HashGiftCode(NormalizeGiftCode(code)), in, a, now)
	if err != nil {
		return "", GiftCode{}, fmt.Errorf("creating gift code: %w", err)
	}
	return code, gc, nil
}

// Redeem redeems code for org on behalf of the acting user, whom the
// caller has authorised for the org's billing. Every attempt counts
// against the rate limits, found or not.
func (g *GiftCodes) Redeem(ctx context.Context, orgID int64, code string) (GiftCodeRedemption, error) {
	a, _ := tenancy.ActorFrom(ctx)
	if a.UserID <= 0 {
		return GiftCodeRedemption{}, errcode.New(errcode.Unauthenticated, "authentication required")
	}
	if err := g.limit(ctx, g.cfg.RedeemPerUser, "giftcode:user:"+strconv.FormatInt(a.UserID, 10)); err != nil {
		return GiftCodeRedemption{}, err
	}
	if err := g.limit(ctx, g.cfg.RedeemPerOrg, "giftcode:org:"+strconv.FormatInt(orgID, 10)); err != nil {
		return GiftCodeRedemption{}, err
	}
	norm := NormalizeGiftCode(code)
	if norm == "" {
		return GiftCodeRedemption{}, errcode.Invalid("code", "is not a gift code")
	}
	r, err := g.store.RedeemGiftCode(ctx, HashGiftCode(norm), orgID, a, g.now())
	if err != nil {
		return GiftCodeRedemption{}, fmt.Errorf("redeeming gift code: %w", err)
	}
	if g.observer != nil {
		g.observer.BalanceChanged(ctx, orgID)
	}
	return r, nil
}

// List returns up to limit codes, newest first, below beforeID when it is
// positive.
func (g *GiftCodes) List(ctx context.Context, beforeID int64, limit int) ([]GiftCode, error) {
	return g.store.GiftCodes(ctx, beforeID, limit)
}

// limit counts one attempt against l for key and reports RATE_LIMITED when
// the sliding-window estimate exceeds l.Max, as tenancy's limits do.
func (g *GiftCodes) limit(ctx context.Context, l tenancy.RateLimit, key string) error {
	now := g.now()
	start := now.Truncate(l.Window)
	cur, prev, err := g.store.HitRateLimit(ctx, key, start, l.Window)
	if err != nil {
		return fmt.Errorf("counting gift code attempts: %w", err)
	}
	elapsed := min(max(now.Sub(start), 0), l.Window)
	if float64(cur)+float64(prev)*float64(l.Window-elapsed)/float64(l.Window) > float64(l.Max) {
		return errcode.New(errcode.RateLimited, "too many attempts, try again later")
	}
	return nil
}
