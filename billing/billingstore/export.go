package billingstore

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantplane/tenantplane/billing/export"
	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/tenancy"
)

var _ export.Store = (*Store)(nil)

// An export's filters reach its COPY statement, which takes no bind
// parameters, as settings local to the export's transaction: qExportSettings
// sets them, and the queries read them with current_setting. An empty
// setting does not filter. TimeZone is UTC, so that to_char writes UTC.
const qExportSettings = `SELECT set_config('TimeZone', 'UTC', true),
	set_config('tenantplane.export_from', $1, true),
	set_config('tenantplane.export_to', $2, true),
	set_config('tenantplane.export_org', $3, true),
	set_config('tenantplane.export_namespace', $4, true),
	set_config('tenantplane.export_resource', $5, true),
	set_config('tenantplane.export_at', $6, true)`

// The rows of each export. Amounts are micros written as decimal currency
// units with six decimals, exactly as billing.FormatMicros writes them:
// multiplying by 0.000001 is exact in numeric, where dividing by a million
// would round to about sixteen digits; times are RFC
// 3339 in UTC, to the second for hours and to the microsecond for
// instants. Usage rows of a namespace the tenancy tables no longer know
// keep an empty org.
const (
	qExportUsage = `SELECT to_char(u.hour, 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS hour,
		n.org_id, u.namespace_id, n.name AS namespace, u.resource, u.class, u.revision, u.quantity,
		to_char(u.rolled_at, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS rolled_at
	FROM usage_hourly u LEFT JOIN namespaces n ON n.id = u.namespace_id
	WHERE u.hour >= current_setting('tenantplane.export_from')::timestamptz
	  AND u.hour < current_setting('tenantplane.export_to')::timestamptz
	  AND (current_setting('tenantplane.export_org') = ''
	       OR n.org_id = nullif(current_setting('tenantplane.export_org'), '')::bigint)
	  AND (current_setting('tenantplane.export_namespace') = ''
	       OR u.namespace_id = nullif(current_setting('tenantplane.export_namespace'), '')::bigint)
	  AND (current_setting('tenantplane.export_resource') = ''
	       OR u.resource = current_setting('tenantplane.export_resource'))
	ORDER BY u.namespace_id, u.hour, u.resource, u.class, u.revision`

	qExportLedger = `SELECT e.id, to_char(e.occurred_at, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS occurred_at,
		e.org_id, e.kind, e.account, e.credit_grant_id,
		(e.amount_micros::numeric * 0.000001)::numeric(26,6)::text AS amount, e.currency,
		e.reference, e.part, e.description, e.actor,
		to_char(e.created_at, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS created_at
	FROM ledger_entries e
	WHERE e.occurred_at >= current_setting('tenantplane.export_from')::timestamptz
	  AND e.occurred_at < current_setting('tenantplane.export_to')::timestamptz
	  AND (current_setting('tenantplane.export_org') = ''
	       OR e.org_id = nullif(current_setting('tenantplane.export_org'), '')::bigint)
	ORDER BY e.id`

	// qExportCharges is every column that explains a charge line: the
	// usage it rated (namespace, resource, class, hour, revision,
	// quantity), the price it was rated at (unit_price per unit_divisor
	// usage units, from the tier that starts tier_start units into the
	// org's month, in price book version price_book_version_id), what it
	// came to and the ledger posting that carries it.
	qExportCharges = `SELECT c.id, c.key, to_char(c.hour, 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS hour,
		c.org_id, c.namespace_id, coalesce(n.name, '') AS namespace, c.resource, c.class, c.revision, c.quantity,
		c.unit_divisor, (c.unit_price_micros::numeric * 0.000001)::numeric(26,6)::text AS unit_price, c.tier_start,
		(c.amount_micros::numeric * 0.000001)::numeric(26,6)::text AS amount, c.currency,
		c.price_book_version_id, coalesce(b.name, '') AS price_book, c.ledger_reference,
		to_char(c.rated_at, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS rated_at
	FROM charge_lines c LEFT JOIN namespaces n ON n.id = c.namespace_id
	LEFT JOIN price_book_versions v ON v.id = c.price_book_version_id
	LEFT JOIN price_books b ON b.id = v.price_book_id
	WHERE c.hour >= current_setting('tenantplane.export_from')::timestamptz
	  AND c.hour < current_setting('tenantplane.export_to')::timestamptz
	  AND (current_setting('tenantplane.export_org') = ''
	       OR c.org_id = nullif(current_setting('tenantplane.export_org'), '')::bigint)
	  AND (current_setting('tenantplane.export_namespace') = ''
	       OR c.namespace_id = nullif(current_setting('tenantplane.export_namespace'), '')::bigint)
	  AND (current_setting('tenantplane.export_resource') = ''
	       OR c.resource = current_setting('tenantplane.export_resource'))
	ORDER BY c.id`

	// qExportInvoices is one row per invoice line, each with its
	// invoice's number, org, period, status and totals, so that a
	// spreadsheet needs no join; an invoice without lines is one row with
	// empty line fields. The totals repeat on every line of an invoice:
	// sum them once per invoice_id. Invoices are chosen by the start of
	// their period. number is as printed (INV-000042), empty for drafts.
	qExportInvoices = `SELECT i.id AS invoice_id,
		CASE WHEN i.number IS NULL THEN ''
		     WHEN i.number < 1000000 THEN 'INV-' || lpad(i.number::text, 6, '0')
		     ELSE 'INV-' || i.number::text END AS number,
		i.org_id, o.name AS org,
		to_char(i.period_start, 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS period_start,
		to_char(i.period_end, 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS period_end,
		i.billing_mode, i.status, i.currency,
		(i.subtotal_micros::numeric * 0.000001)::numeric(26,6)::text AS subtotal, i.tax_rate_bps,
		(i.tax_micros::numeric * 0.000001)::numeric(26,6)::text AS tax,
		(i.total_micros::numeric * 0.000001)::numeric(26,6)::text AS total,
		to_char(i.finalized_at, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS finalized_at,
		to_char(i.paid_at, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS paid_at,
		to_char(i.voided_at, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS voided_at, i.void_reason,
		l.line, l.namespace_id, l.namespace, l.resource, l.quantity,
		(l.amount_micros::numeric * 0.000001)::numeric(26,6)::text AS line_amount
	FROM invoices i JOIN orgs o ON o.id = i.org_id
	LEFT JOIN invoice_lines l ON l.invoice_id = i.id
	WHERE i.period_start >= current_setting('tenantplane.export_from')::timestamptz
	  AND i.period_start < current_setting('tenantplane.export_to')::timestamptz
	  AND (current_setting('tenantplane.export_org') = ''
	       OR i.org_id = nullif(current_setting('tenantplane.export_org'), '')::bigint)
	ORDER BY i.id, l.line`

	// qExportBalances values credit at the moment of the export: usable
	// credit is what unexpired grants have left, usable is cash plus it.
	qExportBalances = `SELECT a.org_id, o.name AS org, a.currency,
		(a.cash_micros::numeric * 0.000001)::numeric(26,6)::text AS cash,
		(a.credit_micros::numeric * 0.000001)::numeric(26,6)::text AS credit,
		(g.usable * 0.000001)::numeric(26,6)::text AS usable_credit,
		((a.cash_micros + g.usable) * 0.000001)::numeric(26,6)::text AS usable,
		a.entry_count, to_char(a.updated_at, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS updated_at
	FROM billing_accounts a JOIN orgs o ON o.id = a.org_id
	CROSS JOIN LATERAL (SELECT coalesce(sum(c.remaining_micros), 0) AS usable FROM credit_grants c
		WHERE c.org_id = a.org_id AND c.remaining_micros > 0
		  AND (c.expires_at IS NULL OR c.expires_at > current_setting('tenantplane.export_at')::timestamptz)) g
	WHERE current_setting('tenantplane.export_org') = ''
	   OR a.org_id = nullif(current_setting('tenantplane.export_org'), '')::bigint
	ORDER BY a.org_id`
)

