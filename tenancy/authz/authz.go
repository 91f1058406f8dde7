package authz

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/casbin/casbin/v2"
	"github.com/casbin/casbin/v2/model"
	"github.com/casbin/casbin/v2/persist"

	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/schema"
)

// Action is a permission, "object.action", such as "namespace.read". The
// object is the type the action applies to, as in the policy lines.
type Action string

// The actions that the policy grants.
const (
	NamespaceRead         Action = "namespace.read"
	NamespaceKubeconfig   Action = "namespace.kubeconfig"
	NamespaceUsage        Action = "namespace.usage"
	NamespaceHost         Action = "namespace.host"
	NamespaceCreate       Action = "namespace.create"
	NamespaceDelete       Action = "namespace.delete"
	NamespaceTransfer     Action = "namespace.transfer"
	NamespaceSuspend      Action = "namespace.suspend"
	MemberRead            Action = "member.read"
	MemberAdd             Action = "member.add"
	MemberUpdate          Action = "member.update"
	MemberRemove          Action = "member.remove"
	InvitationRead        Action = "invitation.read"
	InvitationCreate      Action = "invitation.create"
	InvitationRevoke      Action = "invitation.revoke"
	OrgRead               Action = "org.read"
	OrgUpdate             Action = "org.update"
	OrgBilling            Action = "org.billing"
	OrgLedger             Action = "org.ledger"
	OrgTransfer           Action = "org.transfer"
	OrgMemberRead         Action = "orgmember.read"
	OrgMemberAdd          Action = "orgmember.add"
	OrgMemberUpdate       Action = "orgmember.update"
	OrgMemberRemove       Action = "orgmember.remove"
	UserRead              Action = "user.read"
	UserDisable           Action = "user.disable"
	UserRevokeKubeconfigs Action = "user.revoke_kubeconfigs"
	AuditRead             Action = "audit.read"
	BillingGiftCode       Action = "billing.giftcode"
)

// Split returns the object type and the action proper.
func (a Action) Split() (obj, act string) {
	obj, act, _ = strings.Cut(string(a), ".")
	return obj, act
}

// Valid reports whether a has the form object.action with both parts set.
func (a Action) Valid() bool {
	obj, act, ok := strings.Cut(string(a), ".")
	return ok && obj != "" && act != "" && !strings.Contains(act, ".")
}

// policyTypes files each object type under a policy type of its own (see
// schema/casbin/model.conf), so that a check scans only its object's lines.
var policyTypes = map[string]string{
	"namespace":  "p",
	"member":     "p2",
	"invitation": "p3",
	"org":        "p4",
	"orgmember":  "p5",
	"user":       "p6",
	"audit":      "p7",
	"billing":    "p8",
	"pricebook":  "p9",
}

// PolicyType returns the policy type ("p", "p2", …) under which the
// permission lines of object type obj are kept, and false for an object
// type the model does not know.
func PolicyType(obj string) (string, bool) {
	pt, ok := policyTypes[obj]
	return pt, ok
}

// enforceContexts holds, per object type, the Casbin context that selects
// its policy type and matcher.
var enforceContexts = func() map[string]casbin.EnforceContext {
	m := make(map[string]casbin.EnforceContext, len(policyTypes))
	for obj, pt := range policyTypes {
		m[obj] = casbin.EnforceContext{RType: "r", PType: pt, EType: "e", MType: "m" + strings.TrimPrefix(pt, "p")}
	}
	return m
}()

// Domain is where a role is held: "ns:ID", "org:ID" or Platform.
type Domain string

// Platform is the global domain, "*": a role held there holds in every
// domain. Platform admins hold their role there, and role inheritance lines
// of the policy file use it. In a Filter or a Refresh it stands for every
// domain of the user.
const Platform Domain = GlobalDomain

// NamespaceDomain is the domain of namespace id.
func NamespaceDomain(id int64) Domain { return Domain("ns:" + strconv.FormatInt(id, 10)) }

