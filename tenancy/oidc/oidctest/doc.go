// Package oidctest runs a small, standards-following OpenID Connect provider
// inside a test process, so that log-in code is exercised against real
// discovery, a real JWKS, real RS256 signatures and real PKCE checks rather
// than against mocks.
//
// The provider implements discovery, the JWKS endpoint, the authorization
// endpoint (authorization-code flow only, PKCE with S256 required) and the
// token endpoint (client_secret_basic and client_secret_post). It has no log-in
// page: the authorization endpoint signs in whoever the test set with
// [Server.SetIdentity].
//
// It is for tests only: it keeps everything in memory, listens on loopback
// over plain HTTP and must never be wired into the production binary.
package oidctest
