// Package collectors meters what tenants use: CPU, memory and GPU from pods,
// storage from volume claims, and network bytes pushed by the node agents,
// into integer per-minute samples in the usage store.
//
// Collectors never import billing: the usage store is the boundary.
package collectors
