package authz

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/casbin/casbin/v2/log"
	"github.com/casbin/casbin/v2/rbac"
)

// GlobalDomain is the domain whose links hold in every domain. In the
// policy file, "g, owner, admin, *" gives owners all that admins have
// everywhere; from the users table, "g, user:1, platform_admin, *" makes
// user 1 a platform admin everywhere.
const GlobalDomain = "*"

// roleManager is a Casbin role manager shaped for this model, where many
// users hold one of a handful of roles in one of very many domains. Casbin's
// default manager keeps a graph of maps per domain, hundreds of megabytes
// of pointers at 100,000 memberships, which makes every garbage collection
// slow. This one keeps user → role assignments as fixed-size keys in one
// map with no pointers, and role → role inheritance, which holds in every
// domain, in a small table.
//
// Semantics follow Casbin's with a domain matching function that lets "*"
// match every domain: HasLink(a, b, d) is true when a == b, or when a
// holds, in d or in GlobalDomain, b or a role that inherits b.
type roleManager struct {
	mu sync.RWMutex
	// roles interns role names; index 0 is unused.
	roles   map[string]uint16
	names   []string
	assign  map[assignKey]struct{}
	inherit map[string][]string // role → roles it inherits directly, in every domain
	// heirs[r] lists the roles that reach r through inheritance, r first.
	heirs map[string][]uint16
	// other holds links that fit neither form (a subject that is not
	// user:ID, a domain that is not ns:ID, org:ID or platform).
	other map[[3]string]struct{}
	// grants lists, per action ("namespace.read"), the roles that grant it
	// directly or by inheritance, as the enforcer decided them for the
	// current permissions and inheritance (see Authorizer.rebuildGrants);
	// nil until then, and again whenever inheritance changes.
	grants map[string][]uint16
}

type domainKind uint8

const (
	kindNone domainKind = iota
	kindNamespace
	kindOrg
	kindGlobal
)

type assignKey struct {
	user int64
	dom  int64
	kind domainKind
	role uint16
}

var _ rbac.RoleManager = (*roleManager)(nil)

func newRoleManager() *roleManager {
	rm := &roleManager{}
	rm.reset()
	return rm
}

func (rm *roleManager) reset() {
	rm.roles = map[string]uint16{}
	rm.names = []string{""}
	rm.assign = map[assignKey]struct{}{}
	rm.inherit = map[string][]string{}
	rm.heirs = map[string][]uint16{}
	rm.other = map[[3]string]struct{}{}
	rm.grants = nil
}

func parseUser(s string) (int64, bool) {
	rest, ok := strings.CutPrefix(s, "user:")
	if !ok {
		return 0, false
	}
	id, err := strconv.ParseInt(rest, 10, 64)
	return id, err == nil && id > 0
}

func parseDomain(s string) (domainKind, int64, bool) {
	if s == GlobalDomain {
		return kindGlobal, 0, true
	}
	var kind domainKind
	rest, ok := strings.CutPrefix(s, "ns:")
	if ok {
		kind = kindNamespace
	} else if rest, ok = strings.CutPrefix(s, "org:"); ok {
		kind = kindOrg
	} else {
		return kindNone, 0, false
	}
	id, err := strconv.ParseInt(rest, 10, 64)
	return kind, id, err == nil && id > 0
}

func domainArg(domain []string) (string, error) {
	switch len(domain) {
	case 0:
		return "", nil
	case 1:
		return domain[0], nil
	}
	return "", fmt.Errorf("role manager: %d domains given, want at most one", len(domain))
}

func (rm *roleManager) role(name string, create bool) (uint16, bool) {
	if r, ok := rm.roles[name]; ok {
		return r, true
	}
	if !create {
		return 0, false
	}
	r := uint16(len(rm.names))
	rm.roles[name] = r
	rm.names = append(rm.names, name)
	return r, true
}

