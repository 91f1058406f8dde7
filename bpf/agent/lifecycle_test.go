//go:build linux

package agent_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tenantplane/tenantplane/bpf"
	"github.com/tenantplane/tenantplane/bpf/agent"
	"github.com/tenantplane/tenantplane/bpf/internal/netlab"
)

// wire sums the reference's wire bytes of one pod by resource.
func wire(ref map[flow]refCount, p *pod) map[string]int64 {
	out := map[string]int64{}
	for f, c := range ref {
		if f.pod == p.namespace+"/"+p.name && c.WireBytes > 0 {
			out[p.namespace+"/"+agent.Resource(f.class, f.direction)] += int64(c.WireBytes)
		}
	}
	return out
}

// of keeps the usage of one namespace.
func of(usage map[string]int64, namespace string) map[string]int64 {
	out := map[string]int64{}
	for k, v := range usage {
		if len(k) > len(namespace) && k[:len(namespace)+1] == namespace+"/" {
			out[k] = v
		}
	}
	return out
}

func (w *world) endpoint(status agent.Status, p *pod) (agent.EndpointStatus, bool) {
	for _, e := range status.Endpoints {
		if e.Namespace == p.namespace && e.Pod == p.name && !e.Ended {
			return e, true
		}
	}
	return agent.EndpointStatus{}, false
}

// The agent follows the node's pods: host-network pods, excluded
// namespaces and pods without a veth are not metered; an ended pod is
// billed to its last byte, detached, and its address goes to the next pod
// with it, whose traffic is billed to that pod's tenant; a pod whose veth
// is made anew is attached to the new one.
func TestAgentFollowsPods(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	a := w.addPod(w.tenant(), "a", 0xa)
	b := w.addPod(w.tenant(), "b", 0xb)
	// d will reuse a's IPv6 address; its network is ready before it runs.
	d := w.newPod("d", a.v6)
	w.plumb(d)
	w.installReference()

	excluded := w.kubeNamespace("system-")
	w.runPod(w.newPod("skipped", b.v6), excluded, false)
	w.runPod(w.newPod("host", b.v6), w.tenant(), true)
	noVeth := w.newPod("c", b.v6)
	noVeth.v6 = b.v6.Next().Next()
	w.runPod(noVeth, w.tenant(), false)

	cfg := w.config()
	cfg.ExcludeNamespaces = []string{excluded}
	r := w.start(cfg)
	w.attached(r.Status, a, b)
	netlab.Eventually(t, 30*time.Second, func() error {
		st := r.Status()
		if len(st.Endpoints) != 3 {
			return fmt.Errorf("endpoints %+v, want a, b and c", st.Endpoints)
		}
		c, ok := w.endpoint(st, noVeth)
		if !ok || c.Ifindex != 0 || c.Unresolved == "" {
			return fmt.Errorf("c is %+v, want it unresolved", c)
		}
		return nil
	})
	// The gauges follow the state at the end of each interval.
	netlab.Eventually(t, 30*time.Second, func() error {
		attached := r.metric("tenantplane_netmeter_endpoints", "state", "attached")
		unresolved := r.metric("tenantplane_netmeter_endpoints", "state", "unresolved")
		if attached != 2 || unresolved != 1 {
			return fmt.Errorf("endpoint gauges attached=%v unresolved=%v, want 2 and 1", attached, unresolved)
		}
		return nil
	})

	// a sends over IPv4 only (the internet host counts by source, and d
	// will send from a's IPv6 address).
	ping(t, a.ns, inetAddr4, 100, 1000)
	tcp(t, a.ns, w.inet, inetAddr4, 256<<10, nil)
	udp(t, b.ns, w.inet, inetAddr6, 700)
	settle(t, w.nodeCounters)
	aRef := wire(w.reference(), a)
	require.Len(t, aRef, 2)
	netlab.Eventually(t, 30*time.Second, func() error {
		if got := of(w.usage(), a.namespace); fmt.Sprint(got) != fmt.Sprint(aRef) {
			return fmt.Errorf("a's usage %v, want %v", got, aRef)
		}
		return nil
	})

	// a ends: detached, its address dropped, and after the grace its
	// endpoint and counters go.
	ea, _ := w.endpoint(r.Status(), a)
	zero := int64(0)
	require.NoError(t, w.kube.Client().CoreV1().Pods(a.namespace).Delete(w.ctx, a.name, metav1.DeleteOptions{GracePeriodSeconds: &zero}))
	m, err := bpf.Load(bpf.Config{PinPath: cfg.PinPath, MaxPrefixes: cfg.MaxPrefixes()})
	require.NoError(t, err)
	defer m.Close()
	netlab.Eventually(t, 15*time.Second, func() error {
		for _, e := range r.Status().Endpoints {
			if e.ID == ea.ID {
				return fmt.Errorf("a's endpoint is still there: %+v", e)
			}
		}
		if _, err := os.Stat(filepath.Join(w.pins, "links", fmt.Sprintf("%d-egress", a.ifindex))); !os.IsNotExist(err) {
			return fmt.Errorf("a's link is still pinned: %w", err)
		}
		counters, err := m.Counters()
		if err != nil {
			return err
		}
		if slices.ContainsFunc(counters, func(c bpf.Counter) bool { return c.Endpoint == ea.ID }) {
			return fmt.Errorf("a's counters are still there")
		}
		return nil
	})
	eps, err := m.Endpoints()
	require.NoError(t, err)
	require.NotContains(t, eps, a.v4)
	require.NotContains(t, eps, a.v6)

	// What a's network still sends is no one's.
	ping(t, a.ns, inetAddr4, 1000)
	// d runs with a's old IPv6 address, in another tenant.
	w.runPod(d, w.tenant(), false)
	w.attached(r.Status, b, d)
	ed, _ := w.endpoint(r.Status(), d)
	require.Greater(t, ed.ID, ea.ID, "a new endpoint, never a's")
	ping(t, d.ns, inetAddr6, 200, 1200)
	tcp(t, w.inet, d.ns, a.v6, 128<<10, nil)

	// b's veth is made anew, as when its sandbox is.
	w.node.Exec("ip", "link", "del", b.hostIf)
	w.plumb(b)
	w.attached(r.Status, b, d)
	tcp(t, b.ns, w.inet, inetAddr4, 64<<10, nil)

	settle(t, w.nodeCounters)
	ref := w.reference()
	for _, p := range []*pod{b, d} {
		want := wire(ref, p)
		require.NotEmpty(t, want)
		netlab.Eventually(t, 30*time.Second, func() error {
			if got := of(w.usage(), p.namespace); fmt.Sprint(got) != fmt.Sprint(want) {
				return fmt.Errorf("%s's usage %v, want %v", p.name, got, want)
			}
			return nil
		})
	}
	require.Equal(t, aRef, of(w.usage(), a.namespace), "nothing more for a")
	require.Zero(t, r.metric("tenantplane_netmeter_unattributed_bytes"), "a's later traffic is on a detached veth")
}

