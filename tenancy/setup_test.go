package tenancy_test

import (
	"context"
	"errors"
	"net/netip"
	"net/url"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/internal/testenv"
	"github.com/tenantplane/tenantplane/tenancy"
	"github.com/tenantplane/tenantplane/tenancy/tenancystore"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// testArgon2 keeps hashing cheap in tests; production uses DefaultArgon2.
var testArgon2 = tenancy.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1, KeyLen: 32, SaltLen: 16}

// bundle is what a test needs: a fresh database, the store, the service
// and its clock.
type bundle struct {
	t     *testing.T
	db    *testenv.DB
	store *tenancystore.Store
	svc   *tenancy.Service
	clock *clock
	cfg   tenancy.Config
}

func setup(t *testing.T, tweak ...func(*tenancy.Config)) *bundle {
	t.Helper()
	db := testenv.Postgres(t)
	cfg := tenancy.DefaultConfig()
	cfg.Argon2 = testArgon2
	cfg.BaseURL = "https://console.test"
	for _, f := range tweak {
		f(&cfg)
	}
	c := &clock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	store := tenancystore.New(db.Pool)
	svc, err := tenancy.New(store, cfg, nil, c.Now)
	require.NoError(t, err)
	return &bundle{t: t, db: db, store: store, svc: svc, clock: c, cfg: cfg}
}

// withService returns another service over the same store, e.g. with
// other config.
func (b *bundle) withService(tweak func(*tenancy.Config)) *tenancy.Service {
	cfg := b.cfg
	tweak(&cfg)
	svc, err := tenancy.New(b.store, cfg, nil, b.clock.Now)
	require.NoError(b.t, err)
	return svc
}

var ipSerial struct {
	mu sync.Mutex
	n  uint32
}

// nextIP returns a distinct documentation address each call, so tests do
// not trip the per-IP limits by accident.
func nextIP() netip.Addr {
	ipSerial.mu.Lock()
	defer ipSerial.mu.Unlock()
	ipSerial.n++
	n := ipSerial.n
	return netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)})
}

// anon is an anonymous request from a fresh address.
func anon() context.Context {
	return tenancy.WithActor(context.Background(), tenancy.Actor{IP: nextIP(), RequestID: "req-anon"})
}

// anonFrom is an anonymous request from ip.
func anonFrom(ip string) context.Context {
	return tenancy.WithActor(context.Background(), tenancy.Actor{IP: netip.MustParseAddr(ip)})
}

// as is a request by user id.
func as(id int64) context.Context {
	return tenancy.WithActor(context.Background(), tenancy.Actor{UserID: id, IP: nextIP(), RequestID: "req-user"})
}

// admin is a request by platform admin id.
func admin(id int64) context.Context {
	return tenancy.WithActor(context.Background(), tenancy.Actor{UserID: id, PlatformAdmin: true, IP: nextIP()})
}

// system is a request by a platform component.
func system(name string) context.Context {
	return tenancy.WithActor(context.Background(), tenancy.Actor{System: name})
}

const password = "correct horse battery"

// user signs up email and verifies it, returning the active user.
func (b *bundle) user(email string) tenancy.User {
	b.t.Helper()
	u, err := b.svc.SignUp(anon(), email, password, "")
	require.NoError(b.t, err)
	u, err = b.svc.VerifyEmail(anon(), b.lastToken(u.Email, "verify_email"))
	require.NoError(b.t, err)
	require.Equal(b.t, tenancy.UserActive, u.Status)
	return u
}

// personal returns the user's personal org and namespace.
func (b *bundle) personal(u tenancy.User) (tenancy.Org, tenancy.Namespace) {
	b.t.Helper()
	orgs, err := b.svc.MyOrgs(as(u.ID), tenancy.PageArgs{})
	require.NoError(b.t, err)
	require.Len(b.t, orgs.Edges, 1)
	nss, err := b.svc.MyNamespaces(as(u.ID), tenancy.PageArgs{})
	require.NoError(b.t, err)
	require.Len(b.t, nss.Edges, 1)
	return orgs.Edges[0].Node.Org, nss.Edges[0].Node.Namespace
}

