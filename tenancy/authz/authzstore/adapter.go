package authzstore

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/casbin/casbin/v2/model"
	"github.com/casbin/casbin/v2/persist"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantplane/tenantplane/schema"
	"github.com/tenantplane/tenantplane/tenancy/authz"
)

// The assignments of every user who is not disabled: namespace roles keep
// their names, org roles are prefixed org_, platform admins hold
// platform_admin in the global domain "*".
const (
	assignmentsAll = `
SELECT nm.user_id, nm.role, 'ns:' || nm.namespace_id
  FROM namespace_members nm JOIN users u ON u.id = nm.user_id
 WHERE u.status <> 'disabled'
UNION ALL
SELECT om.user_id, 'org_' || om.role, 'org:' || om.org_id
  FROM org_members om JOIN users u ON u.id = om.user_id
 WHERE u.status <> 'disabled'
UNION ALL
SELECT id, 'platform_admin', '*'
  FROM users
 WHERE platform_admin AND status <> 'disabled'`

	assignmentsOfUser = `
SELECT nm.user_id, nm.role, 'ns:' || nm.namespace_id
  FROM namespace_members nm JOIN users u ON u.id = nm.user_id
 WHERE nm.user_id = $1 AND u.status <> 'disabled'
UNION ALL
SELECT om.user_id, 'org_' || om.role, 'org:' || om.org_id
  FROM org_members om JOIN users u ON u.id = om.user_id
 WHERE om.user_id = $1 AND u.status <> 'disabled'
UNION ALL
SELECT id, 'platform_admin', '*'
  FROM users
 WHERE id = $1 AND platform_admin AND status <> 'disabled'`

	assignmentsInNamespace = `
SELECT nm.user_id, nm.role, 'ns:' || nm.namespace_id
  FROM namespace_members nm JOIN users u ON u.id = nm.user_id
 WHERE nm.user_id = $1 AND nm.namespace_id = $2 AND u.status <> 'disabled'`

	assignmentsInOrg = `
SELECT om.user_id, 'org_' || om.role, 'org:' || om.org_id
  FROM org_members om JOIN users u ON u.id = om.user_id
 WHERE om.user_id = $1 AND om.org_id = $2 AND u.status <> 'disabled'`
)

// ErrReadOnly is returned by every method that would write policy: the
// membership tables are the source of truth and change through tenancy.
var ErrReadOnly = errors.New("authz policy is derived from the membership tables and cannot be written through casbin")

// DefaultTimeout bounds a load when Casbin calls the adapter without a
// context.
const DefaultTimeout = time.Minute

// Adapter is a read-only Casbin adapter: permissions and role inheritance
// from schema.CasbinPolicy, assignments (g lines) from namespace_members,
// org_members and users.platform_admin.
// Its filtered load takes an authz.Filter and adds only the g lines of one
// user.
type Adapter struct {
	pool    *pgxpool.Pool
	policy  [][]string // parsed p lines, "p" first
	timeout time.Duration
}

var (
	_ persist.FilteredAdapter = (*Adapter)(nil)
	_ persist.ContextAdapter  = (*Adapter)(nil)
)

// NewAdapter returns an adapter reading from pool. It parses the embedded
// policy once and fails when it is malformed.
func NewAdapter(pool *pgxpool.Pool) (*Adapter, error) {
	if pool == nil {
		return nil, errors.New("authz adapter: pool is required")
	}
	policy, err := ParsePolicy(schema.CasbinPolicy)
	if err != nil {
		return nil, err
	}
	return &Adapter{pool: pool, policy: policy, timeout: DefaultTimeout}, nil
}

// ParsePolicy parses Casbin CSV policy text, skipping blank lines and
// comments. Each line keeps its key ("p" or "g") first. It accepts
// permission lines (p, role, object, action) and role inheritance lines
// (g, role, inherited role, *); assignments of users never live in the
// file.
func ParsePolicy(text []byte) ([][]string, error) {
	var lines [][]string
	for n, raw := range strings.Split(string(text), "\n") {
		raw = strings.TrimSpace(raw)
		if raw == "" || strings.HasPrefix(raw, "#") {
			continue
		}
		r := csv.NewReader(strings.NewReader(raw))
		r.TrimLeadingSpace = true
		tokens, err := r.Read()
		if err != nil {
			return nil, fmt.Errorf("policy line %d: %w", n+1, err)
		}
		switch {
		case len(tokens) != 4:
			return nil, fmt.Errorf("policy line %d: want four fields, got %q", n+1, raw)
		case tokens[0] == "p":
		case tokens[0] == "g" && tokens[3] == authz.GlobalDomain:
		default:
			return nil, fmt.Errorf("policy line %d: want p, role, object, action or g, role, role, %s; got %q",
				n+1, authz.GlobalDomain, raw)
		}
		lines = append(lines, tokens)
	}
	if len(lines) == 0 {
		return nil, errors.New("policy has no lines")
	}
	return lines, nil
}

