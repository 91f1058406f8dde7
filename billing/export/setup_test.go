package export_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/billing/billingstore"
	"github.com/tenantplane/tenantplane/billing/export"
	"github.com/tenantplane/tenantplane/internal/testenv"
	"github.com/tenantplane/tenantplane/tenancy"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var (
	t0  = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	now = func() time.Time { return t0.Add(40 * 24 * time.Hour) }
	cli = tenancy.Actor{System: "test", IP: netip.MustParseAddr("127.0.0.1"), RequestID: "req-1"}
)

// bundle is what an export test needs.
type bundle struct {
	t     *testing.T
	db    *testenv.DB
	store *billingstore.Store
	exp   *export.Exporter
	orgs  []int64
	nss   []int64 // two per org
}

func setup(t *testing.T, tweak ...func(*export.Config)) *bundle {
	t.Helper()
	db := testenv.Postgres(t)
	store := billingstore.New(db.Pool, now)
	cfg := export.DefaultConfig()
	cfg.BufferBytes = 4 << 10
	for _, f := range tweak {
		f(&cfg)
	}
	exp, err := export.New(cfg, store, nil, now)
	require.NoError(t, err)
	return &bundle{t: t, db: db, store: store, exp: exp}
}

func (b *bundle) exec(sql string, args ...any) {
	b.t.Helper()
	_, err := b.db.Pool.Exec(context.Background(), sql, args...)
	require.NoError(b.t, err)
}

// seed makes orgs with two namespaces each, hourly usage for every
// namespace over hours hours from t0 with corrections, and ledger entries
// whose text needs quoting in CSV.
func (b *bundle) seed(orgs, hours int) {
	b.t.Helper()
	ctx := context.Background()
	for i := range orgs {
		var org int64
		require.NoError(b.t, b.db.Pool.QueryRow(ctx, `INSERT INTO orgs (name, created_at, updated_at)
			VALUES ($1, $2, $2) RETURNING id`, fmt.Sprintf("org-%d", i), t0).Scan(&org))
		b.orgs = append(b.orgs, org)
		for j := range 2 {
			var ns int64
			require.NoError(b.t, b.db.Pool.QueryRow(ctx, `INSERT INTO namespaces (org_id, name, state, created_at, updated_at)
				VALUES ($1, $2, 'active', $3, $3) RETURNING id`, org, fmt.Sprintf("ns-%d-%d", i, j), t0).Scan(&ns))
			b.nss = append(b.nss, ns)
		}
	}
	b.exec(`SELECT usage_ensure_partitions($1::date, $2::date)`, t0.AddDate(0, 0, -1), t0.AddDate(0, 2, 0))
	b.exec(`INSERT INTO usage_hourly (namespace_id, hour, resource, class, revision, quantity, seq, rolled_at)
		SELECT ns, $1::timestamptz + h * interval '1 hour', r.resource, r.class, 0, (ns * 1000 + h) * r.k,
			nextval('usage_hourly_seq'), $1::timestamptz + (h + 1) * interval '1 hour' + interval '1.5 seconds'
		FROM unnest($2::bigint[]) ns, generate_series(0, $3 - 1) h,
			(VALUES ('cpu', '', 1), ('memory', '', 3), ('storage', 'openebs-lvm', 7),
			        ('network.internet.egress', 'internet', 11)) r(resource, class, k)`, t0, b.nss, hours)
	// A late correction of one hour.
	b.exec(`INSERT INTO usage_hourly (namespace_id, hour, resource, class, revision, quantity, seq, rolled_at)
		VALUES ($1, $2, 'cpu', '', 1, 5, nextval('usage_hourly_seq'), $3)`, b.nss[0], t0, t0.Add(30*time.Hour))
	// Usage of a namespace that tenancy no longer knows.
	b.exec(`INSERT INTO usage_hourly (namespace_id, hour, resource, class, revision, quantity, seq, rolled_at)
		VALUES (999999, $1, 'cpu', '', 0, 1, nextval('usage_hourly_seq'), $1)`, t0)

	descriptions := []string{"plain", "with, comma", `with "quotes"`, "two\nlines", " leading space", "ünïcødé €", "semi;colon\rand cr"}
	for i, org := range b.orgs {
		b.post(billing.Posting{OrgID: org, Kind: billing.KindTopUp, Amount: int64(100_000_000 + i), Currency: "USD",
			Reference: fmt.Sprintf("topup:%d", org), Actor: "stripe", At: t0.Add(time.Hour), Description: descriptions[i%len(descriptions)]})
		exp := t0.Add(10 * 24 * time.Hour)
		b.post(billing.Posting{OrgID: org, Kind: billing.KindCredit, Amount: 5_500_000, Currency: "USD",
			Reference: fmt.Sprintf("credit:%d", org), Actor: "user:1", At: t0.Add(2 * time.Hour), Description: "welcome", ExpiresAt: &exp})
		b.post(billing.Posting{OrgID: org, Kind: billing.KindCredit, Amount: 1_000_001, Currency: "USD",
			Reference: fmt.Sprintf("credit-forever:%d", org), Actor: "user:1", At: t0.Add(2 * time.Hour), Description: ""})
		for h := range 5 {
			b.post(billing.Posting{OrgID: org, Kind: billing.KindCharge, Amount: -int64(1_234_567 * (h + 1)), Currency: "USD",
				Reference: fmt.Sprintf("charge:%d:%d", org, h), Actor: "system:billing", At: t0.Add(time.Duration(3+h) * time.Hour),
				Description: descriptions[(i+h)%len(descriptions)]})
		}
		b.post(billing.Posting{OrgID: org, Kind: billing.KindAdjustment, Amount: -1, Currency: "USD",
			Reference: fmt.Sprintf("adjust:%d", org), Actor: "user:1", At: t0.Add(20 * time.Hour), Description: "one micro, back"})
	}
}

