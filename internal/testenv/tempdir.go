package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ownerFile names the file in a peer's temporary folder that holds the
// process id of the program that made it.
const ownerFile = "owner.pid"

// makePeerDir creates a temporary folder for a peer, named prefix*, and
// records this process as its owner. It first removes the folders of the
// same prefix whose owner is gone: a test binary that crashed or hit its
// timeout had its peers killed (Pdeathsig) but could not remove their files.
func makePeerDir(prefix string) (string, error) {
	sweepPeerDirs(prefix)
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", fmt.Errorf("create temporary folder: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		_ = os.RemoveAll(dir)
		return "", fmt.Errorf("record owner of %s: %w", dir, err)
	}
	return dir, nil
}

// sweepPeerDirs removes the folders prefix* whose owner process is gone.
// Folders younger than a minute are left alone, in case their owner has not
// written its id yet.
func sweepPeerDirs(prefix string) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), prefix+"*"))
	for _, dir := range dirs {
		info, err := os.Stat(dir)
		if err != nil || !info.IsDir() || time.Since(info.ModTime()) < time.Minute {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue // not ours to judge
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(dir)
		}
	}
}
