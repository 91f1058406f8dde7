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

var _ billing.InvoiceStore = (*Store)(nil)

const (
	invoiceColumns = `id, org_id, period_start, period_end, billing_mode, status, currency, subtotal_micros,
	tax_rate_bps, tax_micros, total_micros, coalesce(number, 0), created_at, updated_at, finalized_at, paid_at,
	voided_at, void_reason`
	// qOpenInvoice creates the draft of an org's period unless it exists;
	// qLockInvoice then reads whichever there is.
	qOpenInvoice = `INSERT INTO invoices (org_id, period_start, period_end, billing_mode, status, currency,
	subtotal_micros, tax_rate_bps, tax_micros, total_micros, created_at, updated_at)
	VALUES ($1, $2, $3, $4, 'draft', $5, 0, $6, 0, 0, $7, $7)
	ON CONFLICT (org_id, period_start) DO NOTHING`
	qLockInvoice = `SELECT ` + invoiceColumns + ` FROM invoices WHERE org_id = $1 AND period_start = $2 FOR UPDATE`
	// qOrgBilling is the org's billing mode and the currency of its
	// plan's price book.
	qOrgBilling = `SELECT p.billing_mode, b.currency FROM orgs o
	JOIN plans p ON p.name = o.plan JOIN price_books b ON b.id = p.price_book_id WHERE o.id = $1`
	// qInvoiceLines sums an org's charge lines of a period per namespace
	// and resource: the lines of its invoice.
	qInvoiceLines = `SELECT c.namespace_id, coalesce(n.name, ''), c.resource, c.currency,
		sum(c.quantity)::bigint, sum(c.amount_micros)::bigint
	FROM charge_lines c LEFT JOIN namespaces n ON n.id = c.namespace_id
	WHERE c.org_id = $1 AND c.hour >= $2 AND c.hour < $3
	GROUP BY c.namespace_id, n.name, c.resource, c.currency
	ORDER BY coalesce(n.name, ''), c.namespace_id, c.resource`
	qDeleteLines = `DELETE FROM invoice_lines WHERE invoice_id = $1`
	qInsertLine  = `INSERT INTO invoice_lines (invoice_id, line, namespace_id, namespace, resource, quantity, amount_micros)
	VALUES ($1, $2, $3, $4, $5, $6, $7)`
	qUpdateDraft = `UPDATE invoices SET billing_mode = $2, currency = $3, subtotal_micros = $4, tax_rate_bps = $5,
	tax_micros = $6, total_micros = $7, updated_at = $8 WHERE id = $1 AND status = 'draft'`
	qLinesOf = `SELECT invoice_id, namespace_id, namespace, resource, quantity, amount_micros
	FROM invoice_lines WHERE invoice_id = ANY($1) ORDER BY invoice_id, line`
	qInvoiceByID = `SELECT ` + invoiceColumns + ` FROM invoices WHERE id = $1`
	qNextNumber  = `UPDATE invoice_numbers SET last = last + 1 RETURNING last`
	qFinalize    = `UPDATE invoices SET status = 'finalized', number = $2, finalized_at = $3, updated_at = $3 WHERE id = $1 AND status = 'draft'`
	qMarkPaid    = `UPDATE invoices SET status = 'paid', paid_at = $2, updated_at = $2 WHERE id = $1 AND status = 'finalized'`
	qVoid        = `UPDATE invoices SET status = 'void', voided_at = $3, void_reason = $4, updated_at = $3 WHERE id = $1 AND status = $2`
	// qInStripe locks the invoice and tells whether it was sent to Stripe.
	qInStripe      = `SELECT EXISTS (SELECT 1 FROM stripe_invoices WHERE invoice_id = i.id) FROM invoices i WHERE i.id = $1 FOR UPDATE`
	qOrgInvoices   = `SELECT ` + invoiceColumns + ` FROM invoices WHERE org_id = $1 ORDER BY id DESC LIMIT $2`
	qOrgInvBefore  = `SELECT ` + invoiceColumns + ` FROM invoices WHERE org_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3`
	qByStatus      = `SELECT ` + invoiceColumns + ` FROM invoices WHERE status = $1 AND id > $2 ORDER BY id LIMIT $3`
	qOrgsToInvoice = `SELECT DISTINCT c.org_id FROM charge_lines c
	WHERE c.hour >= $1 AND c.hour < $2
	  AND NOT EXISTS (SELECT 1 FROM invoices i WHERE i.org_id = c.org_id AND i.period_start = $1 AND i.status <> 'draft')
	ORDER BY 1`
	qFirstCharge       = `SELECT min(hour) FROM charge_lines`
	qInvoicedThrough   = `SELECT invoiced_through FROM invoice_progress`
	qSetInvoicedThough = `INSERT INTO invoice_progress (singleton, invoiced_through) VALUES (true, $1)
	ON CONFLICT (singleton) DO UPDATE SET invoiced_through = GREATEST(invoice_progress.invoiced_through, EXCLUDED.invoiced_through)`
	// qInvoiceSums puts each issued invoice's totals beside the sum of its
	// lines and the sum of its org's charge lines in its period now.
	qInvoiceSums = `SELECT i.id, i.org_id, i.number, i.subtotal_micros, i.tax_micros, i.total_micros, i.tax_rate_bps,
		coalesce((SELECT sum(l.amount_micros) FROM invoice_lines l WHERE l.invoice_id = i.id), 0)::bigint,
		coalesce((SELECT sum(c.amount_micros) FROM charge_lines c
			WHERE c.org_id = i.org_id AND c.hour >= i.period_start AND c.hour < i.period_end), 0)::bigint
	FROM invoices i WHERE i.status IN ('finalized', 'paid') ORDER BY i.id`
)

