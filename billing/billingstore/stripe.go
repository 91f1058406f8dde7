package billingstore

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/billing/stripepay"
	"github.com/tenantplane/tenantplane/internal/errcode"
)

var _ stripepay.Store = (*Store)(nil)

const (
	qStripeCustomer = `SELECT org_id, customer_id, email, name, created_at, updated_at
	FROM stripe_customers WHERE org_id = $1`
	// qStripeContact addresses an org by its display name, else its name,
	// and the email of its first owner.
	qStripeContact = `SELECT o.id, CASE WHEN o.display_name <> '' THEN o.display_name ELSE o.name END,
	coalesce((SELECT u.email FROM org_members m JOIN users u ON u.id = m.user_id
		WHERE m.org_id = o.id AND m.role = 'owner' ORDER BY m.created_at, m.user_id LIMIT 1), '')
	FROM orgs o WHERE o.id = $1`
	qInsertStripeCustomer = `INSERT INTO stripe_customers (org_id, customer_id, email, name, created_at, updated_at)
	VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (org_id) DO NOTHING`
	qUpdateStripeCustomer = `UPDATE stripe_customers SET email = $2, name = $3, updated_at = $4 WHERE org_id = $1`

	topUpColumns = `id, org_id, amount_micros, currency, automatic, status, coalesce(checkout_session_id, ''),
	checkout_url, coalesce(payment_intent_id, ''), failure, created_by, created_at, updated_at`
	qInsertTopUp = `INSERT INTO stripe_topups (org_id, amount_micros, currency, automatic, status, created_by, created_at, updated_at)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING ` + topUpColumns
	qTopUp            = `SELECT ` + topUpColumns + ` FROM stripe_topups WHERE id = $1`
	qSetTopUpCheckout = `UPDATE stripe_topups SET checkout_session_id = $2, checkout_url = $3, updated_at = $4 WHERE id = $1`
	qSetTopUpPayment  = `UPDATE stripe_topups SET payment_intent_id = $2, updated_at = $3 WHERE id = $1`
	qFailPendingTopUp = `UPDATE stripe_topups SET status = 'failed', failure = $2, updated_at = $3 WHERE id = $1 AND status = 'pending'`
	qSetTopUpStatus   = `UPDATE stripe_topups SET status = $2, payment_intent_id = coalesce(nullif($3, ''), payment_intent_id),
	failure = $4, updated_at = $5 WHERE id = $1`
	qUpsertAutoTopUp = `INSERT INTO stripe_auto_topups (org_id, enabled, threshold_micros, amount_micros, payment_method_id, updated_by, updated_at)
	VALUES ($1, $2, $3, $4, $5, $6, $7)
	ON CONFLICT (org_id) DO UPDATE SET enabled = EXCLUDED.enabled, threshold_micros = EXCLUDED.threshold_micros,
		amount_micros = EXCLUDED.amount_micros, payment_method_id = EXCLUDED.payment_method_id,
		updated_by = EXCLUDED.updated_by, updated_at = EXCLUDED.updated_at`
	qAutoTopUp = `SELECT org_id, enabled, threshold_micros, amount_micros, payment_method_id, updated_by, updated_at
	FROM stripe_auto_topups WHERE org_id = $1`
	// qDueAutoTopUps: enabled settings of orgs with a customer whose cash
	// plus credit usable at $1 is below the threshold, with no automatic
	// top-up pending and none failed since $2.
	qDueAutoTopUps = `SELECT * FROM (
		SELECT a.org_id, a.enabled, a.threshold_micros, a.amount_micros, a.payment_method_id, a.updated_by, a.updated_at,
			c.customer_id, coalesce(b.currency, $3),
			(coalesce(b.cash_micros, 0) + coalesce((SELECT sum(g.remaining_micros) FROM credit_grants g
				WHERE g.org_id = a.org_id AND g.remaining_micros > 0 AND (g.expires_at IS NULL OR g.expires_at > $1)), 0))::bigint AS usable
		FROM stripe_auto_topups a
		JOIN stripe_customers c ON c.org_id = a.org_id
		LEFT JOIN billing_accounts b ON b.org_id = a.org_id
		WHERE a.enabled AND NOT EXISTS (SELECT 1 FROM stripe_topups t WHERE t.org_id = a.org_id AND t.automatic
			AND (t.status = 'pending' OR (t.status = 'failed' AND t.updated_at > $2)))
	) d WHERE usable < threshold_micros ORDER BY org_id`

	// qUnchargedAutoTopUps: automatic top-ups still pending without a
	// PaymentIntent, recorded before $1 (a run stopped between recording
	// one and charging it), with the customer and saved payment method.
	qUnchargedAutoTopUps = `SELECT t.id, t.org_id, t.amount_micros, t.currency, t.created_at, c.customer_id,
		coalesce(a.payment_method_id, '')
	FROM stripe_topups t JOIN stripe_customers c ON c.org_id = t.org_id
	LEFT JOIN stripe_auto_topups a ON a.org_id = t.org_id
	WHERE t.automatic AND t.status = 'pending' AND t.payment_intent_id IS NULL AND t.created_at < $1
	ORDER BY t.id`

	stripeInvoiceColumns = `invoice_id, org_id, stripe_invoice_id, hosted_url, status, amount_micros, currency`
	qStripeInvoice       = `SELECT ` + stripeInvoiceColumns + ` FROM stripe_invoices WHERE invoice_id = $1`
	qStripeInvoiceByID   = `SELECT ` + stripeInvoiceColumns + ` FROM stripe_invoices WHERE stripe_invoice_id = $1`
	qInsertStripeInvoice = `INSERT INTO stripe_invoices (invoice_id, org_id, stripe_invoice_id, hosted_url, status,
	amount_micros, currency, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)`
	qSetStripeInvoiceStatus = `UPDATE stripe_invoices SET status = $2, updated_at = $3 WHERE invoice_id = $1`
	qUnpushedInvoices       = `SELECT ` + invoiceColumns + ` FROM invoices i
	WHERE i.status = 'finalized' AND i.billing_mode = 'postpaid'
	  AND NOT EXISTS (SELECT 1 FROM stripe_invoices s WHERE s.invoice_id = i.id)
	ORDER BY i.id LIMIT $1`

	// qRecordEvent stores an event unless it is stored, and says whether
	// the stored one was processed; a row inserted by this statement is
	// not visible to its own sub-select, and is unprocessed.
	qRecordEvent = `WITH ins AS (
		INSERT INTO stripe_events (id, type, created, payload, received_at) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (id) DO NOTHING RETURNING id)
	SELECT coalesce((SELECT processed_at IS NOT NULL FROM stripe_events WHERE id = $1), false)`
	qLockEvent      = `SELECT processed_at IS NOT NULL FROM stripe_events WHERE id = $1 FOR UPDATE`
	qEventProcessed = `UPDATE stripe_events SET processed_at = $2, outcome = $3, attempts = attempts + 1 WHERE id = $1`
	qEventFailed    = `UPDATE stripe_events SET attempts = attempts + 1, last_error = left($2, 2000) WHERE id = $1`
	qEnsureObject   = `INSERT INTO stripe_objects (object_id, status, event_created, event_id, updated_at)
	VALUES ($1, '', 'epoch', '', $2) ON CONFLICT (object_id) DO NOTHING`
	qLockObject    = `SELECT status, event_created, event_id FROM stripe_objects WHERE object_id = $1 FOR UPDATE`
	qSetObject     = `UPDATE stripe_objects SET status = $2, event_created = $3, event_id = $4, updated_at = $5 WHERE object_id = $1`
	qRecordPayment = `INSERT INTO stripe_payments (payment_intent_id, org_id, purpose, amount_micros, currency, reference, created_at)
	VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (payment_intent_id) DO NOTHING`
	qPaymentOrg   = `SELECT org_id FROM stripe_payments WHERE payment_intent_id = $1`
	qCustomerOrg  = `SELECT org_id FROM stripe_customers WHERE customer_id = $1`
	qStripeCharge = `SELECT charge_id, org_id, refunded_micros, currency FROM stripe_charges WHERE charge_id = $1`
	qUpsertCharge = `INSERT INTO stripe_charges (charge_id, org_id, refunded_micros, currency, updated_at) VALUES ($1, $2, $3, $4, $5)
	ON CONFLICT (charge_id) DO UPDATE SET refunded_micros = EXCLUDED.refunded_micros, updated_at = EXCLUDED.updated_at`
	qRecordDispute = `INSERT INTO stripe_disputes (dispute_id, org_id, charge_id, amount_micros, currency, reason, created_at)
	VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (dispute_id) DO NOTHING`

	qLedgerRefs = `SELECT reference, org_id, sum(amount_micros)::bigint, currency FROM ledger_entries
	WHERE reference = ANY($1) GROUP BY reference, org_id, currency`
	qProcessedEvents     = `SELECT id FROM stripe_events WHERE id = ANY($1) AND processed_at IS NOT NULL`
	qInsertReconcile     = `INSERT INTO stripe_reconciliations (started_at, since, payments, events) VALUES ($1, $2, $3, $4) RETURNING id`
	qInsertDiscrepancies = `INSERT INTO stripe_discrepancies (reconciliation_id, kind, object_id, org_id, detail)
	SELECT $1, k, o, nullif(g, 0), d FROM unnest($2::text[], $3::text[], $4::bigint[], $5::text[]) AS x(k, o, g, d)
	ON CONFLICT DO NOTHING`
	qDropOldReconciles = `DELETE FROM stripe_reconciliations WHERE id < $1`
	qLastReconcile     = `SELECT id, started_at, since, payments, events FROM stripe_reconciliations ORDER BY id DESC LIMIT 1`
	qDiscrepancies     = `SELECT kind, object_id, coalesce(org_id, 0), detail FROM stripe_discrepancies
	WHERE reconciliation_id = $1 ORDER BY kind, object_id`
)

