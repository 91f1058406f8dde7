package graph

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/tenancy"
)

// TestPanicsBecomeInternalErrors runs the schema without the loaders the
// handler installs, so the first resolver that needs them panics: the
// client gets INTERNAL and the request id, the log gets the panic.
func TestPanicsBecomeInternalErrors(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	srv := handler.New(NewExecutableSchema(Deps{Logger: log}))
	srv.AddTransport(transport.POST{})
	srv.SetErrorPresenter(presentError(log))
	srv.SetRecoverFunc(recoverPanic(log))

	req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{"query":"{ me { id createdAt } }"}`))
	req.Header.Set("Content-Type", "application/json")
	ctx := tenancy.WithActor(context.Background(), tenancy.Actor{UserID: 7, RequestID: "req-panic"})
	ctx = context.WithValue(ctx, principalKey{}, tenancy.Principal{UserID: 7})
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req.WithContext(ctx))

	body := rec.Body.String()
	require.Contains(t, body, `"code":"INTERNAL"`)
	require.Contains(t, body, "internal error (request id req-panic)")
	require.NotContains(t, body, "loaders")
	require.Contains(t, logs.String(), "no loaders in context")
	require.Contains(t, logs.String(), "req-panic")
}
