package tenancy

import (
	"context"
	"net/netip"
)

// Actor is who performs a change, as recorded in the audit log. The server
// derives it from the authenticated bearer token and the request; a caller
// can never set it from input.
type Actor struct {
	// UserID is the authenticated user, 0 for the platform itself or an
	// anonymous caller (sign-up, log-in).
	UserID int64
	// PlatformAdmin is true when the user holds the global admin role.
	PlatformAdmin bool
	// System names the platform component acting, e.g. "billing", when UserID is 0.
	System string
	// IP is the client address, when the change comes from a request.
	IP netip.Addr
	// RequestID ties the change to the request's logs.
	RequestID string
}

type actorKey struct{}

// WithActor returns a context that carries a.
func WithActor(ctx context.Context, a Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, a)
}

// ActorFrom returns the actor carried by ctx, and false when there is none.
func ActorFrom(ctx context.Context) (Actor, bool) {
	a, ok := ctx.Value(actorKey{}).(Actor)
	return a, ok
}
