package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/robfig/cron/v3"
	"k8s.io/client-go/kubernetes"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/internal/leader"
)

// billingLease is the Lease whose holder runs every billing job.
const billingLease = "tenantplane-billing"

// billingSchedule runs every billing job on one cron scheduler, on the
// one replica that holds the billing Lease. A job never overlaps itself:
// a run due while the last one is still going is skipped.
type billingSchedule struct {
	jobs   []billing.Job
	scheds []cron.Schedule
	log    *slog.Logger
	m      *billingJobMetrics
}

// billingJobMetrics count the runs of each job and how long they take.
type billingJobMetrics struct {
	runs     *prometheus.CounterVec
	duration *prometheus.HistogramVec
	leading  prometheus.Gauge
}

// Outcomes of a job run, the "result" label of its counter.
const (
	jobOK       = "ok"
	jobFailed   = "error"
	jobCanceled = "canceled"
)

func newBillingJobMetrics(reg prometheus.Registerer) (*billingJobMetrics, error) {
	m := &billingJobMetrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tenantplane_billing_job_runs_total",
			Help: "Runs of each billing job by result: ok, error, or canceled when leadership was lost mid-run.",
		}, []string{"job", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tenantplane_billing_job_duration_seconds",
			Help:    "Time each billing job run took.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 10), // 10ms .. ~45min
		}, []string{"job"}),
		leading: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tenantplane_billing_leader",
			Help: "1 while this replica holds the billing Lease and runs the billing jobs.",
		}),
	}
	for _, c := range []prometheus.Collector{m.runs, m.duration, m.leading} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering billing job metrics: %w", err)
		}
	}
	return m, nil
}

// newBillingSchedule checks the jobs (a unique name each, a valid
// schedule, a function) and registers the jobs' metrics with reg.
func newBillingSchedule(log *slog.Logger, reg prometheus.Registerer, jobs ...billing.Job) (*billingSchedule, error) {
	if log == nil || reg == nil {
		return nil, errors.New("billing schedule: a logger and a registerer are required")
	}
	s := &billingSchedule{jobs: jobs, log: log.With("component", "billing-schedule")}
	seen := map[string]bool{}
	for _, j := range jobs {
		if j.Name == "" || j.Run == nil || seen[j.Name] {
			return nil, fmt.Errorf("billing schedule: job %q needs a unique name and a function", j.Name)
		}
		seen[j.Name] = true
		sched, err := cron.ParseStandard(j.Schedule)
		if err != nil {
			return nil, fmt.Errorf("billing schedule: job %s: %w", j.Name, err)
		}
		s.scheds = append(s.scheds, sched)
	}
	var err error
	if s.m, err = newBillingJobMetrics(reg); err != nil {
		return nil, err
	}
	for _, j := range jobs {
		for _, r := range []string{jobOK, jobFailed, jobCanceled} {
			s.m.runs.WithLabelValues(j.Name, r)
		}
	}
	return s, nil
}

// run takes part in the election for lease (the billing Lease in
// production) until ctx ends; the leader runs the jobs.
func (s *billingSchedule) run(kube kubernetes.Interface, lease leader.Config) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := leader.Run(ctx, kube, lease, s.log, s.lead); err != nil && ctx.Err() == nil {
			return fmt.Errorf("billing schedule: %w", err)
		}
		return nil
	}
}

// lead runs the jobs on their schedules until ctx ends (leadership lost
// or shutdown), then waits for the runs under way to return.
func (s *billingSchedule) lead(ctx context.Context) error {
	s.m.leading.Set(1)
	defer s.m.leading.Set(0)
	logger := cronLogger{s.log}
	c := cron.New(cron.WithLocation(time.UTC), cron.WithLogger(logger))
	chain := cron.NewChain(cron.Recover(logger), cron.SkipIfStillRunning(logger))
	var first sync.WaitGroup
	for i, j := range s.jobs {
		job := chain.Then(cron.FuncJob(func() { s.runJob(ctx, j) }))
		c.Schedule(s.scheds[i], job)
		if j.AtStart {
			first.Go(job.Run)
		}
	}
	s.log.Info("billing jobs scheduled", "jobs", len(s.jobs))
	c.Start()
	<-ctx.Done()
	<-c.Stop().Done()
	first.Wait()
	return nil
}

// runJob runs j once, logs it and counts it.
func (s *billingSchedule) runJob(ctx context.Context, j billing.Job) {
	log := s.log.With("job", j.Name)
	start := time.Now()
	err := j.Run(ctx)
	took := time.Since(start)
	s.m.duration.WithLabelValues(j.Name).Observe(took.Seconds())
	switch {
	case err != nil && ctx.Err() != nil:
		s.m.runs.WithLabelValues(j.Name, jobCanceled).Inc()
		log.Info("billing job stopped: no longer leading", "took", took, "err", err)
	case err != nil:
		s.m.runs.WithLabelValues(j.Name, jobFailed).Inc()
		log.Error("billing job failed", "took", took, "err", err)
	default:
		s.m.runs.WithLabelValues(j.Name, jobOK).Inc()
		log.Debug("billing job done", "took", took)
	}
}

// cronLogger hands cron's own messages (skipped runs, recovered panics)
// to slog.
type cronLogger struct{ log *slog.Logger }

func (l cronLogger) Info(msg string, kv ...any) { l.log.Debug("cron: "+msg, kv...) }
func (l cronLogger) Error(err error, msg string, kv ...any) {
	l.log.Error("cron: "+msg, append([]any{"err", err}, kv...)...)
}
