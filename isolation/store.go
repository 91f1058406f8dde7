package isolation

import (
	"context"
	"time"
)

// Store is the Postgres side of isolation: it reads tenant state, drains
// the outbox the tenancy service writes, and keeps host claims.
// isolationstore implements it; nothing else in this package touches SQL.
type Store interface {
	// Tenants loads the namespaces with the given IDs, with their org's
	// plan, members and host claims; IDs that do not exist are absent.
	Tenants(ctx context.Context, ids []int64) (map[int64]Tenant, error)
	// NamespaceIDs lists up to limit namespace IDs greater than after, in
	// ascending order: every namespace that Kubernetes may still hold, that
	// is all but those whose deletion from Kubernetes finished.
	NamespaceIDs(ctx context.Context, after int64, limit int) ([]int64, error)
	// NamespaceIDsOfOrg and NamespaceIDsOfUser list the namespaces of an
	// org, and those a user is a member of.
	NamespaceIDsOfOrg(ctx context.Context, orgID int64) ([]int64, error)
	NamespaceIDsOfUser(ctx context.Context, userID int64) ([]int64, error)
	// Users loads users by ID; IDs that do not exist are absent.
	Users(ctx context.Context, ids []int64) (map[int64]User, error)

	// NamespaceDeleted records that Kubernetes finished deleting the
	// namespace, and frees its host claims.
	NamespaceDeleted(ctx context.Context, nsID int64, now time.Time) error
	// ForgetReleasedHosts drops the namespace's released host claims except
	// those still used by one of its Ingresses or HTTPRoutes.
	ForgetReleasedHosts(ctx context.Context, nsID int64, inUse []string) error
	// ClaimHost and ReleaseHost change a namespace's host claims, with an
	// audit row and an outbox row in the same transaction. A host claimed
	// by any namespace (or still held after a release) is CONFLICT; a
	// namespace that does not exist, or a host it does not hold, NOT_FOUND;
	// a namespace being deleted CONFLICT.
	ClaimHost(ctx context.Context, c HostChange) error
	ReleaseHost(ctx context.Context, c HostChange) error
	// Hosts lists a namespace's live host claims.
	Hosts(ctx context.Context, nsID int64) ([]HostClaim, error)

	// Audit records one audit_log row on its own, for changes that live
	// only in Kubernetes (revoked kubeconfigs).
	Audit(ctx context.Context, e AuditEntry) error

	Outbox
}

// Outbox is the queue of changes Kubernetes must follow, written by the
// tenancy service in the transaction of each change.
type Outbox interface {
	// ClaimOutbox claims up to limit due rows (FOR UPDATE SKIP LOCKED):
	// each claimed row counts one more attempt and is not due again until
	// now+lease, so a worker that dies leaves it to be retried.
	ClaimOutbox(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]OutboxItem, error)
	// CompleteOutbox marks rows done.
	CompleteOutbox(ctx context.Context, ids []int64, now time.Time) error
	// RetryOutbox records a failed attempt: the error, and when the rows are
	// due again.
	RetryOutbox(ctx context.Context, ids []int64, lastError string, next time.Time) error
	// OutboxStats summarises the rows not done yet.
	OutboxStats(ctx context.Context, now time.Time) (OutboxStats, error)
	// WaitOutbox returns when a row may have been added (Postgres NOTIFY),
	// after timeout, or when ctx ends.
	WaitOutbox(ctx context.Context, timeout time.Duration) error
}

// OutboxItem is one claimed outbox row.
type OutboxItem struct {
	ID   int64
	Kind string
	// Key says what to reconcile: "ns:7", "user:42" or "org:3".
	Key string
	// Attempts counts this attempt too.
	Attempts  int
	CreatedAt time.Time
}

// OutboxStats describes the rows not done yet.
type OutboxStats struct {
	Pending int
	// Failing counts pending rows that failed at least once.
	Failing int
	// OldestAge is the age of the oldest pending row.
	OldestAge time.Duration
	// MaxAttempts is the highest attempt count among pending rows.
	MaxAttempts int
}

// HostChange is a claim or release of a host name by a namespace.
type HostChange struct {
	NamespaceID int64
	Host        string
	// Actor is the audit actor, e.g. "user:42".
	Actor     string
	RequestID string
	At        time.Time
}

// HostClaim is a host name held by a namespace.
type HostClaim struct {
	Host      string
	CreatedAt time.Time
}

// AuditEntry is one audit_log row.
type AuditEntry struct {
	At        time.Time
	Actor     string
	Action    string
	Target    string
	RequestID string
	Detail    map[string]any
}
