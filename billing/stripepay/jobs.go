package stripepay

import (
	"context"
	"time"

	"github.com/robfig/cron/v3"
)

// RunJobs runs reconciliation, automatic top-ups and the push of
// invoices not yet in Stripe on their schedules
// until ctx is done. Call it on the leader only.
func (s *Service) RunJobs(ctx context.Context) error {
	c := cron.New(cron.WithLocation(time.UTC), cron.WithChain(cron.SkipIfStillRunning(cron.DiscardLogger)))
	if _, err := c.AddFunc(s.cfg.ReconcileSchedule, func() {
		if _, err := s.Reconcile(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("stripe reconciliation", "err", err)
		}
	}); err != nil {
		return err
	}
	if _, err := c.AddFunc(s.cfg.AutoTopUpSchedule, func() {
		n, err := s.RunAutoTopUps(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.Warn("automatic top-ups", "err", err)
		}
		if n > 0 {
			s.log.Info("automatic top-ups started", "count", n)
		}
	}); err != nil {
		return err
	}
	if _, err := c.AddFunc(s.cfg.AutoTopUpSchedule, func() {
		if _, err := s.PushPendingInvoices(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("pushing invoices to stripe", "err", err)
		}
	}); err != nil {
		return err
	}
	c.Start()
	<-ctx.Done()
	<-c.Stop().Done()
	return nil
}
