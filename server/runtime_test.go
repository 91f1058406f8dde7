package server

import (
	"log/slog"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRuntimeConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		cfg   RuntimeConfig
		limit int64
		err   string
	}{
		{name: "zero keeps the runtime's own", cfg: RuntimeConfig{}},
		{name: "a percent", cfg: RuntimeConfig{GCPercent: 400}},
		{name: "a limit", cfg: RuntimeConfig{MemoryLimit: "1536Mi"}, limit: 1536 << 20},
		{name: "decimal units", cfg: RuntimeConfig{MemoryLimit: "2G"}, limit: 2_000_000_000},
		{name: "off until the limit", cfg: RuntimeConfig{GCPercent: -1, MemoryLimit: "1Gi"}, limit: 1 << 30},
		{name: "off without a limit", cfg: RuntimeConfig{GCPercent: -1}, err: "needs --memory-limit"},
		{name: "percent too low", cfg: RuntimeConfig{GCPercent: 10}, err: "--gc-percent"},
		{name: "percent too high", cfg: RuntimeConfig{GCPercent: 20_000}, err: "--gc-percent"},
		{name: "negative percent", cfg: RuntimeConfig{GCPercent: -5}, err: "--gc-percent"},
		{name: "limit not a quantity", cfg: RuntimeConfig{MemoryLimit: "lots"}, err: "--memory-limit"},
		{name: "limit too small", cfg: RuntimeConfig{MemoryLimit: "32Mi"}, err: "below 64Mi"},
		{name: "fractional bytes", cfg: RuntimeConfig{MemoryLimit: "0.5"}, err: "below 64Mi"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.validate()
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.limit, tc.cfg.memoryLimit)
		})
	}
}

// TestRuntimeConfigApply is not parallel: it changes the process's
// collector, and puts it back.
func TestRuntimeConfigApply(t *testing.T) {
	cfg := RuntimeConfig{GCPercent: 400, MemoryLimit: "3Gi"}
	require.NoError(t, cfg.validate())
	restore := cfg.apply(slog.New(slog.DiscardHandler))
	gc := debug.SetGCPercent(100)
	debug.SetGCPercent(gc)
	require.Equal(t, 400, gc)
	require.Equal(t, int64(3<<30), debug.SetMemoryLimit(-1))
	restore()
	gc = debug.SetGCPercent(400)
	debug.SetGCPercent(gc)
	require.NotEqual(t, 400, gc)
	require.NotEqual(t, int64(3<<30), debug.SetMemoryLimit(-1))

	// The zero value changes nothing.
	before := debug.SetMemoryLimit(-1)
	(&RuntimeConfig{}).apply(slog.New(slog.DiscardHandler))()
	require.Equal(t, before, debug.SetMemoryLimit(-1))
}
