package graph_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/graph"
	"github.com/tenantplane/tenantplane/graph/graphtest"
	"github.com/tenantplane/tenantplane/tenancy"
)

// The authorization matrix: every query and mutation of the schema, asked
// by every role, about the caller's own tenant and about another tenant.
// The fields come from the parsed schema, so a field added without an
// entry in specs fails; the outcome each cell expects follows from the
// field's @auth scope and the roles its entry allows.

type role string

const (
	anonymous     role = "anonymous"
	viewer        role = "viewer"
	developer     role = "developer"
	admin         role = "admin"
	owner         role = "owner"
	orgOwner      role = "org_owner"
	orgBilling    role = "org_billing"
	orgMember     role = "org_member"
	platformAdmin role = "platform_admin"
)

var roles = []role{anonymous, viewer, developer, admin, owner, orgOwner, orgBilling, orgMember, platformAdmin}

// nsRole and orgRole say what each actor holds in its tenant.
var nsRole = map[role]tenancy.Role{
	viewer: tenancy.RoleViewer, developer: tenancy.RoleDeveloper, admin: tenancy.RoleAdmin, owner: tenancy.RoleOwner,
}

var orgRole = map[role]tenancy.OrgRole{
	orgOwner: tenancy.OrgRoleOwner, orgBilling: tenancy.OrgRoleBilling, orgMember: tenancy.OrgRoleMember,
}

type outcome string

const (
	ok              outcome = "ok"
	unauthenticated outcome = "UNAUTHENTICATED"
	forbidden       outcome = "FORBIDDEN"
	notFound        outcome = "NOT_FOUND"
)

// tenant is one org with a namespace "main" in which each actor holds its
// role. The org owner is no member of main: it governs main as org owner.
// A second org owner and a second namespace owner let either actor leave.
type tenant struct {
	name       string
	users      map[role]graphtest.User
	owner2     graphtest.User // a second org owner, who restores the actors' org roles
	org, ns    int64
	invitation int64 // a pending invitation into main
}

type fixture struct {
	t      *testing.T
	e      *graphtest.Env
	own    *tenant
	other  *tenant
	padmin graphtest.User
	seq    int
}

func (f *fixture) unique(prefix string) string {
	f.seq++
	return fmt.Sprintf("%s-%d", prefix, f.seq)
}

func (f *fixture) signUp(name string) graphtest.User {
	return f.e.SignUp(f.t, f.unique(name)+"@example.com")
}

// namespace creates a namespace in tn's org in which every actor of tn
// holds its role, as in main.
func (f *fixture) namespace(tn *tenant) int64 {
	t := f.t
	oo := f.e.As(tn.users[orgOwner].ID, false)
	ns, err := f.e.Service.CreateNamespace(oo, tn.org, f.unique(tn.name))
	require.NoError(t, err)
	for r, nr := range nsRole {
		_, err := f.e.Service.AddMember(oo, ns.ID, tn.users[r].ID, nr)
		require.NoError(t, err)
	}
	require.NoError(t, f.e.Service.Leave(oo, ns.ID))
	return ns.ID
}

func (f *fixture) tenant(name string) *tenant {
	t := f.t
	tn := &tenant{name: name, users: map[role]graphtest.User{}}
	for _, r := range roles {
		if r != anonymous && r != platformAdmin {
			tn.users[r] = f.signUp(name + "-" + string(r))
		}
	}
	tn.org = tn.users[orgOwner].OrgID
	oo := f.e.As(tn.users[orgOwner].ID, false)
	for r, or := range orgRole {
		if r != orgOwner {
			_, err := f.e.Service.AddOrgMember(oo, tn.org, tn.users[r].ID, or)
			require.NoError(t, err)
		}
	}
	tn.owner2 = f.signUp(name + "-org-owner-2")
	_, err := f.e.Service.AddOrgMember(oo, tn.org, tn.owner2.ID, tenancy.OrgRoleOwner)
	require.NoError(t, err)
	tn.ns = f.namespace(tn)
	secondNs := f.signUp(name + "-owner-2")
	_, err = f.e.Service.AddMember(oo, tn.ns, secondNs.ID, tenancy.RoleOwner)
	require.NoError(t, err)
	inv, err := f.e.Service.Invite(oo, tn.ns, f.unique("invitee")+"@example.com", tenancy.RoleViewer, 0)
	require.NoError(t, err)
	tn.invitation = inv.ID
	return tn
}

