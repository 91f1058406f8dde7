//go:build linux

package bpf

import (
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/bpf/internal/netlab"
	"github.com/tenantplane/tenantplane/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var (
	podA     = netip.MustParseAddr("192.0.2.10")
	podB     = netip.MustParseAddr("192.0.2.11")
	nodeIP   = netip.MustParseAddr("203.0.113.7")
	internet = netip.MustParseAddr("198.51.100.1")
	podA6    = netip.MustParseAddr("2001:db8:1::a")
	podB6    = netip.MustParseAddr("2001:db8:1::b")
	inet6    = netip.MustParseAddr("2001:db8:ffff::1")
)

const (
	classCluster uint16 = 1
	classNode    uint16 = 2
	endpointA    uint32 = 7
)

// loadTestMeter loads an unpinned meter with pod A's addresses and the
// cluster prefixes of the package's test addresses.
func loadTestMeter(t testing.TB, cfg Config) *Meter {
	t.Helper()
	netlab.Require(t)
	m, err := Load(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, m.Close()) })
	require.NoError(t, m.SetEndpoint(podA, endpointA))
	require.NoError(t, m.SetEndpoint(podA6, endpointA))
	require.NoError(t, m.SetClasses(map[netip.Prefix]uint16{
		netip.MustParsePrefix("192.0.2.0/24"):    classCluster,
		netip.MustParsePrefix("2001:db8:1::/64"): classCluster,
		netip.MustParsePrefix("203.0.113.7/32"):  classNode,
	}))
	return m
}

type counterKey struct {
	endpoint  uint32
	direction Direction
	class     uint16
}

type count struct{ bytes, wire, packets uint64 }

func snapshot(t testing.TB, m *Meter) map[counterKey]count {
	t.Helper()
	cs, err := m.Counters()
	require.NoError(t, err)
	out := map[counterKey]count{}
	for _, c := range cs {
		out[counterKey{c.Endpoint, c.Direction, c.Class}] = count{c.Bytes, c.WireBytes, c.Packets}
	}
	return out
}

func diff(after, before map[counterKey]count) map[counterKey]count {
	out := map[counterKey]count{}
	for k, a := range after {
		b := before[k]
		if d := (count{a.bytes - b.bytes, a.wire - b.wire, a.packets - b.packets}); d != (count{}) {
			out[k] = d
		}
	}
	return out
}

// run runs the program of direction d on frame with BPF_PROG_TEST_RUN.
func run(t testing.TB, m *Meter, d Direction, frame []byte, ctx []byte) {
	t.Helper()
	opts := &ebpf.RunOptions{Data: frame}
	if ctx != nil {
		opts.Context = ctx
	}
	ret, err := m.program(d).Run(opts)
	require.NoError(t, err)
	require.Equal(t, uint32(0xffffffff), ret, "the program returns TCX_NEXT")
}

