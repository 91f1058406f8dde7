package tenancystore

import (
	"context"

	"github.com/tenantplane/tenantplane/tenancy"
)

// The trees below users' orgs, one row per leaf: an org without
// namespaces, a namespace (without members, or with each member and the
// member's user). Columns of a missing level are NULL.
const (
	orgTreeCols = orgCols + `, om.user_id, om.role`
	orgTreeFrom = ` FROM org_members om JOIN orgs o ON o.id = om.org_id
	LEFT JOIN namespaces n ON n.org_id = o.id`

	orgTreeNamespaces = `SELECT ` + orgTreeCols + `, ` + nsCols + orgTreeFrom + `
	WHERE om.user_id = ANY($1) ORDER BY om.user_id, o.id, n.id`

	orgTreeMembers = `SELECT ` + orgTreeCols + `, ` + nsCols + `,
	nm.namespace_id, nm.user_id, nm.role, nm.created_at, ` + userCols + orgTreeFrom + `
	LEFT JOIN namespace_members nm ON nm.namespace_id = n.id
	LEFT JOIN users u ON u.id = nm.user_id
	WHERE om.user_id = ANY($1) ORDER BY om.user_id, o.id, n.id, nm.user_id`
)

// Where each level starts among the columns of a tree row.
const (
	treeNamespaceCol = 9  // after the 7 org columns, om.user_id and om.role
	treeMemberCol    = 16 // after the 7 namespace columns
)

func (q *queries) OrgTrees(ctx context.Context, userIDs []int64, depth tenancy.OrgTreeDepth) ([]tenancy.OrgTreeRow, error) {
	const op = "loading org trees"
	sql := orgTreeNamespaces
	if depth >= tenancy.TreeMembers {
		sql = orgTreeMembers
	}
	rows, err := q.db.Query(ctx, sql, userIDs)
	if err != nil {
		return nil, storeErr(op, "org", err)
	}
	defer rows.Close()
	var (
		out  []tenancy.OrgTreeRow
		r    tenancy.OrgTreeRow
		dest []any
	)
	dest = append(dest, orgDest(&r.Org.Org)...)
	dest = append(dest, &r.Org.UserID, &r.Org.Role)
	dest = append(dest, nsDest(&r.Namespace)...)
	if depth >= tenancy.TreeMembers {
		dest = append(dest, &r.Member.NamespaceID, &r.Member.UserID, &r.Member.Role, &r.Member.CreatedAt)
		u := &r.MemberUser
		dest = append(dest, &u.ID, &u.Email, &u.DisplayName, &u.HasPassword, &u.Status, &u.PlatformAdmin,
			&u.EmailVerifiedAt, &u.DisabledAt, &u.CreatedAt, &u.UpdatedAt)
	}
	// A level whose key column is NULL is left out of the scan (pgx skips
	// nil destinations): its columns are all NULL and would not scan into
	// the plain Go types.
	row := make([]any, len(dest))
	for rows.Next() {
		r = tenancy.OrgTreeRow{}
		raw := rows.RawValues()
		copy(row, dest)
		r.HasNamespace = raw[treeNamespaceCol] != nil
		if !r.HasNamespace {
			clear(row[treeNamespaceCol:])
		}
		if depth >= tenancy.TreeMembers {
			r.HasMember = raw[treeMemberCol] != nil
			if !r.HasMember {
				clear(row[treeMemberCol:])
			}
		}
		if err := rows.Scan(row...); err != nil {
			return nil, storeErr(op, "org", err)
		}
		utc(&r.Org.Org.CreatedAt, &r.Org.Org.UpdatedAt, &r.Namespace.CreatedAt, &r.Namespace.UpdatedAt,
			&r.Member.CreatedAt, &r.MemberUser.CreatedAt, &r.MemberUser.UpdatedAt)
		utcp(&r.MemberUser.EmailVerifiedAt, &r.MemberUser.DisabledAt)
		out = append(out, r)
	}
	return out, storeErr(op, "org", rows.Err())
}
