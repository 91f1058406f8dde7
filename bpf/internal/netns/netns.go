//go:build linux

// Package netns runs a function inside another network namespace, on an
// OS thread of its own, and leaves every other thread where it was.
//
// It must not be used for long work: the thread is held for the call.
package netns

import (
	"errors"
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// Do runs f on an OS thread that has joined the network namespace at path
// (a file such as /var/run/netns/NAME or /proc/PID/ns/net); an empty path
// runs f on the calling goroutine. Sockets and netlink requests that f
// makes belong to that namespace; file descriptors it opens stay valid
// after it returns.
func Do(path string, f func() error) error {
	if path == "" {
		return f()
	}
	target, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w", path, err)
	}
	defer unix.Close(target)
	done := make(chan error, 1)
	go func() {
		// The thread is unlocked only once it is back in its own
		// namespace; otherwise it ends with this goroutine.
		runtime.LockOSThread()
		self, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			done <- fmt.Errorf("open own network namespace: %w", err)
			return
		}
		defer unix.Close(self)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("enter network namespace %s: %w", path, err)
			return
		}
		ferr := f()
		if err := unix.Setns(self, unix.CLONE_NEWNET); err != nil {
			done <- errors.Join(fmt.Errorf("leave network namespace %s: %w", path, err), ferr)
			return
		}
		runtime.UnlockOSThread()
		done <- ferr
	}()
	return <-done
}
