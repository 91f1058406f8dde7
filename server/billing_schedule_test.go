package server

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/internal/leader"
	"github.com/tenantplane/tenantplane/internal/testenv"
)

// replica is one server's billing schedule with jobs that count their
// runs.
type replica struct {
	sched            *billingSchedule
	ticks, failures  atomic.Int32
	slowNow, slowMax atomic.Int32
	done             chan error
}

// startReplica runs a billing schedule under identity id for the Lease
// in lease: "tick" runs every second and at once, "fail" fails every
// second, "slow" takes 2.5 s (or until leadership ends) every second.
func startReplica(ctx context.Context, t *testing.T, kube kubernetes.Interface, lease leader.Config, id string) *replica {
	t.Helper()
	r := &replica{done: make(chan error, 1)}
	jobs := []billing.Job{
		{Name: "tick", Schedule: "@every 1s", AtStart: true, Run: func(context.Context) error {
			r.ticks.Add(1)
			return nil
		}},
		{Name: "fail", Schedule: "@every 1s", Run: func(context.Context) error {
			r.failures.Add(1)
			return errors.New("no luck")
		}},
		{Name: "slow", Schedule: "@every 1s", Run: func(ctx context.Context) error {
			n := r.slowNow.Add(1)
			defer r.slowNow.Add(-1)
			for {
				old := r.slowMax.Load()
				if n <= old || r.slowMax.CompareAndSwap(old, n) {
					break
				}
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(2500 * time.Millisecond):
				return nil
			}
		}},
	}
	var err error
	r.sched, err = newBillingSchedule(slog.New(slog.DiscardHandler), prometheus.NewRegistry(), jobs...)
	require.NoError(t, err)
	lease.Identity = id
	go func() { r.done <- r.sched.run(kube, lease)(ctx) }()
	return r
}

func (r *replica) leading() bool { return testutil.ToFloat64(r.sched.m.leading) == 1 }

func (r *replica) runs(job, result string) float64 {
	return testutil.ToFloat64(r.sched.m.runs.WithLabelValues(job, result))
}

// TestBillingJobsRunOnTheLeaderOnly runs two replicas against one real
// Lease: only the leader runs the jobs, each job is counted, a slow job
// never overlaps itself, and when leadership passes to the other replica
// the first one's jobs stop and the other's start.
func TestBillingJobsRunOnTheLeaderOnly(t *testing.T) {
	t.Parallel()
	kube := testenv.Kube(t).Client()
	lease := leader.Config{Namespace: "billing-schedule-test", Name: billingLease,
		LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 200 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	a := startReplica(ctx, t, kube, lease, "replica-a")
	require.Eventually(t, a.leading, 20*time.Second, 20*time.Millisecond)
	b := startReplica(ctx, t, kube, lease, "replica-b")

	// a leads: every job of a runs and is counted; b runs nothing.
	require.Eventually(t, func() bool {
		return a.ticks.Load() >= 3 && a.failures.Load() >= 2 && a.runs("slow", jobOK) >= 1
	}, 20*time.Second, 50*time.Millisecond)
	require.False(t, b.leading())
	require.Zero(t, b.ticks.Load()+b.failures.Load()+b.slowMax.Load(), "a follower runs no job")
	require.GreaterOrEqual(t, a.runs("tick", jobOK), 3.0)
	require.GreaterOrEqual(t, a.runs("fail", jobFailed), 2.0)
	require.Zero(t, a.runs("fail", jobOK))
	require.Equal(t, 3, testutil.CollectAndCount(a.sched.m.duration), "a duration histogram per job")
	require.Equal(t, int32(1), a.slowMax.Load(), "a job never runs twice at once")

	// The Lease passes to b, as when a cannot renew it: a stops leading
	// and its jobs stop; b starts running them.
	require.NoError(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		l, err := kube.CoordinationV1().Leases(lease.Namespace).Get(ctx, billingLease, metav1.GetOptions{})
		if err != nil {
			return err
		}
		holder, now, secs := "replica-b", metav1.NewMicroTime(time.Now()), int32(3)
		l.Spec.HolderIdentity, l.Spec.AcquireTime, l.Spec.RenewTime, l.Spec.LeaseDurationSeconds = &holder, &now, &now, &secs
		_, err = kube.CoordinationV1().Leases(lease.Namespace).Update(ctx, l, metav1.UpdateOptions{})
		return err
	}))
	require.Eventually(t, func() bool { return !a.leading() }, 20*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool { return b.leading() && b.ticks.Load() >= 2 }, 20*time.Second, 20*time.Millisecond)
	ticks, failures := a.ticks.Load(), a.failures.Load()
	time.Sleep(2500 * time.Millisecond)
	require.Equal(t, ticks, a.ticks.Load(), "a former leader runs no job")
	require.Equal(t, failures, a.failures.Load())
	require.Zero(t, a.slowNow.Load())
	require.False(t, a.leading())

	cancel()
	require.NoError(t, <-a.done)
	require.NoError(t, <-b.done)
}

func TestBillingScheduleRefusesBadJobs(t *testing.T) {
	t.Parallel()
	run := func(context.Context) error { return nil }
	log := slog.New(slog.DiscardHandler)
	for name, jobs := range map[string][]billing.Job{
		"no name":        {{Schedule: "@every 1s", Run: run}},
		"no function":    {{Name: "x", Schedule: "@every 1s"}},
		"bad schedule":   {{Name: "x", Schedule: "every hour", Run: run}},
		"duplicate name": {{Name: "x", Schedule: "@every 1s", Run: run}, {Name: "x", Schedule: "5 * * * *", Run: run}},
	} {
		_, err := newBillingSchedule(log, prometheus.NewRegistry(), jobs...)
		require.Error(t, err, name)
	}
	_, err := newBillingSchedule(log, prometheus.NewRegistry(), billing.Job{Name: "x", Schedule: "5 * * * *", Run: run})
	require.NoError(t, err)
}
