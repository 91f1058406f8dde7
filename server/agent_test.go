//go:build linux

package server

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/bpf/agent"
	"github.com/tenantplane/tenantplane/collectors/usage"
)

func TestAgentConfigErrorsNameTheSetting(t *testing.T) {
	// Not parallel: sets environment variables.
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		setting string
	}{
		{"bad prefix", []string{"agent", "--cluster-prefixes", "10.0.0.0/8"}, nil, "--cluster-prefixes"},
		{"bad prefix from env", []string{"agent"}, map[string]string{"TENANTPLANE_CLUSTER_PREFIXES": "nope=cluster"}, "--cluster-prefixes"},
		{"bad metrics listen", []string{"agent", "--cluster-prefixes", "10.0.0.0/8=cluster", "--metrics-listen", "x"}, nil, "--metrics-listen"},
		{"missing kubeconfig", []string{"agent", "--kubeconfig", "/nonexistent/kubeconfig"}, nil, "--kubeconfig"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			code, _, errOut := run(t, tc.args...)
			require.Equal(t, 2, code, errOut)
			require.Contains(t, errOut, "setting "+tc.setting)
		})
	}
}

func TestAgentFlagsMakeTheAgentConfig(t *testing.T) {
	t.Setenv("TENANTPLANE_NODE_NAME", "node-7")
	t.Setenv("TENANTPLANE_CLUSTER_PREFIXES", "10.244.0.0/16=cluster, fd00::/48=cluster,203.0.113.0/24=zone-b")
	cmd := newAgentCommand()
	var f agentFlags
	cmd.ResetFlags()
	f.bind(cmd.Flags())
	require.NoError(t, cmd.Flags().Parse([]string{"--interval", "30s", "--ingest-url", "https://tenantplane.example/v1/usage"}))
	require.NoError(t, applyEnv(cmd))
	cfg, err := f.config()
	require.NoError(t, err)
	require.Equal(t, "node-7", cfg.NodeName)
	require.Equal(t, []agent.Prefix{
		{Prefix: netip.MustParsePrefix("10.244.0.0/16"), Class: "cluster"},
		{Prefix: netip.MustParsePrefix("fd00::/48"), Class: "cluster"},
		{Prefix: netip.MustParsePrefix("203.0.113.0/24"), Class: "zone-b"},
	}, cfg.Prefixes)
	require.Equal(t, []string{"kube-system"}, cfg.ExcludeNamespaces)
	require.Equal(t, "/sys/fs/bpf/tenantplane", cfg.PinPath)
}

// TestAgentResourcesAreTheUsageStoresNames: the agent (bpf may import
// nothing of ours) builds its resource names itself; they must be the
// names that the ingest accepts and billing prices.
func TestAgentResourcesAreTheUsageStoresNames(t *testing.T) {
	t.Parallel()
	for _, class := range []string{agent.ClassInternet, usage.NetworkCluster, "zone-b"} {
		for _, dir := range []string{usage.Egress, usage.Ingress} {
			require.Equal(t, usage.NetworkResource(class, dir), agent.Resource(class, dir))
			require.True(t, usage.ValidNetwork(agent.Resource(class, dir), class))
		}
	}
	require.Equal(t, usage.NetworkInternetEgress, agent.Resource(agent.ClassInternet, usage.Egress))
}
