package graphtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/billing/billingstore"
	"github.com/tenantplane/tenantplane/billing/stripepay"
	"github.com/tenantplane/tenantplane/collectors/usage"
	"github.com/tenantplane/tenantplane/collectors/usage/usagestore"
	"github.com/tenantplane/tenantplane/graph"
	"github.com/tenantplane/tenantplane/internal/pgstore"
	"github.com/tenantplane/tenantplane/internal/testenv"
	"github.com/tenantplane/tenantplane/isolation"
	"github.com/tenantplane/tenantplane/isolation/isolationstore"
	"github.com/tenantplane/tenantplane/tenancy"
	"github.com/tenantplane/tenantplane/tenancy/authz"
	"github.com/tenantplane/tenantplane/tenancy/authz/authzstore"
	"github.com/tenantplane/tenantplane/tenancy/tenancystore"
)

// Env is one GraphQL server over a database of its own.
type Env struct {
	// DB is the database; DB.Pool is a pool of its own, beside the one
	// the server uses, for tests that look at or break the tables.
	DB         *testenv.DB
	Service    *tenancy.Service
	Authorizer *authz.Authorizer
	// Isolation is what the handler issues kubeconfigs, claims hosts and
	// suspends with, on the shared Kubernetes control plane.
	Isolation Isolation
	// Usage is the usage store the handler's usage queries read.
	Usage *usagestore.Store
	// Billing is the billing store the ledger and invoice queries read.
	Billing *billingstore.Store
	// GiftCodes is the gift code service of the handler, on the Env's
	// clock: Clock, settable, starting at the real time.
	GiftCodes *billing.GiftCodes
	Clock     *Clock
	Handler   http.Handler
	Server    *httptest.Server
	Client    *http.Client
	// Debt is the debt lifecycle the handler's billing fields use, with
	// webhooks allowed to loopback over http. No schedule runs.
	Debt *billing.Lifecycle
	// Payments takes top-ups through the shared stripe-mock.
	Payments *stripepay.Service
	// Admin performs the admin operations on money and plans.
	Admin   *billing.Admin
	queries *testenv.QueryCounter
}

// Option adjusts an Env's configuration before it starts.
type Option func(*graph.Config, *tenancy.Config)

// Argon2 keeps password hashing cheap in tests.
var Argon2 = tenancy.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1, KeyLen: 32, SaltLen: 16}

// New starts an Env: a fresh migrated database, the tenancy service with
// loose rate limits, an authorizer and its listener, and the handler on a
// loopback server. Everything stops when the test ends.
func New(t testing.TB, opts ...Option) *Env {
	t.Helper()
	db := testenv.Postgres(t)
	return NewOn(t, db, opts...)
}

