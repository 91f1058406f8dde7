package tenancy

import (
	"context"
	"time"
)

// ---- identity ----

// SignUp registers a user with email and password. In one transaction it
// creates the user (status pending), a personal org named after the email's
// local part, one namespace "ns-<random>", owner memberships of both, audit
// rows, an outbox row for the namespace and a queued verification mail.
// Limited per client IP (from the Actor) and per email: RATE_LIMITED.
// A registered email (case-insensitively) is CONFLICT.
func (s *Service) SignUp(ctx context.Context, email, password, displayName string) (User, error) {
	return User{}, pending("sign up")
}

// VerifyEmail consumes a single-use verification token and makes the user
// active. Unknown, used or expired tokens are BAD_USER_INPUT on "token".
func (s *Service) VerifyEmail(ctx context.Context, token string) (User, error) {
	return User{}, pending("verify email")
}

// ResendVerification queues a new verification mail for the acting user
// when their email is not verified yet; limited like password resets.
func (s *Service) ResendVerification(ctx context.Context) error {
	return pending("resend verification")
}

// LogIn checks email and password and issues a session token (prefix
// "tps_"). Wrong email or password are the same UNAUTHENTICATED error;
// disabled users (and, under RequireVerifiedEmail, pending users) are
// refused. Limited per IP and per email. Rehashes the password when the
// argon2 parameters changed.
func (s *Service) LogIn(ctx context.Context, email, password string) (NewToken, error) {
	return NewToken{}, pending("log in")
}

// LogInOIDC logs in the person behind a verified OIDC identity and issues a
// session token. An identity already linked logs in its user; otherwise a
// user whose email the provider verified gets linked; otherwise a new active
// user is created with a personal org and namespace, as at sign-up.
// Disabled users are refused.
func (s *Service) LogInOIDC(ctx context.Context, id OIDCIdentity) (NewToken, error) {
	return NewToken{}, pending("log in with oidc")
}

// LogOut revokes the acting user's token tokenID (Principal.TokenID).
func (s *Service) LogOut(ctx context.Context, tokenID int64) error {
	return pending("log out")
}

// RequestPasswordReset queues a reset mail when email belongs to a user who
// can log in. It never tells whether the email exists; only rate limits
// (per IP and per email) produce an error.
func (s *Service) RequestPasswordReset(ctx context.Context, email string) error {
	return pending("request password reset")
}

// ResetPassword consumes a single-use reset token, sets the new password
// and revokes every session and API token of the user.
func (s *Service) ResetPassword(ctx context.Context, token, newPassword string) error {
	return pending("reset password")
}

// CreateAPIToken issues a personal API token (prefix "tpa_") for the acting
// user, valid for ttl (0 means Config.APITokenTTL, at most APITokenMaxTTL).
func (s *Service) CreateAPIToken(ctx context.Context, name string, ttl time.Duration) (NewToken, error) {
	return NewToken{}, pending("create api token")
}

// APITokens lists the acting user's API tokens, newest last.
func (s *Service) APITokens(ctx context.Context, page PageArgs) (Connection[APIToken], error) {
	return Connection[APIToken]{}, pending("list api tokens")
}

// RevokeAPIToken revokes one of the acting user's API tokens; another
// user's token is NOT_FOUND.
func (s *Service) RevokeAPIToken(ctx context.Context, id int64) error {
	return pending("revoke api token")
}

// Authenticate resolves a bearer secret to its Principal in one indexed
// query. Unknown, revoked and expired tokens and tokens of disabled users
// are UNAUTHENTICATED. It records the token's last use at most once per
// Config.LastUsedInterval.
func (s *Service) Authenticate(ctx context.Context, bearer string) (Principal, error) {
	return Principal{}, pending("authenticate")
}

// Me returns the acting user.
func (s *Service) Me(ctx context.Context) (User, error) {
	return User{}, pending("me")
}

// DisableUser disables a user and revokes all their tokens at once; only
// platform admins and the platform itself may. Writes an outbox row so
// Kubernetes access goes too.
func (s *Service) DisableUser(ctx context.Context, userID int64) error {
	return pending("disable user")
}

// EnableUser re-enables a disabled user (active, or pending when the email
// was never verified). Only platform admins and the platform itself may.
func (s *Service) EnableUser(ctx context.Context, userID int64) error {
	return pending("enable user")
}

// GrantPlatformAdmin makes the user with email a platform admin; for the
// seed and the CLI (system actor) or an existing platform admin.
func (s *Service) GrantPlatformAdmin(ctx context.Context, email string) (User, error) {
	return User{}, pending("grant platform admin")
}

// RevokePlatformAdmin takes the platform admin role from the user with
// email.
func (s *Service) RevokePlatformAdmin(ctx context.Context, email string) (User, error) {
	return User{}, pending("revoke platform admin")
}

// ---- orgs ----

// CreateOrg creates an org owned by the acting user. name must be a DNS
// label, globally unique (CONFLICT otherwise).
func (s *Service) CreateOrg(ctx context.Context, name, displayName string) (Org, error) {
	return Org{}, pending("create org")
}

