package testenv

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// QueryCounter counts the statements a pool sends, so a test can assert
// that the number of queries does not grow with the data (no N+1).
type QueryCounter struct{ n atomic.Int64 }

// Count is how many statements have been sent so far.
func (c *QueryCounter) Count() int64 { return c.n.Load() }

// TraceQueryStart counts one statement.
func (c *QueryCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}

// TraceQueryEnd does nothing.
func (c *QueryCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// CountingPool opens another pool to db, of at most maxConns connections,
// whose statements c counts. It is closed when the test ends.
func (db *DB) CountingPool(t testing.TB, maxConns int32) (*pgxpool.Pool, *QueryCounter) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(db.URL)
	if err != nil {
		t.Fatalf("parsing database url: %v", err)
	}
	cfg.MaxConns = maxConns
	c := &QueryCounter{}
	cfg.ConnConfig.Tracer = c
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("opening counting pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool, c
}
