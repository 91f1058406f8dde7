package billingstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/tenancy"
)

var _ billing.LifecycleStore = (*Store)(nil)

const (
	qDebtStatus = `SELECT state, since, debt_since, suspended_at, workloads_deleted_at, usable_micros, currency, evaluated_at
	FROM billing_debt_states WHERE org_id = $1`
	qDebtStatusLock = qDebtStatus + ` FOR UPDATE`
	qUpsertDebt     = `INSERT INTO billing_debt_states (org_id, state, since, debt_since, suspended_at, workloads_deleted_at,
		usable_micros, currency, evaluated_at, entries_seen, plan_seen)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
	ON CONFLICT (org_id) DO UPDATE SET state = EXCLUDED.state, since = EXCLUDED.since, debt_since = EXCLUDED.debt_since,
		suspended_at = EXCLUDED.suspended_at, workloads_deleted_at = EXCLUDED.workloads_deleted_at,
		usable_micros = EXCLUDED.usable_micros, currency = EXCLUDED.currency, evaluated_at = EXCLUDED.evaluated_at,
		entries_seen = EXCLUDED.entries_seen, plan_seen = EXCLUDED.plan_seen`
	qInsertTransition = `INSERT INTO billing_debt_transitions (org_id, namespace_id, event, from_state, to_state,
		usable_micros, currency, cause, at)
	VALUES ($1, nullif($2, 0), $3, $4, $5, $6, $7, $8, $9) RETURNING id`
	// qNoticeRecipients are the org's owners and billing members who can
	// receive mail.
	qNoticeRecipients = `SELECT u.email FROM org_members m JOIN users u ON u.id = m.user_id
	WHERE m.org_id = $1 AND m.role IN ('owner', 'billing') AND u.status <> 'disabled' ORDER BY u.id`
	qOrgName      = `SELECT name FROM orgs WHERE id = $1`
	qNamespaceOrg = `SELECT org_id, name FROM namespaces WHERE id = $1`
	// qEnqueueMail queues a notice in tenancy's mail outbox, which its
	// sender delivers with retries.
	qEnqueueMail = `INSERT INTO mail_outbox (kind, recipient, subject, body_text, body_html, created_at, next_attempt_at)
	VALUES ($1, $2, $3, $4, '', $5, $5)`
	qEnqueueWebhook = `INSERT INTO billing_webhook_deliveries (org_id, transition_id, created_at, next_attempt_at)
	SELECT $1, $2, $3, $3 FROM billing_webhooks WHERE org_id = $1`
	// qPlaceDebtHolds holds every namespace of the org but those being
	// deleted. Billing owns the suspension of those that are active now or
	// already held by billing; one an admin suspended is held without
	// ownership, so a payment will not resume it.
	qPlaceDebtHolds = `INSERT INTO billing_namespace_holds (namespace_id, cause, org_id, placed_at, owns)
	SELECT n.id, 'debt', n.org_id, $2, n.state = 'active' OR EXISTS (SELECT 1 FROM billing_namespace_holds o
		WHERE o.namespace_id = n.id AND o.owns AND o.released_at IS NULL)
	FROM namespaces n WHERE n.org_id = $1 AND n.state <> 'deleting'
	ON CONFLICT (namespace_id, cause) DO UPDATE SET released_at = NULL, placed_at = EXCLUDED.placed_at,
		owns = billing_namespace_holds.owns OR EXCLUDED.owns
	WHERE billing_namespace_holds.released_at IS NOT NULL OR (EXCLUDED.owns AND NOT billing_namespace_holds.owns)`
	qReleaseDebtHolds = `UPDATE billing_namespace_holds SET released_at = $2
	WHERE org_id = $1 AND cause = 'debt' AND released_at IS NULL`
	// A released hold resumes its namespace only if it owns the
	// suspension, no other hold remains, and no admin took the suspension
	// over (suspended_by; NULL is a suspension from before it was kept).
	qHoldWork = `SELECT h.namespace_id, h.org_id, h.cause, h.released_at IS NOT NULL,
		h.owns AND n.state = 'suspended' AND coalesce(n.suspended_by, 'system:billing') = 'system:billing'
		AND NOT EXISTS (SELECT 1 FROM billing_namespace_holds o
			WHERE o.namespace_id = h.namespace_id AND o.cause <> h.cause AND o.released_at IS NULL)
	FROM billing_namespace_holds h JOIN namespaces n ON n.id = h.namespace_id
	WHERE ($1::bigint = 0 OR h.org_id = $1) AND (h.released_at IS NOT NULL OR n.state = 'active')
	ORDER BY h.namespace_id, h.cause LIMIT $2`
	qHoldApplied = `UPDATE billing_namespace_holds SET owns = true, attempts = 0, last_error = ''
	WHERE namespace_id = $1 AND cause = $2 AND released_at IS NULL`
	qHoldFailed = `UPDATE billing_namespace_holds SET attempts = attempts + 1, last_error = left($3, 1000)
	WHERE namespace_id = $1 AND cause = $2`
	qLockReleasedHold = `SELECT owns FROM billing_namespace_holds
	WHERE namespace_id = $1 AND cause = $2 AND released_at IS NOT NULL FOR UPDATE`
	qHandOverHold = `UPDATE billing_namespace_holds SET owns = true
	WHERE namespace_id = $1 AND cause <> $2 AND released_at IS NULL`
	qDropHold          = `DELETE FROM billing_namespace_holds WHERE namespace_id = $1 AND cause = $2 AND released_at IS NOT NULL`
	qDebtHeldNamespace = `SELECT namespace_id FROM billing_namespace_holds
	WHERE org_id = $1 AND cause = 'debt' AND released_at IS NULL AND owns ORDER BY namespace_id`
	// qDebtOrgs lists the prepaid orgs with a billing account: postpaid
	// orgs pay invoices and are not suspended for their balance. Unless
	// $3 (every org) it lists only those whose state may have changed
	// since they were last evaluated: never evaluated; in debt or
	// suspended, whose next steps come with time; with ledger entries
	// since (every change of a balance is one); on another plan; or
	// holding credit that lapsed since (usable credit excludes it before
	// the expiry job writes it off).
	qDebtOrgs = `SELECT a.org_id FROM billing_accounts a JOIN orgs o ON o.id = a.org_id
		LEFT JOIN plans p ON p.name = o.plan
		LEFT JOIN billing_debt_states s ON s.org_id = a.org_id
	WHERE a.org_id > $1 AND coalesce(p.billing_mode, 'prepaid') = 'prepaid'
	  AND ($3 OR s.org_id IS NULL OR s.state IN ('debt', 'suspended') OR a.entry_count <> s.entries_seen
		OR o.plan IS DISTINCT FROM s.plan_seen
		OR EXISTS (SELECT 1 FROM credit_grants g WHERE g.org_id = a.org_id AND g.remaining_micros > 0
			AND g.expires_at > s.evaluated_at AND g.expires_at <= $4))
	ORDER BY a.org_id LIMIT $2`
	// qDebtInputs is what an evaluation records having seen, with the
	// org's billing mode.
	qDebtInputs = `SELECT a.entry_count, o.plan, coalesce(p.billing_mode, 'prepaid')
	FROM billing_accounts a JOIN orgs o ON o.id = a.org_id LEFT JOIN plans p ON p.name = o.plan WHERE a.org_id = $1`
	qDebtTransitions = `SELECT id, org_id, coalesce(namespace_id, 0), event, from_state, to_state, usable_micros,
		currency, cause, at
	FROM billing_debt_transitions WHERE org_id = $1 AND ($2::bigint = 0 OR id < $2) ORDER BY id DESC LIMIT $3`
	qCharged = `SELECT coalesce(-sum(amount_micros), 0)::bigint FROM ledger_entries
	WHERE org_id = $1 AND kind = 'charge' AND occurred_at > $2 AND occurred_at <= $3`
)

