package server

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/internal/testenv"
	"github.com/tenantplane/tenantplane/schema/dbmigrate"
)

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = execute(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestVersion(t *testing.T) {
	t.Parallel()
	code, out, _ := run(t, "version")
	require.Equal(t, 0, code)
	require.Contains(t, out, "tenantplane "+Version)
}

func TestMigrateCommand(t *testing.T) {
	t.Parallel()
	db := testenv.EmptyPostgres(t)
	versions, err := dbmigrate.Versions()
	require.NoError(t, err)
	latest := versions[len(versions)-1]

	code, out, errOut := run(t, "migrate", "status", "--database-url", db.URL)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "current: 0\n")

	code, _, errOut = run(t, "migrate", "up", "--database-url", db.URL)
	require.Equal(t, 0, code, errOut)
	code, out, _ = run(t, "migrate", "status", "--database-url", db.URL)
	require.Equal(t, 0, code)
	require.Contains(t, out, "pending: []")

	code, _, errOut = run(t, "migrate", "down", "--database-url", db.URL)
	require.Equal(t, 0, code, errOut)
	_, out, _ = run(t, "migrate", "status", "--database-url", db.URL)
	require.Contains(t, out, fmt.Sprintf("pending: [%d]", latest))

	code, _, errOut = run(t, "migrate", "down", "--all", "--database-url", db.URL)
	require.Equal(t, 0, code, errOut)
	_, out, _ = run(t, "migrate", "status", "--database-url", db.URL)
	require.Contains(t, out, "current: 0\n")

	code, _, errOut = run(t, "migrate", "down", "zero", "--database-url", db.URL)
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "setting N")
}

func TestServeConfigErrorsNameTheSetting(t *testing.T) {
	// Not parallel: sets environment variables.
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		setting string
	}{
		{"no database", []string{"serve"}, nil, "--database-url"},
		{"bad scheme", []string{"serve", "--database-url", "mysql://x"}, nil, "--database-url"},
		{"bad listen", []string{"serve", "--database-url", "postgres://x", "--listen", "nope"}, nil, "--listen"},
		{"bad level from env", []string{"serve", "--database-url", "postgres://x"}, map[string]string{"TENANTPLANE_LOG_LEVEL": "loud"}, "--log-level"},
		{"unparsable env", []string{"serve"}, map[string]string{"TENANTPLANE_HTTP_READ_TIMEOUT": "soon"}, "TENANTPLANE_HTTP_READ_TIMEOUT"},
		{"zero timeout", []string{"serve", "--database-url", "postgres://x", "--http-idle-timeout", "0s"}, nil, "--http-idle-timeout"},
		{"tiny body", []string{"serve", "--database-url", "postgres://x", "--http-max-body-bytes", "10"}, nil, "--http-max-body-bytes"},
		{"wildcard cors", []string{"serve", "--database-url", "postgres://x", "--cors-origins", "*"}, nil, "--cors-origins"},
		{"stripe without secret", []string{"serve", "--database-url", "postgres://x", "--mailer", "log", "--stripe-api-key", "sk_test_1"}, nil, "--stripe-*"},
		{"bad top-up bound", []string{"serve", "--database-url", "postgres://x", "--mailer", "log", "--stripe-api-key", "sk_test_1", "--stripe-min-topup", "five"}, nil, "--stripe-min-topup"},
		{"proxy not a network", []string{"serve", "--database-url", "postgres://x", "--trusted-proxies", "10.0.0.0/8,lb.internal"}, nil, "--trusted-proxies"},
		{"gc off without a limit", []string{"serve", "--database-url", "postgres://x", "--gc-percent", "-1"}, nil, "--gc-percent"},
		{"bad memory limit from env", []string{"serve", "--database-url", "postgres://x"}, map[string]string{"TENANTPLANE_MEMORY_LIMIT": "lots"}, "--memory-limit"},
		{"every address a proxy", []string{"serve", "--database-url", "postgres://x"}, map[string]string{"TENANTPLANE_TRUSTED_PROXIES": "10.0.0.0/8,0.0.0.0/0"}, "--trusted-proxies"},
		{"missing kubeconfig", []string{"serve", "--database-url", "postgres://x", "--kubeconfig", "/nonexistent/kubeconfig"}, nil, "--kubeconfig"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("DATABASE_URL", "")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			code, _, errOut := run(t, tc.args...)
			require.Equal(t, 2, code, errOut)
			require.Contains(t, errOut, "setting "+tc.setting)
		})
	}
}

func TestEnvFillsUnsetFlagsOnly(t *testing.T) {
	t.Setenv("TENANTPLANE_LISTEN", "127.0.0.1:9999")
	t.Setenv("TENANTPLANE_LOG_LEVEL", "debug")
	cfg := defaultConfig()
	cmd := &cobra.Command{Use: "serve"}
	cfg.bindFlags(cmd.Flags())
	require.NoError(t, cmd.Flags().Parse([]string{"--log-level", "warn"}))
	require.NoError(t, applyEnv(cmd))
	require.Equal(t, "127.0.0.1:9999", cfg.HTTP.Listen)
	require.Equal(t, "warn", cfg.LogLevel, "a flag on the command line wins over the environment")
}

func TestTrustedProxiesFromEnv(t *testing.T) {
	t.Setenv("TENANTPLANE_TRUSTED_PROXIES", "10.0.0.0/8, 2001:db8::/32")
	cfg := defaultConfig()
	cmd := &cobra.Command{Use: "serve"}
	cfg.bindFlags(cmd.Flags())
	require.NoError(t, cmd.Flags().Parse(nil))
	require.NoError(t, applyEnv(cmd))
	require.NoError(t, cfg.HTTP.validate())
	require.Equal(t, []string{"10.0.0.0/8", " 2001:db8::/32"}, cfg.HTTP.TrustedProxies)
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "10.1.1.1:3000"
	r.Header.Set("X-Forwarded-For", "203.0.113.9")
	require.Equal(t, "203.0.113.9", cfg.HTTP.proxies.ClientIP(r).String())
	r.RemoteAddr = "192.0.2.1:3000"
	require.Equal(t, "192.0.2.1", cfg.HTTP.proxies.ClientIP(r).String())
}
