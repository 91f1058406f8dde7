package usagestore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantplane/tenantplane/collectors/usage"
)

const (
	qEnsurePartitions = `SELECT usage_ensure_partitions($1::date, $2::date)`
	qDropPartitions   = `SELECT usage_drop_minute_partitions($1::date)`
)

// EnsurePartitions implements usage.Maintainer.
func (s *Store) EnsurePartitions(ctx context.Context, from, to time.Time) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, qEnsurePartitions, from.UTC().Format(time.DateOnly), to.UTC().Format(time.DateOnly)).Scan(&n)
	if err != nil {
		return 0, storeErr("creating usage partitions", err)
	}
	return n, nil
}

// DropPartitionsBefore implements usage.Maintainer.
func (s *Store) DropPartitionsBefore(ctx context.Context, day time.Time) ([]string, error) {
	rows, err := s.pool.Query(ctx, qDropPartitions, day.UTC().Format(time.DateOnly))
	if err != nil {
		return nil, storeErr("dropping usage partitions", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, storeErr("dropping usage partitions", err)
	}
	return names, nil
}

const (
	qClosedForUpdate = `SELECT closed_through FROM usage_rollup_state FOR UPDATE`
	qClosed          = `SELECT closed_through FROM usage_rollup_state`
	qSetClosed       = `UPDATE usage_rollup_state SET closed_through = $1`
	// qRollSettings gives the aggregate of one hour enough memory to hash
	// every (namespace, resource, class) of the hour without spilling to
	// disk, for this transaction only.
	qRollSettings = `SET LOCAL work_mem = '128MB'`
	// qRollTotals sums one hour's minute rows into a temporary table. It
	// is a read of usage_minute on its own (the write goes to a table of
	// this session), so Postgres may split the scan and the aggregate
	// among parallel workers, which it never does for an INSERT … SELECT.
	qRollTotals = `CREATE TEMP TABLE usage_hour_totals ON COMMIT DROP AS
SELECT namespace_id, resource, class, sum(quantity)::bigint AS quantity
FROM usage_minute
WHERE minute >= $1 AND minute < $1 + interval '1 hour'
GROUP BY namespace_id, resource, class`
	// qReserveSeq takes $1 consecutive values of usage_hourly_seq at once
	// and returns the last. Every writer of usage_hourly (the rollup and
	// the correction) holds the close lock exclusively, so no other
	// nextval runs between the two calls.
	qReserveSeq = `SELECT setval('usage_hourly_seq', nextval('usage_hourly_seq') + $1 - 1)`
	// qRollHour writes revision 0 of the hour from the totals, seq
	// numbered from $3 in (namespace, resource, class) order.
	qRollHour = `INSERT INTO usage_hourly (namespace_id, hour, resource, class, revision, quantity, seq, rolled_at)
SELECT namespace_id, $1, resource, class, 0, quantity,
    $3::bigint - 1 + row_number() OVER (ORDER BY namespace_id, resource, class), $2
FROM usage_hour_totals
ORDER BY namespace_id, resource, class`
)

// CloseHours implements usage.Maintainer. Each hour closes in its own
// transaction holding the close lock exclusively, so no write that could
// land in it is in flight.
func (s *Store) CloseHours(ctx context.Context, before, start time.Time, max int, now time.Time) (time.Time, error) {
	var closed time.Time
	for range max {
		done := false
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, qLockExclusive, closeLock); err != nil {
				return err
			}
			var c *time.Time
			if err := tx.QueryRow(ctx, qClosedForUpdate).Scan(&c); err != nil {
				return err
			}
			h := start.UTC().Truncate(time.Hour)
			if c != nil {
				h = c.UTC()
			}
			closed = h
			if !h.Before(before) {
				done = true
				return nil
			}
			if err := rollHour(ctx, tx, h, now.UTC()); err != nil {
				return fmt.Errorf("rolling up %s: %w", h.Format(time.RFC3339), err)
			}
			closed = h.Add(time.Hour)
			_, err := tx.Exec(ctx, qSetClosed, closed)
			return err
		})
		if err != nil {
			return time.Time{}, storeErr("closing usage hours", err)
		}
		if done {
			break
		}
	}
	return closed, nil
}

