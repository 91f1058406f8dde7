package billing

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// lifecycleMetrics count what the debt lifecycle does and what fails.
type lifecycleMetrics struct {
	// transitions counts debt transitions by the state entered.
	transitions *prometheus.CounterVec
	// webhookFailures counts failed webhook deliveries: "retry" when
	// another attempt follows, "given_up" when none does.
	webhookFailures *prometheus.CounterVec
	// holdFailures counts suspensions and resumes that failed.
	holdFailures *prometheus.CounterVec
}

// debtStates are the states of the debt lifecycle, each a label value.
var debtStates = []DebtState{DebtNormal, DebtLowBalance, DebtCritical, DebtInDebt, DebtSuspended}

func newLifecycleMetrics(reg prometheus.Registerer) (*lifecycleMetrics, error) {
	m := &lifecycleMetrics{
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tenantplane_billing_debt_transitions_total",
			Help: "Debt lifecycle transitions of orgs, by the state entered.",
		}, []string{"to"}),
		webhookFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tenantplane_billing_webhook_delivery_failures_total",
			Help: "Org webhook deliveries that failed, by what follows: retry, or given_up after the last attempt.",
		}, []string{"next"}),
		holdFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tenantplane_billing_suspension_failures_total",
			Help: "Namespace suspensions (action suspend) and resumes (action resume) of the debt lifecycle and spending limits that failed; the next pass retries them.",
		}, []string{"action"}),
	}
	for _, s := range debtStates {
		m.transitions.WithLabelValues(string(s))
	}
	for _, n := range []string{"retry", "given_up"} {
		m.webhookFailures.WithLabelValues(n)
	}
	for _, a := range []string{"suspend", "resume"} {
		m.holdFailures.WithLabelValues(a)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.transitions, m.webhookFailures, m.holdFailures} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering lifecycle metrics: %w", err)
		}
	}
	return m, nil
}
