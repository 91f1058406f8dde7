package billingstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/internal/errcode"
)

var _ billing.Ledger = (*Store)(nil)

const (
	qEnsureAccount = `INSERT INTO billing_accounts (org_id, currency, created_at, updated_at)
	VALUES ($1, $2, $3, $3) ON CONFLICT (org_id) DO NOTHING`
	// qLockAccount serialises every posting of one org: all of them lock
	// the account row first, then the grants.
	qLockAccount  = `SELECT currency FROM billing_accounts WHERE org_id = $1 FOR UPDATE`
	qEntriesByRef = `SELECT id, org_id, kind, account, coalesce(credit_grant_id, 0), amount_micros, currency,
	reference, part, description, actor, occurred_at, created_at
	FROM ledger_entries WHERE reference = $1 ORDER BY part`
	qInsertGrant = `INSERT INTO credit_grants (org_id, source, amount_micros, remaining_micros, expires_at, reference, created_at)
	VALUES ($1, $2, $3, $3, $4, $5, $6) RETURNING id`
	// qUsableGrants lists the grants a charge at $2 may use, earliest
	// expiry first; grants that never expire come last.
	qUsableGrants = `SELECT id, remaining_micros FROM credit_grants
	WHERE org_id = $1 AND remaining_micros > 0 AND (expires_at IS NULL OR expires_at > $2)
	ORDER BY expires_at NULLS LAST, id FOR UPDATE`
	qUseGrant    = `UPDATE credit_grants SET remaining_micros = remaining_micros + $2 WHERE id = $1`
	qInsertEntry = `INSERT INTO ledger_entries (org_id, kind, account, credit_grant_id, amount_micros, currency,
	reference, part, description, actor, occurred_at, created_at)
	VALUES ($1, $2, $3, nullif($4, 0), $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id`
	qMoveBalance = `UPDATE billing_accounts SET cash_micros = cash_micros + $2, credit_micros = credit_micros + $3,
	entry_count = entry_count + $4, updated_at = $5 WHERE org_id = $1
	RETURNING currency, cash_micros, credit_micros, updated_at`
	qBalance = `SELECT a.currency, a.cash_micros, a.credit_micros, a.updated_at,
	coalesce((SELECT sum(remaining_micros) FROM credit_grants g
		WHERE g.org_id = a.org_id AND g.remaining_micros > 0 AND (g.expires_at IS NULL OR g.expires_at > $2)), 0)::bigint
	FROM billing_accounts a WHERE a.org_id = $1`
	qExpiredGrants = `SELECT id, org_id FROM credit_grants
	WHERE remaining_micros > 0 AND expires_at <= $1 ORDER BY expires_at, id`
	qLockGrant = `SELECT remaining_micros, expires_at, reference FROM credit_grants WHERE id = $1 FOR UPDATE`
	// qVerify compares each balance row with the sums of its entries and
	// grants, over every org that has either.
	qVerify = `WITH e AS (
		SELECT org_id,
			coalesce(sum(amount_micros) FILTER (WHERE account = 'cash'), 0) AS cash,
			coalesce(sum(amount_micros) FILTER (WHERE account = 'credit'), 0) AS credit,
			count(*) AS n
		FROM ledger_entries GROUP BY org_id),
	g AS (SELECT org_id, sum(remaining_micros) AS rem FROM credit_grants GROUP BY org_id)
	SELECT coalesce(a.org_id, e.org_id),
		coalesce(a.cash_micros, 0), coalesce(e.cash, 0)::bigint,
		coalesce(a.credit_micros, 0), coalesce(e.credit, 0)::bigint, coalesce(g.rem, 0)::bigint,
		coalesce(a.entry_count, 0), coalesce(e.n, 0)
	FROM billing_accounts a
	FULL JOIN e ON e.org_id = a.org_id
	LEFT JOIN g ON g.org_id = coalesce(a.org_id, e.org_id)
	WHERE coalesce(a.cash_micros, 0) <> coalesce(e.cash, 0)
	   OR coalesce(a.credit_micros, 0) <> coalesce(e.credit, 0)
	   OR coalesce(a.credit_micros, 0) <> coalesce(g.rem, 0)
	   OR coalesce(a.entry_count, 0) <> coalesce(e.n, 0)
	ORDER BY 1`
)

// Post implements billing.Ledger.
func (s *Store) Post(ctx context.Context, p billing.Posting) (billing.Posted, error) {
	var out billing.Posted
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		out, err = s.post(ctx, tx, p)
		return err
	})
	return out, err
}