// RenameOrg changes an org's name and display name; org owners only.
func (s *Service) RenameOrg(ctx context.Context, orgID int64, name, displayName string) (Org, error) {
	return Org{}, pending("rename org")
}

// MyOrgs lists the orgs the acting user belongs to, with their role.
func (s *Service) MyOrgs(ctx context.Context, page PageArgs) (Connection[OrgMembership], error) {
	return Connection[OrgMembership]{}, pending("list my orgs")
}

// OrgMembers lists an org's members by user ID.
func (s *Service) OrgMembers(ctx context.Context, orgID int64, page PageArgs) (Connection[OrgMember], error) {
	return Connection[OrgMember]{}, pending("list org members")
}

// AddOrgMember adds a user to an org; org owners only, and only owners
// grant owner.
func (s *Service) AddOrgMember(ctx context.Context, orgID, userID int64, role OrgRole) (OrgMember, error) {
	return OrgMember{}, pending("add org member")
}

// SetOrgMemberRole changes an org member's role; the last owner cannot be
// demoted.
func (s *Service) SetOrgMemberRole(ctx context.Context, orgID, userID int64, role OrgRole) (OrgMember, error) {
	return OrgMember{}, pending("set org member role")
}

// RemoveOrgMember removes a user from an org; the last owner cannot be
// removed.
func (s *Service) RemoveOrgMember(ctx context.Context, orgID, userID int64) error {
	return pending("remove org member")
}

// LeaveOrg removes the acting user from an org; the last owner cannot leave.
func (s *Service) LeaveOrg(ctx context.Context, orgID int64) error {
	return pending("leave org")
}

// TransferOrgOwnership makes toUserID (already a member) an owner and the
// acting owner a member.
func (s *Service) TransferOrgOwnership(ctx context.Context, orgID, toUserID int64) error {
	return pending("transfer org ownership")
}

// ---- namespaces and memberships ----

// CreateNamespace creates a namespace in an org the acting user owns; the
// creator becomes its owner. name must be a Kubernetes DNS label (at most
// 63 characters) and globally unique (CONFLICT otherwise).
func (s *Service) CreateNamespace(ctx context.Context, orgID int64, name string) (Namespace, error) {
	return Namespace{}, pending("create namespace")
}

// DeleteNamespace moves a namespace to state deleting (namespace owners and
// org owners); the isolation reconciler removes it from Kubernetes.
func (s *Service) DeleteNamespace(ctx context.Context, nsID int64) (Namespace, error) {
	return Namespace{}, pending("delete namespace")
}

// SuspendNamespace moves an active namespace to suspended; for billing and
// platform admins.
func (s *Service) SuspendNamespace(ctx context.Context, nsID int64, reason string) (Namespace, error) {
	return Namespace{}, pending("suspend namespace")
}

// ResumeNamespace moves a suspended namespace back to active; for billing
// and platform admins.
func (s *Service) ResumeNamespace(ctx context.Context, nsID int64) (Namespace, error) {
	return Namespace{}, pending("resume namespace")
}

// OrgNamespaces lists an org's namespaces by ID.
func (s *Service) OrgNamespaces(ctx context.Context, orgID int64, page PageArgs) (Connection[Namespace], error) {
	return Connection[Namespace]{}, pending("list org namespaces")
}

// MyNamespaces lists the namespaces the acting user is a member of, with
// their role.
func (s *Service) MyNamespaces(ctx context.Context, page PageArgs) (Connection[NamespaceMembership], error) {
	return Connection[NamespaceMembership]{}, pending("list my namespaces")
}

// Members lists a namespace's members by user ID.
func (s *Service) Members(ctx context.Context, nsID int64, page PageArgs) (Connection[Member], error) {
	return Connection[Member]{}, pending("list members")
}

// AddMember adds a user to a namespace; admins and owners may, only owners
// grant owner, and the member limit counts members plus pending
// invitations.
func (s *Service) AddMember(ctx context.Context, nsID, userID int64, role Role) (Member, error) {
	return Member{}, pending("add member")
}

// SetMemberRole changes a member's role; admins and owners may, only owners
// grant or revoke owner, and the last owner cannot be demoted.
func (s *Service) SetMemberRole(ctx context.Context, nsID, userID int64, role Role) (Member, error) {
	return Member{}, pending("set member role")
}

// RemoveMember removes a member; admins and owners may, only owners remove
// owners, and the last owner cannot be removed.
func (s *Service) RemoveMember(ctx context.Context, nsID, userID int64) error {
	return pending("remove member")
}

// Leave removes the acting user from a namespace; the last owner cannot
// leave.
func (s *Service) Leave(ctx context.Context, nsID int64) error {
	return pending("leave namespace")
}

// TransferOwnership makes toUserID (already a member) an owner and the
// acting owner an admin.
func (s *Service) TransferOwnership(ctx context.Context, nsID, toUserID int64) error {
	return pending("transfer ownership")
}