func (b *bundle) post(p billing.Posting) {
	b.t.Helper()
	_, err := b.store.Post(context.Background(), p)
	require.NoError(b.t, err)
}

// nov is the invoice period of t0.
var nov = billing.InvoicePeriod{Start: t0, End: t0.AddDate(0, 1, 0)}

// seedBilling adds, over seed's orgs and namespaces, charge lines for
// hours hours from t0 (corrections, a line without price or posting,
// classes that need quoting in CSV, amounts of either sign) and the
// invoices of November: drafts, finalised, paid and void ones, numbered
// across INV-999999, of prepaid and postpaid orgs, one without lines;
// and a December invoice outside November's range.
func (b *bundle) seedBilling(hours int) {
	b.t.Helper()
	ctx := context.Background()
	b.exec(`INSERT INTO plans (name, billing_mode, price_book_id, created_at, updated_at)
		SELECT 'post', 'postpaid', id, $1, $1 FROM price_books WHERE name = 'default'`, t0)
	b.exec(`INSERT INTO charge_lines (key, org_id, namespace_id, resource, class, hour, revision, quantity, amount_micros,
			currency, price_book_version_id, ledger_reference, rated_at, unit_price_micros, unit_divisor, tier_start, usage_seq)
		SELECT format('%s:%s:%s:%s:0', n.id, r.resource, r.class, h), n.org_id, n.id, r.resource, r.class,
			$1::timestamptz + h * interval '1 hour', 0, (n.id * 1000 + h) * r.k, (n.id * 1000 + h) * r.k * r.p / r.d,
			'USD', v.id, format('charge:org:%s:%s', n.org_id, h), $1::timestamptz + (h + 1) * interval '1 hour' + interval '0.25 seconds',
			r.p, r.d, h * r.k, h
		FROM namespaces n CROSS JOIN generate_series(0, $3 - 1) h
		CROSS JOIN (VALUES ('cpu', '', 60000, 31000, 1), ('memory', '', 61440, 4123, 3),
			('gpu', 'nvidia.com/gpu, "a100"', 60, 2500000, 7)) r(resource, class, d, p, k)
		CROSS JOIN (SELECT v.id FROM price_book_versions v JOIN price_books b ON b.id = v.price_book_id
			WHERE b.name = 'default') v
		WHERE n.id = ANY($2)`, t0, b.nss, hours)
	// A correction that gives money back, a line without a price or a
	// posting, and December's usage of the first org.
	b.exec(`INSERT INTO charge_lines (key, org_id, namespace_id, resource, class, hour, revision, quantity, amount_micros,
			currency, rated_at, usage_seq)
		VALUES (format('%s:cpu::0:1', $1::bigint), $2, $1, 'cpu', '', $3, 1, -600, -310001, 'USD', $4, 0),
		       (format('%s:network.internet.egress:internet:0:0', $1::bigint), $2, $1, 'network.internet.egress', 'internet', $3, 0, 12345, 0, 'USD', $4, 0),
		       (format('%s:cpu::dec:0', $1::bigint), $2, $1, 'cpu', '', $5, 0, 60000, 31000, 'USD', $5, 0)`,
		b.nss[0], b.orgs[0], t0, t0.Add(30*time.Hour), nov.End)

	// Numbers cross a million.
	b.exec(`UPDATE invoice_numbers SET last = 999998`)
	for i, org := range b.orgs {
		if i%4 == 1 || i%4 == 2 {
			b.exec(`UPDATE orgs SET plan = 'post' WHERE id = $1`, org)
		}
		inv, err := b.store.GenerateInvoice(ctx, org, nov, int64(1900*(i%2)))
		require.NoError(b.t, err)
		switch i % 4 {
		case 0: // prepaid: finalising settles it
			_, err = b.store.FinalizeInvoice(ctx, inv.ID)
			require.NoError(b.t, err)
		case 1: // postpaid: finalised, then the first one paid
			fin, err := b.store.FinalizeInvoice(ctx, inv.ID)
			require.NoError(b.t, err)
			if i != 1 {
				continue
			}
			_, err = b.store.MarkInvoicePaid(ctx, fin.ID, &billing.Posting{OrgID: org, Kind: billing.KindPayment,
				Amount: max(fin.Total, 1), Currency: "USD", Reference: fmt.Sprintf("wire:%d", fin.ID), Actor: "user:1", At: now()},
				"wire transfer 7", tenancy.Actor{UserID: 1})
			require.NoError(b.t, err)
		case 2: // postpaid: the first one void once finalised, the next as a draft
			if i == 2 {
				_, err = b.store.FinalizeInvoice(ctx, inv.ID)
				require.NoError(b.t, err)
			}
			_, err = b.store.VoidInvoice(ctx, inv.ID, `duplicate, see "INV-2"`+"\nsecond line", tenancy.Actor{UserID: 1})
			require.NoError(b.t, err)
		}
	}
	// An org without charges gets an invoice without lines.
	var empty int64
	require.NoError(b.t, b.db.Pool.QueryRow(ctx, `INSERT INTO orgs (name, created_at, updated_at)
		VALUES ('idle', $1, $1) RETURNING id`, t0).Scan(&empty))
	_, err := b.store.GenerateInvoice(ctx, empty, nov, 0)
	require.NoError(b.t, err)
	_, err = b.store.GenerateInvoice(ctx, b.orgs[0], nov.Next(), 0)
	require.NoError(b.t, err)
}
