package billingstore

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantplane/tenantplane/internal/pgstore"
	"github.com/tenantplane/tenantplane/tenancy"
)

// dbtx is what a pool and a transaction have in common.
type dbtx interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Store is billing's storage over a pgx pool.
type Store struct {
	pool *pgxpool.Pool
	now  func() time.Time
}

// New returns a Store over pool; now stamps created_at and updated_at.
func New(pool *pgxpool.Pool, now func() time.Time) *Store {
	return &Store{pool: pool, now: func() time.Time { return now().UTC() }}
}

// storeErr turns a storage error into a domain error; see pgstore.Err.
func storeErr(op, what string, err error) error { return pgstore.Err(op, what, err) }

// AuditEntry is one row of the audit log, written by a billing change in
// its own transaction.
type AuditEntry struct {
	At        time.Time
	Actor     string // "user:42", "system:billing", "stripe"
	Action    string // "billing.adjust", "billing.export", ...
	Target    string // "org:7", "ns:3", ...
	IP        netip.Addr
	RequestID string
	Detail    map[string]any
}

// actorKey is how the audit log, the ledger and the lifecycle's tables
// name an actor: "user:42", "system:billing" or "anonymous".
// audit is the audit row of a change that by makes at at: the one way
// billing turns an actor into an audit entry.
func audit(by tenancy.Actor, at time.Time, action, target string, detail map[string]any) AuditEntry {
	return AuditEntry{At: at, Actor: by.Key(), Action: action, Target: target, IP: by.IP, RequestID: by.RequestID, Detail: detail}
}

const insertAudit = `INSERT INTO audit_log (at, actor, action, target, ip, request_id, detail)
	VALUES ($1, $2, $3, $4, $5, $6, $7)`

// writeAudit adds e to the audit log through db, a transaction of the
// change it records.
func writeAudit(ctx context.Context, db dbtx, e AuditEntry) error {
	var ip *netip.Addr
	if e.IP.IsValid() {
		a := e.IP
		ip = &a
	}
	detail := []byte(`{}`)
	if len(e.Detail) > 0 {
		b, err := json.Marshal(e.Detail)
		if err != nil {
			return fmt.Errorf("encoding audit detail: %w", err)
		}
		detail = b
	}
	_, err := db.Exec(ctx, insertAudit, e.At.UTC(), e.Actor, e.Action, e.Target, ip, e.RequestID, detail)
	return storeErr("writing audit log", "audit entry", err)
}
