//go:build linux

package agent_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/bpf"
	"github.com/tenantplane/tenantplane/bpf/agent"
	"github.com/tenantplane/tenantplane/bpf/internal/netlab"
)

// kernelCounts reads the pinned counters the agent fills, by flow.
func (w *world) kernelCounts(cfg agent.Config, status agent.Status) map[flow]refCount {
	w.t.Helper()
	m, err := bpf.Load(bpf.Config{PinPath: cfg.PinPath, MaxPrefixes: cfg.MaxPrefixes()})
	require.NoError(w.t, err)
	defer m.Close()
	counters, err := m.Counters()
	require.NoError(w.t, err)
	pods := map[uint32]string{}
	for _, e := range status.Endpoints {
		pods[e.ID] = e.Namespace + "/" + e.Pod
	}
	out := map[flow]refCount{}
	for _, c := range counters {
		class := "internet"
		if c.Class != bpf.ClassInternet {
			class = "cluster" // the only other class of this world
		}
		p, ok := pods[c.Endpoint]
		require.True(w.t, ok, "counter of endpoint %d, which is no pod's", c.Endpoint)
		f := flow{p, c.Direction.String(), class}
		out[f] = refCount{Bytes: c.Bytes, WireBytes: c.WireBytes, Packets: c.Packets}
	}
	return out
}

// The program, attached by the agent, counts every pod's bytes, wire bytes
// and packets per direction and class exactly as nftables does on the same
// path, for ICMP, TCP and UDP over IPv4 and IPv6; and the usage stored
// through the ingest API is the wire bytes, to the byte.
func TestCountsMatchNftablesAndReachTheUsageStore(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	a := w.addPod(w.tenant(), "a", 0xa)
	b := w.addPod(w.tenant(), "b", 0xb)
	w.installReference()
	cfg := w.config()
	r := w.start(cfg)
	w.attached(r.Status, a, b)

	// ICMP of fixed sizes: to the internet, to the other pod, to the node.
	ping(t, a.ns, inetAddr4, 0, 56, 1000, 1472)
	ping(t, a.ns, inetAddr6, 8, 1452)
	ping(t, a.ns, b.v4, 100, 1400)
	ping(t, a.ns, b.v6, 100)
	ping(t, b.ns, nodeAddr4, 64)
	ping(t, b.ns, nodeAddr6, 64, 512)
	// TCP bulk of exact byte counts, both ways, both families.
	tcp(t, a.ns, w.inet, inetAddr4, 3<<20+17, nil)
	tcp(t, w.inet, a.ns, a.v6, 2<<20+5, nil)
	tcp(t, b.ns, a.ns, a.v4, 1<<20+3, nil)
	tcp(t, a.ns, b.ns, b.v6, 1<<20, nil)
	// UDP.
	udp(t, b.ns, w.inet, inetAddr4, 500, 500, 1472, 1)
	udp(t, w.inet, b.ns, b.v6, 1200, 1200, 8)
	udp(t, a.ns, b.ns, b.v4, 100, 100, 100)

	settle(t, w.nodeCounters)
	ref := w.reference()
	for f, c := range ref {
		t.Logf("%s %s %s: %+v", f.pod, f.direction, f.class, c)
	}
	for _, f := range []flow{
		{a.namespace + "/" + a.name, "egress", "internet"}, {a.namespace + "/" + a.name, "ingress", "internet"},
		{a.namespace + "/" + a.name, "egress", "cluster"}, {a.namespace + "/" + a.name, "ingress", "cluster"},
		{b.namespace + "/" + b.name, "egress", "internet"}, {b.namespace + "/" + b.name, "ingress", "internet"},
		{b.namespace + "/" + b.name, "egress", "cluster"}, {b.namespace + "/" + b.name, "ingress", "cluster"},
	} {
		require.NotZero(t, ref[f].Bytes, "the traffic covers %v", f)
	}
	// TSO/GSO at work: the bulk transfers left the node as more packets,
	// with more header bytes, than the skbs the node saw.
	bulk := ref[flow{a.namespace + "/" + a.name, "egress", "internet"}]
	require.Greater(t, bulk.WireBytes, bulk.Bytes)
	require.Greater(t, bulk.WireBytes, uint64(3<<20+17))

	require.Equal(t, ref, w.kernelCounts(cfg, r.Status()))

	want := map[string]int64{}
	for f, c := range ref {
		ns := f.pod[:len(f.pod)-len("/app-a")]
		want[ns+"/"+agent.Resource(f.class, f.direction)] += int64(c.WireBytes)
	}
	netlab.Eventually(t, 30*time.Second, func() error {
		if got := w.usage(); fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("stored usage %v, want %v", got, want)
		}
		return nil
	})
	require.Zero(t, r.metric("tenantplane_netmeter_counter_insert_errors_total"))
	require.Zero(t, r.metric("tenantplane_netmeter_unattributed_bytes"))
	netlab.Eventually(t, 30*time.Second, func() error { // gauges follow at the end of an interval
		if n := r.metric("tenantplane_netmeter_pending_events"); n != 0 {
			return fmt.Errorf("%v events pending, want none", n)
		}
		return nil
	})
}
