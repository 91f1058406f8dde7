package billingstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/billing/billingstore"
	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/internal/testenv"
	"github.com/tenantplane/tenantplane/tenancy"
	"github.com/tenantplane/tenantplane/tenancy/tenancystore"
)

const unit = billing.MicrosPerUnit

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// tenancySuspender suspends through the real tenancy service, as
// isolation.Suspension does before it nudges the reconciler, and counts
// the calls.
type tenancySuspender struct {
	svc               *tenancy.Service
	suspends, resumes atomic.Int64
	fail              atomic.Bool
}

func (s *tenancySuspender) Suspend(ctx context.Context, id int64, reason string) error {
	s.suspends.Add(1)
	if s.fail.Load() {
		return fmt.Errorf("kubernetes unavailable")
	}
	_, err := s.svc.SuspendNamespace(ctx, id, reason)
	return err
}

func (s *tenancySuspender) Resume(ctx context.Context, id int64) error {
	s.resumes.Add(1)
	if s.fail.Load() {
		return fmt.Errorf("kubernetes unavailable")
	}
	_, err := s.svc.ResumeNamespace(ctx, id, "")
	return err
}

// recordingRemover records the namespaces whose workloads it was asked to
// delete.
type recordingRemover struct {
	mu  sync.Mutex
	ids []int64
}

func (r *recordingRemover) RemoveWorkloads(_ context.Context, id int64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ids = append(r.ids, id)
	return nil
}

// hookServer is a webhook receiver on loopback that verifies signatures.
type hookServer struct {
	*httptest.Server
	mu       sync.Mutex
	secret   string
	events   []billing.WebhookPayload
	bad      int
	failNext atomic.Int64
	now      func() time.Time
}

func newHookServer(t *testing.T) *hookServer {
	h := &hookServer{}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.failNext.Add(-1) >= 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		if err := billing.VerifyWebhookSignature(h.secret, r.Header.Get(billing.WebhookSignatureHeader), body, h.now(), time.Minute); err != nil {
			h.bad++
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		var p billing.WebhookPayload
		if json.Unmarshal(body, &p) != nil || r.Header.Get(billing.WebhookEventHeader) != p.ID {
			h.bad++
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		h.events = append(h.events, p)
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hookServer) types() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, e := range h.events {
		out = append(out, e.Type)
	}
	return out
}

type lcEnv struct {
	t     *testing.T
	db    *testenv.DB
	store *billingstore.Store
	svc   *tenancy.Service
	clock *fakeClock
	susp  *tenancySuspender
	rm    *recordingRemover
	lc    *billing.Lifecycle
	reg   *prometheus.Registry
	hooks *hookServer
	owner tenancy.User
	org   int64
	ns    []tenancy.Namespace
}

var emailSerial atomic.Int64

func setupLifecycle(t *testing.T, tweak func(*billing.LifecycleConfig)) *lcEnv {
	t.Helper()
	db := testenv.Postgres(t)
	clock := &fakeClock{t: t0}
	tcfg := tenancy.DefaultConfig()
	tcfg.Argon2 = tenancy.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1, KeyLen: 32, SaltLen: 16}
	tcfg.BaseURL = "https://console.test"
	svc, err := tenancy.New(tenancystore.New(db.Pool), tcfg, nil, clock.now)
	require.NoError(t, err)
	e := &lcEnv{t: t, db: db, store: billingstore.New(db.Pool, clock.now), svc: svc, clock: clock,
		susp: &tenancySuspender{svc: svc}, rm: &recordingRemover{}, reg: prometheus.NewRegistry(), hooks: newHookServer(t)}
	e.hooks.now = clock.now

	ctx := tenancy.WithActor(context.Background(), tenancy.Actor{IP: netip.MustParseAddr("10.9.8.7")})
	e.owner, err = svc.SignUp(ctx, fmt.Sprintf("owner%d@example.test", emailSerial.Add(1)), "correct horse battery", "")
	require.NoError(t, err)
	orgs, err := svc.MyOrgs(e.as(), tenancy.PageArgs{})
	require.NoError(t, err)
	e.org = orgs.Edges[0].Node.Org.ID
	for _, name := range []string{"second", "third"} {
		_, err := svc.CreateNamespace(e.as(), e.org, fmt.Sprintf("%s-%d", name, e.owner.ID))
		require.NoError(t, err)
	}
	nss, err := svc.OrgNamespaces(e.as(), e.org, tenancy.PageArgs{})
	require.NoError(t, err)
	for _, n := range nss.Edges {
		e.ns = append(e.ns, n.Node)
	}
	require.Len(t, e.ns, 3)

	cfg := billing.DefaultLifecycleConfig()
	cfg.Grace = 24 * time.Hour
	cfg.Webhook.AllowHTTP = true
	cfg.Webhook.AllowedNets = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	cfg.Webhook.RetryBase, cfg.Webhook.RetryMax = time.Minute, time.Hour
	if tweak != nil {
		tweak(&cfg)
	}
	deps := billing.LifecycleDeps{Store: e.store, Suspender: e.susp, Clock: clock.now, Registerer: e.reg}
	if cfg.DeleteWorkloadsAfter > 0 {
		deps.Remover = e.rm
	}
	e.lc, err = billing.NewLifecycle(cfg, deps)
	require.NoError(t, err)
	return e
}