// cell is one query by one role about one tenant.
type cell struct {
	f      *fixture
	role   role
	own    bool
	target *tenant
	actor  graphtest.User
	expect outcome
}

func (c *cell) ctx() (ctxUser int64, admin bool) { return c.actor.ID, c.role == platformAdmin }

func (c *cell) freshUser() int64 { return c.f.signUp("target").ID }

// manager acts as the target tenant's second org owner, who governs its
// org and namespaces and is no actor of the matrix.
func (c *cell) manager() context.Context { return c.f.e.As(c.target.owner2.ID, false) }

func (c *cell) freshMember(r tenancy.Role) int64 {
	id := c.freshUser()
	_, err := c.f.e.Service.AddMember(c.manager(), c.target.ns, id, r)
	require.NoError(c.f.t, err)
	return id
}

func (c *cell) freshOrgMember() int64 {
	id := c.freshUser()
	_, err := c.f.e.Service.AddOrgMember(c.manager(), c.target.org, id, tenancy.OrgRoleMember)
	require.NoError(c.f.t, err)
	return id
}

// allowed reports whether the cell expects to get through, so that
// destructive mutations get objects of their own only then.
func (c *cell) allowed() bool { return c.expect == ok }

type spec struct {
	doc  string
	vars func(c *cell) map[string]any
	// allow lists the roles that may, in their own tenant, for the
	// scopes NAMESPACE, ORG and INVITATION.
	allow []role
	// padmin is the platform admin's outcome, for the scopes that check
	// an action.
	padmin outcome
	// except overrides the outcome of roles in their own tenant where
	// the tenancy service has the last word.
	except map[role]outcome
	// lenient accepts any error but UNAUTHENTICATED, FORBIDDEN and
	// NOT_FOUND as getting through (a made-up secret token is refused
	// with BAD_USER_INPUT by the service).
	lenient bool
	// session runs the cell on a session of its own (log-out ends it).
	session bool
	// restore undoes what an allowed cell did to its actor.
	restore func(c *cell)
}

var nsReaders = []role{viewer, developer, admin, owner, orgOwner}
var nsManagers = []role{admin, owner, orgOwner}

func id(v int64) string { return fmt.Sprint(v) }

