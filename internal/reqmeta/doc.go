// Package reqmeta is what every HTTP entry point needs to know of a request
// before any domain code runs: its request id (kept when well-formed, made
// otherwise) and the client's address, for logs, the audit log and rate
// limits. It knows nothing of routes or domains.
package reqmeta
