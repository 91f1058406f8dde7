//go:build linux

package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"

	"github.com/tenantplane/tenantplane/bpf"
	"github.com/tenantplane/tenantplane/bpf/internal/netns"
)

// Agent meters the pods of one node: it keeps the program attached to each
// running pod's host-side veth, reads the counters every Interval into a
// batch of deltas saved before it is sent, and pushes the batches to the
// usage ingest API until they are accepted.
type Agent struct {
	cfg  Config
	kube kubernetes.Interface
	log  *slog.Logger
	now  func() time.Time
	http *http.Client
	m    *metrics

	// Set up by Run, used by its goroutine only, except under mu.
	mu    sync.Mutex
	meter *bpf.Meter
	st    *state
	pods  corelisters.PodLister
	// unresolved are the live endpoints whose interface was not found
	// at the last reconcile, with why.
	unresolved map[uint32]string
}

// New returns an agent. kube lists and watches the node's pods; reg may be
// nil; now is the clock (UTC).
func New(cfg Config, kube kubernetes.Interface, reg prometheus.Registerer, log *slog.Logger, now func() time.Time) (*Agent, error) {
	if kube == nil || log == nil || now == nil {
		return nil, errors.New("network meter: kubernetes client, logger and clock are required")
	}
	if err := cfg.withDefaults(); err != nil {
		return nil, fmt.Errorf("network meter config: %w", err)
	}
	a := &Agent{cfg: cfg, kube: kube, log: log, now: now, http: &http.Client{Timeout: cfg.HTTPTimeout}}
	a.m = newMetrics(reg, a.kernelErrors)
	return a, nil
}

func (a *Agent) kernelErrors() (inserts, malformed uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.meter == nil {
		return 0, 0
	}
	e, err := a.meter.Errors()
	if err != nil {
		a.log.Warn("reading the meter's error counters", "err", err)
		return 0, 0
	}
	return e.CounterInserts, e.Malformed
}

// EndpointStatus is one pod as the agent meters it.
type EndpointStatus struct {
	ID        uint32
	Namespace string
	Pod       string
	Addrs     []netip.Addr
	// Ifindex is the host-side interface metered, 0 while none is found.
	Ifindex int
	// Unresolved says why no interface was found.
	Unresolved string
	// Ended is set once the pod is gone; the endpoint stays until its
	// last counts are taken.
	Ended bool
}

// Status is a snapshot of what the agent does.
type Status struct {
	Endpoints []EndpointStatus
	// PendingBatches and PendingEvents are not yet accepted by the ingest
	// API.
	PendingBatches int
	PendingEvents  int
}

// Status returns what the agent meters now, endpoints by id.
func (a *Agent) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	var s Status
	if a.st == nil {
		return s
	}
	for _, ep := range a.st.Endpoints {
		s.Endpoints = append(s.Endpoints, EndpointStatus{
			ID: ep.ID, Namespace: ep.Namespace, Pod: ep.Pod, Addrs: slices.Clone(ep.Addrs),
			Ifindex: ep.Ifindex, Unresolved: a.unresolved[ep.ID], Ended: !ep.EndedAt.IsZero(),
		})
	}
	sort.Slice(s.Endpoints, func(i, j int) bool { return s.Endpoints[i].ID < s.Endpoints[j].ID })
	s.PendingBatches = len(a.st.Pending)
	s.PendingEvents, _ = a.st.pendingTotals()
	return s
}

// Run meters until ctx ends, then takes a last reading, tries once more to
// send what is pending, and returns. The program stays attached and the
// maps pinned, so counting goes on while no agent runs, and the next one
// takes over without losing or doubling a byte.
func (a *Agent) Run(ctx context.Context) error {
	if err := a.start(ctx); err != nil {
		return err
	}
	defer func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if err := a.meter.Close(); err != nil {
			a.log.Warn("closing the meter", "err", err)
		}
		a.meter = nil
	}()

	changed := make(chan struct{}, 1)
	if err := a.watchPods(ctx, changed); err != nil {
		return err
	}
	a.reconcile()
	tick := time.NewTicker(a.cfg.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			a.reconcile()
			a.collect()
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), min(a.cfg.HTTPTimeout, 5*time.Second))
			a.push(final)
			cancel()
			return nil
		case <-changed:
			a.reconcile()
		case <-tick.C:
			a.reconcile()
			a.collect()
			a.push(ctx)
		}
	}
}