// key returns the compact key of a link, and false when it does not fit.
func (rm *roleManager) key(name1, name2, domain string, create bool) (assignKey, bool) {
	u, ok := parseUser(name1)
	if !ok {
		return assignKey{}, false
	}
	kind, id, ok := parseDomain(domain)
	if !ok {
		return assignKey{}, false
	}
	r, ok := rm.role(name2, create)
	if !ok {
		return assignKey{}, false
	}
	return assignKey{user: u, dom: id, kind: kind, role: r}, true
}

// Clear removes every link.
func (rm *roleManager) Clear() error {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	rm.reset()
	return nil
}

// AddLink records that name1 holds (or, in GlobalDomain, inherits) name2.
func (rm *roleManager) AddLink(name1, name2 string, domain ...string) error {
	d, err := domainArg(domain)
	if err != nil {
		return err
	}
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if _, isUser := parseUser(name1); !isUser && d == GlobalDomain {
		if !slices.Contains(rm.inherit[name1], name2) {
			rm.inherit[name1] = append(rm.inherit[name1], name2)
			rm.rebuildHeirs()
			rm.grants = nil
		}
		return nil
	}
	if k, ok := rm.key(name1, name2, d, true); ok {
		rm.assign[k] = struct{}{}
		return nil
	}
	rm.other[[3]string{name1, name2, d}] = struct{}{}
	return nil
}

// BuildRelationship is AddLink; Casbin keeps it for older callers.
func (rm *roleManager) BuildRelationship(name1, name2 string, domain ...string) error {
	return rm.AddLink(name1, name2, domain...)
}

// DeleteLink removes a link added by AddLink.
func (rm *roleManager) DeleteLink(name1, name2 string, domain ...string) error {
	d, err := domainArg(domain)
	if err != nil {
		return err
	}
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if _, isUser := parseUser(name1); !isUser && d == GlobalDomain {
		rm.inherit[name1] = slices.DeleteFunc(rm.inherit[name1], func(s string) bool { return s == name2 })
		rm.rebuildHeirs()
		rm.grants = nil
		return nil
	}
	if k, ok := rm.key(name1, name2, d, false); ok {
		delete(rm.assign, k)
		return nil
	}
	delete(rm.other, [3]string{name1, name2, d})
	return nil
}

// rebuildHeirs recomputes, for every role, the roles that reach it.
func (rm *roleManager) rebuildHeirs() {
	rm.heirs = map[string][]uint16{}
	var all []string
	for r, parents := range rm.inherit {
		all = append(all, r)
		all = append(all, parents...)
	}
	for _, r := range all {
		rm.role(r, true)
	}
	for _, from := range all {
		for _, to := range rm.reach(from) {
			if !slices.Contains(rm.heirs[to], rm.roles[from]) {
				rm.heirs[to] = append(rm.heirs[to], rm.roles[from])
			}
		}
	}
}

// reach lists from and every role it inherits, transitively.
func (rm *roleManager) reach(from string) []string {
	seen := []string{from}
	for i := 0; i < len(seen); i++ {
		for _, p := range rm.inherit[seen[i]] {
			if !slices.Contains(seen, p) {
				seen = append(seen, p)
			}
		}
	}
	return seen
}

// HasLink reports whether name1 holds name2 in the domain, directly or
// through a role that inherits it.
func (rm *roleManager) HasLink(name1, name2 string, domain ...string) (bool, error) {
	if name1 == name2 {
		return true, nil
	}
	d, err := domainArg(domain)
	if err != nil {
		return false, err
	}
	rm.mu.RLock()
	defer rm.mu.RUnlock()
	if u, ok := parseUser(name1); ok {
		if kind, id, ok := parseDomain(d); ok {
			return rm.holds(assignKey{user: u, dom: id, kind: kind}, name2), nil
		}
	}
	// Roles and unusual subjects: direct links, then inheritance.
	if slices.Contains(rm.reach(name1), name2) {
		return true, nil
	}
	_, ok := rm.other[[3]string{name1, name2, d}]
	return ok, nil
}