// UpdateDebt implements billing.LifecycleStore. It locks the org's
// billing account first, as every posting does, so the balance it reads
// cannot change before the decision commits. An org without an account
// has never had money and is left alone, and so is an org on a postpaid
// plan, which pays invoices instead.
func (s *Store) UpdateDebt(ctx context.Context, orgID int64, now time.Time, defaultCurrency string,
	decide func(billing.DebtStatus, billing.Balance) billing.DebtDecision,
) (billing.DebtDecision, error) {
	var d billing.DebtDecision
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var currency string
		if err := tx.QueryRow(ctx, qLockAccount, orgID).Scan(&currency); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return nil
			}
			return storeErr("locking billing account", "billing account", err)
		}
		var (
			entries    int64
			plan, mode string
		)
		if err := tx.QueryRow(ctx, qDebtInputs, orgID).Scan(&entries, &plan, &mode); err != nil {
			return storeErr("reading billing mode", "org", err)
		}
		if mode == "postpaid" {
			return nil
		}
		st, err := debtStatus(ctx, tx, qDebtStatusLock, orgID)
		if err != nil {
			return err
		}
		bal, err := balance(ctx, tx, orgID, now, defaultCurrency)
		if err != nil {
			return err
		}
		d = decide(st, bal)
		// Written every time, with what it saw, so that the scheduled pass
		// leaves the org alone until something changes.
		n := d.Status
		if _, err := tx.Exec(ctx, qUpsertDebt, orgID, string(n.State), n.Since.UTC(), utcPtr(n.DebtSince),
			utcPtr(n.SuspendedAt), utcPtr(n.WorkloadsDeletedAt), n.Usable, n.Currency, n.EvaluatedAt.UTC(),
			entries, plan); err != nil {
			return storeErr("writing debt state", "debt state", err)
		}
		for _, step := range d.Steps {
			tr := billing.DebtTransition{OrgID: orgID, Event: step.Event, From: step.From, To: step.To,
				Usable: n.Usable, Currency: n.Currency, Cause: step.Cause, At: now.UTC()}
			if tr, err = s.recordTransition(ctx, tx, tr, ""); err != nil {
				return err
			}
			d.Transitions = append(d.Transitions, tr)
		}
		if d.PlaceHolds {
			if _, err := tx.Exec(ctx, qPlaceDebtHolds, orgID, now.UTC()); err != nil {
				return storeErr("holding namespaces", "namespace hold", err)
			}
		}
		if d.ReleaseHolds {
			if _, err := tx.Exec(ctx, qReleaseDebtHolds, orgID, now.UTC()); err != nil {
				return storeErr("releasing namespaces", "namespace hold", err)
			}
		}
		return nil
	})
	if err != nil {
		return billing.DebtDecision{}, err
	}
	return d, nil
}

