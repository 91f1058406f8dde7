package collectors

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tenantplane/tenantplane/collectors/usage"
)

func TestBasisValue(t *testing.T) {
	t.Parallel()
	// Two containers of 100 and 50 requested, 10 of overhead: the pod's
	// effective request is 160 (or more, with an init container of 300).
	read := func(other int64, use ...int64) minuteUse {
		return minuteUse{have: true, other: other, containers: []containerUse{{100, use[0]}, {50, use[1]}}}
	}
	for _, tc := range []struct {
		name          string
		b             Basis
		req, lim, ovh int64
		u             minuteUse
		want          int64
	}{
		{"request", BasisRequest, 160, 300, 10, read(0, 500, 500), 160},
		{"limit", BasisLimit, 160, 300, 10, read(0, 500, 500), 300},
		{"no limit: the request", BasisLimit, 160, 0, 10, minuteUse{}, 160},
		{"usage: the sum of the containers'", BasisUsage, 160, 300, 10, read(0, 20, 30), 50},
		{"usage with an init container read", BasisUsage, 160, 300, 10, read(7, 20, 30), 57},
		{"usage unknown: the request", BasisUsage, 160, 300, 10, minuteUse{}, 160},
		{"max: all below", BasisMax, 160, 300, 10, read(0, 20, 30), 160},
		{"max: all above", BasisMax, 160, 300, 10, read(0, 120, 80), 210},
		// Per container, the first below its request and the second
		// above: 100 + 80 + 10, although the sum of usage (100) is below
		// the sum of requests (150).
		{"max: one above, one below", BasisMax, 160, 300, 10, read(0, 20, 80), 190},
		{"max: an init container dominates", BasisMax, 310, 300, 10, read(0, 20, 80), 310},
		{"max: unknown", BasisMax, 160, 300, 10, minuteUse{}, 160},
	} {
		require.Equal(t, tc.want, tc.b.value(tc.req, tc.lim, tc.ovh, tc.u), tc.name)
	}
	require.False(t, Basis("average").Valid())
}

func TestOverlapSeconds(t *testing.T) {
	t.Parallel()
	m := time.Date(2030, 1, 1, 10, 0, 0, 0, time.UTC)
	var zero time.Time
	for _, tc := range []struct {
		name       string
		start, end time.Time
		want       int64
	}{
		{"not started", zero, zero, 0},
		{"runs through", m.Add(-time.Hour), zero, 60},
		{"starts inside", m.Add(15 * time.Second), zero, 45},
		{"ends inside", m.Add(-time.Hour), m.Add(20 * time.Second), 20},
		{"inside", m.Add(10 * time.Second), m.Add(40 * time.Second), 30},
		{"ended before", m.Add(-time.Hour), m, 0},
		{"starts after", m.Add(time.Minute), zero, 0},
		{"ends at the end", m, m.Add(time.Minute), 60},
	} {
		require.Equal(t, tc.want, overlapSeconds(tc.start, tc.end, m), tc.name)
	}
}

func TestPerMinuteRoundsHalfUp(t *testing.T) {
	t.Parallel()
	require.Equal(t, int64(1), perMinute(30, 1))
	require.Equal(t, int64(0), perMinute(29, 1))
	require.Equal(t, int64(64), perMinute(64<<20*60, 1<<20))
	require.Equal(t, int64(2), perMinute(90<<20, 1<<20)) // 1.5 MiB-minutes
}