func specs() map[string]spec {
	nsVars := func(c *cell) map[string]any { return map[string]any{"id": id(c.target.ns)} }
	orgVars := func(c *cell) map[string]any { return map[string]any{"id": id(c.target.org)} }
	freshNs := func(c *cell) map[string]any {
		if c.allowed() {
			return map[string]any{"id": id(c.f.namespace(c.target))}
		}
		return nsVars(c)
	}
	return map[string]spec{
		"Query.me":         {doc: `{ me { id email } }`},
		"Query.orgs":       {doc: `{ orgs { nodes { id } } }`},
		"Query.namespaces": {doc: `{ namespaces { nodes { id } } }`},
		"Query.apiTokens":  {doc: `{ apiTokens { nodes { id } } }`},
		"Query.auditLog":   {doc: `{ auditLog(first: 5) { nodes { id action } } }`, padmin: ok},
		"Query.user": {doc: `query($id: ID!) { user(id: $id) { id email } }`, padmin: ok,
			vars: func(c *cell) map[string]any { return map[string]any{"id": id(c.target.users[viewer].ID)} }},
		"Query.org": {doc: `query($id: ID!) { org(id: $id) { id name } }`, vars: orgVars,
			allow: []role{orgOwner, orgBilling, orgMember}, padmin: ok},
		"Query.namespace": {doc: `query($id: ID!) { namespace(id: $id) { id name } }`, vars: nsVars,
			allow: nsReaders, padmin: ok},
		"Query.members": {doc: `query($id: ID!) { members(namespaceId: $id) { nodes { role } } }`, vars: nsVars,
			allow: nsReaders, padmin: ok},
		"Query.usage": {doc: `query($id: ID!) { usage(namespaceId: $id, from: "2030-01-01T00:00:00Z", to: "2030-01-02T00:00:00Z", granularity: HOUR) { series { resource } } }`,
			vars: nsVars, allow: nsReaders, padmin: ok},
		"Query.autoTopUp": {doc: `query($id: ID!) { autoTopUp(orgId: $id) { enabled threshold } }`,
			vars: orgVars, allow: []role{orgOwner, orgBilling}, padmin: forbidden},
		"Query.stripeReconciliation": {doc: `{ stripeReconciliation { payments discrepancies { kind } } }`, padmin: ok},
		"Mutation.topUp": {doc: `mutation($id: ID!) { topUp(orgId: $id, amount: "25") { checkoutUrl status } }`,
			vars: orgVars, allow: []role{orgOwner, orgBilling}, padmin: forbidden},
		"Mutation.setAutoTopUp": {doc: `mutation($id: ID!) { setAutoTopUp(orgId: $id, input: {enabled: false, threshold: "5", amount: "20", paymentMethodId: ""}) { enabled } }`,
			vars: orgVars, allow: []role{orgOwner, orgBilling}, padmin: forbidden},
		"Query.orgUsage": {doc: `query($id: ID!) { orgUsage(orgId: $id, from: "2030-01-01T00:00:00Z", to: "2030-01-02T00:00:00Z", granularity: DAY) { series { resource } } }`,
			vars: orgVars, allow: []role{orgOwner, orgBilling}, padmin: forbidden},
		"Query.orgDebt": {doc: `query($id: ID!) { orgDebt(orgId: $id) { state usableMicros } }`,
			vars: orgVars, allow: []role{orgOwner, orgBilling}, padmin: forbidden},
		"Query.orgDebtTransitions": {doc: `query($id: ID!) { orgDebtTransitions(orgId: $id, first: 5) { id event } }`,
			vars: orgVars, allow: []role{orgOwner, orgBilling}, padmin: forbidden},
		"Query.orgBillingWebhook": {doc: `query($id: ID!) { orgBillingWebhook(orgId: $id) { url } }`,
			vars: orgVars, allow: []role{orgOwner, orgBilling}, padmin: forbidden},
		"Query.orgSpendingLimits": {doc: `query($id: ID!) { orgSpendingLimits(orgId: $id) { namespaceId limitMicros } }`,
			vars: orgVars, allow: []role{orgOwner, orgBilling}, padmin: forbidden},
		"Query.namespaceSpendingLimit": {doc: `query($id: ID!) { namespaceSpendingLimit(namespaceId: $id) { limitMicros } }`,
			vars: nsVars, allow: []role{orgOwner, orgBilling}, padmin: forbidden},
		"Query.invitations": {doc: `query($id: ID!) { invitations(namespaceId: $id) { nodes { id } } }`, vars: nsVars,
			allow: nsManagers, padmin: ok},

		"Query.orgBalance": {doc: `query($id: ID!) { orgBalance(orgId: $id) { usableMicros } }`, vars: orgVars,
			allow: []role{orgOwner, orgBilling}, padmin: ok},
		"Query.ledgerEntries": {doc: `query($id: ID!) { ledgerEntries(orgId: $id) { edges { node { id } } } }`, vars: orgVars,
			allow: []role{orgOwner, orgBilling}, padmin: ok},
		"Query.creditGrants": {doc: `query($id: ID!) { creditGrants(orgId: $id) { id } }`, vars: orgVars,
			allow: []role{orgOwner, orgBilling}, padmin: ok},
		"Query.invoices": {doc: `query($id: ID!) { invoices(orgId: $id) { edges { node { id } } } }`, vars: orgVars,
			allow: []role{orgOwner, orgBilling}, padmin: ok},
		"Query.invoice": {doc: `query($o: ID!, $id: ID!) { invoice(orgId: $o, id: $id) { id html } }`,
			vars: func(c *cell) map[string]any {
				p := billing.DefaultInvoiceConfig().PeriodOf(c.f.e.Clock.Now())
				inv, err := c.f.e.Billing.GenerateInvoice(context.Background(), c.target.org, p, 0)
				require.NoError(c.f.t, err)
				return map[string]any{"o": id(c.target.org), "id": id(inv.ID)}
			}, allow: []role{orgOwner, orgBilling}, padmin: ok},
		"Query.giftCodes": {doc: `{ giftCodes { edges { node { id } } } }`, padmin: ok},
		"Mutation.createGiftCode": {doc: `mutation { createGiftCode(input: {amountMicros: "1000000", currency: "USD",
			expiresAt: "2100-01-01T00:00:00Z", maxRedemptions: 1}) { code } }`, padmin: ok},
		"Mutation.redeemGiftCode": {doc: `mutation($id: ID!, $code: String!) { redeemGiftCode(orgId: $id, code: $code) { reference } }`,
			vars: func(c *cell) map[string]any {
				code, _, err := c.f.e.GiftCodes.Create(c.f.e.As(c.f.padmin.ID, true), billing.GiftCodeInput{
					Amount: 1_000_000, Currency: "USD", ExpiresAt: c.f.e.Clock.Now().Add(time.Hour), MaxRedemptions: 1,
				})
				require.NoError(c.f.t, err)
				return map[string]any{"id": id(c.target.org), "code": code}
			},
			// Platform admins create codes and see every ledger, but
			// redeem for no org.
			allow: []role{orgOwner, orgBilling}, padmin: forbidden},

		"Mutation.signUp": {doc: `mutation($e: String!) { signUp(input: {email: $e, password: "correct horse battery"}) { id } }`,
			vars: func(c *cell) map[string]any { return map[string]any{"e": c.f.unique("new") + "@example.com"} }},
		"Mutation.verifyEmail":        {doc: `mutation { verifyEmail(token: "made-up") { id } }`, lenient: true},
		"Mutation.resendVerification": {doc: `mutation { resendVerification }`},
		"Mutation.logIn": {doc: `mutation($e: String!) { logIn(input: {email: $e, password: "correct horse battery"}) { token } }`,
			vars: func(c *cell) map[string]any { return map[string]any{"e": c.target.users[viewer].Email} }},
		"Mutation.logOut":               {doc: `mutation { logOut }`, session: true},
		"Mutation.requestPasswordReset": {doc: `mutation { requestPasswordReset(email: "nobody@example.com") }`},
		"Mutation.resetPassword": {doc: `mutation { resetPassword(input: {token: "made-up", newPassword: "another long password"}) }`,
			lenient: true},
		"Mutation.createApiToken": {doc: `mutation { createApiToken(input: {name: "ci"}) { id token } }`},
		"Mutation.revokeApiToken": {doc: `mutation($id: ID!) { revokeApiToken(id: $id) }`,
			vars: func(c *cell) map[string]any {
				if c.role == anonymous {
					return map[string]any{"id": "1"}
				}
				u, admin := c.ctx()
				tok, err := c.f.e.Service.CreateAPIToken(c.f.e.As(u, admin), c.f.unique("t"), 0)
				require.NoError(c.f.t, err)
				return map[string]any{"id": id(tok.ID)}
			}},
		"Mutation.disableUser": {doc: `mutation($id: ID!) { disableUser(userId: $id, reason: "abuse") }`, padmin: ok,
			vars: func(c *cell) map[string]any { return map[string]any{"id": id(c.freshUser())} }},
		"Mutation.enableUser": {doc: `mutation($id: ID!) { enableUser(userId: $id) }`, padmin: ok,
			vars: func(c *cell) map[string]any {
				u := c.freshUser()
				require.NoError(c.f.t, c.f.e.Service.DisableUser(c.f.e.System(), u))
				return map[string]any{"id": id(u)}
			}},

		"Mutation.createOrg": {doc: `mutation($n: String!) { createOrg(input: {name: $n}) { id } }`,
			vars: func(c *cell) map[string]any { return map[string]any{"n": c.f.unique("org")} }},
		"Mutation.renameOrg": {doc: `mutation($id: ID!, $n: String!) { renameOrg(input: {orgId: $id, name: $n}) { id } }`,
			vars: func(c *cell) map[string]any {
				return map[string]any{"id": id(c.target.org), "n": c.f.unique(c.target.name)}
			}, allow: []role{orgOwner}, padmin: forbidden},
		"Mutation.addOrgMember": {doc: `mutation($o: ID!, $u: ID!) { addOrgMember(input: {orgId: $o, userId: $u, role: MEMBER}) { role } }`,
			vars: func(c *cell) map[string]any {
				return map[string]any{"o": id(c.target.org), "u": id(c.freshUser())}
			}, allow: []role{orgOwner}, padmin: forbidden},
		"Mutation.changeOrgRole": {doc: `mutation($o: ID!, $u: ID!) { changeOrgRole(input: {orgId: $o, userId: $u, role: BILLING}) { role } }`,
			vars: func(c *cell) map[string]any {
				return map[string]any{"o": id(c.target.org), "u": id(c.freshOrgMember())}
			}, allow: []role{orgOwner}, padmin: forbidden},
		"Mutation.removeOrgMember": {doc: `mutation($o: ID!, $u: ID!) { removeOrgMember(input: {orgId: $o, userId: $u}) }`,
			vars: func(c *cell) map[string]any {
				return map[string]any{"o": id(c.target.org), "u": id(c.freshOrgMember())}
			}, allow: []role{orgOwner}, padmin: forbidden},
		"Mutation.leaveOrg": {doc: `mutation($id: ID!) { leaveOrg(orgId: $id) }`, vars: orgVars,
			allow: []role{orgOwner, orgBilling, orgMember},
			// Platform admins see every org but belong to none: nothing to leave.
			padmin: notFound,
			restore: func(c *cell) {
				_, err := c.f.e.Service.AddOrgMember(c.manager(), c.target.org, c.actor.ID, orgRole[c.role])
				require.NoError(c.f.t, err)
			}},
		"Mutation.transferOrgOwnership": {doc: `mutation($o: ID!, $u: ID!) { transferOrgOwnership(input: {orgId: $o, userId: $u}) }`,
			vars: func(c *cell) map[string]any {
				if c.allowed() {
					return map[string]any{"o": id(c.target.org), "u": id(c.freshOrgMember())}
				}
				return map[string]any{"o": id(c.target.org), "u": id(c.target.users[orgMember].ID)}
			}, allow: []role{orgOwner}, padmin: forbidden,
			restore: func(c *cell) {
				_, err := c.f.e.Service.SetOrgMemberRole(c.manager(), c.target.org, c.actor.ID, tenancy.OrgRoleOwner)
				require.NoError(c.f.t, err)
			}},
		"Mutation.createNamespace": {doc: `mutation($o: ID!, $n: String!) { createNamespace(input: {orgId: $o, name: $n}) { id } }`,
			vars: func(c *cell) map[string]any {
				return map[string]any{"o": id(c.target.org), "n": c.f.unique(c.target.name)}
			}, allow: []role{orgOwner}, padmin: forbidden},
		"Mutation.deleteNamespace": {doc: `mutation($id: ID!) { deleteNamespace(id: $id) { state } }`, vars: freshNs,
			allow: []role{owner, orgOwner}, padmin: forbidden},
		"Mutation.adjustBalance": {doc: `mutation($o: ID!) { adjustBalance(input: {orgId: $o, amount: "1.5", currency: "USD", reason: "test"}) { cash } }`,
			vars: func(c *cell) map[string]any { return map[string]any{"o": id(c.target.org)} }, padmin: ok},
		"Mutation.grantCredit": {doc: `mutation($o: ID!) { grantCredit(input: {orgId: $o, amount: "2", currency: "USD", reason: "test"}) { credit } }`,
			vars: func(c *cell) map[string]any { return map[string]any{"o": id(c.target.org)} }, padmin: ok},
		"Mutation.suspendOrg": {doc: `mutation($o: ID!) { suspendOrg(orgId: $o, reason: "test") }`,
			vars: func(c *cell) map[string]any { return map[string]any{"o": id(c.f.signUp("target").OrgID)} }, padmin: ok},
		"Mutation.resumeOrg": {doc: `mutation($o: ID!) { resumeOrg(orgId: $o, reason: "paid") }`,
			vars: func(c *cell) map[string]any { return map[string]any{"o": id(c.f.signUp("target").OrgID)} }, padmin: ok},
		"Mutation.changeOrgPlan": {doc: `mutation($o: ID!) { changeOrgPlan(orgId: $o, plan: "team", reason: "test") { plan } }`,
			vars: func(c *cell) map[string]any { return map[string]any{"o": id(c.f.signUp("target").OrgID)} }, padmin: ok},
		"Mutation.voidInvoice": {doc: `mutation($o: ID!, $id: ID!) { voidInvoice(orgId: $o, id: $id, reason: "test") { status } }`,
			vars: func(c *cell) map[string]any { return freshInvoice(c, false) }, padmin: ok},
		"Mutation.markInvoicePaid": {doc: `mutation($o: ID!, $id: ID!) { markInvoicePaid(orgId: $o, id: $id, reason: "test") { status } }`,
			vars: func(c *cell) map[string]any { return freshInvoice(c, true) }, padmin: ok},
		"Mutation.suspendNamespace": {doc: `mutation($id: ID!) { suspendNamespace(id: $id, reason: "test") { state } }`,
			vars: freshNs, padmin: ok},
		"Mutation.resumeNamespace": {doc: `mutation($id: ID!) { resumeNamespace(id: $id, reason: "paid") { state } }`,
			vars: func(c *cell) map[string]any {
				v := freshNs(c)
				if c.allowed() {
					var ns int64
					_, _ = fmt.Sscan(v["id"].(string), &ns)
					_, err := c.f.e.Service.SuspendNamespace(c.f.e.System(), ns, "test")
					require.NoError(c.f.t, err)
				}
				return v
			}, padmin: ok},
		// The org's owners configure its webhook; owners and billing
		// members set spending limits.
		"Mutation.setBillingWebhook": {doc: `mutation($id: ID!) { setBillingWebhook(orgId: $id, url: "https://hooks.example.com/billing") { secret } }`,
			vars: orgVars, allow: []role{orgOwner}, padmin: forbidden},
		"Mutation.removeBillingWebhook": {doc: `mutation($id: ID!) { removeBillingWebhook(orgId: $id) }`,
			vars: func(c *cell) map[string]any {
				if c.allowed() {
					_, _, err := c.f.e.Debt.SetWebhook(context.Background(), c.target.org, "https://hooks.example.com/x", tenancy.Actor{System: "matrix"})
					require.NoError(c.f.t, err)
				}
				return orgVars(c)
			}, allow: []role{orgOwner}, padmin: forbidden},
		"Mutation.setSpendingLimit": {doc: `mutation($id: ID!) { setSpendingLimit(namespaceId: $id, limitMicros: "5000000") { limitMicros } }`,
			vars: nsVars, allow: []role{orgOwner, orgBilling}, padmin: forbidden},
		"Mutation.kubeconfig": {doc: `mutation($id: ID!) { kubeconfig(namespaceId: $id) { namespace expiresAt } }`,
			vars: nsVars, allow: []role{viewer, developer, admin, owner},
			// Org owners and platform admins may see main but are no
			// members of it: only members get a kubeconfig.
			except: map[role]outcome{orgOwner: forbidden}, padmin: forbidden},
		"Mutation.revokeMyKubeconfigs": {doc: `mutation { revokeMyKubeconfigs }`},
		"Mutation.revokeUserKubeconfigs": {doc: `mutation($id: ID!) { revokeUserKubeconfigs(userId: $id, reason: "leaked") }`,
			padmin: ok, vars: func(c *cell) map[string]any { return map[string]any{"id": id(c.target.users[viewer].ID)} }},
		// Hosts are managed by the namespace's own owners and admins.
		"Mutation.claimHost": {doc: `mutation($ns: ID!, $h: String!) { claimHost(namespaceId: $ns, host: $h) { host } }`,
			vars: func(c *cell) map[string]any {
				return map[string]any{"ns": id(c.target.ns), "h": c.f.unique("www") + ".example.com"}
			}, allow: []role{admin, owner}, padmin: forbidden},
		"Mutation.releaseHost": {doc: `mutation($ns: ID!, $h: String!) { releaseHost(namespaceId: $ns, host: $h) }`,
			vars: func(c *cell) map[string]any {
				h := c.f.unique("api") + ".example.com"
				if c.allowed() {
					_, err := c.f.e.Isolation.Hosts.Claim(c.f.e.System(), c.target.ns, h)
					require.NoError(c.f.t, err)
				}
				return map[string]any{"ns": id(c.target.ns), "h": h}
			}, allow: []role{admin, owner}, padmin: forbidden},
		"Mutation.invite": {doc: `mutation($ns: ID!, $e: String!) { invite(input: {namespaceId: $ns, email: $e, role: VIEWER}) { id status } }`,
			vars: func(c *cell) map[string]any {
				return map[string]any{"ns": id(c.target.ns), "e": c.f.unique("invitee") + "@example.com"}
			}, allow: nsManagers, padmin: forbidden},
		"Mutation.acceptInvitation": {doc: `mutation { acceptInvitation(token: "made-up") { role } }`, lenient: true},
		"Mutation.revokeInvitation": {doc: `mutation($id: ID!) { revokeInvitation(id: $id) { status } }`,
			vars: func(c *cell) map[string]any {
				if !c.allowed() {
					return map[string]any{"id": id(c.target.invitation)}
				}
				inv, err := c.f.e.Service.Invite(c.manager(), c.target.ns, c.f.unique("invitee")+"@example.com", tenancy.RoleViewer, 0)
				require.NoError(c.f.t, err)
				return map[string]any{"id": id(inv.ID)}
			}, allow: nsManagers, padmin: forbidden},
		"Mutation.addMember": {doc: `mutation($ns: ID!, $u: ID!) { addMember(input: {namespaceId: $ns, userId: $u, role: VIEWER}) { role } }`,
			vars: func(c *cell) map[string]any {
				return map[string]any{"ns": id(c.target.ns), "u": id(c.freshUser())}
			}, allow: nsManagers, padmin: forbidden},
		"Mutation.changeRole": {doc: `mutation($ns: ID!, $u: ID!) { changeRole(input: {namespaceId: $ns, userId: $u, role: DEVELOPER}) { role } }`,
			vars: func(c *cell) map[string]any {
				return map[string]any{"ns": id(c.target.ns), "u": id(c.freshMember(tenancy.RoleViewer))}
			}, allow: nsManagers, padmin: forbidden},
		"Mutation.removeMember": {doc: `mutation($ns: ID!, $u: ID!) { removeMember(input: {namespaceId: $ns, userId: $u}) }`,
			vars: func(c *cell) map[string]any {
				return map[string]any{"ns": id(c.target.ns), "u": id(c.freshMember(tenancy.RoleViewer))}
			}, allow: nsManagers, padmin: forbidden},
		"Mutation.leaveNamespace": {doc: `mutation($id: ID!) { leaveNamespace(namespaceId: $id) }`, vars: nsVars,
			allow: []role{viewer, developer, admin, owner},
			// Org owners and platform admins may see main but are no
			// members of it: the service finds nothing to leave.
			except: map[role]outcome{orgOwner: notFound}, padmin: notFound,
			restore: func(c *cell) {
				_, err := c.f.e.Service.AddMember(c.manager(), c.target.ns, c.actor.ID, nsRole[c.role])
				require.NoError(c.f.t, err)
			}},
		"Mutation.transferOwnership": {doc: `mutation($ns: ID!, $u: ID!) { transferOwnership(input: {namespaceId: $ns, userId: $u}) }`,
			vars: func(c *cell) map[string]any {
				if c.allowed() {
					return map[string]any{"ns": id(c.target.ns), "u": id(c.freshMember(tenancy.RoleViewer))}
				}
				return map[string]any{"ns": id(c.target.ns), "u": id(c.target.users[viewer].ID)}
			}, allow: []role{owner},
			// An org owner governs main without being a member: it has
			// no ownership of its own to hand over.
			except: map[role]outcome{orgOwner: notFound}, padmin: forbidden,
			restore: func(c *cell) {
				_, err := c.f.e.Service.SetMemberRole(c.manager(), c.target.ns, c.actor.ID, tenancy.RoleOwner)
				require.NoError(c.f.t, err)
			}},
	}
}

