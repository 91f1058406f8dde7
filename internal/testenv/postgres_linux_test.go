package testenv_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/internal/testenv"
)

// TestPostgresDiesWithItsTestBinary runs this test binary again to start
// a cluster and print its postmaster's pid, kills that binary as a
// timeout or a closed pipe would, and expects the postmaster gone with
// it: nothing is left running for the next run to trip over.
func TestPostgresDiesWithItsTestBinary(t *testing.T) {
	if os.Getenv("TENANTPLANE_HOLD_POSTGRES") == "1" {
		c, err := testenv.StartPostgres(context.Background())
		require.NoError(t, err)
		fmt.Println("postmaster", c.PID())
		time.Sleep(time.Minute)
		return
	}
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run", "^TestPostgresDiesWithItsTestBinary$", "-test.v")
	cmd.Env = append(os.Environ(), "TENANTPLANE_HOLD_POSTGRES=1")
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	var pid int
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if _, err := fmt.Sscanf(sc.Text(), "postmaster %d", &pid); err == nil {
			break
		}
	}
	require.NotZero(t, pid, "the helper printed no postmaster")
	require.NoError(t, syscall.Kill(pid, 0), "the postmaster runs")
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	require.Eventually(t, func() bool { return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) }, 10*time.Second, 20*time.Millisecond,
		"the postmaster outlived its test binary")
}
