// Package stripepay takes payments through Stripe: a Stripe customer per
// org, top-ups through Checkout and automatic top-ups with a saved payment
// method, postpaid invoices pushed to Stripe, the webhook that tells us
// what was paid, refunded or disputed, and a reconciliation of Stripe's
// payments and events against the ledger.
//
// Every money movement goes through the ledger's posting in the same
// transaction as the event that caused it, with a reference derived from
// the Stripe object, so that a retried, duplicated or reordered webhook
// never moves money twice. This package holds the rules; billingstore
// holds the SQL. It must not import pgx, isolation or the store, and it
// never reads the clock itself: time comes from the injected clock.
package stripepay
