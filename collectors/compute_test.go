package collectors

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/tenantplane/tenantplane/collectors/usage"
)

func res(cpu, mem string) corev1.ResourceList {
	return corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem)}
}

func container(name, cpu, mem string) corev1.Container {
	return corev1.Container{Name: name, Image: "busybox", Resources: corev1.ResourceRequirements{Requests: res(cpu, mem)}}
}

// runPod creates pod on node, waits until kwok runs it, then writes the
// status a kubelet would for a pod that started at start and, unless end
// is zero, finished at end.
func (b *bundle) runPod(t *testing.T, pod *corev1.Pod, node string, start, end time.Time) *corev1.Pod {
	t.Helper()
	pods := b.kube.Client().CoreV1().Pods(pod.Namespace)
	pod.Spec.NodeName = node
	created, err := pods.Create(b.ctx, pod, metav1.CreateOptions{})
	require.NoError(t, err)
	eventually(t, time.Minute, "pod "+pod.Name+" running", func() bool {
		p, err := pods.Get(b.ctx, pod.Name, metav1.GetOptions{})
		require.NoError(t, err)
		created = p
		return p.Status.Phase == corev1.PodRunning && len(p.Status.ContainerStatuses) == len(p.Spec.Containers)
	})
	st := &created.Status
	st.StartTime = &metav1.Time{Time: start}
	state := func() corev1.ContainerState {
		if end.IsZero() {
			return corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Time{Time: start}}}
		}
		return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed", StartedAt: metav1.Time{Time: start}, FinishedAt: metav1.Time{Time: end}}}
	}
	for i := range st.ContainerStatuses {
		st.ContainerStatuses[i].State = state()
	}
	for i := range st.InitContainerStatuses {
		st.InitContainerStatuses[i].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed", StartedAt: metav1.Time{Time: start}, FinishedAt: metav1.Time{Time: start}}}
	}
	if !end.IsZero() {
		st.Phase = corev1.PodSucceeded
	}
	updated, err := pods.UpdateStatus(b.ctx, created, metav1.UpdateOptions{})
	require.NoError(t, err)
	return updated
}

