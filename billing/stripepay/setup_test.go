package stripepay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/billing/billingstore"
	"github.com/tenantplane/tenantplane/billing/stripepay"
	"github.com/tenantplane/tenantplane/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

const (
	secret    = "whsec_current"
	oldSecret = "whsec_previous"
)

// observer records the orgs it is told about.
type observer struct {
	mu   sync.Mutex
	orgs []int64
}

func (o *observer) BalanceChanged(_ context.Context, orgID int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.orgs = append(o.orgs, orgID)
}

func (o *observer) seen() []int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]int64(nil), o.orgs...)
}

type bundle struct {
	t        testing.TB
	db       *testenv.DB
	store    *billingstore.Store
	svc      *stripepay.Service
	observer *observer
	reg      *prometheus.Registry
	org      int64
}

type option func(*stripepay.Config, *stripepay.Deps)

func setup(t testing.TB, opts ...option) *bundle {
	t.Helper()
	db := testenv.Postgres(t)
	sm := testenv.Stripe(t)
	b := &bundle{t: t, db: db, observer: &observer{}, reg: prometheus.NewRegistry()}
	b.store = billingstore.New(db.Pool, func() time.Time { return t0 })
	cfg := stripepay.Config{
		APIKey: "sk_test_123", APIURL: sm.URL, WebhookSecrets: []string{secret, oldSecret},
		SuccessURL: "https://console.example.com/billing?topup=done", CancelURL: "https://console.example.com/billing",
	}
	deps := stripepay.Deps{Store: b.store, Observer: b.observer, Registerer: b.reg, Clock: func() time.Time { return t0 },
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))}
	for _, o := range opts {
		o(&cfg, &deps)
	}
	svc, err := stripepay.New(cfg, deps)
	require.NoError(t, err)
	b.svc = svc
	b.org = newOrg(t, db.Pool, "acme", "owner@acme.example")
	return b
}

// newOrg makes an org with one owner.
func newOrg(t testing.TB, pool *pgxpool.Pool, name, email string) int64 {
	t.Helper()
	ctx := context.Background()
	var org, user int64
	require.NoError(t, pool.QueryRow(ctx, `INSERT INTO orgs (name, display_name, created_at, updated_at)
		VALUES ($1, $1 || ' Inc.', $2, $2) RETURNING id`, name, t0).Scan(&org))
	require.NoError(t, pool.QueryRow(ctx, `INSERT INTO users (email, status, created_at, updated_at)
		VALUES ($1, 'active', $2, $2) RETURNING id`, email, t0).Scan(&user))
	_, err := pool.Exec(ctx, `INSERT INTO org_members (org_id, user_id, role, created_at) VALUES ($1, $2, 'owner', $3)`, org, user, t0)
	require.NoError(t, err)
	return org
}

// event is a webhook event as Stripe sends it.
func event(id, typ string, created time.Time, object map[string]any) []byte {
	b, err := json.Marshal(map[string]any{
		"id": id, "object": "event", "type": typ, "created": created.Unix(), "api_version": "2025-09-30.clover",
		"livemode": false, "pending_webhooks": 1, "data": map[string]any{"object": object},
	})
	if err != nil {
		panic(err)
	}
	return b
}

// sign signs payload as Stripe does, at ts with secret.
func sign(payload []byte, ts time.Time, sec string) string {
	return webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: sec, Timestamp: ts}).Header
}

// deliver posts a signed event to the webhook and returns the status.
func (b *bundle) deliver(payload []byte, header string) int {
	req := httptest.NewRequest(http.MethodPost, "/webhooks/stripe", bytes.NewReader(payload))
	req.Header.Set(stripepay.SignatureHeader, header)
	rec := httptest.NewRecorder()
	b.svc.Webhook().ServeHTTP(rec, req)
	return rec.Code
}

// send delivers payload signed now with the current secret.
func (b *bundle) send(payload []byte) int {
	return b.deliver(payload, sign(payload, time.Now(), secret))
}

// topUp starts a Checkout top-up of amount for org and returns it.
func (b *bundle) topUp(org int64, amount int64) stripepay.TopUp {
	b.t.Helper()
	tu, err := b.svc.TopUp(context.Background(), org, amount, "user:1")
	require.NoError(b.t, err)
	return tu
}

func meta(org, topUp int64) map[string]any {
	return map[string]any{"tenantplane_org_id": fmt.Sprint(org), "tenantplane_topup_id": fmt.Sprint(topUp),
		"tenantplane_purpose": "top_up"}
}

func checkoutCompleted(org, topUp int64, pi string, cents int64) map[string]any {
	return map[string]any{"id": "cs_test_" + pi, "object": "checkout.session", "payment_intent": pi,
		"amount_total": cents, "currency": "usd", "payment_status": "paid", "metadata": meta(org, topUp)}
}

func paymentIntent(org, topUp int64, pi string, cents int64) map[string]any {
	return map[string]any{"id": pi, "object": "payment_intent", "amount_received": cents, "currency": "usd",
		"status": "succeeded", "metadata": meta(org, topUp)}
}

// balance returns the org's balance.
func (b *bundle) balance(org int64) billing.Balance {
	b.t.Helper()
	bal, err := b.store.Balance(context.Background(), org, t0, "USD")
	require.NoError(b.t, err)
	return bal
}

// verified fails unless every balance equals its entries.
func (b *bundle) verified() {
	b.t.Helper()
	mm, err := b.store.Verify(context.Background())
	require.NoError(b.t, err)
	require.Empty(b.t, mm)
}

func (b *bundle) count(q string, args ...any) int {
	b.t.Helper()
	var n int
	require.NoError(b.t, b.db.Pool.QueryRow(context.Background(), q, args...).Scan(&n))
	return n
}

func (b *bundle) topUpRow(id int64) stripepay.TopUp {
	b.t.Helper()
	tu, err := b.store.TopUp(context.Background(), id)
	require.NoError(b.t, err)
	return tu
}

// testWriter sends log lines to the test's log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimSpace(p)))
	return len(p), nil
}
