package graph

import (
	"context"
	"errors"
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
// the shape of a query, not on how many objects it returns.
type loaders struct {
	svc              *tenancy.Service
	users            *dataloadgen.Loader[int64, tenancy.User]
	orgs             *dataloadgen.Loader[int64, tenancy.Org]
	namespaces       *dataloadgen.Loader[int64, tenancy.Namespace]
	namespacesByOrg  *dataloadgen.Loader[int64, []tenancy.Namespace]
	membersByNs      *dataloadgen.Loader[int64, []tenancy.Member]
	orgsByUser       *dataloadgen.Loader[int64, []tenancy.OrgMembership]
	namespacesByUser *dataloadgen.Loader[int64, []tenancy.NamespaceMembership]
}

func newLoaders(svc *tenancy.Service, wait time.Duration) *loaders {
	opt := dataloadgen.WithWait(wait)
	return &loaders{
		svc:              svc,
		users:            dataloadgen.NewMappedLoader(svc.UsersByIDs, opt),
		orgs:             dataloadgen.NewMappedLoader(svc.OrgsByIDs, opt),
		namespaces:       dataloadgen.NewMappedLoader(svc.NamespacesByIDs, opt),
		namespacesByOrg:  dataloadgen.NewMappedLoader(everyKey(svc.NamespacesByOrgIDs), opt),
		membersByNs:      dataloadgen.NewMappedLoader(everyKey(svc.MembersByNamespaceIDs), opt),
		orgsByUser:       dataloadgen.NewMappedLoader(everyKey(svc.OrgsByUserIDs), opt),
		namespacesByUser: dataloadgen.NewMappedLoader(everyKey(svc.NamespacesByUserIDs), opt),
	}
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

func (l *loaders) user(ctx context.Context, id int64) (tenancy.User, error) {
	return load(ctx, l.users, id, "user")
}

func (l *loaders) org(ctx context.Context, id int64) (tenancy.Org, error) {
	return load(ctx, l.orgs, id, "org")
}

func (l *loaders) namespace(ctx context.Context, id int64) (tenancy.Namespace, error) {
	return load(ctx, l.namespaces, id, "namespace")
}

// orgsOf returns the orgs of userID with the user's role. A field outside
// any list is resolved once, so nothing would join its batch: it queries
// at once rather than wait for one. Under a list, it goes through the
// loader, whose window collects the keys of the list's items.
func (l *loaders) orgsOf(ctx context.Context, userID int64) ([]tenancy.OrgMembership, error) {
	if underList(ctx) {
		return l.orgsByUser.Load(ctx, userID)
	}
	orgs, err := l.svc.OrgsByUserIDs(ctx, []int64{userID})
	if err != nil {
		return nil, err
	}
	l.orgsByUser.Prime(userID, orgs[userID])
	return orgs[userID], nil
}

// orgTreeOf returns the orgs of userID with the user's role, reading in
// the same query what lies below them down to depth, and primes the
// loaders with it: the nested fields, each still authorized by @auth,
// find their lists loaded and wait for no batch. It is for a field
// outside any list (see orgsOf).
func (l *loaders) orgTreeOf(ctx context.Context, userID int64, depth tenancy.OrgTreeDepth) ([]tenancy.OrgMembership, error) {
	t, err := l.svc.OrgTree(ctx, userID, depth)
	if err != nil {
		return nil, err
	}
	orgs := t.Orgs
	for _, m := range orgs {
		l.orgs.Prime(m.Org.ID, m.Org)
	}
	for orgID, nss := range t.Namespaces {
		l.namespacesByOrg.Prime(orgID, nss)
		for _, n := range nss {
			l.namespaces.Prime(n.ID, n)
		}
	}
	for nsID, ms := range t.Members {
		l.membersByNs.Prime(nsID, ms)
	}
	for id, u := range t.Users {
		l.users.Prime(id, u)
	}
	l.orgsByUser.Prime(userID, orgs)
	return orgs, nil
}

// attachUsers loads the users of members in one batch, from the loader's
// cache when a tree primed it, and attaches them, so that each member's
// user field need not ask the loader itself. Should one be missing, the
// field asks and reports it.
func (l *loaders) attachUsers(ctx context.Context, members []*model.Member) {
	if len(members) == 0 {
		return
	}
	ids := make([]int64, len(members))
	for i, m := range members {
		ids[i] = m.UserID
	}
	users, err := l.users.LoadAll(ctx, ids)
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
	if fc == nil || !graphql.HasOperationContext(ctx) {
		return 0
	}
	oc := graphql.GetOperationContext(ctx)
	var depth tenancy.OrgTreeDepth
	for _, org := range connectionNodes(oc, fc.Field.Selections, "OrgConnection", "OrgEdge") {
		for _, f := range graphql.CollectFields(oc, org, []string{"Org"}) {
			if f.Name != "namespaces" {
				continue
			}
			depth = tenancy.TreeNamespaces
			for _, ns := range connectionNodes(oc, f.Selections, "NamespaceConnection", "NamespaceEdge") {
				for _, nf := range graphql.CollectFields(oc, ns, []string{"Namespace"}) {
					if nf.Name == "members" {
						return tenancy.TreeMembers
					}
				}
			}
		}
	}
	return depth
}

// nodesSelect reports whether the selection of the connection being
// resolved asks for field of its items (of type node).
func nodesSelect(ctx context.Context, connection, edge, node, field string) bool {
	fc := graphql.GetFieldContext(ctx)
	if fc == nil || !graphql.HasOperationContext(ctx) {
		return false
	}
	oc := graphql.GetOperationContext(ctx)
	for _, sel := range connectionNodes(oc, fc.Field.Selections, connection, edge) {
		for _, f := range graphql.CollectFields(oc, sel, []string{node}) {
			if f.Name == field {
				return true
			}
		}
	}
	return false
}

// connectionNodes returns the selections made on the items of a
// connection, through nodes and through edges { node }.
func connectionNodes(oc *graphql.OperationContext, sel ast.SelectionSet, connection, edge string) []ast.SelectionSet {
	var out []ast.SelectionSet
	for _, f := range graphql.CollectFields(oc, sel, []string{connection}) {
		switch f.Name {
		case "nodes":
			out = append(out, f.Selections)
		case "edges":
			for _, e := range graphql.CollectFields(oc, f.Selections, []string{edge}) {
				if e.Name == "node" {
					out = append(out, e.Selections)
				}
			}
		}
	}
	return out
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