// recordTransition writes tr with its audit row, a mail to each of the
// org's owners and billing members, and a webhook delivery when the org
// has a webhook, all in tx. nsName names the namespace of a spending
// event.
func (s *Store) recordTransition(ctx context.Context, tx pgx.Tx, tr billing.DebtTransition, nsName string) (billing.DebtTransition, error) {
	if err := tx.QueryRow(ctx, qInsertTransition, tr.OrgID, tr.NamespaceID, string(tr.Event), string(tr.From), string(tr.To),
		tr.Usable, tr.Currency, tr.Cause, tr.At).Scan(&tr.ID); err != nil {
		return tr, storeErr("recording debt transition", "debt transition", err)
	}
	target := fmt.Sprintf("org:%d", tr.OrgID)
	detail := map[string]any{"transition": tr.ID, "from": tr.From, "to": tr.To, "usable_micros": tr.Usable,
		"currency": tr.Currency, "cause": tr.Cause}
	if tr.NamespaceID != 0 {
		target = fmt.Sprintf("ns:%d", tr.NamespaceID)
		detail["org"] = tr.OrgID
	}
	if err := writeAudit(ctx, tx, AuditEntry{At: tr.At, Actor: "system:billing", Action: "billing.debt." + string(tr.Event),
		Target: target, Detail: detail}); err != nil {
		return tr, err
	}
	var orgName string
	if err := tx.QueryRow(ctx, qOrgName, tr.OrgID).Scan(&orgName); err != nil {
		return tr, storeErr("reading org", "org", err)
	}
	rows, err := tx.Query(ctx, qNoticeRecipients, tr.OrgID)
	if err != nil {
		return tr, storeErr("listing notice recipients", "org member", err)
	}
	to, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return tr, storeErr("listing notice recipients", "org member", err)
	}
	m := billing.NewDebtMail(tr, orgName, nsName)
	for _, addr := range to {
		if _, err := tx.Exec(ctx, qEnqueueMail, m.Kind, addr, m.Subject, m.Text, tr.At); err != nil {
			return tr, storeErr("queueing notice", "mail", err)
		}
	}
	if _, err := tx.Exec(ctx, qEnqueueWebhook, tr.OrgID, tr.ID, tr.At); err != nil {
		return tr, storeErr("queueing webhook", "webhook delivery", err)
	}
	return tr, nil
}

