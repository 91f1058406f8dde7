package export_test

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/billing/export"
	"github.com/tenantplane/tenantplane/internal/reqmeta"
	"github.com/tenantplane/tenantplane/tenancy"
	"github.com/tenantplane/tenantplane/tenancy/authz"
	"github.com/tenantplane/tenantplane/tenancy/authz/authzstore"
	"github.com/tenantplane/tenantplane/tenancy/tenancystore"
)

// serve mounts the export handler as the server does, with a platform
// admin and an ordinary user, and returns their tokens.
func (b *bundle) serve() (srv *httptest.Server, admin, user string) {
	b.t.Helper()
	ctx := tenancy.WithActor(context.Background(), tenancy.Actor{IP: netip.MustParseAddr("127.0.0.1"), RequestID: "test"})
	cfg := tenancy.DefaultConfig()
	cfg.Argon2 = tenancy.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1, KeyLen: 32, SaltLen: 16}
	svc, err := tenancy.New(tenancystore.New(b.db.Pool), cfg, nil, nil)
	require.NoError(b.t, err)
	token := func(email string) string {
		_, err := svc.SignUp(ctx, email, "correct horse battery", "")
		require.NoError(b.t, err)
		tok, err := svc.LogIn(ctx, email, "correct horse battery")
		require.NoError(b.t, err)
		return tok.Secret
	}
	admin, user = token("root@example.com"), token("someone@example.com")
	b.exec(`UPDATE users SET platform_admin = true WHERE email = 'root@example.com'`)
	ad, err := authzstore.NewAdapter(b.db.Pool)
	require.NoError(b.t, err)
	az, err := authz.New(context.Background(), authz.Config{Adapter: ad})
	require.NoError(b.t, err)
	// The test client is a trusted proxy, so X-Forwarded-For names the
	// client the audit log records.
	proxies, err := reqmeta.ParseProxies([]string{"127.0.0.0/8", "::1/128"})
	require.NoError(b.t, err)
	h, err := export.NewHandler(b.exp, svc, az, time.Minute, proxies, nil)
	require.NoError(b.t, err)
	mux := http.NewServeMux()
	mux.Handle("GET /admin/exports/{kind}", h)
	srv = httptest.NewServer(mux)
	b.t.Cleanup(srv.Close)
	return srv, admin, user
}

func get(t *testing.T, srv *httptest.Server, path, token string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	// A transport of its own that does not ask for gzip by itself.
	resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, body
}

type errorBody struct {
	Error struct{ Code, Message, Field, RequestID string } `json:"error"`
}

func decodeError(t *testing.T, body []byte) errorBody {
	t.Helper()
	var e errorBody
	require.NoError(t, json.Unmarshal(body, &e), string(body))
	require.NotEmpty(t, e.Error.RequestID)
	return e
}

