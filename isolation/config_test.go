package isolation_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/tenantplane/tenantplane/isolation"
)

func mustPrefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ss))
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		change  func(c *isolation.Config)
		wantErr string
	}{
		{name: "defaults", change: func(*isolation.Config) {}},
		{name: "test config", change: func(c *isolation.Config) { *c = testConfig() }},
		{name: "no plans", change: func(c *isolation.Config) { c.Plans = nil }, wantErr: "at least one plan"},
		{name: "plan name", change: func(c *isolation.Config) { c.Plans["Gold Plan"] = c.Plans["free"] }, wantErr: `plan name "Gold Plan"`},
		{name: "gpu class without gpus", change: func(c *isolation.Config) {
			p := c.Plans["free"]
			p.GPURuntimeClass = "kata-gpu"
			c.Plans["free"] = p
		}, wantErr: "has GPUs"},
		{name: "gpu class equals runtime class", change: func(c *isolation.Config) {
			p := c.Plans["free"]
			p.GPURuntimeClass, p.Quota.GPUs = "kata-fc", 1
			c.Plans["free"] = p
		}, wantErr: "must differ"},
		{name: "no storage class", change: func(c *isolation.Config) {
			p := c.Plans["free"]
			p.StorageClasses = nil
			c.Plans["free"] = p
		}, wantErr: "at least one storage class"},
		{name: "storage class above total", change: func(c *isolation.Config) {
			p := c.Plans["free"]
			p.StorageClasses = map[string]resource.Quantity{"openebs-lvm": resource.MustParse("1Ti")}
			c.Plans["free"] = p
		}, wantErr: "between 0 and RequestsStorage"},
		{name: "default limit above max", change: func(c *isolation.Config) {
			p := c.Plans["free"]
			p.Limits.DefaultLimitCPU = resource.MustParse("3")
			c.Plans["free"] = p
		}, wantErr: "DefaultLimitCPU <= MaxCPU"},
		{name: "zero egress", change: func(c *isolation.Config) {
			p := c.Plans["free"]
			p.MaxEgressBandwidth = resource.Quantity{}
			c.Plans["free"] = p
		}, wantErr: "MaxEgressBandwidth"},
		{name: "object count key", change: func(c *isolation.Config) {
			p := c.Plans["free"]
			p.Quota.ObjectCounts = map[string]int64{"deployments": 3}
			c.Plans["free"] = p
		}, wantErr: "ObjectCounts"},
		{name: "pod security version", change: func(c *isolation.Config) { c.PodSecurityVersion = "1.37" }, wantErr: "PodSecurityVersion"},
		{name: "instance", change: func(c *isolation.Config) { c.Instance = "Prod" }, wantErr: "Instance"},
		{name: "users namespace", change: func(c *isolation.Config) { c.UsersNamespace = "" }, wantErr: "UsersNamespace"},
		{name: "no pod cidrs", change: func(c *isolation.Config) { c.Network.PodCIDRs = nil }, wantErr: "PodCIDRs"},
		{name: "unmasked cidr", change: func(c *isolation.Config) { c.Network.NodeCIDRs = []netip.Prefix{netip.MustParsePrefix("10.0.0.1/8")} }, wantErr: "masked"},
		{name: "dns labels", change: func(c *isolation.Config) { c.Network.DNSPodLabels = nil }, wantErr: "DNSPodLabels"},
		{name: "ingress namespace", change: func(c *isolation.Config) { c.Network.IngressNamespaces = []string{"Ingress"} }, wantErr: "Network namespace"},
		{name: "tenant domain", change: func(c *isolation.Config) { c.TenantDomain = "-bad-" }, wantErr: "TenantDomain"},
		{name: "kubeconfig ttl too short", change: func(c *isolation.Config) { c.KubeconfigTTL = time.Minute }, wantErr: "KubeconfigTTL"},
		{name: "kubeconfig ttl above max", change: func(c *isolation.Config) { c.KubeconfigTTL = 48 * time.Hour }, wantErr: "KubeconfigTTL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := isolation.DefaultConfig()
			tc.change(&cfg)
			err := cfg.Validate()
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}
