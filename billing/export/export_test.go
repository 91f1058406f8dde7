package export_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/md5"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/billing/export"
	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/tenancy"
)

// run exports kind with params and returns the raw output and row count.
func (b *bundle) run(kind string, p export.Params) ([]byte, int64) {
	b.t.Helper()
	q, err := b.exp.Parse(kind, p)
	require.NoError(b.t, err)
	var out bytes.Buffer
	n, err := b.exp.Run(context.Background(), q, cli, &out)
	require.NoError(b.t, err)
	return out.Bytes(), n
}

// record is one exported row, every value as text: JSON numbers as
// written, JSON null and CSV empty fields as "".
type record map[string]string

var header = map[export.Kind][]string{
	export.Usage: {"hour", "org_id", "namespace_id", "namespace", "resource", "class", "revision", "quantity", "rolled_at"},
	export.Charges: {"id", "key", "hour", "org_id", "namespace_id", "namespace", "resource", "class", "revision", "quantity",
		"unit_divisor", "unit_price", "tier_start", "amount", "currency", "price_book_version_id", "price_book", "ledger_reference", "rated_at"},
	export.Invoices: {"invoice_id", "number", "org_id", "org", "period_start", "period_end", "billing_mode", "status", "currency",
		"subtotal", "tax_rate_bps", "tax", "total", "finalized_at", "paid_at", "voided_at", "void_reason",
		"line", "namespace_id", "namespace", "resource", "quantity", "line_amount"},
	export.Ledger:   {"id", "occurred_at", "org_id", "kind", "account", "credit_grant_id", "amount", "currency", "reference", "part", "description", "actor", "created_at"},
	export.Balances: {"org_id", "org", "currency", "cash", "credit", "usable_credit", "usable", "entry_count", "updated_at"},
}

func parseCSV(t *testing.T, kind export.Kind, data []byte) []record {
	t.Helper()
	r := csv.NewReader(bytes.NewReader(data))
	r.FieldsPerRecord = len(header[kind])
	r.ReuseRecord = false
	all, err := r.ReadAll()
	require.NoError(t, err)
	require.NotEmpty(t, all)
	require.Equal(t, header[kind], all[0], "header row")
	out := make([]record, 0, len(all)-1)
	for _, row := range all[1:] {
		rec := record{}
		for i, h := range all[0] {
			rec[h] = row[i]
		}
		out = append(out, rec)
	}
	return out
}

func parseJSONL(t *testing.T, kind export.Kind, data []byte) []record {
	t.Helper()
	var out []record
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.UseNumber()
		var m map[string]any
		require.NoError(t, dec.Decode(&m), "line %q", sc.Text())
		require.Len(t, m, len(header[kind]))
		rec := record{}
		for _, h := range header[kind] {
			v, ok := m[h]
			require.True(t, ok, "key %s missing from %s", h, sc.Text())
			switch v := v.(type) {
			case nil:
				rec[h] = ""
			case string:
				rec[h] = v
			case json.Number:
				rec[h] = v.String()
			default:
				t.Fatalf("key %s: unexpected %T", h, v)
			}
		}
		out = append(out, rec)
	}
	require.NoError(t, sc.Err())
	require.True(t, bytes.HasSuffix(data, []byte("\n")) || len(data) == 0)
	return out
}

var (
	secondRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`)
	microRE  = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$`)
)

func parseTime(t *testing.T, s string, re *regexp.Regexp) time.Time {
	t.Helper()
	require.Regexp(t, re, s)
	v, err := time.Parse(time.RFC3339Nano, s)
	require.NoError(t, err)
	return v
}

// amount reads an exported amount and checks that it is exactly what
// billing.FormatMicros writes for it.
func amount(t *testing.T, s string) string {
	t.Helper()
	m, err := billing.ParseMicros(s)
	require.NoError(t, err, s)
	require.Equal(t, billing.FormatMicros(m), s)
	return strconv.FormatInt(m, 10)
}

// optAmount is amount for a value that may be empty.
func optAmount(t *testing.T, s string) string {
	t.Helper()
	if s == "" {
		return ""
	}
	return amount(t, s)
}

