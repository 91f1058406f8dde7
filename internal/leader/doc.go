// Package leader runs work on exactly one replica at a time, chosen by a
// Kubernetes Lease through client-go leader election. The work gets a
// context that ends when leadership is lost, and is started again on
// whichever replica leads next.
//
// It knows nothing of what the work is.
package leader
