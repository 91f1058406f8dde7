package stripepay

import "context"

// RemotePayment and RemoteEvent let tests hand reconciliation what Stripe
// would list.
type (
	RemotePayment = remotePayment
	RemoteEvent   = remoteEvent
)

// ReconcileLists runs reconciliation over the given lists instead of
// Stripe's.
func (s *Service) ReconcileLists(ctx context.Context, payments []RemotePayment, events []RemoteEvent) (Reconciliation, error) {
	now := s.now()
	return s.reconcile(ctx, now, now.Add(-s.cfg.ReconcileWindow), payments, events)
}

// Supersedes exposes supersedes to the table tests.
var Supersedes = supersedes

// InvoiceItemAmounts returns the keys and amounts of the items an invoice
// is pushed as.
var InvoiceItemAmounts = invoiceItems

// ItemKey and ItemMinor read an invoice item.
func ItemKey(i invoiceItem) string  { return i.key }
func ItemMinor(i invoiceItem) int64 { return i.minor }