// optMicros reads an instant that may be empty as Unix microseconds.
func optMicros(t *testing.T, s string) string {
	t.Helper()
	if s == "" {
		return ""
	}
	return strconv.FormatInt(parseTime(t, s, microRE).UnixMicro(), 10)
}

// invoiceNumber reads a printed invoice number, checking that it is as
// billing prints it.
func invoiceNumber(t *testing.T, s string) string {
	t.Helper()
	if s == "" {
		return ""
	}
	n, err := strconv.ParseInt(strings.TrimPrefix(s, "INV-"), 10, 64)
	require.NoError(t, err, s)
	require.Equal(t, billing.Invoice{Number: n}.DisplayNumber(), s)
	return strconv.FormatInt(n, 10)
}

// canonical turns exported rows into the lines the SQL checksums hash.
func canonical(t *testing.T, kind export.Kind, recs []record) []string {
	t.Helper()
	out := make([]string, len(recs))
	for i, r := range recs {
		var f []string
		switch kind {
		case export.Usage:
			f = []string{r["namespace_id"], strconv.FormatInt(parseTime(t, r["hour"], secondRE).Unix(), 10), r["resource"], r["class"],
				r["revision"], r["quantity"], r["org_id"], r["namespace"], strconv.FormatInt(parseTime(t, r["rolled_at"], microRE).UnixMicro(), 10)}
		case export.Charges:
			f = []string{r["id"], r["key"], strconv.FormatInt(parseTime(t, r["hour"], secondRE).Unix(), 10), r["org_id"],
				r["namespace_id"], r["namespace"], r["resource"], r["class"], r["revision"], r["quantity"], r["unit_divisor"],
				amount(t, r["unit_price"]), r["tier_start"], amount(t, r["amount"]), r["currency"], r["price_book_version_id"],
				r["price_book"], r["ledger_reference"], optMicros(t, r["rated_at"])}
		case export.Invoices:
			f = []string{r["invoice_id"], invoiceNumber(t, r["number"]), r["org_id"], r["org"],
				strconv.FormatInt(parseTime(t, r["period_start"], secondRE).Unix(), 10),
				strconv.FormatInt(parseTime(t, r["period_end"], secondRE).Unix(), 10),
				r["billing_mode"], r["status"], r["currency"], amount(t, r["subtotal"]), r["tax_rate_bps"], amount(t, r["tax"]),
				amount(t, r["total"]), optMicros(t, r["finalized_at"]), optMicros(t, r["paid_at"]), optMicros(t, r["voided_at"]),
				r["void_reason"], r["line"], r["namespace_id"], r["namespace"], r["resource"], r["quantity"], optAmount(t, r["line_amount"])}
		case export.Ledger:
			f = []string{r["id"], r["org_id"], r["kind"], r["account"], r["credit_grant_id"], amount(t, r["amount"]), r["currency"],
				r["reference"], r["part"], r["description"], r["actor"],
				strconv.FormatInt(parseTime(t, r["occurred_at"], microRE).UnixMicro(), 10),
				strconv.FormatInt(parseTime(t, r["created_at"], microRE).UnixMicro(), 10)}
		case export.Balances:
			f = []string{r["org_id"], r["org"], r["currency"], amount(t, r["cash"]), amount(t, r["credit"]),
				amount(t, r["usable_credit"]), amount(t, r["usable"]), r["entry_count"],
				strconv.FormatInt(parseTime(t, r["updated_at"], microRE).UnixMicro(), 10)}
		}
		out[i] = strings.Join(f, "|")
	}
	return out
}

