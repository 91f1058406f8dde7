package server

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/internal/reqmeta"
	"github.com/tenantplane/tenantplane/tenancy"
)

func TestAnonymousActorTakesTheClientThroughTrustedProxies(t *testing.T) {
	t.Parallel()
	proxies, err := reqmeta.ParseProxies([]string{"10.0.0.0/8"})
	require.NoError(t, err)
	for _, tc := range []struct {
		name, remote, want string
	}{
		{"from a trusted proxy", "10.0.0.5:1234", "203.0.113.9"},
		{"from anyone else", "192.0.2.1:1234", "192.0.2.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got tenancy.Actor
			h := withRequestID(withAnonymousActor(proxies, http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
				got, _ = tenancy.ActorFrom(r.Context())
			})))
			r := httptest.NewRequest(http.MethodGet, "/auth/oidc/login", nil)
			r.RemoteAddr = tc.remote
			r.Header.Set(reqmeta.ForwardedForHeader, "198.51.100.1, 203.0.113.9")
			h.ServeHTTP(httptest.NewRecorder(), r)
			require.Equal(t, tc.want, got.IP.String())
			require.NotEmpty(t, got.RequestID)
			require.Zero(t, got.UserID)
		})
	}
}
