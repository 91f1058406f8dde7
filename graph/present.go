package graph

import (
	"cmp"
	"encoding/json"
	"slices"
	"strings"

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

// pageOf cuts one page out of a whole list held in memory (a dataloader's
// result), sorted by key, with the same cursors the stores use.
func pageOf[T any](items []T, key func(T) int64, first *int, after *string) (tenancy.Connection[T], error) {
	q, err := pageArgs(first, after).Query()
	if err != nil {
		return tenancy.Connection[T]{}, err
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
	end := min(len(sorted), start+q.Limit+1)
	return tenancy.NewConnection(q, sorted[start:end], func(t T) tenancy.Cursor { return tenancy.Cursor{ID: key(t)} }), nil
}

func pageInfo(p tenancy.PageInfo) *model.PageInfo {
	info := &model.PageInfo{HasNextPage: p.HasNextPage}
	if p.StartCursor != "" {
		info.StartCursor, info.EndCursor = &p.StartCursor, &p.EndCursor
	}
	return info
}

// connection converts a page of domain values with present, building
// edges, nodes and the page info the generated connection types hold.
func connection[T, N any](c tenancy.Connection[T], present func(T) N) (edges []N, cursors []string, info *model.PageInfo) {
	edges = make([]N, len(c.Edges))
	cursors = make([]string, len(c.Edges))
	for i, e := range c.Edges {
		edges[i], cursors[i] = present(e.Node), e.Cursor
	}
	return edges, cursors, pageInfo(c.PageInfo)
}

func orgConnection[T any](c tenancy.Connection[T], present func(T) *model.Org) *model.OrgConnection {
	nodes, cursors, info := connection(c, present)
	out := &model.OrgConnection{Nodes: nodes, PageInfo: info, Edges: make([]*model.OrgEdge, len(nodes))}
	for i := range nodes {
		out.Edges[i] = &model.OrgEdge{Node: nodes[i], Cursor: cursors[i]}
	}
	return out
}

func namespaceConnection[T any](c tenancy.Connection[T], present func(T) *model.Namespace) *model.NamespaceConnection {
	nodes, cursors, info := connection(c, present)
	out := &model.NamespaceConnection{Nodes: nodes, PageInfo: info, Edges: make([]*model.NamespaceEdge, len(nodes))}
	for i := range nodes {
		out.Edges[i] = &model.NamespaceEdge{Node: nodes[i], Cursor: cursors[i]}
	}
	return out
}

func memberConnection(c tenancy.Connection[tenancy.Member]) *model.MemberConnection {
	nodes, cursors, info := connection(c, presentMember)
	out := &model.MemberConnection{Nodes: nodes, PageInfo: info, Edges: make([]*model.MemberEdge, len(nodes))}
	for i := range nodes {
		out.Edges[i] = &model.MemberEdge{Node: nodes[i], Cursor: cursors[i]}
	}
	return out
}

func orgMemberConnection(c tenancy.Connection[tenancy.OrgMember]) *model.OrgMemberConnection {
	nodes, cursors, info := connection(c, presentOrgMember)
	out := &model.OrgMemberConnection{Nodes: nodes, PageInfo: info, Edges: make([]*model.OrgMemberEdge, len(nodes))}
	for i := range nodes {
		out.Edges[i] = &model.OrgMemberEdge{Node: nodes[i], Cursor: cursors[i]}
	}
	return out
}

func invitationConnection(c tenancy.Connection[tenancy.Invitation], status func(tenancy.Invitation) tenancy.InvitationStatus) *model.InvitationConnection {
	nodes, cursors, info := connection(c, func(i tenancy.Invitation) *model.Invitation { return presentInvitation(i, status(i)) })
	out := &model.InvitationConnection{Nodes: nodes, PageInfo: info, Edges: make([]*model.InvitationEdge, len(nodes))}
	for i := range nodes {
		out.Edges[i] = &model.InvitationEdge{Node: nodes[i], Cursor: cursors[i]}
	}
	return out
}

func apiTokenConnection(c tenancy.Connection[tenancy.APIToken]) *model.APITokenConnection {
	nodes, cursors, info := connection(c, presentAPIToken)
	out := &model.APITokenConnection{Nodes: nodes, PageInfo: info, Edges: make([]*model.APITokenEdge, len(nodes))}
	for i := range nodes {
		out.Edges[i] = &model.APITokenEdge{Node: nodes[i], Cursor: cursors[i]}
	}
	return out
}

func auditConnection(c tenancy.Connection[tenancy.AuditEntry]) *model.AuditEntryConnection {
	nodes, cursors, info := connection(c, presentAuditEntry)
	out := &model.AuditEntryConnection{Nodes: nodes, PageInfo: info, Edges: make([]*model.AuditEntryEdge, len(nodes))}
	for i := range nodes {
		out.Edges[i] = &model.AuditEntryEdge{Node: nodes[i], Cursor: cursors[i]}
	}
	return out
}

// callerID returns the signed-in user; @auth has made sure there is one.
func callerID(p tenancy.Principal, ok bool) (int64, error) {
	if !ok || p.UserID <= 0 {
		return 0, errUnauthenticated
	}
	return p.UserID, nil
}
