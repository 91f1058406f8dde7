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
