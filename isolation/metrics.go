package isolation

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the reconciler's Prometheus metrics.
type metrics struct {
	reconciles      *prometheus.CounterVec
	reconcileTime   *prometheus.HistogramVec
	applied         prometheus.Counter
	unchanged       prometheus.Counter
	deleted         prometheus.Counter
	drift           *prometheus.CounterVec
	queueDepth      prometheus.GaugeFunc
	resyncTime      prometheus.Histogram
	outboxDone      prometheus.Counter
	outboxFailed    prometheus.Counter
	outboxPending   prometheus.Gauge
	outboxFailing   prometheus.Gauge
	outboxOldest    prometheus.Gauge
	outboxAttempts  prometheus.Gauge
	outboxClaimed   prometheus.Counter
	suspendedObject *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, queueLen func() int) (*metrics, error) {
	const ns, sub = "tenantplane", "isolation"
	m := &metrics{
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "reconciles_total",
			Help: "Reconciles by what was reconciled (namespace, user, org) and result (ok, wait, error).",
		}, []string{"kind", "result"}),
		reconcileTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "reconcile_duration_seconds",
			Help:    "Time to reconcile one key.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"kind"}),
		applied: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "applied_objects_total",
			Help: "Objects sent with server-side apply.",
		}),
		unchanged: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "unchanged_objects_total",
			Help: "Objects not sent because the informer cache shows them exactly as last applied.",
		}),
		deleted: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "deleted_objects_total",
			Help: "Objects deleted because they were no longer desired.",
		}),
		drift: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "drift_events_total",
			Help: "Changes to platform-owned objects seen by the informers, by kind and event.",
		}, []string{"kind", "event"}),
		resyncTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "resync_duration_seconds",
			Help:    "Time of one full resync of every namespace.",
			Buckets: prometheus.ExponentialBuckets(0.5, 2, 12),
		}),
		outboxDone: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "outbox_done_total",
			Help: "Outbox rows applied to Kubernetes.",
		}),
		outboxFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "outbox_failures_total",
			Help: "Outbox attempts that failed and were put back with a backoff.",
		}),
		outboxClaimed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "outbox_claimed_total",
			Help: "Outbox rows claimed, one per attempt.",
		}),
		outboxPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "outbox_pending",
			Help: "Outbox rows not done yet.",
		}),
		outboxFailing: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "outbox_failing",
			Help: "Outbox rows not done yet that failed at least once.",
		}),
		outboxOldest: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "outbox_oldest_pending_seconds",
			Help: "Age of the oldest outbox row not done yet.",
		}),
		outboxAttempts: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "outbox_max_attempts",
			Help: "Highest attempt count among outbox rows not done yet.",
		}),
		suspendedObject: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "suspension_changes_total",
			Help: "Workloads scaled or suspended (suspend) and restored (resume), by kind.",
		}, []string{"op", "kind"}),
	}
	m.queueDepth = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: ns, Subsystem: sub, Name: "queue_depth",
		Help: "Keys waiting in the reconcile queue.",
	}, func() float64 { return float64(queueLen()) })
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{
		m.reconciles, m.reconcileTime, m.applied, m.unchanged, m.deleted, m.drift, m.queueDepth, m.resyncTime,
		m.outboxDone, m.outboxFailed, m.outboxClaimed, m.outboxPending, m.outboxFailing,
		m.outboxOldest, m.outboxAttempts, m.suspendedObject,
	} {
		if err := reg.Register(c); err != nil {
			if _, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
				return nil, errors.New("isolation metrics are already registered: one Reconciler per registry")
			}
			return nil, err
		}
	}
	return m, nil
}