// post applies p inside tx, the transaction of whatever caused it (a
// rating run, a webhook event, an admin operation), so the money moves if
// and only if the cause is recorded. It locks the org's account row first.
func (s *Store) post(ctx context.Context, tx pgx.Tx, p billing.Posting) (billing.Posted, error) {
	if err := p.Validate(); err != nil {
		return billing.Posted{}, err
	}
	now := s.now()
	at := p.At.UTC()
	if _, err := tx.Exec(ctx, qEnsureAccount, p.OrgID, p.Currency, now); err != nil {
		return billing.Posted{}, storeErr("creating billing account", "org", err)
	}
	var currency string
	if err := tx.QueryRow(ctx, qLockAccount, p.OrgID).Scan(&currency); err != nil {
		return billing.Posted{}, storeErr("locking billing account", "billing account", err)
	}
	prior, err := entriesByRef(ctx, tx, p.Reference)
	if err != nil {
		return billing.Posted{}, err
	}
	if len(prior) > 0 {
		if prior[0].OrgID != p.OrgID {
			return billing.Posted{}, errcode.New(errcode.Conflict, "reference already used by another org")
		}
		b, err := balance(ctx, tx, p.OrgID, now, currency)
		return billing.Posted{Duplicate: true, Entries: prior, Balance: b}, err
	}
	if currency != p.Currency {
		return billing.Posted{}, errcode.New(errcode.Conflict, "the org is billed in "+currency+", not "+p.Currency)
	}

	parts, err := s.split(ctx, tx, p, at, now)
	if err != nil {
		return billing.Posted{}, err
	}
	var cash, credit int64
	for i := range parts {
		e := &parts[i]
		e.OrgID, e.Kind, e.Currency, e.Reference, e.Part = p.OrgID, p.Kind, p.Currency, p.Reference, i
		e.Description, e.Actor, e.OccurredAt, e.CreatedAt = p.Description, p.Actor, at, now
		if err := tx.QueryRow(ctx, qInsertEntry, e.OrgID, string(e.Kind), string(e.Account), e.CreditGrantID,
			e.Amount, e.Currency, e.Reference, e.Part, e.Description, e.Actor, e.OccurredAt, e.CreatedAt).Scan(&e.ID); err != nil {
			return billing.Posted{}, storeErr("writing ledger entry", "ledger entry", err)
		}
		if e.Account == billing.Credit {
			credit += e.Amount
		} else {
			cash += e.Amount
		}
	}
	b := billing.Balance{OrgID: p.OrgID}
	if err := tx.QueryRow(ctx, qMoveBalance, p.OrgID, cash, credit, len(parts), now).
		Scan(&b.Currency, &b.Cash, &b.Credit, &b.UpdatedAt); err != nil {
		return billing.Posted{}, storeErr("updating balance", "billing account", err)
	}
	if err := tx.QueryRow(ctx, qBalance, p.OrgID, now).Scan(&b.Currency, &b.Cash, &b.Credit, &b.UpdatedAt, &b.UsableCredit); err != nil {
		return billing.Posted{}, storeErr("reading balance", "billing account", err)
	}
	b.UpdatedAt = b.UpdatedAt.UTC()
	return billing.Posted{Entries: parts, Balance: b}, nil
}

// split decides which account each part of p moves: credit postings create
// a grant; a negative charge is paid from the grants usable at its time,
// earliest expiry first, and the rest from cash; everything else is cash.
func (s *Store) split(ctx context.Context, tx pgx.Tx, p billing.Posting, at, now time.Time) ([]billing.Entry, error) {
	switch {
	case p.Kind == billing.KindCredit || p.Kind == billing.KindGiftCode:
		var id int64
		var exp *time.Time
		if p.ExpiresAt != nil {
			e := p.ExpiresAt.UTC()
			exp = &e
		}
		if err := tx.QueryRow(ctx, qInsertGrant, p.OrgID, string(p.Kind), p.Amount, exp, p.Reference, now).Scan(&id); err != nil {
			return nil, storeErr("writing credit grant", "credit grant", err)
		}
		return []billing.Entry{{Account: billing.Credit, CreditGrantID: id, Amount: p.Amount}}, nil
	case p.Kind == billing.KindCharge && p.Amount < 0:
		rows, err := tx.Query(ctx, qUsableGrants, p.OrgID, at)
		if err != nil {
			return nil, storeErr("listing credit grants", "credit grant", err)
		}
		type grant struct{ id, remaining int64 }
		grants, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (grant, error) {
			var g grant
			return g, r.Scan(&g.id, &g.remaining)
		})
		if err != nil {
			return nil, storeErr("listing credit grants", "credit grant", err)
		}
		var parts []billing.Entry
		due := -p.Amount
		for _, g := range grants {
			if due == 0 {
				break
			}
			use := min(due, g.remaining)
			if _, err := tx.Exec(ctx, qUseGrant, g.id, -use); err != nil {
				return nil, storeErr("using credit grant", "credit grant", err)
			}
			parts = append(parts, billing.Entry{Account: billing.Credit, CreditGrantID: g.id, Amount: -use})
			due -= use
		}
		if due > 0 {
			parts = append(parts, billing.Entry{Account: billing.Cash, Amount: -due})
		}
		return parts, nil
	default:
		return []billing.Entry{{Account: billing.Cash, Amount: p.Amount}}, nil
	}
}

