// Package collectors meters what tenants use: CPU, memory and extended
// resources (GPUs) from pods, storage from bound volume claims, and
// quantities pushed by other meters (the network agents) through
// POST /v1/usage, into integer per-minute samples in the usage store.
//
// Collector watches pods and claims with client-go informers on every
// replica and samples each minute only on the replica that holds the
// collectors' Lease, continuing from the watermark persisted in Postgres.
// Ingest is the http.Handler of POST /v1/usage.
//
// It must not import billing (the usage store is the boundary), must not
// speak SQL (package usage/usagestore does), and must not price anything:
// it records quantities only.
package collectors
