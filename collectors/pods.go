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
	// BasisUsage meters the usage from the metrics API, or the request
	// where no usage is known.
	BasisUsage Basis = "usage"
	// BasisMax meters max(request, usage), or the request where no usage
	// is known.
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

// value returns the quantity metered for b from a pod's request, limit and
// usage (haveUsage false when none is known).
func (b Basis) value(request, limit, use int64, haveUsage bool) int64 {
	switch b {
	case BasisLimit:
		return max(limit, request)
	case BasisUsage:
		if haveUsage {
			return use
		}
	case BasisMax:
		if haveUsage {
			return max(request, use)
		}
	}
	return request
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
