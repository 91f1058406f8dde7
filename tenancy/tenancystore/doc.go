// Package tenancystore implements tenancy.Store on PostgreSQL with pgx: the
// only package of the tenancy domain that speaks SQL. Each query is a short
// named constant next to the method that runs it; storage errors become
// errcode errors here (no rows → NOT_FOUND, unique violation → CONFLICT).
// TokenFeed listens for the notifications of migration 015 and keeps a
// tenancy.TokenCache current.
//
// It holds no business rules: it never decides who may do what.
package tenancystore
