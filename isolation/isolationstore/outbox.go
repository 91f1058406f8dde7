package isolationstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tenantplane/tenantplane/isolation"
)

const (
	// claimOutbox takes the due rows nobody else holds, oldest due first,
	// and pushes them out by the lease so that a dead worker's rows come
	// due again.
	claimOutbox = `UPDATE outbox o SET attempts = o.attempts + 1, next_attempt_at = $2
		FROM (SELECT id FROM outbox
		       WHERE done_at IS NULL AND next_attempt_at <= $1
		       ORDER BY next_attempt_at, id
		       LIMIT $3
		       FOR UPDATE SKIP LOCKED) due
		WHERE o.id = due.id
		RETURNING o.id, o.kind, o.key, o.attempts, o.created_at`
	completeOutbox = `UPDATE outbox SET done_at = $2, last_error = '' WHERE id = ANY($1) AND done_at IS NULL`
	retryOutbox    = `UPDATE outbox SET last_error = $2, next_attempt_at = $3 WHERE id = ANY($1) AND done_at IS NULL`
	outboxStats    = `SELECT count(*), count(*) FILTER (WHERE last_error <> ''),
		COALESCE(min(created_at), $1), COALESCE(max(attempts), 0)
		FROM outbox WHERE done_at IS NULL`
	listenOutbox = `LISTEN ` + OutboxChannel
)

// ClaimOutbox implements isolation.Outbox.
func (s *Store) ClaimOutbox(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]isolation.OutboxItem, error) {
	rows, err := s.pool.Query(ctx, claimOutbox, now, now.Add(lease), limit)
	if err != nil {
		return nil, fmt.Errorf("claiming outbox rows: %w", err)
	}
	defer rows.Close()
	var items []isolation.OutboxItem
	for rows.Next() {
		var it isolation.OutboxItem
		if err := rows.Scan(&it.ID, &it.Kind, &it.Key, &it.Attempts, &it.CreatedAt); err != nil {
			return nil, fmt.Errorf("claiming outbox rows: %w", err)
		}
		it.CreatedAt = it.CreatedAt.UTC()
		items = append(items, it)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("claiming outbox rows: %w", err)
	}
	return items, nil
}

// CompleteOutbox implements isolation.Outbox.
func (s *Store) CompleteOutbox(ctx context.Context, ids []int64, now time.Time) error {
	if _, err := s.pool.Exec(ctx, completeOutbox, ids, now); err != nil {
		return fmt.Errorf("completing outbox rows: %w", err)
	}
	return nil
}

// RetryOutbox implements isolation.Outbox.
func (s *Store) RetryOutbox(ctx context.Context, ids []int64, lastError string, next time.Time) error {
	if len(lastError) > maxErrorLen {
		lastError = lastError[:maxErrorLen]
	}
	if _, err := s.pool.Exec(ctx, retryOutbox, ids, lastError, next); err != nil {
		return fmt.Errorf("recording outbox failure: %w", err)
	}
	return nil
}

// OutboxStats implements isolation.Outbox.
func (s *Store) OutboxStats(ctx context.Context, now time.Time) (isolation.OutboxStats, error) {
	var st isolation.OutboxStats
	var oldest time.Time
	err := s.pool.QueryRow(ctx, outboxStats, now).Scan(&st.Pending, &st.Failing, &oldest, &st.MaxAttempts)
	if err != nil {
		return st, fmt.Errorf("reading outbox stats: %w", err)
	}
	st.OldestAge = max(now.Sub(oldest), 0)
	return st, nil
}

// WaitOutbox implements isolation.Outbox with LISTEN on a connection held
// for the purpose. A notification that arrived since the last call returns
// at once.
func (s *Store) WaitOutbox(ctx context.Context, timeout time.Duration) error {
	s.listenMu.Lock()
	defer s.listenMu.Unlock()
	if s.listener == nil {
		conn, err := s.pool.Acquire(ctx)
		if err != nil {
			return fmt.Errorf("acquiring listening connection: %w", err)
		}
		if _, err := conn.Exec(ctx, listenOutbox); err != nil {
			conn.Release()
			return fmt.Errorf("listening for outbox rows: %w", err)
		}
		s.listener = conn
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err := s.listener.Conn().WaitForNotification(wctx)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		return nil
	case ctx.Err() != nil:
		// The wait was cut short; the connection may be mid-read.
		s.dropListener()
		return ctx.Err()
	default:
		s.dropListener()
		return fmt.Errorf("waiting for outbox rows: %w", err)
	}
}

func (s *Store) dropListener() {
	_ = s.listener.Conn().Close(context.Background())
	s.listener.Release()
	s.listener = nil
}