// NewOn is New over an existing database.
func NewOn(t testing.TB, db *testenv.DB, opts ...Option) *Env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	// As many connections as the server's pool has for statements.
	pool, queries := db.CountingPool(t, pgstore.QueryConns)
	e := &Env{DB: db, queries: queries}
	var err error

	// A wide loader window keeps batches whole on a busy test machine.
	gcfg := graph.Config{Introspection: true, LoaderWait: 10 * time.Millisecond}
	tcfg := tenancy.DefaultConfig()
	tcfg.Argon2 = Argon2
	tcfg.BaseURL = "https://console.test"
	loose := tenancy.RateLimit{Max: 1_000_000, Window: time.Minute}
	tcfg.RateLimits = tenancy.RateLimits{
		SignUpPerIP: loose, SignUpPerEmail: loose, LogInPerIP: loose, LogInPerEmail: loose,
		ResetPerIP: loose, ResetPerEmail: loose, InvitePerUser: loose,
	}
	tcfg.MaxOrgsPerUser, tcfg.MaxNamespacesPerOrg = 1000, 1000
	for _, o := range opts {
		o(&gcfg, &tcfg)
	}
	if gcfg.LoaderWait == 0 {
		gcfg.LoaderWait = time.Millisecond // graph's default, which validate would also pick
	}
	e.Service, err = tenancy.New(tenancystore.New(pool), tcfg, nil, nil)
	require.NoError(t, err)

	// The authorizer has a pool of its own, so that Queries counts only
	// what the handler sends: the listener's refreshes, set off by
	// changes a test made a moment ago, come at any time.
	authzPool, _ := db.CountingPool(t, 5)
	ad, err := authzstore.NewAdapter(authzPool)
	require.NoError(t, err)
	e.Authorizer, err = authz.New(ctx, authz.Config{Adapter: ad})
	require.NoError(t, err)
	l, err := authzstore.NewListener(authzstore.ListenerConfig{Pool: authzPool, Enforcer: e.Authorizer, ReconnectDelay: 100 * time.Millisecond})
	require.NoError(t, err)
	done := make(chan error, 2)
	go func() { done <- l.Run(ctx) }()
	// The token cache's feed, as the server runs it.
	feed := tenancystore.NewTokenFeed(authzPool, e.Service.TokenCache(), nil, 100*time.Millisecond)
	go func() { done <- feed.Run(ctx) }()

	e.Isolation = newIsolation(ctx, t, isolationstore.New(pool), e.Service)
	e.Usage = usagestore.New(pool)
	usageQueries, err := usage.NewQueries(e.Usage, usage.QueryConfig{})
	require.NoError(t, err)
	e.Clock = NewClock(time.Now())
	e.Billing = billingstore.New(pool, e.Clock.Now)
	e.Admin, err = billing.NewAdmin(e.Billing, e.Clock.Now)
	require.NoError(t, err)
	e.GiftCodes, err = billing.NewGiftCodes(e.Billing, billing.DefaultGiftCodeConfig(), nil, nil, e.Clock.Now)
	require.NoError(t, err)
	lcfg := billing.DefaultLifecycleConfig()
	lcfg.Webhook.AllowHTTP = true
	lcfg.Webhook.AllowedNets = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	e.Debt, err = billing.NewLifecycle(lcfg, billing.LifecycleDeps{Store: e.Billing, Suspender: e.Isolation.Suspension, Clock: e.Clock.Now})
	require.NoError(t, err)
	e.Payments, err = stripepay.New(stripepay.Config{
		APIKey: "sk_test_graph", APIURL: testenv.Stripe(t).URL, WebhookSecrets: []string{"whsec_graph"},
		SuccessURL: "https://console.test/billing?topup=done", CancelURL: "https://console.test/billing",
	}, stripepay.Deps{Store: e.Billing, Clock: e.Clock.Now})
	require.NoError(t, err)
	pricing, err := billing.NewPricing(e.Billing, e.Billing, e.Billing, billing.RatingConfig{}, e.Clock.Now)
	require.NoError(t, err)
	e.Handler, err = graph.NewHandler(gcfg, graph.Deps{
		Tenancy: e.Service, Authorizer: e.Authorizer,
		Kubeconfigs: e.Isolation.Kubeconfigs, Suspender: e.Isolation.Suspension, Hosts: e.Isolation.Hosts,
		Usage: usageQueries, Ledger: e.Billing, GiftCodes: e.GiftCodes, Debt: e.Debt, Payments: e.Payments,
		Pricing: pricing, Admin: e.Admin, Clock: e.Clock.Now,
	})
	require.NoError(t, err)
	e.Server = httptest.NewServer(e.Handler)
	e.Client = e.Server.Client()
	t.Cleanup(func() {
		e.Server.Close()
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("listener: %v", err)
			}
		}
	})
	for name, ready := range map[string]<-chan struct{}{"authz listener": l.Ready(), "token feed": feed.Ready()} {
		select {
		case <-ready:
		case <-time.After(30 * time.Second):
			t.Fatal(name + " not ready")
		}
	}
	return e
}

// Isolation is an isolation installation of an Env's own on the shared
// control plane: its own instance name and users namespace, so that Envs
// in parallel never share a ServiceAccount. No reconciler runs: tenants'
// Kubernetes objects are not made, and suspension only records the state.
type Isolation struct {
	Config      isolation.Config
	Store       *isolationstore.Store
	Kubeconfigs *isolation.Kubeconfigs
	Hosts       *isolation.Hosts
	Suspension  *isolation.Suspension
}

var instanceSerial atomic.Int64

func newIsolation(ctx context.Context, t testing.TB, store *isolationstore.Store, svc *tenancy.Service) Isolation {
	t.Helper()
	kc := testenv.Kube(t)
	cfg := isolation.DefaultConfig()
	cfg.Instance = fmt.Sprintf("graph%d", instanceSerial.Add(1))
	cfg.UsersNamespace = cfg.Instance + "-users"
	_, err := kc.Client().CoreV1().Namespaces().Create(ctx,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: cfg.UsersNamespace}}, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = kc.Client().CoreV1().Namespaces().Delete(context.Background(), cfg.UsersNamespace, metav1.DeleteOptions{})
	})
	out := Isolation{Config: cfg, Store: store}
	rc := kc.Config()
	out.Kubeconfigs, err = isolation.NewKubeconfigs(kc.Client(), out.Store, cfg,
		isolation.ClusterAccess{Server: rc.Host, CAData: rc.CAData}, nil, nil)
	require.NoError(t, err)
	out.Hosts, err = isolation.NewHosts(out.Store, cfg, nil)
	require.NoError(t, err)
	out.Suspension, err = isolation.NewSuspension(svc, nil)
	require.NoError(t, err)
	return out
}