// start loads the program, reads the state and makes the kernel agree
// with it.
func (a *Agent) start(ctx context.Context) error {
	bootID, err := os.ReadFile(a.cfg.BootIDFile)
	if err != nil {
		return fmt.Errorf("read boot id: %w", err)
	}
	boot := strings.TrimSpace(string(bootID))
	if err := os.MkdirAll(a.cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("create state folder: %w", err)
	}
	meter, err := bpf.Load(bpf.Config{
		PinPath:      a.cfg.PinPath,
		MaxEndpoints: a.cfg.MaxEndpoints,
		MaxCounters:  a.cfg.MaxCounters,
		MaxPrefixes:  a.cfg.MaxPrefixes(),
	})
	if err != nil {
		return fmt.Errorf("network meter: %w", err)
	}
	st, err := a.prepare(meter, boot)
	if err != nil {
		_ = meter.Close()
		return fmt.Errorf("network meter: %w", err)
	}
	a.mu.Lock()
	a.meter, a.st, a.unresolved = meter, st, map[uint32]string{}
	a.mu.Unlock()
	a.updateGauges()
	a.log.InfoContext(ctx, "network meter started", "node", a.cfg.NodeName, "endpoints", len(st.Endpoints), "pendingBatches", len(st.Pending))
	return nil
}

func (a *Agent) prepare(meter *bpf.Meter, boot string) (*state, error) {
	st, err := loadState(a.cfg.StateDir)
	if err != nil {
		return nil, err
	}
	if st == nil {
		if st, err = newState(); err != nil {
			return nil, err
		}
	}
	countersID, err := meter.CountersID()
	if err != nil {
		return nil, err
	}
	if st.BootID != boot || st.CountersID != countersID {
		// The counters the state refers to are gone: what they held past
		// the last batch cannot be known. Start from what the kernel has
		// now, attributed to nobody.
		if st.BootID != "" {
			a.log.Warn("the kernel counters are not those of the saved state; starting them afresh",
				"savedBoot", st.BootID, "boot", boot, "savedCounters", st.CountersID, "counters", countersID)
		}
		st.resetKernel(boot, countersID)
		if err := a.clearKernel(meter); err != nil {
			return nil, err
		}
	}
	if err := st.classIDs(a.cfg.Prefixes); err != nil {
		return nil, err
	}
	st.derive(a.cfg.NodeName)
	if err := st.save(a.cfg.StateDir); err != nil {
		return nil, err
	}
	classes := map[netip.Prefix]uint16{}
	for _, p := range a.cfg.Prefixes {
		classes[p.Prefix.Masked()] = st.Classes[p.Class]
	}
	if err := meter.SetClasses(classes); err != nil {
		return nil, err
	}
	// Counters of endpoints the state no longer has were taken into a
	// batch before the endpoint was dropped: they go.
	if err := meter.DeleteCounters(func(ep uint32) bool { return ep != 0 && st.Endpoints[ep] == nil }); err != nil {
		return nil, err
	}
	return st, nil
}

// clearKernel detaches every pinned link and empties the endpoint and
// counter maps.
func (a *Agent) clearKernel(meter *bpf.Meter) error {
	ifs, err := meter.Attached()
	if err != nil {
		return err
	}
	for _, i := range ifs {
		if err := netns.Do(a.cfg.NetNS, func() error { return meter.Detach(i) }); err != nil {
			return err
		}
	}
	eps, err := meter.Endpoints()
	if err != nil {
		return err
	}
	for addr := range eps {
		if err := meter.DeleteEndpoint(addr); err != nil {
			return err
		}
	}
	return meter.DeleteCounters(func(uint32) bool { return true })
}

// save writes the state; on failure it puts back the state as it was at
// snap and reports false.
func (a *Agent) save(snap []byte, what string) bool {
	if err := a.st.save(a.cfg.StateDir); err != nil {
		a.m.stateErrors.Inc()
		a.log.Error("saving the network meter state", "after", what, "err", err)
		a.mu.Lock()
		a.st.restore(snap, a.cfg.NodeName)
		a.mu.Unlock()
		return false
	}
	return true
}

// collect reads the counters into a batch, saves it, and then drops the
// counters of endpoints whose last counts it took.
func (a *Agent) collect() {
	counters, err := a.meter.Counters()
	if err != nil {
		a.log.Error("reading the network counters", "err", err)
		return
	}
	readings := make([]reading, len(counters))
	for i, c := range counters {
		readings[i] = reading{ID: counterID{Endpoint: c.Endpoint, Direction: uint8(c.Direction), Class: c.Class}, WireBytes: c.WireBytes}
	}
	snap := a.st.snapshot()
	a.mu.Lock()
	res := a.st.cut(readings, a.now(), a.cfg.EndGrace, a.cfg.MaxPendingBatches)
	a.mu.Unlock()
	a.m.unattributed.Set(float64(res.Unattributed))
	if res.Backwards > 0 {
		a.log.Warn("network counters went backwards; counting them from zero", "counters", res.Backwards)
	}
	if !res.Cut {
		a.log.Warn("pending batches are at their bound; bytes wait in the kernel counters", "pendingBatches", len(a.st.Pending))
	}
	if !res.Batched && len(res.Finalized) == 0 {
		return
	}
	if !a.save(snap, "a reading") {
		return
	}
	if len(res.Finalized) > 0 {
		done := map[uint32]bool{}
		for _, id := range res.Finalized {
			done[id] = true
		}
		if err := a.meter.DeleteCounters(func(ep uint32) bool { return done[ep] }); err != nil {
			// They are dropped at the next start.
			a.log.Warn("dropping the counters of ended pods", "err", err)
		}
	}
	a.updateGauges()
}

