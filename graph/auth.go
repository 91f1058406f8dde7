package graph

import (
	"context"
	"fmt"
	"strings"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/tenantplane/tenantplane/graph/generated"
	"github.com/tenantplane/tenantplane/graph/model"
	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/tenancy"
	"github.com/tenantplane/tenantplane/tenancy/authz"
)

var errUnauthenticated = errcode.New(errcode.Unauthenticated, "authentication required")

// auth implements @auth, which every field carries: it decides before the
// field resolves, and the resolvers themselves never check permissions.
// See the directive's description in schema/graphql/schema.graphqls.
func (r *Resolver) auth(ctx context.Context, obj any, next graphql.Resolver,
	scope model.AuthScope, action *string, id *string,
) (any, error) {
	switch scope {
	case model.AuthScopePublic, model.AuthScopeParent:
		return next(ctx)
	}
	p, ok := PrincipalFrom(ctx)
	if !ok || p.UserID <= 0 {
		return nil, errUnauthenticated
	}
	if scope == model.AuthScopeUser {
		return next(ctx)
	}
	act := authz.Action("")
	if action != nil {
		act = authz.Action(*action)
	}
	if !act.Valid() {
		return nil, fmt.Errorf("@auth on %s: scope %s without a valid action", fieldName(ctx), scope)
	}
	domains, err := r.domains(ctx, obj, scope, id, p.UserID)
	if err != nil {
		return nil, err
	}
	if domains == nil { // SELF, and the parent is the caller
		return next(ctx)
	}
	if err := r.authz.Check(ctx, p.UserID, act, domains...); err != nil {
		return nil, err
	}
	return next(ctx)
}

func fieldName(ctx context.Context) string {
	if fc := graphql.GetFieldContext(ctx); fc != nil {
		return fc.Object + "." + fc.Field.Name
	}
	return "?"
}

// domains finds the domains a scope checks in. It returns nil, nil for
// SELF when the parent user is the caller.
func (r *Resolver) domains(ctx context.Context, obj any, scope model.AuthScope, idPath *string, caller int64) ([]authz.Domain, error) {
	switch scope {
	case model.AuthScopePlatform:
		return []authz.Domain{authz.Platform}, nil
	case model.AuthScopeSelf:
		u, ok := obj.(*model.User)
		if !ok {
			return nil, fmt.Errorf("@auth on %s: scope SELF outside type User", fieldName(ctx))
		}
		if u.ID == caller {
			return nil, nil
		}
		return []authz.Domain{authz.Platform}, nil
	case model.AuthScopeOrg:
		orgID, err := r.objectID(ctx, obj, idPath, func(o any) (int64, bool) {
			switch o := o.(type) {
			case *model.Org:
				return o.ID, true
			case *model.OrgMember:
				return o.OrgID, true
			}
			return 0, false
		})
		if err != nil {
			return nil, err
		}
		return []authz.Domain{authz.OrgDomain(orgID)}, nil
	case model.AuthScopeNamespace:
		if ns, ok := obj.(*model.Namespace); ok && idPath == nil {
			return namespaceDomains(ns.ID, ns.OrgID), nil
		}
		nsID, err := r.objectID(ctx, obj, idPath, func(o any) (int64, bool) {
			switch o := o.(type) {
			case *model.Member:
				return o.NamespaceID, true
			case *model.Invitation:
				return o.NamespaceID, true
			}
			return 0, false
		})
		if err != nil {
			return nil, err
		}
		return r.namespaceDomains(ctx, nsID)
	case model.AuthScopeInvitation:
		invID, err := r.objectID(ctx, obj, idPath, func(any) (int64, bool) { return 0, false })
		if err != nil {
			return nil, err
		}
		inv, err := r.tenancy.Invitation(ctx, invID)
		if err != nil {
			return nil, notFoundOr(err)
		}
		return r.namespaceDomains(ctx, inv.NamespaceID)
	}
	return nil, fmt.Errorf("@auth on %s: unknown scope %q", fieldName(ctx), scope)
}

func namespaceDomains(nsID, orgID int64) []authz.Domain {
	return []authz.Domain{authz.NamespaceDomain(nsID), authz.OrgDomain(orgID)}
}

// namespaceDomains returns a namespace's domain and its org's. A namespace
// that does not exist is NOT_FOUND, exactly like one the caller may not see.
func (r *Resolver) namespaceDomains(ctx context.Context, nsID int64) ([]authz.Domain, error) {
	ns, err := loadersFrom(ctx).namespace(ctx, nsID)
	if err != nil {
		return nil, notFoundOr(err)
	}
	return namespaceDomains(ns.ID, ns.OrgID), nil
}

// notFoundOr maps a missing object to the NOT_FOUND that Check gives for
// an object the caller may not see, so neither says more than the other.
func notFoundOr(err error) error {
	if errcode.Of(err) == errcode.NotFound {
		return authz.ErrNotFound
	}
	return err
}