// expect derives a cell's outcome from the field's scope and its spec.
func expect(scope string, s spec, r role, own bool) outcome {
	switch {
	case scope == "PUBLIC":
		return ok
	case r == anonymous:
		return unauthenticated
	case scope == "USER":
		return ok
	case r == platformAdmin:
		return s.padmin
	case scope == "PLATFORM":
		return forbidden
	case !own:
		return notFound // another tenant's objects do not exist for the caller
	}
	if o, found := s.except[r]; found {
		return o
	}
	if slices.Contains(s.allow, r) {
		return ok
	}
	if scope == "ORG" && orgRole[r] == "" {
		return notFound // a namespace member who is no org member cannot see the org
	}
	return forbidden
}

func authScope(f *ast.FieldDefinition) string {
	if d := f.Directives.ForName("auth"); d != nil {
		if a := d.Arguments.ForName("scope"); a != nil {
			return a.Value.Raw
		}
	}
	return ""
}

func TestAuthorizationMatrix(t *testing.T) {
	t.Parallel()
	e := graphtest.New(t)
	f := &fixture{t: t, e: e}
	f.own, f.other = f.tenant("alpha"), f.tenant("beta")
	f.padmin = f.signUp("padmin")
	_, err := e.Service.GrantPlatformAdmin(e.System(), f.padmin.Email)
	require.NoError(t, err)
	tok, err := e.Service.LogIn(e.As(0, false), f.padmin.Email, "correct horse battery")
	require.NoError(t, err)
	f.padmin.Token = tok.Secret
	newPlan(t, e, "team", billing.PlanPostpaid) // changeOrgPlan moves orgs to it
	e.SyncAuthz(t)

	all := specs()
	maps.Copy(all, pricingSpecs())
	s := graph.NewExecutableSchema(graph.Deps{}).Schema()
	var fields []string
	defs := map[string]*ast.FieldDefinition{}
	for _, root := range []*ast.Definition{s.Query, s.Mutation} {
		for _, fd := range root.Fields {
			if strings.HasPrefix(fd.Name, "__") {
				continue
			}
			name := root.Name + "." + fd.Name
			fields = append(fields, name)
			defs[name] = fd
		}
	}
	slices.Sort(fields)
	for name := range all {
		require.Contains(t, fields, name, "the matrix names a field the schema lacks")
	}

	cells := 0
	for _, name := range fields {
		sp, found := all[name]
		if !found {
			t.Errorf("%s has no entry in the authorization matrix", name)
			continue
		}
		scope := authScope(defs[name])
		fieldName := defs[name].Name
		for _, r := range roles {
			for _, own := range []bool{true, false} {
				c := &cell{f: f, role: r, own: own, target: f.own, expect: expect(scope, sp, r, own)}
				if !own {
					c.target = f.other
				}
				switch r {
				case anonymous:
				case platformAdmin:
					c.actor = f.padmin
				default:
					c.actor = f.own.users[r]
				}
				token := c.actor.Token
				if sp.session && r != anonymous {
					tok, err := e.Service.LogIn(e.As(0, false), c.actor.Email, "correct horse battery")
					require.NoError(t, err)
					token = tok.Secret
				}
				var vars map[string]any
				if sp.vars != nil {
					vars = sp.vars(c)
				}
				e.SyncAuthz(t)
				resp := e.Do(t, token, sp.doc, vars)
				got := ok
				for _, er := range resp.Errors {
					if len(er.Path) > 0 && er.Path[0] != fieldName {
						continue
					}
					code := outcome(er.Code())
					if sp.lenient && code != unauthenticated && code != forbidden && code != notFound {
						continue
					}
					got = code
					if got == ok || got == "" {
						got = outcome("error without code: " + er.Message)
					}
					break
				}
				where := "own tenant"
				if !own {
					where = "other tenant"
				}
				if got != c.expect {
					t.Errorf("%s by %s about the %s: got %s, want %s (errors %v)", name, r, where, got, c.expect, resp.Errors)
				}
				if got == ok && sp.restore != nil && r != anonymous {
					sp.restore(c)
				}
				cells++
			}
		}
	}
	t.Logf("%d fields × %d roles × 2 tenants = %d cells", len(fields), len(roles), cells)
}

// freshInvoice makes an org of its own with an invoice an admin may void
// (a draft) or, when finalized, mark paid (a finalized postpaid bill).
func freshInvoice(c *cell, finalized bool) map[string]any {
	t, e := c.f.t, c.f.e
	ctx := context.Background()
	org := c.f.signUp("billed").OrgID
	if finalized {
		_, err := e.DB.Pool.Exec(ctx, `UPDATE orgs SET plan = 'team' WHERE id = $1`, org)
		require.NoError(t, err)
	}
	inv, err := e.Billing.GenerateInvoice(ctx, org, billing.DefaultInvoiceConfig().PeriodOf(e.Clock.Now()), 0)
	require.NoError(t, err)
	if finalized {
		_, err = e.Billing.FinalizeInvoice(ctx, inv.ID)
		require.NoError(t, err)
	}
	return map[string]any{"o": id(org), "id": id(inv.ID)}
}
