package testenv

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestSweepPeerDirsRemovesOnlyOrphans(t *testing.T) {
	t.Parallel()
	prefix := "tenantplane-sweeptest-"
	old := time.Now().Add(-time.Hour)
	mk := func(pid string, age time.Time) string {
		dir, err := os.MkdirTemp("", prefix)
		require.NoError(t, err)
		t.Cleanup(func() { _ = os.RemoveAll(dir) })
		if pid != "" {
			require.NoError(t, os.WriteFile(filepath.Join(dir, ownerFile), []byte(pid), 0o600))
		}
		require.NoError(t, os.Chtimes(dir, age, age))
		return dir
	}
	orphan := mk("2147483646", old) // no such process
	live := mk("1", old)            // init lives
	young := mk("2147483646", time.Now())
	foreign := mk("", old)

	sweepPeerDirs(prefix)

	require.NoDirExists(t, orphan)
	require.DirExists(t, live)
	require.DirExists(t, young)
	require.DirExists(t, foreign)
}