// Customer implements stripepay.Store.
func (s *Store) Customer(ctx context.Context, orgID int64) (stripepay.Customer, error) {
	return scanCustomer(s.pool.QueryRow(ctx, qStripeCustomer, orgID))
}

func scanCustomer(r pgx.Row) (stripepay.Customer, error) {
	var c stripepay.Customer
	err := r.Scan(&c.OrgID, &c.CustomerID, &c.Email, &c.Name, &c.CreatedAt, &c.UpdatedAt)
	c.CreatedAt, c.UpdatedAt = c.CreatedAt.UTC(), c.UpdatedAt.UTC()
	return c, storeErr("reading stripe customer", "stripe customer", err)
}

// Contact implements stripepay.Store.
func (s *Store) Contact(ctx context.Context, orgID int64) (stripepay.Contact, error) {
	var c stripepay.Contact
	err := s.pool.QueryRow(ctx, qStripeContact, orgID).Scan(&c.OrgID, &c.Name, &c.Email)
	return c, storeErr("reading org contact", "org", err)
}

// SaveCustomer implements stripepay.Store.
func (s *Store) SaveCustomer(ctx context.Context, c stripepay.Customer) (stripepay.Customer, error) {
	var out stripepay.Customer
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, qInsertStripeCustomer, c.OrgID, c.CustomerID, c.Email, c.Name, c.CreatedAt.UTC(), c.UpdatedAt.UTC())
		if err != nil {
			return storeErr("saving stripe customer", "stripe customer", err)
		}
		if tag.RowsAffected() == 1 {
			if err := writeAudit(ctx, tx, AuditEntry{At: c.CreatedAt, Actor: "system:billing", Action: "billing.stripe.customer",
				Target: orgKey(c.OrgID), Detail: map[string]any{"customer": c.CustomerID}}); err != nil {
				return err
			}
		}
		out, err = scanCustomer(tx.QueryRow(ctx, qStripeCustomer, c.OrgID))
		return err
	})
	return out, err
}

