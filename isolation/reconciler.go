package isolation

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/workqueue"

	"github.com/tenantplane/tenantplane/tenancy"
)

// ReconcilerConfig tunes the reconciler. Zero fields take the documented
// defaults; NewReconciler validates the result.
type ReconcilerConfig struct {
	// Workers reconcile keys concurrently (16).
	Workers int
	// ResyncInterval is how often every namespace is reconciled from
	// Postgres, to repair whatever the informers missed (10m).
	ResyncInterval time.Duration
	// OutboxBatch is how many outbox rows one claim takes (64).
	OutboxBatch int
	// OutboxLease is how long a claimed row stays with its worker before
	// another may retry it (2m).
	OutboxLease time.Duration
	// OutboxPoll is the longest wait between two outbox claims when no
	// NOTIFY arrives (2s); retries that come due are seen this late.
	OutboxPoll time.Duration
	// RetryBase and RetryMax bound the exponential backoff of failed
	// outbox rows and queue keys (1s, 5m).
	RetryBase time.Duration
	RetryMax  time.Duration
	// DeletionPoll is how often a namespace being deleted is checked (1s).
	DeletionPoll time.Duration
	// StatsInterval is how often outbox gauges are refreshed (15s).
	StatsInterval time.Duration
	// AlwaysApply sends every object on every reconcile. By default an
	// object that the informer cache shows exactly as last applied (same
	// AnnotationApplied hash, and no field manager but the platform's) is
	// not sent again.
	AlwaysApply bool
}

func (c ReconcilerConfig) withDefaults() ReconcilerConfig {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.Workers == 0 {
		c.Workers = 16
	}
	if c.OutboxBatch == 0 {
		c.OutboxBatch = 64
	}
	def(&c.ResyncInterval, 10*time.Minute)
	def(&c.OutboxLease, 2*time.Minute)
	def(&c.OutboxPoll, 2*time.Second)
	def(&c.RetryBase, time.Second)
	def(&c.RetryMax, 5*time.Minute)
	def(&c.DeletionPoll, time.Second)
	def(&c.StatsInterval, 15*time.Second)
	return c
}

func (c ReconcilerConfig) validate() error {
	switch {
	case c.Workers < 1 || c.Workers > 256:
		return errors.New("reconciler config: Workers must be 1..256")
	case c.OutboxBatch < 1 || c.OutboxBatch > 1000:
		return errors.New("reconciler config: OutboxBatch must be 1..1000")
	case c.ResyncInterval < time.Second || c.OutboxLease < time.Second || c.OutboxPoll < time.Millisecond ||
		c.RetryBase < time.Millisecond || c.RetryMax < c.RetryBase || c.DeletionPoll < time.Millisecond ||
		c.StatsInterval < time.Second:
		return errors.New("reconciler config: durations must be positive (RetryMax >= RetryBase)")
	}
	return nil
}

