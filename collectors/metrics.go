package collectors

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenantplane/tenantplane/collectors/usage"
)

// metrics are the collectors' Prometheus series.
type metrics struct {
	samples    *prometheus.CounterVec
	gaps       *prometheus.CounterVec
	watermarks *prometheus.GaugeVec
	leader     prometheus.Gauge
	ingested   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		samples: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tenantplane_usage_samples_written_total",
			Help: "Usage samples written by the collectors, by source.",
		}, []string{"source"}),
		gaps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tenantplane_usage_gap_minutes_total",
			Help: "Minutes a collector could not sample exactly, by source and reason.",
		}, []string{"source", "reason"}),
		watermarks: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tenantplane_usage_watermark_seconds",
			Help: "Unix time before which every minute of a source is written.",
		}, []string{"source"}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tenantplane_usage_collector_leader",
			Help: "1 while this replica leads the collectors.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.samples, m.gaps, m.watermarks, m.leader)
	}
	return m
}

func (m *metrics) written(src string, b usage.MinuteBatch) {
	m.samples.WithLabelValues(src).Add(float64(len(b.Samples)))
	for _, g := range b.Gaps {
		m.gaps.WithLabelValues(src, g.Reason).Add(g.End.Sub(g.Start).Minutes())
	}
}

func (m *metrics) watermark(src string, t time.Time) {
	m.watermarks.WithLabelValues(src).Set(float64(t.Unix()))
}

func newIngestMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{ingested: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tenantplane_usage_ingest_events_total",
		Help: "Events received by POST /v1/usage, by meter and outcome (stored, duplicate, rejected).",
	}, []string{"meter", "outcome"})}
	if reg != nil {
		reg.MustRegister(m.ingested)
	}
	return m
}
