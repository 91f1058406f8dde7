// Package pgstore holds what every …store package does alike at its
// boundary with Postgres: turning a storage error into a domain error with
// a stable code, and listening for notifications on a connection that
// comes back when it is lost, and the size of the server's pool
// (QueryConns), which the server and the GraphQL benchmark share.
package pgstore
