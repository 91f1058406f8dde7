package graph

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vikstrous/dataloadgen"

	"github.com/tenantplane/tenantplane/graph/model"
	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/tenancy"
)

// loaders batch the lookups of one request: every key asked for while a
// loader waits goes into one query, so the number of queries depends on
// the shape of a query, not on how many objects it returns. Each loader
// is made when first used: most requests use one or two.
type loaders struct {
	svc             *tenancy.Service
	wait            dataloadgen.Option
	lazyUsers       lazy[tenancy.User]
	lazyOrgs        lazy[tenancy.Org]
	lazyNamespaces  lazy[tenancy.Namespace]
	lazyNsByOrg     lazy[[]tenancy.Namespace]
	lazyMembersByNs lazy[[]tenancy.Member]
	lazyOrgsByUser  lazy[[]tenancy.OrgMembership]
	lazyNsByUser    lazy[[]tenancy.NamespaceMembership]

	treeMu sync.RWMutex
	trees  []*orgTree // read by orgTreeOf, consulted before the loaders
}

// orgTree is the tree below one user's orgs, read at once for the fields
// below them.
type orgTree struct {
	userID int64
	tenancy.OrgTree
	index      sync.Once
	orgs       map[int64]tenancy.Org
	namespaces map[int64]tenancy.Namespace
}

// byID indexes the tree's orgs and namespaces, the first time a field
// asks for one by ID.
func (t *orgTree) byID() *orgTree {
	t.index.Do(func() {
		t.orgs = make(map[int64]tenancy.Org, len(t.Orgs))
		for _, m := range t.Orgs {
			t.orgs[m.Org.ID] = m.Org
		}
		t.namespaces = map[int64]tenancy.Namespace{}
		for _, nss := range t.Namespaces {
			for _, n := range nss {
				t.namespaces[n.ID] = n
			}
		}
	})
	return t
}

// fromTrees returns what find finds in the first tree read so far that
// holds it.
func fromTrees[V any](l *loaders, find func(*orgTree) (V, bool)) (V, bool) {
	l.treeMu.RLock()
	defer l.treeMu.RUnlock()
	for _, t := range l.trees {
		if v, ok := find(t); ok {
			return v, true
		}
	}
	var zero V
	return zero, false
}

// lazy is a loader made on first use.
type lazy[V any] struct {
	once sync.Once
	p    atomic.Pointer[dataloadgen.Loader[int64, V]]
}

// made returns the loader, or nil before it is made.
func (z *lazy[V]) made() *dataloadgen.Loader[int64, V] { return z.p.Load() }

func (z *lazy[V]) make(fetch func(context.Context, []int64) (map[int64]V, error), opt dataloadgen.Option) *dataloadgen.Loader[int64, V] {
	z.once.Do(func() { z.p.Store(dataloadgen.NewMappedLoader(fetch, opt)) })
	return z.p.Load()
}

func newLoaders(svc *tenancy.Service, wait time.Duration) *loaders {
	return &loaders{svc: svc, wait: dataloadgen.WithWait(wait)}
}

func (l *loaders) users() *dataloadgen.Loader[int64, tenancy.User] {
	if x := l.lazyUsers.made(); x != nil {
		return x
	}
	return l.lazyUsers.make(l.svc.UsersByIDs, l.wait)
}

func (l *loaders) orgs() *dataloadgen.Loader[int64, tenancy.Org] {
	if x := l.lazyOrgs.made(); x != nil {
		return x
	}
	return l.lazyOrgs.make(l.svc.OrgsByIDs, l.wait)
}

func (l *loaders) namespaces() *dataloadgen.Loader[int64, tenancy.Namespace] {
	if x := l.lazyNamespaces.made(); x != nil {
		return x
	}
	return l.lazyNamespaces.make(l.svc.NamespacesByIDs, l.wait)
}