// UpdateCustomerContact implements stripepay.Store.
func (s *Store) UpdateCustomerContact(ctx context.Context, orgID int64, email, name string, at time.Time) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, qUpdateStripeCustomer, orgID, email, name, at.UTC()); err != nil {
			return storeErr("updating stripe customer", "stripe customer", err)
		}
		return writeAudit(ctx, tx, AuditEntry{At: at, Actor: "system:billing", Action: "billing.stripe.customer_sync",
			Target: orgKey(orgID), Detail: map[string]any{"email": email, "name": name}})
	})
}

// CurrencyOf implements stripepay.Store.
func (s *Store) CurrencyOf(ctx context.Context, orgID int64, def string) (string, error) {
	var c string
	err := s.pool.QueryRow(ctx, qAccountCurrency, orgID).Scan(&c)
	if errors.Is(err, pgx.ErrNoRows) {
		return def, nil
	}
	return c, storeErr("reading account currency", "billing account", err)
}

// CreateTopUp implements stripepay.Store.
func (s *Store) CreateTopUp(ctx context.Context, t stripepay.TopUp, a stripepay.Audit) (stripepay.TopUp, error) {
	var out stripepay.TopUp
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		out, err = scanTopUp(tx.QueryRow(ctx, qInsertTopUp, t.OrgID, t.Amount, t.Currency, t.Automatic, string(t.Status),
			t.CreatedBy, t.CreatedAt.UTC()))
		if err != nil {
			if errcode.Of(err) == errcode.Conflict {
				return errcode.New(errcode.Conflict, "an automatic top-up of the org is under way")
			}
			return err
		}
		a.Detail = withDetail(a.Detail, "topup", out.ID)
		return stripeAudit(ctx, tx, a, t.CreatedAt)
	})
	return out, err
}

