package isolation

import (
	"cmp"
	"maps"
	"regexp"
	"slices"
	"strconv"

	"github.com/tenantplane/tenantplane/tenancy"
)

// Tenant is everything about one tenant namespace that decides its
// Kubernetes objects, as read from Postgres.
type Tenant struct {
	// ID is namespaces.id; Name the Kubernetes namespace name.
	ID   int64
	Name string
	// OrgID owns the namespace; Plan is the org's plan.
	OrgID int64
	Plan  string
	State tenancy.NamespaceState
	// Members are the namespace's members; disabled users get no access.
	Members []Member
	// Hosts are the host names this namespace has claimed for Ingresses
	// and HTTPRoutes, lower case.
	Hosts []string
	// ReleasedHosts were released by the namespace but are still held for
	// it until none of its Ingresses or HTTPRoutes uses them.
	ReleasedHosts []string
}

// Member is one user's membership of a tenant namespace.
type Member struct {
	UserID   int64
	Role     tenancy.Role
	Disabled bool
}

// User is a user as isolation sees it: whether they may have a
// ServiceAccount at all.
type User struct {
	ID       int64
	Disabled bool
	// Namespaces counts the non-deleting namespaces the user is a member of.
	Namespaces int
}

// ServiceAccountName is the name of userID's ServiceAccount in the users
// namespace.
func ServiceAccountName(userID int64) string { return "user-" + strconv.FormatInt(userID, 10) }

// RoleName is the Role a namespace role is bound to, e.g.
// "tenantplane:developer".
func RoleName(r tenancy.Role) string { return "tenantplane:" + string(r) }

// RoleBindingName names the binding of userID to role. The role is part of
// the name because a RoleBinding's roleRef cannot change: a new role is a
// new binding, and the old one is deleted as no longer desired.
func RoleBindingName(userID int64, r tenancy.Role) string {
	return "tenantplane:user-" + strconv.FormatInt(userID, 10) + ":" + string(r)
}

var (
	podSecurityVersion = regexp.MustCompile(`^v1\.[0-9]+$`)
	objectCountKey     = regexp.MustCompile(`^count/[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9.]*[a-z0-9])?)?$`)
)

func sortedKeys[M ~map[K]V, K cmp.Ordered, V any](m M) []K {
	return slices.Sorted(maps.Keys(m))
}
