package billingstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/billing/billingstore"
	"github.com/tenantplane/tenantplane/internal/testenv"
)

// BenchmarkInvoiceRun100k issues a month's invoices of 100,000 orgs, each
// with four charge lines, next to one GROUP BY of the month's charge lines
// by org and resource (what the invoices' lines add up).
func BenchmarkInvoiceRun100k(b *testing.B) { benchInvoiceRun(b, 100_000) }

func benchInvoiceRun(b *testing.B, orgs int) {
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		db := testenv.Postgres(b)
		now := rt0.AddDate(0, 1, 5)
		s := billingstore.New(db.Pool, func() time.Time { return now })
		_, err := db.Pool.Exec(ctx, `INSERT INTO orgs (name, created_at, updated_at)
			SELECT 'org-' || g, $1, $1 FROM generate_series(1, $2) g`, rt0, orgs)
		require.NoError(b, err)
		_, err = db.Pool.Exec(ctx, `INSERT INTO charge_lines (key, org_id, namespace_id, resource, class, hour, revision,
			quantity, amount_micros, currency, rated_at, usage_seq)
			SELECT o.id || '/' || r.name, o.id, o.id, r.name, '', $1, 0, 1000, 1000 + o.id % 997, 'USD', $1, o.id * 4 + r.n
			FROM orgs o CROSS JOIN (VALUES (0, 'cpu'), (1, 'memory'), (2, 'storage'), (3, 'network.internet.egress')) r(n, name)`, rt0)
		require.NoError(b, err)
		_, err = db.Pool.Exec(ctx, `VACUUM ANALYZE`)
		require.NoError(b, err)
		iv, err := billing.NewInvoicer(s, billing.DefaultInvoiceConfig(), nil, discard(), func() time.Time { return now })
		require.NoError(b, err)
		p := billing.DefaultInvoiceConfig().PeriodOf(rt0)

		start := time.Now()
		var groups int
		require.NoError(b, db.Pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT org_id, resource, sum(amount_micros)
			FROM charge_lines WHERE hour >= $1 AND hour < $2 GROUP BY 1, 2) g`, p.Start, p.End).Scan(&groups))
		floor := time.Since(start)
		require.Equal(b, orgs*4, groups)

		b.StartTimer()
		start = time.Now()
		n, err := iv.InvoicePeriod(ctx, p)
		elapsed := time.Since(start)
		b.StopTimer()
		require.NoError(b, err)
		require.Equal(b, orgs, n)
		var issued int
		require.NoError(b, db.Pool.QueryRow(ctx, `SELECT count(*) FROM invoices WHERE status <> 'draft'`).Scan(&issued))
		require.Equal(b, orgs, issued)
		b.ReportMetric(elapsed.Seconds(), "s/run")
		b.ReportMetric(elapsed.Seconds()/float64(orgs)*1e3, "ms/invoice")
		b.ReportMetric(elapsed.Seconds()/floor.Seconds(), "x-floor")
		fmt.Printf("invoicing %d orgs (4 charge lines each): %.1fs, %.2f ms an invoice; GROUP BY floor %.3fs; ratio %.0f\n",
			orgs, elapsed.Seconds(), elapsed.Seconds()/float64(orgs)*1e3, floor.Seconds(), elapsed.Seconds()/floor.Seconds())
		b.StartTimer()
	}
}
