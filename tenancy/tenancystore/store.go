package tenancystore

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantplane/tenantplane/internal/pgstore"
	"github.com/tenantplane/tenantplane/tenancy"
)

// dbtx is what a pool and a transaction have in common.
type dbtx interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// queries runs every query of tenancy.Tx on a pool or a transaction.
type queries struct {
	db dbtx
}

// Store is tenancy.Store over a pgx pool.
type Store struct {
	queries
	pool *pgxpool.Pool
}

var (
	_ tenancy.Store = (*Store)(nil)
	_ tenancy.Tx    = (*queries)(nil)
)

// New returns a Store over pool.
func New(pool *pgxpool.Pool) *Store { return &Store{queries: queries{db: pool}, pool: pool} }

// InTx runs fn in one read-committed transaction, committed when fn
// returns nil and rolled back otherwise.
func (s *Store) InTx(ctx context.Context, fn func(tx tenancy.Tx) error) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		return fn(&queries{db: tx})
	})
}

// storeErr turns a storage error into a domain error; see pgstore.Err.
func storeErr(op, what string, err error) error { return pgstore.Err(op, what, err) }

// utc puts scanned times in UTC; pgx scans timestamptz in time.Local.
func utc(ts ...*time.Time) {
	for _, t := range ts {
		*t = t.UTC()
	}
}

// utcp is utc for nullable times.
func utcp(ts ...**time.Time) {
	for _, t := range ts {
		if *t != nil {
			v := (*t).UTC()
			*t = &v
		}
	}
}

// byKeys picks the query of a batch load: one, with "= $1", for a single
// key, and many, with "= ANY($1)", otherwise. Postgres plans ANY of a
// parameter for ten keys when it prepares a generic plan, finds that
// dearer than a custom plan for the one key it is given, and so plans the
// statement afresh on every execution, which on a small machine costs
// several times running it; "= $1" keeps its generic plan. Batches of one
// key are the common case: a field outside any list asks for one.
func byKeys(ids []int64, one, many string) (string, any) {
	if len(ids) == 1 {
		return one, ids[0]
	}
	return many, ids
}

// after returns the id of a page cursor, or nil for the first page.
func after(q tenancy.PageQuery) *int64 {
	if !q.HasAfter {
		return nil
	}
	id := q.After.ID
	return &id
}
