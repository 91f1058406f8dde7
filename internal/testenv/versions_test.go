package testenv_test

import (
	"bufio"
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
	f, err := os.Open("../../tools/versions.env")
	require.NoError(t, err)
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			env[k] = v
		}
	}
	require.NoError(t, sc.Err())
	require.Equal(t, map[string]string{
		"KUBE_VERSION":          testenv.KubeVersion,
		"ETCD_VERSION":          testenv.EtcdVersion,
		"KWOK_VERSION":          testenv.KwokVersion,
		"STRIPE_MOCK_VERSION":   testenv.StripeMockVersion,
		"GOLANGCI_LINT_VERSION": testenv.GolangciLintVersion,
	}, env)
}

func TestToolPathFollowsCacheDir(t *testing.T) {
	t.Setenv("TENANTPLANE_CACHE", "/cache")
	require.Equal(t, "/cache/bin/etcd-"+testenv.EtcdVersion+"/etcd", testenv.ToolPath("etcd", testenv.EtcdVersion))
}
