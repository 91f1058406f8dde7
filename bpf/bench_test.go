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

// BenchmarkVethThroughput runs iperf3 (TCP, 3 s) from a pod namespace to
// a node namespace through a veth pair, without and with the program on
// the node's side, twice each, alternating.
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
	iperf := func() float64 {
		var out string
		netlab.Eventually(b, 10*time.Second, func() error {
			res, err := exec.Command("ip", "netns", "exec", pod.Name, "iperf3", "--client", "192.0.2.1", "--time", "3", "--omit", "1", "--json").Output()
			out = string(res)
			if err != nil {
				return fmt.Errorf("iperf3: %w: %s", err, strings.TrimSpace(out))
			}
			return nil
		})
		var r struct {
			End struct {
				SumReceived struct {
					BitsPerSecond float64 `json:"bits_per_second"`
				} `json:"sum_received"`
			} `json:"end"`
		}
		require.NoError(b, json.Unmarshal([]byte(out), &r))
		return r.End.SumReceived.BitsPerSecond / 1e9
	}
	var without, with float64
	rounds := 0
	for b.Loop() {
		for range 2 {
			without += iperf()
			node.Do(func() error { return m.Attach(ifindex) })
			with += iperf()
			require.NoError(b, m.Detach(ifindex))
			rounds++
		}
	}
	b.ReportMetric(without/float64(rounds), "Gbit/s-without")
	b.ReportMetric(with/float64(rounds), "Gbit/s-with")
	b.ReportMetric(with/without, "with/without")
	counters, err := m.Counters()
	require.NoError(b, err)
	require.NotEmpty(b, counters, "the program counted the transfers")
}
