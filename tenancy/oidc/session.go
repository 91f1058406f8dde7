package oidc

import (
	"context"
	"time"

	"github.com/tenantplane/tenantplane/tenancy"
)

// Session is what a successful log-in gives the frontend: the session
// secret, shown this once, and when it expires.
type Session struct {
	Token     string
	ExpiresAt time.Time
}

// Sessions logs a verified OpenID Connect identity in. The tenancy service
// implements it (through [SessionsFunc] when its result type differs): it
// finds the user linked to (Issuer, Subject), links an existing user by email
// only when EmailVerified is true, or signs a new user up, and refuses
// disabled users. Errors carrying an errcode are shown to the client with
// their code and message; any other error is reported as INTERNAL.
//
// The request context carries the client's [tenancy.Actor] when the server
// installed one, for the audit log.
type Sessions interface {
	LogInOIDC(ctx context.Context, id tenancy.OIDCIdentity) (Session, error)
}

// SessionsFunc adapts a function to [Sessions].
type SessionsFunc func(ctx context.Context, id tenancy.OIDCIdentity) (Session, error)

// LogInOIDC calls f.
func (f SessionsFunc) LogInOIDC(ctx context.Context, id tenancy.OIDCIdentity) (Session, error) {
	return f(ctx, id)
}
