// Package pgstore holds what every …store package does alike at its
// boundary with Postgres: turning a storage error into a domain error with
// a stable code. It runs no SQL of its own, and only store packages use it.
package pgstore
