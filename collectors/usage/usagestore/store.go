package usagestore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantplane/tenantplane/collectors/usage"
	"github.com/tenantplane/tenantplane/internal/errcode"
)

// closeLock is the advisory lock between writers (shared) and the rollup
// (exclusive): an hour closes only when no write that could still land in
// it is in flight, and a write that lands in a closed hour marks it for a
// correction.
const closeLock int64 = 0x7573616765636c6f // "usageclo"

// Store is usage.Store over a pgx pool.
type Store struct {
	pool *pgxpool.Pool
}

var _ usage.Store = (*Store)(nil)

// New returns a Store over pool.
func New(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// storeErr turns a storage error into a domain error; anything but a unique
// violation stays internal, wrapped with op.
func storeErr(op string, err error) error {
	if err == nil {
		return nil
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "23505":
			return errcode.New(errcode.Conflict, op+": already written by another writer")
		case "23514":
			if strings.HasPrefix(pgErr.Message, "no partition of relation") {
				return fmt.Errorf("%s: no usage partition for a minute (is upkeep running?): %w", op, err)
			}
		}
	}
	return fmt.Errorf("%s: %w", op, err)
}

const (
	qLockShared    = `SELECT pg_advisory_xact_lock_shared($1)`
	qLockExclusive = `SELECT pg_advisory_xact_lock($1)`
	qCreateStaging = `CREATE TEMP TABLE IF NOT EXISTS usage_staging (
    namespace_id bigint, minute timestamptz, resource text, class text, key text, quantity bigint
) ON COMMIT DELETE ROWS`
	// qInsertStaged moves the staged rows into usage_minute, ignoring keys
	// already there, and marks the (hour, namespace) pairs of rows that
	// landed in a closed hour for a correction.
	qInsertStaged = `WITH ins AS (
    INSERT INTO usage_minute (namespace_id, minute, resource, class, source, key, quantity)
    SELECT namespace_id, minute, resource, class, $1, key, quantity FROM usage_staging
    ON CONFLICT DO NOTHING
    RETURNING namespace_id, minute
), late AS (
    INSERT INTO usage_dirty_hours (hour, namespace_id)
    SELECT DISTINCT date_trunc('hour', minute, 'UTC'), namespace_id FROM ins
    WHERE minute < (SELECT closed_through FROM usage_rollup_state)
    ON CONFLICT DO NOTHING
)
SELECT count(*) FROM ins`
)

var stagingColumns = []string{"namespace_id", "minute", "resource", "class", "key", "quantity"}

// Write implements usage.Writer.
func (s *Store) Write(ctx context.Context, source string, samples []usage.Sample) (usage.WriteResult, error) {
	if err := validate(source, samples); err != nil {
		return usage.WriteResult{}, err
	}
	if len(samples) == 0 {
		return usage.WriteResult{}, nil
	}
	var res usage.WriteResult
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		res, err = writeStaged(ctx, tx, source, samples)
		return err
	})
	if err != nil {
		return usage.WriteResult{}, storeErr("writing usage samples", err)
	}
	return res, nil
}

func validate(source string, samples []usage.Sample) error {
	if !usage.ValidSource(source) {
		return errcode.Invalid("source", fmt.Sprintf("%q is not a source name", source))
	}
	for i := range samples {
		if err := samples[i].Validate(); err != nil {
			return fmt.Errorf("sample %d: %w", i, err)
		}
	}
	return nil
}

const (
	qClosedThrough = `SELECT closed_through FROM usage_rollup_state`
	// qMarkDirty marks the (hour, namespace) pairs of rows that landed in
	// closed hours for a correction.
	qMarkDirty = `INSERT INTO usage_dirty_hours (hour, namespace_id)
SELECT DISTINCT date_trunc('hour', m, 'UTC'), ns FROM unnest($1::timestamptz[], $2::bigint[]) AS d(m, ns)
ON CONFLICT DO NOTHING`
)

var minuteColumns = []string{"namespace_id", "minute", "resource", "class", "source", "key", "quantity"}

