package collectors

import rbacv1 "k8s.io/api/rbac/v1"

// PlatformRules are the cluster-wide permissions the collectors need of
// Kubernetes: watching pods and persistent volume claims (the compute and
// storage meters), reading the pods' usage from the metrics API, and
// reviewing the node agents' tokens (the ingest). deploy/server.yaml grants
// them with isolation.PlatformRules, and a test holds the two equal.
func PlatformRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods", "persistentvolumeclaims"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"metrics.k8s.io"}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}},
		{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
	}
}