func debtStatus(ctx context.Context, db dbtx, q string, orgID int64) (billing.DebtStatus, error) {
	st := billing.DebtStatus{OrgID: orgID}
	var state string
	err := db.QueryRow(ctx, q, orgID).Scan(&state, &st.Since, &st.DebtSince, &st.SuspendedAt, &st.WorkloadsDeletedAt,
		&st.Usable, &st.Currency, &st.EvaluatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return st, nil
	}
	if err != nil {
		return st, storeErr("reading debt state", "debt state", err)
	}
	st.State = billing.DebtState(state)
	st.Since, st.EvaluatedAt = st.Since.UTC(), st.EvaluatedAt.UTC()
	st.DebtSince, st.SuspendedAt, st.WorkloadsDeletedAt = utcPtr(st.DebtSince), utcPtr(st.SuspendedAt), utcPtr(st.WorkloadsDeletedAt)
	return st, nil
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// DebtStatus implements billing.LifecycleStore.
func (s *Store) DebtStatus(ctx context.Context, orgID int64) (billing.DebtStatus, error) {
	return debtStatus(ctx, s.pool, qDebtStatus, orgID)
}

// DebtOrgs implements billing.LifecycleStore.
func (s *Store) DebtOrgs(ctx context.Context, after int64, limit int, all bool, now time.Time) ([]int64, error) {
	rows, err := s.pool.Query(ctx, qDebtOrgs, after, limit, all, now.UTC())
	if err != nil {
		return nil, storeErr("listing billed orgs", "billing account", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	return ids, storeErr("listing billed orgs", "billing account", err)
}

// DebtTransitions implements billing.LifecycleStore.
func (s *Store) DebtTransitions(ctx context.Context, orgID, before int64, limit int) ([]billing.DebtTransition, error) {
	rows, err := s.pool.Query(ctx, qDebtTransitions, orgID, before, limit)
	if err != nil {
		return nil, storeErr("listing debt transitions", "debt transition", err)
	}
	out, err := pgx.CollectRows(rows, scanTransition)
	return out, storeErr("listing debt transitions", "debt transition", err)
}

func scanTransition(r pgx.CollectableRow) (billing.DebtTransition, error) {
	var t billing.DebtTransition
	var ev, from, to string
	err := r.Scan(&t.ID, &t.OrgID, &t.NamespaceID, &ev, &from, &to, &t.Usable, &t.Currency, &t.Cause, &t.At)
	t.Event, t.From, t.To, t.At = billing.DebtEvent(ev), billing.DebtState(from), billing.DebtState(to), t.At.UTC()
	return t, err
}

// Charged implements billing.LifecycleStore.
func (s *Store) Charged(ctx context.Context, orgID int64, from, to time.Time) (billing.Micros, error) {
	var m int64
	err := s.pool.QueryRow(ctx, qCharged, orgID, from.UTC(), to.UTC()).Scan(&m)
	return m, storeErr("summing charges", "ledger entry", err)
}

// HoldWork implements billing.LifecycleStore.
func (s *Store) HoldWork(ctx context.Context, orgID int64, limit int) ([]billing.HoldWork, error) {
	rows, err := s.pool.Query(ctx, qHoldWork, orgID, limit)
	if err != nil {
		return nil, storeErr("listing holds", "namespace hold", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (billing.HoldWork, error) {
		var w billing.HoldWork
		var cause string
		err := r.Scan(&w.NamespaceID, &w.OrgID, &cause, &w.Released, &w.Resume)
		w.Cause = billing.HoldCause(cause)
		return w, err
	})
	return out, storeErr("listing holds", "namespace hold", err)
}

// HoldApplied implements billing.LifecycleStore.
func (s *Store) HoldApplied(ctx context.Context, nsID int64, cause billing.HoldCause) error {
	_, err := s.pool.Exec(ctx, qHoldApplied, nsID, string(cause))
	return storeErr("recording hold", "namespace hold", err)
}

// HoldFailed implements billing.LifecycleStore.
func (s *Store) HoldFailed(ctx context.Context, nsID int64, cause billing.HoldCause, msg string) error {
	_, err := s.pool.Exec(ctx, qHoldFailed, nsID, string(cause), msg)
	return storeErr("recording hold failure", "namespace hold", err)
}

// DropHold implements billing.LifecycleStore.
func (s *Store) DropHold(ctx context.Context, nsID int64, cause billing.HoldCause) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var owns bool
		if err := tx.QueryRow(ctx, qLockReleasedHold, nsID, string(cause)).Scan(&owns); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return nil // placed again meanwhile, or dropped already
			}
			return storeErr("locking hold", "namespace hold", err)
		}
		if owns {
			if _, err := tx.Exec(ctx, qHandOverHold, nsID, string(cause)); err != nil {
				return storeErr("handing over hold", "namespace hold", err)
			}
		}
		_, err := tx.Exec(ctx, qDropHold, nsID, string(cause))
		return storeErr("dropping hold", "namespace hold", err)
	})
}