func TestPodRecordAccountsLikeKubernetes(t *testing.T) {
	t.Parallel()
	q := resource.MustParse
	always := corev1.ContainerRestartPolicyAlways
	ctr := func(name, cpu, mem string) corev1.Container {
		return corev1.Container{Name: name, Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: q(cpu), corev1.ResourceMemory: q(mem)}}}
	}
	sidecarFirst := ctr("mesh", "300m", "10Mi")
	sidecarFirst.RestartPolicy = &always
	start := metav1.NewTime(time.Date(2030, 1, 1, 10, 0, 0, 0, time.UTC))
	for _, tc := range []struct {
		name     string
		spec     corev1.PodSpec
		cpu, mem int64
	}{
		{"apps sum", corev1.PodSpec{Containers: []corev1.Container{ctr("a", "100m", "1Mi"), ctr("b", "200m", "2Mi")}}, 300, 3 << 20},
		{"init larger", corev1.PodSpec{InitContainers: []corev1.Container{ctr("i", "2", "1Mi")}, Containers: []corev1.Container{ctr("a", "100m", "5Mi")}}, 2000, 5 << 20},
		// A sidecar before an init container runs beside it: 300m+1000m.
		{"sidecar before init", corev1.PodSpec{InitContainers: []corev1.Container{sidecarFirst, ctr("i", "1", "1Mi")}, Containers: []corev1.Container{ctr("a", "100m", "5Mi")}}, 1300, 15 << 20},
		{"overhead", corev1.PodSpec{Overhead: corev1.ResourceList{corev1.ResourceCPU: q("50m"), corev1.ResourceMemory: q("3Mi")}, Containers: []corev1.Container{ctr("a", "100m", "1Mi")}}, 150, 4 << 20},
	} {
		tc.spec.NodeName = "n"
		r := newPodRecord(&corev1.Pod{Spec: tc.spec, Status: corev1.PodStatus{StartTime: &start}}, nil)
		require.Equal(t, tc.cpu, r.cpuRequest, tc.name)
		require.Equal(t, tc.mem, r.memRequest, tc.name)
		require.Equal(t, start.Time, r.start, tc.name)
	}
	unscheduled := newPodRecord(&corev1.Pod{Status: corev1.PodStatus{StartTime: &start}}, nil)
	require.True(t, unscheduled.start.IsZero(), "a pod on no node has not started")
}

func TestPodEnd(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2030, 1, 1, 10, 0, 0, 0, time.UTC)
	term := func(at time.Time) corev1.ContainerStatus {
		return corev1.ContainerStatus{State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{FinishedAt: metav1.NewTime(at)}}}
	}
	done := &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodSucceeded, ContainerStatuses: []corev1.ContainerStatus{term(t0), term(t0.Add(5 * time.Second))}}}
	require.Equal(t, t0.Add(5*time.Second), podEnd(done))
	running := &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{term(t0)}}}
	require.True(t, podEnd(running).IsZero())

	deadline := metav1.NewTime(t0.Add(30 * time.Second))
	deleting := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &deadline}}
	require.Equal(t, deadline.Time, removedEnd(deleting, t0.Add(time.Minute)), "gone after the deadline: ended by it")
	require.Equal(t, t0.Add(10*time.Second), removedEnd(deleting, t0.Add(10*time.Second)), "seen gone before the deadline")
	require.Equal(t, t0, removedEnd(&corev1.Pod{}, t0), "force-deleted: when seen gone")
}

func TestMeterAllows(t *testing.T) {
	t.Parallel()
	m := Meter{Resources: []string{"network.*", "requests"}}
	require.True(t, m.allows(usage.NetworkInternetEgress))
	require.True(t, m.allows("requests"))
	require.False(t, m.allows("requests.total"))
	require.False(t, m.allows("cpu"))
}

func TestAddGapMergesRuns(t *testing.T) {
	t.Parallel()
	m := time.Date(2030, 1, 1, 10, 0, 0, 0, time.UTC)
	var g []usage.Gap
	g = addGap(g, "compute", m, usage.GapNotObserved)
	g = addGap(g, "compute", m.Add(time.Minute), usage.GapNotObserved)
	g = addGap(g, "compute", m.Add(time.Minute), usage.GapUsageUnavailable)
	g = addGap(g, "compute", m.Add(5*time.Minute), usage.GapNotObserved)
	require.Equal(t, []usage.Gap{
		{Source: "compute", Start: m, End: m.Add(2 * time.Minute), Reason: usage.GapNotObserved},
		{Source: "compute", Start: m.Add(time.Minute), End: m.Add(2 * time.Minute), Reason: usage.GapUsageUnavailable},
		{Source: "compute", Start: m.Add(5 * time.Minute), End: m.Add(6 * time.Minute), Reason: usage.GapNotObserved},
	}, g)
	require.Equal(t, m.Add(time.Minute), ceilMinute(m.Add(time.Second)))
	require.Equal(t, m, ceilMinute(m))
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]Config{
		"basis":       {CPU: "average", Identity: "x"},
		"settle":      {SettleDelay: time.Minute, Identity: "x"},
		"lease order": {LeaseDuration: time.Second, RenewDeadline: 2 * time.Second, Identity: "x"},
		"extended":    {ExtendedResources: map[corev1.ResourceName]string{"nvidia.com/gpu": "GPU"}, Identity: "x"},
	} {
		require.Error(t, cfg.withDefaults(), name)
	}
	ok := Config{Identity: "x"}
	require.NoError(t, ok.withDefaults())
	require.Equal(t, BasisMax, ok.CPU)
	for name, cfg := range map[string]IngestConfig{
		"no meters":     {},
		"reserved name": {Meters: []Meter{{Name: "compute", ServiceAccounts: []string{"a/b"}, Resources: []string{"x"}}}},
		"bad account":   {Meters: []Meter{{Name: "net", ServiceAccounts: []string{"ab"}, Resources: []string{"x"}}}},
		"shared account": {Meters: []Meter{
			{Name: "net", ServiceAccounts: []string{"a/b"}, Resources: []string{"x"}},
			{Name: "gpu", ServiceAccounts: []string{"a/b"}, Resources: []string{"y"}}}},
	} {
		require.Error(t, cfg.withDefaults(), name)
	}
}

