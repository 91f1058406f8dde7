package collectors

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	resourcehelper "k8s.io/component-helpers/resource"
)

// Basis is what a pod is metered on for CPU or memory.
type Basis string

// The billing bases.
const (
	// BasisRequest meters the effective request.
	BasisRequest Basis = "request"
	// BasisLimit meters the limit, never less than the request (a pod
	// without a limit is metered on its request).
	BasisLimit Basis = "limit"
	// BasisUsage meters the usage from the metrics API (the sum of the
	// containers'), or the request where no usage is known.
	BasisUsage Basis = "usage"
	// BasisMax meters max(request, usage) of each running container, never
	// less than the pod's effective request, or the request where no usage
	// is known (see Basis.value).
	BasisMax Basis = "max"
)

// Valid reports whether b is one of the bases.
func (b Basis) Valid() bool {
	switch b {
	case BasisRequest, BasisLimit, BasisUsage, BasisMax:
		return true
	}
	return false
}

// needsUsage reports whether b reads the metrics API.
func (b Basis) needsUsage() bool { return b == BasisUsage || b == BasisMax }

// value returns the quantity metered for b from a pod's effective request
// and limit (as Kubernetes accounts them, overhead included), its runtime
// overhead, and u, what the metrics API read of it in the minute.
//
// Usage is the sum of the containers' usage. max(request, usage) is taken
// per container, as each container's request is its own reservation: the
// running containers' max(request, usage), plus any other container read
// and the overhead, and never less than the pod's effective request (which
// is higher while init containers dominate). Without a read both are the
// request.
func (b Basis) value(request, limit, overhead int64, u minuteUse) int64 {
	switch b {
	case BasisLimit:
		return max(limit, request)
	case BasisUsage:
		if u.have {
			sum := u.other
			for _, c := range u.containers {
				sum += c.use
			}
			return sum
		}
	case BasisMax:
		if u.have {
			sum := overhead + u.other
			for _, c := range u.containers {
				sum += max(c.request, c.use)
			}
			return max(request, sum)
		}
	}
	return request
}

// minuteUse is what the metrics API read of one pod in one minute, in the
// unit of one resource (millicores or bytes).
type minuteUse struct {
	// have is false when nothing was read.
	have bool
	// containers holds the running containers' requests and average usage.
	containers []containerUse
	// other is the average usage of containers read that are not running
	// containers of the record (an init container while it ran).
	other int64
}

// containerUse is a running container's request and average usage.
type containerUse struct{ request, use int64 }

// runningContainer is a container that runs for the pod's life: an app
// container or a sidecar (a restartable init container), with its own
// requests.
type runningContainer struct {
	name     string
	cpu, mem int64 // millicores, bytes
}

// runningIndex returns the index of the running container name, or -1.
func (r *podRecord) runningIndex(name string) int {
	for i := range r.running {
		if r.running[i].name == name {
			return i
		}
	}
	return -1
}

// cpuUse returns the CPU that the metrics API read of r in a minute (nil
// when nothing was), in millicores, rounded half up from nanocores.
func (r *podRecord) cpuUse(a *usageAcc) minuteUse {
	if a == nil || a.n == 0 {
		return minuteUse{}
	}
	avg := func(sum int64) int64 { return (sum + a.n*500_000) / (a.n * 1_000_000) }
	u := minuteUse{have: true, other: avg(a.otherCPU), containers: make([]containerUse, len(r.running))}
	for i, c := range r.running {
		u.containers[i].request = c.cpu
		if i < len(a.cpu) {
			u.containers[i].use = avg(a.cpu[i])
		}
	}
	return u
}

// memUse returns the memory that the metrics API read of r in a minute,
// in bytes.
func (r *podRecord) memUse(a *usageAcc) minuteUse {
	if a == nil || a.n == 0 {
		return minuteUse{}
	}
	avg := func(sum int64) int64 { return (sum + a.n/2) / a.n }
	u := minuteUse{have: true, other: avg(a.otherMem), containers: make([]containerUse, len(r.running))}
	for i, c := range r.running {
		u.containers[i].request = c.mem
		if i < len(a.mem) {
			u.containers[i].use = avg(a.mem[i])
		}
	}
	return u
}

// extQuantity is a count of an extended resource (a GPU model) that a pod
// holds.
type extQuantity struct {
	resource string // the usage resource, e.g. "gpu"
	class    string // the Kubernetes resource name, e.g. "nvidia.com/gpu"
	count    int64
}