// holds reports whether the user of k holds role, or a role that inherits
// it, in the domain of k or in GlobalDomain.
func (rm *roleManager) holds(k assignKey, role string) bool {
	heirs, ok := rm.heirs[role]
	if !ok {
		r, ok := rm.roles[role]
		if !ok {
			return false
		}
		heirs = []uint16{r}
	}
	g := assignKey{user: k.user, kind: kindGlobal}
	for _, r := range heirs {
		k.role, g.role = r, r
		if _, ok := rm.assign[k]; ok {
			return true
		}
		if _, ok := rm.assign[g]; ok {
			return true
		}
	}
	return false
}

// inheritingRoles returns every role named in an inheritance link.
func (rm *roleManager) inheritingRoles() []string {
	rm.mu.RLock()
	defer rm.mu.RUnlock()
	var out []string
	for r, parents := range rm.inherit {
		for _, x := range append([]string{r}, parents...) {
			if !slices.Contains(out, x) {
				out = append(out, x)
			}
		}
	}
	return out
}

// setGrants records, per action, the roles that grant it; nil forgets
// them, so that every check goes to the enforcer.
func (rm *roleManager) setGrants(grants map[string][]string) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if grants == nil {
		rm.grants = nil
		return
	}
	rm.grants = make(map[string][]uint16, len(grants))
	for action, roles := range grants {
		ids := make([]uint16, 0, len(roles))
		for _, r := range roles {
			id, _ := rm.role(r, true)
			ids = append(ids, id)
		}
		rm.grants[action] = ids
	}
}

// allows decides from the grants whether user holds, in domain or in
// GlobalDomain, a role that grants action: one map probe per granting
// role, no allocation. decided is false when the grants are not known or
// the domain is not of a form the assignments index; the enforcer must
// then decide.
func (rm *roleManager) allows(user int64, domain, action string) (allowed, decided bool) {
	kind, id, ok := parseDomain(domain)
	if !ok {
		return false, false
	}
	rm.mu.RLock()
	defer rm.mu.RUnlock()
	if rm.grants == nil {
		return false, false
	}
	k := assignKey{user: user, dom: id, kind: kind}
	g := assignKey{user: user, kind: kindGlobal}
	for _, r := range rm.grants[action] {
		k.role, g.role = r, r
		if _, ok := rm.assign[k]; ok {
			return true, true
		}
		if _, ok := rm.assign[g]; ok {
			return true, true
		}
	}
	return false, true
}

// GetRoles returns the roles name holds directly in the domain.
func (rm *roleManager) GetRoles(name string, domain ...string) ([]string, error) {
	d, err := domainArg(domain)
	if err != nil {
		return nil, err
	}
	rm.mu.RLock()
	defer rm.mu.RUnlock()
	var out []string
	if _, isUser := parseUser(name); !isUser && d == GlobalDomain {
		return slices.Clone(rm.inherit[name]), nil
	}
	if u, ok := parseUser(name); ok {
		if kind, id, ok := parseDomain(d); ok {
			for r := 1; r < len(rm.names); r++ {
				if _, ok := rm.assign[assignKey{user: u, dom: id, kind: kind, role: uint16(r)}]; ok {
					out = append(out, rm.names[r])
				}
			}
		}
	}
	for l := range rm.other {
		if l[0] == name && l[2] == d {
			out = append(out, l[1])
		}
	}
	slices.Sort(out)
	return out, nil
}

// GetUsers returns who holds name directly in the domain. It scans every
// assignment.
func (rm *roleManager) GetUsers(name string, domain ...string) ([]string, error) {
	d, err := domainArg(domain)
	if err != nil {
		return nil, err
	}
	rm.mu.RLock()
	defer rm.mu.RUnlock()
	var out []string
	if _, isRole := rm.inherit[name]; isRole && d == GlobalDomain {
		for r, parents := range rm.inherit {
			if slices.Contains(parents, name) {
				out = append(out, r)
			}
		}
		slices.Sort(out)
		return out, nil
	}
	if kind, id, ok := parseDomain(d); ok {
		if r, ok := rm.roles[name]; ok {
			for k := range rm.assign {
				if k.kind == kind && k.dom == id && k.role == r {
					out = append(out, Subject(k.user))
				}
			}
		}
	}
	for l := range rm.other {
		if l[1] == name && l[2] == d {
			out = append(out, l[0])
		}
	}
	slices.Sort(out)
	return out, nil
}