// ---- invitations ----

// Invite mails a single-use invitation into a namespace to email with role,
// valid for ttl (0 means Config.InvitationTTL, at most InvitationMaxTTL).
// Admins and owners may invite; only owners invite owners; the member limit
// counts pending invitations. A pending invitation for the same address or
// an existing member is CONFLICT.
func (s *Service) Invite(ctx context.Context, nsID int64, email string, role Role, ttl time.Duration) (Invitation, error) {
	return Invitation{}, pending("invite")
}

// RevokeInvitation revokes a pending invitation.
func (s *Service) RevokeInvitation(ctx context.Context, invitationID int64) (Invitation, error) {
	return Invitation{}, pending("revoke invitation")
}

// AcceptInvitation makes the acting user a member with the invited role.
// The invitation is accepted by whoever holds the mailed token (the
// address it went to and the accepting user are both recorded); used,
// revoked and expired invitations are distinct BAD_USER_INPUT errors.
func (s *Service) AcceptInvitation(ctx context.Context, token string) (Member, error) {
	return Member{}, pending("accept invitation")
}

// Invitations lists a namespace's invitations by ID, pending ones and past.
func (s *Service) Invitations(ctx context.Context, nsID int64, page PageArgs) (Connection[Invitation], error) {
	return Connection[Invitation]{}, pending("list invitations")
}

// ---- loaders (the graph layer checks Casbin first) ----

// User returns one user by ID.
func (s *Service) User(ctx context.Context, id int64) (User, error) {
	return User{}, pending("user")
}

// Org returns one org by ID.
func (s *Service) Org(ctx context.Context, id int64) (Org, error) {
	return Org{}, pending("org")
}

// Namespace returns one namespace by ID.
func (s *Service) Namespace(ctx context.Context, id int64) (Namespace, error) {
	return Namespace{}, pending("namespace")
}

// NamespaceByName returns one namespace by its Kubernetes name.
func (s *Service) NamespaceByName(ctx context.Context, name string) (Namespace, error) {
	return Namespace{}, pending("namespace by name")
}

// Invitation returns one invitation by ID.
func (s *Service) Invitation(ctx context.Context, id int64) (Invitation, error) {
	return Invitation{}, pending("invitation")
}

// OrgRoleOf returns userID's role in an org, NOT_FOUND when not a member.
func (s *Service) OrgRoleOf(ctx context.Context, orgID, userID int64) (OrgRole, error) {
	return "", pending("org role")
}

// RoleOf returns userID's role in a namespace, NOT_FOUND when not a member.
func (s *Service) RoleOf(ctx context.Context, nsID, userID int64) (Role, error) {
	return "", pending("role")
}

// UsersByIDs loads users in one query; missing IDs are absent from the map.
func (s *Service) UsersByIDs(ctx context.Context, ids []int64) (map[int64]User, error) {
	return nil, pending("users by ids")
}

// OrgsByIDs loads orgs in one query.
func (s *Service) OrgsByIDs(ctx context.Context, ids []int64) (map[int64]Org, error) {
	return nil, pending("orgs by ids")
}

// NamespacesByIDs loads namespaces in one query.
func (s *Service) NamespacesByIDs(ctx context.Context, ids []int64) (map[int64]Namespace, error) {
	return nil, pending("namespaces by ids")
}

// NamespacesByOrgIDs loads each org's namespaces (by ID) in one query.
func (s *Service) NamespacesByOrgIDs(ctx context.Context, orgIDs []int64) (map[int64][]Namespace, error) {
	return nil, pending("namespaces by org ids")
}

// MembersByNamespaceIDs loads each namespace's members (by user ID) in one
// query.
func (s *Service) MembersByNamespaceIDs(ctx context.Context, nsIDs []int64) (map[int64][]Member, error) {
	return nil, pending("members by namespace ids")
}

// OrgsByUserIDs loads each user's orgs with their role in one query.
func (s *Service) OrgsByUserIDs(ctx context.Context, userIDs []int64) (map[int64][]OrgMembership, error) {
	return nil, pending("orgs by user ids")
}

// NamespacesByUserIDs loads each user's namespaces with their role in one
// query.
func (s *Service) NamespacesByUserIDs(ctx context.Context, userIDs []int64) (map[int64][]NamespaceMembership, error) {
	return nil, pending("namespaces by user ids")
}

// ---- audit ----

// AuditLog lists audit entries, newest first. Platform admins see every
// entry; others must filter on a Target they administer ("ns:ID" as a
// namespace owner or admin, "org:ID" as an org owner).
func (s *Service) AuditLog(ctx context.Context, filter AuditFilter, page PageArgs) (Connection[AuditEntry], error) {
	return Connection[AuditEntry]{}, pending("audit log")
}

// Prune deletes rate-limit windows, one-time tokens and sessions that
// expired long ago; the server calls it periodically.
func (s *Service) Prune(ctx context.Context) error {
	return pending("prune")
}
