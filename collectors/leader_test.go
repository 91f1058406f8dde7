package collectors

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tenantplane/tenantplane/collectors/usage"
)

// TestLeaderChangeMidHourMissesAndDoublesNothing runs two replicas that
// elect a leader through a real Lease. The first samples half an hour and
// steps down; the second, which kept watching, catches up the minutes that
// passed in between and goes on. Every minute of the hour is written once,
// with no gap, and the hour closes to exactly sixty minutes.
func TestLeaderChangeMidHourMissesAndDoublesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, true)
	ns, id := b.namespace(t, true, "active")
	H := time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour)
	b.clock.Set(H)
	b.runPod(t, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "steady", Namespace: ns},
		Spec: corev1.PodSpec{Containers: []corev1.Container{container("app", "250m", "64Mi")}}}, b.kube.NodeNames()[0], H.Add(-time.Hour), time.Time{})

	cfg := Config{
		SettleDelay: time.Second, TickInterval: 20 * time.Millisecond,
		LeaseNamespace: ns, LeaseName: "collectors",
		LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 200 * time.Millisecond,
	}
	// run starts a replica; stop ends it and returns what Run returned.
	run := func(identity string) (stop func() error) {
		cfg := cfg
		cfg.Identity = identity
		c := b.collector(t, cfg, nil)
		ctx, cancel := context.WithCancel(b.ctx)
		done := make(chan struct{})
		var err error
		go func() { err = c.Run(ctx); close(done) }()
		stop = func() error { cancel(); <-done; return err }
		t.Cleanup(func() { _ = stop() })
		return stop
	}
	holder := func() string {
		l, err := b.kube.Client().CoordinationV1().Leases(ns).Get(b.ctx, "collectors", metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}
	watermark := func(src string) time.Time {
		w, _, err := b.store.Watermark(b.ctx, src)
		require.NoError(t, err)
		return w.Through
	}
	advance := func(through time.Time) {
		b.clock.Set(through.Add(cfg.SettleDelay))
		eventually(t, 20*time.Second, "watermarks at "+through.Format("15:04"), func() bool {
			return watermark(usage.SourceCompute).Equal(through) && watermark(usage.SourceStorage).Equal(through)
		})
	}

	stopA := run("replica-a")
	eventually(t, 20*time.Second, "replica-a to lead", func() bool { return holder() == "replica-a" })
	run("replica-b")
	for m := 1; m <= 30; m++ {
		advance(H.Add(time.Duration(m) * time.Minute))
	}
	// Replica a steps down while the clock runs on four minutes; replica b
	// takes the Lease and catches up.
	b.clock.Set(H.Add(34*time.Minute + cfg.SettleDelay))
	require.NoError(t, stopA())
	eventually(t, 20*time.Second, "replica-b to lead", func() bool { return holder() == "replica-b" })
	advance(H.Add(34 * time.Minute))
	for m := 35; m <= 60; m++ {
		advance(H.Add(time.Duration(m) * time.Minute))
	}

	rows := b.rows(t, usage.SourceCompute, H, H.Add(time.Hour))
	require.Len(t, rows, 120, "cpu and memory for each of 60 minutes")
	for m := H; m.Before(H.Add(time.Hour)); m = m.Add(time.Minute) {
		require.Equal(t, int64(250), rows[rowKey{id, usage.CPU, "", m}], m)
		require.Equal(t, int64(64), rows[rowKey{id, usage.Memory, "", m}], m)
	}
	require.Empty(t, b.gaps(t, H, H.Add(time.Hour)))

	// The hour closes to exactly sixty minutes' worth.
	b.clock.Set(H.Add(time.Hour + 3*time.Minute))
	up, err := usage.NewUpkeep(b.store, usage.UpkeepConfig{}, b.log, b.clock.Now)
	require.NoError(t, err)
	closed, err := up.CloseHours(b.ctx)
	require.NoError(t, err)
	require.Equal(t, H.Add(time.Hour), closed)
	hourly, err := b.store.HourlySince(b.ctx, 0, 10)
	require.NoError(t, err)
	got := map[string]int64{}
	for _, h := range hourly {
		require.Equal(t, id, h.NamespaceID)
		require.Equal(t, H, h.Hour)
		got[h.Resource] = h.Quantity
	}
	require.Equal(t, map[string]int64{usage.CPU: 60 * 250, usage.Memory: 60 * 64}, got)
}