func scanInvoice(r pgx.Row) (billing.Invoice, error) {
	var inv billing.Invoice
	var mode, status string
	err := r.Scan(&inv.ID, &inv.OrgID, &inv.PeriodStart, &inv.PeriodEnd, &mode, &status, &inv.Currency, &inv.Subtotal,
		&inv.TaxRateBPS, &inv.Tax, &inv.Total, &inv.Number, &inv.CreatedAt, &inv.UpdatedAt, &inv.FinalizedAt,
		&inv.PaidAt, &inv.VoidedAt, &inv.VoidReason)
	inv.BillingMode, inv.Status = billing.BillingMode(mode), billing.InvoiceStatus(status)
	inv.PeriodStart, inv.PeriodEnd = inv.PeriodStart.UTC(), inv.PeriodEnd.UTC()
	inv.CreatedAt, inv.UpdatedAt = inv.CreatedAt.UTC(), inv.UpdatedAt.UTC()
	for _, t := range []**time.Time{&inv.FinalizedAt, &inv.PaidAt, &inv.VoidedAt} {
		if *t != nil {
			u := (*t).UTC()
			*t = &u
		}
	}
	return inv, err
}

// withLines loads the lines of invs in one query.
func withLines(ctx context.Context, db dbtx, invs []billing.Invoice) error {
	if len(invs) == 0 {
		return nil
	}
	ids := make([]int64, len(invs))
	at := make(map[int64]int, len(invs))
	for i, inv := range invs {
		ids[i], at[inv.ID] = inv.ID, i
	}
	rows, err := db.Query(ctx, qLinesOf, ids)
	if err != nil {
		return storeErr("reading invoice lines", "invoice", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var l billing.InvoiceLine
		if err := rows.Scan(&id, &l.NamespaceID, &l.Namespace, &l.Resource, &l.Quantity, &l.Amount); err != nil {
			return storeErr("reading invoice lines", "invoice", err)
		}
		invs[at[id]].Lines = append(invs[at[id]].Lines, l)
	}
	return storeErr("reading invoice lines", "invoice", rows.Err())
}

func invoiceTarget(id int64) string { return "invoice:" + strconv.FormatInt(id, 10) }

var systemBilling = tenancy.Actor{System: "billing"}

// GenerateInvoice implements billing.InvoiceStore.
func (s *Store) GenerateInvoice(ctx context.Context, orgID int64, p billing.InvoicePeriod, taxRateBPS int64) (billing.Invoice, error) {
	var inv billing.Invoice
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		now := s.now()
		var mode, currency string
		if err := tx.QueryRow(ctx, qOrgBilling, orgID).Scan(&mode, &currency); err != nil {
			return storeErr("reading org's plan", "org", err)
		}
		if _, err := tx.Exec(ctx, qOpenInvoice, orgID, p.Start.UTC(), p.End.UTC(), mode, currency, taxRateBPS, now); err != nil {
			return storeErr("opening invoice", "invoice", err)
		}
		var err error
		if inv, err = scanInvoice(tx.QueryRow(ctx, qLockInvoice, orgID, p.Start.UTC())); err != nil {
			return storeErr("reading invoice", "invoice", err)
		}
		if !inv.PeriodEnd.Equal(p.End.UTC()) {
			return errcode.New(errcode.Conflict, "an invoice of another length exists for this period")
		}
		if inv.Status != billing.InvoiceStatusDraft {
			invs := []billing.Invoice{inv}
			err := withLines(ctx, tx, invs)
			inv = invs[0]
			return err
		}
		lines, lineCurrency, err := chargeSums(ctx, tx, orgID, p)
		if err != nil {
			return err
		}
		if lineCurrency != "" {
			currency = lineCurrency
		}
		sub, tax, total, err := billing.InvoiceTotals(lines, taxRateBPS)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, qDeleteLines, inv.ID); err != nil {
			return storeErr("replacing invoice lines", "invoice", err)
		}
		for i, l := range lines {
			if _, err := tx.Exec(ctx, qInsertLine, inv.ID, i, l.NamespaceID, l.Namespace, l.Resource, l.Quantity, l.Amount); err != nil {
				return storeErr("writing invoice line", "invoice line", err)
			}
		}
		if _, err := tx.Exec(ctx, qUpdateDraft, inv.ID, mode, currency, sub, taxRateBPS, tax, total, now); err != nil {
			return storeErr("updating invoice", "invoice", err)
		}
		inv.BillingMode, inv.Currency, inv.Subtotal, inv.TaxRateBPS, inv.Tax, inv.Total, inv.UpdatedAt =
			billing.BillingMode(mode), currency, sub, taxRateBPS, tax, total, now
		inv.Lines = lines
		return writeAudit(ctx, tx, audit(systemBilling, now, "billing.invoice.draft", invoiceTarget(inv.ID), map[string]any{
			"org_id": orgID, "period_start": p.Start.UTC(), "lines": len(lines), "total_micros": total, "currency": currency,
		}))
	})
	if err != nil {
		return billing.Invoice{}, fmt.Errorf("generating invoice of org %d: %w", orgID, err)
	}
	return inv, nil
}

