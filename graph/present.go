package graph

import (
	"cmp"
	"context"
	"encoding/json"
	"slices"
	"strings"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/tenantplane/tenantplane/graph/model"
	"github.com/tenantplane/tenantplane/tenancy"
)

// The presenters turn domain values into the schema's types.

// enum returns the value of all that is s in upper case, without
// allocating a string; a value the schema does not know is upper-cased.
func enum[T ~string](s string, all []T) T {
	for _, v := range all {
		if strings.EqualFold(string(v), s) {
			return v
		}
	}
	return T(strings.ToUpper(s))
}

func presentUser(u tenancy.User) *model.User {
	return &model.User{
		ID:              u.ID,
		Email:           u.Email,
		DisplayName:     u.DisplayName,
		Status:          enum(string(u.Status), model.AllUserStatus),
		PlatformAdmin:   u.PlatformAdmin,
		EmailVerifiedAt: u.EmailVerifiedAt,
		CreatedAt:       u.CreatedAt,
	}
}

func presentOrg(o tenancy.Org) *model.Org {
	return &model.Org{
		ID: o.ID, Name: o.Name, DisplayName: o.DisplayName,
		Personal: o.Personal, Plan: o.Plan, CreatedAt: o.CreatedAt,
	}
}

func presentOrgRole(r tenancy.OrgRole) model.OrgRole {
	return enum(string(r), model.AllOrgRole)
}

func presentRole(r tenancy.Role) model.Role { return enum(string(r), model.AllRole) }

func presentOrgMember(m tenancy.OrgMember) *model.OrgMember {
	return &model.OrgMember{OrgID: m.OrgID, UserID: m.UserID, Role: presentOrgRole(m.Role), CreatedAt: m.CreatedAt}
}

func presentNamespace(n tenancy.Namespace) *model.Namespace {
	return &model.Namespace{
		ID: n.ID, Name: n.Name, State: enum(string(n.State), model.AllNamespaceState),
		MemberLimit: n.MemberLimit, CreatedAt: n.CreatedAt, OrgID: n.OrgID,
	}
}

func presentMember(m tenancy.Member) *model.Member {
	return &model.Member{NamespaceID: m.NamespaceID, UserID: m.UserID, Role: presentRole(m.Role), CreatedAt: m.CreatedAt}
}

func presentInvitation(i tenancy.Invitation, status tenancy.InvitationStatus) *model.Invitation {
	return &model.Invitation{
		ID: i.ID, Email: i.Email, Role: presentRole(i.Role),
		Status:    enum(string(status), model.AllInvitationStatus),
		CreatedAt: i.CreatedAt, ExpiresAt: i.ExpiresAt,
		NamespaceID: i.NamespaceID, InvitedByID: i.InvitedBy,
	}
}

func presentAPIToken(t tenancy.APIToken) *model.APIToken {
	return &model.APIToken{
		ID: t.ID, Name: t.Name, CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt,
		LastUsedAt: t.LastUsedAt, RevokedAt: t.RevokedAt,
	}
}

func presentAuditEntry(e tenancy.AuditEntry) *model.AuditEntry {
	out := &model.AuditEntry{
		ID: e.ID, At: e.At, Actor: e.Actor, Action: e.Action, Target: e.Target,
		RequestID: e.RequestID, Detail: "{}",
	}
	if e.IP.IsValid() {
		ip := e.IP.String()
		out.IP = &ip
	}
	if len(e.Detail) > 0 && json.Valid(e.Detail) {
		out.Detail = string(e.Detail)
	}
	return out
}

func presentToken(t tenancy.NewToken) *model.IssuedToken {
	return &model.IssuedToken{ID: t.ID, Token: t.Secret, ExpiresAt: t.ExpiresAt}
}

// The parsers turn the schema's enums into domain values.

func parseRole(r model.Role) tenancy.Role { return tenancy.Role(strings.ToLower(string(r))) }

func parseOrgRole(r model.OrgRole) tenancy.OrgRole {
	return tenancy.OrgRole(strings.ToLower(string(r)))
}

func pageArgs(first *int, after *string) tenancy.PageArgs {
	var p tenancy.PageArgs
	if first != nil {
		p.First = *first
		if p.First == 0 {
			p.First = -1 // zero items asked for: out of range, not the default
		}
	}
	if after != nil {
		p.After = *after
	}
	return p
}

// page is one page of a list, cut by pageOf or read by a store: its
// items, whether more follow, and each item's cursor, which is encoded
// only when the selection shows it.
type page[T any] struct {
	items   []T
	hasNext bool
	cursor  func(i int) string
}

// storePage is a page a store read, with the cursors it made.
func storePage[T any](c tenancy.Connection[T]) page[tenancy.Edge[T]] {
	return page[tenancy.Edge[T]]{
		items: c.Edges, hasNext: c.PageInfo.HasNextPage,
		cursor: func(i int) string { return c.Edges[i].Cursor },
	}
}

// pageOf cuts one page out of a whole list held in memory (a dataloader's
// result), sorted by key, with the same cursors the stores use.
func pageOf[T any](items []T, key func(T) int64, first *int, after *string) (page[T], error) {
	q, err := pageArgs(first, after).Query()
	if err != nil {
		return page[T]{}, err
	}
	byKey := func(a, b T) int { return cmp.Compare(key(a), key(b)) }
	sorted := items // the loaders' lists come sorted; a copy only if not
	if !slices.IsSortedFunc(items, byKey) {
		sorted = slices.SortedFunc(slices.Values(items), byKey)
	}
	start := 0
	if q.HasAfter {
		start, _ = slices.BinarySearchFunc(sorted, q.After.ID+1, func(t T, id int64) int { return cmp.Compare(key(t), id) })
	}
	p := page[T]{items: sorted[start:]}
	if len(p.items) > q.Limit {
		p.items, p.hasNext = p.items[:q.Limit], true
	}
	p.cursor = func(i int) string { return tenancy.Cursor{ID: key(p.items[i])}.Encode() }
	return p, nil
}

