package reqmeta

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/netip"
)

// Header carries the request id in and out.
const Header = "X-Request-Id"

// RequestID returns id when it is a well-formed request id (at most 64
// letters, digits, '-', '_' or '.'), and a new random one otherwise, so a
// client cannot put arbitrary text into logs.
func RequestID(id string) string {
	if valid(id) {
		return id
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func valid(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// ClientIP is the address of a net/http RemoteAddr ("ip:port", or a bare
// address), IPv4-mapped addresses unmapped; the zero Addr when it has none.
func ClientIP(remoteAddr string) netip.Addr {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return ip.Unmap()
}