// chargeSums reads the lines of an invoice from the charge lines, and the
// one currency they are in ("" without lines).
func chargeSums(ctx context.Context, tx pgx.Tx, orgID int64, p billing.InvoicePeriod) ([]billing.InvoiceLine, string, error) {
	rows, err := tx.Query(ctx, qInvoiceLines, orgID, p.Start.UTC(), p.End.UTC())
	if err != nil {
		return nil, "", storeErr("summing charge lines", "charge line", err)
	}
	defer rows.Close()
	var lines []billing.InvoiceLine
	currency := ""
	for rows.Next() {
		var l billing.InvoiceLine
		var cur string
		if err := rows.Scan(&l.NamespaceID, &l.Namespace, &l.Resource, &cur, &l.Quantity, &l.Amount); err != nil {
			return nil, "", storeErr("summing charge lines", "charge line", err)
		}
		if currency != "" && cur != currency {
			return nil, "", errcode.New(errcode.Conflict, "the period's charges are in more than one currency")
		}
		currency = cur
		if l.Namespace == "" {
			l.Namespace = "namespace " + strconv.FormatInt(l.NamespaceID, 10)
		}
		lines = append(lines, l)
	}
	if err := rows.Err(); err != nil {
		return nil, "", storeErr("summing charge lines", "charge line", err)
	}
	return lines, currency, nil
}

