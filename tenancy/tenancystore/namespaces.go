package tenancystore

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantplane/tenantplane/tenancy"
)

const nsCols = `n.id, n.org_id, n.name, n.state, n.member_limit, n.created_at, n.updated_at`

func nsDest(n *tenancy.Namespace) []any {
	return []any{&n.ID, &n.OrgID, &n.Name, &n.State, &n.MemberLimit, &n.CreatedAt, &n.UpdatedAt}
}

func scanNamespace(row pgx.Row) (tenancy.Namespace, error) {
	var n tenancy.Namespace
	err := row.Scan(nsDest(&n)...)
	utc(&n.CreatedAt, &n.UpdatedAt)
	return n, err
}

func collectNamespaces(rows pgx.Rows, err error, op string) ([]tenancy.Namespace, error) {
	if err != nil {
		return nil, storeErr(op, "namespace", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (tenancy.Namespace, error) { return scanNamespace(r) })
	return out, storeErr(op, "namespace", err)
}

const insertNamespace = `INSERT INTO namespaces AS n (org_id, name, state, created_at, updated_at)
	VALUES ($1, $2, 'active', $3, $3) ON CONFLICT (name) DO NOTHING RETURNING ` + nsCols

func (q *queries) InsertNamespace(ctx context.Context, orgID int64, name string, now time.Time) (tenancy.Namespace, bool, error) {
	n, err := scanNamespace(q.db.QueryRow(ctx, insertNamespace, orgID, name, now))
	if errors.Is(err, pgx.ErrNoRows) {
		return tenancy.Namespace{}, false, nil
	}
	return n, err == nil, storeErr("inserting namespace", "namespace", err)
}

const (
	nsByID          = `SELECT ` + nsCols + ` FROM namespaces n WHERE n.id = $1`
	nsByIDForUpdate = nsByID + ` FOR UPDATE`
	nsByName        = `SELECT ` + nsCols + ` FROM namespaces n WHERE n.name = $1`
)

func (q *queries) NamespaceByID(ctx context.Context, id int64) (tenancy.Namespace, error) {
	n, err := scanNamespace(q.db.QueryRow(ctx, nsByID, id))
	return n, storeErr("loading namespace", "namespace", err)
}

func (q *queries) NamespaceByIDForUpdate(ctx context.Context, id int64) (tenancy.Namespace, error) {
	n, err := scanNamespace(q.db.QueryRow(ctx, nsByIDForUpdate, id))
	return n, storeErr("locking namespace", "namespace", err)
}

func (q *queries) NamespaceByName(ctx context.Context, name string) (tenancy.Namespace, error) {
	n, err := scanNamespace(q.db.QueryRow(ctx, nsByName, name))
	return n, storeErr("loading namespace by name", "namespace", err)
}

const setNamespaceState = `UPDATE namespaces n SET state = $2, updated_at = $3,
	suspended_by = CASE WHEN $2 = 'suspended' THEN nullif($4, '') END WHERE n.id = $1 RETURNING ` + nsCols

func (q *queries) SetNamespaceState(ctx context.Context, id int64, state tenancy.NamespaceState, by string, now time.Time) (tenancy.Namespace, error) {
	n, err := scanNamespace(q.db.QueryRow(ctx, setNamespaceState, id, state, now, by))
	return n, storeErr("setting namespace state", "namespace", err)
}

// takeSuspension hands a suspended namespace's suspension to $2, and
// returns who held it (” for unknown); no row when it is not suspended
// or $2 holds it already.
const takeSuspension = `WITH old AS (SELECT suspended_by FROM namespaces WHERE id = $1 FOR UPDATE)
	UPDATE namespaces n SET suspended_by = $2, updated_at = $3 FROM old
	WHERE n.id = $1 AND n.state = 'suspended' AND old.suspended_by IS DISTINCT FROM $2
	RETURNING coalesce(old.suspended_by, '')`

func (q *queries) TakeSuspension(ctx context.Context, id int64, by string, now time.Time) (string, bool, error) {
	var prev string
	err := q.db.QueryRow(ctx, takeSuspension, id, by, now).Scan(&prev)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	return prev, err == nil, storeErr("taking over a suspension", "namespace", err)
}

const countOrgNamespaces = `SELECT count(*) FROM namespaces WHERE org_id = $1 AND state <> 'deleting'`

func (q *queries) CountOrgNamespaces(ctx context.Context, orgID int64) (int, error) {
	var n int
	err := q.db.QueryRow(ctx, countOrgNamespaces, orgID).Scan(&n)
	return n, storeErr("counting namespaces", "namespace", err)
}

const orgNamespaces = `SELECT ` + nsCols + ` FROM namespaces n
	WHERE n.org_id = $1 AND ($2::bigint IS NULL OR n.id > $2) ORDER BY n.id LIMIT $3`

func (q *queries) OrgNamespaces(ctx context.Context, orgID int64, pq tenancy.PageQuery) ([]tenancy.Namespace, error) {
	rows, err := q.db.Query(ctx, orgNamespaces, orgID, after(pq), pq.Limit+1)
	return collectNamespaces(rows, err, "listing namespaces")
}

const nsByIDs = `SELECT ` + nsCols + ` FROM namespaces n WHERE n.id = ANY($1) ORDER BY n.id`

func (q *queries) NamespacesByIDs(ctx context.Context, ids []int64) ([]tenancy.Namespace, error) {
	sql, arg := byKeys(ids, nsByID, nsByIDs)
	rows, err := q.db.Query(ctx, sql, arg)
	return collectNamespaces(rows, err, "loading namespaces")
}

const (
	nsByOrgID  = `SELECT ` + nsCols + ` FROM namespaces n WHERE n.org_id = $1 ORDER BY n.id`
	nsByOrgIDs = `SELECT ` + nsCols + ` FROM namespaces n WHERE n.org_id = ANY($1) ORDER BY n.org_id, n.id`
)

func (q *queries) NamespacesByOrgIDs(ctx context.Context, orgIDs []int64) ([]tenancy.Namespace, error) {
	sql, arg := byKeys(orgIDs, nsByOrgID, nsByOrgIDs)
	rows, err := q.db.Query(ctx, sql, arg)
	return collectNamespaces(rows, err, "loading namespaces of orgs")
}

const memberCols = `namespace_id, user_id, role, created_at`

func scanMember(row pgx.Row) (tenancy.Member, error) {
	var m tenancy.Member
	err := row.Scan(&m.NamespaceID, &m.UserID, &m.Role, &m.CreatedAt)
	utc(&m.CreatedAt)
	return m, err
}

func collectMembers(rows pgx.Rows, err error, op string) ([]tenancy.Member, error) {
	if err != nil {
		return nil, storeErr(op, "member", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (tenancy.Member, error) { return scanMember(r) })
	return out, storeErr(op, "member", err)
}

const member = `SELECT ` + memberCols + ` FROM namespace_members WHERE namespace_id = $1 AND user_id = $2`

func (q *queries) Member(ctx context.Context, nsID, userID int64) (tenancy.Member, error) {
	m, err := scanMember(q.db.QueryRow(ctx, member, nsID, userID))
	return m, storeErr("loading member", "member", err)
}

const insertMember = `INSERT INTO namespace_members (namespace_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)`

func (q *queries) InsertMember(ctx context.Context, m tenancy.Member) error {
	_, err := q.db.Exec(ctx, insertMember, m.NamespaceID, m.UserID, m.Role, m.CreatedAt)
	return storeErr("inserting member", "member", err)
}

const setMemberRole = `UPDATE namespace_members SET role = $3 WHERE namespace_id = $1 AND user_id = $2 RETURNING ` + memberCols

func (q *queries) SetMemberRole(ctx context.Context, nsID, userID int64, role tenancy.Role) (tenancy.Member, error) {
	m, err := scanMember(q.db.QueryRow(ctx, setMemberRole, nsID, userID, role))
	return m, storeErr("setting member role", "member", err)
}

const deleteMember = `DELETE FROM namespace_members WHERE namespace_id = $1 AND user_id = $2`

func (q *queries) DeleteMember(ctx context.Context, nsID, userID int64) error {
	tag, err := q.db.Exec(ctx, deleteMember, nsID, userID)
	if err == nil && tag.RowsAffected() == 0 {
		err = pgx.ErrNoRows
	}
	return storeErr("removing member", "member", err)
}

const countOwners = `SELECT count(*) FROM namespace_members WHERE namespace_id = $1 AND role = 'owner'`

func (q *queries) CountOwners(ctx context.Context, nsID int64) (int, error) {
	var n int
	err := q.db.QueryRow(ctx, countOwners, nsID).Scan(&n)
	return n, storeErr("counting owners", "namespace", err)
}

const countMembers = `SELECT count(*) FROM namespace_members WHERE namespace_id = $1`

func (q *queries) CountMembers(ctx context.Context, nsID int64) (int, error) {
	var n int
	err := q.db.QueryRow(ctx, countMembers, nsID).Scan(&n)
	return n, storeErr("counting members", "namespace", err)
}

const memberWithEmail = `SELECT EXISTS (SELECT 1 FROM namespace_members m JOIN users u ON u.id = m.user_id
	WHERE m.namespace_id = $1 AND u.email = $2)`

func (q *queries) MemberWithEmail(ctx context.Context, nsID int64, email string) (bool, error) {
	var ok bool
	err := q.db.QueryRow(ctx, memberWithEmail, nsID, email).Scan(&ok)
	return ok, storeErr("checking member", "member", err)
}

const members = `SELECT ` + memberCols + ` FROM namespace_members
	WHERE namespace_id = $1 AND ($2::bigint IS NULL OR user_id > $2) ORDER BY user_id LIMIT $3`

func (q *queries) Members(ctx context.Context, nsID int64, pq tenancy.PageQuery) ([]tenancy.Member, error) {
	rows, err := q.db.Query(ctx, members, nsID, after(pq), pq.Limit+1)
	return collectMembers(rows, err, "listing members")
}

const (
	membersByNamespaceID = `SELECT ` + memberCols + ` FROM namespace_members
	WHERE namespace_id = $1 ORDER BY user_id`
	membersByNamespaceIDs = `SELECT ` + memberCols + ` FROM namespace_members
	WHERE namespace_id = ANY($1) ORDER BY namespace_id, user_id`
)

func (q *queries) MembersByNamespaceIDs(ctx context.Context, nsIDs []int64) ([]tenancy.Member, error) {
	sql, arg := byKeys(nsIDs, membersByNamespaceID, membersByNamespaceIDs)
	rows, err := q.db.Query(ctx, sql, arg)
	return collectMembers(rows, err, "loading members of namespaces")
}

func collectNamespaceMemberships(rows pgx.Rows, err error, op string) ([]tenancy.NamespaceMembership, error) {
	if err != nil {
		return nil, storeErr(op, "namespace", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (tenancy.NamespaceMembership, error) {
		var m tenancy.NamespaceMembership
		err := r.Scan(append(nsDest(&m.Namespace), &m.UserID, &m.Role)...)
		utc(&m.Namespace.CreatedAt, &m.Namespace.UpdatedAt)
		return m, err
	})
	return out, storeErr(op, "namespace", err)
}

const userNamespaces = `SELECT ` + nsCols + `, m.user_id, m.role
	FROM namespace_members m JOIN namespaces n ON n.id = m.namespace_id
	WHERE m.user_id = $1 AND ($2::bigint IS NULL OR m.namespace_id > $2) ORDER BY m.namespace_id LIMIT $3`

func (q *queries) UserNamespaces(ctx context.Context, userID int64, pq tenancy.PageQuery) ([]tenancy.NamespaceMembership, error) {
	rows, err := q.db.Query(ctx, userNamespaces, userID, after(pq), pq.Limit+1)
	return collectNamespaceMemberships(rows, err, "listing user namespaces")
}

const (
	namespacesByUserID = `SELECT ` + nsCols + `, m.user_id, m.role
	FROM namespace_members m JOIN namespaces n ON n.id = m.namespace_id
	WHERE m.user_id = $1 ORDER BY m.namespace_id`
	namespacesByUserIDs = `SELECT ` + nsCols + `, m.user_id, m.role
	FROM namespace_members m JOIN namespaces n ON n.id = m.namespace_id
	WHERE m.user_id = ANY($1) ORDER BY m.user_id, m.namespace_id`
)

func (q *queries) NamespacesByUserIDs(ctx context.Context, userIDs []int64) ([]tenancy.NamespaceMembership, error) {
	sql, arg := byKeys(userIDs, namespacesByUserID, namespacesByUserIDs)
	rows, err := q.db.Query(ctx, sql, arg)
	return collectNamespaceMemberships(rows, err, "loading namespaces of users")
}