// Clock is a clock tests set; safe for concurrent use.
type Clock struct{ ns atomic.Int64 }

// NewClock returns a Clock at t.
func NewClock(t time.Time) *Clock {
	c := &Clock{}
	c.Set(t)
	return c
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) { c.ns.Store(t.UnixNano()) }

// Now is the clock's time in UTC.
func (c *Clock) Now() time.Time { return time.Unix(0, c.ns.Load()).UTC() }

// Queries is how many statements the handler's pool has sent so far.
func (e *Env) Queries() int64 { return e.queries.Count() }

// SyncAuthz reloads the authorizer, so that membership changes made a
// moment ago count without waiting for their notification.
func (e *Env) SyncAuthz(t testing.TB) {
	t.Helper()
	require.NoError(t, e.Authorizer.Reload(context.Background()))
}

// Error is one GraphQL error of a response.
type Error struct {
	Message    string         `json:"message"`
	Path       []any          `json:"path"`
	Extensions map[string]any `json:"extensions"`
}

// Code is the error's extensions.code.
func (e Error) Code() string {
	c, _ := e.Extensions["code"].(string)
	return c
}

// Response is a decoded GraphQL response.
type Response struct {
	Status int
	Data   json.RawMessage `json:"data"`
	Errors []Error         `json:"errors"`
	Header http.Header     `json:"-"`
}

// Decode unmarshals Data into v.
func (r Response) Decode(t testing.TB, v any) {
	t.Helper()
	require.NoError(t, json.Unmarshal(r.Data, v), "data: %s", r.Data)
}

// Do posts one operation with the bearer token (none when empty).
func (e *Env) Do(t testing.TB, token, query string, vars map[string]any) Response {
	t.Helper()
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, e.Server.URL, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := e.Client.Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	out := Response{Status: resp.StatusCode, Header: resp.Header}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	return out
}

// MustDo is Do that fails the test on any error in the response.
func (e *Env) MustDo(t testing.TB, token, query string, vars map[string]any) Response {
	t.Helper()
	r := e.Do(t, token, query, vars)
	require.Empty(t, r.Errors, "query %s", query)
	return r
}

// User is a signed-up user with a session token and the personal org
// and namespace sign-up made.
type User struct {
	ID          int64
	Email       string
	Token       string
	OrgID       int64
	NamespaceID int64
}

func actorCtx(userID int64, admin bool) context.Context {
	return tenancy.WithActor(context.Background(), tenancy.Actor{
		UserID: userID, PlatformAdmin: admin, IP: netip.MustParseAddr("127.0.0.1"), RequestID: "test",
	})
}

// SignUp registers a user through the service and logs them in.
func (e *Env) SignUp(t testing.TB, email string) User {
	t.Helper()
	ctx := actorCtx(0, false)
	u, err := e.Service.SignUp(ctx, email, "correct horse battery", "")
	require.NoError(t, err)
	tok, err := e.Service.LogIn(ctx, email, "correct horse battery")
	require.NoError(t, err)
	out := User{ID: u.ID, Email: u.Email, Token: tok.Secret}
	orgs, err := e.Service.OrgsByUserIDs(ctx, []int64{u.ID})
	require.NoError(t, err)
	require.Len(t, orgs[u.ID], 1)
	out.OrgID = orgs[u.ID][0].Org.ID
	nss, err := e.Service.NamespacesByOrgIDs(ctx, []int64{out.OrgID})
	require.NoError(t, err)
	require.Len(t, nss[out.OrgID], 1)
	out.NamespaceID = nss[out.OrgID][0].ID
	// Do not wait for the notification: the next request may come at once.
	require.NoError(t, e.Authorizer.Refresh(ctx, u.ID, authz.Platform))
	return out
}

// As returns a context acting as user (a platform admin when admin).
func (e *Env) As(userID int64, admin bool) context.Context { return actorCtx(userID, admin) }

// System returns a context acting as the platform itself.
func (e *Env) System() context.Context {
	return tenancy.WithActor(context.Background(), tenancy.Actor{System: "test", RequestID: "test"})
}