// transition moves invoice id from the state it is in to to, through
// apply, which runs the UPDATE with the state in its WHERE clause: if
// another transaction moved it meanwhile, nothing changes and it is a
// CONFLICT.
func (s *Store) transition(ctx context.Context, tx pgx.Tx, id int64, to billing.InvoiceStatus,
	apply func(from billing.InvoiceStatus, now time.Time) (int64, error),
) (billing.Invoice, error) {
	inv, err := scanInvoice(tx.QueryRow(ctx, qInvoiceByID, id))
	if err != nil {
		return billing.Invoice{}, storeErr("reading invoice", "invoice", err)
	}
	if err := billing.CheckInvoiceTransition(inv.Status, to); err != nil {
		return billing.Invoice{}, err
	}
	n, err := apply(inv.Status, s.now())
	if err != nil {
		return billing.Invoice{}, storeErr("updating invoice", "invoice", err)
	}
	if n != 1 {
		return billing.Invoice{}, errcode.New(errcode.Conflict, "the invoice changed meanwhile; try again")
	}
	inv, err = scanInvoice(tx.QueryRow(ctx, qInvoiceByID, id))
	if err != nil {
		return billing.Invoice{}, storeErr("reading invoice", "invoice", err)
	}
	return inv, nil
}

func exec(ctx context.Context, tx pgx.Tx, sql string, args ...any) (int64, error) {
	tag, err := tx.Exec(ctx, sql, args...)
	return tag.RowsAffected(), err
}

// FinalizeInvoice implements billing.InvoiceStore. The number comes from
// the one counter row, locked until commit, so numbers have no gaps.
func (s *Store) FinalizeInvoice(ctx context.Context, id int64) (billing.Invoice, error) {
	var inv billing.Invoice
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		inv, err = s.transition(ctx, tx, id, billing.InvoiceStatusFinalized, func(_ billing.InvoiceStatus, now time.Time) (int64, error) {
			var number int64
			if err := tx.QueryRow(ctx, qNextNumber).Scan(&number); err != nil {
				return 0, err
			}
			return exec(ctx, tx, qFinalize, id, number, now)
		})
		if err != nil {
			return err
		}
		if err := writeAudit(ctx, tx, audit(systemBilling, s.now(), "billing.invoice.finalize", invoiceTarget(id), map[string]any{
			"org_id": inv.OrgID, "number": inv.Number, "total_micros": inv.Total, "currency": inv.Currency,
		})); err != nil {
			return err
		}
		if inv.BillingMode != billing.Prepaid {
			return nil
		}
		// A statement: the balance paid its charges as they were rated.
		inv, err = s.transition(ctx, tx, id, billing.InvoiceStatusPaid, func(_ billing.InvoiceStatus, now time.Time) (int64, error) {
			return exec(ctx, tx, qMarkPaid, id, now)
		})
		if err != nil {
			return err
		}
		return writeAudit(ctx, tx, audit(systemBilling, s.now(), "billing.invoice.paid", invoiceTarget(id), map[string]any{
			"org_id": inv.OrgID, "settled_by": "prepaid balance",
		}))
	})
	if err != nil {
		return billing.Invoice{}, fmt.Errorf("finalizing invoice %d: %w", id, err)
	}
	return s.loadLines(ctx, inv)
}

