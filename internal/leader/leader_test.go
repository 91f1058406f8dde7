package leader_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/internal/leader"
	"github.com/tenantplane/tenantplane/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// Two replicas elect through a real Lease: one leads at a time; when the
// leader stops, the other takes over; work that fails gives the lease up.
func TestOneLeaderAtATimeAndHandOver(t *testing.T) {
	t.Parallel()
	kube := testenv.Kube(t).Client()
	cfg := leader.Config{
		Namespace: "leader-test", Name: "handover",
		LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 200 * time.Millisecond,
	}
	var leading, maxLeading atomic.Int32
	var mu sync.Mutex
	var order []string
	run := func(ctx context.Context, id string) chan error {
		c := cfg
		c.Identity = id
		done := make(chan error, 1)
		go func() {
			done <- leader.Run(ctx, kube, c, slog.New(slog.DiscardHandler), func(ctx context.Context) error {
				n := leading.Add(1)
				defer leading.Add(-1)
				for {
					old := maxLeading.Load()
					if n <= old || maxLeading.CompareAndSwap(old, n) {
						break
					}
				}
				mu.Lock()
				order = append(order, id)
				mu.Unlock()
				<-ctx.Done()
				return nil
			})
		}()
		return done
	}
	ctxA, stopA := context.WithCancel(context.Background())
	ctxB, stopB := context.WithCancel(context.Background())
	t.Cleanup(stopB)
	doneA := run(ctxA, "a")
	require.Eventually(t, func() bool { return leading.Load() == 1 }, 20*time.Second, 20*time.Millisecond)
	doneB := run(ctxB, "b")
	time.Sleep(time.Second)
	mu.Lock()
	require.Equal(t, []string{"a"}, order, "b waits while a leads")
	mu.Unlock()

	stopA() // releases the lease on the way out
	require.NoError(t, <-doneA)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(order) == 2
	}, 20*time.Second, 20*time.Millisecond)
	mu.Lock()
	require.Equal(t, []string{"a", "b"}, order)
	mu.Unlock()
	require.Equal(t, int32(1), maxLeading.Load(), "never two leaders at once")
	stopB()
	require.NoError(t, <-doneB)
}

func TestFailingWorkGivesTheLeaseUpAndRunsAgain(t *testing.T) {
	t.Parallel()
	kube := testenv.Kube(t).Client()
	cfg := leader.Config{
		Namespace: "leader-test", Name: "retry", Identity: "only",
		LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 100 * time.Millisecond,
	}
	var runs atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- leader.Run(ctx, kube, cfg, slog.New(slog.DiscardHandler), func(context.Context) error {
			if runs.Add(1) < 3 {
				return fmt.Errorf("run %d: %w", runs.Load(), errors.New("boom"))
			}
			return nil
		})
	}()
	require.Eventually(t, func() bool { return runs.Load() >= 3 }, 30*time.Second, 20*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
}
