// Package isolation turns each tenant namespace in Postgres into the
// Kubernetes objects that lock it down, and keeps them so:
//
//   - Desired is a pure function from a Tenant and the Config to the exact
//     objects (namespace, quotas, limit range, network policies, roles,
//     role bindings, per-user ServiceAccounts);
//   - Guards are the cluster-wide ValidatingAdmissionPolicies installed at
//     start for what Pod Security and RBAC cannot say;
//   - the Reconciler applies the desired objects with server-side apply
//     under one field manager, deletes what is no longer desired by label,
//     repairs drift seen by its informers, drains the outbox and resyncs
//     everything periodically;
//   - Suspension suspends and resumes namespaces exactly; Kubeconfigs
//     issues short-lived kubeconfigs and revokes them; Hosts keeps the host
//     names tenants claim.
//
// Kubernetes is always derived from Postgres, never the other way round:
// nothing here writes tenancy state, and the only SQL is in isolationstore.
package isolation
