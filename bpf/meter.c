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
// address is looked up in an LPM trie (one per family) of cluster prefixes
// filled by user space; no match is class 0, the internet. A packet from or to a
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

// Keys of the class tries: prefixlen counts the bits of addr.
struct lpm4_key {
	__u32 prefixlen;
	__u8 addr[4];
};

struct lpm6_key {
	__u32 prefixlen;
	__u8 addr[16];
};

struct in6 {
	union {
		__u8 b[16];
		__u64 w[2];
	};
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

// Pod address -> endpoint id, one map per family. Sized by user space.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32); // IPv4 address as on the wire
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tp_endpoints4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct in6);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tp_endpoints6 SEC(".maps");

// Cluster prefix -> class id, one trie per family. Sized by user space.
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__type(key, struct lpm4_key);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tp_classes4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__type(key, struct lpm6_key);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tp_classes6 SEC(".maps");

// The generation of the class tries: user space adds one after each
// change of them, which empties every class cache.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tp_classgen SEC(".maps");

// A small direct-mapped cache per CPU of remote address -> class, in front
// of the tries: a trie lookup costs more than the rest of the program.
#define CLASS_CACHE_SLOTS 256

struct class_cache_entry {
	__u64 addr[2]; // IPv4: the address, then 0
	__u32 gen;
	__u16 class_id;
	__u8 family;
	__u8 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CLASS_CACHE_SLOTS);
	__type(key, __u32);
	__type(value, struct class_cache_entry);
} tp_class_cache SEC(".maps");

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

// v4_unbilled: link-local 169.254/16, multicast 224/4, broadcast and the
// unspecified 0.0.0.0 (a is in network order).
static __always_inline int v4_unbilled(__u32 a)
{
	__u32 h = bpf_ntohl(a);
	return (h >> 16) == 0xa9fe || (h >> 28) == 0xe || h == 0xffffffff || h == 0;
}

// v6_unbilled: link-local fe80::/10, multicast ff00::/8 and the
// unspecified :: of duplicate address detection and early MLD reports. a
// points at the address where it is, in the packet or a copy of its
// header: no copy of its own is made.
static __always_inline int v6_unbilled(const __u8 *a)
{
	if (a[0] == 0xff || (a[0] == 0xfe && (a[1] & 0xc0) == 0x80))
		return 1;
	const struct in6 *w = (const struct in6 *)a;
	return (w->w[0] | w->w[1]) == 0;
}

// cached returns the cache slot of a remote address (a0, a1: its 16
// bytes, or its 4 bytes and 0) and whether it holds the address's class
// of this generation.
static __always_inline struct class_cache_entry *cached(__u64 a0, __u64 a1, __u8 family, __u32 *gen, int *hit)
{
	__u32 zero = 0;
	__u32 *g = bpf_map_lookup_elem(&tp_classgen, &zero);
	*gen = g ? *g : 0;
	__u64 h = a0 ^ a1;
	__u32 slot = ((__u32)h ^ (__u32)(h >> 32)) * 2654435761u >> 24;
	struct class_cache_entry *e = bpf_map_lookup_elem(&tp_class_cache, &slot);
	*hit = e && e->gen == *gen && e->family == family && e->addr[0] == a0 && e->addr[1] == a1;
	return e;
}

static __always_inline __u32 remember(struct class_cache_entry *e, __u64 a0, __u64 a1, __u8 family, __u32 gen, __u32 *found)
{
	__u32 class_id = found ? *found : 0;
	if (e) {
		e->addr[0] = a0;
		e->addr[1] = a1;
		e->gen = gen;
		e->family = family;
		e->class_id = (__u16)class_id;
	}
	return class_id;
}

// classify4 and classify6 return the class of a remote address.
static __always_inline __u32 classify4(__u32 remote)
{
	__u32 gen;
	int hit;
	struct class_cache_entry *e = cached(remote, 0, 4, &gen, &hit);
	if (hit)
		return e->class_id;
	struct lpm4_key k = {.prefixlen = 32};
	__builtin_memcpy(k.addr, &remote, 4);
	return remember(e, remote, 0, 4, gen, bpf_map_lookup_elem(&tp_classes4, &k));
}

