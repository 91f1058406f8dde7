package billingstore

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantplane/tenantplane/billing"
)

const (
	entryColumns = `id, org_id, kind, account, coalesce(credit_grant_id, 0), amount_micros, currency,
	reference, part, description, actor, occurred_at, created_at`
	qOrgEntries       = `SELECT ` + entryColumns + ` FROM ledger_entries WHERE org_id = $1 ORDER BY id DESC LIMIT $2`
	qOrgEntriesBefore = `SELECT ` + entryColumns + ` FROM ledger_entries WHERE org_id = $1 AND id < $2
	ORDER BY id DESC LIMIT $3`
	grantColumns = `id, org_id, source, amount_micros, remaining_micros, expires_at, reference, created_at`
	// qOrgGrants lists the grants with credit left, in the order charges
	// use them: earliest expiry first, those that never expire last.
	qOrgGrants = `SELECT ` + grantColumns + ` FROM credit_grants WHERE org_id = $1 AND remaining_micros > 0
	ORDER BY expires_at NULLS LAST, id`
	qOrgAllGrants = `SELECT ` + grantColumns + ` FROM credit_grants WHERE org_id = $1 ORDER BY id DESC LIMIT $2`
)

// Entries returns up to limit of org's ledger entries, newest first, with
// IDs below beforeID when it is positive: one keyset page.
func (s *Store) Entries(ctx context.Context, orgID, beforeID int64, limit int) ([]billing.Entry, error) {
	var rows pgx.Rows
	var err error
	if beforeID > 0 {
		rows, err = s.pool.Query(ctx, qOrgEntriesBefore, orgID, beforeID, limit)
	} else {
		rows, err = s.pool.Query(ctx, qOrgEntries, orgID, limit)
	}
	if err != nil {
		return nil, storeErr("listing ledger entries", "ledger entry", err)
	}
	out, err := pgx.CollectRows(rows, scanEntry)
	return out, storeErr("listing ledger entries", "ledger entry", err)
}

// CreditGrants returns org's grants: with all, up to limit of every grant,
// newest first; otherwise those with credit left (expired or not, until
// the expiry pass writes them off), in the order charges use them.
func (s *Store) CreditGrants(ctx context.Context, orgID int64, all bool, limit int) ([]billing.CreditGrant, error) {
	var rows pgx.Rows
	var err error
	if all {
		rows, err = s.pool.Query(ctx, qOrgAllGrants, orgID, limit)
	} else {
		rows, err = s.pool.Query(ctx, qOrgGrants, orgID)
	}
	if err != nil {
		return nil, storeErr("listing credit grants", "credit grant", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (billing.CreditGrant, error) {
		var g billing.CreditGrant
		var source string
		var exp *time.Time
		err := r.Scan(&g.ID, &g.OrgID, &source, &g.Amount, &g.Remaining, &exp, &g.Reference, &g.CreatedAt)
		g.Source, g.CreatedAt = billing.Kind(source), g.CreatedAt.UTC()
		if exp != nil {
			e := exp.UTC()
			g.ExpiresAt = &e
		}
		return g, err
	})
	return out, storeErr("listing credit grants", "credit grant", err)
}
