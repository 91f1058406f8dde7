//go:build linux

package agent

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// pushSetup is an agent that is never run, only asked to push its state's
// pending batches to a recording server whose answers the test picks.
type pushSetup struct {
	a       *Agent
	token   string // token file
	mu      sync.Mutex
	answers []int // status of each next request; 200 when none is left
	// future is how many more requests have their events with namespace
	// "ns-late" refused for a time in the server's future.
	future int
	got    []pushRequest
}

type pushRequest struct {
	auth   string
	events []Event
}

func newPushSetup(t *testing.T, maxEvents int) *pushSetup {
	t.Helper()
	s := &pushSetup{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req ingestRequest
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.got = append(s.got, pushRequest{auth: r.Header.Get("Authorization"), events: req.Events})
		status := http.StatusOK
		if len(s.answers) > 0 {
			status, s.answers = s.answers[0], s.answers[1:]
		}
		if status != http.StatusOK {
			w.WriteHeader(status)
			return
		}
		resp := map[string]any{"accepted": len(req.Events), "stored": len(req.Events), "duplicates": 0, "rejected": []any{}}
		if s.future > 0 {
			s.future--
			var rejected []any
			for i, e := range req.Events {
				if e.Namespace == "ns-late" {
					rejected = append(rejected, map[string]any{"index": i, "code": "BAD_USER_INPUT", "field": "time", "message": "is in the future"})
				}
			}
			resp = map[string]any{"accepted": len(req.Events) - len(rejected), "stored": len(req.Events) - len(rejected), "duplicates": 0, "rejected": rejected}
		}
		if len(req.Events) > 0 && req.Events[0].Namespace == "kube-system" {
			resp = map[string]any{"accepted": 0, "stored": 0, "duplicates": 0,
				"rejected": []any{map[string]any{"index": 0, "code": "NOT_FOUND", "field": "namespace", "message": "no tenant namespace"}}}
		}
		_ = json.NewEncoder(w).Encode(resp)
	}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	s.token = filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(s.token, []byte("token-1\n"), 0o600))
	kube, err := kubernetes.NewForConfig(&rest.Config{Host: "http://127.0.0.1:1"}) // never called
	require.NoError(t, err)
	a, err := New(Config{
		NodeName: "node-1", IngestURL: srv.URL + "/v1/usage", TokenFile: s.token, StateDir: dir,
		Prefixes:            []Prefix{{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Class: "cluster"}},
		MaxEventsPerRequest: maxEvents,
	}, kube, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)), func() time.Time { return t0 })
	require.NoError(t, err)
	a.st = ledger(t)
	s.a = a
	return s
}

func (s *pushSetup) batch(seq uint64, n int, namespace string) {
	b := batch{Seq: seq}
	for i := range n {
		b.Events = append(b.Events, Event{Namespace: namespace, Resource: "network.internet.egress", Class: "internet",
			Quantity: int64(i + 1), Time: t0.Format(time.RFC3339Nano), Key: "k"})
	}
	s.a.st.Pending = append(s.a.st.Pending, b)
}

func (s *pushSetup) answer(codes ...int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answers = append(s.answers, codes...)
}

func (s *pushSetup) requests() []pushRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]pushRequest(nil), s.got...)
}

func TestPushSplitsBatchesAndKeepsThemUntilAccepted(t *testing.T) {
	t.Parallel()
	s := newPushSetup(t, 2)
	s.batch(1, 5, "ns-a")
	s.batch(2, 1, "ns-b")

	// The second request of batch 1 fails: batch 1 stays, whole, and
	// batch 2 waits behind it.
	s.answer(http.StatusOK, http.StatusServiceUnavailable)
	s.a.push(t.Context())
	require.Len(t, s.requests(), 2)
	require.Len(t, s.a.st.Pending, 2)
	require.Equal(t, 1.0, testutil.ToFloat64(s.a.m.pushErrors))

	// Unauthorized is retried too, with the token read anew.
	require.NoError(t, os.WriteFile(s.token, []byte("token-2\n"), 0o600))
	s.answer(http.StatusUnauthorized)
	s.a.push(t.Context())
	require.Len(t, s.a.st.Pending, 2)

	s.a.push(t.Context())
	require.Empty(t, s.a.st.Pending)
	got := s.requests()
	// 2 + 1 (refused) + batch 1 in three requests of at most 2 events +
	// batch 2.
	require.Len(t, got, 7)
	require.Equal(t, "Bearer token-1", got[0].auth)
	require.Equal(t, "Bearer token-2", got[2].auth)
	var sizes []int
	for _, r := range got[3:] {
		sizes = append(sizes, len(r.events))
	}
	require.Equal(t, []int{2, 2, 1, 1}, sizes)
	// This server stores the first request's 2 events again when batch 1
	// is resent; the ingest API counts them as duplicates by their keys.
	require.Equal(t, 8.0, testutil.ToFloat64(s.a.m.pushed.WithLabelValues("stored")))

	saved, err := loadState(s.a.cfg.StateDir)
	require.NoError(t, err)
	require.Empty(t, saved.Pending, "the state file no longer holds them")
	require.Zero(t, testutil.ToFloat64(s.a.m.pendingBatches))
}

