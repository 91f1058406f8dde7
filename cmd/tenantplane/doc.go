// Command tenantplane is the Tenantplane control plane: the API server, the
// reconcilers, the collectors, the billing engine and the node agent, chosen
// by subcommand. It only calls package server, where everything is wired.
package main
