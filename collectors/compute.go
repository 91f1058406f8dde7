package collectors

import (
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/tenantplane/tenantplane/collectors/usage"
)

// PodUsage is the usage of one pod from one read of the metrics API.
type PodUsage struct {
	Namespace string
	Name      string
	// At is the end of the window the usage was measured over.
	At time.Time
	// Containers is the usage of each container that the read reports.
	Containers []ContainerUsage
}

// ContainerUsage is the usage of one container of a pod.
type ContainerUsage struct {
	Name string
	// CPUNano is the CPU usage in nanocores (the metrics API's own
	// precision); MemBytes the memory working set in bytes.
	CPUNano  int64
	MemBytes int64
}

// usageAcc sums the metrics reads of one pod in one minute, per container:
// the pod's running containers in the order of podRecord.running, and the
// rest (an init container read while it ran) together.
type usageAcc struct {
	n                  int64
	cpu, mem           []int64 // nanocores, bytes
	otherCPU, otherMem int64
}

// add sums one read of the pod of record r.
func (a *usageAcc) add(r *podRecord, cs []ContainerUsage) {
	if a.cpu == nil && len(r.running) > 0 {
		a.cpu, a.mem = make([]int64, len(r.running)), make([]int64, len(r.running))
	}
	a.n++
	for _, cu := range cs {
		i := r.runningIndex(cu.Name)
		if i < 0 || i >= len(a.cpu) {
			a.otherCPU += cu.CPUNano
			a.otherMem += cu.MemBytes
			continue
		}
		a.cpu[i] += cu.CPUNano
		a.mem[i] += cu.MemBytes
	}
}

// computeMeter meters CPU, memory and extended resources of pods. Every
// replica keeps it current from the pod informer, so a new leader knows the
// pods that ended while it was not leading; only the leader samples.
type computeMeter struct {
	cpu, mem Basis
	extended map[corev1.ResourceName]string
	now      func() time.Time

	mu   sync.Mutex
	pods map[types.UID]*podRecord
	// byName finds the pod that a metrics read is about.
	byName map[types.NamespacedName]types.UID
	// usage holds the metrics reads by pod and minute; polled holds the
	// minutes in which the metrics API was read.
	usage  map[types.UID]map[time.Time]*usageAcc
	polled map[time.Time]bool
	served bool
	synced time.Time
}

func newComputeMeter(cpu, mem Basis, extended map[corev1.ResourceName]string, now func() time.Time) *computeMeter {
	return &computeMeter{
		cpu: cpu, mem: mem, extended: extended, now: now,
		pods:   map[types.UID]*podRecord{},
		byName: map[types.NamespacedName]types.UID{},
		usage:  map[types.UID]map[time.Time]*usageAcc{},
		polled: map[time.Time]bool{},
	}
}

func (c *computeMeter) source() string { return usage.SourceCompute }

// handler returns the informer event handler that keeps the records.
func (c *computeMeter) handler() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.upsert(obj) },
		UpdateFunc: func(_, obj any) { c.upsert(obj) },
		DeleteFunc: c.remove,
	}
}

func (c *computeMeter) upsert(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	r := newPodRecord(pod, c.extended)
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.pods[pod.UID]; old != nil {
		// A start once known stays when a later object lacks it, and so
		// does an end.
		if r.start.IsZero() {
			r.start = old.start
		}
		if !old.end.IsZero() {
			r.end = old.end
		}
	}
	if !r.start.IsZero() && r.end.IsZero() && (pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed) {
		r.end = c.now().UTC()
	}
	c.pods[pod.UID] = r
	c.byName[types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name}] = pod.UID
}

func (c *computeMeter) remove(obj any) {
	seen := c.now().UTC()
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	key := types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name}
	if c.byName[key] == pod.UID {
		delete(c.byName, key)
	}
	r := c.pods[pod.UID]
	if r == nil {
		r = newPodRecord(pod, c.extended)
		c.pods[pod.UID] = r
	}
	if r.start.IsZero() {
		// It never started: there is nothing to meter.
		delete(c.pods, pod.UID)
		delete(c.usage, pod.UID)
		return
	}
	if end := podEnd(pod); r.end.IsZero() && !end.IsZero() {
		r.end = end
	}
	if r.end.IsZero() {
		r.end = removedEnd(pod, seen)
	}
}

