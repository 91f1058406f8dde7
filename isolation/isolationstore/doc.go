// Package isolationstore is isolation.Store on Postgres: it reads tenant
// namespaces with their plans, members and host claims, drains the outbox
// the tenancy service writes (FOR UPDATE SKIP LOCKED, leases, attempts and
// last errors) and keeps host claims with their audit and outbox rows.
//
// It is the only place in isolation that speaks SQL, and it holds no
// rules: what is valid is decided in package isolation.
package isolationstore
