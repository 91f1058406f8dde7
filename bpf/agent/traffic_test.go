//go:build linux

package agent_test

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/tenantplane/tenantplane/bpf/internal/netlab"
)

// ping sends one ICMP echo request per payload size from a socket in from
// to dst and waits for each reply.
func ping(t *testing.T, from *netlab.NS, dst netip.Addr, sizes ...int) {
	t.Helper()
	network, laddr, proto := "ip4:icmp", "0.0.0.0", 1
	var reqType, replyType icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
	if dst.Is6() {
		network, laddr, proto = "ip6:ipv6-icmp", "::", 58
		reqType, replyType = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply
	}
	var c *icmp.PacketConn
	from.Do(func() (err error) {
		c, err = icmp.ListenPacket(network, laddr)
		return err
	})
	defer c.Close()
	id := rand.IntN(1 << 16)
	buf := make([]byte, 65536)
	for seq, size := range sizes {
		msg := icmp.Message{Type: reqType, Body: &icmp.Echo{ID: id, Seq: seq + 1, Data: make([]byte, size)}}
		b, err := msg.Marshal(nil)
		require.NoError(t, err)
		_, err = c.WriteTo(b, &net.IPAddr{IP: dst.AsSlice()})
		require.NoError(t, err)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
		for {
			n, _, err := c.ReadFrom(buf)
			require.NoError(t, err, "echo reply %d from %s", seq+1, dst)
			m, err := icmp.ParseMessage(proto, buf[:n])
			require.NoError(t, err)
			if e, ok := m.Body.(*icmp.Echo); ok && m.Type == replyType && e.ID == id && e.Seq == seq+1 {
				require.Len(t, e.Data, size)
				break
			}
		}
	}
}

// tcp sends exactly n bytes over a TCP connection from a socket in from to
// a listener on dst in to, and returns once the receiver has read them all
// and both ends are closed. paced, if not nil, is called after each 64 KiB
// written with the total so far.
func tcp(t *testing.T, from, to *netlab.NS, dst netip.Addr, n int, paced func(written int)) {
	t.Helper()
	var ln net.Listener
	to.Do(func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(dst, 0).String())
		return err
	})
	defer ln.Close()
	got := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- err
			return
		}
		defer c.Close()
		r, err := io.Copy(io.Discard, c)
		if err == nil && r != int64(n) {
			err = fmt.Errorf("received %d bytes, sent %d", r, n)
		}
		got <- err
	}()
	var c net.Conn
	from.Do(func() (err error) {
		c, err = net.Dial("tcp", ln.Addr().String())
		return err
	})
	chunk := make([]byte, 64<<10)
	for written := 0; written < n; {
		k, err := c.Write(chunk[:min(len(chunk), n-written)])
		require.NoError(t, err)
		written += k
		if paced != nil {
			paced(written)
		}
	}
	require.NoError(t, c.Close())
	select {
	case err := <-got:
		require.NoError(t, err)
	case <-time.After(time.Minute):
		t.Fatal("the receiver did not finish")
	}
}

// udp sends one datagram per payload size from from to a listener on dst
// in to and waits until all arrived.
func udp(t *testing.T, from, to *netlab.NS, dst netip.Addr, sizes ...int) {
	t.Helper()
	var ln net.PacketConn
	to.Do(func() (err error) {
		ln, err = net.ListenPacket("udp", netip.AddrPortFrom(dst, 0).String())
		return err
	})
	defer ln.Close()
	var c net.Conn
	from.Do(func() (err error) {
		c, err = net.Dial("udp", ln.LocalAddr().String())
		return err
	})
	defer c.Close()
	for _, size := range sizes {
		_, err := c.Write(make([]byte, size))
		require.NoError(t, err)
	}
	buf := make([]byte, 65536)
	require.NoError(t, ln.SetReadDeadline(time.Now().Add(5*time.Second)))
	for i, size := range sizes {
		k, _, err := ln.ReadFrom(buf)
		require.NoError(t, err, "datagram %d", i)
		require.Equal(t, size, k)
	}
}

// settle waits until the counters read by f stay the same for 300 ms, so
// that the last ACKs and FINs are counted.
func settle[T comparable](t *testing.T, f func() T) T {
	t.Helper()
	last, since := f(), time.Now()
	deadline := time.Now().Add(30 * time.Second)
	for time.Since(since) < 300*time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatal(errors.New("counters did not settle"))
		}
		time.Sleep(50 * time.Millisecond)
		if cur := f(); cur != last {
			last, since = cur, time.Now()
		}
	}
	return last
}