// counter returns the lifecycle's counter name whose label is value.
func (e *lcEnv) counter(name, label, value string) float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	require.NoError(e.t, err)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if mf.GetName() == name && lp.GetName() == label && lp.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	e.t.Fatalf("no counter %s{%s=%q}", name, label, value)
	return 0
}

func (e *lcEnv) as() context.Context {
	return tenancy.WithActor(context.Background(), tenancy.Actor{UserID: e.owner.ID})
}

func (e *lcEnv) actor() tenancy.Actor {
	return tenancy.Actor{UserID: e.owner.ID, RequestID: "req-1"}
}

var refSerial atomic.Int64

// post moves the org's balance by amount (a charge when negative) and
// tells the lifecycle, as rating and payments do.
func (e *lcEnv) post(amount int64) {
	e.t.Helper()
	kind := billing.KindTopUp
	if amount < 0 {
		kind = billing.KindCharge
	}
	_, err := e.store.Post(context.Background(), billing.Posting{OrgID: e.org, Kind: kind, Amount: amount, Currency: "USD",
		Reference: fmt.Sprintf("test:%d", refSerial.Add(1)), Actor: "system:test", At: e.clock.now()})
	require.NoError(e.t, err)
	e.lc.BalanceChanged(context.Background(), e.org)
}

func (e *lcEnv) state() billing.DebtState {
	e.t.Helper()
	st, err := e.store.DebtStatus(context.Background(), e.org)
	require.NoError(e.t, err)
	return st.State
}

func (e *lcEnv) nsStates() []tenancy.NamespaceState {
	e.t.Helper()
	var out []tenancy.NamespaceState
	for _, n := range e.ns {
		var s string
		require.NoError(e.t, e.db.Pool.QueryRow(context.Background(), `SELECT state FROM namespaces WHERE id = $1`, n.ID).Scan(&s))
		out = append(out, tenancy.NamespaceState(s))
	}
	return out
}

func (e *lcEnv) mails() map[string]int {
	e.t.Helper()
	rows, err := e.db.Pool.Query(context.Background(), `SELECT kind, recipient FROM mail_outbox WHERE kind LIKE 'billing_%'`)
	require.NoError(e.t, err)
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var kind, to string
		require.NoError(e.t, rows.Scan(&kind, &to))
		require.Equal(e.t, e.owner.Email, to)
		out[kind]++
	}
	require.NoError(e.t, rows.Err())
	return out
}

func (e *lcEnv) deliver() int {
	e.t.Helper()
	n, err := e.lc.DeliverWebhooks(context.Background())
	require.NoError(e.t, err)
	return n
}