// writeStaged writes samples in tx, holding the close lock shared. The
// usual batch holds no stored key and is copied straight into
// usage_minute; if a key is already stored, that copy fails on the unique
// key, is rolled back to its savepoint, and the batch is copied into the
// staging table and inserted with ON CONFLICT DO NOTHING instead. Either
// way a stored key is never written twice.
func writeStaged(ctx context.Context, tx pgx.Tx, source string, samples []usage.Sample) (usage.WriteResult, error) {
	if _, err := tx.Exec(ctx, qLockShared, closeLock); err != nil {
		return usage.WriteResult{}, fmt.Errorf("taking the close lock: %w", err)
	}
	var closed *time.Time
	if err := tx.QueryRow(ctx, qClosedThrough).Scan(&closed); err != nil {
		return usage.WriteResult{}, fmt.Errorf("reading closed hours: %w", err)
	}
	sp, err := tx.Begin(ctx)
	if err != nil {
		return usage.WriteResult{}, fmt.Errorf("savepoint: %w", err)
	}
	_, err = sp.CopyFrom(ctx, pgx.Identifier{"usage_minute"}, minuteColumns, pgx.CopyFromSlice(len(samples), func(i int) ([]any, error) {
		x := &samples[i]
		return []any{x.NamespaceID, x.Minute, x.Resource, x.Class, source, x.Key, x.Quantity}, nil
	}))
	if err == nil {
		if err := sp.Commit(ctx); err != nil {
			return usage.WriteResult{}, fmt.Errorf("releasing savepoint: %w", err)
		}
		if err := markLate(ctx, tx, closed, samples); err != nil {
			return usage.WriteResult{}, err
		}
		return usage.WriteResult{Inserted: len(samples)}, nil
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23505" {
		return usage.WriteResult{}, fmt.Errorf("copying samples: %w", err)
	}
	if err := sp.Rollback(ctx); err != nil {
		return usage.WriteResult{}, fmt.Errorf("rolling back to savepoint: %w", err)
	}
	if _, err := tx.Exec(ctx, qCreateStaging); err != nil {
		return usage.WriteResult{}, fmt.Errorf("creating the staging table: %w", err)
	}
	_, err = tx.CopyFrom(ctx, pgx.Identifier{"usage_staging"}, stagingColumns, pgx.CopyFromSlice(len(samples), func(i int) ([]any, error) {
		x := &samples[i]
		return []any{x.NamespaceID, x.Minute, x.Resource, x.Class, x.Key, x.Quantity}, nil
	}))
	if err != nil {
		return usage.WriteResult{}, fmt.Errorf("copying into staging: %w", err)
	}
	var inserted int
	if err := tx.QueryRow(ctx, qInsertStaged, source).Scan(&inserted); err != nil {
		return usage.WriteResult{}, fmt.Errorf("inserting staged samples: %w", err)
	}
	return usage.WriteResult{Inserted: inserted, Duplicates: len(samples) - inserted}, nil
}

// markLate marks the hours of samples before closed (all of them new) for
// a correction.
func markLate(ctx context.Context, tx pgx.Tx, closed *time.Time, samples []usage.Sample) error {
	if closed == nil {
		return nil
	}
	var minutes []time.Time
	var ns []int64
	for i := range samples {
		if samples[i].Minute.Before(*closed) {
			minutes = append(minutes, samples[i].Minute)
			ns = append(ns, samples[i].NamespaceID)
		}
	}
	if len(minutes) == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, qMarkDirty, minutes, ns); err != nil {
		return fmt.Errorf("marking late hours: %w", err)
	}
	return nil
}

const (
	qWatermarkForUpdate = `SELECT since, through FROM usage_watermarks WHERE source = $1 FOR UPDATE`
	qWatermark          = `SELECT since, through FROM usage_watermarks WHERE source = $1`
	qInsertWatermark    = `INSERT INTO usage_watermarks (source, since, through, updated_at) VALUES ($1, $2, $3, $4)`
	qAdvanceWatermark   = `UPDATE usage_watermarks SET through = $2, updated_at = $3 WHERE source = $1`
	qInsertGap          = `INSERT INTO usage_gaps (source, start_minute, end_minute, reason, recorded_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (source, start_minute, reason) DO UPDATE SET end_minute = greatest(usage_gaps.end_minute, excluded.end_minute)`
)

