package collectors

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/collectors/usage"
	"github.com/tenantplane/tenantplane/collectors/usage/usagestore"
	"github.com/tenantplane/tenantplane/internal/testenv"
)

// TestSamplerCatchUpRecordsGaps: a leader that finds the watermark five
// hours back skips what is beyond its catch-up window as a too-old gap,
// samples the rest, and marks the minutes before its informer had synced
// as not observed.
func TestSamplerCatchUpRecordsGaps(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	ctx := t.Context()
	store := usagestore.New(db.Pool)
	H := time.Now().UTC().Truncate(time.Hour).Add(-6 * time.Hour)
	_, err := store.EnsurePartitions(ctx, H.AddDate(0, 0, -1), H.AddDate(0, 0, 2))
	require.NoError(t, err)
	require.NoError(t, store.WriteMinutes(ctx, usage.MinuteBatch{Source: usage.SourceCompute, From: H, Through: H}))

	now := H.Add(5*time.Hour + 5*time.Second)
	m := newComputeMeter(BasisRequest, BasisRequest, nil, func() time.Time { return now })
	m.markSynced(H.Add(4*time.Hour + 30*time.Minute + 10*time.Second))
	cfg := Config{Identity: "x", SettleDelay: 5 * time.Second, MaxCatchUp: time.Hour, BatchMinutes: 7}
	require.NoError(t, cfg.withDefaults())
	s := &sampler{m: m, store: store, cfg: &cfg, metrics: newMetrics(nil)}
	require.NoError(t, s.sampleDue(ctx, now, store.TenantNamespaces))

	w, ok, err := store.Watermark(ctx, usage.SourceCompute)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, H.Add(5*time.Hour), w.Through)
	gaps, err := store.Gaps(ctx, H, H.Add(6*time.Hour))
	require.NoError(t, err)
	require.Equal(t, []usage.Gap{
		{Source: usage.SourceCompute, Start: H, End: H.Add(4 * time.Hour), Reason: usage.GapTooOld},
		{Source: usage.SourceCompute, Start: H.Add(4 * time.Hour), End: H.Add(4*time.Hour + 31*time.Minute), Reason: usage.GapNotObserved},
	}, mergeGaps(gaps))
}

// mergeGaps joins gaps of one source and reason that touch, as batches
// write them in pieces.
func mergeGaps(gaps []usage.Gap) []usage.Gap {
	var out []usage.Gap
	for _, g := range gaps {
		if n := len(out); n > 0 && out[n-1].Source == g.Source && out[n-1].Reason == g.Reason && out[n-1].End.Equal(g.Start) {
			out[n-1].End = g.End
			continue
		}
		out = append(out, g)
	}
	return out
}