func (a *Agent) updateGauges() {
	a.mu.Lock()
	defer a.mu.Unlock()
	events, bytes := a.st.pendingTotals()
	a.m.pendingBatches.Set(float64(len(a.st.Pending)))
	a.m.pendingEvents.Set(float64(events))
	a.m.pendingBytes.Set(float64(bytes))
	var attached, unresolved, ended int
	for _, ep := range a.st.Endpoints {
		switch {
		case !ep.EndedAt.IsZero():
			ended++
		case ep.Ifindex != 0:
			attached++
		default:
			unresolved++
		}
	}
	a.m.endpoints.WithLabelValues("attached").Set(float64(attached))
	a.m.endpoints.WithLabelValues("unresolved").Set(float64(unresolved))
	a.m.endpoints.WithLabelValues("ended").Set(float64(ended))
}

// podWanted reports whether p is metered: a running pod of its own network
// with addresses, in a namespace not excluded.
func (a *Agent) podWanted(p *corev1.Pod) bool {
	return p.Spec.NodeName == a.cfg.NodeName && !p.Spec.HostNetwork &&
		p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed &&
		len(p.Status.PodIPs) > 0 && !a.cfg.excluded(p.Namespace)
}

func podAddrs(p *corev1.Pod) []netip.Addr {
	var out []netip.Addr
	for _, ip := range p.Status.PodIPs {
		if a, err := netip.ParseAddr(ip.IP); err == nil {
			out = append(out, a.Unmap())
		}
	}
	slices.SortFunc(out, func(x, y netip.Addr) int { return x.Compare(y) })
	return slices.Compact(out)
}

// reconcile makes the endpoints follow the node's pods: new pods get an
// endpoint (saved before the kernel hears of it, so no counter has an id
// that a restart would not know), gone pods are detached and ended, and
// every live endpoint's addresses and attachment are put right.
func (a *Agent) reconcile() {
	pods, err := a.pods.List(labels.Everything())
	if err != nil {
		a.log.Error("listing pods", "err", err)
		return
	}
	wanted := map[string]*corev1.Pod{}
	for _, p := range pods {
		if a.podWanted(p) {
			wanted[string(p.UID)] = p
		}
	}
	now := a.now()
	snap := a.st.snapshot()
	changed := false
	live := map[string]*endpoint{}
	a.mu.Lock()
	for _, ep := range a.st.Endpoints {
		if ep.EndedAt.IsZero() {
			live[ep.PodUID] = ep
		}
	}
	var ended []*endpoint
	for uid, ep := range live {
		if wanted[uid] == nil {
			ep.EndedAt = now
			ended = append(ended, ep)
			delete(live, uid)
			changed = true
		}
	}
	for uid, p := range wanted {
		addrs := podAddrs(p)
		ep := live[uid]
		if ep == nil {
			ep = &endpoint{ID: a.st.NextEndpoint, PodUID: uid, Namespace: p.Namespace, Pod: p.Name}
			a.st.NextEndpoint++
			a.st.Endpoints[ep.ID] = ep
			live[uid] = ep
			changed = true
		}
		if !slices.Equal(ep.Addrs, addrs) {
			ep.Addrs = addrs
			changed = true
		}
	}
	a.mu.Unlock()
	if changed && !a.save(snap, "a pod change") {
		return
	}

	// The kernel, from here on; its errors are retried at the next
	// reconcile.
	used := map[int]bool{}
	for _, ep := range live {
		if ep.Ifindex != 0 {
			used[ep.Ifindex] = true
		}
	}
	for _, ep := range ended {
		if ep.Ifindex != 0 && !used[ep.Ifindex] {
			if err := netns.Do(a.cfg.NetNS, func() error { return a.meter.Detach(ep.Ifindex) }); err != nil {
				a.log.Warn("detaching an ended pod", "pod", ep.Namespace+"/"+ep.Pod, "err", err)
			}
		}
		a.log.Info("pod ended", "pod", ep.Namespace+"/"+ep.Pod, "endpoint", ep.ID)
	}
	a.syncAddresses(live)
	ifChanged := a.attach(live, used)
	a.detachUnused(live)
	if ifChanged {
		a.save(a.st.snapshot(), "an attachment")
	}
	a.updateGauges()
}