func (l *loaders) namespacesByOrg() *dataloadgen.Loader[int64, []tenancy.Namespace] {
	if x := l.lazyNsByOrg.made(); x != nil {
		return x
	}
	return l.lazyNsByOrg.make(everyKey(l.svc.NamespacesByOrgIDs), l.wait)
}

func (l *loaders) membersByNs() *dataloadgen.Loader[int64, []tenancy.Member] {
	if x := l.lazyMembersByNs.made(); x != nil {
		return x
	}
	return l.lazyMembersByNs.make(everyKey(l.svc.MembersByNamespaceIDs), l.wait)
}

func (l *loaders) orgsByUser() *dataloadgen.Loader[int64, []tenancy.OrgMembership] {
	if x := l.lazyOrgsByUser.made(); x != nil {
		return x
	}
	return l.lazyOrgsByUser.make(everyKey(l.svc.OrgsByUserIDs), l.wait)
}

func (l *loaders) namespacesByUser() *dataloadgen.Loader[int64, []tenancy.NamespaceMembership] {
	if x := l.lazyNsByUser.made(); x != nil {
		return x
	}
	return l.lazyNsByUser.make(everyKey(l.svc.NamespacesByUserIDs), l.wait)
}

// everyKey makes a one-to-many fetch answer every key, with an empty list
// for keys that have no rows, rather than not found.
func everyKey[V any](fetch func(context.Context, []int64) (map[int64][]V, error)) func(context.Context, []int64) (map[int64][]V, error) {
	return func(ctx context.Context, keys []int64) (map[int64][]V, error) {
		m, err := fetch(ctx, keys)
		if err != nil {
			return nil, err
		}
		if m == nil {
			m = make(map[int64][]V, len(keys))
		}
		for _, k := range keys {
			if _, ok := m[k]; !ok {
				m[k] = nil
			}
		}
		return m, nil
	}
}

// load is Loader.Load with dataloadgen's not found made a domain
// NOT_FOUND.
func load[V any](ctx context.Context, l *dataloadgen.Loader[int64, V], key int64, what string) (V, error) {
	v, err := l.Load(ctx, key)
	if errors.Is(err, dataloadgen.ErrNotFound) {
		return v, errcode.New(errcode.NotFound, what+" not found")
	}
	return v, err
}

// The look-ups below answer from the trees read so far, and else through
// their loader.

func (l *loaders) user(ctx context.Context, id int64) (tenancy.User, error) {
	if u, ok := fromTrees(l, func(t *orgTree) (tenancy.User, bool) { u, ok := t.Users[id]; return u, ok }); ok {
		return u, nil
	}
	return load(ctx, l.users(), id, "user")
}

func (l *loaders) org(ctx context.Context, id int64) (tenancy.Org, error) {
	if o, ok := fromTrees(l, func(t *orgTree) (tenancy.Org, bool) { o, ok := t.byID().orgs[id]; return o, ok }); ok {
		return o, nil
	}
	return load(ctx, l.orgs(), id, "org")
}

func (l *loaders) namespace(ctx context.Context, id int64) (tenancy.Namespace, error) {
	if n, ok := fromTrees(l, func(t *orgTree) (tenancy.Namespace, bool) {
		n, ok := t.byID().namespaces[id]
		return n, ok
	}); ok {
		return n, nil
	}
	return load(ctx, l.namespaces(), id, "namespace")
}

// namespacesOfOrg returns an org's namespaces.
func (l *loaders) namespacesOfOrg(ctx context.Context, orgID int64) ([]tenancy.Namespace, error) {
	if nss, ok := fromTrees(l, func(t *orgTree) ([]tenancy.Namespace, bool) { nss, ok := t.Namespaces[orgID]; return nss, ok }); ok {
		return nss, nil
	}
	return l.namespacesByOrg().Load(ctx, orgID)
}

