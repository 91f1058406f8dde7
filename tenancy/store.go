package tenancy

import (
	"context"
	"time"

	"github.com/tenantplane/tenantplane/tenancy/mail"
)

// Store is the persistence the Service and the Sender need; tenancystore
// implements it on Postgres. Lookups of a missing row return a NOT_FOUND
// errcode error, unique violations a CONFLICT one.
type Store interface {
	// InTx runs fn in one transaction and commits when fn returns nil.
	InTx(ctx context.Context, fn func(tx Tx) error) error
	Tx
}

// Tx is the set of queries, run in a transaction or on their own. Methods
// whose name ends in ForUpdate lock the row until the transaction ends.
type Tx interface {
	// HitRateLimit counts one event for key in the fixed window that starts
	// at windowStart and returns the counts of this window and the previous
	// one (of length window).
	HitRateLimit(ctx context.Context, key string, windowStart time.Time, window time.Duration) (cur, prev int, err error)

	InsertUser(ctx context.Context, u NewUserRow) (User, error)
	UserByID(ctx context.Context, id int64) (User, error)
	UserByIDForUpdate(ctx context.Context, id int64) (User, error)
	// UserByEmail returns the user and the PHC password hash ("" when none).
	UserByEmail(ctx context.Context, email string) (User, string, error)
	UserByEmailForUpdate(ctx context.Context, email string) (User, string, error)
	UsersByIDs(ctx context.Context, ids []int64) ([]User, error)
	SetUserStatus(ctx context.Context, id int64, status UserStatus, emailVerifiedAt, disabledAt *time.Time, now time.Time) (User, error)
	SetPasswordHash(ctx context.Context, id int64, hash string, now time.Time) error
	SetPlatformAdmin(ctx context.Context, id int64, admin bool, now time.Time) (User, error)

	OIDCUserID(ctx context.Context, issuer, subject string) (int64, error)
	LinkOIDC(ctx context.Context, issuer, subject string, userID int64, email string, now time.Time) error
	TouchOIDC(ctx context.Context, issuer, subject string, now time.Time) error

	InsertAuthToken(ctx context.Context, t AuthTokenRow) (int64, error)
	// TokenByHash resolves a live token (not revoked, not expired at now)
	// of a user who is not disabled, joining the user, in one query.
	TokenByHash(ctx context.Context, hash []byte, now time.Time) (AuthTokenMatch, error)
	// TouchToken sets last_used_at to now unless it is already after
	// notBefore.
	TouchToken(ctx context.Context, id int64, now, notBefore time.Time) error
	// RevokeToken revokes a user's live token of kind (any kind when "");
	// NOT_FOUND when there is none.
	RevokeToken(ctx context.Context, userID, id int64, kind TokenKind, now time.Time) error
	RevokeUserTokens(ctx context.Context, userID int64, now time.Time) (int64, error)
	CountLiveAPITokens(ctx context.Context, userID int64, now time.Time) (int, error)
	APITokens(ctx context.Context, userID int64, q PageQuery) ([]APIToken, error)

	InsertUserToken(ctx context.Context, t UserTokenRow) error
	// ConsumeUserToken marks a live one-time token used and returns it;
	// NOT_FOUND when it is unknown, used or expired.
	ConsumeUserToken(ctx context.Context, purpose TokenPurpose, hash []byte, now time.Time) (UserTokenRow, error)
	// ExpireUserTokens marks a user's unused tokens of purpose used.
	ExpireUserTokens(ctx context.Context, userID int64, purpose TokenPurpose, now time.Time) error

	// InsertOrg inserts an org, returning ok=false (and no error) when the
	// name is taken.
	InsertOrg(ctx context.Context, name, displayName string, personal bool, now time.Time) (Org, bool, error)
	OrgByID(ctx context.Context, id int64) (Org, error)
	OrgByIDForUpdate(ctx context.Context, id int64) (Org, error)
	UpdateOrg(ctx context.Context, id int64, name, displayName string, now time.Time) (Org, error)
	OrgsByIDs(ctx context.Context, ids []int64) ([]Org, error)
	CountOwnedOrgs(ctx context.Context, userID int64) (int, error)
	OrgMember(ctx context.Context, orgID, userID int64) (OrgMember, error)
	InsertOrgMember(ctx context.Context, m OrgMember) error
	SetOrgMemberRole(ctx context.Context, orgID, userID int64, role OrgRole) (OrgMember, error)
	DeleteOrgMember(ctx context.Context, orgID, userID int64) error
	CountOrgOwners(ctx context.Context, orgID int64) (int, error)
	OrgMembers(ctx context.Context, orgID int64, q PageQuery) ([]OrgMember, error)
	UserOrgs(ctx context.Context, userID int64, q PageQuery) ([]OrgMembership, error)
	OrgsByUserIDs(ctx context.Context, userIDs []int64) ([]OrgMembership, error)

	// InsertNamespace inserts a namespace, returning ok=false (and no
	// error) when the name is taken.
	InsertNamespace(ctx context.Context, orgID int64, name string, now time.Time) (Namespace, bool, error)
	NamespaceByID(ctx context.Context, id int64) (Namespace, error)
	NamespaceByIDForUpdate(ctx context.Context, id int64) (Namespace, error)
	NamespaceByName(ctx context.Context, name string) (Namespace, error)
	// SetNamespaceState sets the state; by is who suspends, recorded
	// while the namespace stays suspended.
	SetNamespaceState(ctx context.Context, id int64, state NamespaceState, by string, now time.Time) (Namespace, error)
	// TakeSuspension hands a suspended namespace's suspension to by and
	// returns who held it ("" for unknown); ok is false when the namespace
	// is not suspended or by holds it already.
	TakeSuspension(ctx context.Context, id int64, by string, now time.Time) (prev string, ok bool, err error)
	// CountOrgNamespaces counts an org's namespaces that are not deleting.
	CountOrgNamespaces(ctx context.Context, orgID int64) (int, error)
	OrgNamespaces(ctx context.Context, orgID int64, q PageQuery) ([]Namespace, error)
	NamespacesByIDs(ctx context.Context, ids []int64) ([]Namespace, error)
	NamespacesByOrgIDs(ctx context.Context, orgIDs []int64) ([]Namespace, error)
	Member(ctx context.Context, nsID, userID int64) (Member, error)
	InsertMember(ctx context.Context, m Member) error
	SetMemberRole(ctx context.Context, nsID, userID int64, role Role) (Member, error)
	DeleteMember(ctx context.Context, nsID, userID int64) error
	CountOwners(ctx context.Context, nsID int64) (int, error)
	CountMembers(ctx context.Context, nsID int64) (int, error)
	// MemberWithEmail reports whether a user with email is a member.
	MemberWithEmail(ctx context.Context, nsID int64, email string) (bool, error)
	Members(ctx context.Context, nsID int64, q PageQuery) ([]Member, error)
	UserNamespaces(ctx context.Context, userID int64, q PageQuery) ([]NamespaceMembership, error)
	MembersByNamespaceIDs(ctx context.Context, nsIDs []int64) ([]Member, error)
	NamespacesByUserIDs(ctx context.Context, userIDs []int64) ([]NamespaceMembership, error)
	// OrgTree reads the orgs of a user and what lies below them down to
	// depth, in one query. Lists come sorted by ID.
	OrgTree(ctx context.Context, userID int64, depth OrgTreeDepth) (OrgTree, error)

	InsertInvitation(ctx context.Context, inv Invitation, hash []byte) (Invitation, error)
	InvitationByID(ctx context.Context, id int64) (Invitation, error)
	InvitationByIDForUpdate(ctx context.Context, id int64) (Invitation, error)
	InvitationByHash(ctx context.Context, hash []byte) (Invitation, error)
	CountPendingInvitations(ctx context.Context, nsID int64, now time.Time) (int, error)
	PendingInvitationFor(ctx context.Context, nsID int64, email string, now time.Time) (bool, error)
	AcceptInvitation(ctx context.Context, id, userID int64, now time.Time) (Invitation, error)
	RevokeInvitation(ctx context.Context, id int64, now time.Time) (Invitation, error)
	Invitations(ctx context.Context, nsID int64, q PageQuery) ([]Invitation, error)

	InsertAudit(ctx context.Context, e AuditEntry) error
	AuditLog(ctx context.Context, f AuditFilter, q PageQuery) ([]AuditEntry, error)
	InsertOutbox(ctx context.Context, e OutboxEvent) error

	EnqueueMail(ctx context.Context, m OutgoingMail) error
	// ClaimMail claims up to limit due messages for lease: each claimed row
	// counts one more attempt and is not due again until now+lease.
	ClaimMail(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]ClaimedMail, error)
	MarkMailSent(ctx context.Context, id int64, now time.Time) error
	// MarkMailFailed records a failed attempt: due again at next, or given
	// up when final.
	MarkMailFailed(ctx context.Context, id int64, errText string, next time.Time, final bool, now time.Time) error

	// Prune deletes rate-limit windows older than rateBefore, and one-time
	// and auth tokens that expired before tokenBefore.
	Prune(ctx context.Context, rateBefore, tokenBefore time.Time) error
}