// The same rows, counted and hashed by Postgres straight from the tables.
const (
	sumUsage = `SELECT count(*), coalesce(md5(string_agg(concat_ws('|', u.namespace_id, extract(epoch FROM u.hour)::bigint,
		u.resource, u.class, u.revision, u.quantity, coalesce(n.org_id::text, ''), coalesce(n.name, ''),
		(extract(epoch FROM u.rolled_at) * 1000000)::bigint), E'\n'
		ORDER BY u.namespace_id, u.hour, u.resource, u.class, u.revision)), md5(''))
	FROM usage_hourly u LEFT JOIN namespaces n ON n.id = u.namespace_id
	WHERE u.hour >= $1 AND u.hour < $2 AND ($3 = 0 OR n.org_id = $3) AND ($4 = 0 OR u.namespace_id = $4)
	  AND ($5 = '' OR u.resource = $5)`
	sumCharges = `SELECT count(*), coalesce(md5(string_agg(concat_ws('|', c.id, c.key, extract(epoch FROM c.hour)::bigint,
		c.org_id, c.namespace_id, coalesce(n.name, ''), c.resource, c.class, c.revision, c.quantity, c.unit_divisor,
		c.unit_price_micros, c.tier_start, c.amount_micros, c.currency, coalesce(c.price_book_version_id::text, ''),
		coalesce(b.name, ''), coalesce(c.ledger_reference, ''), (extract(epoch FROM c.rated_at) * 1000000)::bigint), E'\n'
		ORDER BY c.id)), md5(''))
	FROM charge_lines c LEFT JOIN namespaces n ON n.id = c.namespace_id
	LEFT JOIN price_book_versions v ON v.id = c.price_book_version_id LEFT JOIN price_books b ON b.id = v.price_book_id
	WHERE c.hour >= $1 AND c.hour < $2 AND ($3 = 0 OR c.org_id = $3) AND ($4 = 0 OR c.namespace_id = $4)
	  AND ($5 = '' OR c.resource = $5)`
	sumInvoices = `SELECT count(*), coalesce(md5(string_agg(concat_ws('|', i.id, coalesce(i.number::text, ''), i.org_id, o.name,
		extract(epoch FROM i.period_start)::bigint, extract(epoch FROM i.period_end)::bigint, i.billing_mode, i.status,
		i.currency, i.subtotal_micros, i.tax_rate_bps, i.tax_micros, i.total_micros,
		coalesce((extract(epoch FROM i.finalized_at) * 1000000)::bigint::text, ''),
		coalesce((extract(epoch FROM i.paid_at) * 1000000)::bigint::text, ''),
		coalesce((extract(epoch FROM i.voided_at) * 1000000)::bigint::text, ''), i.void_reason,
		coalesce(l.line::text, ''), coalesce(l.namespace_id::text, ''), coalesce(l.namespace, ''), coalesce(l.resource, ''),
		coalesce(l.quantity::text, ''), coalesce(l.amount_micros::text, '')), E'\n' ORDER BY i.id, l.line)), md5(''))
	FROM invoices i JOIN orgs o ON o.id = i.org_id LEFT JOIN invoice_lines l ON l.invoice_id = i.id
	WHERE i.period_start >= $1 AND i.period_start < $2 AND ($3 = 0 OR i.org_id = $3)`
	sumLedger = `SELECT count(*), coalesce(md5(string_agg(concat_ws('|', id, org_id, kind, account,
		coalesce(credit_grant_id::text, ''), amount_micros, currency, reference, part, description, actor,
		(extract(epoch FROM occurred_at) * 1000000)::bigint, (extract(epoch FROM created_at) * 1000000)::bigint), E'\n'
		ORDER BY id)), md5(''))
	FROM ledger_entries WHERE occurred_at >= $1 AND occurred_at < $2 AND ($3 = 0 OR org_id = $3)`
	sumBalances = `SELECT count(*), coalesce(md5(string_agg(concat_ws('|', a.org_id, o.name, a.currency, a.cash_micros,
		a.credit_micros, g.usable, a.cash_micros + g.usable, a.entry_count,
		(extract(epoch FROM a.updated_at) * 1000000)::bigint), E'\n' ORDER BY a.org_id)), md5(''))
	FROM billing_accounts a JOIN orgs o ON o.id = a.org_id
	CROSS JOIN LATERAL (SELECT coalesce(sum(remaining_micros), 0) AS usable FROM credit_grants c
		WHERE c.org_id = a.org_id AND remaining_micros > 0 AND (expires_at IS NULL OR expires_at > $1)) g
	WHERE $2 = 0 OR a.org_id = $2`
)

