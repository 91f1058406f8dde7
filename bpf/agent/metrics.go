//go:build linux

package agent

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	pendingBatches prometheus.Gauge
	pendingEvents  prometheus.Gauge
	pendingBytes   prometheus.Gauge
	endpoints      *prometheus.GaugeVec
	pushed         *prometheus.CounterVec
	pushErrors     prometheus.Counter
	stateErrors    prometheus.Counter
	unattributed   prometheus.Gauge
}

// newMetrics registers the agent's metrics on reg (nil: none). kernel
// reads the program's error counters at scrape time.
func newMetrics(reg prometheus.Registerer, kernel func() (inserts, malformed uint64)) *metrics {
	const ns, sub = "tenantplane", "netmeter"
	m := &metrics{
		pendingBatches: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "pending_batches",
			Help: "Batches of usage events not yet accepted by the ingest API."}),
		pendingEvents: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "pending_events",
			Help: "Usage events not yet accepted by the ingest API."}),
		pendingBytes: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "pending_bytes",
			Help: "Bytes in usage events not yet accepted by the ingest API."}),
		endpoints: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "endpoints",
			Help: "Pods known to the meter: attached, unresolved (no host-side veth found yet) or ended (last counts not yet taken)."}, []string{"state"}),
		pushed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "pushed_events_total",
			Help: "Usage events sent, by what the ingest API did with them: stored, duplicate, rejected, retried (refused for a time in its future), or dropped after a permanent refusal of the batch."}, []string{"result"}),
		pushErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "push_errors_total",
			Help: "Pushes that failed and will be retried."}),
		stateErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "state_write_errors_total",
			Help: "Failed writes of the state file; the change is retried."}),
		unattributed: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "unattributed_bytes",
			Help: "Wire bytes counted on metered interfaces for addresses of no known pod, since the counters were created; never billed."}),
	}
	if reg == nil {
		return m
	}
	reg.MustRegister(m.pendingBatches, m.pendingEvents, m.pendingBytes, m.endpoints, m.pushed, m.pushErrors, m.stateErrors, m.unattributed,
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "counter_insert_errors_total",
			Help: "Packets not counted because the kernel counter map was full."},
			func() float64 { i, _ := kernel(); return float64(i) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "malformed_packets_total",
			Help: "IP packets too short for their headers or with a wrong header, not counted."},
			func() float64 { _, b := kernel(); return float64(b) }),
	)
	return m
}
