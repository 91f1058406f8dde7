package graph

import (
	"context"
	"errors"
	"time"

	"github.com/vikstrous/dataloadgen"

	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/tenancy"
)

// loaders batch the lookups of one request: every key asked for while a
// loader waits goes into one query, so the number of queries depends on
// the shape of a query, not on how many objects it returns.
type loaders struct {
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
