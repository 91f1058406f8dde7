//go:build linux

package bpf

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf/link"
	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/bpf/internal/netlab"
)

// attachSetup is a pod namespace with 192.0.2.10 joined by a veth to a node
// namespace with 192.0.2.1 on the host side "vh", and a UDP socket of the
// pod connected to a listener of the node.
type attachSetup struct {
	node, pod *netlab.NS
	ifindex   int
	conn      net.Conn
}

func newAttachSetup(t *testing.T) *attachSetup {
	t.Helper()
	lab := netlab.New(t)
	s := &attachSetup{node: lab.NS("node"), pod: lab.NS("pod")}
	lab.Veth(s.node, "vh", s.pod, "eth0")
	s.node.Exec("ip", "addr", "add", "192.0.2.1/24", "dev", "vh")
	s.pod.Exec("ip", "addr", "add", "192.0.2.10/24", "dev", "eth0")
	s.ifindex = s.node.Ifindex("vh")
	var ln net.PacketConn
	s.node.Do(func() (err error) {
		ln, err = net.ListenPacket("udp4", "192.0.2.1:9999")
		return err
	})
	t.Cleanup(func() { _ = ln.Close() })
	s.pod.Do(func() (err error) {
		s.conn, err = net.Dial("udp4", "192.0.2.1:9999")
		return err
	})
	t.Cleanup(func() { _ = s.conn.Close() })
	return s
}

// send sends n datagrams of 100 bytes (128 IP bytes each).
func (s *attachSetup) send(t *testing.T, n int) {
	t.Helper()
	for range n {
		_, err := s.conn.Write(make([]byte, 100))
		require.NoError(t, err)
	}
}

func (s *attachSetup) programs(t *testing.T, d Direction) []link.AttachedProgram {
	t.Helper()
	var res *link.QueryResult
	s.node.Do(func() (err error) {
		res, err = link.QueryPrograms(link.QueryOptions{Target: s.ifindex, Attach: attachType(d)})
		return err
	})
	return res.Programs
}

func egressBytes(t *testing.T, m *Meter) uint64 {
	t.Helper()
	return snapshot(t, m)[counterKey{endpointA, Egress, ClassInternet}].bytes
}

func TestPinnedLinksKeepCountingAcrossRestarts(t *testing.T) {
	t.Parallel()
	s := newAttachSetup(t)
	pins := netlab.BPFFS(t)

	m1, err := Load(Config{PinPath: pins})
	require.NoError(t, err)
	require.NoError(t, m1.SetEndpoint(podA, endpointA))
	s.node.Do(func() error { return m1.Attach(s.ifindex) })
	s.send(t, 3)
	require.Equal(t, uint64(3*128), egressBytes(t, m1))

	// The process ends: the pinned link goes on counting into the pinned
	// maps.
	require.NoError(t, m1.Close())
	s.send(t, 2)

	m2, err := Load(Config{PinPath: pins})
	require.NoError(t, err)
	t.Cleanup(func() { _ = m2.Close() })
	require.Equal(t, uint64(5*128), egressBytes(t, m2))

	// Attaching again reuses the pinned link and moves it to the new
	// program: one program per direction, never two.
	s.node.Do(func() error { return m2.Attach(s.ifindex) })
	for d, id := range m2.ids {
		progs := s.programs(t, Direction(d))
		require.Len(t, progs, 1)
		require.Equal(t, id, progs[0].ID)
	}
	s.send(t, 1)
	require.Equal(t, uint64(6*128), egressBytes(t, m2))
	ifs, err := m2.Attached()
	require.NoError(t, err)
	require.Equal(t, []int{s.ifindex}, ifs)

	require.NoError(t, m2.Detach(s.ifindex))
	require.Empty(t, s.programs(t, Egress))
	require.Empty(t, s.programs(t, Ingress))
	s.send(t, 1)
	require.Equal(t, uint64(6*128), egressBytes(t, m2))
	ifs, err = m2.Attached()
	require.NoError(t, err)
	require.Empty(t, ifs)
}

func TestDetachAfterTheInterfaceIsGone(t *testing.T) {
	t.Parallel()
	s := newAttachSetup(t)
	pins := filepath.Join(netlab.BPFFS(t), "meter")
	m, err := Load(Config{PinPath: pins})
	require.NoError(t, err)
	s.node.Do(func() error { return m.Attach(s.ifindex) })
	require.NoError(t, m.Close())

	s.node.Exec("ip", "link", "del", "vh")
	m, err = Load(Config{PinPath: pins})
	require.NoError(t, err)
	ifs, err := m.Attached()
	require.NoError(t, err)
	require.Equal(t, []int{s.ifindex}, ifs, "the pins outlive the interface")
	require.NoError(t, m.Detach(s.ifindex))
	ifs, err = m.Attached()
	require.NoError(t, err)
	require.Empty(t, ifs)

	require.NoError(t, m.Remove())
	_, err = os.Stat(pins)
	require.ErrorIs(t, err, os.ErrNotExist, "Remove leaves no pin")
}

func TestAttachReplacesALinkWhoseInterfaceIsGone(t *testing.T) {
	t.Parallel()
	s := newAttachSetup(t)
	pins := netlab.BPFFS(t)
	m, err := Load(Config{PinPath: pins})
	require.NoError(t, err)
	s.node.Do(func() error { return m.Attach(s.ifindex) })
	require.NoError(t, m.Close())

	// The veth goes, and a new one comes with the same index, as when an
	// index is reused: the old pin must not stand for the new interface.
	s.node.Exec("ip", "link", "del", "vh")
	lab := netlab.New(t)
	pod2 := lab.NS("pod2")
	lab.VethAt(s.ifindex, s.node, "vh", pod2, "eth0")
	require.Equal(t, s.ifindex, s.node.Ifindex("vh"))
	s.node.Exec("ip", "addr", "add", "192.0.2.1/24", "dev", "vh")
	pod2.Exec("ip", "addr", "add", "192.0.2.10/24", "dev", "eth0")
	s.pod = pod2
	s.pod.Do(func() (err error) {
		s.conn, err = net.Dial("udp4", "192.0.2.1:9999")
		return err
	})
	t.Cleanup(func() { _ = s.conn.Close() })

	m, err = Load(Config{PinPath: pins})
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	require.NoError(t, m.SetEndpoint(podA, endpointA))
	s.send(t, 1)
	require.Zero(t, egressBytes(t, m), "nothing is attached to the new interface yet")
	s.node.Do(func() error { return m.Attach(s.ifindex) })
	require.Len(t, s.programs(t, Egress), 1)
	require.Len(t, s.programs(t, Ingress), 1)
	s.send(t, 2)
	require.Equal(t, uint64(2*128), egressBytes(t, m))
}