func TestClassifier(t *testing.T) {
	t.Parallel()
	m := loadTestMeter(t, Config{})

	tcp := func(src, dst netip.Addr, payload int) packet {
		return packet{src: src, dst: dst, proto: protoTCP, l4: 32, payload: payload}
	}
	tests := []struct {
		name    string
		dir     Direction
		pkt     packet
		gsoSize uint32
		// want is the change of the counters; nil means nothing counted.
		want map[counterKey]count
	}{
		{name: "v4 egress to the internet", dir: Egress, pkt: tcp(podA, internet, 100),
			want: map[counterKey]count{{endpointA, Egress, ClassInternet}: {152, 152, 1}}},
		{name: "v4 egress to a pod", dir: Egress, pkt: tcp(podA, podB, 0),
			want: map[counterKey]count{{endpointA, Egress, classCluster}: {52, 52, 1}}},
		{name: "v4 ingress from the node, a /32 class", dir: Ingress, pkt: packet{src: nodeIP, dst: podA, proto: protoUDP, l4: 8, payload: 1000},
			want: map[counterKey]count{{endpointA, Ingress, classNode}: {1028, 1028, 1}}},
		{name: "v4 ingress is keyed by the destination", dir: Ingress, pkt: tcp(internet, podA, 10),
			want: map[counterKey]count{{endpointA, Ingress, ClassInternet}: {62, 62, 1}}},
		{name: "an unknown pod address counts as endpoint 0", dir: Egress, pkt: tcp(netip.MustParseAddr("192.0.2.99"), internet, 0),
			want: map[counterKey]count{{0, Egress, ClassInternet}: {52, 52, 1}}},
		{name: "v4 multicast is not billed", dir: Egress, pkt: packet{src: podA, dst: netip.MustParseAddr("224.0.0.251"), proto: protoUDP, l4: 8, payload: 40}},
		{name: "v4 broadcast is not billed", dir: Egress, pkt: packet{src: podA, dst: netip.MustParseAddr("255.255.255.255"), proto: protoUDP, l4: 8}},
		{name: "v4 link-local is not billed", dir: Egress, pkt: tcp(podA, netip.MustParseAddr("169.254.169.254"), 10)},
		{name: "v4 from a link-local address is not billed", dir: Egress, pkt: tcp(netip.MustParseAddr("169.254.1.2"), internet, 10)},
		{name: "v4 multicast to the pod is not billed", dir: Ingress, pkt: packet{src: internet, dst: netip.MustParseAddr("224.0.0.1"), proto: protoUDP, l4: 8, payload: 40}},
		{name: "v4 from the unspecified address is not billed", dir: Ingress, pkt: packet{src: netip.IPv4Unspecified(), dst: podA, proto: protoUDP, l4: 8}},
		{name: "v6 echo to the internet", dir: Egress, pkt: packet{src: podA6, dst: inet6, proto: protoICMPv6, l4: 8, icmp: 128, payload: 56},
			want: map[counterKey]count{{endpointA, Egress, ClassInternet}: {104, 104, 1}}},
		{name: "v6 ingress from a pod", dir: Ingress, pkt: tcp(podB6, podA6, 1000),
			want: map[counterKey]count{{endpointA, Ingress, classCluster}: {1072, 1072, 1}}},
		{name: "v6 neighbour solicitation is not billed", dir: Egress, pkt: packet{src: podA6, dst: podB6, proto: protoICMPv6, l4: 24, icmp: 135}},
		{name: "v6 neighbour advertisement is not billed", dir: Ingress, pkt: packet{src: podB6, dst: podA6, proto: protoICMPv6, l4: 24, icmp: 136}},
		{name: "v6 router solicitation is not billed", dir: Egress, pkt: packet{src: podA6, dst: inet6, proto: protoICMPv6, l4: 8, icmp: 133}},
		{name: "v6 multicast is not billed", dir: Egress, pkt: packet{src: podA6, dst: netip.MustParseAddr("ff02::16"), proto: protoICMPv6, l4: 8, icmp: 143}},
		{name: "v6 link-local is not billed", dir: Egress, pkt: tcp(netip.MustParseAddr("fe80::1"), inet6, 10)},
		{name: "v6 to a link-local address is not billed", dir: Egress, pkt: tcp(podA6, netip.MustParseAddr("fe80::1"), 10)},
		{name: "v6 from the unspecified address is not billed", dir: Egress, pkt: packet{src: netip.IPv6Unspecified(), dst: inet6, proto: protoUDP, l4: 8}},
		{name: "v6 MLD report from the unspecified address to the pod is not billed", dir: Ingress, pkt: packet{src: netip.IPv6Unspecified(), dst: netip.MustParseAddr("ff02::16"), proto: protoICMPv6, l4: 8, icmp: 143, payload: 40}},
		{name: "v6 multicast from a global address to the pod is not billed", dir: Ingress, pkt: packet{src: inet6, dst: netip.MustParseAddr("ff02::1"), proto: protoUDP, l4: 8, payload: 40}},
		{name: "v6 to the unspecified address is not billed", dir: Ingress, pkt: packet{src: inet6, dst: netip.IPv6Unspecified(), proto: protoUDP, l4: 8}},
		// 2,900 payload bytes in segments of 1,000: three segments, each
		// with 20 + 32 header bytes.
		{name: "v4 TSO counts each segment's headers", dir: Egress, pkt: tcp(podA, internet, 2900), gsoSize: 1000,
			want: map[counterKey]count{{endpointA, Egress, ClassInternet}: {2952, 2900 + 3*52, 3}}},
		{name: "v6 TSO counts each segment's headers", dir: Ingress, pkt: tcp(inet6, podA6, 3000), gsoSize: 1000,
			want: map[counterKey]count{{endpointA, Ingress, ClassInternet}: {3072, 3000 + 3*72, 3}}},
		{name: "v6 UDP GSO counts each datagram's headers", dir: Egress, pkt: packet{src: podA6, dst: inet6, proto: protoUDP, l4: 8, payload: 2500}, gsoSize: 1200,
			want: map[counterKey]count{{endpointA, Egress, ClassInternet}: {2548, 2500 + 3*48, 3}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := snapshot(t, m)
			var ctx []byte
			if tt.gsoSize > 0 {
				ctx = skbContext(tt.gsoSize, 0)
			}
			run(t, m, tt.dir, tt.pkt.frame(), ctx)
			got := diff(snapshot(t, m), before)
			if tt.want == nil {
				require.Empty(t, got)
				return
			}
			require.Equal(t, tt.want, got)
		})
	}

	t.Run("non-IP frames are not counted", func(t *testing.T) {
		before := snapshot(t, m)
		arp := make([]byte, 42)
		arp[12], arp[13] = 0x08, 0x06
		run(t, m, Egress, arp, nil)
		require.Empty(t, diff(snapshot(t, m), before))
	})

	t.Run("a malformed IP header is an error, not a count", func(t *testing.T) {
		before := snapshot(t, m)
		e0, err := m.Errors()
		require.NoError(t, err)
		f := tcp(podA, internet, 0).frame()
		f[14] = 0x44 // an IHL of 16 bytes
		run(t, m, Egress, f, nil)
		require.Empty(t, diff(snapshot(t, m), before))
		e1, err := m.Errors()
		require.NoError(t, err)
		require.Equal(t, e0.Malformed+1, e1.Malformed)
	})
}