// NewUserRow is a user to insert.
type NewUserRow struct {
	Email           string
	DisplayName     string
	PasswordHash    string // "" for none
	Status          UserStatus
	EmailVerifiedAt *time.Time
	Now             time.Time
}

// AuthTokenRow is a session or API token to insert.
type AuthTokenRow struct {
	UserID    int64
	Kind      TokenKind
	Name      string
	Hash      []byte
	CreatedAt time.Time
	ExpiresAt time.Time
}

// AuthTokenMatch is a live token found by its hash, with its user.
type AuthTokenMatch struct {
	Principal
	LastUsedAt *time.Time
}

// TokenPurpose is what a one-time mailed token is for.
type TokenPurpose string

// The one-time token purposes.
const (
	PurposeVerifyEmail   TokenPurpose = "verify_email"
	PurposeResetPassword TokenPurpose = "reset_password"
)

// UserTokenRow is a one-time token: email verification or password reset.
type UserTokenRow struct {
	UserID    int64
	Purpose   TokenPurpose
	Hash      []byte
	Email     string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// OutboxEvent is a change the isolation reconciler must apply to
// Kubernetes. Key names what to reconcile ("ns:7", "user:42").
type OutboxEvent struct {
	Kind    string
	Key     string
	Payload map[string]any
	At      time.Time
}

// OutgoingMail is a message queued in the mail outbox.
type OutgoingMail struct {
	Kind    string
	To      string
	Subject string
	Text    string
	HTML    string
	At      time.Time
}

// ClaimedMail is a message claimed for delivery.
type ClaimedMail struct {
	mail.Message
	// Attempts counts this attempt too.
	Attempts int
}
