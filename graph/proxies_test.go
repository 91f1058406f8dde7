package graph_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/graph"
	"github.com/tenantplane/tenantplane/graph/graphtest"
	"github.com/tenantplane/tenantplane/internal/reqmeta"
	"github.com/tenantplane/tenantplane/tenancy"
)

// TestClientAddressThroughTrustedProxiesOnly signs up through the
// handler with X-Forwarded-For, from a peer (loopback) that is a trusted
// proxy and from one that is not: the audit log and the per-IP rate limit
// see the forwarded address in the first case and the peer in the second.
func TestClientAddressThroughTrustedProxiesOnly(t *testing.T) {
	t.Parallel()
	oneSignUpPerIP := func(trusted []string) graphtest.Option {
		return func(g *graph.Config, c *tenancy.Config) {
			p, err := reqmeta.ParseProxies(trusted)
			require.NoError(t, err)
			g.TrustedProxies = p
			c.RateLimits.SignUpPerIP = tenancy.RateLimit{Max: 1, Window: time.Hour}
		}
	}
	signUp := func(e *graphtest.Env, email, forwardedFor string) graphtest.Response {
		body, err := json.Marshal(map[string]any{
			"query":     `mutation($in: SignUpInput!) { signUp(input: $in) { id } }`,
			"variables": map[string]any{"in": map[string]any{"email": email, "password": "correct horse battery"}},
		})
		require.NoError(t, err)
		req, err := http.NewRequest(http.MethodPost, e.Server.URL, bytes.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(reqmeta.ForwardedForHeader, forwardedFor)
		resp, err := e.Client.Do(req)
		require.NoError(t, err)
		defer func() { _ = resp.Body.Close() }()
		var out graphtest.Response
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
		return out
	}
	signUpIPs := func(e *graphtest.Env) []string {
		rows, err := e.DB.Pool.Query(context.Background(),
			`SELECT host(ip) FROM audit_log WHERE action = 'user.signup' ORDER BY id`)
		require.NoError(t, err)
		var ips []string
		for rows.Next() {
			var ip string
			require.NoError(t, rows.Scan(&ip))
			ips = append(ips, ip)
		}
		require.NoError(t, rows.Err())
		return ips
	}

	t.Run("trusted", func(t *testing.T) {
		t.Parallel()
		e := graphtest.New(t, oneSignUpPerIP([]string{"127.0.0.0/8", "::1"}))
		require.Empty(t, signUp(e, "a@example.com", "198.51.100.7, 203.0.113.1").Errors)
		// Another client behind the same proxy has a limit of its own.
		require.Empty(t, signUp(e, "b@example.com", "203.0.113.2").Errors)
		// The same client again is limited, whatever it puts to the left.
		r := signUp(e, "c@example.com", "192.0.2.99, 203.0.113.2")
		require.Len(t, r.Errors, 1)
		require.Equal(t, "RATE_LIMITED", r.Errors[0].Code())
		require.Equal(t, []string{"203.0.113.1", "203.0.113.2"}, signUpIPs(e))
	})

	t.Run("untrusted", func(t *testing.T) {
		t.Parallel()
		e := graphtest.New(t, oneSignUpPerIP([]string{"10.0.0.0/8"}))
		require.Empty(t, signUp(e, "a@example.com", "203.0.113.1").Errors)
		// A different forwarded address from the same peer changes nothing.
		r := signUp(e, "b@example.com", "203.0.113.2")
		require.Len(t, r.Errors, 1)
		require.Equal(t, "RATE_LIMITED", r.Errors[0].Code())
		require.Equal(t, []string{"127.0.0.1"}, signUpIPs(e))
	})
}