// podRecord is what the compute collector keeps of a pod: enough to meter
// any minute of its life without the pod object.
type podRecord struct {
	namespace string
	name      string
	// start is when the pod started (status.startTime); zero while it has
	// not.
	start time.Time
	// end is when it ended; zero while it runs.
	end time.Time
	// requests and limits as Kubernetes accounts them: the effective
	// request max(max(init), sum(app)+sidecars) plus pod overhead.
	cpuRequest, cpuLimit int64 // millicores
	memRequest, memLimit int64 // bytes
	ext                  []extQuantity
	// running are the app containers and sidecars, with their own
	// requests, for bases that compare usage per container; the overhead
	// is the runtime class's, included in the requests above.
	running                  []runningContainer
	cpuOverhead, memOverhead int64
}

// newPodRecord reads what metering needs from pod. extended maps the
// extended resource names that are metered to their usage resource.
func newPodRecord(pod *corev1.Pod, extended map[corev1.ResourceName]string) *podRecord {
	r := &podRecord{namespace: pod.Namespace, name: pod.Name}
	if pod.Spec.NodeName != "" && pod.Status.StartTime != nil {
		r.start = pod.Status.StartTime.UTC()
		r.end = podEnd(pod)
	}
	opts := resourcehelper.PodResourcesOptions{UseStatusResources: true}
	req := resourcehelper.PodRequests(pod, opts)
	lim := resourcehelper.PodLimits(pod, opts)
	r.cpuRequest = req.Cpu().MilliValue()
	r.cpuLimit = lim.Cpu().MilliValue()
	r.memRequest = req.Memory().Value()
	r.memLimit = lim.Memory().Value()
	for _, c := range pod.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			r.running = append(r.running, runningContainer{name: c.Name, cpu: c.Resources.Requests.Cpu().MilliValue(), mem: c.Resources.Requests.Memory().Value()})
		}
	}
	for _, c := range pod.Spec.Containers {
		r.running = append(r.running, runningContainer{name: c.Name, cpu: c.Resources.Requests.Cpu().MilliValue(), mem: c.Resources.Requests.Memory().Value()})
	}
	r.cpuOverhead = pod.Spec.Overhead.Cpu().MilliValue()
	r.memOverhead = pod.Spec.Overhead.Memory().Value()
	for name, res := range extended {
		q, ok := lim[name]
		if !ok {
			q, ok = req[name]
		}
		if ok && q.Value() > 0 {
			r.ext = append(r.ext, extQuantity{resource: res, class: string(name), count: q.Value()})
		}
	}
	return r
}

// podEnd returns when a pod in a terminal phase ended: the latest time one
// of its containers finished. It is zero for a pod that runs, or a
// terminal pod that reports no finish time.
func podEnd(pod *corev1.Pod) time.Time {
	if pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed {
		return time.Time{}
	}
	var end time.Time
	for _, list := range [][]corev1.ContainerStatus{pod.Status.ContainerStatuses, pod.Status.InitContainerStatuses} {
		for _, cs := range list {
			if t := cs.State.Terminated; t != nil && t.FinishedAt.After(end) {
				end = t.FinishedAt.UTC()
			}
		}
	}
	return end
}

// removedEnd returns when a pod that was removed from the API without a
// known end stopped: the deletion deadline (the kubelet has killed it by
// then) if that is before it was seen gone, else when it was seen gone.
func removedEnd(pod *corev1.Pod, seenGone time.Time) time.Time {
	if dt := pod.DeletionTimestamp; dt != nil && dt.Time.Before(seenGone) {
		return dt.UTC()
	}
	return seenGone
}

// overlapSeconds returns how many whole seconds of [start, end) fall in the
// minute that starts at m; a zero end means "still running".
func overlapSeconds(start, end, m time.Time) int64 {
	if start.IsZero() {
		return 0
	}
	from, to := m, m.Add(time.Minute)
	if start.After(from) {
		from = start
	}
	if !end.IsZero() && end.Before(to) {
		to = end
	}
	if !to.After(from) {
		return 0
	}
	return int64(to.Sub(from) / time.Second)
}

// perMinute divides a quantity-seconds total by the seconds of a minute and
// by unit, rounding half up.
func perMinute(quantitySeconds, unit int64) int64 {
	d := 60 * unit
	return (quantitySeconds + d/2) / d
}
