package isolation

import (
	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/tenantplane/tenantplane/tenancy"
)

var (
	readVerbs  = []string{"get", "list", "watch"}
	writeVerbs = []string{"create", "update", "patch", "delete", "deletecollection"}
)

// readable are what every member may read. Secrets are not among them:
// viewers see no credentials.
var readable = []rbacv1.PolicyRule{
	{APIGroups: []string{""}, Resources: []string{
		"pods", "pods/log", "pods/status", "services", "endpoints", "configmaps",
		"persistentvolumeclaims", "events", "resourcequotas", "limitranges",
		"replicationcontrollers", "serviceaccounts",
	}, Verbs: readVerbs},
	{APIGroups: []string{"apps"}, Resources: []string{"deployments", "statefulsets", "replicasets", "controllerrevisions"}, Verbs: readVerbs},
	{APIGroups: []string{"batch"}, Resources: []string{"jobs", "cronjobs"}, Verbs: readVerbs},
	{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"ingresses", "networkpolicies"}, Verbs: readVerbs},
	{APIGroups: []string{"gateway.networking.k8s.io"}, Resources: []string{"httproutes"}, Verbs: readVerbs},
	{APIGroups: []string{"autoscaling"}, Resources: []string{"horizontalpodautoscalers"}, Verbs: readVerbs},
	{APIGroups: []string{"policy"}, Resources: []string{"poddisruptionbudgets"}, Verbs: readVerbs},
	{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: readVerbs},
	{APIGroups: []string{"events.k8s.io"}, Resources: []string{"events"}, Verbs: readVerbs},
	{APIGroups: []string{"rbac.authorization.k8s.io"}, Resources: []string{"roles", "rolebindings"}, Verbs: readVerbs},
	{APIGroups: []string{"metrics.k8s.io"}, Resources: []string{"pods"}, Verbs: readVerbs},
}

// writable are what developers change: their workloads and what those
// need. Never quotas, limit ranges, network policies or RBAC, which the
// platform owns, and never DaemonSets, which would spread over every node.
var writable = []rbacv1.PolicyRule{
	{APIGroups: []string{""}, Resources: []string{"pods", "services", "configmaps", "secrets", "persistentvolumeclaims"}, Verbs: writeVerbs},
	{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: readVerbs},
	{APIGroups: []string{""}, Resources: []string{"pods/exec", "pods/attach", "pods/portforward"}, Verbs: []string{"get", "create"}},
	{APIGroups: []string{""}, Resources: []string{"pods/eviction"}, Verbs: []string{"create"}},
	{APIGroups: []string{"apps"}, Resources: []string{"deployments", "statefulsets", "replicasets"}, Verbs: writeVerbs},
	{APIGroups: []string{"apps"}, Resources: []string{"deployments/scale", "statefulsets/scale", "replicasets/scale"}, Verbs: []string{"get", "update", "patch"}},
	{APIGroups: []string{"apps"}, Resources: []string{"deployments/rollback"}, Verbs: []string{"create"}},
	{APIGroups: []string{"batch"}, Resources: []string{"jobs", "cronjobs"}, Verbs: writeVerbs},
	{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"ingresses"}, Verbs: writeVerbs},
	{APIGroups: []string{"gateway.networking.k8s.io"}, Resources: []string{"httproutes"}, Verbs: writeVerbs},
	{APIGroups: []string{"autoscaling"}, Resources: []string{"horizontalpodautoscalers"}, Verbs: writeVerbs},
	{APIGroups: []string{"policy"}, Resources: []string{"poddisruptionbudgets"}, Verbs: writeVerbs},
}

// administrable are what admins and owners change beyond developers:
// ServiceAccounts of their own namespace for their workloads. They cannot
// bind those to anything, as no tenant role may write RBAC.
var administrable = []rbacv1.PolicyRule{
	{APIGroups: []string{""}, Resources: []string{"serviceaccounts"}, Verbs: writeVerbs},
}

// RoleRules are the rules of the Role bound to members with role r. Owners
// and admins hold the same Kubernetes rights; they differ only in what the
// platform lets them do to memberships.
func RoleRules(r tenancy.Role) []rbacv1.PolicyRule {
	sets := [][]rbacv1.PolicyRule{readable}
	if r.AtLeast(tenancy.RoleDeveloper) {
		sets = append(sets, writable)
	}
	if r.AtLeast(tenancy.RoleAdmin) {
		sets = append(sets, administrable)
	}
	var rules []rbacv1.PolicyRule
	for _, set := range sets {
		for _, pr := range set {
			rules = append(rules, *pr.DeepCopy())
		}
	}
	return rules
}
