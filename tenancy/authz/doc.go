// Package authz answers whether a user may perform an action in a domain
// (a namespace, an org or the platform). It wraps a Casbin enforcer whose
// model and permission lines come from package schema and whose role
// assignments are derived from the membership tables through a Casbin
// adapter (package authzstore), kept current one (user, domain) at a time.
//
// It holds no SQL and never imports pgx: storage is reached only through
// the adapter handed to New.
package authz
