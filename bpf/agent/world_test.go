//go:build linux

package agent_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tenantplane/tenantplane/bpf/agent"
	"github.com/tenantplane/tenantplane/bpf/internal/netlab"
	"github.com/tenantplane/tenantplane/collectors"
	"github.com/tenantplane/tenantplane/collectors/usage/usagestore"
	"github.com/tenantplane/tenantplane/internal/testenv"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(runChild(spec))
	}
	testenv.Main(m)
}

// The cluster of the tests: pods get IPv4 addresses from kwok's
// 10.244.0.0/16 and IPv6 ones from 2001:db8:1::/64; the node router has
// 203.0.113.1 and 2001:db8:2::1; the internet host, outside every cluster
// prefix, is 198.51.100.1 and 2001:db8:100::1.
var (
	clusterPrefixes = []agent.Prefix{
		{Prefix: netip.MustParsePrefix("10.244.0.0/16"), Class: "cluster"},
		{Prefix: netip.MustParsePrefix("2001:db8:1::/64"), Class: "cluster"},
		{Prefix: netip.MustParsePrefix("203.0.113.1/32"), Class: "cluster"},
		{Prefix: netip.MustParsePrefix("2001:db8:2::1/128"), Class: "cluster"},
	}
	nodeAddr4 = netip.MustParseAddr("203.0.113.1")
	nodeAddr6 = netip.MustParseAddr("2001:db8:2::1")
	inetAddr4 = netip.MustParseAddr("198.51.100.1")
	inetAddr6 = netip.MustParseAddr("2001:db8:100::1")
)

// world is a node with pods, an internet host, the Kubernetes control plane
// that has the pods, and the real usage ingest API on Postgres behind a
// gate that can play an outage.
type world struct {
	t          *testing.T
	ctx        context.Context
	lab        *netlab.Lab
	node, inet *netlab.NS
	kube       *testenv.KubeCluster
	db         *testenv.DB
	org        int64
	nodeName   string
	gate       *gate
	ingestURL  string
	tokenFile  string
	pins       string
	stateDir   string
	pods       []*pod
	log        *slog.Logger
}

// pod is a pod of the world: a Kubernetes pod on the node and a network
// namespace with its addresses behind the host-side veth hostIf.
type pod struct {
	name, namespace string
	uid             string
	ns              *netlab.NS
	v4, v6          netip.Addr
	hostIf          string
	ifindex         int
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{t: t, ctx: t.Context(), lab: netlab.New(t), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if testing.Verbose() {
		w.log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	w.node, w.inet = w.lab.NS("node"), w.lab.NS("inet")
	w.node.Sysctl("net.ipv4.ip_forward", "1")
	w.node.Sysctl("net.ipv6.conf.all.forwarding", "1")
	w.node.Exec("ip", "addr", "add", nodeAddr4.String()+"/32", "dev", "lo")
	w.node.Exec("ip", "addr", "add", nodeAddr6.String()+"/128", "dev", "lo")
	w.lab.Veth(w.node, "up0", w.inet, "eth0")
	w.node.NoOffload("up0")
	w.node.Exec("ip", "addr", "add", "198.51.100.254/24", "dev", "up0")
	w.node.Exec("ip", "addr", "add", "2001:db8:100::fe/64", "dev", "up0", "nodad")
	w.inet.Exec("ip", "addr", "add", inetAddr4.String()+"/24", "dev", "eth0")
	w.inet.Exec("ip", "addr", "add", inetAddr6.String()+"/64", "dev", "eth0", "nodad")
	w.inet.Exec("ip", "route", "add", "default", "via", "198.51.100.254")
	w.inet.Exec("ip", "-6", "route", "add", "default", "via", "2001:db8:100::fe")

	w.kube = testenv.KubeWithPods(t)
	w.nodeName = w.fakeNode()
	w.db = testenv.Postgres(t)
	require.NoError(t, w.db.Pool.QueryRow(w.ctx, `INSERT INTO orgs (name, created_at, updated_at) VALUES ('acme', now(), now()) RETURNING id`).Scan(&w.org))
	store := usagestore.New(w.db.Pool)
	_, err := store.EnsurePartitions(w.ctx, time.Now().AddDate(0, 0, -1), time.Now().AddDate(0, 0, 2))
	require.NoError(t, err)

	// The meter's ServiceAccount and its token, as the DaemonSet has them.
	meters := w.kubeNamespace("meters-")
	_, err = w.kube.Client().CoreV1().ServiceAccounts(meters).Create(w.ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "netmeter"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, rc, err := w.kube.ServiceAccountKubeconfig(w.ctx, meters, "netmeter", time.Hour)
	require.NoError(t, err)
	w.tokenFile = filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(w.tokenFile, []byte(rc.BearerToken+"\n"), 0o600))

	h, err := collectors.NewIngest(collectors.IngestConfig{
		Meters: []collectors.Meter{{Name: "network", ServiceAccounts: []string{meters + "/netmeter"}, Resources: []string{"network.*"}}},
	}, w.kube.Client().AuthenticationV1(), store, nil, w.log, func() time.Time { return time.Now().UTC() })
	require.NoError(t, err)
	w.gate = &gate{h: h}
	srv := httptest.NewServer(w.gate)
	t.Cleanup(srv.Close)
	w.ingestURL = srv.URL + "/v1/usage"

	w.pins = filepath.Join(netlab.BPFFS(t), "tenantplane")
	w.stateDir = t.TempDir()
	return w
}

// fakeNode creates a Node of its own for this world, which kwok runs pods
// on, so that its agent sees only this world's pods.
func (w *world) fakeNode() string {
	w.t.Helper()
	n, err := w.kube.Client().CoreV1().Nodes().Create(w.ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "netmeter-",
			Annotations:  map[string]string{"kwok.x-k8s.io/node": "fake"},
			Labels:       map[string]string{"type": "kwok", "kubernetes.io/os": "linux"},
		},
		Status: corev1.NodeStatus{Capacity: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("100")}},
	}, metav1.CreateOptions{})
	require.NoError(w.t, err)
	w.t.Cleanup(func() {
		_ = w.kube.Client().CoreV1().Nodes().Delete(context.Background(), n.Name, metav1.DeleteOptions{})
	})
	netlab.Eventually(w.t, time.Minute, func() error {
		n, err := w.kube.Client().CoreV1().Nodes().Get(w.ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("node %s is not ready", n.Name)
	})
	return n.Name
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func (w *world) kubeNamespace(prefix string) string {
	w.t.Helper()
	ns, err := w.kube.Client().CoreV1().Namespaces().Create(w.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix}}, metav1.CreateOptions{})
	require.NoError(w.t, err)
	w.t.Cleanup(func() {
		_ = w.kube.Client().CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
	})
	return ns.Name
}