// MarkInvoicePaid moves a finalised invoice to paid and, when payment is
// set, posts it to the ledger in the same transaction (a postpaid bill
// paid through Stripe, or by a transfer an admin records). payment must
// be for the invoice's org. reason, when given, is recorded in the audit
// row.
func (s *Store) MarkInvoicePaid(ctx context.Context, id int64, payment *billing.Posting, reason string, by tenancy.Actor) (billing.Invoice, error) {
	var inv billing.Invoice
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := notInStripe(ctx, tx, id); err != nil {
			return err
		}
		var err error
		inv, err = s.transition(ctx, tx, id, billing.InvoiceStatusPaid, func(_ billing.InvoiceStatus, now time.Time) (int64, error) {
			return exec(ctx, tx, qMarkPaid, id, now)
		})
		if err != nil {
			return err
		}
		detail := map[string]any{"org_id": inv.OrgID}
		if reason != "" {
			detail["reason"] = reason
		}
		if payment != nil {
			if payment.OrgID != inv.OrgID {
				return errcode.New(errcode.Conflict, "the payment is for another org")
			}
			if _, err := s.post(ctx, tx, *payment); err != nil {
				return err
			}
			detail["reference"] = payment.Reference
		}
		return writeAudit(ctx, tx, audit(by, s.now(), "billing.invoice.paid", invoiceTarget(id), detail))
	})
	if err != nil {
		return billing.Invoice{}, fmt.Errorf("marking invoice %d paid: %w", id, err)
	}
	return s.loadLines(ctx, inv)
}

// VoidInvoice cancels a draft or finalised invoice with a reason.
func (s *Store) VoidInvoice(ctx context.Context, id int64, reason string, by tenancy.Actor) (billing.Invoice, error) {
	if reason == "" || len(reason) > 500 {
		return billing.Invoice{}, errcode.Invalid("reason", "must be 1 to 500 bytes")
	}
	var inv billing.Invoice
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := notInStripe(ctx, tx, id); err != nil {
			return err
		}
		var err error
		inv, err = s.transition(ctx, tx, id, billing.InvoiceStatusVoid, func(from billing.InvoiceStatus, now time.Time) (int64, error) {
			return exec(ctx, tx, qVoid, id, string(from), now, reason)
		})
		if err != nil {
			return err
		}
		return writeAudit(ctx, tx, audit(by, s.now(), "billing.invoice.void", invoiceTarget(id), map[string]any{
			"org_id": inv.OrgID, "reason": reason,
		}))
	})
	if err != nil {
		return billing.Invoice{}, fmt.Errorf("voiding invoice %d: %w", id, err)
	}
	return s.loadLines(ctx, inv)
}

// notInStripe refuses to settle or cancel by hand an invoice that was sent
// to Stripe: Stripe would still collect it, and its webhook moves it here.
func notInStripe(ctx context.Context, tx pgx.Tx, id int64) error {
	var sent bool
	if err := tx.QueryRow(ctx, qInStripe, id).Scan(&sent); err != nil {
		return storeErr("reading invoice", "invoice", err)
	}
	if sent {
		return errcode.New(errcode.Conflict, "the invoice was sent to Stripe: void or collect it there, and Stripe's webhook updates it here")
	}
	return nil
}

func (s *Store) loadLines(ctx context.Context, inv billing.Invoice) (billing.Invoice, error) {
	invs := []billing.Invoice{inv}
	if err := withLines(ctx, s.pool, invs); err != nil {
		return billing.Invoice{}, err
	}
	return invs[0], nil
}

// Invoice returns org's invoice id with its lines; one of another org is
// NOT_FOUND.
func (s *Store) Invoice(ctx context.Context, orgID, id int64) (billing.Invoice, error) {
	inv, err := scanInvoice(s.pool.QueryRow(ctx, qInvoiceByID, id))
	if err != nil {
		return billing.Invoice{}, storeErr("reading invoice", "invoice", err)
	}
	if inv.OrgID != orgID {
		return billing.Invoice{}, errcode.New(errcode.NotFound, "invoice not found")
	}
	return s.loadLines(ctx, inv)
}