// Deps are what a Reconciler works with.
type Deps struct {
	// Kube is the client the platform acts with. It needs a high client
	// rate limit (rest.Config QPS and Burst, e.g. 200 and 400) or the
	// client itself becomes the bottleneck of a full resync.
	Kube kubernetes.Interface
	// Dynamic, when set, lets the reconciler see HTTPRoutes (Gateway API)
	// when it checks whether a released host is still in use.
	Dynamic dynamic.Interface
	Store   Store
	// Log defaults to discarding; Clock to time.Now in UTC.
	Log   *slog.Logger
	Clock func() time.Time
	// Registerer receives the metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

// Reconciler makes Kubernetes follow Postgres. It drains the outbox, watches
// what the platform owns and repairs drift, and periodically reconciles
// every namespace. Run it on one replica at a time (leader election): two
// would be correct but do the work twice.
type Reconciler struct {
	kube    kubernetes.Interface
	dyn     dynamic.Interface
	store   Store
	cfg     Config
	rc      ReconcilerConfig
	log     *slog.Logger
	now     func() time.Time
	m       *metrics
	queue   workqueue.TypedRateLimitingInterface[string]
	locks   [256]sync.Mutex
	caches  *caches
	startMu sync.Mutex
	started bool
}

// NewReconciler returns a Reconciler; call Run to start it.
func NewReconciler(d Deps, cfg Config, rc ReconcilerConfig) (*Reconciler, error) {
	if d.Kube == nil || d.Store == nil {
		return nil, errors.New("isolation: reconciler needs Kube and Store")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rc = rc.withDefaults()
	if err := rc.validate(); err != nil {
		return nil, err
	}
	log := d.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	clock := d.Clock
	if clock == nil {
		clock = time.Now
	}
	r := &Reconciler{
		kube:  d.Kube,
		dyn:   d.Dynamic,
		store: d.Store,
		cfg:   cfg,
		rc:    rc,
		log:   log.With("component", "isolation"),
		now:   func() time.Time { return clock().UTC() },
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](rc.RetryBase, rc.RetryMax),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "tenantplane-isolation"}),
	}
	m, err := newMetrics(d.Registerer, r.queue.Len)
	if err != nil {
		return nil, err
	}
	r.m = m
	r.caches = newCaches(d.Kube, cfg, r.onDrift)
	return r, nil
}

// Start starts the informers and waits until their caches are filled.
// Run calls it; tests and benchmarks that drive SyncNamespace or Resync
// directly call it themselves. It returns at once when already started.
func (r *Reconciler) Start(ctx context.Context) error {
	r.startMu.Lock()
	defer r.startMu.Unlock()
	if r.started {
		return nil
	}
	if err := r.caches.start(ctx); err != nil {
		return err
	}
	r.started = true
	return nil
}

// Run reconciles until ctx ends: queue workers, the outbox drainer, a full
// resync at start and every ResyncInterval, and outbox gauges.
func (r *Reconciler) Run(ctx context.Context) error {
	if err := r.Start(ctx); err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer r.queue.ShutDown()
	for range r.rc.Workers {
		wg.Go(func() { r.worker(ctx) })
	}
	wg.Go(func() { r.drainOutbox(ctx) })
	wg.Go(func() { r.every(ctx, r.rc.StatsInterval, r.refreshStats, false) })
	wg.Go(func() {
		r.every(ctx, r.rc.ResyncInterval, func(ctx context.Context) {
			if err := r.Resync(ctx); err != nil && ctx.Err() == nil {
				r.log.Error("full resync", "err", err)
			}
		}, true)
	})
	<-ctx.Done()
	return nil
}

func (r *Reconciler) every(ctx context.Context, d time.Duration, f func(context.Context), now bool) {
	if now {
		f(ctx)
	}
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f(ctx)
		}
	}
}

// Enqueue asks for key ("ns:7", "user:42", "org:3") to be reconciled soon.
func (r *Reconciler) Enqueue(key string) { r.queue.Add(key) }

func (r *Reconciler) onDrift(kind, event, key string) {
	r.m.drift.WithLabelValues(kind, event).Inc()
	r.queue.Add(key)
}

func (r *Reconciler) worker(ctx context.Context) {
	for {
		key, shutdown := r.queue.Get()
		if shutdown {
			return
		}
		err := r.sync(ctx, key)
		var w *waitError
		switch {
		case err == nil:
			r.queue.Forget(key)
		case errors.As(err, &w):
			// Not a failure, but a namespace stuck terminating must not be
			// polled every second forever: the same capped backoff.
			r.queue.AddRateLimited(key)
		case ctx.Err() != nil:
		default:
			r.log.Warn("reconcile", "key", key, "err", err)
			r.queue.AddRateLimited(key)
		}
		r.queue.Done(key)
	}
}

// waitError means Kubernetes is still busy (a namespace terminating): not a
// failure, but the key must be looked at again after a while.
type waitError struct {
	what  string
	after time.Duration
}

func (e *waitError) Error() string { return "waiting for " + e.what }

