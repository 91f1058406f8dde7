package collectors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/tenantplane/tenantplane/collectors/usage"
	"github.com/tenantplane/tenantplane/internal/leader"
)

// Config configures the compute and storage collectors.
type Config struct {
	// CPU and Memory are the billing bases; default BasisMax.
	CPU    Basis
	Memory Basis
	// ExtendedResources maps the extended resources that are metered from
	// pod limits to their usage resource; default nvidia.com/gpu → gpu.
	ExtendedResources map[corev1.ResourceName]string
	// SettleDelay is how long after a minute ends it is sampled, so the
	// informers have seen the ends within it; default 10 seconds.
	SettleDelay time.Duration
	// MaxCatchUp is how far back a leader samples minutes nobody wrote;
	// older ones are recorded as a too-old gap. It must be inside the
	// store's retention; default 6 hours.
	MaxCatchUp time.Duration
	// BatchMinutes is how many minutes one transaction writes at most when
	// catching up; default 30.
	BatchMinutes int
	// TickInterval is how often the leader looks for due minutes; default
	// 1 second.
	TickInterval time.Duration
	// MetricsInterval is how often the leader reads metrics.k8s.io when a
	// basis uses usage; default 15 seconds.
	MetricsInterval time.Duration
	// ResyncTenants is how often the tenant namespaces are reread from the
	// store; default 30 seconds.
	ResyncTenants time.Duration

	// LeaseNamespace and LeaseName name the Lease the replicas elect a
	// leader with; default "tenantplane-system" and
	// "tenantplane-collectors".
	LeaseNamespace string
	LeaseName      string
	// Identity names this replica in the Lease; default the host name.
	Identity string
	// LeaseDuration, RenewDeadline and RetryPeriod are client-go's leader
	// election timings; default 15 s, 10 s and 2 s.
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
}

func (c *Config) withDefaults() error {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.CPU == "" {
		c.CPU = BasisMax
	}
	if c.Memory == "" {
		c.Memory = BasisMax
	}
	if c.ExtendedResources == nil {
		c.ExtendedResources = map[corev1.ResourceName]string{"nvidia.com/gpu": usage.GPU}
	}
	def(&c.SettleDelay, 10*time.Second)
	def(&c.MaxCatchUp, 6*time.Hour)
	def(&c.TickInterval, time.Second)
	def(&c.MetricsInterval, 15*time.Second)
	def(&c.ResyncTenants, 30*time.Second)
	def(&c.LeaseDuration, 15*time.Second)
	def(&c.RenewDeadline, 10*time.Second)
	def(&c.RetryPeriod, 2*time.Second)
	if c.BatchMinutes == 0 {
		c.BatchMinutes = 30
	}
	if c.LeaseNamespace == "" {
		c.LeaseNamespace = "tenantplane-system"
	}
	if c.LeaseName == "" {
		c.LeaseName = "tenantplane-collectors"
	}
	if c.Identity == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("identity: not set and no host name: %w", err)
		}
		c.Identity = h
	}
	switch {
	case !c.CPU.Valid():
		return fmt.Errorf("cpu basis %q is not request, limit, usage or max", c.CPU)
	case !c.Memory.Valid():
		return fmt.Errorf("memory basis %q is not request, limit, usage or max", c.Memory)
	case c.SettleDelay < 0 || c.SettleDelay >= time.Minute:
		return errors.New("settle delay must be in [0, 1m)")
	case c.MaxCatchUp < time.Minute:
		return errors.New("max catch-up must be at least a minute")
	case c.BatchMinutes < 1:
		return errors.New("batch minutes must be at least 1")
	case c.TickInterval <= 0 || c.MetricsInterval <= 0 || c.ResyncTenants <= 0:
		return errors.New("intervals must be positive")
	case c.RenewDeadline >= c.LeaseDuration || c.RetryPeriod >= c.RenewDeadline:
		return errors.New("leader election needs retry period < renew deadline < lease duration")
	}
	for name, res := range c.ExtendedResources {
		if !usage.ValidResource(res) || !usage.ValidClass(string(name)) {
			return fmt.Errorf("extended resource %q → %q is not a valid resource and class", name, res)
		}
	}
	return nil
}

