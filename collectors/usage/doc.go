// Package usage holds the domain of metered usage: the integer per-minute
// Sample, the resources and their units, the Store interface that the
// collectors write and billing reads, and the query functions behind the
// usage and orgUsage API fields.
//
// It must not import pgx (the usagestore subpackage is the only place with
// SQL), client-go, or billing: the usage store is the boundary between the
// collectors and billing, and billing only reads it.
package usage