// syncAddresses makes the kernel's address map hold exactly the live
// endpoints' addresses.
func (a *Agent) syncAddresses(live map[string]*endpoint) {
	want := map[netip.Addr]uint32{}
	for _, ep := range live {
		for _, addr := range ep.Addrs {
			want[addr] = ep.ID
		}
	}
	have, err := a.meter.Endpoints()
	if err != nil {
		a.log.Error("listing endpoint addresses", "err", err)
		return
	}
	for addr, id := range have {
		if _, ok := want[addr]; !ok {
			if err := a.meter.DeleteEndpoint(addr); err != nil {
				a.log.Warn("removing an endpoint address", "addr", addr, "endpoint", id, "err", err)
			}
		}
	}
	for addr, id := range want {
		if have[addr] != id {
			if err := a.meter.SetEndpoint(addr, id); err != nil {
				a.log.Error("setting an endpoint address", "addr", addr, "endpoint", id, "err", err)
			}
		}
	}
}

// attach finds each live endpoint's host-side interface and attaches to
// it; it reports whether an endpoint's interface changed.
func (a *Agent) attach(live map[string]*endpoint, used map[int]bool) bool {
	changed := false
	unresolved := map[uint32]string{}
	for _, ep := range live {
		var ifindex int
		err := netns.Do(a.cfg.NetNS, func() error {
			var err error
			if ifindex, err = a.findInterface(ep.Addrs); err != nil {
				return err
			}
			if ep.Ifindex != 0 && ep.Ifindex != ifindex && !used[ep.Ifindex] {
				// The pod's sandbox was made anew with a new veth.
				if err := a.meter.Detach(ep.Ifindex); err != nil {
					return err
				}
			}
			return a.meter.Attach(ifindex)
		})
		if err != nil {
			unresolved[ep.ID] = err.Error()
			continue
		}
		if ep.Ifindex != ifindex {
			a.mu.Lock()
			ep.Ifindex = ifindex
			a.mu.Unlock()
			changed = true
			a.log.Info("metering pod", "pod", ep.Namespace+"/"+ep.Pod, "endpoint", ep.ID, "ifindex", ifindex, "addrs", ep.Addrs)
		}
		used[ifindex] = true
	}
	a.mu.Lock()
	a.unresolved = unresolved
	a.mu.Unlock()
	return changed
}

// findInterface returns the interface the node routes the pod's first
// routable address to; it must be a veth (matching the pattern, if any).
// It runs in the node's network namespace.
func (a *Agent) findInterface(addrs []netip.Addr) (int, error) {
	var errs []error
	for _, addr := range addrs {
		routes, err := netlink.RouteGet(addr.AsSlice())
		if err != nil || len(routes) == 0 {
			errs = append(errs, fmt.Errorf("no route to %s: %w", addr, err))
			continue
		}
		r := routes[0]
		if r.Gw != nil {
			errs = append(errs, fmt.Errorf("%s is routed through %s, not to a pod on this node", addr, r.Gw))
			continue
		}
		l, err := netlink.LinkByIndex(r.LinkIndex)
		if err != nil {
			errs = append(errs, fmt.Errorf("interface %d of %s: %w", r.LinkIndex, addr, err))
			continue
		}
		name := l.Attrs().Name
		if l.Type() != "veth" {
			errs = append(errs, fmt.Errorf("%s is routed to %s, a %s, not a veth", addr, name, l.Type()))
			continue
		}
		if a.cfg.InterfacePattern != "" {
			if ok, _ := path.Match(a.cfg.InterfacePattern, name); !ok {
				errs = append(errs, fmt.Errorf("%s is routed to %s, which does not match %q", addr, name, a.cfg.InterfacePattern))
				continue
			}
		}
		return r.LinkIndex, nil
	}
	if len(errs) == 0 {
		return 0, errors.New("the pod has no address")
	}
	return 0, errors.Join(errs...)
}

// detachUnused detaches interfaces no live endpoint uses, such as those of
// pods that ended while no agent ran.
func (a *Agent) detachUnused(live map[string]*endpoint) {
	ifs, err := a.meter.Attached()
	if err != nil {
		a.log.Error("listing attached interfaces", "err", err)
		return
	}
	used := map[int]bool{}
	for _, ep := range live {
		used[ep.Ifindex] = true
	}
	for _, i := range ifs {
		if !used[i] {
			if err := netns.Do(a.cfg.NetNS, func() error { return a.meter.Detach(i) }); err != nil {
				a.log.Warn("detaching an unused interface", "ifindex", i, "err", err)
			}
		}
	}
}
