package testenv_test

import (
	"crypto/tls"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"

	"github.com/tenantplane/tenantplane/internal/testenv"
)

func TestStripeMockCreatesCustomer(t *testing.T) {
	t.Parallel()
	mock := testenv.Stripe(t)
	require.True(t, strings.HasPrefix(mock.URL, "http://127.0.0.1:"), mock.URL)

	backend := stripe.GetBackendWithConfig(stripe.APIBackend, &stripe.BackendConfig{
		URL:               stripe.String(mock.URL),
		MaxNetworkRetries: stripe.Int64(0),
		LeveledLogger:     &stripe.LeveledLogger{Level: stripe.LevelError},
	})
	sc := client.New("sk_test_testenv", &stripe.Backends{API: backend, Connect: backend, Uploads: backend})
	c, err := sc.Customers.New(&stripe.CustomerParams{
		Email: stripe.String("owner@example.com"),
		Name:  stripe.String("Example Org"),
	})
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(c.ID, "cus_"), c.ID)
}

func TestStripeMockServesHTTPS(t *testing.T) {
	t.Parallel()
	mock := testenv.Stripe(t)
	require.True(t, strings.HasPrefix(mock.HTTPSURL, "https://127.0.0.1:"), mock.HTTPSURL)

	// stripe-mock's certificate is its own self-signed one.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // a fake on loopback
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, mock.HTTPSURL+"/v1/customers", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer sk_test_testenv")
	resp, err := hc.Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}
