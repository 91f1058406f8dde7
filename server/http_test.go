package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76/webhook"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tenantplane/tenantplane/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

type httpSetup struct {
	url    string
	cancel context.CancelFunc
	done   chan error
}

// startHTTP runs an httpServer with the given checks and extra routes on a
// loopback port until the test ends.
func startHTTP(t *testing.T, cfg HTTPConfig, checks []check, routes map[string]http.Handler) *httpSetup {
	t.Helper()
	s := newHTTPServer(cfg, slog.New(slog.DiscardHandler), newRegistry(), checks)
	for p, h := range routes {
		s.handle(p, h)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.run(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("http server: %v", err)
		}
	})
	return &httpSetup{url: "http://" + l.Addr().String(), cancel: cancel, done: done}
}

func testHTTPConfig() HTTPConfig {
	c := defaultConfig().HTTP
	c.Listen = "127.0.0.1:0"
	c.MaxBodyBytes = 1024
	c.ShutdownTimeout = 5 * time.Second
	c.CORSOrigins = []string{"https://console.example.com"}
	return c
}

func get(t *testing.T, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

func TestReadyzReflectsRealPostgres(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	// A pool to a port nobody listens on: Postgres unreachable.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	deadAddr := l.Addr().String()
	require.NoError(t, l.Close())
	dead, err := pgxpool.New(context.Background(), "postgres://postgres@"+deadAddr+"/x?connect_timeout=1")
	require.NoError(t, err)
	t.Cleanup(dead.Close)

	up := startHTTP(t, testHTTPConfig(), []check{{"postgres", db.Pool.Ping}}, nil)
	resp, body := get(t, up.url+"/readyz")
	require.Equal(t, http.StatusOK, resp.StatusCode, body)

	down := startHTTP(t, testHTTPConfig(), []check{{"postgres", dead.Ping}}, nil)
	resp, body = get(t, down.url+"/readyz")
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Contains(t, body, `"postgres":`)
	require.Contains(t, body, "connect")

	resp, _ = get(t, down.url+"/healthz")
	require.Equal(t, http.StatusOK, resp.StatusCode, "liveness does not depend on peers")
}

func TestMiddleware(t *testing.T) {
	t.Parallel()
	s := startHTTP(t, testHTTPConfig(), nil, map[string]http.Handler{
		"GET /panic": http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }),
		"POST /echo": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, err := io.ReadAll(r.Body)
			if err != nil {
				var mbe *http.MaxBytesError
				if errors.As(err, &mbe) {
					w.WriteHeader(http.StatusRequestEntityTooLarge)
					return
				}
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			_, _ = w.Write(b)
		}),
	})

	t.Run("request id is made, or kept when well-formed", func(t *testing.T) {
		resp, _ := get(t, s.url+"/healthz")
		require.Len(t, resp.Header.Get(RequestIDHeader), 24)
		resp, _ = get(t, s.url+"/healthz", RequestIDHeader, "abc-123")
		require.Equal(t, "abc-123", resp.Header.Get(RequestIDHeader))
		resp, _ = get(t, s.url+"/healthz", RequestIDHeader, "bad id\" <script>")
		require.NotEqual(t, "bad id\" <script>", resp.Header.Get(RequestIDHeader))
	})

	t.Run("panic becomes a 500 naming the request id", func(t *testing.T) {
		resp, body := get(t, s.url+"/panic")
		require.Equal(t, http.StatusInternalServerError, resp.StatusCode)
		id := resp.Header.Get(RequestIDHeader)
		require.NotEmpty(t, id)
		require.Contains(t, body, `"requestId":"`+id+`"`)
		require.Contains(t, body, `"code":"INTERNAL"`)
		require.NotContains(t, body, "boom")
	})

	t.Run("body limit", func(t *testing.T) {
		resp, err := http.Post(s.url+"/echo", "text/plain", strings.NewReader(strings.Repeat("x", 1024)))
		require.NoError(t, err)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		resp, err = http.Post(s.url+"/echo", "text/plain", strings.NewReader(strings.Repeat("x", 1025)))
		require.NoError(t, err)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
		// Chunked, so no Content-Length to refuse up front: the reader stops it.
		req, err := http.NewRequest(http.MethodPost, s.url+"/echo", io.MultiReader(strings.NewReader(strings.Repeat("y", 4096))))
		require.NoError(t, err)
		req.ContentLength = -1
		resp, err = http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	})

	t.Run("cors only for configured origins", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodOptions, s.url+"/echo", nil)
		req.Header.Set("Origin", "https://console.example.com")
		req.Header.Set("Access-Control-Request-Method", "POST")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusNoContent, resp.StatusCode)
		require.Equal(t, "https://console.example.com", resp.Header.Get("Access-Control-Allow-Origin"))

		resp, _ = get(t, s.url+"/healthz", "Origin", "https://evil.example.com")
		require.Empty(t, resp.Header.Get("Access-Control-Allow-Origin"))
	})

	t.Run("metrics count requests by route and status", func(t *testing.T) {
		get(t, s.url+"/healthz")
		get(t, s.url+"/no-such-page")
		_, body := get(t, s.url+"/metrics")
		require.Contains(t, body, `tenantplane_http_requests_total{code="200",method="GET",route="GET /healthz"}`)
		require.Contains(t, body, `tenantplane_http_requests_total{code="404",method="GET",route="unmatched"}`)
		require.Contains(t, body, `tenantplane_http_requests_total{code="500",method="GET",route="GET /panic"}`)
		require.Contains(t, body, `tenantplane_http_request_duration_seconds_bucket`)
		require.Contains(t, body, `go_goroutines`)
	})
}

