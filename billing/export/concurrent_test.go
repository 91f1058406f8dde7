package export_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/billing/export"
)

// slowWriter stands for a slow client: its first write waits until the
// writer has committed more pairs, and each write takes a while.
type slowWriter struct {
	buf     bytes.Buffer
	first   sync.Once
	waitFor func()
}

func (w *slowWriter) Write(p []byte) (int, error) {
	w.first.Do(w.waitFor)
	time.Sleep(time.Millisecond)
	return w.buf.Write(p)
}

func TestAConcurrentWriterNeverTearsAnExport(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.seed(1, 1)
	ctx := context.Background()
	ns := b.nss[0]
	// Each pair is two rows, cpu and memory of class pN, written in one
	// transaction.
	const prefilled = 5000
	b.exec(`INSERT INTO usage_hourly (namespace_id, hour, resource, class, revision, quantity, seq, rolled_at)
		SELECT $1, $2, r, 'p' || n, 0, n, nextval('usage_hourly_seq'), $2
		FROM generate_series(1, $3) n, unnest(ARRAY['cpu', 'memory']) r`, ns, t0.Add(5*time.Hour), prefilled)

	var written atomic.Int64
	written.Store(prefilled)
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		for n := int64(prefilled + 1); ; n++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			err := pgx.BeginFunc(ctx, b.db.Pool, func(tx pgx.Tx) error {
				for _, r := range []string{"cpu", "memory"} {
					if _, err := tx.Exec(ctx, `INSERT INTO usage_hourly (namespace_id, hour, resource, class, revision, quantity, seq, rolled_at)
						VALUES ($1, $2, $3, $4, 0, $5, nextval('usage_hourly_seq'), $2)`, ns, t0.Add(5*time.Hour), r, fmt.Sprintf("p%d", n), n); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				done <- err
				return
			}
			written.Store(n)
		}
	}()

	q, err := b.exp.Parse("usage", export.Params{From: t0.Format(time.RFC3339), To: t0.Add(24 * time.Hour).Format(time.RFC3339)})
	require.NoError(t, err)
	var atStart int64
	w := &slowWriter{waitFor: func() {
		atStart = written.Load()
		for written.Load() < atStart+50 {
			time.Sleep(time.Millisecond)
		}
	}}
	beforeRun := written.Load()
	rows, err := b.exp.Run(ctx, q, cli, w)
	close(stop)
	require.NoError(t, err)
	require.NoError(t, <-done)
	after := written.Load()
	require.Greater(t, after, atStart+50, "the writer committed pairs while the export streamed")

	recs := parseCSV(t, export.Usage, w.buf.Bytes())
	require.Len(t, recs, int(rows))
	count := map[string]int{}
	for _, r := range recs {
		if r["hour"] == t0.Add(5*time.Hour).Format(time.RFC3339) && r["class"] != "" {
			count[r["class"]]++
		}
	}
	for class, n := range count {
		require.Equal(t, 2, n, "pair %s is torn", class)
	}
	// Every pair committed before the export began is in it, none of
	// those committed after its first byte.
	for n := int64(1); n <= beforeRun; n++ {
		require.Equal(t, 2, count[fmt.Sprintf("p%d", n)], "pair p%d committed before the export", n)
	}
	for n := atStart + 1; n <= after; n++ {
		require.Zero(t, count[fmt.Sprintf("p%d", n)], "pair p%d committed after the export began", n)
	}
}

// An invoice export joins each invoice to its lines; a draft regenerated
// meanwhile (its lines replaced and its totals updated in one
// transaction) must come out as one committed version, never lines of
// one and totals of another.
func TestARegeneratedDraftNeverTearsAnInvoiceExport(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.seed(1, 1)
	ctx := context.Background()
	org, ns := b.orgs[0], b.nss[0]
	const prefilled, unit = 300, 1_000_000
	addCharges := func(from, to int64) {
		b.exec(`INSERT INTO charge_lines (key, org_id, namespace_id, resource, class, hour, revision, quantity, amount_micros,
				currency, rated_at, usage_seq)
			SELECT 'torn:' || n, $1, $2, 'r' || n, '', $3, 0, 1, $4, 'USD', $3, n FROM generate_series($5::bigint, $6::bigint) n`,
			org, ns, t0.Add(5*time.Hour), unit, from, to)
	}
	addCharges(1, prefilled)
	_, err := b.store.GenerateInvoice(ctx, org, nov, 0)
	require.NoError(t, err)

	var written atomic.Int64
	written.Store(prefilled)
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		for n := int64(prefilled + 1); ; n++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			if _, err := b.db.Pool.Exec(ctx, `INSERT INTO charge_lines (key, org_id, namespace_id, resource, class, hour,
					revision, quantity, amount_micros, currency, rated_at, usage_seq)
				VALUES ('torn:' || $5::bigint, $1, $2, 'r' || $5::bigint, '', $3, 0, 1, $4, 'USD', $3, $5)`,
				org, ns, t0.Add(5*time.Hour), unit, n); err != nil {
				done <- err
				return
			}
			if _, err := b.store.GenerateInvoice(ctx, org, nov, 0); err != nil {
				done <- err
				return
			}
			written.Store(n)
		}
	}()

	q, err := b.exp.Parse("invoices", export.Params{From: nov.Start.Format(time.RFC3339), To: nov.End.Format(time.RFC3339)})
	require.NoError(t, err)
	var atStart int64
	w := &slowWriter{waitFor: func() {
		atStart = written.Load()
		for written.Load() < atStart+5 {
			time.Sleep(time.Millisecond)
		}
	}}
	beforeRun := written.Load()
	rows, err := b.exp.Run(ctx, q, cli, w)
	close(stop)
	require.NoError(t, err)
	require.NoError(t, <-done)
	require.Greater(t, written.Load(), atStart+4, "the draft was regenerated while the export streamed")

	recs := parseCSV(t, export.Invoices, w.buf.Bytes())
	require.Len(t, recs, int(rows))
	var sum int64
	for _, r := range recs {
		require.Equal(t, recs[0]["invoice_id"], r["invoice_id"])
		require.Equal(t, recs[0]["subtotal"], r["subtotal"], "one version's totals on every line")
		v, err := billing.ParseMicros(r["line_amount"])
		require.NoError(t, err)
		sum += v
	}
	subtotal, err := billing.ParseMicros(recs[0]["subtotal"])
	require.NoError(t, err)
	require.Equal(t, subtotal, sum, "the lines add up to the subtotal beside them")
	require.Equal(t, int64(len(recs))*unit, subtotal)
	// The version exported is one committed between the start of Run and
	// the export's first byte.
	require.GreaterOrEqual(t, int64(len(recs)), beforeRun)
	require.LessOrEqual(t, int64(len(recs)), atStart)
}