func withDetail(d map[string]any, k string, v any) map[string]any {
	if d == nil {
		d = map[string]any{}
	}
	d[k] = v
	return d
}

func stripeAudit(ctx context.Context, db dbtx, a stripepay.Audit, at time.Time) error {
	return writeAudit(ctx, db, AuditEntry{At: at, Actor: a.Actor, Action: a.Action, Target: a.Target, Detail: a.Detail})
}

func scanTopUp(r pgx.Row) (stripepay.TopUp, error) {
	var t stripepay.TopUp
	var status string
	err := r.Scan(&t.ID, &t.OrgID, &t.Amount, &t.Currency, &t.Automatic, &status, &t.CheckoutSessionID, &t.CheckoutURL,
		&t.PaymentIntentID, &t.Failure, &t.CreatedBy, &t.CreatedAt, &t.UpdatedAt)
	t.Status = stripepay.TopUpStatus(status)
	t.CreatedAt, t.UpdatedAt = t.CreatedAt.UTC(), t.UpdatedAt.UTC()
	return t, storeErr("reading top-up", "top-up", err)
}

// SetTopUpCheckout implements stripepay.Store.
func (s *Store) SetTopUpCheckout(ctx context.Context, id int64, sessionID, url string, at time.Time) error {
	_, err := s.pool.Exec(ctx, qSetTopUpCheckout, id, sessionID, url, at.UTC())
	return storeErr("recording checkout session", "top-up", err)
}

// SetTopUpPaymentIntent implements stripepay.Store.
func (s *Store) SetTopUpPaymentIntent(ctx context.Context, id int64, pi string, at time.Time) error {
	_, err := s.pool.Exec(ctx, qSetTopUpPayment, id, pi, at.UTC())
	return storeErr("recording payment intent", "top-up", err)
}

// FailTopUp implements stripepay.Store.
func (s *Store) FailTopUp(ctx context.Context, id int64, reason string, at time.Time) error {
	_, err := s.pool.Exec(ctx, qFailPendingTopUp, id, reason, at.UTC())
	return storeErr("failing top-up", "top-up", err)
}

// TopUp implements stripepay.Store.
func (s *Store) TopUp(ctx context.Context, id int64) (stripepay.TopUp, error) {
	return scanTopUp(s.pool.QueryRow(ctx, qTopUp, id))
}

