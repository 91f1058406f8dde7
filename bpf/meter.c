//go:build ignore

// SPDX-License-Identifier: (MIT OR GPL-2.0)
//
// Network meter: attached with TCX to the host side of each pod's veth, it
// counts the bytes, wire bytes and packets of every IPv4 and IPv6 packet per
// (endpoint, direction, class) and always returns TCX_NEXT, so the programs
// of the CNI that come after it still run.
//
// On the host side of a veth, TCX ingress sees what the pod sends (its
// egress) and TCX egress sees what it receives (its ingress). The pod's own
// address is the local one (source on egress, destination on ingress); the
// endpoint map turns it into the endpoint id that user space assigned to the
// pod, so an address reused by a later pod is billed to that pod. The remote
// address is looked up in an LPM trie of cluster prefixes filled by user
// space; no match is class 0, the internet. A packet from or to a
// link-local, multicast, broadcast or unspecified address, and IPv6
// neighbour discovery, is not counted, whichever way it goes.
//
// Bytes are IP bytes (the skb without its Ethernet header), as netfilter
// counts them. Wire bytes count each TSO/GSO segment with its own IP and
// TCP or UDP headers, as the packets leave the node. Packets are segments.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// TCX verdicts (linux/bpf.h from 6.6 on; older headers lack them).
#define TCX_NEXT -1

#define EEXIST 17

// Directions, from the pod's point of view.
#define DIR_EGRESS 0
#define DIR_INGRESS 1

// Slots of the error counters.
#define ERR_COUNTER_INSERT 0 // a counter could not be inserted: the map is full
#define ERR_MALFORMED 1      // an IP packet too short or with a wrong header
#define ERR_SLOTS 4

#define IPPROTO_ICMPV6_ 58

// An address as 16 bytes; IPv4 is mapped (::ffff:a.b.c.d).
struct addr {
	__u8 b[16];
};

// Key of the class trie: prefixlen counts bits of addr (96 + n for an IPv4
// /n, mapped).
struct lpm_key {
	__u32 prefixlen;
	__u8 addr[16];
};

struct counter_key {
	__u32 endpoint;
	__u16 class_id;
	__u8 direction;
	__u8 pad;
};

struct counter_value {
	__u64 bytes;
	__u64 wire_bytes;
	__u64 packets;
};

// Pod address -> endpoint id. Sized by user space.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct addr);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tp_endpoints SEC(".maps");

// Cluster prefix -> class id. Sized by user space.
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__type(key, struct lpm_key);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tp_classes SEC(".maps");

// Monotonic counters. Sized by user space.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct counter_key);
	__type(value, struct counter_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tp_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ERR_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tp_errors SEC(".maps");

static __always_inline void count_error(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&tp_errors, &slot);
	if (v)
		*v += 1;
}

static __always_inline void set_v4(struct addr *a, const __u8 *ip)
{
	__builtin_memset(a->b, 0, 10);
	a->b[10] = 0xff;
	a->b[11] = 0xff;
	__builtin_memcpy(&a->b[12], ip, 4);
}

// v4_unbilled: link-local 169.254/16, multicast 224/4, broadcast and the
// unspecified 0.0.0.0.
static __always_inline int v4_unbilled(const __u8 *ip)
{
	if (ip[0] == 169 && ip[1] == 254)
		return 1;
	if ((ip[0] & 0xf0) == 0xe0)
		return 1;
	__u8 all = ip[0] & ip[1] & ip[2] & ip[3];
	__u8 any = ip[0] | ip[1] | ip[2] | ip[3];
	return all == 255 || any == 0;
}

// v6_unbilled: link-local fe80::/10, multicast ff00::/8 and the
// unspecified :: of duplicate address detection and early MLD reports.
static __always_inline int v6_unbilled(const __u8 *ip)
{
	if (ip[0] == 0xff || (ip[0] == 0xfe && (ip[1] & 0xc0) == 0x80))
		return 1;
	__u8 any = 0;
#pragma unroll
	for (int i = 0; i < 16; i++)
		any |= ip[i];
	return any == 0;
}

