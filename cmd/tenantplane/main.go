// Command tenantplane is the Tenantplane control plane: the API server, the
// reconcilers, the collectors, the billing engine and the node agent, chosen
// by subcommand.
package main

import (
	"os"

	"github.com/tenantplane/tenantplane/server"
)

func main() {
	os.Exit(server.Main(os.Args[1:]))
}
