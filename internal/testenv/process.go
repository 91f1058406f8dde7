package testenv

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// process is one external program that a harness started: in its own process
// group, so that Stop also ends whatever it started, with its stdout and
// stderr in a log file.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	log     *os.File
	done    chan struct{} // closed when the process has exited
	err     error         // how it exited; read only after done is closed

	stopOnce sync.Once
}

// startProcess starts bin with args, writing its output to dir/name.log.
// stdout, if not nil, also sees everything the process writes to stdout.
func startProcess(name, bin string, args []string, dir string, env []string, stdout io.Writer) (*process, error) {
	return startProcessAs(name, bin, args, dir, env, stdout, nil)
}

// startProcessAs is startProcess as another user (cred; nil: this one).
func startProcessAs(name, bin string, args []string, dir string, env []string, stdout io.Writer, cred *syscall.Credential) (*process, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%s is not installed (run tools/install.sh): %w", name, err)
	}
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open log of %s: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = logFile
	if stdout != nil {
		cmd.Stdout = io.MultiWriter(logFile, stdout)
	}
	cmd.Stderr = logFile
	cmd.SysProcAttr = sysProcAttr()
	cmd.SysProcAttr.Credential = cred
	if err := startCmd(cmd); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, log: logFile, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// failure describes why the process is not usable: how it exited, if it did,
// and the tail of its log.
func (p *process) failure() string {
	state := "is still running"
	if p.exited() {
		state = fmt.Sprintf("exited (%v)", p.err)
	}
	return fmt.Sprintf("%s %s; last lines of %s:\n%s", p.name, state, p.logPath, tail(p.logPath, 30))
}

// stop ends the process group: SIGTERM first, so programs may shut down
// cleanly, and SIGKILL after grace.
func (p *process) stop(grace time.Duration) {
	p.stopOnce.Do(func() {
		pgid := p.cmd.Process.Pid
		if p.exited() {
			// The leader is gone; children it left in its group may not be.
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			return
		}
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
		}
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	})
}

// stillRunning describes those of procs that have not exited, with the tail
// of their logs, for an error about a wait that ran out: an exited process
// already explains itself.
func stillRunning(procs ...*process) string {
	var b strings.Builder
	for _, p := range procs {
		if !p.exited() {
			b.WriteString("\n")
			b.WriteString(p.failure())
		}
	}
	return b.String()
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	b = bytes.TrimRight(b, "\n")
	lines := bytes.Split(b, []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + string(bytes.Join(lines, []byte("\n  ")))
}

// freePorts returns n distinct TCP ports on 127.0.0.1 that were free a
// moment ago. Another program can take one before ours binds it; the
// harnesses retry a start whose log says so (see addrInUse).
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// addrInUse reports whether the log of p says a port it was given was taken.
func addrInUse(p *process) bool {
	b, _ := os.ReadFile(p.logPath)
	return bytes.Contains(b, []byte("address already in use"))
}

// poll calls f every interval until it returns true, and fails when ctx
// ends or one of procs exits, saying what it waited for and why it gave up:
// the log of the process that exited, or f's last error and the logs of
// procs. An error from f only means "not yet". Each call of f gets at most
// probeTimeout, so a port that accepts and never answers cannot stall it.
func poll(ctx context.Context, what string, interval time.Duration, procs []*process, f func(context.Context) (bool, error)) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	// anyExited closes when one of procs exits, which also ends a probe
	// under way.
	anyExited := make(chan struct{})
	var once sync.Once
	pollDone := make(chan struct{})
	defer close(pollDone)
	for _, p := range procs {
		go func() {
			select {
			case <-p.done:
				once.Do(func() { close(anyExited) })
			case <-pollDone:
			}
		}()
	}
	var last error
	for {
		for _, p := range procs {
			if p.exited() {
				return fmt.Errorf("wait for %s: %s", what, p.failure())
			}
		}
		fctx, cancel := context.WithTimeout(ctx, probeTimeout)
		go func() {
			select {
			case <-anyExited:
				cancel()
			case <-fctx.Done():
			}
		}()
		ok, err := f(fctx)
		cancel()
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			err := ctx.Err()
			if last != nil {
				err = fmt.Errorf("%w (last: %w)", err, last)
			}
			return fmt.Errorf("wait for %s: %w%s", what, err, stillRunning(procs...))
		case <-anyExited:
		case <-t.C:
		}
	}
}

// probeTimeout bounds one readiness probe of poll.
const probeTimeout = 2 * time.Second

func itoa(i int) string { return strconv.Itoa(i) }