func TestPushDropsABatchRefusedForGood(t *testing.T) {
	t.Parallel()
	s := newPushSetup(t, 100)
	s.batch(1, 3, "ns-a")
	s.batch(2, 2, "kube-system")
	s.batch(3, 1, "ns-a")
	s.answer(http.StatusBadRequest)
	s.a.push(t.Context())
	require.Empty(t, s.a.st.Pending)
	require.Len(t, s.requests(), 3)
	require.Equal(t, 3.0, testutil.ToFloat64(s.a.m.pushed.WithLabelValues("dropped")))
	require.Equal(t, 1.0, testutil.ToFloat64(s.a.m.pushed.WithLabelValues("rejected")))
	require.Equal(t, 1.0, testutil.ToFloat64(s.a.m.pushed.WithLabelValues("stored")))
}

func TestPushWithoutATokenFileRetries(t *testing.T) {
	t.Parallel()
	s := newPushSetup(t, 100)
	s.batch(1, 1, "ns-a")
	require.NoError(t, os.Remove(s.token))
	s.a.push(t.Context())
	require.Len(t, s.a.st.Pending, 1)
	require.Empty(t, s.requests())
	require.Equal(t, 1.0, testutil.ToFloat64(s.a.m.pushErrors))
}

func TestPushSendsEventsRefusedForTheirTimeAgainWhileTheyAreFresh(t *testing.T) {
	t.Parallel()
	s := newPushSetup(t, 100)
	s.batch(1, 2, "ns-a")
	s.a.st.Pending[0].Events = append(s.a.st.Pending[0].Events, Event{Namespace: "ns-late", Resource: "network.internet.egress",
		Class: "internet", Quantity: 7, Time: t0.Format(time.RFC3339Nano), Key: "k-late"})
	s.batch(2, 1, "ns-b")
	s.future = 1
	s.a.push(t.Context())
	// The refused event stays, alone, and what follows waits for it.
	require.Len(t, s.a.st.Pending, 2)
	require.Equal(t, []Event{{Namespace: "ns-late", Resource: "network.internet.egress", Class: "internet", Quantity: 7,
		Time: t0.Format(time.RFC3339Nano), Key: "k-late"}}, s.a.st.Pending[0].Events)
	require.Equal(t, 1.0, testutil.ToFloat64(s.a.m.pushed.WithLabelValues("retried")))
	saved, err := loadState(s.a.cfg.StateDir)
	require.NoError(t, err)
	require.Len(t, saved.Pending[0].Events, 1, "saved as it now is")

	s.a.push(t.Context())
	require.Empty(t, s.a.st.Pending)
	got := s.requests()
	require.Len(t, got, 3)
	require.Equal(t, "k-late", got[1].events[0].Key, "sent again with its key")

	// An old event refused for its time is dropped: waiting mends nothing.
	s.a.now = func() time.Time { return t0.Add(time.Hour) }
	s.batch(3, 0, "")
	s.a.st.Pending[0].Events = []Event{{Namespace: "ns-late", Resource: "network.internet.egress", Class: "internet", Quantity: 1,
		Time: t0.Format(time.RFC3339Nano), Key: "k-old"}}
	s.future = 1
	s.a.push(t.Context())
	require.Empty(t, s.a.st.Pending)
	require.Equal(t, 1.0, testutil.ToFloat64(s.a.m.pushed.WithLabelValues("rejected")))
}