func TestDebtLifecycleNotifiesEachTransitionOnceAndResumesOnlyItsOwn(t *testing.T) {
	t.Parallel()
	e := setupLifecycle(t, nil)
	ctx := context.Background()

	_, secret, err := e.lc.SetWebhook(ctx, e.org, e.hooks.URL+"/hook", e.actor())
	require.NoError(t, err)
	e.hooks.secret = secret
	_, _, err = e.lc.SetWebhook(ctx, e.org, "https://10.0.0.1/hook", e.actor())
	require.Equal(t, errcode.BadUserInput, errcode.Of(err), "private targets are refused")

	// An admin suspends one namespace for reasons of their own.
	admin := tenancy.WithActor(ctx, tenancy.Actor{System: "admin-test"})
	_, err = e.svc.SuspendNamespace(admin, e.ns[2].ID, "abuse report")
	require.NoError(t, err)

	e.post(15 * unit)
	require.Equal(t, billing.DebtNormal, e.state())
	e.post(-6 * unit) // 9
	require.Equal(t, billing.DebtLowBalance, e.state())
	e.post(-1 * unit) // 8: still low, no second warning
	e.post(-7 * unit) // 1
	require.Equal(t, billing.DebtCritical, e.state())
	e.post(-2 * unit) // -1
	require.Equal(t, billing.DebtInDebt, e.state())
	require.NoError(t, e.lc.Pass(ctx))
	require.Equal(t, billing.DebtInDebt, e.state(), "inside the grace period")
	require.Equal(t, []tenancy.NamespaceState{"active", "active", "suspended"}, e.nsStates())

	e.clock.advance(24 * time.Hour)
	require.NoError(t, e.lc.Pass(ctx))
	require.Equal(t, billing.DebtSuspended, e.state())
	require.Equal(t, []tenancy.NamespaceState{"suspended", "suspended", "suspended"}, e.nsStates())
	require.Equal(t, int64(2), e.susp.suspends.Load(), "only the active namespaces are suspended")
	require.NoError(t, e.lc.Pass(ctx))
	require.Equal(t, int64(2), e.susp.suspends.Load(), "a second pass suspends nothing again")

	e.post(unit / 2) // -0.5: still in debt, still suspended
	require.Equal(t, billing.DebtSuspended, e.state())
	e.post(20 * unit) // 19.5
	require.Equal(t, billing.DebtNormal, e.state())
	require.Equal(t, []tenancy.NamespaceState{"active", "active", "suspended"}, e.nsStates(),
		"the admin's suspension stays")
	require.Equal(t, int64(2), e.susp.resumes.Load())
	require.NoError(t, e.lc.Pass(ctx))

	require.Equal(t, map[string]int{"billing_low_balance": 1, "billing_critical": 1, "billing_debt": 1,
		"billing_suspended": 1, "billing_resumed": 1}, e.mails())
	trs, err := e.lc.Transitions(ctx, e.org, 0, 100)
	require.NoError(t, err)
	var events []billing.DebtEvent
	for _, tr := range trs {
		events = append([]billing.DebtEvent{tr.Event}, events...)
	}
	require.Equal(t, []billing.DebtEvent{"low_balance", "critical", "debt", "suspended", "resumed"}, events)
	for state, n := range map[billing.DebtState]float64{billing.DebtLowBalance: 1, billing.DebtCritical: 1,
		billing.DebtInDebt: 1, billing.DebtSuspended: 1, billing.DebtNormal: 1} {
		require.Equal(t, n, e.counter("tenantplane_billing_debt_transitions_total", "to", string(state)), state)
	}
	require.Zero(t, e.counter("tenantplane_billing_suspension_failures_total", "action", "suspend"))
	require.Equal(t, t0.Add(24*time.Hour), trs[1].At, "suspended at the end of the grace period")

	require.Equal(t, 0, e.deliver(), "the passes delivered them already")
	require.Equal(t, []string{"billing.debt.low_balance", "billing.debt.critical", "billing.debt.debt",
		"billing.debt.suspended", "billing.debt.resumed"}, e.hooks.types())
	require.Zero(t, e.hooks.bad)

	var audits int
	require.NoError(t, e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE action LIKE 'billing.debt.%'`).Scan(&audits))
	require.Equal(t, 5, audits)

	rep, err := e.lc.Debt(ctx, e.org)
	require.NoError(t, err)
	require.Equal(t, int64(19_500_000), rep.Status.Usable)
	// Every charge was posted at t0, a day ago: none is inside the
	// window of the burn rate.
	require.Zero(t, rep.Forecast.BurnPerHour)
}

func TestSuspensionIsRetriedWhenTheSuspenderFails(t *testing.T) {
	t.Parallel()
	e := setupLifecycle(t, func(c *billing.LifecycleConfig) { c.Grace = 0 })
	ctx := context.Background()
	e.post(5 * unit)
	e.susp.fail.Store(true)
	e.post(-6 * unit)
	require.Equal(t, billing.DebtSuspended, e.state())
	require.Equal(t, []tenancy.NamespaceState{"active", "active", "active"}, e.nsStates())
	var attempts int
	require.NoError(t, e.db.Pool.QueryRow(ctx, `SELECT min(attempts) FROM billing_namespace_holds`).Scan(&attempts))
	require.Equal(t, 1, attempts)
	require.Equal(t, 3.0, e.counter("tenantplane_billing_suspension_failures_total", "action", "suspend"),
		"each of the three namespaces failed once")
	require.Zero(t, e.counter("tenantplane_billing_suspension_failures_total", "action", "resume"))

	e.susp.fail.Store(false)
	require.NoError(t, e.lc.Pass(ctx))
	require.Equal(t, []tenancy.NamespaceState{"suspended", "suspended", "suspended"}, e.nsStates())
	require.Equal(t, map[string]int{"billing_low_balance": 1, "billing_debt": 1, "billing_suspended": 1}, e.mails())

	// Burn rate: 6 units in the last 24 hours, 0.25 per hour; suspended
	// already, so no time left is forecast.
	rep, err := e.lc.Debt(ctx, e.org)
	require.NoError(t, err)
	require.Equal(t, int64(250_000), rep.Forecast.BurnPerHour)
	require.Nil(t, rep.Forecast.TimeLeft)
}

func TestForecastFromTheLastDayOfCharges(t *testing.T) {
	t.Parallel()
	e := setupLifecycle(t, nil)
	ctx := context.Background()
	e.post(100 * unit)
	e.clock.advance(48 * time.Hour)
	e.post(-30 * unit) // 70 left
	e.clock.advance(time.Hour)
	e.post(-18 * unit) // 52 left; 48 charged in the last day, 2 an hour
	rep, err := e.lc.Debt(ctx, e.org)
	require.NoError(t, err)
	require.Equal(t, int64(2*unit), rep.Forecast.BurnPerHour)
	require.Equal(t, 26*time.Hour+24*time.Hour, *rep.Forecast.TimeLeft)
	require.Equal(t, e.clock.now().Add(50*time.Hour), *rep.Forecast.SuspensionAt)
}

func TestWorkloadDeletionIsDelayedAndCancelledByPayment(t *testing.T) {
	t.Parallel()
	e := setupLifecycle(t, func(c *billing.LifecycleConfig) {
		c.Grace = time.Hour
		c.DeleteWorkloadsAfter = 48 * time.Hour
	})
	ctx := context.Background()
	e.post(5 * unit)
	e.post(-6 * unit)
	e.clock.advance(time.Hour)
	require.NoError(t, e.lc.Pass(ctx))
	require.Equal(t, billing.DebtSuspended, e.state())
	e.clock.advance(47 * time.Hour)
	require.NoError(t, e.lc.Pass(ctx))
	require.Empty(t, e.rm.ids, "not before the second period ends")

	// A payment just before the deadline cancels the deletion.
	e.post(2 * unit)
	require.Equal(t, billing.DebtCritical, e.state())
	e.clock.advance(time.Hour)
	require.NoError(t, e.lc.Pass(ctx))
	require.Empty(t, e.rm.ids)

	// In debt and suspended again: deleted once the period ends, once.
	e.post(-2 * unit)
	e.clock.advance(time.Hour)
	require.NoError(t, e.lc.Pass(ctx))
	require.Equal(t, billing.DebtSuspended, e.state())
	e.clock.advance(48 * time.Hour)
	require.NoError(t, e.lc.Pass(ctx))
	require.NoError(t, e.lc.Pass(ctx))
	require.ElementsMatch(t, []int64{e.ns[0].ID, e.ns[1].ID, e.ns[2].ID}, e.rm.ids)
	require.Equal(t, 1, e.mails()["billing_workloads_deleted"])
}

func TestWebhookDeliveriesRetryWithBackoff(t *testing.T) {
	t.Parallel()
	e := setupLifecycle(t, nil)
	ctx := context.Background()
	_, secret, err := e.lc.SetWebhook(ctx, e.org, e.hooks.URL, e.actor())
	require.NoError(t, err)
	e.hooks.secret = secret
	e.hooks.failNext.Store(2)

	e.post(5 * unit) // low balance at once
	require.Zero(t, e.deliver(), "first attempt fails")
	require.Zero(t, e.deliver(), "not due before the backoff")
	e.clock.advance(time.Minute)
	require.Zero(t, e.deliver(), "second attempt fails")
	e.clock.advance(time.Minute)
	require.Zero(t, e.deliver(), "the backoff doubled")
	e.clock.advance(time.Minute)
	require.Equal(t, 1, e.deliver())
	require.Equal(t, []string{"billing.debt.low_balance"}, e.hooks.types())
	var attempts int
	var status int
	require.NoError(t, e.db.Pool.QueryRow(ctx,
		`SELECT attempts, last_status FROM billing_webhook_deliveries WHERE delivered_at IS NOT NULL`).Scan(&attempts, &status))
	require.Equal(t, 3, attempts)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, 2.0, e.counter("tenantplane_billing_webhook_delivery_failures_total", "next", "retry"))
	require.Zero(t, e.counter("tenantplane_billing_webhook_delivery_failures_total", "next", "given_up"))

	// Removing the webhook gives up what is pending.
	e.hooks.failNext.Store(1)
	e.post(-4 * unit) // critical
	require.Zero(t, e.deliver())
	require.NoError(t, e.lc.RemoveWebhook(ctx, e.org, e.actor()))
	e.clock.advance(time.Hour)
	require.Zero(t, e.deliver())
	var failed int
	require.NoError(t, e.db.Pool.QueryRow(ctx,
		`SELECT count(*) FROM billing_webhook_deliveries WHERE failed_at IS NOT NULL`).Scan(&failed))
	require.Equal(t, 1, failed)
	_, err = e.lc.Webhook(ctx, e.org)
	require.Equal(t, errcode.NotFound, errcode.Of(err))
}

func TestWebhookDeliveryGivenUpAfterTheLastAttempt(t *testing.T) {
	t.Parallel()
	e := setupLifecycle(t, func(c *billing.LifecycleConfig) { c.Webhook.MaxAttempts = 1 })
	_, secret, err := e.lc.SetWebhook(context.Background(), e.org, e.hooks.URL, e.actor())
	require.NoError(t, err)
	e.hooks.secret = secret
	e.hooks.failNext.Store(1)
	e.post(5 * unit) // low balance at once
	require.Zero(t, e.deliver())
	e.clock.advance(time.Hour)
	require.Zero(t, e.deliver(), "not tried again")
	require.Equal(t, 1.0, e.counter("tenantplane_billing_webhook_delivery_failures_total", "next", "given_up"))
	require.Zero(t, e.counter("tenantplane_billing_webhook_delivery_failures_total", "next", "retry"))
}

func (e *lcEnv) chargeLine(nsID int64, hour time.Time, amount int64) {
	e.t.Helper()
	_, err := e.db.Pool.Exec(context.Background(), `INSERT INTO charge_lines (key, org_id, namespace_id, resource, class, hour,
		revision, quantity, amount_micros, currency, rated_at, usage_seq)
		VALUES ($1, $2, $3, 'cpu', '', $4, 0, 1, $5, 'USD', $4, 1)`,
		fmt.Sprintf("test:%d", refSerial.Add(1)), e.org, nsID, hour, amount)
	require.NoError(e.t, err)
}

func TestSpendingLimitSuspendsOneNamespaceUntilRaisedOrNextMonth(t *testing.T) {
	t.Parallel()
	e := setupLifecycle(t, nil)
	ctx := context.Background()
	e.post(100 * unit)
	ns := e.ns[0].ID
	limit := int64(10 * unit)
	require.NoError(t, e.lc.SetSpendingLimit(ctx, ns, &limit, e.actor()))

	// The previous month's charges do not count.
	e.chargeLine(ns, t0.Add(-time.Hour), 50*unit)
	e.chargeLine(ns, t0, 6*unit)
	e.chargeLine(e.ns[1].ID, t0, 60*unit)
	require.NoError(t, e.lc.Pass(ctx))
	require.Equal(t, []tenancy.NamespaceState{"active", "active", "active"}, e.nsStates())

	e.chargeLine(ns, t0.Add(time.Hour), 4*unit)
	require.NoError(t, e.lc.Pass(ctx))
	require.Equal(t, []tenancy.NamespaceState{"suspended", "active", "active"}, e.nsStates())
	l, err := e.lc.SpendingLimit(ctx, ns)
	require.NoError(t, err)
	require.Equal(t, int64(10*unit), l.MonthSpend)
	require.True(t, l.Held)
	require.NoError(t, e.lc.Pass(ctx))
	require.Equal(t, 1, e.mails()["billing_spending_limit_reached"])

	// Raising the limit lifts it at once.
	limit = 12 * unit
	require.NoError(t, e.lc.SetSpendingLimit(ctx, ns, &limit, e.actor()))
	require.Equal(t, []tenancy.NamespaceState{"active", "active", "active"}, e.nsStates())
	e.chargeLine(ns, t0.Add(2*time.Hour), 3*unit)
	require.NoError(t, e.lc.Pass(ctx))
	require.Equal(t, []tenancy.NamespaceState{"suspended", "active", "active"}, e.nsStates())

	// Debt on top: the org is suspended, then paid; the namespace stays
	// suspended for its limit.
	e.post(-100 * unit)
	e.clock.advance(24 * time.Hour)
	require.NoError(t, e.lc.Pass(ctx))
	require.Equal(t, []tenancy.NamespaceState{"suspended", "suspended", "suspended"}, e.nsStates())
	e.post(50 * unit)
	require.Equal(t, []tenancy.NamespaceState{"suspended", "active", "active"}, e.nsStates())

	// The month turns: lifted.
	e.clock.advance(30 * 24 * time.Hour)
	require.NoError(t, e.lc.Pass(ctx))
	require.Equal(t, []tenancy.NamespaceState{"active", "active", "active"}, e.nsStates())
	require.Equal(t, map[string]int{"billing_spending_limit_reached": 2, "billing_spending_limit_lifted": 2},
		filter(e.mails(), "billing_spending"))

	limits, err := e.lc.SpendingLimits(ctx, e.org)
	require.NoError(t, err)
	require.Len(t, limits, 1)
	require.Zero(t, limits[0].MonthSpend)
	require.NoError(t, e.lc.SetSpendingLimit(ctx, ns, nil, e.actor()))
	_, err = e.lc.SpendingLimit(ctx, ns)
	require.Equal(t, errcode.NotFound, errcode.Of(err))
	zero := int64(0)
	require.Equal(t, errcode.BadUserInput, errcode.Of(e.lc.SetSpendingLimit(ctx, ns, &zero, e.actor())))
}

func filter(m map[string]int, prefix string) map[string]int {
	out := map[string]int{}
	for k, v := range m {
		if len(k) >= len(prefix) && k[:len(prefix)] == prefix {
			out[k] = v
		}
	}
	return out
}

func TestPostpaidOrgsAreLeftToInvoices(t *testing.T) {
	t.Parallel()
	e := setupLifecycle(t, func(c *billing.LifecycleConfig) { c.Grace = 0 })
	ctx := context.Background()
	_, err := e.db.Pool.Exec(ctx, `INSERT INTO plans (name, billing_mode, price_book_id, created_at, updated_at)
		SELECT 'business', 'postpaid', price_book_id, $1, $1 FROM plans WHERE name = 'free'`, t0)
	require.NoError(t, err)
	_, err = e.db.Pool.Exec(ctx, `UPDATE orgs SET plan = 'business' WHERE id = $1`, e.org)
	require.NoError(t, err)
	e.post(-50 * unit)
	require.NoError(t, e.lc.Pass(ctx))
	require.Equal(t, billing.DebtState(""), e.state())
	require.Equal(t, []tenancy.NamespaceState{"active", "active", "active"}, e.nsStates())
	require.Empty(t, e.mails())
}
