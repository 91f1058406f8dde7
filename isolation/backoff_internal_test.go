package isolation

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBackoff(t *testing.T) {
	t.Parallel()
	r := &Reconciler{rc: ReconcilerConfig{RetryBase: time.Second, RetryMax: 5 * time.Minute}}
	tests := []struct {
		attempts int
		want     time.Duration
	}{
		{1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {4, 8 * time.Second},
		{9, 256 * time.Second}, {10, 5 * time.Minute}, {100, 5 * time.Minute}, {0, time.Second},
	}
	for _, tc := range tests {
		require.Equal(t, tc.want, r.backoff(tc.attempts), "attempt %d", tc.attempts)
	}
}

func TestParseKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		key  string
		kind string
		id   int64
		ok   bool
	}{
		{"ns:7", "ns", 7, true}, {"user:42", "user", 42, true}, {"org:3", "org", 3, true},
		{"ns:0", "", 0, false}, {"ns:-1", "", 0, false}, {"ns:x", "", 0, false},
		{"invite:4", "", 0, false}, {"ns7", "", 0, false}, {"", "", 0, false},
	}
	for _, tc := range tests {
		kind, id, err := parseKey(tc.key)
		if !tc.ok {
			require.Error(t, err, tc.key)
			continue
		}
		require.NoError(t, err, tc.key)
		require.Equal(t, tc.kind, kind)
		require.Equal(t, tc.id, id)
	}
}