// rollHour writes revision 0 of hour h in tx: the totals of its minute
// rows, one seq each, in (namespace, resource, class) order.
func rollHour(ctx context.Context, tx pgx.Tx, h, now time.Time) error {
	if _, err := tx.Exec(ctx, qRollSettings); err != nil {
		return fmt.Errorf("setting memory: %w", err)
	}
	tag, err := tx.Exec(ctx, qRollTotals, h)
	if err != nil {
		return fmt.Errorf("summing minutes: %w", err)
	}
	n := tag.RowsAffected()
	if n == 0 {
		return nil
	}
	var last int64
	if err := tx.QueryRow(ctx, qReserveSeq, n).Scan(&last); err != nil {
		return fmt.Errorf("reserving seq: %w", err)
	}
	if _, err := tx.Exec(ctx, qRollHour, h, now, last-n+1); err != nil {
		return fmt.Errorf("writing rollups: %w", err)
	}
	return nil
}

const (
	qForgetOldDirty = `DELETE FROM usage_dirty_hours WHERE hour < $1`
	// qCorrect recomputes every touched (hour, namespace) from its minutes
	// and writes the difference to what the rollup holds as the next
	// revision.
	qCorrect = `WITH d AS (
    DELETE FROM usage_dirty_hours RETURNING hour, namespace_id
), m AS (
    SELECT d.hour, u.namespace_id, u.resource, u.class, sum(u.quantity)::bigint AS q
    FROM d JOIN usage_minute u
      ON u.namespace_id = d.namespace_id AND u.minute >= d.hour AND u.minute < d.hour + interval '1 hour'
    GROUP BY 1, 2, 3, 4
), h AS (
    SELECT u.hour, u.namespace_id, u.resource, u.class, sum(u.quantity)::bigint AS q, max(u.revision) AS r
    FROM d JOIN usage_hourly u ON u.namespace_id = d.namespace_id AND u.hour = d.hour
    GROUP BY 1, 2, 3, 4
), ins AS (
    INSERT INTO usage_hourly (namespace_id, hour, resource, class, revision, quantity, seq, rolled_at)
    SELECT namespace_id, hour, resource, class, rev, dq, nextval('usage_hourly_seq'), $1
    FROM (
        SELECT m.namespace_id, m.hour, m.resource, m.class, coalesce(h.r, -1) + 1 AS rev, m.q - coalesce(h.q, 0) AS dq
        FROM m LEFT JOIN h USING (hour, namespace_id, resource, class)
        WHERE m.q <> coalesce(h.q, 0)
        ORDER BY 1, 2, 3, 4
    ) c
    RETURNING 1
)
SELECT count(*) FROM ins`
)

// Correct implements usage.Maintainer.
func (s *Store) Correct(ctx context.Context, notBefore, now time.Time) (int, error) {
	var n int
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, qLockExclusive, closeLock); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, qForgetOldDirty, notBefore.UTC()); err != nil {
			return err
		}
		return tx.QueryRow(ctx, qCorrect, now.UTC()).Scan(&n)
	})
	if err != nil {
		return 0, storeErr("correcting usage rollups", err)
	}
	return n, nil
}

// ClosedThrough implements usage.Reader.
func (s *Store) ClosedThrough(ctx context.Context) (time.Time, bool, error) {
	var c *time.Time
	if err := s.pool.QueryRow(ctx, qClosed).Scan(&c); err != nil {
		return time.Time{}, false, storeErr("reading closed hours", err)
	}
	if c == nil {
		return time.Time{}, false, nil
	}
	return c.UTC(), true, nil
}

const qHourlySince = `SELECT namespace_id, hour, resource, class, revision, quantity, seq
FROM usage_hourly WHERE seq > $1 ORDER BY seq LIMIT $2`