// Collector runs the compute and storage collectors: every replica keeps
// pod and volume claim informers current (so a new leader knows what ended
// while it was not leading); the replica that holds the Lease samples each
// minute into the store and runs the store's upkeep.
type Collector struct {
	cfg     Config
	kube    kubernetes.Interface
	usageFn UsageSource
	store   usage.Store
	upkeep  *usage.Upkeep
	log     *slog.Logger
	now     func() time.Time
	metrics *metrics

	compute  *computeMeter
	storage  *storageMeter
	samplers []*sampler

	tenantsMu   sync.Mutex
	tenants     map[string]int64
	tenantsRead time.Time
}

// New returns a Collector. usageSrc reads metrics.k8s.io (NewMetricsAPI);
// nil means usage is never known and requests are used. upkeep, when not
// nil, runs on the leader. reg may be nil.
func New(cfg Config, kube kubernetes.Interface, usageSrc UsageSource, store usage.Store, upkeep *usage.Upkeep, reg prometheus.Registerer, log *slog.Logger, now func() time.Time) (*Collector, error) {
	if kube == nil || store == nil || log == nil || now == nil {
		return nil, errors.New("collectors: kubernetes client, store, logger and clock are required")
	}
	if err := cfg.withDefaults(); err != nil {
		return nil, fmt.Errorf("collectors: %w", err)
	}
	c := &Collector{cfg: cfg, kube: kube, usageFn: usageSrc, store: store, upkeep: upkeep, log: log, now: now, metrics: newMetrics(reg)}
	c.compute = newComputeMeter(cfg.CPU, cfg.Memory, maps.Clone(cfg.ExtendedResources), now)
	c.storage = newStorageMeter(now)
	for _, m := range []meter{c.compute, c.storage} {
		c.samplers = append(c.samplers, &sampler{m: m, store: store, cfg: &c.cfg, metrics: c.metrics})
	}
	return c, nil
}

// Run watches pods and claims, takes part in leader election, and samples
// while it leads, until ctx is done.
func (c *Collector) Run(ctx context.Context) error {
	if err := c.StartInformers(ctx); err != nil {
		return err
	}
	return leader.Run(ctx, c.kube, leader.Config{
		Namespace: c.cfg.LeaseNamespace, Name: c.cfg.LeaseName, Identity: c.cfg.Identity,
		LeaseDuration: c.cfg.LeaseDuration, RenewDeadline: c.cfg.RenewDeadline, RetryPeriod: c.cfg.RetryPeriod,
	}, c.log.With("component", "collectors"), func(ctx context.Context) error {
		defer c.metrics.leader.Set(0)
		c.lead(ctx)
		return nil
	})
}

// StartInformers starts the pod and claim informers and returns when they
// have listed everything. Run calls it; a test that drives Tick by itself
// calls it instead of Run.
func (c *Collector) StartInformers(ctx context.Context) error {
	f := informers.NewSharedInformerFactory(c.kube, 0)
	pods := f.Core().V1().Pods().Informer()
	pvcs := f.Core().V1().PersistentVolumeClaims().Informer()
	if err := pods.SetTransform(trimPod); err != nil {
		return fmt.Errorf("collectors: pod transform: %w", err)
	}
	if _, err := pods.AddEventHandler(c.compute.handler()); err != nil {
		return fmt.Errorf("collectors: pod handler: %w", err)
	}
	if _, err := pvcs.AddEventHandler(c.storage.handler()); err != nil {
		return fmt.Errorf("collectors: claim handler: %w", err)
	}
	f.Start(ctx.Done())
	go func() { <-ctx.Done(); f.Shutdown() }()
	if !cache.WaitForCacheSync(ctx.Done(), pods.HasSynced, pvcs.HasSynced) {
		return fmt.Errorf("collectors: informers did not sync: %w", ctx.Err())
	}
	now := c.now().UTC()
	c.compute.markSynced(now)
	c.storage.markSynced(now)
	go c.pruneLoop(ctx)
	return nil
}