// OrgDomain is the domain of org id.
func OrgDomain(id int64) Domain { return Domain("org:" + strconv.FormatInt(id, 10)) }

// Kind returns "ns", "org" or "platform", and "" for a malformed domain.
func (d Domain) Kind() string {
	if d == Platform {
		return "platform"
	}
	kind, id, ok := strings.Cut(string(d), ":")
	if !ok || (kind != "ns" && kind != "org") {
		return ""
	}
	if n, err := strconv.ParseInt(id, 10, 64); err != nil || n <= 0 {
		return ""
	}
	return kind
}

// Subject is the Casbin subject of a user, "user:ID".
func Subject(userID int64) string { return "user:" + strconv.FormatInt(userID, 10) }

// The role names in g lines. Namespace roles keep the names of the
// membership table; org roles carry the prefix org_.
const (
	RoleOwner         = "owner"
	RoleAdmin         = "admin"
	RoleDeveloper     = "developer"
	RoleViewer        = "viewer"
	RoleOrgOwner      = "org_owner"
	RoleOrgBilling    = "org_billing"
	RoleOrgMember     = "org_member"
	RolePlatformAdmin = "platform_admin" // held in Platform
)

// Filter selects the role assignments of one user, in one domain or, when
// Domain is Platform, in all of them. The adapter's LoadFilteredPolicy
// receives it and adds only those g lines to the model it is given.
type Filter struct {
	UserID int64
	Domain Domain
}

// Config configures an Authorizer.
type Config struct {
	// Adapter loads the permission lines and the role assignments; its
	// LoadFilteredPolicy must accept a Filter. Required.
	Adapter persist.FilteredAdapter
	// Logger receives enforcement errors and refreshes; nil discards.
	Logger *slog.Logger
}

