// Package isolation turns each tenant namespace in Postgres into the
// Kubernetes objects that lock it down: pure builders of the desired
// objects, the reconciler that applies them, suspension and resume,
// kubeconfig issuance and the cluster-wide admission policies.
//
// Kubernetes is always derived from Postgres, never the other way round.
package isolation