var tokenInLink = regexp.MustCompile(`token=([A-Za-z0-9_%\-]+)`)

// mails returns the bodies queued to address of kind, oldest first.
func (b *bundle) mails(to, kind string) []string {
	b.t.Helper()
	rows, err := b.db.Pool.Query(context.Background(),
		`SELECT body_text FROM mail_outbox WHERE recipient = $1 AND kind = $2 ORDER BY id`, to, kind)
	require.NoError(b.t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		require.NoError(b.t, rows.Scan(&s))
		out = append(out, s)
	}
	require.NoError(b.t, rows.Err())
	return out
}

// lastToken returns the secret in the newest mail of kind to address.
func (b *bundle) lastToken(to, kind string) string {
	b.t.Helper()
	ms := b.mails(to, kind)
	require.NotEmpty(b.t, ms, "no %s mail to %s", kind, to)
	m := tokenInLink.FindStringSubmatch(ms[len(ms)-1])
	require.NotNil(b.t, m, "no link in %q", ms[len(ms)-1])
	tok, err := url.QueryUnescape(m[1])
	require.NoError(b.t, err)
	return tok
}

// count runs a SELECT count(*) query.
func (b *bundle) count(query string, args ...any) int {
	b.t.Helper()
	var n int
	require.NoError(b.t, b.db.Pool.QueryRow(context.Background(), query, args...).Scan(&n))
	return n
}

// tableCounts counts the rows of every table a change may touch.
func (b *bundle) tableCounts() map[string]int {
	out := map[string]int{}
	for _, t := range []string{"users", "orgs", "org_members", "namespaces", "namespace_members",
		"audit_log", "outbox", "mail_outbox", "user_tokens", "auth_tokens", "oidc_identities", "invitations"} {
		out[t] = b.count(`SELECT count(*) FROM ` + t)
	}
	return out
}

// requireCode asserts err carries code.
func requireCode(t *testing.T, err error, code errcode.Code, why ...string) {
	t.Helper()
	require.Error(t, err, why)
	require.Equal(t, code, errcode.Of(err), "error: %v %v", err, why)
}

// outboxKinds lists the outbox kinds for key, oldest first.
func (b *bundle) outboxKinds(key string) []string {
	b.t.Helper()
	rows, err := b.db.Pool.Query(context.Background(), `SELECT kind FROM outbox WHERE key = $1 ORDER BY id`, key)
	require.NoError(b.t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		require.NoError(b.t, rows.Scan(&s))
		out = append(out, s)
	}
	return out
}

// auditActions lists the audit actions on target, oldest first.
func (b *bundle) auditActions(target string) []string {
	b.t.Helper()
	rows, err := b.db.Pool.Query(context.Background(), `SELECT action FROM audit_log WHERE target = $1 ORDER BY id`, target)
	require.NoError(b.t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		require.NoError(b.t, rows.Scan(&s))
		out = append(out, s)
	}
	return out
}

// failingTx fails one query, to prove a change is all or nothing.
type failingTx struct {
	tenancy.Tx
	failMail bool
}

var errInjected = errors.New("injected failure")

func (f failingTx) EnqueueMail(ctx context.Context, m tenancy.OutgoingMail) error {
	if f.failMail {
		return errInjected
	}
	return f.Tx.EnqueueMail(ctx, m)
}

// failingStore runs every transaction through failingTx.
type failingStore struct {
	tenancy.Store
	failMail bool
}

func (f failingStore) InTx(ctx context.Context, fn func(tenancy.Tx) error) error {
	return f.Store.InTx(ctx, func(tx tenancy.Tx) error { return fn(failingTx{Tx: tx, failMail: f.failMail}) })
}
