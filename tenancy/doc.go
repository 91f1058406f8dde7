// Package tenancy holds the identity and tenancy domain: users, orgs,
// namespaces, memberships, invitations, sessions and API tokens, their
// validation rules and errors with stable codes (internal/errcode), and the
// Service that applies them.
//
// Every mutation takes its actor from the context (WithActor), checks the
// business rules that depend on the data (the last owner, owner-only
// grants, member limits, rate limits), and writes the change, an audit_log
// row and, when Kubernetes must follow, an outbox row in one transaction.
// Mail is queued in the same transaction and delivered later by a Sender.
//
// Authenticate answers most requests from a TokenCache, which serves only
// while its change feed (tenancystore.TokenFeed) listens; a revoked token
// fails at once on the replica that revoked it and within the
// notification's delay on the others.
//
// It must not decide whether an actor may see or touch an object at all:
// that is Casbin's job in the graph layer, which asks before calling in.
// It never touches SQL: the tenancystore subpackage implements Store and is
// the only place that speaks to Postgres. It never talks to Kubernetes.
package tenancy
