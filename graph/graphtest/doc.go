// Package graphtest runs the GraphQL handler against a real Postgres for
// tests and benchmarks: the tenancy service and store, an authorizer kept
// current by the LISTEN/NOTIFY listener, an HTTP server on loopback, and a
// pool whose queries are counted.
//
// It is test support only and the one package under graph allowed to
// import pgx; nothing but tests imports it.
package graphtest
