// Package tenancy holds the identity and tenancy domain: users, orgs,
// namespaces, memberships, invitations, sessions and API tokens, their
// validation rules and errors with stable codes.
//
// The domain types and rules here never touch SQL; the tenancystore
// subpackage is the only place that speaks to Postgres.
package tenancy
