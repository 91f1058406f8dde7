package billing_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/internal/errcode"
)

func TestSignWebhookIsStripeStyleHMAC(t *testing.T) {
	t.Parallel()
	body := []byte(`{"id":"evt_debt_1"}`)
	ts := time.Unix(1_800_000_000, 0)
	h := billing.SignWebhook("whsec_test", ts, body)
	// Computed independently: HMAC-SHA256("whsec_test", "1800000000." + body).
	m := hmac.New(sha256.New, []byte("whsec_test"))
	m.Write([]byte("1800000000." + string(body)))
	require.Equal(t, "t=1800000000,v1="+hex.EncodeToString(m.Sum(nil)), h)

	tol := 5 * time.Minute
	require.NoError(t, billing.VerifyWebhookSignature("whsec_test", h, body, ts.Add(4*time.Minute), tol))
	require.NoError(t, billing.VerifyWebhookSignature("whsec_test", "v1=00,"+h, body, ts, tol), "any matching v1 counts")
	require.ErrorContains(t, billing.VerifyWebhookSignature("whsec_test", h, body, ts.Add(6*time.Minute), tol), "tolerance")
	require.ErrorContains(t, billing.VerifyWebhookSignature("whsec_other", h, body, ts, tol), "no signature")
	require.ErrorContains(t, billing.VerifyWebhookSignature("whsec_test", h, []byte(`{"id":"evt_debt_2"}`), ts, tol), "no signature")
	require.ErrorContains(t, billing.VerifyWebhookSignature("whsec_test", "v1=abc", body, ts, tol), "malformed")

	s1, err := billing.NewWebhookSecret()
	require.NoError(t, err)
	s2, err := billing.NewWebhookSecret()
	require.NoError(t, err)
	require.NotEqual(t, s1, s2)
	require.True(t, strings.HasPrefix(s1, "whsec_"))
	require.Len(t, s1, len("whsec_")+43)
}

func TestValidateWebhookURL(t *testing.T) {
	t.Parallel()
	strict := billing.DefaultWebhookConfig()
	loose := strict
	loose.AllowHTTP = true
	loose.AllowedNets = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	for _, c := range []struct {
		url  string
		cfg  billing.WebhookConfig
		good bool
	}{
		{"https://hooks.example.com/billing", strict, true},
		{"https://93.184.215.14:8443/x?y=1", strict, true},
		{"http://hooks.example.com/billing", strict, false},
		{"ftp://hooks.example.com/", strict, false},
		{"/relative", strict, false},
		{"https://user:pw@hooks.example.com/", strict, false},
		{"https://hooks.example.com/#frag", strict, false},
		{"https://127.0.0.1/", strict, false},
		{"https://[::1]/", strict, false},
		{"https://10.1.2.3/", strict, false},
		{"https://192.168.1.1/", strict, false},
		{"https://172.16.0.1/", strict, false},
		{"https://169.254.169.254/latest/meta-data", strict, false},
		{"https://[fe80::1]/", strict, false},
		{"https://[fd00::1]/", strict, false},
		{"https://100.64.0.1/", strict, false},
		{"https://0.0.0.0/", strict, false},
		{"https://[::ffff:127.0.0.1]/", strict, false},
		{"https://localhost/", strict, false},
		{"https://api.localhost./", strict, false},
		{"http://127.0.0.1:8080/hook", loose, true},
		{"http://10.0.0.1/hook", loose, false},
		{"https://x.example/" + strings.Repeat("a", 2048), strict, false},
	} {
		got, err := billing.ValidateWebhookURL(c.url, c.cfg)
		if c.good {
			require.NoError(t, err, c.url)
			require.Equal(t, c.url, got)
		} else {
			require.Equal(t, errcode.BadUserInput, errcode.Of(err), c.url)
		}
	}
}

// TestWebhookClientRefusesInternalAddresses proves the check happens at
// connection time, after name resolution: a URL that passed validation
// (a name) still cannot reach loopback.
func TestWebhookClientRefusesInternalAddresses(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { hits.Add(1) }))
	defer srv.Close()
	_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	require.NoError(t, err)

	cfg := billing.DefaultWebhookConfig()
	c := billing.NewWebhookClient(cfg)
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, "http://localhost:"+port+"/", nil)
	require.NoError(t, err)
	_, err = c.Do(req)
	require.ErrorContains(t, err, "refusing to connect")
	require.Zero(t, hits.Load())

	cfg.AllowedNets = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	c = billing.NewWebhookClient(cfg)
	resp, err := c.Do(req.Clone(context.Background()))
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, int64(1), hits.Load())
}

func TestWebhookBackoff(t *testing.T) {
	t.Parallel()
	cfg := billing.WebhookConfig{RetryBase: 30 * time.Second, RetryMax: 10 * time.Minute}
	var got []time.Duration
	for a := 1; a <= 7; a++ {
		got = append(got, billing.WebhookBackoff(a, cfg))
	}
	require.Equal(t, []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute,
		10 * time.Minute, 10 * time.Minute}, got)
}

func TestWebhookPayload(t *testing.T) {
	t.Parallel()
	p := billing.NewWebhookPayload(billing.DebtTransition{ID: 42, OrgID: 7, Event: billing.DebtEventSuspended,
		From: billing.DebtInDebt, To: billing.DebtSuspended, Usable: -1_500_000, Currency: "USD", Cause: "grace ended", At: tNow})
	require.Equal(t, billing.WebhookPayload{ID: "evt_debt_42", Type: "billing.debt.suspended", Created: tNow.Unix(),
		Data: billing.WebhookDataDebt{OrgID: "7", Event: "suspended", From: "debt", To: "suspended", UsableMicros: "-1500000",
			Usable: "-1.500000", Currency: "USD", Cause: "grace ended", At: "2026-11-27T12:00:00Z"}}, p)
}
