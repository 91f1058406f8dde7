//go:build linux

package bpf

import (
	"encoding/binary"
	"net/netip"
)

// Protocol numbers of the test packets.
const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
)

// packet describes a test frame: Ethernet, IPv4 or IPv6 (by the family of
// src), an L4 header and payload zero bytes.
type packet struct {
	src, dst netip.Addr
	proto    uint8
	// l4 is the L4 header length: 20 to 60 for TCP (data offset), 8 for
	// UDP and ICMP.
	l4      int
	icmp    uint8 // ICMP type
	payload int
}

// ipLen is the length of the IP packet, what the meter counts as bytes.
func (p packet) ipLen() int {
	if p.src.Is4() {
		return 20 + p.l4 + p.payload
	}
	return 40 + p.l4 + p.payload
}

// frame returns the Ethernet frame.
func (p packet) frame() []byte {
	b := make([]byte, 14+p.ipLen())
	copy(b[0:6], []byte{0x02, 0, 0, 0, 0, 1})
	copy(b[6:12], []byte{0x02, 0, 0, 0, 0, 2})
	ip := b[14:]
	var l4 []byte
	if p.src.Is4() {
		binary.BigEndian.PutUint16(b[12:], 0x0800)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(p.ipLen()))
		ip[8] = 64
		ip[9] = p.proto
		s, d := p.src.As4(), p.dst.As4()
		copy(ip[12:16], s[:])
		copy(ip[16:20], d[:])
		l4 = ip[20:]
	} else {
		binary.BigEndian.PutUint16(b[12:], 0x86dd)
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(p.l4+p.payload))
		ip[6] = p.proto
		ip[7] = 64
		s, d := p.src.As16(), p.dst.As16()
		copy(ip[8:24], s[:])
		copy(ip[24:40], d[:])
		l4 = ip[40:]
	}
	switch p.proto {
	case protoTCP:
		binary.BigEndian.PutUint16(l4[0:], 40000)
		binary.BigEndian.PutUint16(l4[2:], 80)
		l4[12] = byte(p.l4/4) << 4
	case protoUDP:
		binary.BigEndian.PutUint16(l4[0:], 40000)
		binary.BigEndian.PutUint16(l4[2:], 53)
		binary.BigEndian.PutUint16(l4[4:], uint16(p.l4+p.payload))
	case protoICMP, protoICMPv6:
		l4[0] = p.icmp
	}
	return b
}

// skbContext returns a struct __sk_buff for BPF_PROG_TEST_RUN with the GSO
// fields set; everything else must be zero.
func skbContext(gsoSize, gsoSegs uint32) []byte {
	ctx := make([]byte, 192)
	binary.LittleEndian.PutUint32(ctx[164:], gsoSegs)
	binary.LittleEndian.PutUint32(ctx[176:], gsoSize)
	return ctx
}
