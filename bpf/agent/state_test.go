package agent

import (
	"encoding/json"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// ledger is a state with endpoints 1 (ns-a) and 2 (ns-b) and the classes
// cluster (1) and zone-b (2).
func ledger(t *testing.T) *state {
	t.Helper()
	s, err := newState()
	require.NoError(t, err)
	s.BootID = "boot-1"
	require.NoError(t, s.classIDs([]Prefix{{Class: "zone-b"}, {Class: "cluster"}}))
	require.Equal(t, map[string]uint16{"cluster": 1, "zone-b": 2}, s.Classes)
	s.derive("node-1")
	s.Endpoints[1] = &endpoint{ID: 1, PodUID: "u1", Namespace: "ns-a", Pod: "a"}
	s.Endpoints[2] = &endpoint{ID: 2, PodUID: "u2", Namespace: "ns-b", Pod: "b"}
	s.NextEndpoint = 3
	return s
}

func rd(ep uint32, dir uint8, class uint16, wire uint64) reading {
	return reading{ID: counterID{Endpoint: ep, Direction: dir, Class: class}, WireBytes: wire}
}

type ev struct {
	ns, resource, class string
	q                   int64
	ep                  uint32
}

// events flattens the last pending batch; the key is checked to end in
// "-<endpoint>-<seq>".
func lastBatch(t *testing.T, s *state) []ev {
	t.Helper()
	require.NotEmpty(t, s.Pending)
	b := s.Pending[len(s.Pending)-1]
	var out []ev
	for _, e := range b.Events {
		var ep uint32
		for id, x := range s.Endpoints {
			if x.Namespace == e.Namespace {
				ep = id
			}
		}
		require.Equal(t, t0.Format(time.RFC3339Nano)[:10], e.Time[:10])
		require.Regexp(t, `^[0-9a-f]{24}-\d+-\d+$`, e.Key)
		out = append(out, ev{e.Namespace, e.Resource, e.Class, e.Quantity, ep})
	}
	return out
}

func TestCutTakesDeltasOncePerClassAndDirection(t *testing.T) {
	t.Parallel()
	s := ledger(t)
	r := s.cut([]reading{
		rd(1, 0, 0, 1000), // ns-a internet egress
		rd(1, 1, 1, 300),  // ns-a cluster ingress
		rd(1, 0, 2, 50),   // ns-a zone-b egress
		rd(2, 1, 0, 70),   // ns-b internet ingress
		rd(0, 0, 0, 999),  // nobody's
	}, t0, time.Second, 10)
	require.Equal(t, cutResult{Cut: true, Batched: true, Unattributed: 999}, r)
	require.ElementsMatch(t, []ev{
		{"ns-a", "network.internet.egress", "internet", 1000, 1},
		{"ns-a", "network.cluster.ingress", "cluster", 300, 1},
		{"ns-a", "network.zone-b.egress", "zone-b", 50, 1},
		{"ns-b", "network.internet.ingress", "internet", 70, 2},
	}, lastBatch(t, s))
	keys := map[string]bool{}
	for _, e := range s.Pending[0].Events {
		keys[e.Key] = true
	}
	require.Len(t, keys, 2, "one key per endpoint and batch")

	// Nothing new: no batch.
	r = s.cut([]reading{rd(1, 0, 0, 1000), rd(1, 1, 1, 300), rd(1, 0, 2, 50), rd(2, 1, 0, 70)}, t0.Add(time.Minute), time.Second, 10)
	require.Equal(t, cutResult{Cut: true}, r)
	require.Len(t, s.Pending, 1)

	// Only what grew, by how much it grew.
	r = s.cut([]reading{rd(1, 0, 0, 1500), rd(1, 1, 1, 300), rd(2, 1, 0, 71)}, t0.Add(2*time.Minute), time.Second, 10)
	require.True(t, r.Batched)
	require.ElementsMatch(t, []ev{
		{"ns-a", "network.internet.egress", "internet", 500, 1},
		{"ns-b", "network.internet.ingress", "internet", 1, 2},
	}, lastBatch(t, s))
	require.NotEqual(t, s.Pending[0].Events[0].Key, s.Pending[1].Events[0].Key)
}

func TestCutStopsAtThePendingBoundWithoutLosingBytes(t *testing.T) {
	t.Parallel()
	s := ledger(t)
	s.cut([]reading{rd(1, 0, 0, 100)}, t0, time.Second, 1)
	require.Len(t, s.Pending, 1)

	// The server is away and the bound is reached: the counter grows in
	// the kernel, nothing is taken.
	r := s.cut([]reading{rd(1, 0, 0, 250)}, t0.Add(time.Minute), time.Second, 1)
	require.Equal(t, cutResult{}, r)
	require.Equal(t, uint64(100), s.Sent[counterID{1, 0, 0}])

	// Once the batch is accepted, the next cut has all that waited.
	s.Pending = nil
	s.cut([]reading{rd(1, 0, 0, 400)}, t0.Add(2*time.Minute), time.Second, 1)
	require.Equal(t, []ev{{"ns-a", "network.internet.egress", "internet", 300, 1}}, lastBatch(t, s))
}

func TestCutEndsEndpointsAfterTheirGrace(t *testing.T) {
	t.Parallel()
	s := ledger(t)
	s.cut([]reading{rd(1, 0, 0, 100), rd(2, 0, 0, 10)}, t0, time.Second, 10)
	s.Endpoints[1].EndedAt = t0.Add(30 * time.Second)

	// Within the grace: the ended pod's late bytes are still taken.
	r := s.cut([]reading{rd(1, 0, 0, 120), rd(2, 0, 0, 10)}, t0.Add(30*time.Second+500*time.Millisecond), time.Second, 10)
	require.Empty(t, r.Finalized)
	require.Equal(t, []ev{{"ns-a", "network.internet.egress", "internet", 20, 1}}, lastBatch(t, s))

	// After it: a last delta, then the endpoint and its sent counts go.
	r = s.cut([]reading{rd(1, 0, 0, 121), rd(2, 0, 0, 10)}, t0.Add(31*time.Second), time.Second, 10)
	require.Equal(t, []uint32{1}, r.Finalized)
	require.Equal(t, "ns-a", s.Pending[len(s.Pending)-1].Events[0].Namespace)
	require.Equal(t, int64(1), s.Pending[len(s.Pending)-1].Events[0].Quantity)
	require.NotContains(t, s.Endpoints, uint32(1))
	require.Equal(t, map[counterID]uint64{{2, 0, 0}: 10}, s.Sent)

	// Counters of a dropped endpoint that are still read count for no one.
	n := len(s.Pending)
	s.cut([]reading{rd(1, 0, 0, 500), rd(2, 0, 0, 10)}, t0.Add(32*time.Second), time.Second, 10)
	require.Len(t, s.Pending, n)
}

func TestCutCountsACounterThatWentBackFromZero(t *testing.T) {
	t.Parallel()
	s := ledger(t)
	s.cut([]reading{rd(1, 0, 0, 100)}, t0, time.Second, 10)
	r := s.cut([]reading{rd(1, 0, 0, 40)}, t0.Add(time.Minute), time.Second, 10)
	require.Equal(t, 1, r.Backwards)
	require.Equal(t, []ev{{"ns-a", "network.internet.egress", "internet", 40, 1}}, lastBatch(t, s))
}

func TestKeysDifferByNodeBootAndState(t *testing.T) {
	t.Parallel()
	a := ledger(t)
	b := ledger(t) // another state: another nonce
	c := ledger(t)
	c.Nonce = a.Nonce
	c.derive("node-2")
	d := ledger(t)
	d.Nonce, d.BootID = a.Nonce, "boot-2"
	d.derive("node-1")
	same := ledger(t)
	same.Nonce = a.Nonce
	same.derive("node-1")
	require.Equal(t, a.keyPrefix, same.keyPrefix)
	for _, other := range []*state{b, c, d} {
		require.NotEqual(t, a.keyPrefix, other.keyPrefix)
	}
}

func TestClassIDsNeverChange(t *testing.T) {
	t.Parallel()
	s := ledger(t)
	require.NoError(t, s.classIDs([]Prefix{{Class: "aaa"}, {Class: "cluster"}}))
	require.Equal(t, map[string]uint16{"cluster": 1, "zone-b": 2, "aaa": 3}, s.Classes)
	s.derive("node-1")
	require.Equal(t, "aaa", s.className(3))
	require.Equal(t, ClassInternet, s.className(0))
}

func TestStateFileRoundTrip(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	missing, err := loadState(dir)
	require.NoError(t, err)
	require.Nil(t, missing)

	s := ledger(t)
	s.Endpoints[1].Addrs = []netip.Addr{netip.MustParseAddr("10.244.0.5"), netip.MustParseAddr("2001:db8::5")}
	s.Endpoints[1].EndedAt = t0
	s.cut([]reading{rd(1, 0, 0, 100), rd(2, 1, 2, 5)}, t0, time.Hour, 10)
	require.NoError(t, s.save(dir))
	got, err := loadState(dir)
	require.NoError(t, err)
	got.derive("node-1")
	require.Equal(t, s, got)

	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary file is left")

	var raw map[string]any
	b, err := os.ReadFile(stateFile(dir))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &raw))
	raw["version"] = 99
	b, err = json.Marshal(raw)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(stateFile(dir), b, 0o600))
	_, err = loadState(dir)
	require.ErrorContains(t, err, "version 99")
}

