package testenv_test

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/internal/testenv"
)

// TestVersionsMatchTools keeps the Go constants in step with
// tools/versions.env, which tools/install.sh builds from.
func TestVersionsMatchTools(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../tools/versions.env")
	require.NoError(t, err)
	env := map[string]string{}
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			env[k] = v
		}
	}
	require.Equal(t, map[string]string{
		"KUBE_VERSION":           testenv.KubeVersion,
		"ETCD_VERSION":           testenv.EtcdVersion,
		"KWOK_VERSION":           testenv.KwokVersion,
		"METRICS_SERVER_VERSION": testenv.MetricsServerVersion,
		"STRIPE_MOCK_VERSION":    testenv.StripeMockVersion,
		"GOLANGCI_LINT_VERSION":  testenv.GolangciLintVersion,
	}, env)
}

func TestToolPathFollowsCacheDir(t *testing.T) {
	t.Setenv("TENANTPLANE_CACHE", "/cache")
	require.Equal(t, "/cache/bin/etcd-"+testenv.EtcdVersion+"/etcd", testenv.ToolPath("etcd", testenv.EtcdVersion))
}