// TestComputeExactQuantities meters pods of known requests, limits and
// lifetimes on kwok's fake nodes minute by minute: a pod that runs
// throughout with GPUs, a pod of init containers, a sidecar and runtime
// overhead that lives 90 seconds, a pod deleted in the middle of a minute,
// and pods that must not count.
func TestComputeExactQuantities(t *testing.T) {
	t.Parallel()
	b := setup(t, true)
	node := b.kube.NodeNames()[0]
	nsA, idA := b.namespace(t, true, "active")
	nsB, idB := b.namespace(t, true, "active")
	nsC, idC := b.namespace(t, true, "active")
	nsX, _ := b.namespace(t, false, "")

	// M is a whole minute a few minutes back, so every time the API
	// server stamps (the deletion) lies after it.
	M := time.Now().UTC().Truncate(time.Minute).Add(-3 * time.Minute)
	b.clock.Set(M)
	c := b.collector(t, Config{SettleDelay: 5 * time.Second}, nil)
	require.NoError(t, c.StartInformers(b.ctx))

	// A: 250m / 64Mi requested, 500m / 128Mi limits, 2 GPUs; runs since
	// M-5m and on.
	podA := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "steady", Namespace: nsA}, Spec: corev1.PodSpec{Containers: []corev1.Container{{
		Name: "app", Image: "busybox", Resources: corev1.ResourceRequirements{
			Requests: res("250m", "64Mi"),
			Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("128Mi"),
				"nvidia.com/gpu": resource.MustParse("2")},
		}}}}}
	podA = b.runPod(t, podA, node, M.Add(-5*time.Minute), time.Time{})

	// B: lives 90 seconds, [M+15s, M+105s). An init container of 1 CPU /
	// 256Mi, a sidecar of 100m / 50Mi, two apps of 200m / 100Mi and a
	// runtime class overhead of 60m / 20Mi: Kubernetes accounts
	// max(1000, 400+100)+60 = 1060m and max(256, 200+50)+20 = 276Mi.
	rc, err := b.kube.Client().NodeV1().RuntimeClasses().Create(b.ctx, &nodev1.RuntimeClass{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "sandboxed-"}, Handler: "kata",
		Overhead: &nodev1.Overhead{PodFixed: res("60m", "20Mi")},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = b.kube.Client().NodeV1().RuntimeClasses().Delete(t.Context(), rc.Name, metav1.DeleteOptions{})
	})
	always := corev1.ContainerRestartPolicyAlways
	sidecar := container("proxy", "100m", "50Mi")
	sidecar.RestartPolicy = &always
	podB := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "ninety", Namespace: nsB}, Spec: corev1.PodSpec{
		RuntimeClassName: &rc.Name,
		InitContainers:   []corev1.Container{container("setup", "1", "256Mi"), sidecar},
		Containers:       []corev1.Container{container("app1", "200m", "100Mi"), container("app2", "200m", "100Mi")},
	}}
	podB = b.runPod(t, podB, node, M.Add(15*time.Second), M.Add(105*time.Second))
	require.NotNil(t, podB.Spec.Overhead, "the RuntimeClass admission sets the overhead")

	// C: 600m / 60Mi since M-2m, deleted (with a grace period) now.
	podC := b.runPod(t, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "doomed", Namespace: nsC},
		Spec: corev1.PodSpec{Containers: []corev1.Container{container("app", "600m", "60Mi")}}}, node, M.Add(-2*time.Minute), time.Time{})

	// Not counted: a pod outside tenant namespaces, and one never started.
	b.runPod(t, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "system", Namespace: nsX},
		Spec: corev1.PodSpec{Containers: []corev1.Container{container("app", "1", "1Gi")}}}, node, M.Add(-time.Hour), time.Time{})
	_, err = b.kube.Client().CoreV1().Pods(nsA).Create(b.ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "pending", Namespace: nsA},
		Spec: corev1.PodSpec{NodeName: "no-such-node", Containers: []corev1.Container{container("app", "1", "1Gi")}}}, metav1.CreateOptions{})
	require.NoError(t, err)

	// Delete C and see its deletion deadline as it was when the pod went
	// (kwok's final delete with no grace brings it forward); the clock is
	// ahead of it by the time the collector sees the pod gone, so C ends
	// at the deadline.
	w, err := b.kube.Client().CoreV1().Pods(nsC).Watch(b.ctx, metav1.ListOptions{FieldSelector: "metadata.name=doomed", ResourceVersion: podC.ResourceVersion})
	require.NoError(t, err)
	defer w.Stop()
	b.clock.Set(M.Add(10 * time.Minute))
	grace := int64(2)
	require.NoError(t, b.kube.Client().CoreV1().Pods(nsC).Delete(b.ctx, "doomed", metav1.DeleteOptions{GracePeriodSeconds: &grace}))
	var deadline time.Time
	for ev := range w.ResultChan() {
		if p, ok := ev.Object.(*corev1.Pod); ok && p.DeletionTimestamp != nil {
			deadline = p.DeletionTimestamp.UTC()
		}
		if ev.Type == watch.Deleted {
			break
		}
	}
	require.False(t, deadline.IsZero())
	require.True(t, deadline.After(M), "the deletion deadline %s lies after M", deadline)

	// Wait until the informer has seen every status and the deletion.
	eventually(t, 30*time.Second, "the collector to see the pods", func() bool {
		c.compute.mu.Lock()
		defer c.compute.mu.Unlock()
		a, bb, cc := c.compute.pods[podA.UID], c.compute.pods[podB.UID], c.compute.pods[podC.UID]
		return a != nil && a.start.Equal(M.Add(-5*time.Minute)) && bb != nil && bb.end.Equal(M.Add(105*time.Second)) && cc != nil && !cc.end.IsZero()
	})
	last := deadline.Truncate(time.Minute).Add(2 * time.Minute) // a minute with C gone
	b.clock.Set(last.Add(5 * time.Second))
	require.NoError(t, c.Tick(b.ctx))

	want := map[rowKey]int64{}
	for m := M; m.Before(last); m = m.Add(time.Minute) {
		want[rowKey{idA, usage.CPU, "", m}] = 250
		want[rowKey{idA, usage.Memory, "", m}] = 64
		want[rowKey{idA, usage.GPU, "nvidia.com/gpu", m}] = 2
		// C: 600m and 60Mi for every second of the minute before its
		// deadline; 600*s/60 = 10*s and 60*s/60 = s exactly.
		if s := int64(min(max(deadline.Sub(m), 0), time.Minute) / time.Second); s > 0 {
			want[rowKey{idC, usage.CPU, "", m}] = 10 * s
			want[rowKey{idC, usage.Memory, "", m}] = s
		}
	}
	// B: 45 s in M and 45 s in M+1: 1060*45/60 = 795, 276*45/60 = 207.
	want[rowKey{idB, usage.CPU, "", M}] = 795
	want[rowKey{idB, usage.Memory, "", M}] = 207
	want[rowKey{idB, usage.CPU, "", M.Add(time.Minute)}] = 795
	want[rowKey{idB, usage.Memory, "", M.Add(time.Minute)}] = 207

	require.Equal(t, show(want), show(b.rows(t, usage.SourceCompute, M.Add(-time.Hour), last.Add(time.Hour))))
	require.Empty(t, b.gaps(t, M, last), "every minute was observed")
	wm, ok, err := b.store.Watermark(b.ctx, usage.SourceCompute)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, usage.Watermark{Since: M, Through: last}, wm)

	// A second tick at the same time writes nothing more.
	require.NoError(t, c.Tick(b.ctx))
	require.Equal(t, show(want), show(b.rows(t, usage.SourceCompute, M.Add(-time.Hour), last.Add(time.Hour))))
}
