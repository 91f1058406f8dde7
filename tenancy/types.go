package tenancy

import (
	"encoding/json"
	"net/netip"
	"strconv"
	"time"
)

// UserStatus is where a user stands: pending until the email address is
// verified, active, or disabled by a platform admin.
type UserStatus string

// The user statuses.
const (
	UserPending  UserStatus = "pending"
	UserActive   UserStatus = "active"
	UserDisabled UserStatus = "disabled"
)

// User is a person who can log in.
type User struct {
	ID int64
	// Email is unique and case-folded (trimmed, lower case).
	Email       string
	DisplayName string
	Status      UserStatus
	// PlatformAdmin is the global admin role.
	PlatformAdmin bool
	// HasPassword is false for users who only log in through OIDC.
	HasPassword     bool
	EmailVerifiedAt *time.Time
	DisabledAt      *time.Time
	CreatedAt       time.Time
	UpdatedAt       time.Time
}

// OrgRole is a user's role in an org.
type OrgRole string

// The org roles. Owners manage the org, its members and its namespaces;
// billing members manage payment; members see the org.
const (
	OrgRoleOwner   OrgRole = "owner"
	OrgRoleBilling OrgRole = "billing"
	OrgRoleMember  OrgRole = "member"
)

// OrgRoles lists every org role, highest first.
func OrgRoles() []OrgRole { return []OrgRole{OrgRoleOwner, OrgRoleBilling, OrgRoleMember} }

// Valid reports whether r is a known org role.
func (r OrgRole) Valid() bool {
	switch r {
	case OrgRoleOwner, OrgRoleBilling, OrgRoleMember:
		return true
	}
	return false
}

