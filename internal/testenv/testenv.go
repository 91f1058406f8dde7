package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// Main runs the tests of one package and then stops every peer that they
// started. Use it from TestMain:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	stopAll()
	os.Exit(code)
}

var (
	stopMu sync.Mutex
	stops  []func()
)

// onStop registers f to run when Main finishes, in reverse order of
// registration, so a peer that depends on another stops first.
func onStop(f func()) {
	stopMu.Lock()
	defer stopMu.Unlock()
	stops = append(stops, f)
}

func stopAll() {
	stopMu.Lock()
	fs := stops
	stops = nil
	stopMu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

// InCI reports whether the run is under CI (CI=true), where a missing peer
// is a failure of the run, never a skip.
func InCI() bool { return os.Getenv("CI") == "true" }

// peerFailed fails t because peer could not be started. The message names
// the make target that installs what is missing.
func peerFailed(t testing.TB, peer, makeTarget string, err error) {
	t.Helper()
	if InCI() {
		t.Fatalf("%s is required under CI=true and could not be started: %v", peer, err)
	}
	t.Fatalf("%s could not be started: %v (run `make %s` to install it)", peer, err, makeTarget)
}

// CacheDir is where built tools and other caches live, outside the
// repository: $TENANTPLANE_CACHE, else $XDG_CACHE_HOME/tenantplane, else
// ~/.cache/tenantplane.
func CacheDir() string {
	if d := os.Getenv("TENANTPLANE_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "tenantplane")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "tenantplane-cache")
	}
	return filepath.Join(home, ".cache", "tenantplane")
}

// ToolPath returns the path of a tool built by tools/install.sh, named by
// name and version, e.g. ToolPath("kube-apiserver", "v1.37.2").
func ToolPath(name, version string) string {
	return filepath.Join(CacheDir(), "bin", fmt.Sprintf("%s-%s", name, version), name)
}
