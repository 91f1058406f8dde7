package billingstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/tenancy"
)

var _ billing.GiftCodeStore = (*Store)(nil)

const (
	giftCodeColumns = `id, amount_micros, currency, expires_at, coalesce(extract(epoch FROM credit_valid_for), 0)::bigint,
	max_redemptions, redemptions, note, created_by, created_at`
	qInsertGiftCode = `INSERT INTO gift_codes (code_hash, amount_micros, currency, expires_at, credit_valid_for,
	max_redemptions, note, created_by, created_at)
	VALUES ($1, $2, $3, $4, CASE WHEN $5::bigint > 0 THEN make_interval(secs => $5::bigint) END, $6, $7, $8, $9)
	RETURNING ` + giftCodeColumns
	// qLockGiftCode locks the code so that concurrent redemptions count
	// one at a time.
	qLockGiftCode     = `SELECT ` + giftCodeColumns + ` FROM gift_codes WHERE code_hash = $1 FOR UPDATE`
	qRedeemed         = `SELECT EXISTS (SELECT 1 FROM gift_code_redemptions WHERE gift_code_id = $1 AND org_id = $2)`
	qInsertRedemption = `INSERT INTO gift_code_redemptions (gift_code_id, org_id, reference, redeemed_by, redeemed_at)
	VALUES ($1, $2, $3, $4, $5)`
	qCountRedemption = `UPDATE gift_codes SET redemptions = redemptions + 1 WHERE id = $1`
	qGiftCodes       = `SELECT ` + giftCodeColumns + ` FROM gift_codes ORDER BY id DESC LIMIT $1`
	qGiftCodesBefore = `SELECT ` + giftCodeColumns + ` FROM gift_codes WHERE id < $1 ORDER BY id DESC LIMIT $2`
	// qHitRateLimit is tenancy's sliding-window counter over the same
	// table: the current window's count and the previous one's.
	qHitRateLimit = `INSERT INTO rate_limits AS r (key, window_start, count, prev_count) VALUES ($1, $2, 1, 0)
	ON CONFLICT (key) DO UPDATE SET
	  prev_count = CASE WHEN r.window_start >= EXCLUDED.window_start THEN r.prev_count
	                    WHEN r.window_start = EXCLUDED.window_start - $3::interval THEN r.count
	                    ELSE 0 END,
	  count = CASE WHEN r.window_start >= EXCLUDED.window_start THEN r.count + 1 ELSE 1 END,
	  window_start = GREATEST(r.window_start, EXCLUDED.window_start)
	RETURNING count, prev_count`
)

func scanGiftCode(r pgx.Row) (billing.GiftCode, error) {
	var g billing.GiftCode
	var validSecs int64
	err := r.Scan(&g.ID, &g.Amount, &g.Currency, &g.ExpiresAt, &validSecs, &g.MaxRedemptions, &g.Redemptions,
		&g.Note, &g.CreatedBy, &g.CreatedAt)
	g.CreditValidFor = time.Duration(validSecs) * time.Second
	g.ExpiresAt, g.CreatedAt = g.ExpiresAt.UTC(), g.CreatedAt.UTC()
	return g, err
}

// CreateGiftCode implements billing.GiftCodeStore.
func (s *Store) CreateGiftCode(ctx context.Context, hash string, in billing.GiftCodeInput, by tenancy.Actor, now time.Time) (billing.GiftCode, error) {
	var g billing.GiftCode
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		g, err = scanGiftCode(tx.QueryRow(ctx, qInsertGiftCode, hash, in.Amount, in.Currency, in.ExpiresAt.UTC(),
			int64(in.CreditValidFor/time.Second), in.MaxRedemptions, in.Note, by.Key(), now.UTC()))
		if err != nil {
			return storeErr("writing gift code", "gift code", err)
		}
		return writeAudit(ctx, tx, audit(by, now, "billing.giftcode.create", "giftcode:"+strconv.FormatInt(g.ID, 10), map[string]any{
			"amount_micros": in.Amount, "currency": in.Currency, "expires_at": in.ExpiresAt.UTC(),
			"credit_valid_for_seconds": int64(in.CreditValidFor / time.Second), "max_redemptions": in.MaxRedemptions,
		}))
	})
	return g, err
}

