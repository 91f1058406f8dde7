// Package dbmigrate applies the embedded SQL migrations of package schema to
// a PostgreSQL database, up, down or to report their status.
//
// It uses golang-migrate with its pgx/v5 driver, which holds a Postgres
// advisory lock for the whole run, so replicas that start together apply
// each migration once and never race. It is the only code that runs
// migration SQL; it knows nothing of the tables themselves.
package dbmigrate
