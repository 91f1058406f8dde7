//go:build linux

package bpf

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/bpf/internal/netlab"
)

// emptyProgram is the baseline: a TCX program that only returns TCX_NEXT.
func emptyProgram(tb testing.TB) *ebpf.Program {
	tb.Helper()
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.SchedCLS,
		AttachType:   ebpf.AttachTCXIngress,
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()},
		License:      "Dual MIT/GPL",
	})
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = p.Close() })
	return p
}

// BenchmarkClassifier measures the program's cost per packet with
// BPF_PROG_TEST_RUN, beside an empty program in the same run: a known pod
// sending UDP to the internet, so every lookup is done (endpoint hit,
// class trie miss after walking it, counter hit), with 1,000 endpoints and
// 64 prefixes loaded. Sizes are IP packet lengths.
func BenchmarkClassifier(b *testing.B) {
	m := loadTestMeter(b, Config{})
	classes := map[netip.Prefix]uint16{}
	for i := range 32 {
		classes[netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i), 0, 0}), 16)] = classCluster
		classes[netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0, byte(i)}), 48)] = classCluster
	}
	require.NoError(b, m.SetClasses(classes))
	for i := range 1000 {
		require.NoError(b, m.SetEndpoint(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), uint32(100+i)))
	}
	empty := emptyProgram(b)
	const repeat = 1_000_000
	for _, fam := range []struct {
		name     string
		src, dst netip.Addr
		hdr      int
	}{{"ipv4", podA, internet, 20}, {"ipv6", podA6, inet6, 40}} {
		for _, size := range []int{64, 1500} {
			b.Run(fmt.Sprintf("%s/%d", fam.name, size), func(b *testing.B) {
				frame := packet{src: fam.src, dst: fam.dst, proto: protoUDP, l4: 8, payload: size - fam.hdr - 8}.frame()
				var base, meter time.Duration
				for b.Loop() {
					_, d0, err := empty.Benchmark(frame, repeat, b.ResetTimer)
					require.NoError(b, err)
					_, d1, err := m.program(Egress).Benchmark(frame, repeat, b.ResetTimer)
					require.NoError(b, err)
					base += d0
					meter += d1
				}
				n := float64(b.N)
				b.ReportMetric(float64(meter.Nanoseconds())/n, "ns/pkt")
				b.ReportMetric(float64(base.Nanoseconds())/n, "empty-ns/pkt")
				b.ReportMetric(float64((meter-base).Nanoseconds())/n, "over-empty-ns/pkt")
			})
		}
	}
}

// BenchmarkVethThroughput runs iperf3 for 3 s from a pod namespace to a
// node namespace through a veth pair, without and with the program on the
// node's side, twice each, in both orders: TCP (TSO packets, the common bulk
// case) and UDP with 64-byte payloads (one skb per packet, the worst case
// for a per-packet cost).
func BenchmarkVethThroughput(b *testing.B) {
	if _, err := exec.LookPath("iperf3"); err != nil {
		b.Fatalf("iperf3 is not installed: run `make deps` (%v)", err)
	}
	lab := netlab.New(b)
	node, pod := lab.NS("node"), lab.NS("pod")
	lab.Veth(node, "vh", pod, "eth0")
	node.Exec("ip", "addr", "add", "192.0.2.1/24", "dev", "vh")
	pod.Exec("ip", "addr", "add", "192.0.2.10/24", "dev", "eth0")
	node.Start("iperf3", "--server", "--bind", "192.0.2.1")
	ifindex := node.Ifindex("vh")
	m := loadTestMeter(b, Config{})

	// iperf returns what the server received: Gbit/s for TCP, thousands
	// of packets per second for UDP.
	iperf := func(args ...string) float64 {
		var out []byte
		netlab.Eventually(b, 10*time.Second, func() error {
			var err error
			out, err = exec.Command("ip", append([]string{"netns", "exec", pod.Name, "iperf3", "--client", "192.0.2.1",
				"--time", "3", "--omit", "1", "--json"}, args...)...).Output()
			if err != nil {
				return fmt.Errorf("iperf3: %w: %s", err, strings.TrimSpace(string(out)))
			}
			return nil
		})
		var r struct {
			End struct {
				SumReceived struct {
					BitsPerSecond float64 `json:"bits_per_second"`
				} `json:"sum_received"`
				Sum struct {
					Seconds     float64 `json:"seconds"`
					Packets     float64 `json:"packets"`
					LostPackets float64 `json:"lost_packets"`
				} `json:"sum"`
			} `json:"end"`
		}
		require.NoError(b, json.Unmarshal(out, &r))
		if len(args) == 0 {
			return r.End.SumReceived.BitsPerSecond / 1e9
		}
		return (r.End.Sum.Packets - r.End.Sum.LostPackets) / r.End.Sum.Seconds / 1e3
	}
	for _, mode := range []struct {
		name, unit string
		args       []string
	}{
		{"tcp", "Gbit/s", nil},
		{"udp64", "kpps", []string{"--udp", "--bitrate", "0", "--length", "64"}},
	} {
		b.Run(mode.name, func(b *testing.B) {
			var without, with float64
			rounds := 0
			attached := func() float64 {
				node.Do(func() error { return m.Attach(ifindex) })
				defer func() { require.NoError(b, m.Detach(ifindex)) }()
				return iperf(mode.args...)
			}
			for b.Loop() {
				// Each order once, so that neither side is always the
				// second run of a pair.
				without += iperf(mode.args...)
				with += attached()
				with += attached()
				without += iperf(mode.args...)
				rounds += 2
			}
			b.ReportMetric(without/float64(rounds), mode.unit+"-without")
			b.ReportMetric(with/float64(rounds), mode.unit+"-with")
			b.ReportMetric(with/without, "with/without")
		})
	}
	counters, err := m.Counters()
	require.NoError(b, err)
	require.NotEmpty(b, counters, "the program counted the transfers")
}