// While the ingest API is down the agent keeps at most MaxPendingBatches
// batches and says so in its metrics; the rest waits in the kernel
// counters; once the API is back everything is stored, exactly.
func TestPendingIsBoundedWhileTheIngestAPIIsDown(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	a := w.addPod(w.tenant(), "a", 0xa)
	w.installReference()
	cfg := w.config()
	cfg.MaxPendingBatches = 2
	w.gate.mode.Store(gateDown)
	r := w.start(cfg)
	w.attached(r.Status, a)

	for i := range 5 {
		ping(t, a.ns, inetAddr4, 100*i)
		time.Sleep(cfg.Interval)
	}
	netlab.Eventually(t, 30*time.Second, func() error {
		if st := r.Status(); st.PendingBatches != 2 {
			return fmt.Errorf("%d batches pending, want the bound, 2", st.PendingBatches)
		}
		return nil
	})
	netlab.Eventually(t, 30*time.Second, func() error { // gauges follow at the end of an interval
		if n, b := r.metric("tenantplane_netmeter_pending_batches"), r.metric("tenantplane_netmeter_pending_bytes"); n != 2 || b <= 0 {
			return fmt.Errorf("pending gauges batches=%v bytes=%v, want 2 and some", n, b)
		}
		return nil
	})
	require.Positive(t, r.metric("tenantplane_netmeter_push_errors_total"))
	// More traffic while the bound holds: it waits in the kernel.
	tcp(t, a.ns, w.inet, inetAddr4, 100<<10, nil)
	time.Sleep(3 * cfg.Interval)
	require.Equal(t, 2, r.Status().PendingBatches)
	require.Empty(t, w.usage())

	w.gate.mode.Store(gateOpen)
	settle(t, w.nodeCounters)
	want := wire(w.reference(), a)
	netlab.Eventually(t, 30*time.Second, func() error {
		if got := w.usage(); fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("stored usage %v, want %v", got, want)
		}
		return nil
	})
	netlab.Eventually(t, 5*time.Second, func() error {
		if n := r.metric("tenantplane_netmeter_pending_events"); n != 0 {
			return fmt.Errorf("%v events pending", n)
		}
		return nil
	})
}