// DebtHeldNamespaces implements billing.LifecycleStore.
func (s *Store) DebtHeldNamespaces(ctx context.Context, orgID int64) ([]int64, error) {
	rows, err := s.pool.Query(ctx, qDebtHeldNamespace, orgID)
	if err != nil {
		return nil, storeErr("listing held namespaces", "namespace hold", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	return ids, storeErr("listing held namespaces", "namespace hold", err)
}

const qMarkWorkloadsDeleted = `UPDATE billing_debt_states SET workloads_deleted_at = $2 WHERE org_id = $1`

// WorkloadsDeleted implements billing.LifecycleStore.
func (s *Store) WorkloadsDeleted(ctx context.Context, orgID int64, now time.Time) (bool, error) {
	done := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var currency string
		if err := tx.QueryRow(ctx, qLockAccount, orgID).Scan(&currency); err != nil {
			return storeErr("locking billing account", "billing account", err)
		}
		st, err := debtStatus(ctx, tx, qDebtStatusLock, orgID)
		if err != nil {
			return err
		}
		if st.State != billing.DebtSuspended || st.WorkloadsDeletedAt != nil {
			return nil
		}
		if _, err := tx.Exec(ctx, qMarkWorkloadsDeleted, orgID, now.UTC()); err != nil {
			return storeErr("recording deleted workloads", "debt state", err)
		}
		_, err = s.recordTransition(ctx, tx, billing.DebtTransition{OrgID: orgID, Event: billing.DebtEventWorkloadsDeleted,
			From: billing.DebtSuspended, To: billing.DebtSuspended, Usable: st.Usable, Currency: st.Currency,
			Cause: "suspended since " + st.SuspendedAt.Format(time.RFC3339), At: now.UTC()}, "")
		done = err == nil
		return err
	})
	return done, err
}

// Spending limits.

const (
	qSpendingLimitIDs = `SELECT namespace_id FROM billing_spending_limits WHERE namespace_id > $1
	UNION SELECT namespace_id FROM billing_namespace_holds
	WHERE cause = 'spending_limit' AND released_at IS NULL AND namespace_id > $1
	ORDER BY 1 LIMIT $2`
	qLockSpendingLimit = `SELECT amount_micros, currency, updated_by, updated_at FROM billing_spending_limits
	WHERE namespace_id = $1 FOR UPDATE`
	qLockSpendHold = `SELECT released_at IS NULL FROM billing_namespace_holds
	WHERE namespace_id = $1 AND cause = 'spending_limit' FOR UPDATE`
	// qMonthSpend sums a namespace's charge lines (rating's table) in a
	// month.
	qMonthSpend = `SELECT coalesce(sum(amount_micros), 0)::bigint FROM charge_lines
	WHERE namespace_id = $1 AND hour >= $2 AND hour < $3`
	qPlaceSpendHold = `INSERT INTO billing_namespace_holds (namespace_id, cause, org_id, placed_at, owns)
	SELECT n.id, 'spending_limit', n.org_id, $2, n.state = 'active' OR EXISTS (SELECT 1 FROM billing_namespace_holds o
		WHERE o.namespace_id = n.id AND o.owns AND o.released_at IS NULL)
	FROM namespaces n WHERE n.id = $1 AND n.state <> 'deleting'
	ON CONFLICT (namespace_id, cause) DO UPDATE SET released_at = NULL, placed_at = EXCLUDED.placed_at,
		owns = billing_namespace_holds.owns OR EXCLUDED.owns`
	qReleaseSpendHold = `UPDATE billing_namespace_holds SET released_at = $2
	WHERE namespace_id = $1 AND cause = 'spending_limit' AND released_at IS NULL`
	qUpsertSpendLimit = `INSERT INTO billing_spending_limits (namespace_id, org_id, amount_micros, currency, updated_by,
		created_at, updated_at)
	VALUES ($1, $2, $3, $4, $5, $6, $6)
	ON CONFLICT (namespace_id) DO UPDATE SET amount_micros = EXCLUDED.amount_micros, currency = EXCLUDED.currency,
		updated_by = EXCLUDED.updated_by, updated_at = EXCLUDED.updated_at`
	qDeleteSpendLimit = `DELETE FROM billing_spending_limits WHERE namespace_id = $1`
	qSpendingLimit    = `SELECT l.namespace_id, l.org_id, l.amount_micros, l.currency, l.updated_by, l.updated_at,
		(SELECT coalesce(sum(c.amount_micros), 0)::bigint FROM charge_lines c
			WHERE c.namespace_id = l.namespace_id AND c.hour >= $2 AND c.hour < $3),
		EXISTS (SELECT 1 FROM billing_namespace_holds h
			WHERE h.namespace_id = l.namespace_id AND h.cause = 'spending_limit' AND h.released_at IS NULL)
	FROM billing_spending_limits l`
	qSpendingLimitOne = qSpendingLimit + ` WHERE l.namespace_id = $1`
	qSpendingLimitOrg = qSpendingLimit + ` WHERE l.org_id = $1 ORDER BY l.namespace_id`
)

