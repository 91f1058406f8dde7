package schema

import "embed"

// Migrations holds the numbered SQL migrations, migrations/NNN_name.up.sql
// and migrations/NNN_name.down.sql, applied in order by package dbmigrate.
//
//go:embed migrations/*.sql
var Migrations embed.FS
