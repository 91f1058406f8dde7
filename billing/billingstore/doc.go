// Package billingstore keeps billing's data in Postgres: the ledger,
// balances and credit grants, and the tables of rating, invoices, the debt
// lifecycle, Stripe and exports. It is the only billing package that
// speaks SQL; it holds no pricing or lifecycle rules of its own beyond the
// invariants of money: a balance row always equals the sum of its entries,
// and a reference is posted once.
package billingstore