// pruneLoop forgets, every minute, what ended before any leader could
// still need it: further back than MaxCatchUp. The leader prunes closer,
// at its watermark, as it samples; a standby relies on this.
func (c *Collector) pruneLoop(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		before := c.now().UTC().Add(-c.cfg.MaxCatchUp - c.cfg.SettleDelay - 2*time.Minute)
		c.compute.prune(before)
		c.storage.prune(before)
	}
}

// lead samples while this replica leads.
func (c *Collector) lead(ctx context.Context) {
	c.metrics.leader.Set(1)
	c.log.Info("leading the collectors", "identity", c.cfg.Identity)
	for _, s := range c.samplers {
		s.next = time.Time{} // reread the watermark: another leader may have moved it
	}
	tick := time.NewTicker(c.cfg.TickInterval)
	defer tick.Stop()
	var lastPoll, lastUpkeep time.Time
	for ctx.Err() == nil {
		if c.usageFn != nil && c.compute.needsUsage() && time.Since(lastPoll) >= c.cfg.MetricsInterval {
			lastPoll = time.Now()
			c.pollUsage(ctx)
		}
		if c.upkeep != nil && time.Since(lastUpkeep) >= c.upkeep.Config().Interval {
			lastUpkeep = time.Now()
			if err := c.upkeep.RunOnce(ctx); err != nil && ctx.Err() == nil {
				c.log.Error("usage upkeep", "err", err)
			}
		}
		if err := c.Tick(ctx); err != nil && ctx.Err() == nil {
			c.log.Error("sampling usage", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}

// Tick samples every due minute of every collector. Only the leader may
// call it (Run does); tests call it to drive minutes with a fake clock.
func (c *Collector) Tick(ctx context.Context) error {
	now := c.now().UTC()
	var errs []error
	for _, s := range c.samplers {
		if err := s.sampleDue(ctx, now, c.tenantNamespaces); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.m.source(), err))
		}
	}
	return errors.Join(errs...)
}

// PollUsage reads the metrics API once; the leader does it every
// MetricsInterval. Tests call it to feed usage for the current minute.
func (c *Collector) PollUsage(ctx context.Context) { c.pollUsage(ctx) }

func (c *Collector) pollUsage(ctx context.Context) {
	if c.usageFn == nil {
		return
	}
	at := c.now()
	reads, served, err := c.usageFn.PodUsage(ctx)
	if err != nil {
		c.log.Warn("reading pod usage", "err", err)
		return
	}
	c.compute.addUsage(at, served, reads)
}

// tenantNamespaces returns the tenant namespaces, reread every
// ResyncTenants.
func (c *Collector) tenantNamespaces(ctx context.Context) (map[string]int64, error) {
	c.tenantsMu.Lock()
	defer c.tenantsMu.Unlock()
	if c.tenants != nil && time.Since(c.tenantsRead) < c.cfg.ResyncTenants {
		return c.tenants, nil
	}
	m, err := c.store.TenantNamespaces(ctx)
	if err != nil {
		return nil, err
	}
	c.tenants, c.tenantsRead = m, time.Now()
	return m, nil
}

// RefreshTenants makes the next sampling reread the tenant namespaces.
func (c *Collector) RefreshTenants() {
	c.tenantsMu.Lock()
	defer c.tenantsMu.Unlock()
	c.tenants = nil
}

// trimPod keeps only what metering reads of a pod, so that the informer's
// cache of every pod in the cluster stays small.
func trimPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	pod.ManagedFields = nil
	pod.Annotations = nil
	pod.Labels = nil
	pod.Spec.Volumes = nil
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range list {
			c := &list[i]
			c.Env, c.EnvFrom, c.VolumeMounts, c.Command, c.Args = nil, nil, nil, nil, nil
			c.LivenessProbe, c.ReadinessProbe, c.StartupProbe, c.Lifecycle = nil, nil, nil, nil
		}
	}
	pod.Spec.EphemeralContainers = nil
	pod.Status.Conditions = nil
	return pod, nil
}