func (b *bundle) dbSum(kind export.Kind, f export.Filter) (int64, string) {
	b.t.Helper()
	ctx := context.Background()
	var n int64
	var sum string
	var err error
	switch kind {
	case export.Usage:
		err = b.db.Pool.QueryRow(ctx, sumUsage, f.From, f.To, f.OrgID, f.NamespaceID, f.Resource).Scan(&n, &sum)
	case export.Charges:
		err = b.db.Pool.QueryRow(ctx, sumCharges, f.From, f.To, f.OrgID, f.NamespaceID, f.Resource).Scan(&n, &sum)
	case export.Invoices:
		err = b.db.Pool.QueryRow(ctx, sumInvoices, f.From, f.To, f.OrgID).Scan(&n, &sum)
	case export.Ledger:
		err = b.db.Pool.QueryRow(ctx, sumLedger, f.From, f.To, f.OrgID).Scan(&n, &sum)
	case export.Balances:
		err = b.db.Pool.QueryRow(ctx, sumBalances, now(), f.OrgID).Scan(&n, &sum)
	}
	require.NoError(b.t, err)
	return n, sum
}

func md5Lines(lines []string) string {
	h := md5.Sum([]byte(strings.Join(lines, "\n")))
	return hex.EncodeToString(h[:])
}

func TestExportsMatchTheDatabase(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.seed(7, 30)
	b.seedBilling(30)
	day := func(d int) string { return t0.AddDate(0, 0, d).Format(time.RFC3339) }
	for _, tc := range []struct {
		kind export.Kind
		p    export.Params
		min  int64
	}{
		{export.Usage, export.Params{From: day(0), To: day(2)}, 7 * 2 * 30 * 4},
		{export.Usage, export.Params{From: day(0), To: t0.Add(10 * time.Hour).Format(time.RFC3339), Org: fmt.Sprint(b.orgs[2])}, 2 * 10 * 4},
		{export.Usage, export.Params{From: day(0), To: day(1), Namespace: fmt.Sprint(b.nss[0])}, 24*4 + 1},
		{export.Usage, export.Params{From: "2026-11-01", To: day(1), Resource: "network.internet.egress"}, 14 * 24},
		{export.Usage, export.Params{From: day(5), To: day(6)}, 0},
		{export.Ledger, export.Params{From: day(0), To: day(1)}, 7 * 9},
		{export.Ledger, export.Params{From: day(0), To: t0.Add(4 * time.Hour).Format(time.RFC3339), Org: fmt.Sprint(b.orgs[1])}, 1},
		{export.Balances, export.Params{}, 7},
		{export.Balances, export.Params{Org: fmt.Sprint(b.orgs[3])}, 1},
		{export.Charges, export.Params{From: day(0), To: day(2)}, 7*2*30*3 + 2},
		{export.Charges, export.Params{From: day(0), To: day(2), Org: fmt.Sprint(b.orgs[0]), Namespace: fmt.Sprint(b.nss[0]), Resource: "cpu"}, 30 + 1},
		{export.Charges, export.Params{From: day(0), To: day(1), Resource: "gpu"}, 14 * 24},
		{export.Charges, export.Params{From: day(30), To: day(31)}, 1},
		{export.Invoices, export.Params{From: "2026-11-01", To: "2026-12-01"}, 7*6 + 1 + 1},
		{export.Invoices, export.Params{From: "2026-11-01", To: "2026-12-01", Org: fmt.Sprint(b.orgs[2])}, 6},
		{export.Invoices, export.Params{From: "2026-12-01", To: "2027-01-01"}, 1},
	} {
		for _, format := range []string{"csv", "jsonl"} {
			name := fmt.Sprintf("%s %s %+v", tc.kind, format, tc.p)
			p := tc.p
			p.Format = format
			q, err := b.exp.Parse(string(tc.kind), p)
			require.NoError(t, err, name)
			data, n := b.run(string(tc.kind), p)
			var recs []record
			if format == "csv" {
				recs = parseCSV(t, tc.kind, data)
			} else {
				recs = parseJSONL(t, tc.kind, data)
			}
			wantN, wantSum := b.dbSum(tc.kind, q.Filter)
			require.GreaterOrEqual(t, wantN, tc.min, name)
			require.Equal(t, wantN, n, name)
			require.Len(t, recs, int(wantN), name)
			require.Equal(t, wantSum, md5Lines(canonical(t, tc.kind, recs)), name)
		}
	}
}

