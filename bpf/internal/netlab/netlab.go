//go:build linux

// Package netlab builds what the meter's tests run traffic through: network
// namespaces, veth pairs between them, nftables counters as a reference,
// and bpffs mounts. Everything it creates is removed when the test ends,
// failed or not, and what a killed test process left behind is removed by
// the next one.
//
// It is for tests only: it fails the test on any error, and never touches
// the network namespace it runs in beyond creating and removing named
// namespaces and bpffs mounts of its own.
package netlab

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tenantplane/tenantplane/bpf/internal/netns"
)

// Tools are the programs the lab runs.
var Tools = []string{"ip", "nft", "ethtool"}

// Require fails t unless it runs as root with the lab's programs
// installed: the meter's tests need CAP_BPF and CAP_NET_ADMIN, and a run
// that cannot have them must not pass quietly.
func Require(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("the eBPF meter tests need root (CAP_BPF, CAP_NET_ADMIN, network namespaces); run them as root (CI=%q)", os.Getenv("CI"))
	}
	for _, tool := range Tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: run `make deps` (%v)", tool, err)
		}
	}
}

var (
	seq       atomic.Int64
	sweepOnce sync.Once
)

// Lab names what one test creates: namespaces are "tpm<pid>-<n>-<name>".
type Lab struct {
	t      testing.TB
	prefix string
}

// New returns a lab for t, after removing what dead test processes left.
func New(t testing.TB) *Lab {
	t.Helper()
	Require(t)
	sweepOnce.Do(sweep)
	return &Lab{t: t, prefix: fmt.Sprintf("tpm%d-%d", os.Getpid(), seq.Add(1))}
}

var leftover = regexp.MustCompile(`^tpm(\d+)-`)

// sweep removes the namespaces and bpffs mounts of test processes that
// no longer run.
func sweep() {
	dead := func(name string) bool {
		m := leftover.FindStringSubmatch(name)
		if m == nil {
			return false
		}
		pid, _ := strconv.Atoi(m[1])
		_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
		return pid != os.Getpid() && os.IsNotExist(err)
	}
	if entries, err := os.ReadDir("/var/run/netns"); err == nil {
		for _, e := range entries {
			if dead(e.Name()) {
				_ = exec.Command("ip", "netns", "del", e.Name()).Run()
			}
		}
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(mounts), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || !strings.Contains(line, " - bpf ") {
			continue
		}
		if dir := f[4]; dead(filepath.Base(dir)) {
			_ = unix.Unmount(dir, unix.MNT_DETACH)
			_ = os.Remove(dir)
		}
	}
}

// NS is a network namespace of the lab.
type NS struct {
	lab  *Lab
	Name string
}

// NS creates a network namespace with its loopback up.
func (l *Lab) NS(short string) *NS {
	l.t.Helper()
	n := &NS{lab: l, Name: l.prefix + "-" + short}
	run(l.t, nil, "ip", "netns", "add", n.Name)
	l.t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput(); err != nil {
			l.t.Errorf("remove network namespace %s: %v: %s", n.Name, err, out)
		}
	})
	n.Exec("ip", "link", "set", "lo", "up")
	return n
}

// Path is the namespace's file, for netns.Do or an agent's configuration.
func (n *NS) Path() string { return "/var/run/netns/" + n.Name }

// Exec runs a program inside the namespace and returns its standard
// output; it fails the test when the program fails.
func (n *NS) Exec(args ...string) string {
	n.lab.t.Helper()
	return run(n.lab.t, nil, append([]string{"ip", "netns", "exec", n.Name}, args...)...)
}

// ExecInput is Exec with stdin.
func (n *NS) ExecInput(stdin string, args ...string) string {
	n.lab.t.Helper()
	return run(n.lab.t, strings.NewReader(stdin), append([]string{"ip", "netns", "exec", n.Name}, args...)...)
}

// Start starts a program inside the namespace; it is killed when the test
// ends.
func (n *NS) Start(args ...string) *exec.Cmd {
	n.lab.t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.Name}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		n.lab.t.Fatalf("start %v in %s: %v", args, n.Name, err)
	}
	n.lab.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