// SpendingLimitIDs implements billing.LifecycleStore.
func (s *Store) SpendingLimitIDs(ctx context.Context, after int64, limit int) ([]int64, error) {
	rows, err := s.pool.Query(ctx, qSpendingLimitIDs, after, limit)
	if err != nil {
		return nil, storeErr("listing spending limits", "spending limit", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	return ids, storeErr("listing spending limits", "spending limit", err)
}

// UpdateSpend implements billing.LifecycleStore.
func (s *Store) UpdateSpend(ctx context.Context, nsID int64, now time.Time,
	decide func(billing.SpendingLimit, bool) *billing.SpendStep,
) (*billing.DebtTransition, error) {
	var out *billing.DebtTransition
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		lim := billing.SpendingLimit{NamespaceID: nsID}
		var nsName string
		if err := tx.QueryRow(ctx, qNamespaceOrg, nsID).Scan(&lim.OrgID, &nsName); err != nil {
			return storeErr("reading namespace", "namespace", err)
		}
		exists := true
		err := tx.QueryRow(ctx, qLockSpendingLimit, nsID).Scan(&lim.Amount, &lim.Currency, &lim.UpdatedBy, &lim.UpdatedAt)
		if errors.Is(err, pgx.ErrNoRows) {
			exists = false
		} else if err != nil {
			return storeErr("locking spending limit", "spending limit", err)
		}
		if err := tx.QueryRow(ctx, qLockSpendHold, nsID).Scan(&lim.Held); err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return storeErr("locking spending hold", "namespace hold", err)
		}
		if exists {
			from := billing.MonthStart(now)
			if err := tx.QueryRow(ctx, qMonthSpend, nsID, from, from.AddDate(0, 1, 0)).Scan(&lim.MonthSpend); err != nil {
				return storeErr("summing month spend", "charge line", err)
			}
		}
		step := decide(lim, exists)
		if step == nil {
			return nil
		}
		tr := billing.DebtTransition{OrgID: lim.OrgID, NamespaceID: nsID, Event: step.Event,
			From: "active", To: "suspended", Usable: lim.MonthSpend, Currency: lim.Currency, Cause: step.Cause, At: now.UTC()}
		q := qPlaceSpendHold
		if !step.Place {
			tr.From, tr.To, q = "suspended", "active", qReleaseSpendHold
		}
		if tr.Currency == "" {
			if err := tx.QueryRow(ctx, qAccountCurrency, lim.OrgID).Scan(&tr.Currency); err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return storeErr("reading currency", "billing account", err)
			}
			if tr.Currency == "" {
				tr.Currency = "USD"
			}
		}
		if _, err := tx.Exec(ctx, q, nsID, now.UTC()); err != nil {
			return storeErr("changing spending hold", "namespace hold", err)
		}
		rec, err := s.recordTransition(ctx, tx, tr, nsName)
		if err != nil {
			return err
		}
		out = &rec
		return nil
	})
	return out, err
}

