package usage

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/internal/errcode"
)

// nopReader answers every read with nothing; the tests here are about
// what reaches it.
type nopReader struct{ calls int }

func (r *nopReader) ClosedThrough(context.Context) (time.Time, bool, error) {
	return time.Time{}, false, nil
}
func (r *nopReader) HourlySince(context.Context, int64, int) ([]Hourly, error) {
	return nil, nil
}
func (r *nopReader) Series(context.Context, Scope, time.Time, time.Time, Granularity) (map[SeriesKey][]Point, error) {
	r.calls++
	return map[SeriesKey][]Point{{Resource: Memory}: nil, {Resource: CPU}: nil}, nil
}
func (r *nopReader) Gaps(context.Context, time.Time, time.Time) ([]Gap, error) { return nil, nil }

func TestQueriesValidateTheRange(t *testing.T) {
	t.Parallel()
	r := &nopReader{}
	q, err := NewQueries(r, QueryConfig{MaxPoints: 100})
	require.NoError(t, err)
	ctx := t.Context()
	h := time.Date(2030, 1, 1, 10, 0, 0, 0, time.UTC)
	for name, tc := range map[string]struct {
		from, to time.Time
		g        Granularity
		field    string
	}{
		"bad granularity": {h, h.Add(time.Hour), "week", "granularity"},
		"empty":           {h, h, ByHour, "to"},
		"unaligned from":  {h.Add(time.Minute), h.Add(2 * time.Hour), ByHour, "from"},
		"unaligned to":    {h, h.Add(90 * time.Second), ByMinute, "to"},
		"too many points": {h, h.Add(101 * time.Minute), ByMinute, "to"},
	} {
		_, err := q.Namespace(ctx, 1, tc.from, tc.to, tc.g)
		e, ok := errcode.As(err)
		require.True(t, ok, name)
		require.Equal(t, errcode.BadUserInput, e.Code, name)
		require.Equal(t, tc.field, e.Field, name)
	}
	require.Zero(t, r.calls, "nothing invalid reaches the store")

	u, err := q.Org(ctx, 3, h, h.Add(100*time.Minute), ByMinute)
	require.NoError(t, err)
	require.Equal(t, []Series{{Resource: CPU, Unit: "millicore-minutes"}, {Resource: Memory, Unit: "MiB-minutes"}}, u.Series)
	_, err = q.Org(ctx, 0, h, h.Add(time.Hour), ByHour)
	require.Equal(t, errcode.BadUserInput, errcode.Of(err))
}

func TestUpkeepConfig(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]UpkeepConfig{
		"retention not days":   {Retention: 50 * time.Hour},
		"retention too short":  {Retention: 24 * time.Hour},
		"late window too long": {Retention: 72 * time.Hour, LateWindow: 60 * time.Hour},
		"bad source":           {RequiredSources: []string{"Compute"}},
	} {
		require.Error(t, cfg.withDefaults(), name)
	}
	cfg := UpkeepConfig{}
	require.NoError(t, cfg.withDefaults())
	require.Equal(t, []string{SourceCompute, SourceStorage}, cfg.RequiredSources)
}

func TestSampleValidateAndUnits(t *testing.T) {
	t.Parallel()
	m := time.Date(2030, 1, 1, 10, 0, 0, 0, time.UTC)
	require.NoError(t, Sample{NamespaceID: 1, Resource: NetworkInternetEgress, Class: "internet", Minute: m, Key: "k-1"}.Validate())
	require.Error(t, Sample{NamespaceID: 1, Resource: NetworkInternetEgress, Class: "cluster", Minute: m, Key: "k-1"}.Validate(), "the class in the name is the class")
	require.Error(t, Sample{NamespaceID: 1, Resource: "network.egress", Class: "internet", Minute: m, Key: "k-1"}.Validate(), "the class is in the name")
	require.Error(t, Sample{NamespaceID: 1, Resource: CPU, Minute: m.Add(time.Nanosecond)}.Validate())
	require.Equal(t, "bytes", Unit(NetworkClusterIngress))
	require.Equal(t, "device-minutes", Unit(GPU))
	require.Equal(t, 24*time.Hour, ByDay.Step())
}

func TestNetworkNames(t *testing.T) {
	t.Parallel()
	require.Equal(t, NetworkInternetEgress, NetworkResource(NetworkInternet, Egress))
	require.Equal(t, NetworkInternetIngress, NetworkResource(NetworkInternet, Ingress))
	require.Equal(t, NetworkClusterEgress, NetworkResource(NetworkCluster, Egress))
	require.Equal(t, NetworkClusterIngress, NetworkResource(NetworkCluster, Ingress))
	for _, tc := range []struct {
		resource, class string
		want            bool
	}{
		{NetworkInternetEgress, "internet", true},
		{NetworkClusterIngress, "cluster", true},
		{"network.zone-a.egress", "zone-a", true}, // a class of the agents' own
		{NetworkInternetEgress, "cluster", false},
		{NetworkInternetEgress, "", false},
		{"network.egress", "internet", false},
		{"network.internet.sideways", "internet", false},
		{"network.a.b.egress", "a.b", false},
		{CPU, "", true}, // not a network resource
	} {
		require.Equal(t, tc.want, ValidNetwork(tc.resource, tc.class), "%s/%s", tc.resource, tc.class)
	}
}

func TestNameRules(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{"cpu": true, "network.internet.egress": true, "a_b-c.d9": true, "": false, "9cpu": false, "CPU": false, "cpu ": false} {
		require.Equal(t, want, ValidResource(s), s)
	}
	for s, want := range map[string]bool{"": true, "nvidia.com/gpu": true, "Fast-SSD_2": true, "/x": false, "a b": false, "é": false} {
		require.Equal(t, want, ValidClass(s), s)
	}
	for s, want := range map[string]bool{"k": true, "a:b/c#1": true, "": false, "a b": false, "\x7f": false} {
		require.Equal(t, want, ValidKey(s), s)
	}
}