// lock serialises work on one key across the queue workers, the outbox
// drainer and the resync.
func (r *Reconciler) lock(key string) func() {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	mu := &r.locks[h.Sum32()%uint32(len(r.locks))]
	mu.Lock()
	return mu.Unlock
}

// sync reconciles one key.
func (r *Reconciler) sync(ctx context.Context, key string) error {
	kind, id, err := parseKey(key)
	if err != nil {
		r.log.Error("dropping unknown key", "key", key, "err", err)
		return nil
	}
	return r.observe(kind, func() error {
		switch kind {
		case "ns":
			return r.reconcileNamespace(ctx, id, nil)
		case "user":
			return r.reconcileUser(ctx, id)
		default:
			return r.reconcileOrg(ctx, id)
		}
	})
}

func (r *Reconciler) observe(kind string, f func() error) error {
	start := time.Now()
	err := f()
	r.m.reconcileTime.WithLabelValues(kind).Observe(time.Since(start).Seconds())
	result := "ok"
	var w *waitError
	switch {
	case errors.As(err, &w):
		result = "wait"
	case err != nil:
		result = "error"
	}
	r.m.reconciles.WithLabelValues(kind, result).Inc()
	return err
}

func parseKey(key string) (string, int64, error) {
	kind, idText, ok := strings.Cut(key, ":")
	if !ok || (kind != "ns" && kind != "user" && kind != "org") {
		return "", 0, fmt.Errorf("unknown key %q", key)
	}
	id, err := strconv.ParseInt(idText, 10, 64)
	if err != nil || id <= 0 {
		return "", 0, fmt.Errorf("bad id in key %q", key)
	}
	return kind, id, nil
}

// SyncNamespace reconciles one namespace now and returns when Kubernetes
// holds what Postgres says (or, for a namespace being deleted, when the
// deletion was asked for: the error then says it is still waiting).
func (r *Reconciler) SyncNamespace(ctx context.Context, nsID int64) error {
	if err := r.Start(ctx); err != nil {
		return err
	}
	return r.sync(ctx, tenancy.NamespaceKey(nsID))
}

// reconcileNamespace makes Kubernetes hold exactly what namespace id must
// have. t is the preloaded tenant, or nil to load it.
func (r *Reconciler) reconcileNamespace(ctx context.Context, id int64, t *Tenant) error {
	defer r.lock(tenancy.NamespaceKey(id))()
	if t == nil {
		ts, err := r.store.Tenants(ctx, []int64{id})
		if err != nil {
			return fmt.Errorf("loading namespace %d: %w", id, err)
		}
		if found, ok := ts[id]; ok {
			t = &found
		}
	}
	if t == nil {
		return r.deleteOrphans(ctx, id)
	}
	if t.State == tenancy.NamespaceDeleting {
		return r.deleteNamespace(ctx, *t)
	}
	objs, err := Desired(*t, r.cfg)
	if err != nil {
		return fmt.Errorf("namespace %d: %w", id, err)
	}
	return r.applyTenant(ctx, *t, objs)
}

func (r *Reconciler) reconcileUser(ctx context.Context, id int64) error {
	key := tenancy.UserKey(id)
	unlock := r.lock(key)
	users, err := r.store.Users(ctx, []int64{id})
	if err != nil {
		unlock()
		return fmt.Errorf("loading user %d: %w", id, err)
	}
	u, ok := users[id]
	if !ok || u.Disabled || u.Namespaces == 0 {
		err = r.deleteServiceAccount(ctx, id)
	} else {
		_, err = r.kube.CoreV1().ServiceAccounts(r.cfg.UsersNamespace).Apply(ctx, UserServiceAccount(id, r.cfg), r.applyOpts())
		r.m.applied.Inc()
	}
	unlock()
	if err != nil {
		return fmt.Errorf("service account of user %d: %w", id, err)
	}
	// The user's RoleBindings follow their status.
	ids, err := r.store.NamespaceIDsOfUser(ctx, id)
	if err != nil {
		return fmt.Errorf("namespaces of user %d: %w", id, err)
	}
	for _, ns := range ids {
		r.queue.Add(tenancy.NamespaceKey(ns))
	}
	return nil
}