// GetImplicitRoles returns the roles name holds in the domain and every
// role those inherit.
func (rm *roleManager) GetImplicitRoles(name string, domain ...string) ([]string, error) {
	direct, err := rm.GetRoles(name, domain...)
	if err != nil {
		return nil, err
	}
	rm.mu.RLock()
	defer rm.mu.RUnlock()
	var out []string
	for _, r := range direct {
		for _, x := range rm.reach(r) {
			if !slices.Contains(out, x) {
				out = append(out, x)
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// GetImplicitUsers returns who holds name in the domain, directly or
// through a role that inherits it.
func (rm *roleManager) GetImplicitUsers(name string, domain ...string) ([]string, error) {
	rm.mu.RLock()
	heirs := []string{name}
	for _, r := range rm.heirs[name] {
		if rm.names[r] != name {
			heirs = append(heirs, rm.names[r])
		}
	}
	rm.mu.RUnlock()
	var out []string
	for _, h := range heirs {
		users, err := rm.GetUsers(h, domain...)
		if err != nil {
			return nil, err
		}
		for _, u := range users {
			if !slices.Contains(out, u) {
				out = append(out, u)
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

func formatDomain(kind domainKind, id int64) string {
	switch kind {
	case kindNamespace:
		return string(NamespaceDomain(id))
	case kindOrg:
		return string(OrgDomain(id))
	case kindGlobal:
		return GlobalDomain
	}
	return ""
}

// GetDomains returns the domains in which name holds a role. It scans
// every assignment.
func (rm *roleManager) GetDomains(name string) ([]string, error) {
	rm.mu.RLock()
	defer rm.mu.RUnlock()
	var out []string
	if u, ok := parseUser(name); ok {
		for k := range rm.assign {
			if k.user == u {
				if d := formatDomain(k.kind, k.dom); !slices.Contains(out, d) {
					out = append(out, d)
				}
			}
		}
	}
	for l := range rm.other {
		if l[0] == name && !slices.Contains(out, l[2]) {
			out = append(out, l[2])
		}
	}
	slices.Sort(out)
	return out, nil
}

// GetAllDomains returns every domain in which a role is held.
func (rm *roleManager) GetAllDomains() ([]string, error) {
	rm.mu.RLock()
	defer rm.mu.RUnlock()
	set := map[string]struct{}{}
	for k := range rm.assign {
		set[formatDomain(k.kind, k.dom)] = struct{}{}
	}
	for l := range rm.other {
		set[l[2]] = struct{}{}
	}
	out := make([]string, 0, len(set))
	for d := range set {
		out = append(out, d)
	}
	slices.Sort(out)
	return out, nil
}

// DeleteDomain removes every link held in the domain.
func (rm *roleManager) DeleteDomain(domain string) error {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if kind, id, ok := parseDomain(domain); ok {
		for k := range rm.assign {
			if k.kind == kind && k.dom == id {
				delete(rm.assign, k)
			}
		}
	}
	for l := range rm.other {
		if l[2] == domain {
			delete(rm.other, l)
		}
	}
	return nil
}

// PrintRoles does nothing: assignments are not worth a log line each.
func (rm *roleManager) PrintRoles() error { return nil }

// SetLogger does nothing: this role manager does not log.
func (rm *roleManager) SetLogger(log.Logger) {}

// Match compares names literally: the model uses no pattern matching.
func (rm *roleManager) Match(str, pattern string) bool { return str == pattern }

// AddMatchingFunc is not supported: names are compared literally.
func (rm *roleManager) AddMatchingFunc(string, rbac.MatchingFunc) {}

// AddDomainMatchingFunc is not supported: GlobalDomain links stand for
// the one pattern the model needs.
func (rm *roleManager) AddDomainMatchingFunc(string, rbac.MatchingFunc) {}
