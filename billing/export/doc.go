// Package export streams billing data out for finance teams: usage
// rollups, rated charges, invoices, ledger entries and balances, as CSV
// (RFC 4180) or JSON Lines, optionally gzip-compressed, over HTTP
// (GET /admin/exports/{kind}, platform admins only) and from the command
// line.
//
// It validates and bounds the filters, chooses the encoding and
// compression, and authorizes HTTP callers; the rows themselves come from
// a Store, which reads them from one consistent snapshot and records every
// export in the audit log. It must not import pgx (billingstore holds the
// SQL), hold rows in memory, or write anything but the audit entry.
package export