// markSynced records that the informer has listed every pod: from then on
// every pod's end is observed.
func (c *computeMeter) markSynced(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.synced.IsZero() {
		c.synced = t
	}
}

func (c *computeMeter) observedSince() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.synced
}

// needsUsage reports whether a basis reads the metrics API.
func (c *computeMeter) needsUsage() bool { return c.cpu.needsUsage() || c.mem.needsUsage() }

// addUsage records one read of the metrics API, made at the time polled.
// served is false when the API is not served at all.
func (c *computeMeter) addUsage(polled time.Time, served bool, reads []PodUsage) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.served = served
	if !served {
		return
	}
	c.polled[polled.UTC().Truncate(time.Minute)] = true
	for _, u := range reads {
		uid, ok := c.byName[types.NamespacedName{Namespace: u.Namespace, Name: u.Name}]
		if !ok {
			continue
		}
		m := u.At.UTC().Truncate(time.Minute)
		byMinute := c.usage[uid]
		if byMinute == nil {
			byMinute = map[time.Time]*usageAcc{}
			c.usage[uid] = byMinute
		}
		r := c.pods[uid]
		if r == nil {
			continue
		}
		a := byMinute[m]
		if a == nil {
			a = &usageAcc{}
			byMinute[m] = a
		}
		a.add(r, u.Containers)
	}
}

// nsAcc sums quantity-seconds of one namespace in one minute.
type nsAcc struct {
	cpu, mem int64
	ext      map[extKey]int64
}

type extKey struct{ resource, class string }

// sample meters minute m for the tenant namespaces. It also returns the
// reasons the minute is not exact.
func (c *computeMeter) sample(m time.Time, tenants map[string]int64) ([]usage.Sample, []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var reasons []string
	if c.synced.IsZero() || c.synced.After(m) {
		reasons = append(reasons, usage.GapNotObserved)
	}
	if c.served && c.needsUsage() && !c.polled[m] {
		reasons = append(reasons, usage.GapUsageUnavailable)
	}
	acc := map[int64]*nsAcc{}
	for uid, r := range c.pods {
		secs := overlapSeconds(r.start, r.end, m)
		if secs == 0 {
			continue
		}
		id, ok := tenants[r.namespace]
		if !ok {
			continue
		}
		a := acc[id]
		if a == nil {
			a = &nsAcc{}
			acc[id] = a
		}
		u := c.usage[uid][m]
		a.cpu += c.cpu.value(r.cpuRequest, r.cpuLimit, r.cpuOverhead, r.cpuUse(u)) * secs
		a.mem += c.mem.value(r.memRequest, r.memLimit, r.memOverhead, r.memUse(u)) * secs
		for _, e := range r.ext {
			if a.ext == nil {
				a.ext = map[extKey]int64{}
			}
			a.ext[extKey{e.resource, e.class}] += e.count * secs
		}
	}
	out := make([]usage.Sample, 0, 2*len(acc))
	add := func(id int64, res, class string, q int64) {
		if q > 0 {
			out = append(out, usage.Sample{NamespaceID: id, Resource: res, Class: class, Minute: m, Quantity: q})
		}
	}
	for id, a := range acc {
		add(id, usage.CPU, "", perMinute(a.cpu, 1))
		add(id, usage.Memory, "", perMinute(a.mem, 1<<20))
		for k, v := range a.ext {
			add(id, k.resource, k.class, perMinute(v, 1))
		}
	}
	return out, reasons
}

// prune forgets pods that ended, and usage reads, before t.
func (c *computeMeter) prune(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for uid, r := range c.pods {
		if !r.end.IsZero() && r.end.Before(t) {
			delete(c.pods, uid)
			delete(c.usage, uid)
		}
	}
	for uid, byMinute := range c.usage {
		for m := range byMinute {
			if m.Before(t) {
				delete(byMinute, m)
			}
		}
		if len(byMinute) == 0 {
			delete(c.usage, uid)
		}
	}
	for m := range c.polled {
		if m.Before(t) {
			delete(c.polled, m)
		}
	}
}
