package tenancystore

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantplane/tenantplane/tenancy"
)

const orgCols = `o.id, o.name, o.display_name, o.personal, o.plan, o.created_at, o.updated_at`

func orgDest(o *tenancy.Org) []any {
	return []any{&o.ID, &o.Name, &o.DisplayName, &o.Personal, &o.Plan, &o.CreatedAt, &o.UpdatedAt}
}

func scanOrg(row pgx.Row) (tenancy.Org, error) {
	var o tenancy.Org
	err := row.Scan(orgDest(&o)...)
	utc(&o.CreatedAt, &o.UpdatedAt)
	return o, err
}

func collectOrgs(rows pgx.Rows, err error, op string) ([]tenancy.Org, error) {
	if err != nil {
		return nil, storeErr(op, "org", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (tenancy.Org, error) { return scanOrg(r) })
	return out, storeErr(op, "org", err)
}

const insertOrg = `INSERT INTO orgs AS o (name, display_name, personal, created_at, updated_at)
	VALUES ($1, $2, $3, $4, $4) ON CONFLICT (name) DO NOTHING RETURNING ` + orgCols

func (q *queries) InsertOrg(ctx context.Context, name, displayName string, personal bool, now time.Time) (tenancy.Org, bool, error) {
	o, err := scanOrg(q.db.QueryRow(ctx, insertOrg, name, displayName, personal, now))
	if errors.Is(err, pgx.ErrNoRows) {
		return tenancy.Org{}, false, nil
	}
	return o, err == nil, storeErr("inserting org", "org", err)
}

const (
	orgByID          = `SELECT ` + orgCols + ` FROM orgs o WHERE o.id = $1`
	orgByIDForUpdate = orgByID + ` FOR UPDATE`
)

func (q *queries) OrgByID(ctx context.Context, id int64) (tenancy.Org, error) {
	o, err := scanOrg(q.db.QueryRow(ctx, orgByID, id))
	return o, storeErr("loading org", "org", err)
}

func (q *queries) OrgByIDForUpdate(ctx context.Context, id int64) (tenancy.Org, error) {
	o, err := scanOrg(q.db.QueryRow(ctx, orgByIDForUpdate, id))
	return o, storeErr("locking org", "org", err)
}

const updateOrg = `UPDATE orgs o SET name = $2, display_name = $3, updated_at = $4 WHERE o.id = $1 RETURNING ` + orgCols

func (q *queries) UpdateOrg(ctx context.Context, id int64, name, displayName string, now time.Time) (tenancy.Org, error) {
	o, err := scanOrg(q.db.QueryRow(ctx, updateOrg, id, name, displayName, now))
	return o, storeErr("updating org", "org", err)
}

const orgsByIDs = `SELECT ` + orgCols + ` FROM orgs o WHERE o.id = ANY($1) ORDER BY o.id`

func (q *queries) OrgsByIDs(ctx context.Context, ids []int64) ([]tenancy.Org, error) {
	sql, arg := byKeys(ids, orgByID, orgsByIDs)
	rows, err := q.db.Query(ctx, sql, arg)
	return collectOrgs(rows, err, "loading orgs")
}

const countOwnedOrgs = `SELECT count(*) FROM org_members WHERE user_id = $1 AND role = 'owner'`

func (q *queries) CountOwnedOrgs(ctx context.Context, userID int64) (int, error) {
	var n int
	err := q.db.QueryRow(ctx, countOwnedOrgs, userID).Scan(&n)
	return n, storeErr("counting orgs", "org", err)
}

const orgMemberCols = `org_id, user_id, role, created_at`

func scanOrgMember(row pgx.Row) (tenancy.OrgMember, error) {
	var m tenancy.OrgMember
	err := row.Scan(&m.OrgID, &m.UserID, &m.Role, &m.CreatedAt)
	utc(&m.CreatedAt)
	return m, err
}

const orgMember = `SELECT ` + orgMemberCols + ` FROM org_members WHERE org_id = $1 AND user_id = $2`

func (q *queries) OrgMember(ctx context.Context, orgID, userID int64) (tenancy.OrgMember, error) {
	m, err := scanOrgMember(q.db.QueryRow(ctx, orgMember, orgID, userID))
	return m, storeErr("loading org member", "org member", err)
}

const insertOrgMember = `INSERT INTO org_members (org_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)`

func (q *queries) InsertOrgMember(ctx context.Context, m tenancy.OrgMember) error {
	_, err := q.db.Exec(ctx, insertOrgMember, m.OrgID, m.UserID, m.Role, m.CreatedAt)
	return storeErr("inserting org member", "org member", err)
}

const setOrgMemberRole = `UPDATE org_members SET role = $3 WHERE org_id = $1 AND user_id = $2 RETURNING ` + orgMemberCols

func (q *queries) SetOrgMemberRole(ctx context.Context, orgID, userID int64, role tenancy.OrgRole) (tenancy.OrgMember, error) {
	m, err := scanOrgMember(q.db.QueryRow(ctx, setOrgMemberRole, orgID, userID, role))
	return m, storeErr("setting org role", "org member", err)
}

const deleteOrgMember = `DELETE FROM org_members WHERE org_id = $1 AND user_id = $2`

func (q *queries) DeleteOrgMember(ctx context.Context, orgID, userID int64) error {
	tag, err := q.db.Exec(ctx, deleteOrgMember, orgID, userID)
	if err == nil && tag.RowsAffected() == 0 {
		err = pgx.ErrNoRows
	}
	return storeErr("removing org member", "org member", err)
}

const countOrgOwners = `SELECT count(*) FROM org_members WHERE org_id = $1 AND role = 'owner'`

func (q *queries) CountOrgOwners(ctx context.Context, orgID int64) (int, error) {
	var n int
	err := q.db.QueryRow(ctx, countOrgOwners, orgID).Scan(&n)
	return n, storeErr("counting org owners", "org", err)
}

const orgMembers = `SELECT ` + orgMemberCols + ` FROM org_members
	WHERE org_id = $1 AND ($2::bigint IS NULL OR user_id > $2) ORDER BY user_id LIMIT $3`

func (q *queries) OrgMembers(ctx context.Context, orgID int64, pq tenancy.PageQuery) ([]tenancy.OrgMember, error) {
	rows, err := q.db.Query(ctx, orgMembers, orgID, after(pq), pq.Limit+1)
	if err != nil {
		return nil, storeErr("listing org members", "org member", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (tenancy.OrgMember, error) { return scanOrgMember(r) })
	return out, storeErr("listing org members", "org member", err)
}

func collectOrgMemberships(rows pgx.Rows, err error, op string) ([]tenancy.OrgMembership, error) {
	if err != nil {
		return nil, storeErr(op, "org", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (tenancy.OrgMembership, error) {
		var m tenancy.OrgMembership
		err := r.Scan(append(orgDest(&m.Org), &m.UserID, &m.Role)...)
		utc(&m.Org.CreatedAt, &m.Org.UpdatedAt)
		return m, err
	})
	return out, storeErr(op, "org", err)
}

const userOrgs = `SELECT ` + orgCols + `, m.user_id, m.role
	FROM org_members m JOIN orgs o ON o.id = m.org_id
	WHERE m.user_id = $1 AND ($2::bigint IS NULL OR m.org_id > $2) ORDER BY m.org_id LIMIT $3`

func (q *queries) UserOrgs(ctx context.Context, userID int64, pq tenancy.PageQuery) ([]tenancy.OrgMembership, error) {
	rows, err := q.db.Query(ctx, userOrgs, userID, after(pq), pq.Limit+1)
	return collectOrgMemberships(rows, err, "listing user orgs")
}

const (
	orgsByUserID = `SELECT ` + orgCols + `, m.user_id, m.role
	FROM org_members m JOIN orgs o ON o.id = m.org_id
	WHERE m.user_id = $1 ORDER BY m.org_id`
	orgsByUserIDs = `SELECT ` + orgCols + `, m.user_id, m.role
	FROM org_members m JOIN orgs o ON o.id = m.org_id
	WHERE m.user_id = ANY($1) ORDER BY m.user_id, m.org_id`
)

func (q *queries) OrgsByUserIDs(ctx context.Context, userIDs []int64) ([]tenancy.OrgMembership, error) {
	sql, arg := byKeys(userIDs, orgsByUserID, orgsByUserIDs)
	rows, err := q.db.Query(ctx, sql, arg)
	return collectOrgMemberships(rows, err, "loading orgs of users")
}
