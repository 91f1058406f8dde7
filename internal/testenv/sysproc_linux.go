package testenv

import (
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

// sysProcAttr puts a started program in its own process group, so stopping
// it also stops its children, and has Linux kill it if the thread that
// started it dies, so a crashed test binary leaves nothing running.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

type startRequest struct {
	cmd  *exec.Cmd
	done chan error
}

// starter is a goroutine locked to its own OS thread that never exits. Linux
// sends Pdeathsig when the starting thread ends, not the process, and the Go
// runtime may end threads, so every start goes through this one.
var starter = sync.OnceValue(func() chan<- startRequest {
	ch := make(chan startRequest)
	go func() {
		runtime.LockOSThread()
		for r := range ch {
			r.done <- r.cmd.Start()
		}
	}()
	return ch
})

// startCmd starts cmd from the starter thread.
func startCmd(cmd *exec.Cmd) error {
	done := make(chan error, 1)
	starter() <- startRequest{cmd: cmd, done: done}
	return <-done
}