static __always_inline __u32 classify6(const __u8 *remote)
{
	__u32 gen;
	int hit;
	const struct in6 *r = (const struct in6 *)remote;
	__u64 a0 = r->w[0], a1 = r->w[1];
	struct class_cache_entry *e = cached(a0, a1, 6, &gen, &hit);
	if (hit)
		return e->class_id;
	struct lpm6_key k = {.prefixlen = 128};
	__builtin_memcpy(k.addr, remote, 16);
	return remember(e, a0, a1, 6, gen, bpf_map_lookup_elem(&tp_classes6, &k));
}

// header returns len bytes at off: in the packet when they are in its
// linear part, else copied to buf; NULL when the packet is shorter.
static __always_inline const __u8 *header(struct __sk_buff *skb, __u32 off, __u32 len, void *buf)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	if (data + off + len <= end)
		return data + off;
	if (bpf_skb_load_bytes(skb, off, buf, len) < 0)
		return NULL;
	return buf;
}

static __always_inline int meter(struct __sk_buff *skb, __u8 direction)
{
	__u32 len = skb->len;
	__u32 l3hdr;
	__u8 l4proto;
	__u32 endpoint = 0, class_id = 0;
	__u32 *found;

	if (len <= ETH_HLEN)
		return TCX_NEXT;
	len -= ETH_HLEN;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		__u8 buf[20] __attribute__((aligned(4)));
		const __u8 *ip = header(skb, ETH_HLEN, 20, buf);
		if (!ip) {
			count_error(ERR_MALFORMED);
			return TCX_NEXT;
		}
		l3hdr = (ip[0] & 0x0f) * 4;
		if ((ip[0] >> 4) != 4 || l3hdr < 20) {
			count_error(ERR_MALFORMED);
			return TCX_NEXT;
		}
		// Word loads where the addresses are, not a byte-wise copy.
		__u32 src = *(const __u32 *)&ip[12], dst = *(const __u32 *)&ip[16];
		if (v4_unbilled(src) || v4_unbilled(dst))
			return TCX_NEXT;
		l4proto = ip[9];
		__u32 mine = direction == DIR_EGRESS ? src : dst;
		found = bpf_map_lookup_elem(&tp_endpoints4, &mine);
		if (found)
			endpoint = *found;
		class_id = classify4(direction == DIR_EGRESS ? dst : src);
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		// Aligned, so that the addresses are read as words from it too
		// (the verifier wants aligned stack access).
		__u8 buf[40] __attribute__((aligned(8)));
		const __u8 *ip = header(skb, ETH_HLEN, 40, buf);
		if (!ip || (ip[0] >> 4) != 6) {
			count_error(ERR_MALFORMED);
			return TCX_NEXT;
		}
		l3hdr = 40;
		// The addresses are read where they are (the packet, or buf when
		// the header is not in its linear part); the endpoint map takes
		// its key from there too.
		const __u8 *src = &ip[8], *dst = &ip[24];
		if (v6_unbilled(src) || v6_unbilled(dst))
			return TCX_NEXT;
		l4proto = ip[6];
		const __u8 *mine = direction == DIR_EGRESS ? src : dst;
		if (l4proto == IPPROTO_ICMPV6_) {
			__u8 tbuf[1];
			const __u8 *type = header(skb, ETH_HLEN + 40, 1, tbuf);
			if (!type) {
				count_error(ERR_MALFORMED);
				return TCX_NEXT;
			}
			// Router and neighbour solicitation and advertisement,
			// redirect.
			if (*type >= 133 && *type <= 137)
				return TCX_NEXT;
		}
		found = bpf_map_lookup_elem(&tp_endpoints6, mine);
		if (found)
			endpoint = *found;
		class_id = classify6(direction == DIR_EGRESS ? dst : src);
	} else {
		return TCX_NEXT;
	}

	// Wire bytes: a GSO skb leaves as segments of gso_size payload bytes,
	// each with its own L3 and L4 headers.
	__u64 wire = len, segs = 1;
	__u32 gso_size = skb->gso_size;
	if (gso_size) {
		__u32 hdr = l3hdr;
		if (l4proto == IPPROTO_TCP) {
			__u8 obuf[1];
			const __u8 *off = header(skb, ETH_HLEN + l3hdr + 12, 1, obuf);
			if (off)
				hdr += (*off >> 4) * 4;
		} else if (l4proto == IPPROTO_UDP) {
			hdr += 8;
		}
		if (len > hdr) {
			__u32 payload = len - hdr;
			segs = (payload + gso_size - 1) / gso_size;
			wire = (__u64)payload + segs * hdr;
		}
	}

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
