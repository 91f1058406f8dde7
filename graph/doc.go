// Package graph is the GraphQL API for frontends: the gqlgen schema
// bindings (generated, committed), the resolvers, per-request dataloaders,
// the @auth directive that asks the authorizer before every field, and the
// one error presenter that maps domain errors to extensions.code.
//
// It calls the domain packages only; it never imports pgx or client-go.
package graph