// objectID reads the ID the check is about: from the argument at idPath
// ("id", "input.namespaceId"), or else from the parent object.
func (r *Resolver) objectID(ctx context.Context, obj any, idPath *string, fromParent func(any) (int64, bool)) (int64, error) {
	if idPath == nil {
		if id, ok := fromParent(obj); ok {
			return id, nil
		}
		return 0, fmt.Errorf("@auth on %s: no id argument and parent %T has none", fieldName(ctx), obj)
	}
	fc := graphql.GetFieldContext(ctx)
	if fc == nil {
		return 0, fmt.Errorf("@auth: no field context")
	}
	var vars map[string]any
	if graphql.HasOperationContext(ctx) {
		vars = graphql.GetOperationContext(ctx).Variables
	}
	var v any = fc.Field.ArgumentMap(vars)
	for _, part := range strings.Split(*idPath, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return 0, fmt.Errorf("@auth on %s: argument %s not found", fieldName(ctx), *idPath)
		}
		v = m[part]
	}
	id, err := model.UnmarshalID64(v)
	if err != nil {
		return 0, errcode.Invalid(*idPath, "malformed ID")
	}
	return id, nil
}

// limits refuses operations whose selections nest deeper than maxDepth
// and, unless introspection is on, operations that introspect. Introspection
// fields do not count towards the depth.
type limits struct {
	maxDepth      int
	introspection bool
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationContextMutator
} = limits{}

func (l limits) ExtensionName() string                   { return "Limits" }
func (l limits) Validate(graphql.ExecutableSchema) error { return nil }

func (l limits) MutateOperationContext(_ context.Context, oc *graphql.OperationContext) *gqlerror.Error {
	if oc.Operation == nil {
		return nil
	}
	if !l.introspection && introspects(oc.Doc, oc.Operation.SelectionSet, map[string]bool{}) {
		return gqlerror.Errorf("introspection is disabled")
	}
	if depth := selectionDepth(oc.Doc, oc.Operation.SelectionSet, map[string]bool{}); depth > l.maxDepth {
		return gqlerror.Errorf("operation nests %d levels deep; at most %d are allowed", depth, l.maxDepth)
	}
	return nil
}

// introspects reports whether a selection asks for __schema or __type.
func introspects(doc *ast.QueryDocument, set ast.SelectionSet, visiting map[string]bool) bool {
	for _, sel := range set {
		switch s := sel.(type) {
		case *ast.Field:
			if s.Name == "__schema" || s.Name == "__type" || introspects(doc, s.SelectionSet, visiting) {
				return true
			}
		case *ast.InlineFragment:
			if introspects(doc, s.SelectionSet, visiting) {
				return true
			}
		case *ast.FragmentSpread:
			f := doc.Fragments.ForName(s.Name)
			if f == nil || visiting[s.Name] {
				continue
			}
			visiting[s.Name] = true
			found := introspects(doc, f.SelectionSet, visiting)
			delete(visiting, s.Name)
			if found {
				return true
			}
		}
	}
	return false
}

func selectionDepth(doc *ast.QueryDocument, set ast.SelectionSet, visiting map[string]bool) int {
	deepest := 0
	for _, sel := range set {
		var d int
		switch s := sel.(type) {
		case *ast.Field:
			if strings.HasPrefix(s.Name, "__") {
				continue
			}
			d = 1 + selectionDepth(doc, s.SelectionSet, visiting)
		case *ast.InlineFragment:
			d = selectionDepth(doc, s.SelectionSet, visiting)
		case *ast.FragmentSpread:
			f := doc.Fragments.ForName(s.Name)
			if f == nil || visiting[s.Name] {
				continue
			}
			visiting[s.Name] = true
			d = selectionDepth(doc, f.SelectionSet, visiting)
			delete(visiting, s.Name)
		}
		deepest = max(deepest, d)
	}
	return deepest
}

// pageCost is what one page of a list costs in the complexity limit.
func pageCost(child int, first *int) int {
	n := tenancy.DefaultPageSize
	if first != nil && *first > 0 {
		n = min(*first, tenancy.MaxPageSize)
	}
	return 1 + child*n
}

// setComplexity prices every list at its page size times its items.
func setComplexity(c *generated.ComplexityRoot) {
	page := func(child int, first *int, _ *string) int { return pageCost(child, first) }
	c.Namespace.Invitations = page
	c.Namespace.Members = page
	c.Org.Members = page
	c.Org.Namespaces = page
	c.User.Orgs = page
	c.User.Namespaces = page
	c.Query.APITokens = page
	c.Query.Namespaces = page
	c.Query.Orgs = page
	c.Query.AuditLog = func(child int, _ *model.AuditFilter, first *int, _ *string) int { return pageCost(child, first) }
	c.Query.Invitations = func(child int, _ int64, first *int, _ *string) int { return pageCost(child, first) }
	c.Query.Members = func(child int, _ int64, first *int, _ *string) int { return pageCost(child, first) }
	setBillingComplexity(c)
	c.Query.OrgDebtTransitions = func(child int, _ int64, first *int, _ *int64) int { return pageCost(child, first) }
}