// SetSpendingLimit implements billing.LifecycleStore.
func (s *Store) SetSpendingLimit(ctx context.Context, nsID int64, amount billing.Micros, defaultCurrency string,
	by tenancy.Actor, now time.Time,
) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var orgID int64
		var nsName string
		if err := tx.QueryRow(ctx, qNamespaceOrg, nsID).Scan(&orgID, &nsName); err != nil {
			return storeErr("reading namespace", "namespace", err)
		}
		detail := map[string]any{"org": orgID}
		action := "billing.spending_limit.remove"
		if amount > 0 {
			currency := defaultCurrency
			if err := tx.QueryRow(ctx, qAccountCurrency, orgID).Scan(&currency); err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return storeErr("reading currency", "billing account", err)
			}
			if _, err := tx.Exec(ctx, qUpsertSpendLimit, nsID, orgID, amount, currency, by.Key(), now.UTC()); err != nil {
				return storeErr("setting spending limit", "spending limit", err)
			}
			action, detail["amount_micros"], detail["currency"] = "billing.spending_limit.set", amount, currency
		} else {
			tag, err := tx.Exec(ctx, qDeleteSpendLimit, nsID)
			if err != nil {
				return storeErr("removing spending limit", "spending limit", err)
			}
			if tag.RowsAffected() == 0 {
				return errcode.New(errcode.NotFound, "spending limit not found")
			}
		}
		return writeAudit(ctx, tx, audit(by, now, action, fmt.Sprintf("ns:%d", nsID), detail))
	})
}

// SpendingLimit implements billing.LifecycleStore.
func (s *Store) SpendingLimit(ctx context.Context, nsID int64, now time.Time) (billing.SpendingLimit, error) {
	from := billing.MonthStart(now)
	rows, err := s.pool.Query(ctx, qSpendingLimitOne, nsID, from, from.AddDate(0, 1, 0))
	if err != nil {
		return billing.SpendingLimit{}, storeErr("reading spending limit", "spending limit", err)
	}
	l, err := pgx.CollectExactlyOneRow(rows, scanSpendingLimit)
	return l, storeErr("reading spending limit", "spending limit", err)
}

// SpendingLimits implements billing.LifecycleStore.
func (s *Store) SpendingLimits(ctx context.Context, orgID int64, now time.Time) ([]billing.SpendingLimit, error) {
	from := billing.MonthStart(now)
	rows, err := s.pool.Query(ctx, qSpendingLimitOrg, orgID, from, from.AddDate(0, 1, 0))
	if err != nil {
		return nil, storeErr("listing spending limits", "spending limit", err)
	}
	out, err := pgx.CollectRows(rows, scanSpendingLimit)
	return out, storeErr("listing spending limits", "spending limit", err)
}

func scanSpendingLimit(r pgx.CollectableRow) (billing.SpendingLimit, error) {
	var l billing.SpendingLimit
	err := r.Scan(&l.NamespaceID, &l.OrgID, &l.Amount, &l.Currency, &l.UpdatedBy, &l.UpdatedAt, &l.MonthSpend, &l.Held)
	l.UpdatedAt = l.UpdatedAt.UTC()
	return l, err
}

// Webhooks.

const (
	qUpsertWebhook = `INSERT INTO billing_webhooks (org_id, url, secret, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
	ON CONFLICT (org_id) DO UPDATE SET url = EXCLUDED.url, secret = EXCLUDED.secret, updated_at = EXCLUDED.updated_at
	RETURNING created_at, updated_at`
	qDeleteWebhook       = `DELETE FROM billing_webhooks WHERE org_id = $1`
	qGiveUpOrgDeliveries = `UPDATE billing_webhook_deliveries SET failed_at = $2, last_error = 'webhook removed'
	WHERE org_id = $1 AND delivered_at IS NULL AND failed_at IS NULL`
	qWebhook              = `SELECT url, created_at, updated_at FROM billing_webhooks WHERE org_id = $1`
	qClaimWebhookDelivery = `UPDATE billing_webhook_deliveries d SET attempts = d.attempts + 1, next_attempt_at = $2
	FROM (SELECT id FROM billing_webhook_deliveries
	      WHERE delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $1
	      ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) due,
	     billing_debt_transitions t, billing_webhooks w
	WHERE d.id = due.id AND t.id = d.transition_id AND w.org_id = d.org_id
	RETURNING d.id, d.attempts, w.url, w.secret, t.id, t.org_id, coalesce(t.namespace_id, 0), t.event, t.from_state,
		t.to_state, t.usable_micros, t.currency, t.cause, t.at`
	qWebhookDelivered = `UPDATE billing_webhook_deliveries SET delivered_at = $3, last_status = $2, last_error = ''
	WHERE id = $1`
	qWebhookFailed = `UPDATE billing_webhook_deliveries SET last_status = nullif($2, 0), last_error = left($3, 1000),
		next_attempt_at = coalesce($4, next_attempt_at), failed_at = CASE WHEN $4::timestamptz IS NULL THEN $5::timestamptz END
	WHERE id = $1`
)

