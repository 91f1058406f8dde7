package tenancystore

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantplane/tenantplane/tenancy"
)

const invCols = `id, namespace_id, email, role, coalesce(invited_by, 0), created_at, expires_at,
	accepted_at, accepted_by, revoked_at`

func scanInvitation(row pgx.Row) (tenancy.Invitation, error) {
	var i tenancy.Invitation
	err := row.Scan(&i.ID, &i.NamespaceID, &i.Email, &i.Role, &i.InvitedBy, &i.CreatedAt, &i.ExpiresAt,
		&i.AcceptedAt, &i.AcceptedBy, &i.RevokedAt)
	utc(&i.CreatedAt, &i.ExpiresAt)
	utcp(&i.AcceptedAt, &i.RevokedAt)
	return i, err
}

const insertInvitation = `INSERT INTO invitations (namespace_id, email, role, hash, invited_by, created_at, expires_at)
	VALUES ($1, $2, $3, $4, NULLIF($5, 0), $6, $7) RETURNING ` + invCols

func (q *queries) InsertInvitation(ctx context.Context, inv tenancy.Invitation, hash []byte) (tenancy.Invitation, error) {
	i, err := scanInvitation(q.db.QueryRow(ctx, insertInvitation, inv.NamespaceID, inv.Email, inv.Role, hash,
		inv.InvitedBy, inv.CreatedAt, inv.ExpiresAt))
	return i, storeErr("inserting invitation", "invitation", err)
}

const (
	invitationByID          = `SELECT ` + invCols + ` FROM invitations WHERE id = $1`
	invitationByIDForUpdate = invitationByID + ` FOR UPDATE`
	invitationByHash        = `SELECT ` + invCols + ` FROM invitations WHERE hash = $1`
)

func (q *queries) InvitationByID(ctx context.Context, id int64) (tenancy.Invitation, error) {
	i, err := scanInvitation(q.db.QueryRow(ctx, invitationByID, id))
	return i, storeErr("loading invitation", "invitation", err)
}

func (q *queries) InvitationByIDForUpdate(ctx context.Context, id int64) (tenancy.Invitation, error) {
	i, err := scanInvitation(q.db.QueryRow(ctx, invitationByIDForUpdate, id))
	return i, storeErr("locking invitation", "invitation", err)
}

func (q *queries) InvitationByHash(ctx context.Context, hash []byte) (tenancy.Invitation, error) {
	i, err := scanInvitation(q.db.QueryRow(ctx, invitationByHash, hash))
	return i, storeErr("loading invitation", "invitation", err)
}

const countPendingInvitations = `SELECT count(*) FROM invitations
	WHERE namespace_id = $1 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $2`

func (q *queries) CountPendingInvitations(ctx context.Context, nsID int64, now time.Time) (int, error) {
	var n int
	err := q.db.QueryRow(ctx, countPendingInvitations, nsID, now).Scan(&n)
	return n, storeErr("counting invitations", "invitation", err)
}

const pendingInvitationFor = `SELECT EXISTS (SELECT 1 FROM invitations
	WHERE namespace_id = $1 AND email = $2 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $3)`

func (q *queries) PendingInvitationFor(ctx context.Context, nsID int64, email string, now time.Time) (bool, error) {
	var ok bool
	err := q.db.QueryRow(ctx, pendingInvitationFor, nsID, email, now).Scan(&ok)
	return ok, storeErr("checking invitation", "invitation", err)
}

const acceptInvitation = `UPDATE invitations SET accepted_at = $3, accepted_by = $2
	WHERE id = $1 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $3 RETURNING ` + invCols

func (q *queries) AcceptInvitation(ctx context.Context, id, userID int64, now time.Time) (tenancy.Invitation, error) {
	i, err := scanInvitation(q.db.QueryRow(ctx, acceptInvitation, id, userID, now))
	return i, storeErr("accepting invitation", "invitation", err)
}

const revokeInvitation = `UPDATE invitations SET revoked_at = $2
	WHERE id = $1 AND accepted_at IS NULL AND revoked_at IS NULL RETURNING ` + invCols

func (q *queries) RevokeInvitation(ctx context.Context, id int64, now time.Time) (tenancy.Invitation, error) {
	i, err := scanInvitation(q.db.QueryRow(ctx, revokeInvitation, id, now))
	return i, storeErr("revoking invitation", "invitation", err)
}

const invitations = `SELECT ` + invCols + ` FROM invitations
	WHERE namespace_id = $1 AND ($2::bigint IS NULL OR id > $2) ORDER BY id LIMIT $3`

func (q *queries) Invitations(ctx context.Context, nsID int64, pq tenancy.PageQuery) ([]tenancy.Invitation, error) {
	rows, err := q.db.Query(ctx, invitations, nsID, after(pq), pq.Limit+1)
	if err != nil {
		return nil, storeErr("listing invitations", "invitation", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (tenancy.Invitation, error) { return scanInvitation(r) })
	return out, storeErr("listing invitations", "invitation", err)
}
