package stripepay

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	events        *prometheus.CounterVec
	rejected      prometheus.Counter
	autoTopUps    prometheus.Counter
	discrepancies *prometheus.GaugeVec
	lastReconcile prometheus.Gauge
}

// discrepancyKinds are the kinds reconciliation reports.
var discrepancyKinds = []string{kindMissingPayment, kindAmountDiffers, kindOrgDiffers, kindMissingEvent}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tenantplane_stripe_webhook_events_total",
			Help: "Verified Stripe webhook deliveries by event type and outcome (processed, duplicate, failed).",
		}, []string{"type", "outcome"}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tenantplane_stripe_webhook_rejected_total",
			Help: "Stripe webhook deliveries refused for a bad signature, a stale timestamp or a malformed body.",
		}),
		autoTopUps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tenantplane_stripe_auto_topups_total",
			Help: "Automatic top-ups charged to a saved payment method.",
		}),
		discrepancies: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tenantplane_stripe_reconcile_discrepancies",
			Help: "Stripe payments and events the last reconciliation found missing from the ledger or held differently, by kind.",
		}, []string{"kind"}),
		lastReconcile: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tenantplane_stripe_reconcile_last_run_timestamp_seconds",
			Help: "When the last reconciliation with Stripe finished.",
		}),
	}
	for _, k := range discrepancyKinds {
		m.discrepancies.WithLabelValues(k)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.events, m.rejected, m.autoTopUps, m.discrepancies, m.lastReconcile} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering stripe metrics: %w", err)
		}
	}
	return m, nil
}