// WriteMinutes implements usage.Writer.
func (s *Store) WriteMinutes(ctx context.Context, b usage.MinuteBatch) error {
	if err := validate(b.Source, b.Samples); err != nil {
		return err
	}
	if !usage.IsMinute(b.From) || !usage.IsMinute(b.Through) || b.Through.Before(b.From) {
		return errcode.Invalid("through", "from and through must be whole UTC minutes, from <= through")
	}
	for _, x := range b.Samples {
		if x.Minute.Before(b.From) || !x.Minute.Before(b.Through) {
			return errcode.Invalid("minute", "every sample must be in [from, through)")
		}
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var since, through time.Time
		err := tx.QueryRow(ctx, qWatermarkForUpdate, b.Source).Scan(&since, &through)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			if _, err := tx.Exec(ctx, qInsertWatermark, b.Source, b.From, b.Through, time.Now().UTC()); err != nil {
				return err
			}
		case err != nil:
			return err
		case !through.Equal(b.From):
			return errcode.New(errcode.Conflict, fmt.Sprintf("watermark of %s is %s, not %s", b.Source, through.UTC().Format(time.RFC3339), b.From.Format(time.RFC3339)))
		default:
			if _, err := tx.Exec(ctx, qAdvanceWatermark, b.Source, b.Through, time.Now().UTC()); err != nil {
				return err
			}
		}
		if len(b.Samples) > 0 {
			if _, err := writeStaged(ctx, tx, b.Source, b.Samples); err != nil {
				return err
			}
		}
		for _, g := range b.Gaps {
			if _, err := tx.Exec(ctx, qInsertGap, b.Source, g.Start, g.End, g.Reason, time.Now().UTC()); err != nil {
				return fmt.Errorf("recording gap: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		if _, ok := errcode.As(err); ok {
			return err
		}
		return storeErr("writing minutes of "+b.Source, err)
	}
	return nil
}

// Watermark implements usage.Writer.
func (s *Store) Watermark(ctx context.Context, source string) (usage.Watermark, bool, error) {
	var w usage.Watermark
	err := s.pool.QueryRow(ctx, qWatermark, source).Scan(&w.Since, &w.Through)
	if errors.Is(err, pgx.ErrNoRows) {
		return usage.Watermark{}, false, nil
	}
	if err != nil {
		return usage.Watermark{}, false, storeErr("reading watermark of "+source, err)
	}
	w.Since, w.Through = w.Since.UTC(), w.Through.UTC()
	return w, true, nil
}

const (
	qTenantNamespaces = `SELECT name, id FROM namespaces`
	qNamespaceIDs     = `SELECT name, id FROM namespaces WHERE name = ANY($1)`
)

// TenantNamespaces implements usage.Namespaces.
func (s *Store) TenantNamespaces(ctx context.Context) (map[string]int64, error) {
	return s.names(ctx, qTenantNamespaces)
}

// NamespaceIDs implements usage.Namespaces.
func (s *Store) NamespaceIDs(ctx context.Context, names []string) (map[string]int64, error) {
	if len(names) == 0 {
		return map[string]int64{}, nil
	}
	return s.names(ctx, qNamespaceIDs, names)
}

func (s *Store) names(ctx context.Context, q string, args ...any) (map[string]int64, error) {
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, storeErr("reading namespaces", err)
	}
	defer rows.Close()
	m := map[string]int64{}
	var name string
	var id int64
	_, err = pgx.ForEachRow(rows, []any{&name, &id}, func() error {
		m[name] = id
		return nil
	})
	if err != nil {
		return nil, storeErr("reading namespaces", err)
	}
	return m, nil
}