// SetAutoTopUp implements stripepay.Store.
func (s *Store) SetAutoTopUp(ctx context.Context, a stripepay.AutoTopUp, au stripepay.Audit) (stripepay.AutoTopUp, error) {
	var out stripepay.AutoTopUp
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, qUpsertAutoTopUp, a.OrgID, a.Enabled, a.Threshold, a.Amount, a.PaymentMethodID,
			a.UpdatedBy, a.UpdatedAt.UTC()); err != nil {
			return storeErr("saving automatic top-up", "org", err)
		}
		if err := stripeAudit(ctx, tx, au, a.UpdatedAt); err != nil {
			return err
		}
		var err error
		out, err = scanAutoTopUp(tx.QueryRow(ctx, qAutoTopUp, a.OrgID))
		return err
	})
	return out, err
}

func scanAutoTopUp(r pgx.Row) (stripepay.AutoTopUp, error) {
	var a stripepay.AutoTopUp
	err := r.Scan(&a.OrgID, &a.Enabled, &a.Threshold, &a.Amount, &a.PaymentMethodID, &a.UpdatedBy, &a.UpdatedAt)
	a.UpdatedAt = a.UpdatedAt.UTC()
	return a, storeErr("reading automatic top-up", "automatic top-up", err)
}

// AutoTopUp implements stripepay.Store.
func (s *Store) AutoTopUp(ctx context.Context, orgID int64) (stripepay.AutoTopUp, error) {
	return scanAutoTopUp(s.pool.QueryRow(ctx, qAutoTopUp, orgID))
}

// DueAutoTopUps implements stripepay.Store.
func (s *Store) DueAutoTopUps(ctx context.Context, now, failedSince time.Time, def string) ([]stripepay.AutoTopUpDue, error) {
	rows, err := s.pool.Query(ctx, qDueAutoTopUps, now.UTC(), failedSince.UTC(), def)
	if err != nil {
		return nil, storeErr("listing due automatic top-ups", "automatic top-up", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (stripepay.AutoTopUpDue, error) {
		var d stripepay.AutoTopUpDue
		err := r.Scan(&d.OrgID, &d.Enabled, &d.Threshold, &d.Amount, &d.PaymentMethodID, &d.UpdatedBy, &d.UpdatedAt,
			&d.CustomerID, &d.Currency, &d.Usable)
		return d, err
	})
	return out, storeErr("listing due automatic top-ups", "automatic top-up", err)
}

// UnchargedAutoTopUps implements stripepay.Store.
func (s *Store) UnchargedAutoTopUps(ctx context.Context, before time.Time) ([]stripepay.UnchargedTopUp, error) {
	rows, err := s.pool.Query(ctx, qUnchargedAutoTopUps, before.UTC())
	if err != nil {
		return nil, storeErr("listing uncharged automatic top-ups", "top-up", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (stripepay.UnchargedTopUp, error) {
		var u stripepay.UnchargedTopUp
		err := r.Scan(&u.ID, &u.OrgID, &u.Amount, &u.Currency, &u.CreatedAt, &u.CustomerID, &u.PaymentMethodID)
		u.CreatedAt = u.CreatedAt.UTC()
		return u, err
	})
	return out, storeErr("listing uncharged automatic top-ups", "top-up", err)
}

func scanStripeInvoice(r pgx.Row) (stripepay.StripeInvoice, error) {
	var i stripepay.StripeInvoice
	err := r.Scan(&i.InvoiceID, &i.OrgID, &i.StripeInvoiceID, &i.HostedURL, &i.Status, &i.Amount, &i.Currency)
	return i, storeErr("reading stripe invoice", "stripe invoice", err)
}

// StripeInvoice implements stripepay.Store.
func (s *Store) StripeInvoice(ctx context.Context, invoiceID int64) (stripepay.StripeInvoice, error) {
	return scanStripeInvoice(s.pool.QueryRow(ctx, qStripeInvoice, invoiceID))
}

// SaveStripeInvoice implements stripepay.Store.
func (s *Store) SaveStripeInvoice(ctx context.Context, inv stripepay.StripeInvoice, at time.Time) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, qInsertStripeInvoice, inv.InvoiceID, inv.OrgID, inv.StripeInvoiceID, inv.HostedURL,
			inv.Status, inv.Amount, inv.Currency, at.UTC()); err != nil {
			return storeErr("saving stripe invoice", "stripe invoice", err)
		}
		return writeAudit(ctx, tx, AuditEntry{At: at, Actor: "system:billing", Action: "billing.invoice.push",
			Target: orgKey(inv.OrgID), Detail: map[string]any{"invoice": inv.InvoiceID, "stripe_invoice": inv.StripeInvoiceID}})
	})
}