// Do runs f on a thread inside the namespace (see netns.Do).
func (n *NS) Do(f func() error) {
	n.lab.t.Helper()
	if err := netns.Do(n.Path(), f); err != nil {
		n.lab.t.Fatalf("in %s: %v", n.Name, err)
	}
}

// Veth creates a veth pair, aName in a and bName in b, both up.
func (l *Lab) Veth(a *NS, aName string, b *NS, bName string) { l.VethAt(0, a, aName, b, bName) }

// VethAt is Veth with the interface index of aName set (0 lets the kernel
// choose), as when an index is reused.
func (l *Lab) VethAt(index int, a *NS, aName string, b *NS, bName string) {
	l.t.Helper()
	args := []string{"ip", "link", "add", aName}
	if index > 0 {
		args = append(args, "index", strconv.Itoa(index))
	}
	args = append(args, "netns", a.Name, "type", "veth", "peer", "name", bName, "netns", b.Name)
	run(l.t, nil, args...)
	a.Exec("ip", "link", "set", aName, "up")
	b.Exec("ip", "link", "set", bName, "up")
}

// NoOffload turns TSO and GSO off on dev, so that what it sends is
// segmented on the way out and the peer receives one skb per segment.
func (n *NS) NoOffload(dev string) {
	n.lab.t.Helper()
	n.Exec("ethtool", "-K", dev, "tso", "off", "gso", "off")
}

// Ifindex returns the index of dev inside the namespace.
func (n *NS) Ifindex(dev string) int {
	n.lab.t.Helper()
	var i int
	n.Do(func() error {
		ifc, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		i = ifc.Index
		return nil
	})
	return i
}

// Sysctl sets a sysctl of the namespace, such as net.ipv4.ip_forward.
func (n *NS) Sysctl(key, value string) {
	n.lab.t.Helper()
	n.Do(func() error {
		return os.WriteFile("/proc/sys/"+strings.ReplaceAll(key, ".", "/"), []byte(value), 0o644)
	})
}

// Counter is one named nftables counter.
type Counter struct {
	Packets uint64
	Bytes   uint64
}

// NFT loads an nftables ruleset into the namespace.
func (n *NS) NFT(ruleset string) {
	n.lab.t.Helper()
	n.ExecInput(ruleset, "nft", "-f", "-")
}

// Counters returns the named counters of an inet table.
func (n *NS) Counters(table string) map[string]Counter {
	n.lab.t.Helper()
	out := n.Exec("nft", "-j", "list", "counters", "table", "inet", table)
	var doc struct {
		Nftables []struct {
			Counter *struct {
				Name    string `json:"name"`
				Packets uint64 `json:"packets"`
				Bytes   uint64 `json:"bytes"`
			} `json:"counter"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		n.lab.t.Fatalf("parse nft counters: %v: %s", err, out)
	}
	res := map[string]Counter{}
	for _, o := range doc.Nftables {
		if o.Counter != nil {
			res[o.Counter.Name] = Counter{Packets: o.Counter.Packets, Bytes: o.Counter.Bytes}
		}
	}
	return res
}

// BPFFS mounts a bpffs instance of its own on a new folder and returns the
// folder; it is unmounted, dropping every pin in it, when the test ends.
func BPFFS(t testing.TB) string {
	t.Helper()
	Require(t)
	sweepOnce.Do(sweep)
	dir, err := os.MkdirTemp("", fmt.Sprintf("tpm%d-bpffs-", os.Getpid()))
	if err != nil {
		t.Fatalf("bpffs folder: %v", err)
	}
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		_ = os.Remove(dir)
		t.Fatalf("mount bpffs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount bpffs %s: %v", dir, err)
		}
		_ = os.Remove(dir)
	})
	return dir
}

// Eventually polls f every 20 ms until it returns nil or timeout passes,
// then fails t with f's last error.
func Eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func run(t testing.TB, stdin *strings.Reader, args ...string) string {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	if stdin != nil {
		cmd.Stdin = stdin
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v: %s%s", strings.Join(args, " "), err, errOut.String(), out.String())
	}
	return out.String()
}