func (r *Reconciler) deleteServiceAccount(ctx context.Context, userID int64) error {
	err := r.kube.CoreV1().ServiceAccounts(r.cfg.UsersNamespace).Delete(ctx, ServiceAccountName(userID), metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err == nil {
		r.m.deleted.Inc()
	}
	return err
}

func (r *Reconciler) reconcileOrg(ctx context.Context, id int64) error {
	ids, err := r.store.NamespaceIDsOfOrg(ctx, id)
	if err != nil {
		return fmt.Errorf("namespaces of org %d: %w", id, err)
	}
	for _, ns := range ids {
		r.queue.Add(tenancy.NamespaceKey(ns))
	}
	return nil
}

func (r *Reconciler) applyOpts() metav1.ApplyOptions {
	return metav1.ApplyOptions{FieldManager: FieldManager, Force: true}
}

// Resync reconciles every namespace Postgres knows, deletes tenant
// namespaces it does not know, and removes ServiceAccounts of users who
// should have none. It returns when all are done; errors of single
// namespaces are logged, counted and retried through the queue.
func (r *Reconciler) Resync(ctx context.Context) error {
	if err := r.Start(ctx); err != nil {
		return err
	}
	start := time.Now()
	known := map[int64]bool{}
	work := make(chan Tenant)
	g, gctx := errgroup.WithContext(ctx)
	for range r.rc.Workers {
		g.Go(func() error {
			for t := range work {
				key := tenancy.NamespaceKey(t.ID)
				err := r.observe("ns", func() error { return r.reconcileNamespace(gctx, t.ID, &t) })
				var w *waitError
				switch {
				case errors.As(err, &w):
					r.queue.AddRateLimited(key)
				case err != nil && gctx.Err() == nil:
					r.log.Warn("resync", "key", key, "err", err)
					r.queue.AddRateLimited(key)
				}
			}
			return nil
		})
	}
	g.Go(func() error {
		defer close(work)
		var after int64
		for {
			ids, err := r.store.NamespaceIDs(gctx, after, 500)
			if err != nil {
				return fmt.Errorf("listing namespaces: %w", err)
			}
			if len(ids) == 0 {
				return nil
			}
			after = ids[len(ids)-1]
			ts, err := r.store.Tenants(gctx, ids)
			if err != nil {
				return fmt.Errorf("loading namespaces: %w", err)
			}
			for _, id := range ids {
				known[id] = true
				t, ok := ts[id]
				if !ok {
					continue // deleted since listed
				}
				select {
				case work <- t:
				case <-gctx.Done():
					return gctx.Err()
				}
			}
		}
	})
	if err := g.Wait(); err != nil {
		return err
	}
	for _, id := range r.caches.namespaceIDs() {
		if !known[id] {
			r.queue.Add(tenancy.NamespaceKey(id))
		}
	}
	if err := r.collectServiceAccounts(ctx); err != nil {
		return err
	}
	r.m.resyncTime.Observe(time.Since(start).Seconds())
	return nil
}

// collectServiceAccounts queues every user whose ServiceAccount exists but
// who should have none.
func (r *Reconciler) collectServiceAccounts(ctx context.Context) error {
	ids := r.caches.serviceAccountUserIDs()
	for len(ids) > 0 {
		n := min(len(ids), 1000)
		users, err := r.store.Users(ctx, ids[:n])
		if err != nil {
			return fmt.Errorf("loading users: %w", err)
		}
		for _, id := range ids[:n] {
			if u, ok := users[id]; !ok || u.Disabled || u.Namespaces == 0 {
				r.queue.Add(tenancy.UserKey(id))
			}
		}
		ids = ids[n:]
	}
	return nil
}