// Each export is one COPY TO STDOUT, so that Postgres formats the rows
// and the client only passes bytes on. CSV is Postgres's RFC 4180 output
// with a header row; JSON Lines is each row as a JSON object, passed
// through CSV mode with quote and delimiter characters that JSON text
// never holds (it escapes every control character), so nothing is quoted
// or escaped a second time.
const (
	copyCSV    = `) TO STDOUT WITH (FORMAT csv, HEADER true, ENCODING 'UTF8')`
	copyJSON   = `) r) TO STDOUT WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02', ENCODING 'UTF8')`
	copyOpen   = `COPY (`
	copyOpenJS = `COPY (SELECT row_to_json(r)::text FROM (`

	qCopyUsageCSV     = copyOpen + qExportUsage + copyCSV
	qCopyUsageJSON    = copyOpenJS + qExportUsage + copyJSON
	qCopyChargesCSV   = copyOpen + qExportCharges + copyCSV
	qCopyChargesJSON  = copyOpenJS + qExportCharges + copyJSON
	qCopyInvoicesCSV  = copyOpen + qExportInvoices + copyCSV
	qCopyInvoicesJSON = copyOpenJS + qExportInvoices + copyJSON
	qCopyLedgerCSV    = copyOpen + qExportLedger + copyCSV
	qCopyLedgerJSON   = copyOpenJS + qExportLedger + copyJSON
	qCopyBalancesCSV  = copyOpen + qExportBalances + copyCSV
	qCopyBalancesJSON = copyOpenJS + qExportBalances + copyJSON
)

