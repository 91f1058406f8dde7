package billingstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/internal/errcode"
)

var _ billing.AdminStore = (*Store)(nil)

const (
	qLockOrgPlan = `SELECT plan FROM orgs WHERE id = $1 FOR UPDATE`
	// qSharePlan reads a plan and keeps it from being deleted or renamed
	// until the org refers to it.
	// Shared, not key-shared: SetPlan's change of the plan's price book
	// waits for the org to be moved, and the other way round.
	qSharePlan = `SELECT name FROM plans WHERE name = $1 FOR SHARE`
	// qNewPlanCurrency is the currency of the plan's price book, and the
	// org's account's ('' without one).
	qNewPlanCurrency = `SELECT b.currency, coalesce((SELECT a.currency FROM billing_accounts a WHERE a.org_id = $2), '')
	FROM plans p JOIN price_books b ON b.id = p.price_book_id WHERE p.name = $1`
	qSetOrgPlan = `UPDATE orgs SET plan = $2, updated_at = $3 WHERE id = $1`
	// qInsertOrgOutbox asks the isolation reconciler to apply an org's
	// plan to its namespaces.
	qInsertOrgOutbox = `INSERT INTO outbox (kind, key, payload, created_at, next_attempt_at)
	VALUES ($1, $2, $3, $4, $4)`
)

// PostAudited implements billing.AdminStore: the posting and its audit
// row commit together or not at all. A retried posting (same reference)
// changes nothing and writes no second audit row.
func (s *Store) PostAudited(ctx context.Context, p billing.Posting, a billing.AdminAudit) (billing.Posted, error) {
	var out billing.Posted
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		if out, err = s.post(ctx, tx, p); err != nil || out.Duplicate {
			return err
		}
		return writeAudit(ctx, tx, audit(a.By, s.now(), a.Action, a.Target, a.Detail))
	})
	return out, err
}

// SetOrgPlan implements billing.AdminStore. Setting the plan an org has
// already changes nothing; an unknown org or plan is NOT_FOUND, each
// named as such.
func (s *Store) SetOrgPlan(ctx context.Context, orgID int64, plan string, a billing.AdminAudit) (string, error) {
	var old string
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, qLockOrgPlan, orgID).Scan(&old); err != nil {
			return storeErr("locking org", "org", err)
		}
		var name string
		if err := tx.QueryRow(ctx, qSharePlan, plan).Scan(&name); errors.Is(err, pgx.ErrNoRows) {
			return errcode.New(errcode.NotFound, fmt.Sprintf("plan %q not found: the plans query lists them", plan))
		} else if err != nil {
			return storeErr("reading plan", "plan", err)
		}
		if old == plan {
			return nil
		}
		// An org is billed in one currency: a charge in another would stop
		// every org's rating at its batch.
		var priced, billed string
		if err := tx.QueryRow(ctx, qNewPlanCurrency, plan, orgID).Scan(&priced, &billed); err != nil {
			return storeErr("reading plan currency", "plan", err)
		}
		if billed != "" && billed != priced {
			return errcode.New(errcode.Conflict, fmt.Sprintf("plan %q is priced in %s; the org is billed in %s", plan, priced, billed))
		}
		now := s.now()
		if _, err := tx.Exec(ctx, qSetOrgPlan, orgID, plan, now); err != nil {
			return storeErr("setting plan", "plan", err)
		}
		payload, err := json.Marshal(map[string]any{"org_id": orgID, "plan": plan, "previous": old})
		if err != nil {
			return fmt.Errorf("encoding outbox payload: %w", err)
		}
		if _, err := tx.Exec(ctx, qInsertOrgOutbox, "org.plan", "org:"+strconv.FormatInt(orgID, 10), payload, now); err != nil {
			return storeErr("writing outbox", "outbox row", err)
		}
		a.Detail["previous"] = old
		return writeAudit(ctx, tx, audit(a.By, now, a.Action, a.Target, a.Detail))
	})
	return old, err
}
