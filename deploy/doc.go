// Package deploy holds the manifests that run tenantplane on Kubernetes:
// the namespace, the server (Deployment, ServiceAccount, RBAC, Service) and
// the node agents (DaemonSet, ServiceAccount, RBAC), applied with
// `kubectl apply -k deploy/`. Manifests embeds them so that tests can prove
// them valid against a real kube-apiserver.
//
// It holds no code that runs in tenantplane and must not import any other
// package of the project.
package deploy
