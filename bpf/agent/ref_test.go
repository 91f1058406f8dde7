//go:build linux

package agent_test

import (
	"fmt"
	"strings"

	"github.com/tenantplane/tenantplane/bpf/internal/netlab"
)

// The nftables reference. On the node, prerouting on a pod's host-side
// veth sees what the pod sends and postrouting what it receives, as the
// program does on TCX ingress and egress: the same skbs, so their bytes
// must agree. Wire bytes and packets are counted where the packets arrive:
// the node's veths have TSO and GSO off, so every TSO/GSO skb is cut into
// its segments on the way out, and the receiver counts them one by one.

// Rules that skip what is not billed, as the program does: anything from
// or to a link-local, multicast, broadcast or unspecified address, and
// IPv6 neighbour discovery.
func unbilled() string {
	return `		ip saddr { 0.0.0.0, 169.254.0.0/16, 224.0.0.0/4, 255.255.255.255 } return
		ip daddr { 0.0.0.0, 169.254.0.0/16, 224.0.0.0/4, 255.255.255.255 } return
		ip6 saddr { ::, fe80::/10, ff00::/8 } return
		ip6 daddr { ::, fe80::/10, ff00::/8 } return
		icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, nd-redirect } return
`
}

func clusterSets() string {
	var v4, v6 []string
	for _, p := range clusterPrefixes {
		if p.Prefix.Addr().Is4() {
			v4 = append(v4, p.Prefix.String())
		} else {
			v6 = append(v6, p.Prefix.String())
		}
	}
	return fmt.Sprintf(`	set cl4 { type ipv4_addr; flags interval; elements = { %s } }
	set cl6 { type ipv6_addr; flags interval; elements = { %s } }
`, strings.Join(v4, ", "), strings.Join(v6, ", "))
}

// classify counts into <prefix>_cluster or <prefix>_internet by the
// remote address.
func classify(prefix, remote string) string {
	return fmt.Sprintf(`		ip %[2]s @cl4 counter name "%[1]s_cluster" return
		ip6 %[2]s @cl6 counter name "%[1]s_cluster" return
		meta nfproto { ipv4, ipv6 } counter name "%[1]s_internet"
`, prefix, remote)
}

func short(p *pod) string { return strings.TrimPrefix(p.hostIf, "vp") }

// installReference loads the reference counters into the node, the pods
// and the internet host.
func (w *world) installReference() {
	w.t.Helper()
	var counters, chains, pre, post, input strings.Builder
	for _, p := range w.pods {
		s := short(p)
		for _, name := range []string{"eg", "in", "local"} {
			for _, class := range []string{"cluster", "internet"} {
				fmt.Fprintf(&counters, "\tcounter %s_%s_%s {}\n", s, name, class)
			}
		}
		fmt.Fprintf(&pre, "\t\tiifname %q jump eg_%s\n", p.hostIf, s)
		fmt.Fprintf(&post, "\t\toifname %q jump in_%s\n", p.hostIf, s)
		fmt.Fprintf(&input, "\t\tiifname %q jump local_%s\n", p.hostIf, s)
		fmt.Fprintf(&chains, "\tchain eg_%s {\n%s%s\t}\n", s, unbilled(), classify(s+"_eg", "daddr"))
		fmt.Fprintf(&chains, "\tchain in_%s {\n%s%s\t}\n", s, unbilled(), classify(s+"_in", "saddr"))
		fmt.Fprintf(&chains, "\tchain local_%s {\n%s%s\t}\n", s, unbilled(), classify(s+"_local", "daddr"))
	}
	w.node.NFT(fmt.Sprintf(`table inet ref {
%s%s%s	chain pre {
		type filter hook prerouting priority -500; policy accept;
%s	}
	chain post {
		type filter hook postrouting priority 500; policy accept;
%s	}
	chain input {
		type filter hook input priority -500; policy accept;
%s	}
}
`, clusterSets(), counters.String(), chains.String(), pre.String(), post.String(), input.String()))

	// Receivers count by sender (pods, the internet host) or by class
	// (what a pod receives).
	from := func(self *pod) string {
		var b strings.Builder
		for _, p := range w.pods {
			if p == self {
				continue
			}
			if p.v4.IsValid() {
				fmt.Fprintf(&b, "\t\tip saddr %s counter name \"from_%s\"\n", p.v4, short(p))
			}
			fmt.Fprintf(&b, "\t\tip6 saddr %s counter name \"from_%s\"\n", p.v6, short(p))
		}
		return b.String()
	}
	declare := func(self *pod) string {
		var b strings.Builder
		for _, p := range w.pods {
			if p != self {
				fmt.Fprintf(&b, "\tcounter from_%s {}\n", short(p))
			}
		}
		return b.String()
	}
	w.inet.NFT(fmt.Sprintf(`table inet ref {
%s	chain pre {
		type filter hook prerouting priority -500; policy accept;
		iifname "eth0" jump rx
	}
	chain rx {
%s	}
}
`, declare(nil), from(nil)))
	for _, p := range w.pods {
		p.ns.NFT(fmt.Sprintf(`table inet ref {
%s%s	counter rx_cluster {}
	counter rx_internet {}
	chain pre {
		type filter hook prerouting priority -500; policy accept;
		iifname "eth0" jump rx
	}
	chain rx {
%s%s%s	}
}
`, clusterSets(), declare(p), from(p), unbilled(), classify("rx", "saddr")))
	}
}

// flow is one pod's traffic in one direction and class.
type flow struct {
	pod       string // namespace/name
	direction string
	class     string
}

// refCount is the reference of one flow: bytes as the node saw them, wire
// bytes and packets as they arrived.
type refCount struct {
	Bytes, WireBytes, Packets uint64
}

// reference reads the counters into the expected count of every flow.
func (w *world) reference() map[flow]refCount {
	w.t.Helper()
	node := w.node.Counters("ref")
	inet := w.inet.Counters("ref")
	rx := map[*pod]map[string]netlab.Counter{}
	for _, p := range w.pods {
		rx[p] = p.ns.Counters("ref")
	}
	out := map[flow]refCount{}
	for _, p := range w.pods {
		s, id := short(p), p.namespace+"/"+p.name
		for _, class := range []string{"cluster", "internet"} {
			// What p sends arrives at the node itself, at other pods
			// (cluster) or at the internet host.
			eg := refCount{Bytes: node[s+"_eg_"+class].Bytes}
			local := node[s+"_local_"+class]
			eg.WireBytes, eg.Packets = local.Bytes, local.Packets
			if class == "cluster" {
				for _, q := range w.pods {
					if q != p {
						c := rx[q]["from_"+s]
						eg.WireBytes += c.Bytes
						eg.Packets += c.Packets
					}
				}
			} else {
				c := inet["from_"+s]
				eg.WireBytes += c.Bytes
				eg.Packets += c.Packets
			}
			out[flow{id, "egress", class}] = eg
			in := rx[p]["rx_"+class]
			out[flow{id, "ingress", class}] = refCount{Bytes: node[s+"_in_"+class].Bytes, WireBytes: in.Bytes, Packets: in.Packets}
		}
	}
	return out
}

// nodeCounters is the node's reference as text, to see it settle.
func (w *world) nodeCounters() string {
	return fmt.Sprint(w.node.Counters("ref"))
}