// UnpushedInvoices implements stripepay.Store.
func (s *Store) UnpushedInvoices(ctx context.Context, limit int) ([]billing.Invoice, error) {
	rows, err := s.pool.Query(ctx, qUnpushedInvoices, limit)
	return s.collectInvoices(ctx, rows, err)
}

// RecordEvent implements stripepay.Store.
func (s *Store) RecordEvent(ctx context.Context, e stripepay.RawEvent, at time.Time) (bool, error) {
	var processed bool
	err := s.pool.QueryRow(ctx, qRecordEvent, e.ID, e.Type, e.Created.UTC(), e.Payload, at.UTC()).Scan(&processed)
	return processed, storeErr("storing stripe event", "stripe event", err)
}

// ProcessEvent implements stripepay.Store.
func (s *Store) ProcessEvent(ctx context.Context, id string, at time.Time, fn func(stripepay.EventTx) (string, error)) (bool, error) {
	dup := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, qLockEvent, id).Scan(&dup); err != nil {
			return storeErr("locking stripe event", "stripe event", err)
		}
		if dup {
			return nil
		}
		outcome, err := fn(&eventTx{s: s, tx: tx})
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, qEventProcessed, id, at.UTC(), outcome)
		return storeErr("marking stripe event processed", "stripe event", err)
	})
	return dup, err
}

// EventFailed implements stripepay.Store.
func (s *Store) EventFailed(ctx context.Context, id, msg string) error {
	_, err := s.pool.Exec(ctx, qEventFailed, id, msg)
	return storeErr("recording stripe event failure", "stripe event", err)
}

// LedgerRefs implements stripepay.Store.
func (s *Store) LedgerRefs(ctx context.Context, refs []string) (map[string]stripepay.LedgerRef, error) {
	out := map[string]stripepay.LedgerRef{}
	if len(refs) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, qLedgerRefs, refs)
	if err != nil {
		return nil, storeErr("reading ledger references", "ledger entry", err)
	}
	defer rows.Close()
	for rows.Next() {
		var ref string
		var l stripepay.LedgerRef
		if err := rows.Scan(&ref, &l.OrgID, &l.Amount, &l.Currency); err != nil {
			return nil, storeErr("reading ledger references", "ledger entry", err)
		}
		out[ref] = l
	}
	return out, storeErr("reading ledger references", "ledger entry", rows.Err())
}

// ProcessedEvents implements stripepay.Store.
func (s *Store) ProcessedEvents(ctx context.Context, ids []string) (map[string]bool, error) {
	out := map[string]bool{}
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, qProcessedEvents, ids)
	if err != nil {
		return nil, storeErr("reading processed events", "stripe event", err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, storeErr("reading processed events", "stripe event", err)
	}
	for _, id := range got {
		out[id] = true
	}
	return out, nil
}

