package main

import (
	"os"

	"github.com/tenantplane/tenantplane/server"
)

func main() {
	os.Exit(server.Main(os.Args[1:]))
}
