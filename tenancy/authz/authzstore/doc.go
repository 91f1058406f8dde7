// Package authzstore is the Postgres side of authorization: a Casbin
// adapter over pgx/v5 that derives role assignments (g lines) from the
// membership tables and takes permission lines (p lines) from the embedded
// policy file, and a listener that keeps an authz.Authorizer current from
// the notifications the membership tables' triggers send.
//
// The adapter is read only: the membership tables are changed by the
// tenancy store, never through Casbin.
package authzstore
