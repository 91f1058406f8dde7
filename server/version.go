package server

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version is the release of this build, set at link time with
// -ldflags "-X github.com/tenantplane/tenantplane/server.Version=v1.2.3".
var Version = "dev"

// BuildInfo describes this binary: its release, the commit it was built
// from when known, and the Go version.
func BuildInfo() string {
	commit := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				commit = s.Value
			}
		}
	}
	return fmt.Sprintf("tenantplane %s (commit %s, %s %s/%s)", Version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
