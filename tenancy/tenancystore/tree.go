package tenancystore

import (
	"bytes"
	"context"

	"github.com/tenantplane/tenantplane/tenancy"
)

// The tree below a user's orgs, one row per leaf: an org without
// namespaces, a namespace (without members, or with each member and the
// member's user). Columns of a missing level are NULL.
// The user is one parameter, not an array, for the reason byKeys gives.
const (
	orgTreeFrom = ` FROM org_members om JOIN orgs o ON o.id = om.org_id
	LEFT JOIN namespaces n ON n.org_id = o.id`

	orgTreeNamespaces = `SELECT ` + orgCols + `, om.role, ` + nsCols + orgTreeFrom + `
	WHERE om.user_id = $1 ORDER BY o.id, n.id`

	orgTreeMembers = `SELECT ` + orgCols + `, om.role, ` + nsCols + `,
	nm.namespace_id, nm.user_id, nm.role, nm.created_at, ` + userCols + orgTreeFrom + `
	LEFT JOIN namespace_members nm ON nm.namespace_id = n.id
	LEFT JOIN users u ON u.id = nm.user_id
	WHERE om.user_id = $1 ORDER BY o.id, n.id, nm.user_id`
)

// The columns of a tree row where each level starts, its key first.
const (
	treeOrg       = 0  // the 7 org columns, then om.role
	treeNamespace = 8  // the 7 namespace columns
	treeMember    = 15 // the 4 member columns, then the 10 user columns
)

// OrgTree groups the rows as they come, ordered by org, namespace and
// member: each org and namespace is decoded on its first row, and the
// columns that repeat it on the next rows are skipped (pgx leaves a nil
// destination alone), as are those of a missing level, which are NULL and
// would not scan into plain Go values.
func (q *queries) OrgTree(ctx context.Context, userID int64, depth tenancy.OrgTreeDepth) (tenancy.OrgTree, error) {
	const op = "loading org tree"
	withMembers := depth >= tenancy.TreeMembers
	sql := orgTreeNamespaces
	if withMembers {
		sql = orgTreeMembers
	}
	rows, err := q.db.Query(ctx, sql, userID)
	if err != nil {
		return tenancy.OrgTree{}, storeErr(op, "org", err)
	}
	defer rows.Close()

	t := tenancy.OrgTree{
		Namespaces: map[int64][]tenancy.Namespace{},
		Members:    map[int64][]tenancy.Member{},
		Users:      map[int64]tenancy.User{},
	}
	// One value holds every destination, so that the pointers pgx is
	// given cost one allocation rather than one each.
	var v struct {
		om  tenancy.OrgMembership
		ns  tenancy.Namespace
		m   tenancy.Member
		u   tenancy.User
		all [treeMember + 14]any
		dst [treeMember + 14]any
		// The roles, state and status scan as plain strings: pgx plans a
		// named string type through reflection, on every query.
		orgRole, nsState, role, status string
	}
	om, ns, m, u := &v.om, &v.ns, &v.m, &v.u
	om.UserID = userID
	v.all = [...]any{
		&om.Org.ID, &om.Org.Name, &om.Org.DisplayName, &om.Org.Personal, &om.Org.Plan, &om.Org.CreatedAt, &om.Org.UpdatedAt,
		&v.orgRole, &ns.ID, &ns.OrgID, &ns.Name, &v.nsState, &ns.MemberLimit, &ns.CreatedAt, &ns.UpdatedAt,
		&m.NamespaceID, &m.UserID, &v.role, &m.CreatedAt,
		&u.ID, &u.Email, &u.DisplayName, &u.HasPassword, &v.status, &u.PlatformAdmin,
		&u.EmailVerifiedAt, &u.DisabledAt, &u.CreatedAt, &u.UpdatedAt,
	}
	all := v.all[:treeMember]
	if withMembers {
		all = v.all[:]
	}
	dest := v.dst[:len(all)]
	// The keys of the previous row, to tell whether a level repeats.
	var prevOrg, prevNs []byte
	for i := 0; rows.Next(); i++ {
		raw := rows.RawValues()
		newOrg := i == 0 || !bytes.Equal(raw[treeOrg], prevOrg)
		newNs := newOrg || !bytes.Equal(raw[treeNamespace], prevNs)
		prevOrg = append(prevOrg[:0], raw[treeOrg]...)
		prevNs = append(prevNs[:0], raw[treeNamespace]...)
		decodeNs := raw[treeNamespace] != nil && newNs
		hasMember := withMembers && raw[treeNamespace] != nil && raw[treeMember] != nil
		if !newOrg && !decodeNs && !hasMember {
			continue
		}
		copy(dest, all)
		if !newOrg {
			clear(dest[treeOrg:treeNamespace])
		}
		if !decodeNs {
			clear(dest[treeNamespace:treeMember])
		}
		if !hasMember {
			clear(dest[treeMember:])
		}
		if err := rows.Scan(dest...); err != nil {
			return tenancy.OrgTree{}, storeErr(op, "org", err)
		}
		if newOrg {
			om.Role = tenancy.OrgRole(v.orgRole)
			utc(&om.Org.CreatedAt, &om.Org.UpdatedAt)
			t.Orgs = append(t.Orgs, *om)
			t.Namespaces[om.Org.ID] = []tenancy.Namespace{}
		}
		if decodeNs {
			ns.State = tenancy.NamespaceState(v.nsState)
			utc(&ns.CreatedAt, &ns.UpdatedAt)
			t.Namespaces[ns.OrgID] = append(t.Namespaces[ns.OrgID], *ns)
			if withMembers {
				t.Members[ns.ID] = []tenancy.Member{}
			}
		}
		if hasMember {
			m.Role, u.Status = tenancy.Role(v.role), tenancy.UserStatus(v.status)
			utc(&m.CreatedAt, &u.CreatedAt, &u.UpdatedAt)
			utcp(&u.EmailVerifiedAt, &u.DisabledAt)
			t.Members[m.NamespaceID] = append(t.Members[m.NamespaceID], *m)
			t.Users[u.ID] = *u
		}
	}
	if err := rows.Err(); err != nil {
		return tenancy.OrgTree{}, storeErr(op, "org", err)
	}
	return t, nil
}
