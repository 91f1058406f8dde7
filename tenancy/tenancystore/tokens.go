package tenancystore

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantplane/tenantplane/tenancy"
)

const insertAuthToken = `INSERT INTO auth_tokens (user_id, kind, name, hash, created_at, expires_at)
	VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`

func (q *queries) InsertAuthToken(ctx context.Context, t tenancy.AuthTokenRow) (int64, error) {
	var id int64
	err := q.db.QueryRow(ctx, insertAuthToken, t.UserID, t.Kind, t.Name, t.Hash, t.CreatedAt, t.ExpiresAt).Scan(&id)
	return id, storeErr("inserting token", "token", err)
}

// tokenByHash is the query behind every authenticated request: one probe
// of auth_tokens_hash_key joined to the user's primary key.
const tokenByHash = `SELECT t.id, t.kind, t.expires_at, t.last_used_at, u.id, u.email, u.status, u.platform_admin
	FROM auth_tokens t JOIN users u ON u.id = t.user_id
	WHERE t.hash = $1 AND t.revoked_at IS NULL AND t.expires_at > $2 AND u.status <> 'disabled'`

func (q *queries) TokenByHash(ctx context.Context, hash []byte, now time.Time) (tenancy.AuthTokenMatch, error) {
	// One value for every destination: one allocation (see OrgTree).
	v := &struct {
		m            tenancy.AuthTokenMatch
		kind, status string // plain strings: see OrgTree
	}{}
	m := &v.m
	err := q.db.QueryRow(ctx, tokenByHash, hash, now).Scan(&m.TokenID, &v.kind, &m.ExpiresAt, &m.LastUsedAt,
		&m.UserID, &m.Email, &v.status, &m.PlatformAdmin)
	m.TokenKind, m.Status = tenancy.TokenKind(v.kind), tenancy.UserStatus(v.status)
	utc(&m.ExpiresAt)
	utcp(&m.LastUsedAt)
	return *m, storeErr("authenticating token", "token", err)
}

const touchToken = `UPDATE auth_tokens SET last_used_at = $2
	WHERE id = $1 AND (last_used_at IS NULL OR last_used_at <= $3)`

func (q *queries) TouchToken(ctx context.Context, id int64, now, notBefore time.Time) error {
	_, err := q.db.Exec(ctx, touchToken, id, now, notBefore)
	return storeErr("touching token", "token", err)
}

const revokeToken = `UPDATE auth_tokens SET revoked_at = $4
	WHERE user_id = $1 AND id = $2 AND ($3 = '' OR kind = $3) AND revoked_at IS NULL AND expires_at > $4`

func (q *queries) RevokeToken(ctx context.Context, userID, id int64, kind tenancy.TokenKind, now time.Time) error {
	tag, err := q.db.Exec(ctx, revokeToken, userID, id, string(kind), now)
	if err == nil && tag.RowsAffected() == 0 {
		err = pgx.ErrNoRows
	}
	return storeErr("revoking token", "token", err)
}

const revokeUserTokens = `UPDATE auth_tokens SET revoked_at = $2
	WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2`

func (q *queries) RevokeUserTokens(ctx context.Context, userID int64, now time.Time) (int64, error) {
	tag, err := q.db.Exec(ctx, revokeUserTokens, userID, now)
	return tag.RowsAffected(), storeErr("revoking tokens", "token", err)
}

const countLiveAPITokens = `SELECT count(*) FROM auth_tokens
	WHERE user_id = $1 AND kind = 'api' AND revoked_at IS NULL AND expires_at > $2`

func (q *queries) CountLiveAPITokens(ctx context.Context, userID int64, now time.Time) (int, error) {
	var n int
	err := q.db.QueryRow(ctx, countLiveAPITokens, userID, now).Scan(&n)
	return n, storeErr("counting tokens", "token", err)
}

const apiTokens = `SELECT id, user_id, name, created_at, expires_at, last_used_at, revoked_at
	FROM auth_tokens WHERE user_id = $1 AND kind = 'api' AND ($2::bigint IS NULL OR id > $2)
	ORDER BY id LIMIT $3`

func (q *queries) APITokens(ctx context.Context, userID int64, pq tenancy.PageQuery) ([]tenancy.APIToken, error) {
	rows, err := q.db.Query(ctx, apiTokens, userID, after(pq), pq.Limit+1)
	if err != nil {
		return nil, storeErr("listing tokens", "token", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (tenancy.APIToken, error) {
		var t tenancy.APIToken
		err := r.Scan(&t.ID, &t.UserID, &t.Name, &t.CreatedAt, &t.ExpiresAt, &t.LastUsedAt, &t.RevokedAt)
		utc(&t.CreatedAt, &t.ExpiresAt)
		utcp(&t.LastUsedAt, &t.RevokedAt)
		return t, err
	})
	return out, storeErr("listing tokens", "token", err)
}

const insertUserToken = `INSERT INTO user_tokens (user_id, purpose, hash, email, created_at, expires_at)
	VALUES ($1, $2, $3, $4, $5, $6)`

func (q *queries) InsertUserToken(ctx context.Context, t tenancy.UserTokenRow) error {
	_, err := q.db.Exec(ctx, insertUserToken, t.UserID, t.Purpose, t.Hash, t.Email, t.CreatedAt, t.ExpiresAt)
	return storeErr("inserting one-time token", "token", err)
}

// consumeUserToken marks the token used in the statement that finds it, so
// two concurrent uses cannot both succeed.
const consumeUserToken = `UPDATE user_tokens SET used_at = $3
	WHERE hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3
	RETURNING user_id, purpose, hash, email, created_at, expires_at`

func (q *queries) ConsumeUserToken(ctx context.Context, purpose tenancy.TokenPurpose, hash []byte, now time.Time) (tenancy.UserTokenRow, error) {
	var t tenancy.UserTokenRow
	err := q.db.QueryRow(ctx, consumeUserToken, hash, purpose, now).Scan(&t.UserID, &t.Purpose, &t.Hash, &t.Email, &t.CreatedAt, &t.ExpiresAt)
	utc(&t.CreatedAt, &t.ExpiresAt)
	return t, storeErr("consuming one-time token", "token", err)
}

const expireUserTokens = `UPDATE user_tokens SET used_at = $3
	WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL`

func (q *queries) ExpireUserTokens(ctx context.Context, userID int64, purpose tenancy.TokenPurpose, now time.Time) error {
	_, err := q.db.Exec(ctx, expireUserTokens, userID, purpose, now)
	return storeErr("expiring one-time tokens", "token", err)
}