func TestCSVAndJSONLinesHoldTheSameValues(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.seed(7, 2)
	b.seedBilling(2)
	for _, kind := range []export.Kind{export.Ledger, export.Balances, export.Usage, export.Charges, export.Invoices} {
		p := export.Params{}
		if kind != export.Balances {
			p.From, p.To = t0.Format(time.RFC3339), t0.AddDate(0, 0, 1).Format(time.RFC3339)
		}
		csvOut, _ := b.run(string(kind), p)
		p.Format = "jsonl"
		jsonOut, _ := b.run(string(kind), p)
		require.Equal(t, parseCSV(t, kind, csvOut), parseJSONL(t, kind, jsonOut), kind)
	}
	// The text that needs quoting comes back exactly.
	p := export.Params{From: t0.Format(time.RFC3339), To: t0.AddDate(0, 0, 1).Format(time.RFC3339)}
	out, _ := b.run("ledger", p)
	got := map[string]bool{}
	for _, r := range parseCSV(t, export.Ledger, out) {
		got[r["description"]] = true
	}
	for _, d := range []string{"with, comma", `with "quotes"`, "two\nlines", " leading space", "ünïcødé €", "semi;colon\rand cr", ""} {
		require.True(t, got[d], "description %q", d)
	}
}

func TestAmountsAreExactAtTheExtremes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	amounts := []int64{math.MinInt64, math.MinInt64 + 1, -1_000_001, -1_000_000, -999_999, -1, 0, 1, 999_999, 1_000_000, 123_456_789, math.MaxInt64}
	ctx := context.Background()
	for i, a := range amounts {
		var org int64
		require.NoError(t, b.db.Pool.QueryRow(ctx, `INSERT INTO orgs (name, created_at, updated_at) VALUES ($1, $2, $2) RETURNING id`,
			fmt.Sprintf("x%d", i), t0).Scan(&org))
		b.exec(`INSERT INTO billing_accounts (org_id, currency, cash_micros, credit_micros, created_at, updated_at)
			VALUES ($1, 'EUR', $2, $3, $4, $4)`, org, a, max(a, 0), t0)
	}
	out, n := b.run("balances", export.Params{})
	require.Equal(t, int64(len(amounts)), n)
	recs := parseCSV(t, export.Balances, out)
	for i, a := range amounts {
		require.Equal(t, billing.FormatMicros(a), recs[i]["cash"])
		require.Equal(t, billing.FormatMicros(max(a, 0)), recs[i]["credit"])
		require.Equal(t, "0.000000", recs[i]["usable_credit"])
		require.Equal(t, billing.FormatMicros(a), recs[i]["usable"])
	}
}

func TestGzipOutputIsTheSameExport(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.seed(3, 48)
	p := export.Params{From: t0.Format(time.RFC3339), To: t0.AddDate(0, 0, 3).Format(time.RFC3339)}
	plain, n := b.run("usage", p)
	p.Gzip = true
	zipped, nz := b.run("usage", p)
	require.Equal(t, n, nz)
	require.Less(t, len(zipped), len(plain)/3)
	zr, err := gzip.NewReader(bytes.NewReader(zipped))
	require.NoError(t, err)
	unzipped, err := io.ReadAll(zr)
	require.NoError(t, err)
	require.Equal(t, plain, unzipped)
}

