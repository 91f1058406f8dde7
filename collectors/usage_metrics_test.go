package collectors

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metricsclient "k8s.io/metrics/pkg/client/clientset/versioned"

	"github.com/tenantplane/tenantplane/collectors/usage"
	"github.com/tenantplane/tenantplane/internal/testenv"
)

// TestComputeUsageFromMetricsAPI meters a pod on the usage that the real
// metrics.k8s.io reports for it (metrics-server scraping kwok's emulated
// kubelet resource metrics), with the two bases that read it: usage, and
// max(request, usage) per container, where one container uses more than
// it requested and the other less.
func TestComputeUsageFromMetricsAPI(t *testing.T) {
	t.Parallel()
	kube := testenv.KubeWithMetrics(t)
	bMax := setup(t, true)
	bUse := setup(t, true)
	nsName, idMax := bMax.namespace(t, true, "active")
	var idUse int64
	require.NoError(t, bUse.pool.QueryRow(bUse.ctx, `INSERT INTO namespaces (org_id, name, state, created_at, updated_at) VALUES ($1, $2, 'active', now(), now()) RETURNING id`,
		bUse.org, nsName).Scan(&idUse))

	// hot requests 5m / 16Mi and uses 12m / 48Mi; cold requests 40m /
	// 128Mi and uses 4m / 32Mi. Small CPU figures keep the rate that
	// metrics-server computes between two scrapes (whose own latency
	// blurs it by a fraction of a percent) well within half a millicore.
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "mixed", Namespace: nsName}, Spec: corev1.PodSpec{Containers: []corev1.Container{
		container("hot", "5m", "16Mi"), container("cold", "40m", "128Mi"),
	}}}
	testenv.SetUsage(pod, "hot", "12m", "48Mi")
	testenv.SetUsage(pod, "cold", "4m", "32Mi")
	pod = bMax.runPod(t, pod, kube.NodeNames()[0], time.Now().UTC().Add(-5*time.Minute), time.Time{})

	mc, err := metricsclient.NewForConfig(kube.Config())
	require.NoError(t, err)
	src := NewMetricsAPI(kube.Client().Discovery(), mc.MetricsV1beta1())
	// readAt returns when the metrics API last measured the pod, or zero.
	readAt := func() time.Time {
		reads, served, err := src.PodUsage(bMax.ctx)
		require.NoError(t, err)
		require.True(t, served, "metrics.k8s.io is served")
		for _, r := range reads {
			if r.Namespace == nsName && r.Name == "mixed" && len(r.Containers) == 2 {
				return r.At
			}
		}
		return time.Time{}
	}
	eventually(t, 90*time.Second, "the metrics API to report the pod", func() bool { return !readAt().IsZero() })

	// Meter the minute m in which the latest read was measured, with
	// time to read it again within m: metrics-server scrapes every 10 s.
	var m time.Time
	eventually(t, 90*time.Second, "a read early in its minute", func() bool {
		at, now := readAt(), time.Now().UTC()
		m = now.Truncate(time.Minute)
		return at.Truncate(time.Minute).Equal(m) && now.Sub(m) < 40*time.Second
	})

	for _, tc := range []struct {
		name     string
		b        *bundle
		basis    Basis
		id       int64
		cpu, mem int64
	}{
		// Per container: max(5, 12) + max(40, 4) = 52 millicores and
		// max(16, 48) + max(128, 32) = 176 MiB. (Taken over the whole
		// pod it would be max(45, 16) and max(144, 80).)
		{"max(request, usage)", bMax, BasisMax, idMax, 52, 176},
		// The sum of the containers' usage: 12 + 4 and 48 + 32.
		{"usage", bUse, BasisUsage, idUse, 16, 80},
	} {
		b := tc.b
		b.clock.Set(m)
		c := b.collector(t, Config{CPU: tc.basis, Memory: tc.basis, SettleDelay: 5 * time.Second}, src)
		require.NoError(t, c.StartInformers(b.ctx))
		eventually(t, 30*time.Second, "the collector to see the pod", func() bool {
			c.compute.mu.Lock()
			defer c.compute.mu.Unlock()
			r := c.compute.pods[pod.UID]
			return r != nil && !r.start.IsZero()
		})
		b.clock.Set(time.Now())
		c.PollUsage(b.ctx)
		c.compute.mu.Lock()
		read := c.compute.usage[pod.UID][m]
		c.compute.mu.Unlock()
		require.NotNil(t, read, "%s: a read of the pod within %s", tc.name, m.Format(time.TimeOnly))

		b.clock.Set(m.Add(time.Minute + 5*time.Second))
		require.NoError(t, c.Tick(b.ctx))
		require.Equal(t, show(map[rowKey]int64{
			{tc.id, usage.CPU, "", m}:    tc.cpu,
			{tc.id, usage.Memory, "", m}: tc.mem,
		}), show(b.rows(t, usage.SourceCompute, m.Add(-time.Hour), m.Add(time.Hour))), tc.name)
		require.Empty(t, b.gaps(t, m, m.Add(time.Minute)), "%s: the minute was read", tc.name)
	}
}
