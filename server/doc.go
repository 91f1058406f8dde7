// Package server is the composition root of tenantplane: configuration,
// wiring of stores, services and reconcilers, HTTP routes, middleware,
// leader election, graceful shutdown and the command-line subcommands.
//
// Everything may be imported here; nothing imports server.
package server