// SaveReconciliation implements stripepay.Store.
func (s *Store) SaveReconciliation(ctx context.Context, r stripepay.Reconciliation) (stripepay.Reconciliation, error) {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, qInsertReconcile, r.StartedAt.UTC(), r.Since.UTC(), r.Payments, r.Events).Scan(&r.ID); err != nil {
			return storeErr("saving reconciliation", "reconciliation", err)
		}
		n := len(r.Discrepancies)
		kinds, objs, orgs, details := make([]string, n), make([]string, n), make([]int64, n), make([]string, n)
		for i, d := range r.Discrepancies {
			kinds[i], objs[i], orgs[i], details[i] = d.Kind, d.ObjectID, d.OrgID, d.Detail
		}
		if _, err := tx.Exec(ctx, qInsertDiscrepancies, r.ID, kinds, objs, orgs, details); err != nil {
			return storeErr("saving discrepancies", "reconciliation", err)
		}
		if _, err := tx.Exec(ctx, qDropOldReconciles, r.ID); err != nil {
			return storeErr("dropping old reconciliations", "reconciliation", err)
		}
		return writeAudit(ctx, tx, AuditEntry{At: r.StartedAt, Actor: "system:billing", Action: "billing.stripe.reconcile",
			Target: "platform", Detail: map[string]any{"reconciliation": r.ID, "discrepancies": n}})
	})
	return r, err
}

// LastReconciliation implements stripepay.Store.
func (s *Store) LastReconciliation(ctx context.Context) (stripepay.Reconciliation, error) {
	var r stripepay.Reconciliation
	if err := s.pool.QueryRow(ctx, qLastReconcile).Scan(&r.ID, &r.StartedAt, &r.Since, &r.Payments, &r.Events); err != nil {
		return r, storeErr("reading reconciliation", "reconciliation", err)
	}
	r.StartedAt, r.Since = r.StartedAt.UTC(), r.Since.UTC()
	rows, err := s.pool.Query(ctx, qDiscrepancies, r.ID)
	if err != nil {
		return r, storeErr("reading discrepancies", "reconciliation", err)
	}
	r.Discrepancies, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (stripepay.Discrepancy, error) {
		var d stripepay.Discrepancy
		return d, row.Scan(&d.Kind, &d.ObjectID, &d.OrgID, &d.Detail)
	})
	return r, storeErr("reading discrepancies", "reconciliation", err)
}

func orgKey(id int64) string { return "org:" + strconv.FormatInt(id, 10) }

// eventTx is what one webhook event does in its transaction.
type eventTx struct {
	s  *Store
	tx pgx.Tx
}

var _ stripepay.EventTx = (*eventTx)(nil)

func (e *eventTx) Post(ctx context.Context, p billing.Posting) (billing.Posted, error) {
	return e.s.post(ctx, e.tx, p)
}

func (e *eventTx) LockObject(ctx context.Context, objectID string) (stripepay.ObjectState, error) {
	st := stripepay.ObjectState{ObjectID: objectID}
	if _, err := e.tx.Exec(ctx, qEnsureObject, objectID, e.s.now()); err != nil {
		return st, storeErr("recording stripe object", "stripe object", err)
	}
	if err := e.tx.QueryRow(ctx, qLockObject, objectID).Scan(&st.Status, &st.EventCreated, &st.EventID); err != nil {
		return st, storeErr("locking stripe object", "stripe object", err)
	}
	st.Exists = st.EventID != ""
	st.EventCreated = st.EventCreated.UTC()
	return st, nil
}

func (e *eventTx) SetObject(ctx context.Context, st stripepay.ObjectState, at time.Time) error {
	_, err := e.tx.Exec(ctx, qSetObject, st.ObjectID, st.Status, st.EventCreated.UTC(), st.EventID, at.UTC())
	return storeErr("recording stripe object", "stripe object", err)
}

func (e *eventTx) TopUp(ctx context.Context, id int64) (stripepay.TopUp, error) {
	return scanTopUp(e.tx.QueryRow(ctx, qTopUp, id))
}

func (e *eventTx) SetTopUpStatus(ctx context.Context, id int64, status stripepay.TopUpStatus, pi, failure string, at time.Time) error {
	_, err := e.tx.Exec(ctx, qSetTopUpStatus, id, string(status), pi, failure, at.UTC())
	return storeErr("updating top-up", "top-up", err)
}