func TestGracefulShutdownFinishesInFlightRequests(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	release := make(chan struct{})
	s := startHTTP(t, testHTTPConfig(), nil, map[string]http.Handler{
		"GET /slow": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			close(started)
			<-release
			_, _ = io.WriteString(w, "finished")
		}),
	})
	type result struct {
		code int
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := http.Get(s.url + "/slow")
		if err != nil {
			res <- result{err: err}
			return
		}
		defer func() { _ = resp.Body.Close() }()
		b, err := io.ReadAll(resp.Body)
		res <- result{resp.StatusCode, string(b), err}
	}()
	<-started
	s.cancel() // what SIGTERM does
	select {
	case err := <-s.done:
		t.Fatalf("server stopped before its in-flight request finished: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	_, err := net.DialTimeout("tcp", strings.TrimPrefix(s.url, "http://"), time.Second)
	require.Error(t, err, "no new connections once shutting down")
	close(release)
	r := <-res
	require.NoError(t, r.err)
	require.Equal(t, http.StatusOK, r.code)
	require.Equal(t, "finished", r.body)
	require.NoError(t, <-s.done)
	s.done <- nil // for the cleanup
}

func TestServeIsReadyAgainstRealPeers(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	kube := testenv.Kube(t)
	cfg := defaultConfig()
	cfg.DatabaseURL = db.URL
	cfg.Kubeconfig = kube.KubeconfigPath()
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.Identity.Mailer = "log"
	cfg.Stripe.APIKey, cfg.Stripe.APIURL = "sk_test_serve", testenv.Stripe(t).URL
	cfg.Stripe.WebhookSecrets = []string{"whsec_serve"}
	cfg.Stripe.SuccessURL, cfg.Stripe.CancelURL = "https://console.test/ok", "https://console.test/no"
	require.NoError(t, cfg.validate())

	l, err := net.Listen("tcp", cfg.HTTP.Listen)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, slog.New(slog.DiscardHandler), l) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})

	url := "http://" + l.Addr().String()
	require.Eventually(t, func() bool {
		resp, err := http.Get(url + "/readyz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 50*time.Millisecond)

	// Sign-up through GraphQL gives the tenant a locked-down namespace in
	// Kubernetes: the isolation leader is elected and reconciles.
	gql := newGQLClient(t, url+"/graphql")
	gql.do("", `mutation { signUp(input: {email: "new@example.com", password: "correct horse battery", displayName: "New"}) { id } }`, nil)
	token := gql.do("", `mutation { logIn(input: {email: "new@example.com", password: "correct horse battery"}) { token } }`, nil)["logIn"].(map[string]any)["token"].(string)
	me := gql.do(token, `{ me { namespaces { edges { node { id name } } } } }`, nil)["me"].(map[string]any)
	node := me["namespaces"].(map[string]any)["edges"].([]any)[0].(map[string]any)["node"].(map[string]any)
	ns := node["name"].(string)
	require.Eventually(t, func() bool {
		q, err := kube.Client().CoreV1().ResourceQuotas(ns).List(context.Background(), metav1.ListOptions{})
		return err == nil && len(q.Items) > 0
	}, 30*time.Second, 50*time.Millisecond, "namespace %s gets its quota", ns)

	// The org's owner tops up through Stripe Checkout; Stripe's webhook,
	// signed, credits the balance; a forged one is refused.
	orgs := gql.do(token, `{ me { orgs { edges { node { id } } } } }`, nil)["me"].(map[string]any)
	orgID := orgs["orgs"].(map[string]any)["edges"].([]any)[0].(map[string]any)["node"].(map[string]any)["id"].(string)
	tu := gql.do(token, `mutation($org: ID!) { topUp(orgId: $org, amount: "25") { id checkoutUrl status } }`,
		map[string]any{"org": orgID})["topUp"].(map[string]any)
	require.Equal(t, "PENDING", tu["status"])
	require.NotEmpty(t, tu["checkoutUrl"])
	event, err := json.Marshal(map[string]any{"id": "evt_serve", "object": "event", "type": "payment_intent.succeeded",
		"created": time.Now().Unix(), "data": map[string]any{"object": map[string]any{"id": "pi_serve", "object": "payment_intent",
			"amount_received": 2500, "currency": "usd", "metadata": map[string]any{"tenantplane_org_id": orgID,
				"tenantplane_topup_id": tu["id"], "tenantplane_purpose": "top_up"}}}})
	require.NoError(t, err)
	for sec, want := range map[string]int{"whsec_forged": http.StatusBadRequest, "whsec_serve": http.StatusOK} {
		req, err := http.NewRequest(http.MethodPost, url+"/webhooks/stripe", bytes.NewReader(event))
		require.NoError(t, err)
		req.Header.Set("Stripe-Signature", webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: event, Secret: sec}).Header)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		require.Equal(t, want, resp.StatusCode, sec)
	}
	var cash int64
	require.NoError(t, db.Pool.QueryRow(context.Background(), `SELECT cash_micros FROM billing_accounts WHERE org_id = $1`, orgID).Scan(&cash))
	require.Equal(t, int64(25_000_000), cash)

	// The tenant's kubeconfig, fetched through GraphQL, reaches its own
	// namespace and nothing cluster-wide.
	kc := gql.do(token, `mutation($ns: ID!) { kubeconfig(namespaceId: $ns, ttlSeconds: 900) { yaml namespace } }`,
		map[string]any{"ns": node["id"]})["kubeconfig"].(map[string]any)
	require.Equal(t, ns, kc["namespace"])
	restCfg, err := clientcmd.RESTConfigFromKubeConfig([]byte(kc["yaml"].(string)))
	require.NoError(t, err)
	tenant, err := kubernetes.NewForConfig(restCfg)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := tenant.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
		return err == nil
	}, 30*time.Second, 100*time.Millisecond, "the tenant lists pods in %s once its RoleBinding is applied", ns)
	_, err = tenant.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	require.True(t, apierrors.IsForbidden(err), "listing nodes: %v", err)
	_, err = tenant.CoreV1().Pods("kube-system").List(context.Background(), metav1.ListOptions{})
	require.True(t, apierrors.IsForbidden(err), "listing another namespace's pods: %v", err)
}

// gqlClient posts GraphQL documents and fails the test on any error.
type gqlClient struct {
	t   *testing.T
	url string
}

func newGQLClient(t *testing.T, url string) *gqlClient { return &gqlClient{t: t, url: url} }

func (c *gqlClient) do(token, query string, vars map[string]any) map[string]any {
	c.t.Helper()
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	require.NoError(c.t, err)
	req, err := http.NewRequest(http.MethodPost, c.url, bytes.NewReader(body))
	require.NoError(c.t, err)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(c.t, err)
	defer func() { _ = resp.Body.Close() }()
	var res struct {
		Data   map[string]any `json:"data"`
		Errors []any          `json:"errors"`
	}
	require.NoError(c.t, json.NewDecoder(resp.Body).Decode(&res))
	require.Empty(c.t, res.Errors)
	return res.Data
}