// LoadPolicy loads every permission and every assignment into m.
func (a *Adapter) LoadPolicy(m model.Model) error {
	ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
	defer cancel()
	return a.LoadPolicyCtx(ctx, m)
}

// LoadPolicyCtx loads every permission and every assignment into m.
func (a *Adapter) LoadPolicyCtx(ctx context.Context, m model.Model) error {
	for _, l := range a.policy {
		ptype := l[0]
		if ptype == "p" {
			pt, ok := authz.PolicyType(l[2])
			if !ok {
				return fmt.Errorf("policy line %v: object type %q has no policy type in the model", l, l[2])
			}
			ptype = pt
		}
		if err := m.AddPolicy(l[0], ptype, l[1:]); err != nil {
			return fmt.Errorf("adding policy line %v: %w", l, err)
		}
	}
	return a.loadAssignments(ctx, m, assignmentsAll)
}

// LoadFilteredPolicy adds to m the assignments selected by filter, an
// authz.Filter (or a pointer to one). It adds no permission lines.
func (a *Adapter) LoadFilteredPolicy(m model.Model, filter any) error {
	ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
	defer cancel()
	return a.LoadFilteredPolicyCtx(ctx, m, filter)
}

// LoadFilteredPolicyCtx is LoadFilteredPolicy with a context.
func (a *Adapter) LoadFilteredPolicyCtx(ctx context.Context, m model.Model, filter any) error {
	var f authz.Filter
	switch v := filter.(type) {
	case authz.Filter:
		f = v
	case *authz.Filter:
		if v == nil {
			return errors.New("loading filtered policy: nil filter")
		}
		f = *v
	default:
		return fmt.Errorf("loading filtered policy: filter is %T, want authz.Filter", filter)
	}
	if f.UserID <= 0 {
		return fmt.Errorf("loading filtered policy: user id %d", f.UserID)
	}
	if f.Domain == authz.Platform {
		return a.loadAssignments(ctx, m, assignmentsOfUser, f.UserID)
	}
	kind, id := f.Domain.Kind(), int64(0)
	if kind == "ns" || kind == "org" {
		_, num, _ := strings.Cut(string(f.Domain), ":")
		id, _ = strconv.ParseInt(num, 10, 64)
	}
	switch kind {
	case "ns":
		return a.loadAssignments(ctx, m, assignmentsInNamespace, f.UserID, id)
	case "org":
		return a.loadAssignments(ctx, m, assignmentsInOrg, f.UserID, id)
	}
	return fmt.Errorf("loading filtered policy: malformed domain %q", f.Domain)
}

func (a *Adapter) loadAssignments(ctx context.Context, m model.Model, query string, args ...any) error {
	rows, err := a.pool.Query(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("querying assignments: %w", err)
	}
	defer rows.Close()
	var (
		userID       int64
		role, domain string
	)
	_, err = pgx.ForEachRow(rows, []any{&userID, &role, &domain}, func() error {
		return m.AddPolicy("g", "g", []string{authz.Subject(userID), role, domain})
	})
	if err != nil {
		return fmt.Errorf("reading assignments: %w", err)
	}
	return nil
}

// IsFiltered is false: the enforcer always holds the whole policy, and
// filtered loads only ever feed a scratch model.
func (a *Adapter) IsFiltered() bool { return false }

// SavePolicy returns ErrReadOnly.
func (a *Adapter) SavePolicy(model.Model) error { return ErrReadOnly }

// SavePolicyCtx returns ErrReadOnly.
func (a *Adapter) SavePolicyCtx(context.Context, model.Model) error { return ErrReadOnly }

// AddPolicy returns ErrReadOnly.
func (a *Adapter) AddPolicy(string, string, []string) error { return ErrReadOnly }

// AddPolicyCtx returns ErrReadOnly.
func (a *Adapter) AddPolicyCtx(context.Context, string, string, []string) error { return ErrReadOnly }

// RemovePolicy returns ErrReadOnly.
func (a *Adapter) RemovePolicy(string, string, []string) error { return ErrReadOnly }

// RemovePolicyCtx returns ErrReadOnly.
func (a *Adapter) RemovePolicyCtx(context.Context, string, string, []string) error {
	return ErrReadOnly
}

// RemoveFilteredPolicy returns ErrReadOnly.
func (a *Adapter) RemoveFilteredPolicy(string, string, int, ...string) error { return ErrReadOnly }

// RemoveFilteredPolicyCtx returns ErrReadOnly.
func (a *Adapter) RemoveFilteredPolicyCtx(context.Context, string, string, int, ...string) error {
	return ErrReadOnly
}
