package isolationstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/internal/pgstore"
	"github.com/tenantplane/tenantplane/isolation"
	"github.com/tenantplane/tenantplane/tenancy"
)

// OutboxChannel is the NOTIFY channel on which every outbox insert is
// announced (migration 007).
const OutboxChannel = "tenantplane_outbox"

// maxErrorLen bounds the last error kept on an outbox row.
const maxErrorLen = 2000

// Store is isolation.Store over a pgx pool.
type Store struct {
	pool *pgxpool.Pool

	listenMu sync.Mutex
	listener *pgxpool.Conn
}

var _ isolation.Store = (*Store)(nil)

// New returns a Store over pool. Close releases the connection it holds
// for LISTEN.
func New(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Close releases the listening connection, if any.
func (s *Store) Close() {
	s.listenMu.Lock()
	defer s.listenMu.Unlock()
	if s.listener != nil {
		s.listener.Release()
		s.listener = nil
	}
}

// storeErr turns a storage error into a domain error; see pgstore.Err.
func storeErr(op, what string, err error) error { return pgstore.Err(op, what, err) }

const (
	selectTenants = `SELECT n.id, n.name, n.org_id, o.plan, n.state
		FROM namespaces n JOIN orgs o ON o.id = n.org_id
		WHERE n.id = ANY($1)`
	selectTenantMembers = `SELECT m.namespace_id, m.user_id, m.role, u.status = 'disabled'
		FROM namespace_members m JOIN users u ON u.id = m.user_id
		WHERE m.namespace_id = ANY($1)
		ORDER BY m.namespace_id, m.user_id`
	selectTenantHosts = `SELECT namespace_id, host, released_at IS NOT NULL
		FROM host_claims WHERE namespace_id = ANY($1)
		ORDER BY namespace_id, host`
)

// Tenants implements isolation.Store: three queries in one round trip.
func (s *Store) Tenants(ctx context.Context, ids []int64) (map[int64]isolation.Tenant, error) {
	out := make(map[int64]isolation.Tenant, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	b := &pgx.Batch{}
	b.Queue(selectTenants, ids).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var t isolation.Tenant
			var state string
			if err := rows.Scan(&t.ID, &t.Name, &t.OrgID, &t.Plan, &state); err != nil {
				return err
			}
			t.State = tenancy.NamespaceState(state)
			out[t.ID] = t
		}
		return rows.Err()
	})
	b.Queue(selectTenantMembers, ids).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var nsID int64
			var m isolation.Member
			var role string
			if err := rows.Scan(&nsID, &m.UserID, &role, &m.Disabled); err != nil {
				return err
			}
			m.Role = tenancy.Role(role)
			if t, ok := out[nsID]; ok {
				t.Members = append(t.Members, m)
				out[nsID] = t
			}
		}
		return rows.Err()
	})
	b.Queue(selectTenantHosts, ids).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var nsID int64
			var host string
			var released bool
			if err := rows.Scan(&nsID, &host, &released); err != nil {
				return err
			}
			if t, ok := out[nsID]; ok {
				if released {
					t.ReleasedHosts = append(t.ReleasedHosts, host)
				} else {
					t.Hosts = append(t.Hosts, host)
				}
				out[nsID] = t
			}
		}
		return rows.Err()
	})
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("loading tenants: %w", err)
	}
	return out, nil
}

const selectNamespaceIDs = `SELECT n.id FROM namespaces n
	WHERE n.id > $1
	  AND NOT EXISTS (SELECT 1 FROM kube_namespace_deletions d WHERE d.namespace_id = n.id)
	ORDER BY n.id LIMIT $2`

// NamespaceIDs implements isolation.Store.
func (s *Store) NamespaceIDs(ctx context.Context, after int64, limit int) ([]int64, error) {
	return s.ids(ctx, "listing namespaces", selectNamespaceIDs, after, limit)
}

const selectOrgNamespaceIDs = `SELECT id FROM namespaces WHERE org_id = $1 ORDER BY id`

// NamespaceIDsOfOrg implements isolation.Store.
func (s *Store) NamespaceIDsOfOrg(ctx context.Context, orgID int64) ([]int64, error) {
	return s.ids(ctx, "listing namespaces of org", selectOrgNamespaceIDs, orgID)
}

const selectUserNamespaceIDs = `SELECT namespace_id FROM namespace_members WHERE user_id = $1 ORDER BY namespace_id`

// NamespaceIDsOfUser implements isolation.Store.
func (s *Store) NamespaceIDsOfUser(ctx context.Context, userID int64) ([]int64, error) {
	return s.ids(ctx, "listing namespaces of user", selectUserNamespaceIDs, userID)
}

func (s *Store) ids(ctx context.Context, op, query string, args ...any) ([]int64, error) {
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return ids, nil
}

const selectUsers = `SELECT u.id, u.status = 'disabled',
		(SELECT count(*) FROM namespace_members m JOIN namespaces n ON n.id = m.namespace_id
		  WHERE m.user_id = u.id AND n.state <> 'deleting')
	FROM users u WHERE u.id = ANY($1)`

