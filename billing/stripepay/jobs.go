package stripepay

import (
	"context"

	"github.com/tenantplane/tenantplane/billing"
)

// Jobs are reconciliation, automatic top-ups and the push of invoices
// not yet in Stripe, with their schedules. Run them on the leader only.
func (s *Service) Jobs() []billing.Job {
	return []billing.Job{
		{Name: "stripe-reconcile", Schedule: s.cfg.ReconcileSchedule, Run: func(ctx context.Context) error {
			_, err := s.Reconcile(ctx)
			return err
		}},
		{Name: "stripe-auto-topup", Schedule: s.cfg.AutoTopUpSchedule, Run: func(ctx context.Context) error {
			n, err := s.RunAutoTopUps(ctx)
			if n > 0 {
				s.log.Info("automatic top-ups started", "count", n)
			}
			return err
		}},
		{Name: "stripe-invoice-push", Schedule: s.cfg.AutoTopUpSchedule, Run: func(ctx context.Context) error {
			_, err := s.PushPendingInvoices(ctx)
			return err
		}},
	}
}