func (c *Config) validate() error {
	if c.Adapter == nil {
		return errors.New("authz config: adapter is required")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Authorizer decides what users may do. It is safe for concurrent use:
// checks run under a read lock, refreshes under a short write lock. The
// Casbin enforcer is the authority: after each load it decides, for every
// role and action, whether the role may, and a user's check is then a
// look-up of the roles the user holds (see rebuildGrants).
type Authorizer struct {
	e        *casbin.SyncedEnforcer
	rm       *roleManager
	template model.Model
	adapter  persist.FilteredAdapter
	log      *slog.Logger
	loaded   atomic.Bool
	checks   atomic.Int64
}

// memoLimit bounds how many checks may run between two resets of Casbin's
// memo of role lookups, which otherwise grows with every distinct (user,
// role, domain) asked about until the policy next changes.
const memoLimit = 1 << 20

// New builds an Authorizer from the embedded model and loads the whole
// policy through cfg.Adapter.
func New(ctx context.Context, cfg Config) (*Authorizer, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	m, err := model.NewModelFromString(string(schema.CasbinModel))
	if err != nil {
		return nil, fmt.Errorf("parsing casbin model: %w", err)
	}
	e, err := casbin.NewSyncedEnforcer(m.Copy())
	if err != nil {
		return nil, fmt.Errorf("creating enforcer: %w", err)
	}
	rm := newRoleManager()
	e.SetRoleManager(rm)
	e.SetAdapter(cfg.Adapter)
	// The membership tables are the source of truth: changes made through
	// the enforcer stay in memory and are never written back.
	e.EnableAutoSave(false)
	a := &Authorizer{e: e, rm: rm, template: m, adapter: cfg.Adapter, log: cfg.Logger}
	if err := a.Reload(ctx); err != nil {
		return nil, err
	}
	return a, nil
}

// Reload replaces every permission and assignment with what the adapter
// holds now. Checks go on against the old policy until the new one is in.
func (a *Authorizer) Reload(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("reloading policy: %w", err)
	}
	if err := a.e.LoadPolicy(); err != nil {
		return fmt.Errorf("reloading policy: %w", err)
	}
	if err := a.rebuildGrants(); err != nil {
		return fmt.Errorf("reloading policy: %w", err)
	}
	a.loaded.Store(true)
	return nil
}

// rebuildGrants asks the enforcer, for every role and every action that a
// permission line names, whether the role may perform the action, and
// hands the answers to the role manager: a user's check is then a probe
// of the assignments for the roles that grant the action, which is what
// the enforcer's matcher computes (r.act == p.act && g(r.sub, p.sub,
// r.dom), allow only) at a fixed cost of a few microseconds and dozens of
// allocations a call. It runs under the enforcer's write lock, so that no
// check sees links and grants that disagree. A permission line whose
// subject is a user, which no role accounts for, leaves the grants unset
// and every check to the enforcer.
func (a *Authorizer) rebuildGrants() error {
	lock := a.e.GetLock()
	lock.Lock()
	defer lock.Unlock()
	e := a.e.Enforcer // unsynchronized: the lock is held
	roles := a.rm.inheritingRoles()
	actions := map[Action]bool{}
	for _, pt := range policyTypes {
		lines, err := e.GetNamedPolicy(pt)
		if err != nil {
			a.rm.setGrants(nil)
			return fmt.Errorf("reading %s lines: %w", pt, err)
		}
		for _, l := range lines {
			if len(l) < 3 {
				continue
			}
			if _, isUser := parseUser(l[0]); isUser {
				a.rm.setGrants(nil)
				return nil
			}
			if !slices.Contains(roles, l[0]) {
				roles = append(roles, l[0])
			}
			actions[Action(l[1]+"."+l[2])] = true
		}
	}
	grants := make(map[string][]string, len(actions))
	for action := range actions {
		obj, act := action.Split()
		ec, ok := enforceContexts[obj]
		if !ok {
			continue
		}
		for _, r := range roles {
			ok, err := e.Enforce(ec, r, GlobalDomain, obj, act)
			if err != nil {
				a.rm.setGrants(nil)
				return fmt.Errorf("deciding %s for role %s: %w", action, r, err)
			}
			if ok {
				grants[string(action)] = append(grants[string(action)], r)
			}
		}
	}
	a.rm.setGrants(grants)
	return nil
}

// Refresh brings the assignments of one user in one domain (or, with
// Platform, in every domain) in line with the adapter, adding and
// removing only the g lines that differ.
func (a *Authorizer) Refresh(ctx context.Context, userID int64, domain Domain) error {
	if userID <= 0 {
		return fmt.Errorf("refreshing assignments: user id %d", userID)
	}
	if domain.Kind() == "" {
		return fmt.Errorf("refreshing assignments of user %d: malformed domain %q", userID, domain)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("refreshing assignments of user %d in %s: %w", userID, domain, err)
	}
	scratch := a.template.Copy()
	if err := a.adapter.LoadFilteredPolicy(scratch, Filter{UserID: userID, Domain: domain}); err != nil {
		return fmt.Errorf("loading assignments of user %d in %s: %w", userID, domain, err)
	}
	want, err := scratch.GetPolicy("g", "g")
	if err != nil {
		return fmt.Errorf("reading assignments of user %d in %s: %w", userID, domain, err)
	}
	sub := Subject(userID)
	var have [][]string
	if domain == Platform {
		have, err = a.e.GetFilteredGroupingPolicy(0, sub)
	} else {
		have, err = a.e.GetFilteredGroupingPolicy(0, sub, "", string(domain))
	}
	if err != nil {
		return fmt.Errorf("reading enforcer assignments of user %d: %w", userID, err)
	}
	add, remove := diff(have, want)
	if len(remove) > 0 {
		if _, err := a.e.RemoveGroupingPolicies(remove); err != nil {
			return fmt.Errorf("removing assignments of user %d in %s: %w", userID, domain, err)
		}
	}
	if len(add) > 0 {
		if _, err := a.e.AddGroupingPolicies(add); err != nil {
			return fmt.Errorf("adding assignments of user %d in %s: %w", userID, domain, err)
		}
	}
	if len(add)+len(remove) > 0 {
		a.log.Debug("authz assignments refreshed", "user", userID, "domain", string(domain),
			"added", len(add), "removed", len(remove))
	}
	return nil
}

// diff returns the lines of want missing from have, and those of have
// missing from want.
func diff(have, want [][]string) (add, remove [][]string) {
	key := func(l []string) string { return strings.Join(l, "\x00") }
	inHave := make(map[string]bool, len(have))
	for _, l := range have {
		inHave[key(l)] = true
	}
	inWant := make(map[string]bool, len(want))
	for _, l := range want {
		k := key(l)
		inWant[k] = true
		if !inHave[k] {
			add = append(add, l)
		}
	}
	for _, l := range have {
		if !inWant[key(l)] {
			remove = append(remove, l)
		}
	}
	return add, remove
}

// Can reports whether user userID may perform action in domain, through a
// role held there or in Platform. Anonymous callers (userID 0)
// may do nothing.
func (a *Authorizer) Can(_ context.Context, userID int64, action Action, domain Domain) bool {
	if userID <= 0 {
		return false
	}
	obj, act := action.Split()
	ec, known := enforceContexts[obj]
	if !known {
		a.log.Error("authz enforce: unknown object type", "action", string(action))
		return false
	}
	// The grants the enforcer decided (see rebuildGrants), under its read
	// lock like Enforce, so that no half-applied change shows.
	lock := a.e.GetLock()
	lock.RLock()
	allowed, decided := a.rm.allows(userID, string(domain), string(action))
	lock.RUnlock()
	if decided {
		return allowed
	}
	if a.checks.Add(1)%memoLimit == 0 {
		a.resetMemo()
	}
	ok, err := a.e.Enforce(ec, Subject(userID), string(domain), obj, act)
	if err != nil {
		a.log.Error("authz enforce", "err", err, "user", userID, "action", string(action), "domain", string(domain))
		return false
	}
	return ok
}

// resetMemo drops Casbin's compiled matchers and, with them, the memo of
// role lookups they hold; an empty incremental rebuild does exactly that.
func (a *Authorizer) resetMemo() {
	a.e.GetLock().Lock()
	defer a.e.GetLock().Unlock()
	if err := a.e.BuildIncrementalRoleLinks(model.PolicyAdd, "g", nil); err != nil {
		a.log.Error("authz memo reset", "err", err)
	}
}

// visibility is the permission that reveals that an object of a domain
// exists: a caller without it is told NOT_FOUND rather than FORBIDDEN.
func visibility(d Domain) (Action, bool) {
	switch d.Kind() {
	case "ns":
		return NamespaceRead, true
	case "org":
		return OrgRead, true
	}
	return "", false
}

// Check returns nil when user userID may perform action in at least one of
// domains (a namespace and the org that owns it, say). Otherwise it
// returns an errcode error: UNAUTHENTICATED for an anonymous caller,
// NOT_FOUND when the caller may not even see any of the domains, so that
// nobody learns another tenant's objects exist, and FORBIDDEN otherwise.
func (a *Authorizer) Check(ctx context.Context, userID int64, action Action, domains ...Domain) error {
	if userID <= 0 {
		return errcode.New(errcode.Unauthenticated, "authentication required")
	}
	for _, d := range domains {
		if a.Can(ctx, userID, action, d) {
			return nil
		}
	}
	hidden := len(domains) > 0
	for _, d := range domains {
		v, ok := visibility(d)
		if !ok || a.Can(ctx, userID, v, d) {
			hidden = false
			break
		}
	}
	if hidden {
		return ErrNotFound
	}
	return errcode.New(errcode.Forbidden, "not allowed")
}

// ErrNotFound is what Check returns for an object the caller may not see.
var ErrNotFound = errcode.New(errcode.NotFound, "not found")

// Roles returns the roles user userID holds in domain, not counting the
// platform admin role.
func (a *Authorizer) Roles(userID int64, domain Domain) []string {
	return a.e.GetRolesForUserInDomain(Subject(userID), string(domain))
}

// Loaded reports whether the whole policy has been loaded at least once.
func (a *Authorizer) Loaded() bool { return a.loaded.Load() }
