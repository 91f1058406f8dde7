package tenancystore

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantplane/tenantplane/tenancy"
)

const insertAudit = `INSERT INTO audit_log (at, actor, action, target, ip, request_id, detail)
	VALUES ($1, $2, $3, $4, $5, $6, $7)`

func (q *queries) InsertAudit(ctx context.Context, e tenancy.AuditEntry) error {
	var ip *netip.Addr
	if e.IP.IsValid() {
		a := e.IP
		ip = &a
	}
	detail := e.Detail
	if len(detail) == 0 {
		detail = json.RawMessage(`{}`)
	}
	_, err := q.db.Exec(ctx, insertAudit, e.At, e.Actor, e.Action, e.Target, ip, e.RequestID, []byte(detail))
	return storeErr("writing audit log", "audit entry", err)
}

// auditLog pages newest first by (at, id); each filter applies only when
// given.
const auditLog = `SELECT id, at, actor, action, target, ip, request_id, detail FROM audit_log
	WHERE ($1 = '' OR actor = $1) AND ($2 = '' OR action = $2) AND ($3 = '' OR target = $3)
	AND ($4::timestamptz IS NULL OR at >= $4) AND ($5::timestamptz IS NULL OR at < $5)
	AND ($6::timestamptz IS NULL OR (at, id) < ($6, $7))
	ORDER BY at DESC, id DESC LIMIT $8`

func (q *queries) AuditLog(ctx context.Context, f tenancy.AuditFilter, pq tenancy.PageQuery) ([]tenancy.AuditEntry, error) {
	var since, until, afterAt *time.Time
	if !f.Since.IsZero() {
		since = &f.Since
	}
	if !f.Until.IsZero() {
		until = &f.Until
	}
	if pq.HasAfter {
		afterAt = &pq.After.Time
	}
	rows, err := q.db.Query(ctx, auditLog, f.Actor, f.Action, f.Target, since, until, afterAt, pq.After.ID, pq.Limit+1)
	if err != nil {
		return nil, storeErr("reading audit log", "audit entry", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (tenancy.AuditEntry, error) {
		var e tenancy.AuditEntry
		var ip *netip.Addr
		var detail []byte
		err := r.Scan(&e.ID, &e.At, &e.Actor, &e.Action, &e.Target, &ip, &e.RequestID, &detail)
		utc(&e.At)
		if ip != nil {
			e.IP = *ip
		}
		e.Detail = detail
		return e, err
	})
	return out, storeErr("reading audit log", "audit entry", err)
}

const insertOutbox = `INSERT INTO outbox (kind, key, payload, created_at, next_attempt_at) VALUES ($1, $2, $3, $4, $4)`

func (q *queries) InsertOutbox(ctx context.Context, e tenancy.OutboxEvent) error {
	payload := e.Payload
	if payload == nil {
		payload = map[string]any{}
	}
	b, err := json.Marshal(payload)
	if err != nil {
		return fmt.Errorf("encoding outbox payload: %w", err)
	}
	_, err = q.db.Exec(ctx, insertOutbox, e.Kind, e.Key, b, e.At)
	return storeErr("writing outbox", "outbox event", err)
}

const enqueueMail = `INSERT INTO mail_outbox (kind, recipient, subject, body_text, body_html, created_at, next_attempt_at)
	VALUES ($1, $2, $3, $4, $5, $6, $6)`

func (q *queries) EnqueueMail(ctx context.Context, m tenancy.OutgoingMail) error {
	_, err := q.db.Exec(ctx, enqueueMail, m.Kind, m.To, m.Subject, m.Text, m.HTML, m.At)
	return storeErr("queueing mail", "mail", err)
}

// claimMail leases due messages: rows locked by another sender are
// skipped, and a sender that dies leaves its rows due again after the
// lease.
const claimMail = `UPDATE mail_outbox m SET attempts = m.attempts + 1, next_attempt_at = $2
	FROM (SELECT id FROM mail_outbox
	      WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $1
	      ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) due
	WHERE m.id = due.id
	RETURNING m.id, m.recipient, m.subject, m.body_text, m.body_html, m.attempts`

func (q *queries) ClaimMail(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]tenancy.ClaimedMail, error) {
	rows, err := q.db.Query(ctx, claimMail, now, now.Add(lease), limit)
	if err != nil {
		return nil, storeErr("claiming mail", "mail", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (tenancy.ClaimedMail, error) {
		var m tenancy.ClaimedMail
		err := r.Scan(&m.ID, &m.To, &m.Subject, &m.Text, &m.HTML, &m.Attempts)
		return m, err
	})
	return out, storeErr("claiming mail", "mail", err)
}

// markMailSent blanks the bodies: they may carry a secret link.
const markMailSent = `UPDATE mail_outbox SET sent_at = $2, body_text = '', body_html = '', last_error = ''
	WHERE id = $1`

func (q *queries) MarkMailSent(ctx context.Context, id int64, now time.Time) error {
	_, err := q.db.Exec(ctx, markMailSent, id, now)
	return storeErr("marking mail sent", "mail", err)
}

const markMailFailed = `UPDATE mail_outbox SET last_error = $2, next_attempt_at = $3,
	failed_at = CASE WHEN $4 THEN $5::timestamptz END WHERE id = $1`

func (q *queries) MarkMailFailed(ctx context.Context, id int64, errText string, next time.Time, final bool, now time.Time) error {
	_, err := q.db.Exec(ctx, markMailFailed, id, errText, next, final, now)
	return storeErr("marking mail failed", "mail", err)
}

// hitRateLimit counts one event in the current fixed window and keeps the
// previous window's count, so the caller can weigh a sliding window. A row
// whose window is ahead (another replica's clock) keeps counting there.
const hitRateLimit = `INSERT INTO rate_limits AS r (key, window_start, count, prev_count) VALUES ($1, $2, 1, 0)
	ON CONFLICT (key) DO UPDATE SET
	  prev_count = CASE WHEN r.window_start >= EXCLUDED.window_start THEN r.prev_count
	                    WHEN r.window_start = EXCLUDED.window_start - $3::interval THEN r.count
	                    ELSE 0 END,
	  count = CASE WHEN r.window_start >= EXCLUDED.window_start THEN r.count + 1 ELSE 1 END,
	  window_start = GREATEST(r.window_start, EXCLUDED.window_start)
	RETURNING count, prev_count`

func (q *queries) HitRateLimit(ctx context.Context, key string, windowStart time.Time, window time.Duration) (int, int, error) {
	var cur, prev int
	err := q.db.QueryRow(ctx, hitRateLimit, key, windowStart, window).Scan(&cur, &prev)
	return cur, prev, storeErr("counting rate limit", "rate limit", err)
}

const (
	pruneRateLimits = `DELETE FROM rate_limits WHERE window_start < $1`
	pruneUserTokens = `DELETE FROM user_tokens WHERE expires_at < $1`
	pruneAuthTokens = `DELETE FROM auth_tokens WHERE expires_at < $1`
)

func (q *queries) Prune(ctx context.Context, rateBefore, tokenBefore time.Time) error {
	if _, err := q.db.Exec(ctx, pruneRateLimits, rateBefore); err != nil {
		return storeErr("pruning rate limits", "rate limit", err)
	}
	if _, err := q.db.Exec(ctx, pruneUserTokens, tokenBefore); err != nil {
		return storeErr("pruning one-time tokens", "token", err)
	}
	if _, err := q.db.Exec(ctx, pruneAuthTokens, tokenBefore); err != nil {
		return storeErr("pruning tokens", "token", err)
	}
	return nil
}
