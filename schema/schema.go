package schema

import (
	"embed"
)

// Migrations holds the numbered SQL migrations, migrations/NNN_name.up.sql
// and migrations/NNN_name.down.sql, applied in order by package dbmigrate.
//
//go:embed migrations/*.sql
var Migrations embed.FS

// CasbinModel is the Casbin model: RBAC with domains, where a request is
// (subject, domain, object type, action).
//
//go:embed casbin/model.conf
var CasbinModel []byte

// CasbinPolicy holds the permission lines of every role (p, role, object
// type, action), one per line in Casbin's CSV form. Role assignments (g
// lines) are not here: they come from the membership tables.
//
//go:embed casbin/policy.csv
var CasbinPolicy []byte

// GraphQL holds the GraphQL SDL, graphql/*.graphqls, which gqlgen compiles
// into package graph/generated.
//
//go:embed graphql/*.graphqls
var GraphQL embed.FS