// SetWebhook implements billing.LifecycleStore.
func (s *Store) SetWebhook(ctx context.Context, orgID int64, url, secret string, by tenancy.Actor, now time.Time) (billing.WebhookEndpoint, error) {
	w := billing.WebhookEndpoint{OrgID: orgID, URL: url}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, qUpsertWebhook, orgID, url, secret, now.UTC()).Scan(&w.CreatedAt, &w.UpdatedAt); err != nil {
			return storeErr("setting webhook", "org", err)
		}
		return writeAudit(ctx, tx, audit(by, now, "billing.webhook.set", fmt.Sprintf("org:%d", orgID), map[string]any{"url": url}))
	})
	w.CreatedAt, w.UpdatedAt = w.CreatedAt.UTC(), w.UpdatedAt.UTC()
	return w, err
}

// RemoveWebhook implements billing.LifecycleStore.
func (s *Store) RemoveWebhook(ctx context.Context, orgID int64, by tenancy.Actor, now time.Time) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, qDeleteWebhook, orgID)
		if err != nil {
			return storeErr("removing webhook", "webhook", err)
		}
		if tag.RowsAffected() == 0 {
			return errcode.New(errcode.NotFound, "webhook not found")
		}
		if _, err := tx.Exec(ctx, qGiveUpOrgDeliveries, orgID, now.UTC()); err != nil {
			return storeErr("giving up webhook deliveries", "webhook delivery", err)
		}
		return writeAudit(ctx, tx, audit(by, now, "billing.webhook.remove", fmt.Sprintf("org:%d", orgID), nil))
	})
}

// Webhook implements billing.LifecycleStore.
func (s *Store) Webhook(ctx context.Context, orgID int64) (billing.WebhookEndpoint, error) {
	w := billing.WebhookEndpoint{OrgID: orgID}
	err := s.pool.QueryRow(ctx, qWebhook, orgID).Scan(&w.URL, &w.CreatedAt, &w.UpdatedAt)
	w.CreatedAt, w.UpdatedAt = w.CreatedAt.UTC(), w.UpdatedAt.UTC()
	return w, storeErr("reading webhook", "webhook", err)
}

// ClaimWebhookDeliveries implements billing.LifecycleStore.
func (s *Store) ClaimWebhookDeliveries(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]billing.WebhookDelivery, error) {
	rows, err := s.pool.Query(ctx, qClaimWebhookDelivery, now.UTC(), now.Add(lease).UTC(), limit)
	if err != nil {
		return nil, storeErr("claiming webhook deliveries", "webhook delivery", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (billing.WebhookDelivery, error) {
		var d billing.WebhookDelivery
		t := &d.Transition
		var ev, from, to string
		err := r.Scan(&d.ID, &d.Attempts, &d.URL, &d.Secret, &t.ID, &t.OrgID, &t.NamespaceID, &ev, &from, &to,
			&t.Usable, &t.Currency, &t.Cause, &t.At)
		t.Event, t.From, t.To, t.At = billing.DebtEvent(ev), billing.DebtState(from), billing.DebtState(to), t.At.UTC()
		return d, err
	})
	return out, storeErr("claiming webhook deliveries", "webhook delivery", err)
}

// WebhookDelivered implements billing.LifecycleStore.
func (s *Store) WebhookDelivered(ctx context.Context, id int64, status int, now time.Time) error {
	_, err := s.pool.Exec(ctx, qWebhookDelivered, id, status, now.UTC())
	return storeErr("recording webhook delivery", "webhook delivery", err)
}

// WebhookFailed implements billing.LifecycleStore.
func (s *Store) WebhookFailed(ctx context.Context, id int64, status int, msg string, next *time.Time, now time.Time) error {
	_, err := s.pool.Exec(ctx, qWebhookFailed, id, status, msg, utcPtr(next), now.UTC())
	return storeErr("recording webhook failure", "webhook delivery", err)
}
