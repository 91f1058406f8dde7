package isolation

import (
	"context"
	"errors"
	"sync"
	"time"
)

// drainOutbox claims due outbox rows, reconciles each key once however
// many rows name it, and marks the rows done, or due again after a capped
// exponential backoff. It sleeps until Postgres NOTIFYs a new row or
// OutboxPoll passes.
func (r *Reconciler) drainOutbox(ctx context.Context) {
	for ctx.Err() == nil {
		n, err := r.DrainOutboxOnce(ctx)
		if err != nil && ctx.Err() == nil {
			r.log.Error("draining outbox", "err", err)
		}
		if n == r.rc.OutboxBatch {
			continue // there may be more right away
		}
		if err := r.store.WaitOutbox(ctx, r.rc.OutboxPoll); err != nil && ctx.Err() == nil {
			r.log.Warn("waiting for outbox notifications", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(r.rc.OutboxPoll):
			}
		}
	}
}

// DrainOutboxOnce claims one batch of due outbox rows and processes it,
// returning how many rows it claimed. Run drives it; tests call it
// directly.
func (r *Reconciler) DrainOutboxOnce(ctx context.Context) (int, error) {
	if err := r.Start(ctx); err != nil {
		return 0, err
	}
	items, err := r.store.ClaimOutbox(ctx, r.now(), r.rc.OutboxLease, r.rc.OutboxBatch)
	if err != nil {
		return 0, err
	}
	if len(items) == 0 {
		return 0, nil
	}
	r.m.outboxClaimed.Add(float64(len(items)))
	byKey := map[string][]OutboxItem{}
	var keys []string
	for _, it := range items {
		if _, ok := byKey[it.Key]; !ok {
			keys = append(keys, it.Key)
		}
		byKey[it.Key] = append(byKey[it.Key], it)
	}
	sem := make(chan struct{}, r.rc.Workers)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, key := range keys {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := r.finish(ctx, byKey[key], r.sync(ctx, key)); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return len(items), errors.Join(errs...)
}

// finish records the outcome of the rows of one key.
func (r *Reconciler) finish(ctx context.Context, items []OutboxItem, result error) error {
	ids := make([]int64, len(items))
	attempts := 0
	for i, it := range items {
		ids[i] = it.ID
		attempts = max(attempts, it.Attempts)
	}
	if result == nil {
		if err := r.store.CompleteOutbox(ctx, ids, r.now()); err != nil {
			return err
		}
		r.m.outboxDone.Add(float64(len(ids)))
		return nil
	}
	delay := r.backoff(attempts)
	var w *waitError
	if errors.As(result, &w) {
		// Waiting for Kubernetes is no failure: start from its own poll
		// interval, and back off the same way.
		delay = min(w.after<<min(attempts-1, 20), r.rc.RetryMax)
	} else {
		r.m.outboxFailed.Add(float64(len(ids)))
		r.log.Warn("outbox row failed", "key", items[0].Key, "attempts", attempts, "retry_in", delay, "err", result)
	}
	return r.store.RetryOutbox(ctx, ids, result.Error(), r.now().Add(delay))
}

// backoff is RetryBase doubled per attempt after the first, at most
// RetryMax.
func (r *Reconciler) backoff(attempts int) time.Duration {
	d := r.rc.RetryBase
	for i := 1; i < attempts && d < r.rc.RetryMax; i++ {
		d *= 2
	}
	return min(d, r.rc.RetryMax)
}

func (r *Reconciler) refreshStats(ctx context.Context) {
	st, err := r.store.OutboxStats(ctx, r.now())
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("reading outbox stats", "err", err)
		}
		return
	}
	r.m.outboxPending.Set(float64(st.Pending))
	r.m.outboxFailing.Set(float64(st.Failing))
	r.m.outboxOldest.Set(st.OldestAge.Seconds())
	r.m.outboxAttempts.Set(float64(st.MaxAttempts))
}