func TestEveryExportIsAudited(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.seed(2, 3)
	p := export.Params{From: t0.Format(time.RFC3339), To: t0.AddDate(0, 0, 1).Format(time.RFC3339), Org: fmt.Sprint(b.orgs[1]),
		Resource: "cpu", Format: "jsonl", Gzip: true}
	_, n := b.run("usage", p)
	require.Equal(t, int64(2*3), n)
	var actor, action, target, reqID, ip string
	var detail map[string]any
	require.NoError(t, b.db.Pool.QueryRow(context.Background(), `SELECT actor, action, target, request_id, host(ip), detail
		FROM audit_log ORDER BY id DESC LIMIT 1`).Scan(&actor, &action, &target, &reqID, &ip, &detail))
	require.Equal(t, []string{"system:test", "billing.export", fmt.Sprintf("org:%d", b.orgs[1]), "req-1", "127.0.0.1"},
		[]string{actor, action, target, reqID, ip})
	require.Equal(t, map[string]any{"kind": "usage", "format": "jsonl", "gzip": true, "from": "2026-11-01T00:00:00Z",
		"to": "2026-11-02T00:00:00Z", "org_id": float64(b.orgs[1]), "resource": "cpu", "rows": float64(6),
		"bytes": detail["bytes"], "complete": true}, detail)
	require.Greater(t, detail["bytes"].(float64), float64(200))

	// A failed export is recorded too, as incomplete.
	q, err := b.exp.Parse("ledger", export.Params{From: p.From, To: p.To})
	require.NoError(t, err)
	_, err = b.exp.Run(context.Background(), q, cli, failingWriter{})
	require.Error(t, err)
	require.NoError(t, b.db.Pool.QueryRow(context.Background(), `SELECT detail FROM audit_log ORDER BY id DESC LIMIT 1`).Scan(&detail))
	require.Equal(t, false, detail["complete"])
	require.Equal(t, "ledger", detail["kind"])
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

func TestParseValidatesAndBoundsFilters(t *testing.T) {
	t.Parallel()
	exp, err := export.New(export.DefaultConfig(), nopStore{}, nil, now)
	require.NoError(t, err)
	from, to := "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"
	for _, tc := range []struct {
		kind  string
		p     export.Params
		code  errcode.Code
		field string
	}{
		{"usage", export.Params{From: from, To: to}, "", ""},
		{"ledger", export.Params{From: "2026-11-01", To: "2026-11-02T10:00:00+02:00", Org: "3", Format: "jsonl"}, "", ""},
		{"balances", export.Params{Org: "7"}, "", ""},
		{"bananas", export.Params{}, errcode.BadUserInput, "kind"},
		{"charges", export.Params{From: from, To: to, Namespace: "4", Resource: "gpu"}, "", ""},
		{"invoices", export.Params{From: from, To: to, Org: "3"}, "", ""},
		{"invoices", export.Params{From: from, To: to, Namespace: "4"}, errcode.BadUserInput, "namespace"},
		{"invoices", export.Params{From: from, To: to, Resource: "cpu"}, errcode.BadUserInput, "resource"},
		{"invoices", export.Params{Org: "3"}, errcode.BadUserInput, "from"},
		{"usage", export.Params{To: to}, errcode.BadUserInput, "from"},
		{"usage", export.Params{From: from}, errcode.BadUserInput, "to"},
		{"usage", export.Params{From: "yesterday", To: to}, errcode.BadUserInput, "from"},
		{"usage", export.Params{From: to, To: from}, errcode.BadUserInput, "to"},
		{"usage", export.Params{From: from, To: from}, errcode.BadUserInput, "to"},
		{"usage", export.Params{From: "2020-01-01", To: "2026-01-01"}, errcode.BadUserInput, "to"},
		{"usage", export.Params{From: "1970-01-01", To: "1970-01-02"}, errcode.BadUserInput, "from"},
		{"usage", export.Params{From: from, To: to, Org: "0"}, errcode.BadUserInput, "org"},
		{"usage", export.Params{From: from, To: to, Org: "x"}, errcode.BadUserInput, "org"},
		{"usage", export.Params{From: from, To: to, Namespace: "-4"}, errcode.BadUserInput, "namespace"},
		{"usage", export.Params{From: from, To: to, Resource: "CPU; DROP"}, errcode.BadUserInput, "resource"},
		{"usage", export.Params{From: from, To: to, Format: "xlsx"}, errcode.BadUserInput, "format"},
		{"ledger", export.Params{From: from, To: to, Namespace: "4"}, errcode.BadUserInput, "namespace"},
		{"ledger", export.Params{From: from, To: to, Resource: "cpu"}, errcode.BadUserInput, "resource"},
		{"balances", export.Params{From: from, To: to}, errcode.BadUserInput, "from"},
	} {
		q, err := exp.Parse(tc.kind, tc.p)
		if tc.code == "" {
			require.NoError(t, err, "%+v", tc)
			require.Equal(t, export.Kind(tc.kind), q.Kind)
			continue
		}
		e, ok := errcode.As(err)
		require.True(t, ok, "%+v: %v", tc, err)
		require.Equal(t, tc.code, e.Code, "%+v", tc)
		require.Equal(t, tc.field, e.Field, "%+v", tc)
	}
	q, err := exp.Parse("ledger", export.Params{From: "2026-11-01", To: "2026-11-02T10:00:00+02:00"})
	require.NoError(t, err)
	// A build that leaves a kind out says so.
	cfg := export.DefaultConfig()
	cfg.Kinds = []export.Kind{export.Usage}
	narrow, err := export.New(cfg, nopStore{}, nil, now)
	require.NoError(t, err)
	_, err = narrow.Parse("charges", export.Params{From: from, To: to})
	require.Equal(t, errcode.NotFound, errcode.Of(err))
	require.Equal(t, time.Date(2026, 11, 2, 8, 0, 0, 0, time.UTC), q.Filter.To)
	require.Equal(t, export.CSV, q.Format)
}

type nopStore struct{}

func (nopStore) Export(context.Context, export.Query, time.Time, io.Writer, tenancy.Actor) (int64, error) {
	return 0, nil
}

func TestParamsFromURLRefusesUnknownAndRepeatedParameters(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		query, field string
	}{
		{"from=a&to=b&org=1&namespace=2&resource=cpu&format=csv&gzip=1", ""},
		{"orgid=1", "orgid"},
		{"org=1&org=2", "org"},
		{"gzip=maybe", "gzip"},
	} {
		v, err := urlValues(tc.query)
		require.NoError(t, err)
		p, err := export.ParamsFromURL(v)
		if tc.field == "" {
			require.NoError(t, err)
			require.Equal(t, export.Params{From: "a", To: "b", Org: "1", Namespace: "2", Resource: "cpu", Format: "csv", Gzip: true}, p)
			continue
		}
		e, ok := errcode.As(err)
		require.True(t, ok, tc.query)
		require.Equal(t, tc.field, e.Field)
	}
}