func entriesByRef(ctx context.Context, db dbtx, ref string) ([]billing.Entry, error) {
	rows, err := db.Query(ctx, qEntriesByRef, ref)
	if err != nil {
		return nil, storeErr("reading ledger entries", "ledger entry", err)
	}
	out, err := pgx.CollectRows(rows, scanEntry)
	return out, storeErr("reading ledger entries", "ledger entry", err)
}

func scanEntry(r pgx.CollectableRow) (billing.Entry, error) {
	var e billing.Entry
	var kind, account string
	err := r.Scan(&e.ID, &e.OrgID, &kind, &account, &e.CreditGrantID, &e.Amount, &e.Currency,
		&e.Reference, &e.Part, &e.Description, &e.Actor, &e.OccurredAt, &e.CreatedAt)
	e.Kind, e.Account = billing.Kind(kind), billing.Account(account)
	e.OccurredAt, e.CreatedAt = e.OccurredAt.UTC(), e.CreatedAt.UTC()
	return e, err
}

// Balance implements billing.Ledger.
func (s *Store) Balance(ctx context.Context, orgID int64, now time.Time, defaultCurrency string) (billing.Balance, error) {
	return balance(ctx, s.pool, orgID, now, defaultCurrency)
}

func balance(ctx context.Context, db dbtx, orgID int64, now time.Time, defaultCurrency string) (billing.Balance, error) {
	b := billing.Balance{OrgID: orgID}
	err := db.QueryRow(ctx, qBalance, orgID, now.UTC()).Scan(&b.Currency, &b.Cash, &b.Credit, &b.UpdatedAt, &b.UsableCredit)
	if errors.Is(err, pgx.ErrNoRows) {
		return billing.Balance{OrgID: orgID, Currency: defaultCurrency}, nil
	}
	b.UpdatedAt = b.UpdatedAt.UTC()
	return b, storeErr("reading balance", "billing account", err)
}

// ExpireCredits implements billing.Ledger. Each grant is written off in
// its own transaction, locking the account before the grant as post does.
func (s *Store) ExpireCredits(ctx context.Context, now time.Time) (int, error) {
	now = now.UTC()
	rows, err := s.pool.Query(ctx, qExpiredGrants, now)
	if err != nil {
		return 0, storeErr("listing expired credit", "credit grant", err)
	}
	type grant struct{ id, org int64 }
	expired, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (grant, error) {
		var g grant
		return g, r.Scan(&g.id, &g.org)
	})
	if err != nil {
		return 0, storeErr("listing expired credit", "credit grant", err)
	}
	n := 0
	for _, g := range expired {
		done := false
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			var currency, ref string
			if err := tx.QueryRow(ctx, qLockAccount, g.org).Scan(&currency); err != nil {
				return storeErr("locking billing account", "billing account", err)
			}
			var remaining int64
			var expires *time.Time
			if err := tx.QueryRow(ctx, qLockGrant, g.id).Scan(&remaining, &expires, &ref); err != nil {
				return storeErr("locking credit grant", "credit grant", err)
			}
			if remaining == 0 || expires == nil || expires.After(now) {
				return nil // used up or already written off meanwhile
			}
			if _, err := tx.Exec(ctx, qUseGrant, g.id, -remaining); err != nil {
				return storeErr("expiring credit grant", "credit grant", err)
			}
			ts := s.now()
			if _, err := tx.Exec(ctx, qInsertEntry, g.org, string(billing.KindCreditExpiry), string(billing.Credit), g.id,
				-remaining, currency, fmt.Sprintf("credit-expiry:%d", g.id), 0, "expired: "+ref, "system:billing",
				expires.UTC(), ts); err != nil {
				return storeErr("writing ledger entry", "ledger entry", err)
			}
			if _, err := tx.Exec(ctx, qMoveBalance, g.org, 0, -remaining, 1, ts); err != nil {
				return storeErr("updating balance", "billing account", err)
			}
			done = true
			return nil
		})
		if err != nil {
			return n, fmt.Errorf("expiring credit grant %d: %w", g.id, err)
		}
		if done {
			n++
		}
	}
	return n, nil
}

// Verify implements billing.Ledger.
func (s *Store) Verify(ctx context.Context) ([]billing.Mismatch, error) {
	rows, err := s.pool.Query(ctx, qVerify)
	if err != nil {
		return nil, storeErr("verifying balances", "billing account", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (billing.Mismatch, error) {
		var m billing.Mismatch
		err := r.Scan(&m.OrgID, &m.CashRow, &m.CashEntries, &m.CreditRow, &m.CreditEntries, &m.CreditGrants,
			&m.EntryCountRow, &m.Entries)
		return m, err
	})
	return out, storeErr("verifying balances", "billing account", err)
}
