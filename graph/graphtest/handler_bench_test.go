package graphtest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/graph"
	"github.com/tenantplane/tenantplane/graph/graphtest"
	"github.com/tenantplane/tenantplane/internal/pgstore"
	"github.com/tenantplane/tenantplane/internal/testenv"
	"github.com/tenantplane/tenantplane/tenancy"
)

// BenchmarkMeHandler serves benchQuery through the GraphQL handler and
// through the bare handler directly, one request at a time and without a
// network or a load generator, so that the allocations, the process CPU
// (cpu-µs/op, the runtime's included) and the Postgres CPU (pg-µs/op) per
// request are the handler's own:
// go test -run '^$' -bench MeHandler -benchmem ./graph/graphtest
func BenchmarkMeHandler(b *testing.B) {
	db := testenv.Postgres(b)
	ctx := context.Background()
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{seedUsers, []any{1000}}, {seedOrgs, nil}, {seedOrgMembers, nil}, {seedNamespaces, nil},
		{seedOwners, nil}, {seedViewers, []any{1000, benchViewers}},
	} {
		_, err := db.Pool.Exec(ctx, q.sql, q.args...)
		require.NoError(b, err)
	}
	_, err := db.Pool.Exec(ctx, `ANALYZE`)
	require.NoError(b, err)
	e := graphtest.NewOn(b, db, func(g *graph.Config, _ *tenancy.Config) { g.LoaderWait = 0 })
	tok, err := e.Service.CreateAPIToken(e.As(51, false), "bench", 0)
	require.NoError(b, err)
	body, err := json.Marshal(map[string]string{"query": benchQuery})
	require.NoError(b, err)
	barePool, _ := db.CountingPool(b, pgstore.QueryConns)
	pg := postgresCPU(b, db.URL)
	for _, h := range []struct {
		name string
		h    http.Handler
	}{{"graphql", e.Handler}, {"bare", bareHandler(barePool)}} {
		b.Run(h.name, func(b *testing.B) {
			serve := func() *httptest.ResponseRecorder {
				req := httptest.NewRequest(http.MethodPost, "/graphql", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+tok.Secret)
				w := httptest.NewRecorder()
				h.h.ServeHTTP(w, req)
				return w
			}
			w := serve()
			require.Equal(b, http.StatusOK, w.Code)
			require.Contains(b, w.Body.String(), `"members"`)
			require.NotContains(b, w.Body.String(), `"errors"`)
			b.ReportAllocs()
			c0, p0 := cpuTime(), pg()
			b.ResetTimer()
			for b.Loop() {
				serve()
			}
			b.StopTimer()
			b.ReportMetric(float64((cpuTime()-c0).Microseconds())/float64(b.N), "cpu-µs/op")
			b.ReportMetric(float64((pg()-p0).Microseconds())/float64(b.N), "pg-µs/op")
		})
	}
}