// Invoices returns up to limit of org's invoices with their lines, newest
// first, with IDs below beforeID when it is positive.
func (s *Store) Invoices(ctx context.Context, orgID, beforeID int64, limit int) ([]billing.Invoice, error) {
	var rows pgx.Rows
	var err error
	if beforeID > 0 {
		rows, err = s.pool.Query(ctx, qOrgInvBefore, orgID, beforeID, limit)
	} else {
		rows, err = s.pool.Query(ctx, qOrgInvoices, orgID, limit)
	}
	return s.collectInvoices(ctx, rows, err)
}

// InvoicesByStatus returns up to limit invoices in status with IDs above
// afterID, oldest first, with their lines: how the Stripe integration
// finds the finalised bills it has yet to send.
func (s *Store) InvoicesByStatus(ctx context.Context, status billing.InvoiceStatus, afterID int64, limit int) ([]billing.Invoice, error) {
	rows, err := s.pool.Query(ctx, qByStatus, string(status), afterID, limit)
	return s.collectInvoices(ctx, rows, err)
}

func (s *Store) collectInvoices(ctx context.Context, rows pgx.Rows, err error) ([]billing.Invoice, error) {
	if err != nil {
		return nil, storeErr("listing invoices", "invoice", err)
	}
	invs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (billing.Invoice, error) { return scanInvoice(r) })
	if err != nil {
		return nil, storeErr("listing invoices", "invoice", err)
	}
	return invs, withLines(ctx, s.pool, invs)
}

// OrgsToInvoice implements billing.InvoiceStore.
func (s *Store) OrgsToInvoice(ctx context.Context, p billing.InvoicePeriod) ([]int64, error) {
	rows, err := s.pool.Query(ctx, qOrgsToInvoice, p.Start.UTC(), p.End.UTC())
	if err != nil {
		return nil, storeErr("listing orgs to invoice", "org", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	return ids, storeErr("listing orgs to invoice", "org", err)
}

// FirstChargeAt implements billing.InvoiceStore.
func (s *Store) FirstChargeAt(ctx context.Context) (time.Time, bool, error) {
	var t *time.Time
	if err := s.pool.QueryRow(ctx, qFirstCharge).Scan(&t); err != nil {
		return time.Time{}, false, storeErr("reading the first charge", "charge line", err)
	}
	if t == nil {
		return time.Time{}, false, nil
	}
	return t.UTC(), true, nil
}

// InvoicedThrough implements billing.InvoiceStore.
func (s *Store) InvoicedThrough(ctx context.Context) (time.Time, bool, error) {
	var t time.Time
	err := s.pool.QueryRow(ctx, qInvoicedThrough).Scan(&t)
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, storeErr("reading invoice progress", "invoice progress", err)
	}
	return t.UTC(), true, nil
}

// SetInvoicedThrough implements billing.InvoiceStore; it never moves the
// mark back.
func (s *Store) SetInvoicedThrough(ctx context.Context, end time.Time) error {
	_, err := s.pool.Exec(ctx, qSetInvoicedThough, end.UTC())
	return storeErr("writing invoice progress", "invoice progress", err)
}

// InvoiceSums returns every issued invoice's totals beside the sums they
// must equal, for billing verify.
func (s *Store) InvoiceSums(ctx context.Context) ([]billing.InvoiceSums, error) {
	rows, err := s.pool.Query(ctx, qInvoiceSums)
	if err != nil {
		return nil, storeErr("summing invoices", "invoice", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (billing.InvoiceSums, error) {
		var v billing.InvoiceSums
		err := r.Scan(&v.InvoiceID, &v.OrgID, &v.Number, &v.Subtotal, &v.Tax, &v.Total, &v.TaxRateBPS, &v.LineSum, &v.ChargeSum)
		return v, err
	})
	return out, storeErr("summing invoices", "invoice", err)
}
