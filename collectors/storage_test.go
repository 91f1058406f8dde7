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

// claim creates a PersistentVolume of size in class, pre-bound to a claim
// of the same size in ns, and the claim; the binder binds them.
func (b *bundle) claim(t *testing.T, ns, name, class, size string) {
	t.Helper()
	q := resource.MustParse(size)
	pv, err := b.kube.Client().CoreV1().PersistentVolumes().Create(b.ctx, &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "pv-"},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: q},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName:              class,
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			PersistentVolumeSource:        corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/tmp/" + name}},
			ClaimRef:                      &corev1.ObjectReference{Namespace: ns, Name: name},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = b.kube.Client().CoreV1().PersistentVolumes().Delete(t.Context(), pv.Name, metav1.DeleteOptions{})
	})
	_, err = b.kube.Client().CoreV1().PersistentVolumeClaims(ns).Create(b.ctx, &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: &class,
			VolumeName:       pv.Name,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: q}},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	eventually(t, time.Minute, "claim "+name+" bound", func() bool {
		c, err := b.kube.Client().CoreV1().PersistentVolumeClaims(ns).Get(b.ctx, name, metav1.GetOptions{})
		require.NoError(t, err)
		return c.Status.Phase == corev1.ClaimBound
	})
}

// TestStorageCountsBoundClaimsPerClassEvenWhenSuspended meters bound
// claims by storage class; the namespace is suspended and its claims count
// all the same. A claim outside tenant namespaces does not.
func TestStorageCountsBoundClaimsPerClassEvenWhenSuspended(t *testing.T) {
	t.Parallel()
	b := setup(t, false)
	ns, id := b.namespace(t, true, "suspended")
	other, _ := b.namespace(t, false, "")
	M := time.Now().UTC().Truncate(time.Minute).Add(-10 * time.Minute)
	b.clock.Set(M)
	c := b.collector(t, Config{SettleDelay: time.Second}, nil)
	require.NoError(t, c.StartInformers(b.ctx))

	b.claim(t, ns, "data", "fast", "1Gi")
	b.claim(t, ns, "logs", "fast", "512Mi")
	b.claim(t, ns, "archive", "slow", "3Gi")
	b.claim(t, other, "system", "fast", "10Gi")
	eventually(t, 30*time.Second, "the collector to see the claims bound", func() bool {
		c.storage.mu.Lock()
		defer c.storage.mu.Unlock()
		n := 0
		for _, r := range c.storage.pvcs {
			if !r.start.IsZero() && r.bytes > 0 {
				n++
			}
		}
		return n == 4
	})
	b.clock.Set(M.Add(3*time.Minute + time.Second))
	require.NoError(t, c.Tick(b.ctx))

	want := map[rowKey]int64{}
	for m := M; m.Before(M.Add(3 * time.Minute)); m = m.Add(time.Minute) {
		want[rowKey{id, usage.Storage, "fast", m}] = 1024 + 512
		want[rowKey{id, usage.Storage, "slow", m}] = 3 * 1024
	}
	require.Equal(t, show(want), show(b.rows(t, usage.SourceStorage, M.Add(-time.Hour), M.Add(time.Hour))))
}
