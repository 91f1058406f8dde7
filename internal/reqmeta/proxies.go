package reqmeta

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// ForwardedForHeader lists the addresses a request came through, each
// proxy appending the address of the peer it got the request from.
const ForwardedForHeader = "X-Forwarded-For"

// Proxies are the networks of the reverse proxies (load balancers,
// ingress controllers) whose X-Forwarded-For the server believes. The
// zero value trusts none: the client is always the TCP peer.
type Proxies struct {
	nets []netip.Prefix
}

// ParseProxies reads a list of trusted proxy networks in CIDR notation
// ("10.0.0.0/8", "2001:db8::/32"); a bare address is a network of one.
// Networks that would trust every address ("0.0.0.0/0", "::/0") are
// refused: with them any client could name its own address.
func ParseProxies(cidrs []string) (Proxies, error) {
	var p Proxies
	for _, s := range cidrs {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		var (
			pfx netip.Prefix
			err error
		)
		if strings.Contains(s, "/") {
			pfx, err = netip.ParsePrefix(s)
		} else {
			var a netip.Addr
			a, err = netip.ParseAddr(s)
			if err == nil && a.Zone() != "" {
				return Proxies{}, fmt.Errorf("trusted proxy %q: zones are not allowed", s)
			}
			pfx = netip.PrefixFrom(a, a.BitLen())
		}
		if err != nil {
			return Proxies{}, fmt.Errorf("trusted proxy %q: not an address or CIDR network", s)
		}
		if pfx.Addr().Is4In6() {
			pfx = netip.PrefixFrom(pfx.Addr().Unmap(), max(pfx.Bits()-96, 0))
		}
		if pfx.Bits() == 0 {
			return Proxies{}, fmt.Errorf("trusted proxy %q: would trust every address", s)
		}
		p.nets = append(p.nets, pfx.Masked())
	}
	return p, nil
}

// Trusts reports whether a is the address of a trusted proxy.
func (p Proxies) Trusts(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = a.Unmap().WithZone("")
	for _, n := range p.nets {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

// ClientIP is the address of the client that sent r. It is the TCP peer
// (r.RemoteAddr) unless the peer is a trusted proxy; then X-Forwarded-For
// is read from the right, over the trusted proxies that appended to it,
// and the first address that is not one is the client. Addresses left of
// it were written by the client and are ignored. Should an entry not
// parse, the last trusted hop is the answer; should every entry be a
// trusted proxy, the leftmost is. The zero Addr when the peer has none.
func (p Proxies) ClientIP(r *http.Request) netip.Addr {
	peer := ClientIP(r.RemoteAddr)
	if len(p.nets) == 0 || !p.Trusts(peer) {
		return peer
	}
	hop := peer
	values := r.Header.Values(ForwardedForHeader)
	for i := len(values) - 1; i >= 0; i-- {
		rest := values[i]
		for rest != "" {
			var entry string
			if j := strings.LastIndexByte(rest, ','); j >= 0 {
				rest, entry = rest[:j], rest[j+1:]
			} else {
				rest, entry = "", rest
			}
			entry = strings.TrimSpace(entry)
			if entry == "" {
				continue
			}
			a := forwardedAddr(entry)
			if !a.IsValid() {
				return hop
			}
			if !p.Trusts(a) {
				return a
			}
			hop = a
		}
	}
	return hop
}

// forwardedAddr parses one X-Forwarded-For entry: an address, possibly
// with a port ("192.0.2.1:80", "[2001:db8::1]:80"), unmapped and without
// a zone; the zero Addr when it is none.
func forwardedAddr(s string) netip.Addr {
	a, err := netip.ParseAddr(s)
	if err != nil {
		ap, perr := netip.ParseAddrPort(s)
		if perr != nil {
			return netip.Addr{}
		}
		a = ap.Addr()
	}
	return a.Unmap().WithZone("")
}
