// Package testenv starts the real peers that tests talk to: a throwaway
// PostgreSQL cluster with a database per test, a Kubernetes control plane
// (etcd, kube-apiserver, kube-controller-manager, and on request
// kube-scheduler and kwok, and metrics-server behind the aggregation layer
// serving metrics.k8s.io), and stripe-mock.
//
// Under CI=true a peer that cannot be started fails the test; it never skips.
package testenv