func TestSnapshotRestoreUndoesACut(t *testing.T) {
	t.Parallel()
	s := ledger(t)
	snap := s.snapshot()
	before := string(snap)
	s.cut([]reading{rd(1, 0, 0, 100)}, t0, time.Second, 10)
	s.restore(snap, "node-1")
	require.Equal(t, before, string(s.snapshot()))
	require.NotEmpty(t, s.keyPrefix)
}

func TestCounterIDText(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"", "1/2", "a/0/0", "1/0/70000", "1/2/3/4"} {
		var c counterID
		require.Error(t, c.UnmarshalText([]byte(bad)), bad)
	}
	var c counterID
	require.NoError(t, c.UnmarshalText([]byte("4294967295/1/65535")))
	require.Equal(t, counterID{Endpoint: 4294967295, Direction: 1, Class: 65535}, c)
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	valid := func() Config {
		return Config{NodeName: "n", IngestURL: "http://127.0.0.1:1/v1/usage", StateDir: "/tmp/x",
			Prefixes: []Prefix{{Prefix: netip.MustParsePrefix("10.244.0.0/16"), Class: "cluster"}}}
	}
	c := valid()
	require.NoError(t, c.withDefaults())
	require.Equal(t, time.Minute, c.Interval)
	require.Equal(t, "/sys/fs/bpf/tenantplane", c.PinPath)

	tests := map[string]struct {
		change func(*Config)
		want   string
	}{
		"no node":             {func(c *Config) { c.NodeName = "" }, "node name"},
		"no state":            {func(c *Config) { c.StateDir = "" }, "state folder"},
		"no prefix":           {func(c *Config) { c.Prefixes = nil }, "prefix"},
		"bad url":             {func(c *Config) { c.IngestURL = "ftp://x" }, "http"},
		"internet class":      {func(c *Config) { c.Prefixes[0].Class = ClassInternet }, "class"},
		"upper-case class":    {func(c *Config) { c.Prefixes[0].Class = "Cluster" }, "class"},
		"class with a dot":    {func(c *Config) { c.Prefixes[0].Class = "a.b" }, "class"},
		"invalid prefix":      {func(c *Config) { c.Prefixes[0].Prefix = netip.Prefix{} }, "not valid"},
		"same prefix twice":   {func(c *Config) { c.Prefixes = append(c.Prefixes, Prefix{netip.MustParsePrefix("10.244.1.0/16"), "x"}) }, "twice"},
		"bad pattern":         {func(c *Config) { c.InterfacePattern = "[" }, "pattern"},
		"tiny interval":       {func(c *Config) { c.Interval = time.Millisecond }, "interval"},
		"negative max events": {func(c *Config) { c.MaxEventsPerRequest = -1 }, "positive"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			c := valid()
			tt.change(&c)
			require.ErrorContains(t, c.withDefaults(), tt.want)
		})
	}
}

func TestResourceNames(t *testing.T) {
	t.Parallel()
	require.Equal(t, "network.internet.egress", Resource(ClassInternet, egress))
	require.Equal(t, "network.cluster.ingress", Resource("cluster", ingress))
}
