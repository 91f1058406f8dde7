package tenancy

import "context"

// Store is the persistence the Service needs; tenancystore implements it on
// Postgres. InTx runs fn in one transaction and commits when fn returns nil.
type Store interface {
	InTx(ctx context.Context, fn func(tx Tx) error) error
	Tx
}

// Tx is the set of queries, run in a transaction or on their own.
type Tx interface{}