// Users implements isolation.Store.
func (s *Store) Users(ctx context.Context, ids []int64) (map[int64]isolation.User, error) {
	out := make(map[int64]isolation.User, len(ids))
	rows, err := s.pool.Query(ctx, selectUsers, ids)
	if err != nil {
		return nil, fmt.Errorf("loading users: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var u isolation.User
		if err := rows.Scan(&u.ID, &u.Disabled, &u.Namespaces); err != nil {
			return nil, fmt.Errorf("loading users: %w", err)
		}
		out[u.ID] = u
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("loading users: %w", err)
	}
	return out, nil
}

const (
	insertDeletion = `INSERT INTO kube_namespace_deletions (namespace_id, deleted_at) VALUES ($1, $2)
		ON CONFLICT (namespace_id) DO NOTHING`
	deleteNamespaceHosts = `DELETE FROM host_claims WHERE namespace_id = $1`
)

// NamespaceDeleted implements isolation.Store.
func (s *Store) NamespaceDeleted(ctx context.Context, nsID int64, now time.Time) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, insertDeletion, nsID, now); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, deleteNamespaceHosts, nsID)
		return err
	})
	return storeErr("recording namespace deletion", "namespace", err)
}

const forgetReleasedHosts = `DELETE FROM host_claims
	WHERE namespace_id = $1 AND released_at IS NOT NULL AND NOT (host = ANY($2))`

// ForgetReleasedHosts implements isolation.Store.
func (s *Store) ForgetReleasedHosts(ctx context.Context, nsID int64, inUse []string) error {
	if inUse == nil {
		inUse = []string{}
	}
	_, err := s.pool.Exec(ctx, forgetReleasedHosts, nsID, inUse)
	return storeErr("forgetting released hosts", "host", err)
}

const (
	lockNamespaceState = `SELECT state FROM namespaces WHERE id = $1 FOR SHARE`
	// claimHost takes a free host, or takes back one this namespace
	// released; a host held by another namespace returns no row.
	claimHost = `INSERT INTO host_claims (host, namespace_id, created_at) VALUES ($1, $2, $3)
		ON CONFLICT (host) DO UPDATE SET released_at = NULL
		WHERE host_claims.namespace_id = EXCLUDED.namespace_id
		RETURNING host`
	releaseHost = `UPDATE host_claims SET released_at = $3
		WHERE host = $1 AND namespace_id = $2 AND released_at IS NULL`
	insertAudit = `INSERT INTO audit_log (at, actor, action, target, request_id, detail)
		VALUES ($1, $2, $3, $4, $5, $6)`
	insertOutbox = `INSERT INTO outbox (kind, key, payload, created_at, next_attempt_at)
		VALUES ($1, $2, $3, $4, $4)`
)

var errHostTaken = errcode.New(errcode.Conflict, "host is claimed by another namespace")

// ClaimHost implements isolation.Store.
func (s *Store) ClaimHost(ctx context.Context, c isolation.HostChange) error {
	return s.changeHost(ctx, c, "host.claim", func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, claimHost, c.Host, c.NamespaceID, c.At).Scan(new(string))
		if errors.Is(err, pgx.ErrNoRows) {
			return errHostTaken
		}
		return err
	})
}

// ReleaseHost implements isolation.Store.
func (s *Store) ReleaseHost(ctx context.Context, c isolation.HostChange) error {
	return s.changeHost(ctx, c, "host.release", func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, releaseHost, c.Host, c.NamespaceID, c.At)
		if err == nil && tag.RowsAffected() == 0 {
			return errcode.New(errcode.NotFound, "the namespace does not hold this host")
		}
		return err
	})
}

func (s *Store) changeHost(ctx context.Context, c isolation.HostChange, action string, change func(pgx.Tx) error) error {
	key := tenancy.NamespaceKey(c.NamespaceID)
	detail, err := json.Marshal(map[string]any{"host": c.Host})
	if err != nil {
		return err
	}
	payload, err := json.Marshal(map[string]any{"namespace_id": c.NamespaceID, "host": c.Host})
	if err != nil {
		return err
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var state string
		if err := tx.QueryRow(ctx, lockNamespaceState, c.NamespaceID).Scan(&state); err != nil {
			return storeErr("locking namespace", "namespace", err)
		}
		if tenancy.NamespaceState(state) == tenancy.NamespaceDeleting {
			return errcode.New(errcode.Conflict, "namespace is being deleted")
		}
		if err := change(tx); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, insertAudit, c.At, c.Actor, action, key, c.RequestID, detail); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, insertOutbox, action, key, payload, c.At)
		return err
	})
	if _, ok := errcode.As(err); ok {
		return err
	}
	return storeErr(action, "host", err)
}

const selectHosts = `SELECT host, created_at FROM host_claims
	WHERE namespace_id = $1 AND released_at IS NULL ORDER BY host`

// Hosts implements isolation.Store.
func (s *Store) Hosts(ctx context.Context, nsID int64) ([]isolation.HostClaim, error) {
	rows, err := s.pool.Query(ctx, selectHosts, nsID)
	if err != nil {
		return nil, fmt.Errorf("listing hosts: %w", err)
	}
	hs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (isolation.HostClaim, error) {
		var h isolation.HostClaim
		err := row.Scan(&h.Host, &h.CreatedAt)
		h.CreatedAt = h.CreatedAt.UTC()
		return h, err
	})
	if err != nil {
		return nil, fmt.Errorf("listing hosts: %w", err)
	}
	return hs, nil
}

// Audit implements isolation.Store.
func (s *Store) Audit(ctx context.Context, e isolation.AuditEntry) error {
	detail, err := json.Marshal(e.Detail)
	if err != nil {
		return err
	}
	if e.Detail == nil {
		detail = []byte("{}")
	}
	_, err = s.pool.Exec(ctx, insertAudit, e.At, e.Actor, e.Action, e.Target, e.RequestID, detail)
	return storeErr("writing audit log", "audit entry", err)
}