var exportQueries = map[export.Kind]map[export.Format]string{
	export.Usage:    {export.CSV: qCopyUsageCSV, export.JSONLines: qCopyUsageJSON},
	export.Charges:  {export.CSV: qCopyChargesCSV, export.JSONLines: qCopyChargesJSON},
	export.Invoices: {export.CSV: qCopyInvoicesCSV, export.JSONLines: qCopyInvoicesJSON},
	export.Ledger:   {export.CSV: qCopyLedgerCSV, export.JSONLines: qCopyLedgerJSON},
	export.Balances: {export.CSV: qCopyBalancesCSV, export.JSONLines: qCopyBalancesJSON},
}

// ExportKinds lists the kinds whose tables this store knows.
func ExportKinds() []export.Kind {
	var out []export.Kind
	for _, k := range export.Kinds {
		if exportQueries[k] != nil {
			out = append(out, k)
		}
	}
	return out
}

// ExportSQL returns the COPY statement of a kind and format, for tools
// that compare its cost with psql's; "" when there is none.
func ExportSQL(k export.Kind, f export.Format) string { return exportQueries[k][f] }

// ExportSettings returns the transaction settings that ExportSQL reads
// for q, by name, as Export sets them.
func ExportSettings(q export.Query, at time.Time) map[string]string {
	args := exportArgs(q, at)
	names := []string{"from", "to", "org", "namespace", "resource", "at"}
	out := make(map[string]string, len(names))
	for i, n := range names {
		out["tenantplane.export_"+n] = args[i].(string)
	}
	return out
}

func exportArgs(q export.Query, at time.Time) []any {
	f := q.Filter
	id := func(v int64) string {
		if v == 0 {
			return ""
		}
		return strconv.FormatInt(v, 10)
	}
	ts := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	return []any{ts(f.From), ts(f.To), id(f.OrgID), id(f.NamespaceID), f.Resource, ts(at)}
}

// Export implements export.Store: one REPEATABLE READ read-only
// transaction, one COPY TO STDOUT whose bytes go straight to w, then an
// audit entry "billing.export" with the filters, the rows and whether it
// completed, written even when the caller has gone. When w has a
// Flush() error method, it is called after the last row, and the export
// is complete only when it succeeds.
func (s *Store) Export(ctx context.Context, q export.Query, at time.Time, w io.Writer, by tenancy.Actor) (int64, error) {
	sql := exportQueries[q.Kind][q.Format]
	if sql == "" {
		return 0, errcode.New(errcode.NotFound, "exports of "+string(q.Kind)+" are not available")
	}
	cw := &countingWriter{w: w}
	rows, err := s.copyOut(ctx, sql, exportArgs(q, at), cw)
	detail := q.Detail()
	detail["rows"], detail["bytes"], detail["complete"] = rows, cw.n, err == nil
	target := ""
	if q.Filter.OrgID != 0 {
		target = "org:" + strconv.FormatInt(q.Filter.OrgID, 10)
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if aerr := writeAudit(actx, s.pool, audit(by, s.now(), "billing.export", target, detail)); aerr != nil && err == nil {
		err = aerr
	}
	return rows, err
}

func (s *Store) copyOut(ctx context.Context, sql string, args []any, w io.Writer) (int64, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return 0, fmt.Errorf("export: connecting: %w", err)
	}
	defer conn.Release()
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return 0, fmt.Errorf("export: beginning snapshot: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, qExportSettings, args...); err != nil {
		return 0, fmt.Errorf("export: setting filters: %w", err)
	}
	tag, err := tx.Conn().PgConn().CopyTo(ctx, w, sql)
	if err != nil {
		return 0, fmt.Errorf("export: copying rows: %w", err)
	}
	if f, ok := w.(flusher); ok {
		if err := f.Flush(); err != nil {
			return 0, fmt.Errorf("export: writing: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("export: ending snapshot: %w", err)
	}
	return tag.RowsAffected(), nil
}

// flusher is an output that holds back what it was given until Flush.
type flusher interface{ Flush() error }

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

// Flush flushes the writer below, when it buffers.
func (c *countingWriter) Flush() error {
	if f, ok := c.w.(flusher); ok {
		return f.Flush()
	}
	return nil
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