static __always_inline int meter(struct __sk_buff *skb, __u8 direction)
{
	struct addr local, remote;
	__u32 len = skb->len;
	__u32 l3hdr, l4off;
	__u8 l4proto;

	if (len <= ETH_HLEN)
		return TCX_NEXT;
	len -= ETH_HLEN;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		__u8 ip[20];
		if (bpf_skb_load_bytes(skb, ETH_HLEN, ip, sizeof(ip)) < 0) {
			count_error(ERR_MALFORMED);
			return TCX_NEXT;
		}
		l3hdr = (ip[0] & 0x0f) * 4;
		if ((ip[0] >> 4) != 4 || l3hdr < 20) {
			count_error(ERR_MALFORMED);
			return TCX_NEXT;
		}
		const __u8 *src = &ip[12], *dst = &ip[16];
		const __u8 *mine = direction == DIR_EGRESS ? src : dst;
		const __u8 *theirs = direction == DIR_EGRESS ? dst : src;
		if (v4_unbilled(src) || v4_unbilled(dst))
			return TCX_NEXT;
		set_v4(&local, mine);
		set_v4(&remote, theirs);
		l4proto = ip[9];
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		__u8 ip[40];
		if (bpf_skb_load_bytes(skb, ETH_HLEN, ip, sizeof(ip)) < 0) {
			count_error(ERR_MALFORMED);
			return TCX_NEXT;
		}
		if ((ip[0] >> 4) != 6) {
			count_error(ERR_MALFORMED);
			return TCX_NEXT;
		}
		l3hdr = 40;
		const __u8 *src = &ip[8], *dst = &ip[24];
		const __u8 *mine = direction == DIR_EGRESS ? src : dst;
		const __u8 *theirs = direction == DIR_EGRESS ? dst : src;
		if (v6_unbilled(src) || v6_unbilled(dst))
			return TCX_NEXT;
		__builtin_memcpy(local.b, mine, 16);
		__builtin_memcpy(remote.b, theirs, 16);
		l4proto = ip[6];
		if (l4proto == IPPROTO_ICMPV6_) {
			__u8 type;
			if (bpf_skb_load_bytes(skb, ETH_HLEN + 40, &type, 1) < 0) {
				count_error(ERR_MALFORMED);
				return TCX_NEXT;
			}
			// Router and neighbour solicitation and advertisement,
			// redirect.
			if (type >= 133 && type <= 137)
				return TCX_NEXT;
		}
	} else {
		return TCX_NEXT;
	}
	l4off = ETH_HLEN + l3hdr;

	// Wire bytes: a GSO skb leaves as segments of gso_size payload bytes,
	// each with its own L3 and L4 headers.
	__u64 wire = len, segs = 1;
	__u32 gso_size = skb->gso_size;
	if (gso_size) {
		__u32 hdr = l3hdr;
		if (l4proto == IPPROTO_TCP) {
			__u8 off;
			if (bpf_skb_load_bytes(skb, l4off + 12, &off, 1) == 0)
				hdr += (off >> 4) * 4;
		} else if (l4proto == IPPROTO_UDP) {
			hdr += 8;
		}
		if (len > hdr) {
			__u32 payload = len - hdr;
			segs = (payload + gso_size - 1) / gso_size;
			wire = (__u64)payload + segs * hdr;
		}
	}

	__u32 endpoint = 0;
	__u32 *ep = bpf_map_lookup_elem(&tp_endpoints, &local);
	if (ep)
		endpoint = *ep;

	struct lpm_key lk = {.prefixlen = 128};
	__builtin_memcpy(lk.addr, remote.b, 16);
	__u32 class_id = 0;
	__u32 *cls = bpf_map_lookup_elem(&tp_classes, &lk);
	if (cls)
		class_id = *cls;

	struct counter_key key = {
		.endpoint = endpoint,
		.class_id = (__u16)class_id,
		.direction = direction,
	};
	struct counter_value *v = bpf_map_lookup_elem(&tp_counters, &key);
	if (!v) {
		struct counter_value init = {.bytes = len, .wire_bytes = wire, .packets = segs};
		long err = bpf_map_update_elem(&tp_counters, &key, &init, BPF_NOEXIST);
		if (err == 0)
			return TCX_NEXT;
		if (err != -EEXIST) {
			count_error(ERR_COUNTER_INSERT);
			return TCX_NEXT;
		}
		// Another CPU inserted it first; this CPU's slot starts at 0.
		v = bpf_map_lookup_elem(&tp_counters, &key);
		if (!v) {
			count_error(ERR_COUNTER_INSERT);
			return TCX_NEXT;
		}
	}
	v->bytes += len;
	v->wire_bytes += wire;
	v->packets += segs;
	return TCX_NEXT;
}

// meter_pod_egress runs on TCX ingress of the host-side veth: what the pod
// sends.
SEC("tcx/ingress")
int meter_pod_egress(struct __sk_buff *skb)
{
	return meter(skb, DIR_EGRESS);
}

// meter_pod_ingress runs on TCX egress of the host-side veth: what the pod
// receives.
SEC("tcx/egress")
int meter_pod_ingress(struct __sk_buff *skb)
{
	return meter(skb, DIR_INGRESS);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
