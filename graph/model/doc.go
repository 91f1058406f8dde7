// Package model holds the Go types of the GraphQL schema: the object types
// written here, which carry the IDs their field resolvers follow, and the
// enums, inputs and connections gqlgen generates into models_gen.go.
//
// It holds data only: no resolvers, no storage, no pgx.
package model