// connectionShape tells which parts of the connection being resolved its
// selection shows, through fragments too; all of them outside a field.
func connectionShape(ctx context.Context) (edges, pageInfo bool) {
	fc := graphql.GetFieldContext(ctx)
	if fc == nil || fc.Field.Field == nil || fc.Field.Definition == nil {
		return true, true
	}
	la := lookahead{ctx: ctx}
	la.eachField(fc.Field.Selections, fc.Field.Definition.Type.Name(), func(f *ast.Field) bool {
		switch f.Name {
		case "edges":
			edges = true
		case "pageInfo":
			pageInfo = true
		}
		return edges && pageInfo
	})
	return edges, pageInfo
}

// connection presents a page as the parts of a generated connection type
// that the selection shows: the nodes always (the resolvers hand them
// things), the edges with their cursors and the page info only when
// asked for; the parts not asked for are never marshalled.
func connection[T, N, E any](ctx context.Context, p page[T], present func(T) N, edge func(N, string) E) (nodes []N, edges []E, info *model.PageInfo) {
	nodes = make([]N, len(p.items))
	for i, it := range p.items {
		nodes[i] = present(it)
	}
	withEdges, withInfo := connectionShape(ctx)
	if withEdges {
		edges = make([]E, len(nodes))
		for i, n := range nodes {
			edges[i] = edge(n, p.cursor(i))
		}
	}
	if withInfo {
		info = &model.PageInfo{HasNextPage: p.hasNext}
		if n := len(nodes); n > 0 {
			start, end := p.cursor(0), p.cursor(n-1)
			info.StartCursor, info.EndCursor = &start, &end
		}
	}
	return nodes, edges, info
}

func orgConnection[T any](ctx context.Context, p page[T], present func(T) *model.Org) *model.OrgConnection {
	nodes, edges, info := connection(ctx, p, present, func(n *model.Org, c string) *model.OrgEdge {
		return &model.OrgEdge{Node: n, Cursor: c}
	})
	return &model.OrgConnection{Nodes: nodes, Edges: edges, PageInfo: info}
}

func namespaceConnection[T any](ctx context.Context, p page[T], present func(T) *model.Namespace) *model.NamespaceConnection {
	nodes, edges, info := connection(ctx, p, present, func(n *model.Namespace, c string) *model.NamespaceEdge {
		return &model.NamespaceEdge{Node: n, Cursor: c}
	})
	return &model.NamespaceConnection{Nodes: nodes, Edges: edges, PageInfo: info}
}

func memberConnection[T any](ctx context.Context, p page[T], present func(T) *model.Member) *model.MemberConnection {
	nodes, edges, info := connection(ctx, p, present, func(n *model.Member, c string) *model.MemberEdge {
		return &model.MemberEdge{Node: n, Cursor: c}
	})
	return &model.MemberConnection{Nodes: nodes, Edges: edges, PageInfo: info}
}

func orgMemberConnection(ctx context.Context, c tenancy.Connection[tenancy.OrgMember]) *model.OrgMemberConnection {
	nodes, edges, info := connection(ctx, storePage(c), func(e tenancy.Edge[tenancy.OrgMember]) *model.OrgMember {
		return presentOrgMember(e.Node)
	}, func(n *model.OrgMember, c string) *model.OrgMemberEdge {
		return &model.OrgMemberEdge{Node: n, Cursor: c}
	})
	return &model.OrgMemberConnection{Nodes: nodes, Edges: edges, PageInfo: info}
}

func invitationConnection(ctx context.Context, c tenancy.Connection[tenancy.Invitation], status func(tenancy.Invitation) tenancy.InvitationStatus) *model.InvitationConnection {
	nodes, edges, info := connection(ctx, storePage(c), func(e tenancy.Edge[tenancy.Invitation]) *model.Invitation {
		return presentInvitation(e.Node, status(e.Node))
	}, func(n *model.Invitation, c string) *model.InvitationEdge {
		return &model.InvitationEdge{Node: n, Cursor: c}
	})
	return &model.InvitationConnection{Nodes: nodes, Edges: edges, PageInfo: info}
}

func apiTokenConnection(ctx context.Context, c tenancy.Connection[tenancy.APIToken]) *model.APITokenConnection {
	nodes, edges, info := connection(ctx, storePage(c), func(e tenancy.Edge[tenancy.APIToken]) *model.APIToken {
		return presentAPIToken(e.Node)
	}, func(n *model.APIToken, c string) *model.APITokenEdge { return &model.APITokenEdge{Node: n, Cursor: c} })
	return &model.APITokenConnection{Nodes: nodes, Edges: edges, PageInfo: info}
}

func auditConnection(ctx context.Context, c tenancy.Connection[tenancy.AuditEntry]) *model.AuditEntryConnection {
	nodes, edges, info := connection(ctx, storePage(c), func(e tenancy.Edge[tenancy.AuditEntry]) *model.AuditEntry {
		return presentAuditEntry(e.Node)
	}, func(n *model.AuditEntry, c string) *model.AuditEntryEdge {
		return &model.AuditEntryEdge{Node: n, Cursor: c}
	})
	return &model.AuditEntryConnection{Nodes: nodes, Edges: edges, PageInfo: info}
}

// callerID returns the signed-in user; @auth has made sure there is one.
func callerID(p tenancy.Principal, ok bool) (int64, error) {
	if !ok || p.UserID <= 0 {
		return 0, errUnauthenticated
	}
	return p.UserID, nil
}