// membersOf returns a namespace's members.
func (l *loaders) membersOf(ctx context.Context, nsID int64) ([]tenancy.Member, error) {
	if ms, ok := fromTrees(l, func(t *orgTree) ([]tenancy.Member, bool) { ms, ok := t.Members[nsID]; return ms, ok }); ok {
		return ms, nil
	}
	return l.membersByNs().Load(ctx, nsID)
}

// orgsOfUser returns a user's orgs with the user's role.
func (l *loaders) orgsOfUser(ctx context.Context, userID int64) ([]tenancy.OrgMembership, error) {
	if ms, ok := fromTrees(l, func(t *orgTree) ([]tenancy.OrgMembership, bool) { return t.Orgs, t.userID == userID }); ok {
		return ms, nil
	}
	return l.orgsByUser().Load(ctx, userID)
}

// orgsOf returns the orgs of userID with the user's role. A field outside
// any list is resolved once, so nothing would join its batch: it queries
// at once rather than wait for one. Under a list, it goes through the
// loader, whose window collects the keys of the list's items.
func (l *loaders) orgsOf(ctx context.Context, userID int64) ([]tenancy.OrgMembership, error) {
	if underList(ctx) {
		return l.orgsOfUser(ctx, userID)
	}
	if ms, ok := fromTrees(l, func(t *orgTree) ([]tenancy.OrgMembership, bool) { return t.Orgs, t.userID == userID }); ok {
		return ms, nil
	}
	orgs, err := l.svc.OrgsByUserIDs(ctx, []int64{userID})
	if err != nil {
		return nil, err
	}
	l.orgsByUser().Prime(userID, orgs[userID])
	return orgs[userID], nil
}

// orgTreeOf returns the orgs of userID with the user's role, reading in
// the same query what lies below them down to depth, and keeps it for the
// look-ups above: the nested fields, each still authorized by @auth, find
// their lists read and wait for no batch. It is for a field outside any
// list (see orgsOf).
func (l *loaders) orgTreeOf(ctx context.Context, userID int64, depth tenancy.OrgTreeDepth) ([]tenancy.OrgMembership, error) {
	t, err := l.svc.OrgTree(ctx, userID, depth)
	if err != nil {
		return nil, err
	}
	l.treeMu.Lock()
	l.trees = append(l.trees, &orgTree{userID: userID, OrgTree: t})
	l.treeMu.Unlock()
	return t.Orgs, nil
}

// attachUsers loads the users of members in one batch, or finds them in
// a tree read already, and attaches them, so that each member's
// user field need not ask the loader itself. Should one be missing, the
// field asks and reports it.
func (l *loaders) attachUsers(ctx context.Context, members []*model.Member) {
	if len(members) == 0 {
		return
	}
	_, found := fromTrees(l, func(t *orgTree) (bool, bool) {
		for _, m := range members {
			if _, ok := t.Users[m.UserID]; !ok {
				return false, false
			}
		}
		for _, m := range members {
			m.User = presentUser(t.Users[m.UserID])
		}
		return true, true
	})
	if found {
		return
	}
	ids := make([]int64, len(members))
	for i, m := range members {
		ids[i] = m.UserID
	}
	users, err := l.users().LoadAll(ctx, ids)
	if err != nil {
		return
	}
	for i, m := range members {
		m.User = presentUser(users[i])
	}
}

// underList reports whether the field being resolved is inside a list,
// and so resolved once for each item.
func underList(ctx context.Context) bool {
	for fc := graphql.GetFieldContext(ctx); fc != nil; fc = fc.Parent {
		if fc.Index != nil {
			return true
		}
	}
	return false
}