// tenant creates a tenant namespace in Kubernetes and in Postgres.
func (w *world) tenant() string {
	w.t.Helper()
	name := w.kubeNamespace("net-")
	_, err := w.db.Pool.Exec(w.ctx, `INSERT INTO namespaces (org_id, name, state, created_at, updated_at) VALUES ($1, $2, 'active', now(), now())`, w.org, name)
	require.NoError(w.t, err)
	return name
}

// addPod runs a pod in namespace on the node, with the IPv6 address
// 2001:db8:1::<v6> beside kwok's IPv4 one, and builds its network.
func (w *world) addPod(namespace, short string, v6 uint16) *pod {
	w.t.Helper()
	p := w.newPod(short, netip.MustParseAddr(fmt.Sprintf("2001:db8:1::%x", v6)))
	w.runPod(p, namespace, false)
	w.plumb(p)
	return p
}

func (w *world) newPod(short string, v6 netip.Addr) *pod {
	return &pod{name: "app-" + short, hostIf: "vp" + short, v6: v6}
}

// runPod creates p in Kubernetes, on the node, waits until kwok runs it
// and makes it dual-stack: kwok gives one IPv4 address, the pod reports
// p.v6 beside it, as a dual-stack CNI would.
func (w *world) runPod(p *pod, namespace string, hostNetwork bool) {
	w.t.Helper()
	p.namespace = namespace
	no := false
	created, err := w.kube.Client().CoreV1().Pods(namespace).Create(w.ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: p.name},
		Spec: corev1.PodSpec{
			NodeName:                     w.nodeName,
			HostNetwork:                  hostNetwork,
			AutomountServiceAccountToken: &no,
			Containers:                   []corev1.Container{{Name: "app", Image: "registry.invalid/app:1"}},
		},
	}, metav1.CreateOptions{})
	require.NoError(w.t, err)
	p.uid = string(created.UID)
	var running *corev1.Pod
	netlab.Eventually(w.t, time.Minute, func() error {
		running, err = w.kube.Client().CoreV1().Pods(namespace).Get(w.ctx, p.name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if running.Status.Phase != corev1.PodRunning || running.Status.PodIP == "" {
			return fmt.Errorf("pod %s/%s is %s with address %q", namespace, p.name, running.Status.Phase, running.Status.PodIP)
		}
		return nil
	})
	p.v4 = netip.MustParseAddr(running.Status.PodIP)
	if hostNetwork {
		return
	}
	running.Status.PodIPs = []corev1.PodIP{{IP: p.v4.String()}, {IP: p.v6.String()}}
	_, err = w.kube.Client().CoreV1().Pods(namespace).UpdateStatus(w.ctx, running, metav1.UpdateOptions{})
	require.NoError(w.t, err)
	if p.ns != nil && p.v4.IsValid() {
		// Plumbed before it ran: its IPv4 address comes now.
		p.ns.Exec("ip", "addr", "add", p.v4.String()+"/32", "dev", "eth0")
		w.node.Exec("ip", "route", "replace", p.v4.String()+"/32", "dev", p.hostIf)
	}
}