func TestHTTPExportsAreForPlatformAdminsOnly(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.seed(2, 3)
	srv, admin, user := b.serve()
	const path = "/admin/exports/ledger?from=2026-11-01&to=2026-11-02"

	resp, body := get(t, srv, path, "", nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Equal(t, "UNAUTHENTICATED", decodeError(t, body).Error.Code)
	resp, body = get(t, srv, path, "not-a-token", nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Equal(t, "UNAUTHENTICATED", decodeError(t, body).Error.Code)
	resp, body = get(t, srv, path, user, nil)
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	require.Equal(t, "FORBIDDEN", decodeError(t, body).Error.Code)

	resp, body = get(t, srv, path, admin, map[string]string{"X-Forwarded-For": "203.0.113.7"})
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	require.Equal(t, "text/csv; charset=utf-8; header=present", resp.Header.Get("Content-Type"))
	require.Contains(t, resp.Header.Get("Content-Disposition"), `filename="ledger-20261101T000000Z-20261102T000000Z.csv"`)
	recs := parseCSV(t, export.Ledger, body)
	q, err := b.exp.Parse("ledger", export.Params{From: "2026-11-01", To: "2026-11-02"})
	require.NoError(t, err)
	n, sum := b.dbSum(export.Ledger, q.Filter)
	require.Len(t, recs, int(n))
	require.Equal(t, sum, md5Lines(canonical(t, export.Ledger, recs)))

	// The audit log names the admin.
	var actor, ip string
	require.NoError(t, b.db.Pool.QueryRow(context.Background(),
		`SELECT actor, host(ip) FROM audit_log WHERE action = 'billing.export' ORDER BY id DESC LIMIT 1`).Scan(&actor, &ip))
	require.Equal(t, "203.0.113.7", ip, "the client behind the trusted proxy")
	var adminID int64
	require.NoError(t, b.db.Pool.QueryRow(context.Background(), `SELECT id FROM users WHERE platform_admin`).Scan(&adminID))
	require.Equal(t, authz.Subject(adminID), actor)
}

func TestHTTPExportGzipAndErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.seed(2, 3)
	srv, admin, _ := b.serve()
	const path = "/admin/exports/usage?from=2026-11-01T00:00:00Z&to=2026-11-02T00:00:00Z&format=jsonl"
	_, plain := get(t, srv, path, admin, nil)
	require.Len(t, parseJSONL(t, export.Usage, plain), 2*2*3*4+2) // a correction and an orphan

	gunzip := func(b []byte) []byte {
		zr, err := gzip.NewReader(bytesReader(b))
		require.NoError(t, err)
		out, err := io.ReadAll(zr)
		require.NoError(t, err)
		return out
	}
	resp, body := get(t, srv, path, admin, map[string]string{"Accept-Encoding": "br, gzip;q=0.8"})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "gzip", resp.Header.Get("Content-Encoding"))
	require.Equal(t, "application/jsonl; charset=utf-8", resp.Header.Get("Content-Type"))
	require.Equal(t, plain, gunzip(body))

	resp, body = get(t, srv, path+"&gzip=1", admin, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Empty(t, resp.Header.Get("Content-Encoding"))
	require.Equal(t, "application/gzip", resp.Header.Get("Content-Type"))
	require.Contains(t, resp.Header.Get("Content-Disposition"), `.jsonl.gz"`)
	require.Equal(t, plain, gunzip(body))

	resp, _ = get(t, srv, path, admin, map[string]string{"Accept-Encoding": "gzip;q=0"})
	require.Empty(t, resp.Header.Get("Content-Encoding"))

	for _, tc := range []struct {
		path, code, field string
		status            int
	}{
		{"/admin/exports/usage?from=2026-11-01", "BAD_USER_INPUT", "to", 400},
		{"/admin/exports/usage?from=2026-11-01&to=2026-11-02&org=abc", "BAD_USER_INPUT", "org", 400},
		{"/admin/exports/usage?from=2026-11-01&to=2026-11-02&tenant=1", "BAD_USER_INPUT", "tenant", 400},
		{"/admin/exports/balances?from=2026-11-01", "BAD_USER_INPUT", "from", 400},
		{"/admin/exports/payments", "BAD_USER_INPUT", "kind", 400},
		{"/admin/exports/invoices?from=2026-11-01&to=2026-11-02&namespace=3", "BAD_USER_INPUT", "namespace", 400},
	} {
		resp, body := get(t, srv, tc.path, admin, map[string]string{"Accept-Encoding": "gzip"})
		require.Equal(t, tc.status, resp.StatusCode, tc.path)
		require.Equal(t, "application/json", resp.Header.Get("Content-Type"), tc.path)
		require.Empty(t, resp.Header.Get("Content-Encoding"), tc.path)
		e := decodeError(t, body)
		require.Equal(t, tc.code, e.Error.Code, tc.path)
		require.Equal(t, tc.field, e.Error.Field, tc.path)
		require.NotEmpty(t, e.Error.Message)
	}
}