// Org is a billing account and team that owns namespaces.
type Org struct {
	ID int64
	// Name is a DNS label, globally unique.
	Name        string
	DisplayName string
	// Personal is true for the org created at sign-up.
	Personal  bool
	Plan      string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// OrgMember is one user's membership of an org.
type OrgMember struct {
	OrgID     int64
	UserID    int64
	Role      OrgRole
	CreatedAt time.Time
}

// OrgMembership is an org together with one user's role in it.
type OrgMembership struct {
	Org    Org
	UserID int64
	Role   OrgRole
}

// NamespaceState is the lifecycle state of a namespace.
type NamespaceState string

// The namespace states.
const (
	NamespaceActive    NamespaceState = "active"
	NamespaceSuspended NamespaceState = "suspended"
	NamespaceDeleting  NamespaceState = "deleting"
)

// Valid reports whether s is a known namespace state.
func (s NamespaceState) Valid() bool {
	switch s {
	case NamespaceActive, NamespaceSuspended, NamespaceDeleting:
		return true
	}
	return false
}

// Namespace is one Kubernetes namespace, owned by one org.
type Namespace struct {
	ID    int64
	OrgID int64
	// Name is the Kubernetes namespace name: a DNS label, globally unique.
	Name  string
	State NamespaceState
	// MemberLimit bounds members plus pending invitations.
	MemberLimit int
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// Role is a user's role in a namespace.
type Role string

// The namespace roles, highest first.
const (
	RoleOwner     Role = "owner"
	RoleAdmin     Role = "admin"
	RoleDeveloper Role = "developer"
	RoleViewer    Role = "viewer"
)

// Roles lists every namespace role, highest first.
func Roles() []Role { return []Role{RoleOwner, RoleAdmin, RoleDeveloper, RoleViewer} }

// Valid reports whether r is a known namespace role.
func (r Role) Valid() bool { return r.rank() > 0 }

// rank orders roles: owner 4 … viewer 1, unknown 0.
func (r Role) rank() int {
	switch r {
	case RoleOwner:
		return 4
	case RoleAdmin:
		return 3
	case RoleDeveloper:
		return 2
	case RoleViewer:
		return 1
	}
	return 0
}

// AtLeast reports whether r is min or a higher role.
func (r Role) AtLeast(min Role) bool { return r.rank() >= min.rank() && r.rank() > 0 }

// Member is one user's membership of a namespace.
type Member struct {
	NamespaceID int64
	UserID      int64
	Role        Role
	CreatedAt   time.Time
}

// NamespaceMembership is a namespace together with one user's role in it.
type NamespaceMembership struct {
	Namespace Namespace
	UserID    int64
	Role      Role
}

// InvitationStatus is derived from an invitation's timestamps and the clock.
type InvitationStatus string

// The invitation statuses.
const (
	InvitationPending  InvitationStatus = "pending"
	InvitationAccepted InvitationStatus = "accepted"
	InvitationRevoked  InvitationStatus = "revoked"
	InvitationExpired  InvitationStatus = "expired"
)

// Invitation invites an email address into a namespace with a role. Its
// secret token is mailed to the address and never stored in clear.
type Invitation struct {
	ID          int64
	NamespaceID int64
	// Email is the case-folded address the invitation was sent to.
	Email      string
	Role       Role
	InvitedBy  int64
	CreatedAt  time.Time
	ExpiresAt  time.Time
	AcceptedAt *time.Time
	// AcceptedBy is the user who accepted, when accepted.
	AcceptedBy *int64
	RevokedAt  *time.Time
}

// Status returns the invitation's status at now.
func (i Invitation) Status(now time.Time) InvitationStatus {
	switch {
	case i.AcceptedAt != nil:
		return InvitationAccepted
	case i.RevokedAt != nil:
		return InvitationRevoked
	case !now.Before(i.ExpiresAt):
		return InvitationExpired
	}
	return InvitationPending
}

// TokenKind tells a log-in session from a personal API token.
type TokenKind string

// The token kinds, with the prefix of their secrets.
const (
	TokenSession TokenKind = "session"
	TokenAPI     TokenKind = "api"
)

// Secret prefixes make leaked tokens recognisable by secret scanners.
const (
	SessionTokenPrefix = "tps_"
	APITokenPrefix     = "tpa_"
)

// NewToken is a freshly issued session or API token. Secret is shown once
// and stored only as a hash.
type NewToken struct {
	ID        int64
	Kind      TokenKind
	Secret    string
	ExpiresAt time.Time
}

// APIToken describes a personal API token, without its secret.
type APIToken struct {
	ID         int64
	UserID     int64
	Name       string
	CreatedAt  time.Time
	ExpiresAt  time.Time
	LastUsedAt *time.Time
	RevokedAt  *time.Time
}

// Principal is who a bearer token authenticates.
type Principal struct {
	UserID        int64
	Email         string
	Status        UserStatus
	PlatformAdmin bool
	// TokenID and TokenKind identify the token used, e.g. for LogOut.
	TokenID   int64
	TokenKind TokenKind
	ExpiresAt time.Time
}

// Actor returns the audit actor for a request made by p.
func (p Principal) Actor(ip netip.Addr, requestID string) Actor {
	return Actor{UserID: p.UserID, PlatformAdmin: p.PlatformAdmin, IP: ip, RequestID: requestID}
}

// AuditEntry is one row of the audit log.
type AuditEntry struct {
	ID int64
	At time.Time
	// Actor is "user:ID", "system:NAME" or "anonymous".
	Actor string
	// Action is e.g. "namespace.create", "member.remove".
	Action string
	// Target is e.g. "ns:7", "org:3", "user:42".
	Target    string
	IP        netip.Addr
	RequestID string
	Detail    json.RawMessage
}

// AuditFilter narrows AuditLog. Empty fields do not filter.
type AuditFilter struct {
	Actor  string
	Action string
	Target string
	// Since and Until bound At: Since <= At < Until.
	Since time.Time
	Until time.Time
}

// UserKey is the subject string of a user, "user:ID", used in the audit log
// and Casbin.
func UserKey(id int64) string { return "user:" + strconv.FormatInt(id, 10) }

// OrgKey is the domain string of an org, "org:ID".
func OrgKey(id int64) string { return "org:" + strconv.FormatInt(id, 10) }

// NamespaceKey is the domain string of a namespace, "ns:ID", also the
// outbox key the isolation reconciler reconciles.
func NamespaceKey(id int64) string { return "ns:" + strconv.FormatInt(id, 10) }