// HourlySince implements usage.Reader.
func (s *Store) HourlySince(ctx context.Context, afterSeq int64, limit int) ([]usage.Hourly, error) {
	if limit <= 0 {
		return nil, errors.New("reading hourly usage: limit must be positive")
	}
	rows, err := s.pool.Query(ctx, qHourlySince, afterSeq, limit)
	if err != nil {
		return nil, storeErr("reading hourly usage", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (usage.Hourly, error) {
		var h usage.Hourly
		err := r.Scan(&h.NamespaceID, &h.Hour, &h.Resource, &h.Class, &h.Revision, &h.Quantity, &h.Seq)
		h.Hour = h.Hour.UTC()
		return h, err
	})
	if err != nil {
		return nil, storeErr("reading hourly usage", err)
	}
	return out, nil
}

const (
	qOrgNamespaceIDs = `SELECT id FROM namespaces WHERE org_id = $1`
	qSeriesMinute    = `SELECT minute, resource, class, sum(quantity)::bigint
FROM usage_minute
WHERE namespace_id = ANY($1) AND minute >= $2 AND minute < $3
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`
	// qSeriesRolled reads closed hours from the rollups (with their
	// corrections) and the hours not closed yet from the minutes.
	qSeriesRolled = `WITH c AS (SELECT coalesce(closed_through, '-infinity') AS t FROM usage_rollup_state)
SELECT date_trunc($4::text, t, 'UTC') AS bucket, resource, class, sum(q)::bigint
FROM (
    SELECT hour AS t, resource, class, quantity AS q FROM usage_hourly, c
    WHERE namespace_id = ANY($1) AND hour >= $2 AND hour < least($3, c.t)
    UNION ALL
    SELECT minute, resource, class, quantity FROM usage_minute, c
    WHERE namespace_id = ANY($1) AND minute >= greatest($2, c.t) AND minute < $3
) u
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`
	qGaps = `SELECT source, start_minute, end_minute, reason FROM usage_gaps
WHERE start_minute < $2 AND end_minute > $1 ORDER BY start_minute, source, reason`
)

// Series implements usage.Reader.
func (s *Store) Series(ctx context.Context, scope usage.Scope, from, to time.Time, g usage.Granularity) (map[usage.SeriesKey][]usage.Point, error) {
	ids := []int64{scope.NamespaceID}
	if scope.OrgID != 0 {
		rows, err := s.pool.Query(ctx, qOrgNamespaceIDs, scope.OrgID)
		if err != nil {
			return nil, storeErr("reading org namespaces", err)
		}
		if ids, err = pgx.CollectRows(rows, pgx.RowTo[int64]); err != nil {
			return nil, storeErr("reading org namespaces", err)
		}
	}
	var rows pgx.Rows
	var err error
	switch g {
	case usage.ByMinute:
		rows, err = s.pool.Query(ctx, qSeriesMinute, ids, from, to)
	case usage.ByHour, usage.ByDay:
		rows, err = s.pool.Query(ctx, qSeriesRolled, ids, from, to, string(g))
	default:
		return nil, fmt.Errorf("reading usage series: granularity %q", g)
	}
	if err != nil {
		return nil, storeErr("reading usage series", err)
	}
	out := map[usage.SeriesKey][]usage.Point{}
	var p usage.Point
	var k usage.SeriesKey
	_, err = pgx.ForEachRow(rows, []any{&p.Start, &k.Resource, &k.Class, &p.Quantity}, func() error {
		p.Start = p.Start.UTC()
		out[k] = append(out[k], p)
		return nil
	})
	if err != nil {
		return nil, storeErr("reading usage series", err)
	}
	return out, nil
}

// Gaps implements usage.Reader.
func (s *Store) Gaps(ctx context.Context, from, to time.Time) ([]usage.Gap, error) {
	rows, err := s.pool.Query(ctx, qGaps, from, to)
	if err != nil {
		return nil, storeErr("reading usage gaps", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (usage.Gap, error) {
		var g usage.Gap
		err := r.Scan(&g.Source, &g.Start, &g.End, &g.Reason)
		g.Start, g.End = g.Start.UTC(), g.End.UTC()
		return g, err
	})
	if err != nil {
		return nil, storeErr("reading usage gaps", err)
	}
	return out, nil
}