// RedeemGiftCode implements billing.GiftCodeStore.
func (s *Store) RedeemGiftCode(ctx context.Context, hash string, orgID int64, by tenancy.Actor, now time.Time) (billing.GiftCodeRedemption, error) {
	now = now.UTC()
	var out billing.GiftCodeRedemption
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		g, err := scanGiftCode(tx.QueryRow(ctx, qLockGiftCode, hash))
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && !g.ExpiresAt.After(now)) {
			return errcode.New(errcode.NotFound, "no such gift code, or it has expired")
		}
		if err != nil {
			return storeErr("reading gift code", "gift code", err)
		}
		var done bool
		if err := tx.QueryRow(ctx, qRedeemed, g.ID, orgID).Scan(&done); err != nil {
			return storeErr("reading gift code redemptions", "gift code", err)
		}
		if done {
			return errcode.New(errcode.Conflict, "this org has already redeemed the gift code")
		}
		if g.Redemptions >= g.MaxRedemptions {
			return errcode.New(errcode.Conflict, "the gift code has been used up")
		}
		ref := fmt.Sprintf("giftcode:%d:org:%d", g.ID, orgID)
		if _, err := tx.Exec(ctx, qInsertRedemption, g.ID, orgID, ref, by.Key(), now); err != nil {
			return storeErr("writing gift code redemption", "gift code redemption", err)
		}
		if _, err := tx.Exec(ctx, qCountRedemption, g.ID); err != nil {
			return storeErr("counting gift code redemption", "gift code", err)
		}
		p := billing.Posting{
			OrgID: orgID, Kind: billing.KindGiftCode, Amount: g.Amount, Currency: g.Currency,
			Reference: ref, Description: "gift code " + strconv.FormatInt(g.ID, 10), Actor: by.Key(), At: now,
		}
		if g.CreditValidFor > 0 {
			exp := now.Add(g.CreditValidFor)
			p.ExpiresAt = &exp
		}
		posted, err := s.post(ctx, tx, p)
		if err != nil {
			return err
		}
		out = billing.GiftCodeRedemption{GiftCodeID: g.ID, OrgID: orgID, Reference: ref, RedeemedBy: by.Key(), RedeemedAt: now, Posted: posted}
		return writeAudit(ctx, tx, audit(by, now, "billing.giftcode.redeem", "org:"+strconv.FormatInt(orgID, 10), map[string]any{
			"gift_code_id": g.ID, "amount_micros": g.Amount, "currency": g.Currency, "reference": ref,
		}))
	})
	return out, err
}

// GiftCodes implements billing.GiftCodeStore.
func (s *Store) GiftCodes(ctx context.Context, beforeID int64, limit int) ([]billing.GiftCode, error) {
	var rows pgx.Rows
	var err error
	if beforeID > 0 {
		rows, err = s.pool.Query(ctx, qGiftCodesBefore, beforeID, limit)
	} else {
		rows, err = s.pool.Query(ctx, qGiftCodes, limit)
	}
	if err != nil {
		return nil, storeErr("listing gift codes", "gift code", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (billing.GiftCode, error) { return scanGiftCode(r) })
	return out, storeErr("listing gift codes", "gift code", err)
}

// HitRateLimit implements billing.GiftCodeStore.
func (s *Store) HitRateLimit(ctx context.Context, key string, windowStart time.Time, window time.Duration) (int, int, error) {
	var cur, prev int
	err := s.pool.QueryRow(ctx, qHitRateLimit, key, windowStart.UTC(), window).Scan(&cur, &prev)
	return cur, prev, storeErr("counting rate limit", "rate limit", err)
}
