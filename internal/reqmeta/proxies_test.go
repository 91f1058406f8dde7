package reqmeta_test

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/internal/reqmeta"
)

func TestParseProxies(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		in      []string
		trusted []string
		not     []string
		err     string
	}{
		{name: "none", in: nil, not: []string{"10.0.0.1", "127.0.0.1"}},
		{name: "blank entries are skipped", in: []string{"", "  "}, not: []string{"10.0.0.1"}},
		{
			name: "v4 and v6 networks", in: []string{"10.0.0.0/8", " 2001:db8::/32 "},
			trusted: []string{"10.1.2.3", "::ffff:10.9.9.9", "2001:db8::7"},
			not:     []string{"11.0.0.1", "2001:db9::1"},
		},
		{name: "a bare address is one host", in: []string{"192.0.2.10"}, trusted: []string{"192.0.2.10"}, not: []string{"192.0.2.11"}},
		{name: "host bits are masked", in: []string{"192.0.2.77/24"}, trusted: []string{"192.0.2.1"}, not: []string{"192.0.3.1"}},
		{name: "a mapped network is its v4 network", in: []string{"::ffff:10.0.0.0/104"}, trusted: []string{"10.3.3.3"}, not: []string{"11.0.0.1"}},
		{name: "garbage", in: []string{"10.0.0.0/8", "proxy.example"}, err: `trusted proxy "proxy.example": not an address or CIDR network`},
		{name: "prefix too long", in: []string{"10.0.0.0/33"}, err: "not an address or CIDR network"},
		{name: "every v4 address", in: []string{"0.0.0.0/0"}, err: "would trust every address"},
		{name: "every v6 address", in: []string{"::/0"}, err: "would trust every address"},
		{name: "zone", in: []string{"fe80::1%eth0"}, err: "zones are not allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := reqmeta.ParseProxies(tc.in)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			for _, a := range tc.trusted {
				require.True(t, p.Trusts(netip.MustParseAddr(a)), a)
			}
			for _, a := range tc.not {
				require.False(t, p.Trusts(netip.MustParseAddr(a)), a)
			}
		})
	}
}

func TestProxiesClientIP(t *testing.T) {
	t.Parallel()
	proxies, err := reqmeta.ParseProxies([]string{"10.0.0.0/8", "2001:db8:1::/48"})
	require.NoError(t, err)
	for _, tc := range []struct {
		name    string
		proxies reqmeta.Proxies
		remote  string
		xff     []string
		want    string
	}{
		{name: "no proxies trusted: the peer, whatever the header", remote: "203.0.113.5:4000", xff: []string{"198.51.100.1"}, want: "203.0.113.5"},
		{name: "untrusted peer: the header is ignored", proxies: proxies, remote: "203.0.113.5:4000", xff: []string{"198.51.100.1"}, want: "203.0.113.5"},
		{name: "trusted peer without a header", proxies: proxies, remote: "10.0.0.2:4000", want: "10.0.0.2"},
		{name: "trusted peer: the address it saw", proxies: proxies, remote: "10.0.0.2:4000", xff: []string{"198.51.100.1"}, want: "198.51.100.1"},
		{
			name: "addresses the client wrote are ignored", proxies: proxies, remote: "10.0.0.2:4000",
			xff: []string{"1.2.3.4, 5.6.7.8, 198.51.100.1"}, want: "198.51.100.1",
		},
		{
			name: "a chain of trusted proxies", proxies: proxies, remote: "10.0.0.2:4000",
			xff: []string{"1.2.3.4, 198.51.100.1, 10.20.0.1 ,10.30.0.1"}, want: "198.51.100.1",
		},
		{
			name: "several header lines, newest last", proxies: proxies, remote: "[2001:db8:1::9]:443",
			xff: []string{"1.2.3.4, 198.51.100.1", "10.20.0.1"}, want: "198.51.100.1",
		},
		{name: "v6 client with a port", proxies: proxies, remote: "10.0.0.2:4000", xff: []string{"[2001:db8:99::1]:5555"}, want: "2001:db8:99::1"},
		{name: "v4 client with a port", proxies: proxies, remote: "10.0.0.2:4000", xff: []string{"198.51.100.1:5555"}, want: "198.51.100.1"},
		{name: "mapped client", proxies: proxies, remote: "10.0.0.2:4000", xff: []string{"::ffff:198.51.100.1"}, want: "198.51.100.1"},
		{name: "mapped trusted peer", proxies: proxies, remote: "[::ffff:10.0.0.2]:4000", xff: []string{"198.51.100.1"}, want: "198.51.100.1"},
		{name: "empty entries are skipped", proxies: proxies, remote: "10.0.0.2:4000", xff: []string{"198.51.100.1, , "}, want: "198.51.100.1"},
		{
			name: "garbage stops at the last trusted hop", proxies: proxies, remote: "10.0.0.2:4000",
			xff: []string{"198.51.100.1, unknown, 10.20.0.1"}, want: "10.20.0.1",
		},
		{name: "garbage right at the peer", proxies: proxies, remote: "10.0.0.2:4000", xff: []string{"<script>"}, want: "10.0.0.2"},
		{name: "every hop trusted: the leftmost", proxies: proxies, remote: "10.0.0.2:4000", xff: []string{"10.9.0.1, 10.8.0.1"}, want: "10.9.0.1"},
		{name: "peer without an address", proxies: proxies, remote: "pipe", xff: []string{"198.51.100.1"}, want: "invalid IP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = tc.remote
			for _, v := range tc.xff {
				r.Header.Add(reqmeta.ForwardedForHeader, v)
			}
			require.Equal(t, tc.want, tc.proxies.ClientIP(r).String())
		})
	}
}
