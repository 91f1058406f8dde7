//go:build !linux

package testenv

import (
	"os/exec"
	"syscall"
)

// sysProcAttr puts a started program in its own process group, so stopping
// it also stops its children.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// startCmd starts cmd.
func startCmd(cmd *exec.Cmd) error { return cmd.Start() }
