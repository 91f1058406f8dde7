// Package oidc lets people log in with an OpenID Connect identity provider
// of their company: the authorization-code flow with PKCE (S256), state and
// nonce, through github.com/coreos/go-oidc/v3 and golang.org/x/oauth2.
//
// [NewHandler] serves two routes for every configured provider:
//
//	GET /auth/oidc/{provider}/login     redirects the browser to the provider
//	GET /auth/oidc/{provider}/callback  completes the log-in
//
// The callback checks the state, redeems the code with the PKCE verifier,
// verifies the ID token (signature, issuer, audience, expiry, nonce, at_hash)
// and hands the verified [tenancy.OIDCIdentity] to [Sessions], which links it
// to a user and opens a session. The session secret goes back to the frontend
// in a URL fragment, or as JSON when the client asks for it.
//
// # Where the log-in state lives
//
// State, nonce and PKCE verifier are kept in a cookie sealed with
// AES-256-GCM (so it is both secret and tamper-proof), bound to the provider
// by name and by the cookie path, HttpOnly, SameSite=Lax, Secure when the
// redirect URL is https, with an expiry inside the sealed value. A cookie was
// chosen over a server-side store because the flow then needs no table, no
// cleanup job and no shared cache between replicas: any replica holding the
// key can finish a log-in that another one started. Replay is bounded by the
// provider itself, which redeems a code once, and by the short expiry; the
// cookie is cleared as soon as the callback reads it.
//
// # What it must not do
//
// It decides nothing about users: whether an identity links to an existing
// account (only through a verified email), creates one, or is refused is the
// job of [Sessions]. It never logs or returns tokens, codes or provider error
// text to the client, and it never imports Postgres.
package oidc
