// Package billing rates metered usage into charges and keeps the money:
// price books, rating, the ledger and balances, invoices, the debt
// lifecycle, Stripe payments and webhooks, and admin exports.
//
// Money is int64 micro-units of a currency. Billing reads the usage store of
// collectors but never imports isolation: it suspends tenants through the
// Suspender interface that server wires.
package billing
