package reqmeta_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/internal/reqmeta"
)

func TestRequestID(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		kept bool
	}{
		{"abc-123", true},
		{"A.b_C-9", true},
		{strings.Repeat("x", 64), true},
		{strings.Repeat("x", 65), false},
		{"", false},
		{"bad id", false},
		{"x\"<script>", false},
		{"línea", false},
	} {
		got := reqmeta.RequestID(tc.in)
		if tc.kept {
			require.Equal(t, tc.in, got)
			continue
		}
		require.NotEqual(t, tc.in, got)
		require.Len(t, got, 24)
		require.Equal(t, got, reqmeta.RequestID(got), "a made id is well-formed")
	}
	require.NotEqual(t, reqmeta.RequestID(""), reqmeta.RequestID(""), "made ids differ")
}

func TestClientIP(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"192.0.2.1:5555":        "192.0.2.1",
		"[2001:db8::1]:443":     "2001:db8::1",
		"[::ffff:192.0.2.7]:80": "192.0.2.7",
		"198.51.100.3":          "198.51.100.3",
		"pipe":                  "invalid IP",
		"":                      "invalid IP",
	} {
		require.Equal(t, want, reqmeta.ClientIP(in).String(), in)
	}
	require.Equal(t, netip.Addr{}, reqmeta.ClientIP("nonsense:1"))
}