func (e *eventTx) RecordPayment(ctx context.Context, p stripepay.Payment, at time.Time) error {
	_, err := e.tx.Exec(ctx, qRecordPayment, p.PaymentIntentID, p.OrgID, p.Purpose, p.Amount, p.Currency, p.Reference, at.UTC())
	return storeErr("recording payment", "payment", err)
}

func (e *eventTx) PaymentOrg(ctx context.Context, pi string) (int64, bool, error) {
	return e.orgOf(ctx, qPaymentOrg, pi)
}

func (e *eventTx) CustomerOrg(ctx context.Context, customerID string) (int64, bool, error) {
	return e.orgOf(ctx, qCustomerOrg, customerID)
}

func (e *eventTx) orgOf(ctx context.Context, q, key string) (int64, bool, error) {
	var org int64
	err := e.tx.QueryRow(ctx, q, key).Scan(&org)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	return org, err == nil, storeErr("finding org", "org", err)
}

func (e *eventTx) Charge(ctx context.Context, chargeID string) (stripepay.Charge, bool, error) {
	var c stripepay.Charge
	err := e.tx.QueryRow(ctx, qStripeCharge, chargeID).Scan(&c.ChargeID, &c.OrgID, &c.Refunded, &c.Currency)
	if errors.Is(err, pgx.ErrNoRows) {
		return stripepay.Charge{ChargeID: chargeID}, false, nil
	}
	return c, err == nil, storeErr("reading charge", "charge", err)
}

func (e *eventTx) SaveCharge(ctx context.Context, c stripepay.Charge, at time.Time) error {
	_, err := e.tx.Exec(ctx, qUpsertCharge, c.ChargeID, c.OrgID, c.Refunded, c.Currency, at.UTC())
	return storeErr("saving charge", "charge", err)
}

func (e *eventTx) RecordDispute(ctx context.Context, d stripepay.Dispute, at time.Time) error {
	_, err := e.tx.Exec(ctx, qRecordDispute, d.DisputeID, d.OrgID, d.ChargeID, d.Amount, d.Currency, d.Reason, at.UTC())
	return storeErr("recording dispute", "dispute", err)
}

func (e *eventTx) InvoiceByStripeID(ctx context.Context, stripeID string) (stripepay.StripeInvoice, bool, error) {
	inv, err := scanStripeInvoice(e.tx.QueryRow(ctx, qStripeInvoiceByID, stripeID))
	if errcode.Of(err) == errcode.NotFound {
		return inv, false, nil
	}
	return inv, err == nil, err
}

func (e *eventTx) SetInvoiceStatus(ctx context.Context, invoiceID int64, status string, at time.Time) error {
	if _, err := e.tx.Exec(ctx, qSetStripeInvoiceStatus, invoiceID, status, at.UTC()); err != nil {
		return storeErr("updating stripe invoice", "stripe invoice", err)
	}
	var to billing.InvoiceStatus
	switch status {
	case "paid":
		to = billing.InvoiceStatusPaid
	case "void":
		to = billing.InvoiceStatusVoid
	default:
		return nil
	}
	inv, err := scanInvoice(e.tx.QueryRow(ctx, qInvoiceByID, invoiceID))
	if err != nil {
		return storeErr("reading invoice", "invoice", err)
	}
	if !inv.Status.CanTransition(to) {
		return nil // paid or void already
	}
	_, err = e.s.transition(ctx, e.tx, invoiceID, to, func(from billing.InvoiceStatus, now time.Time) (int64, error) {
		if to == billing.InvoiceStatusPaid {
			return exec(ctx, e.tx, qMarkPaid, invoiceID, now)
		}
		return exec(ctx, e.tx, qVoid, invoiceID, string(from), now, "voided in Stripe")
	})
	if err != nil {
		return err
	}
	return writeAudit(ctx, e.tx, AuditEntry{At: at, Actor: "stripe", Action: "billing.invoice." + status,
		Target: invoiceTarget(invoiceID), Detail: map[string]any{"org_id": inv.OrgID}})
}

func (e *eventTx) Audit(ctx context.Context, a stripepay.Audit, at time.Time) error {
	return stripeAudit(ctx, e.tx, a, at)
}