func TestCounterInsertErrors(t *testing.T) {
	t.Parallel()
	m := loadTestMeter(t, Config{MaxCounters: 2})
	run(t, m, Egress, packet{src: podA, dst: internet, proto: protoUDP, l4: 8}.frame(), nil)
	run(t, m, Egress, packet{src: podA, dst: podB, proto: protoUDP, l4: 8}.frame(), nil)
	// A third key does not fit; the first two still count.
	run(t, m, Ingress, packet{src: podB, dst: podA, proto: protoUDP, l4: 8}.frame(), nil)
	run(t, m, Egress, packet{src: podA, dst: internet, proto: protoUDP, l4: 8, payload: 10}.frame(), nil)

	e, err := m.Errors()
	require.NoError(t, err)
	require.Equal(t, Errors{CounterInserts: 1}, e)
	require.Equal(t, map[counterKey]count{
		{endpointA, Egress, ClassInternet}: {28 + 38, 28 + 38, 2},
		{endpointA, Egress, classCluster}:  {28, 28, 1},
	}, snapshot(t, m))
}

func TestSetClassesReplacesTheTrie(t *testing.T) {
	t.Parallel()
	m := loadTestMeter(t, Config{})
	frame := packet{src: podA, dst: podB, proto: protoUDP, l4: 8}.frame()
	run(t, m, Egress, frame, nil)
	// Pod B's /24 is dropped: it is the internet now.
	require.NoError(t, m.SetClasses(map[netip.Prefix]uint16{netip.MustParsePrefix("203.0.113.0/24"): classNode}))
	before := snapshot(t, m)
	run(t, m, Egress, frame, nil)
	require.Equal(t, map[counterKey]count{{endpointA, Egress, ClassInternet}: {28, 28, 1}}, diff(snapshot(t, m), before))

	require.ErrorContains(t, m.SetClasses(map[netip.Prefix]uint16{netip.MustParsePrefix("10.0.0.0/8"): ClassInternet}), "reserved")
}

func TestEndpointsAndCountersOfAnEndedPod(t *testing.T) {
	t.Parallel()
	m := loadTestMeter(t, Config{})
	eps, err := m.Endpoints()
	require.NoError(t, err)
	require.Equal(t, map[netip.Addr]uint32{podA: endpointA, podA6: endpointA}, eps)

	run(t, m, Egress, packet{src: podA, dst: internet, proto: protoUDP, l4: 8}.frame(), nil)
	// Pod A ends; its address goes to a new pod with endpoint 8.
	require.NoError(t, m.SetEndpoint(podA, 8))
	require.NoError(t, m.DeleteEndpoint(podA6))
	require.NoError(t, m.DeleteEndpoint(podA6), "deleting twice is no error")
	run(t, m, Egress, packet{src: podA, dst: internet, proto: protoUDP, l4: 8, payload: 1}.frame(), nil)
	require.Equal(t, map[counterKey]count{
		{endpointA, Egress, ClassInternet}: {28, 28, 1},
		{8, Egress, ClassInternet}:         {29, 29, 1},
	}, snapshot(t, m))

	require.NoError(t, m.DeleteCounters(func(ep uint32) bool { return ep == endpointA }))
	require.Equal(t, map[counterKey]count{{8, Egress, ClassInternet}: {29, 29, 1}}, snapshot(t, m))
}

func TestConfigIsValidated(t *testing.T) {
	t.Parallel()
	_, err := Load(Config{MaxCounters: -1})
	require.ErrorContains(t, err, "positive")
	_, err = Load(Config{PinPath: "relative/path"})
	require.ErrorContains(t, err, "absolute")
}
