// Package reqmeta is what every HTTP entry point needs to know of a request
// before any domain code runs: its request id (kept when well-formed, made
// otherwise) and the client's address, for logs, the audit log and rate
// limits. The address is the TCP peer's, or, when the peer is one of the
// trusted proxies, the rightmost address in X-Forwarded-For that is not a
// trusted proxy; a client can never choose it by sending the header
// itself. It knows nothing of routes or domains.
package reqmeta
