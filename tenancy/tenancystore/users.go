package tenancystore

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantplane/tenantplane/tenancy"
)

// userCols are the columns of a users row named u.
const userCols = `u.id, u.email, u.display_name, u.password_hash IS NOT NULL, u.status, u.platform_admin,
	u.email_verified_at, u.disabled_at, u.created_at, u.updated_at`

func scanUser(row pgx.Row, extra ...any) (tenancy.User, error) {
	var u tenancy.User
	dest := append([]any{&u.ID, &u.Email, &u.DisplayName, &u.HasPassword, &u.Status, &u.PlatformAdmin,
		&u.EmailVerifiedAt, &u.DisabledAt, &u.CreatedAt, &u.UpdatedAt}, extra...)
	err := row.Scan(dest...)
	utc(&u.CreatedAt, &u.UpdatedAt)
	utcp(&u.EmailVerifiedAt, &u.DisabledAt)
	return u, err
}

const insertUser = `INSERT INTO users AS u
	(email, display_name, password_hash, status, email_verified_at, created_at, updated_at)
	VALUES ($1, $2, NULLIF($3, ''), $4, $5, $6, $6)
	RETURNING ` + userCols

func (q *queries) InsertUser(ctx context.Context, r tenancy.NewUserRow) (tenancy.User, error) {
	u, err := scanUser(q.db.QueryRow(ctx, insertUser, r.Email, r.DisplayName, r.PasswordHash, r.Status, r.EmailVerifiedAt, r.Now))
	return u, storeErr("inserting user", "user", err)
}

const (
	userByID          = `SELECT ` + userCols + ` FROM users u WHERE u.id = $1`
	userByIDForUpdate = userByID + ` FOR UPDATE`
)

func (q *queries) UserByID(ctx context.Context, id int64) (tenancy.User, error) {
	u, err := scanUser(q.db.QueryRow(ctx, userByID, id))
	return u, storeErr("loading user", "user", err)
}

func (q *queries) UserByIDForUpdate(ctx context.Context, id int64) (tenancy.User, error) {
	u, err := scanUser(q.db.QueryRow(ctx, userByIDForUpdate, id))
	return u, storeErr("locking user", "user", err)
}

const (
	userByEmail          = `SELECT ` + userCols + `, coalesce(u.password_hash, '') FROM users u WHERE u.email = $1`
	userByEmailForUpdate = userByEmail + ` FOR UPDATE`
)

func (q *queries) UserByEmail(ctx context.Context, email string) (tenancy.User, string, error) {
	var hash string
	u, err := scanUser(q.db.QueryRow(ctx, userByEmail, email), &hash)
	return u, hash, storeErr("loading user by email", "user", err)
}

func (q *queries) UserByEmailForUpdate(ctx context.Context, email string) (tenancy.User, string, error) {
	var hash string
	u, err := scanUser(q.db.QueryRow(ctx, userByEmailForUpdate, email), &hash)
	return u, hash, storeErr("locking user by email", "user", err)
}

const usersByIDs = `SELECT ` + userCols + ` FROM users u WHERE u.id = ANY($1) ORDER BY u.id`

func (q *queries) UsersByIDs(ctx context.Context, ids []int64) ([]tenancy.User, error) {
	sql, arg := byKeys(ids, userByID, usersByIDs)
	rows, err := q.db.Query(ctx, sql, arg)
	if err != nil {
		return nil, storeErr("loading users", "user", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (tenancy.User, error) { return scanUser(r) })
	return out, storeErr("loading users", "user", err)
}

const setUserStatus = `UPDATE users u SET status = $2, email_verified_at = $3, disabled_at = $4, updated_at = $5
	WHERE u.id = $1 RETURNING ` + userCols

func (q *queries) SetUserStatus(ctx context.Context, id int64, status tenancy.UserStatus, verifiedAt, disabledAt *time.Time, now time.Time) (tenancy.User, error) {
	u, err := scanUser(q.db.QueryRow(ctx, setUserStatus, id, status, verifiedAt, disabledAt, now))
	return u, storeErr("setting user status", "user", err)
}

const setPasswordHash = `UPDATE users SET password_hash = NULLIF($2, ''), updated_at = $3 WHERE id = $1`

func (q *queries) SetPasswordHash(ctx context.Context, id int64, hash string, now time.Time) error {
	tag, err := q.db.Exec(ctx, setPasswordHash, id, hash, now)
	if err == nil && tag.RowsAffected() == 0 {
		err = pgx.ErrNoRows
	}
	return storeErr("setting password", "user", err)
}

const setPlatformAdmin = `UPDATE users u SET platform_admin = $2, updated_at = $3 WHERE u.id = $1 RETURNING ` + userCols

func (q *queries) SetPlatformAdmin(ctx context.Context, id int64, admin bool, now time.Time) (tenancy.User, error) {
	u, err := scanUser(q.db.QueryRow(ctx, setPlatformAdmin, id, admin, now))
	return u, storeErr("setting platform admin", "user", err)
}

const oidcUserID = `SELECT user_id FROM oidc_identities WHERE issuer = $1 AND subject = $2`

func (q *queries) OIDCUserID(ctx context.Context, issuer, subject string) (int64, error) {
	var id int64
	err := q.db.QueryRow(ctx, oidcUserID, issuer, subject).Scan(&id)
	return id, storeErr("loading oidc identity", "identity", err)
}

const linkOIDC = `INSERT INTO oidc_identities (issuer, subject, user_id, email, created_at, last_login_at)
	VALUES ($1, $2, $3, $4, $5, $5)`

func (q *queries) LinkOIDC(ctx context.Context, issuer, subject string, userID int64, email string, now time.Time) error {
	_, err := q.db.Exec(ctx, linkOIDC, issuer, subject, userID, email, now)
	return storeErr("linking oidc identity", "identity", err)
}

const touchOIDC = `UPDATE oidc_identities SET last_login_at = $3 WHERE issuer = $1 AND subject = $2`

func (q *queries) TouchOIDC(ctx context.Context, issuer, subject string, now time.Time) error {
	_, err := q.db.Exec(ctx, touchOIDC, issuer, subject, now)
	return storeErr("touching oidc identity", "identity", err)
}