// TestComputeMeterUsesUsageWhenHigher feeds metrics reads into the meter
// and samples: max(request, usage) per minute, the request where no usage
// was read, and a usage-unavailable gap for minutes without a read.
func TestComputeMeterUsesUsageWhenHigher(t *testing.T) {
	t.Parallel()
	m0 := time.Date(2030, 1, 1, 10, 0, 0, 0, time.UTC)
	now := m0
	c := newComputeMeter(BasisMax, BasisRequest, nil, func() time.Time { return now })
	start := metav1.NewTime(m0.Add(-time.Hour))
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "t", Name: "p", UID: "u1"},
		Spec: corev1.PodSpec{NodeName: "n", Containers: []corev1.Container{{Name: "a", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("1Mi")}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, StartTime: &start},
	}
	c.upsert(pod)
	c.markSynced(m0.Add(-time.Hour))
	// Two reads in m0 (average 300m, rounded from nanocores), none in
	// m0+1.
	read := func(at time.Time, cpuNano int64) []PodUsage {
		return []PodUsage{{Namespace: "t", Name: "p", At: at, Containers: []ContainerUsage{{Name: "a", CPUNano: cpuNano, MemBytes: 50 << 20}}}}
	}
	c.addUsage(m0.Add(10*time.Second), true, read(m0.Add(5*time.Second), 199_999_000))
	c.addUsage(m0.Add(40*time.Second), true, read(m0.Add(35*time.Second), 400_000_900))
	tenants := map[string]int64{"t": 7}

	s, reasons := c.sample(m0, tenants)
	require.Empty(t, reasons)
	require.ElementsMatch(t, []usage.Sample{
		{NamespaceID: 7, Resource: usage.CPU, Minute: m0, Quantity: 300},
		{NamespaceID: 7, Resource: usage.Memory, Minute: m0, Quantity: 1}, // memory on request
	}, s)
	s, reasons = c.sample(m0.Add(time.Minute), tenants)
	require.Equal(t, []string{usage.GapUsageUnavailable}, reasons)
	require.ElementsMatch(t, []usage.Sample{
		{NamespaceID: 7, Resource: usage.CPU, Minute: m0.Add(time.Minute), Quantity: 100},
		{NamespaceID: 7, Resource: usage.Memory, Minute: m0.Add(time.Minute), Quantity: 1},
	}, s)

	// When the metrics API is not served at all, requests are the rule and
	// no gap is recorded.
	c.addUsage(m0.Add(2*time.Minute), false, nil)
	_, reasons = c.sample(m0.Add(2*time.Minute), tenants)
	require.Empty(t, reasons)
	// A minute before the informer synced is not exact.
	_, reasons = c.sample(m0.Add(-2*time.Hour), tenants)
	require.Equal(t, []string{usage.GapNotObserved}, reasons)
}

func TestMetersForgetWhatNeverStartedAndWhatEnded(t *testing.T) {
	t.Parallel()
	m0 := time.Date(2030, 1, 1, 10, 0, 0, 0, time.UTC)
	c := newComputeMeter(BasisRequest, BasisRequest, nil, func() time.Time { return m0 })
	pending := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "t", Name: "p", UID: "u1"}}
	c.upsert(pending)
	c.remove(pending)
	require.Empty(t, c.pods, "a pod that never started leaves nothing behind")

	start := metav1.NewTime(m0.Add(-time.Hour))
	ran := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "t", Name: "q", UID: "u2"}, Spec: corev1.PodSpec{NodeName: "n"},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, StartTime: &start}}
	c.upsert(ran)
	c.remove(ran)
	require.Equal(t, m0, c.pods["u2"].end, "force-deleted: ends when seen gone")
	c.prune(m0)
	require.Len(t, c.pods, 1, "kept until the minute it ended in is behind")
	c.prune(m0.Add(time.Second))
	require.Empty(t, c.pods)
}