func TestInvoicesExportAddsUp(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.seed(7, 3)
	b.seedBilling(3)
	out, n := b.run("invoices", export.Params{From: "2026-11-01", To: "2026-12-01"})
	recs := parseCSV(t, export.Invoices, out)
	require.Len(t, recs, int(n))
	type totals struct{ sub, tax, total, lines int64 }
	byInvoice := map[string]*totals{}
	var statuses, numbers []string
	reasons := map[string]bool{}
	emptyRows := 0
	for _, r := range recs {
		tt, seen := byInvoice[r["invoice_id"]]
		if !seen {
			tt = &totals{}
			for _, f := range []struct {
				dst *int64
				col string
			}{{&tt.sub, "subtotal"}, {&tt.tax, "tax"}, {&tt.total, "total"}} {
				v, err := billing.ParseMicros(r[f.col])
				require.NoError(t, err)
				*f.dst = v
			}
			byInvoice[r["invoice_id"]] = tt
			statuses = append(statuses, r["status"])
			if r["number"] != "" {
				numbers = append(numbers, r["number"])
			}
			reasons[r["void_reason"]] = true
		}
		if r["line"] == "" {
			emptyRows++
			require.Empty(t, r["line_amount"])
			require.Equal(t, "0.000000", r["total"])
			continue
		}
		v, err := billing.ParseMicros(r["line_amount"])
		require.NoError(t, err)
		tt.lines += v
	}
	for id, tt := range byInvoice {
		require.Equal(t, tt.sub, tt.lines, "invoice %s: its lines add up to its subtotal", id)
		require.Equal(t, tt.total, tt.sub+tt.tax, "invoice %s", id)
	}
	require.Equal(t, 1, emptyRows, "the invoice without lines is one row")
	require.Len(t, byInvoice, 8)
	require.ElementsMatch(t, []string{"paid", "paid", "void", "draft", "paid", "finalized", "void", "draft"}, statuses)
	require.Equal(t, []string{"INV-999999", "INV-1000000", "INV-1000001", "INV-1000002", "INV-1000003"}, numbers)
	require.True(t, reasons[`duplicate, see "INV-2"`+"\nsecond line"])
}