// plumb builds p's network: a namespace with its addresses on eth0, the
// host side hostIf in the node (TSO and GSO off), routes both ways.
func (w *world) plumb(p *pod) {
	w.t.Helper()
	if p.ns == nil {
		p.ns = w.lab.NS("pod" + short(p))
		w.pods = append(w.pods, p)
	}
	w.lab.Veth(w.node, p.hostIf, p.ns, "eth0")
	w.node.NoOffload(p.hostIf)
	w.node.Exec("ip", "addr", "add", "169.254.1.1/32", "dev", p.hostIf)
	w.node.Exec("ip", "addr", "add", "fe80::1/64", "dev", p.hostIf, "nodad")
	if p.v4.IsValid() {
		w.node.Exec("ip", "route", "replace", p.v4.String()+"/32", "dev", p.hostIf)
		p.ns.Exec("ip", "addr", "add", p.v4.String()+"/32", "dev", "eth0")
	}
	w.node.Exec("ip", "-6", "route", "replace", p.v6.String()+"/128", "dev", p.hostIf)
	p.ns.Exec("ip", "addr", "add", p.v6.String()+"/128", "dev", "eth0", "nodad")
	p.ns.Exec("ip", "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
	p.ns.Exec("ip", "route", "add", "default", "via", "169.254.1.1", "dev", "eth0")
	p.ns.Exec("ip", "-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0")
	p.ifindex = w.node.Ifindex(p.hostIf)
}

// config is the agent's configuration in this world.
func (w *world) config() agent.Config {
	return agent.Config{
		NodeName:         w.nodeName,
		IngestURL:        w.ingestURL,
		TokenFile:        w.tokenFile,
		StateDir:         w.stateDir,
		PinPath:          w.pins,
		NetNS:            w.node.Path(),
		Prefixes:         clusterPrefixes,
		InterfacePattern: "vp*",
		Interval:         200 * time.Millisecond,
		EndGrace:         300 * time.Millisecond,
		HTTPTimeout:      5 * time.Second,
	}
}

// running is an agent running in this test process.
type running struct {
	*agent.Agent
	reg  *prometheus.Registry
	stop func()
}

func (w *world) start(cfg agent.Config) *running {
	w.t.Helper()
	reg := prometheus.NewRegistry()
	a, err := agent.New(cfg, w.kube.Client(), reg, w.log, func() time.Time { return time.Now().UTC() })
	require.NoError(w.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			require.NoError(w.t, <-done)
		})
	}
	w.t.Cleanup(stop)
	return &running{Agent: a, reg: reg, stop: stop}
}

// metric returns the sum of the samples of a metric family that have the
// given label pairs, 0 if there are none.
func (r *running) metric(name string, labels ...string) float64 {
	fams, err := r.reg.Gather()
	if err != nil {
		panic(err)
	}
	sum := 0.0
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	samples:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == labels[i] && l.GetValue() == labels[i+1] }) {
					continue samples
				}
			}
			sum += m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	return sum
}

// attached waits until the agent meters each pod on its veth.
func (w *world) attached(status func() agent.Status, pods ...*pod) {
	w.t.Helper()
	netlab.Eventually(w.t, 30*time.Second, func() error {
		byPod := map[string]agent.EndpointStatus{}
		for _, e := range status().Endpoints {
			if !e.Ended {
				byPod[e.Namespace+"/"+e.Pod] = e
			}
		}
		for _, p := range pods {
			e, ok := byPod[p.namespace+"/"+p.name]
			if !ok || e.Ifindex != p.ifindex {
				return fmt.Errorf("pod %s/%s is not attached: %+v", p.namespace, p.name, e)
			}
		}
		return nil
	})
}

// usage returns what the usage store holds from the meter, by namespace
// and resource ("ns/network.internet.egress").
func (w *world) usage() map[string]int64 {
	w.t.Helper()
	rows, err := w.db.Pool.Query(w.ctx, `SELECT n.name, u.resource, u.class, sum(u.quantity)::bigint
FROM usage_minute u JOIN namespaces n ON n.id = u.namespace_id WHERE u.source = 'network' GROUP BY 1, 2, 3`)
	require.NoError(w.t, err)
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var ns, resource, class string
		var q int64
		require.NoError(w.t, rows.Scan(&ns, &resource, &class, &q))
		require.Equal(w.t, resource, agent.Resource(class, strings.Split(resource, ".")[2]), "the class is the resource's")
		out[ns+"/"+resource] = q
	}
	require.NoError(w.t, rows.Err())
	return out
}

// gate passes requests to the ingest handler, or plays an outage: down
// answers 503 without storing; lostAck stores and then answers 503, as
// when the answer is lost on the way.
type gate struct {
	h       http.Handler
	mode    atomic.Int32
	refused atomic.Int64
	stored  atomic.Int64
}

const (
	gateOpen int32 = iota
	gateDown
	gateLostAck
)

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch g.mode.Load() {
	case gateDown:
		g.refused.Add(1)
		http.Error(w, "down", http.StatusServiceUnavailable)
	case gateLostAck:
		rec := httptest.NewRecorder()
		g.h.ServeHTTP(rec, r)
		g.refused.Add(1)
		http.Error(w, "answer lost", http.StatusServiceUnavailable)
	default:
		g.stored.Add(1)
		g.h.ServeHTTP(w, r)
	}
}