// orgTreeDepth tells how far below the orgs of the connection being
// resolved its selection reaches: into the orgs' namespaces, and into
// their members; 0 when it shows no namespaces.
func orgTreeDepth(ctx context.Context) tenancy.OrgTreeDepth {
	fc := graphql.GetFieldContext(ctx)
	if fc == nil {
		return 0
	}
	la := lookahead{ctx: ctx}
	var depth tenancy.OrgTreeDepth
	members := la.eachNode(fc.Field.Selections, "OrgConnection", "OrgEdge", func(org ast.SelectionSet) bool {
		return la.eachField(org, "Org", func(f *ast.Field) bool {
			if f.Name != "namespaces" {
				return false
			}
			depth = tenancy.TreeNamespaces
			return la.eachNode(f.SelectionSet, "NamespaceConnection", "NamespaceEdge", func(ns ast.SelectionSet) bool {
				return la.eachField(ns, "Namespace", func(f *ast.Field) bool { return f.Name == "members" })
			})
		})
	})
	if members {
		return tenancy.TreeMembers
	}
	return depth
}

// nodesSelect reports whether the selection of the connection being
// resolved asks for field of its items (of type node).
func nodesSelect(ctx context.Context, connection, edge, node, field string) bool {
	fc := graphql.GetFieldContext(ctx)
	if fc == nil {
		return false
	}
	la := lookahead{ctx: ctx}
	return la.eachNode(fc.Field.Selections, connection, edge, func(sel ast.SelectionSet) bool {
		return la.eachField(sel, node, func(f *ast.Field) bool { return f.Name == field })
	})
}

// lookahead walks the selections below the field being resolved. It
// looks the document up, for its fragments, only when it meets a spread.
type lookahead struct {
	ctx context.Context
	doc *ast.QueryDocument
}

func (la *lookahead) fragment(name string) *ast.FragmentDefinition {
	if la.doc == nil {
		if !graphql.HasOperationContext(la.ctx) {
			return nil
		}
		la.doc = graphql.GetOperationContext(la.ctx).Doc
		if la.doc == nil {
			return nil
		}
	}
	return la.doc.Fragments.ForName(name)
}

// eachNode calls fn with the selections made on the items of a
// connection, through nodes and through edges { node }, until fn returns
// true, and reports whether it did.
func (la *lookahead) eachNode(sel ast.SelectionSet, connection, edge string, fn func(ast.SelectionSet) bool) bool {
	return la.eachField(sel, connection, func(f *ast.Field) bool {
		switch f.Name {
		case "nodes":
			return fn(f.SelectionSet)
		case "edges":
			return la.eachField(f.SelectionSet, edge, func(e *ast.Field) bool {
				return e.Name == "node" && fn(e.SelectionSet)
			})
		}
		return false
	})
}

// eachField calls fn with the fields that sel, made on an object of type
// typ, selects, through fragments too, until fn returns true, and reports
// whether it did. It looks ahead: it does not evaluate @skip and
// @include, so it may name a field that will not resolve, which costs a
// prefetch, never a wrong answer.
func (la *lookahead) eachField(sel ast.SelectionSet, typ string, fn func(*ast.Field) bool) bool {
	for _, s := range sel {
		switch s := s.(type) {
		case *ast.Field:
			if fn(s) {
				return true
			}
		case *ast.InlineFragment:
			if (s.TypeCondition == "" || s.TypeCondition == typ) && la.eachField(s.SelectionSet, typ, fn) {
				return true
			}
		case *ast.FragmentSpread:
			if f := la.fragment(s.Name); f != nil && f.TypeCondition == typ && la.eachField(f.SelectionSet, typ, fn) {
				return true
			}
		}
	}
	return false
}

type requestKey struct{}

func withRequest(ctx context.Context, l *loaders) context.Context {
	return context.WithValue(ctx, requestKey{}, l)
}

// loadersFrom returns the request's loaders. Outside a request made
// through the handler (a test calling the schema directly) it panics,
// which the executor reports as an internal error.
func loadersFrom(ctx context.Context) *loaders {
	l, ok := ctx.Value(requestKey{}).(*loaders)
	if !ok {
		panic("graph: no loaders in context")
	}
	return l
}
