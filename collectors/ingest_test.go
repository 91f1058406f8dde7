package collectors

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

type ingestBundle struct {
	*bundle
	url      string
	meter    string // token of the meter's ServiceAccount
	intruder string // token of a ServiceAccount that is no meter
	ns       string
	id       int64
	now      time.Time
	handler  *Ingest
}

func setupIngest(t *testing.T, cfg IngestConfig) *ingestBundle {
	t.Helper()
	b := setup(t, false)
	ib := &ingestBundle{bundle: b}
	ib.ns, ib.id = b.namespace(t, true, "active")
	meters, _ := b.namespace(t, false, "")
	token := func(name string) string {
		_, err := b.kube.Client().CoreV1().ServiceAccounts(meters).Create(b.ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		require.NoError(t, err)
		_, rc, err := b.kube.ServiceAccountKubeconfig(b.ctx, meters, name, 10*time.Minute)
		require.NoError(t, err)
		return rc.BearerToken
	}
	ib.meter, ib.intruder = token("netmeter"), token("intruder")
	if cfg.Meters == nil {
		cfg.Meters = []Meter{{Name: "network", ServiceAccounts: []string{meters + "/netmeter"}, Resources: []string{"network.*"}}}
	}
	ib.now = time.Now().UTC().Truncate(time.Second)
	b.clock.Set(ib.now)
	h, err := NewIngest(cfg, b.kube.Client().AuthenticationV1(), b.store, nil, b.log, b.clock.Now)
	require.NoError(t, err)
	ib.handler = h
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	ib.url = srv.URL
	return ib
}

func (ib *ingestBundle) post(t *testing.T, token string, body any) (int, IngestResponse, string) {
	t.Helper()
	var buf bytes.Buffer
	switch v := body.(type) {
	case string:
		buf.WriteString(v)
	default:
		require.NoError(t, json.NewEncoder(&buf).Encode(v))
	}
	req, err := http.NewRequestWithContext(ib.ctx, http.MethodPost, ib.url, &buf)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var raw bytes.Buffer
	_, _ = raw.ReadFrom(resp.Body)
	var out IngestResponse
	if resp.StatusCode == http.StatusOK {
		require.NoError(t, json.Unmarshal(raw.Bytes(), &out))
	}
	return resp.StatusCode, out, raw.String()
}

func (ib *ingestBundle) event(resource, class string, q int64, at time.Time, key string) Event {
	return Event{Namespace: ib.ns, Resource: resource, Class: class, Quantity: json.Number(fmt.Sprint(q)), Time: at.Format(time.RFC3339Nano), Key: key}
}

func (ib *ingestBundle) stored(t *testing.T) int64 {
	t.Helper()
	var n int64
	require.NoError(t, ib.pool.QueryRow(ib.ctx, `SELECT coalesce(sum(quantity), 0) FROM usage_minute WHERE source = 'network'`).Scan(&n))
	return n
}

func TestIngestAuthenticatesAndAuthorizesMeters(t *testing.T) {
	t.Parallel()
	ib := setupIngest(t, IngestConfig{})
	batch := IngestRequest{Events: []Event{ib.event("network.internet.egress", "internet", 100, ib.now, "k1")}}
	for name, token := range map[string]string{"no token": "", "not a token": "garbage", "tampered": ib.meter + "x"} {
		code, _, body := ib.post(t, token, batch)
		require.Equal(t, http.StatusUnauthorized, code, name)
		require.Contains(t, body, `"UNAUTHENTICATED"`, name)
	}
	code, _, body := ib.post(t, ib.intruder, batch)
	require.Equal(t, http.StatusForbidden, code)
	require.Contains(t, body, `"FORBIDDEN"`)
	require.Zero(t, ib.stored(t))

	code, resp, _ := ib.post(t, ib.meter, batch)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, IngestResponse{Accepted: 1, Stored: 1, Rejected: []Rejection{}}, resp)
	require.Equal(t, int64(100), ib.stored(t))
}

// TestIngestMixedBatchKeepsTheGoodEvents sends a batch of good events and
// every kind of bad one: each bad one is rejected on its own, the good ones
// are stored, a resent batch stores nothing twice.
func TestIngestMixedBatchKeepsTheGoodEvents(t *testing.T) {
	t.Parallel()
	ib := setupIngest(t, IngestConfig{LateWindow: time.Hour})
	now := ib.now
	events := []Event{
		ib.event("network.internet.egress", "internet", 1000, now.Add(-time.Second), "good-1"),                                                     // 0
		ib.event("network.internet.egress", "internet", -5, now, "negative"),                                                                       // 1
		ib.event("network.internet.egress", "internet", 7, now.Add(time.Minute), "future"),                                                         // 2
		ib.event("network.cluster.egress", "cluster", 20, now.Add(-50*time.Minute), "late-ok"),                                                     // 3
		ib.event("network.cluster.egress", "cluster", 30, now.Add(-2*time.Hour), "too-late"),                                                       // 4
		ib.event("cpu", "", 30, now, "not-mine"),                                                                                                   // 5
		ib.event("network.cluster.ingress", "cluster", 1, now, "bad key"),                                                                          // 6
		ib.event("network.internet.egress", "internet", 1000, now.Add(-time.Second), "good-1"),                                                     // 7: repeat of 0 in the batch
		{Namespace: "no-such-ns", Resource: "network.internet.egress", Class: "internet", Quantity: "5", Time: now.Format(time.RFC3339), Key: "x"}, // 8
		{Namespace: ib.ns, Resource: "network.internet.egress", Class: "internet", Quantity: "1.5", Time: now.Format(time.RFC3339), Key: "frac"},   // 9
		{Namespace: ib.ns, Resource: "network.internet.egress", Class: "internet", Quantity: "1", Time: "yesterday", Key: "when"},                  // 10
		ib.event("network.cluster.ingress", "cluster", 300, now.Add(-2*time.Second), "good-2"),                                                     // 11
		ib.event("network.egress", "internet", 5, now, "no-class-in-name"),                                                                         // 12
		ib.event("network.internet.egress", "cluster", 5, now, "other-class"),                                                                      // 13
	}
	code, resp, body := ib.post(t, ib.meter, IngestRequest{Events: events})
	require.Equal(t, http.StatusOK, code, body)
	type rej struct {
		i           int
		code, field string
	}
	var got []rej
	for _, r := range resp.Rejected {
		got = append(got, rej{r.Index, r.Code, r.Field})
	}
	require.Equal(t, []rej{
		{1, "BAD_USER_INPUT", "quantity"}, {2, "BAD_USER_INPUT", "time"}, {4, "BAD_USER_INPUT", "time"},
		{5, "FORBIDDEN", "resource"}, {6, "BAD_USER_INPUT", "key"}, {8, "NOT_FOUND", "namespace"},
		{9, "BAD_USER_INPUT", "quantity"}, {10, "BAD_USER_INPUT", "time"},
		{12, "BAD_USER_INPUT", "resource"}, {13, "BAD_USER_INPUT", "resource"},
	}, got)
	require.Equal(t, 4, resp.Accepted)
	require.Equal(t, 3, resp.Stored)
	require.Equal(t, 1, resp.Duplicates)
	require.Equal(t, int64(1000+20+300), ib.stored(t))

	// The same batch again: nothing new.
	code, resp, _ = ib.post(t, ib.meter, IngestRequest{Events: events})
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, 4, resp.Accepted)
	require.Equal(t, 0, resp.Stored)
	require.Equal(t, 4, resp.Duplicates)
	require.Equal(t, int64(1320), ib.stored(t))

	// Stored under the namespace's id in the event's minute.
	var ns int64
	var minute time.Time
	require.NoError(t, ib.pool.QueryRow(ib.ctx, `SELECT namespace_id, minute FROM usage_minute WHERE key = 'late-ok'`).Scan(&ns, &minute))
	require.Equal(t, ib.id, ns)
	require.Equal(t, now.Add(-50*time.Minute).Truncate(time.Minute), minute.UTC())
}

// TestIngestLateEventInAClosedHourIsACorrection: an hour closes, then a
// late event inside the window lands in it; the rollup gets a correction
// revision with exactly that event's quantity.
func TestIngestLateEventInAClosedHourIsACorrection(t *testing.T) {
	t.Parallel()
	ib := setupIngest(t, IngestConfig{LateWindow: 3 * time.Hour})
	hour := ib.now.Truncate(time.Hour).Add(-time.Hour)
	code, _, _ := ib.post(t, ib.meter, IngestRequest{Events: []Event{ib.event("network.internet.egress", "internet", 500, hour.Add(10*time.Minute), "on-time")}})
	require.Equal(t, http.StatusOK, code)
	closed, err := ib.store.CloseHours(ib.ctx, hour.Add(time.Hour), hour, 5, ib.now)
	require.NoError(t, err)
	require.Equal(t, hour.Add(time.Hour), closed)

	code, resp, _ := ib.post(t, ib.meter, IngestRequest{Events: []Event{ib.event("network.internet.egress", "internet", 42, hour.Add(20*time.Minute), "late")}})
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, 1, resp.Stored)
	_, err = ib.store.Correct(ib.ctx, hour.Add(-24*time.Hour), ib.now)
	require.NoError(t, err)
	rows, err := ib.store.HourlySince(ib.ctx, 0, 10)
	require.NoError(t, err)
	require.Len(t, rows, 2)
	require.Equal(t, []int64{500, 42}, []int64{rows[0].Quantity, rows[1].Quantity})
	require.Equal(t, []int{0, 1}, []int{rows[0].Revision, rows[1].Revision})
}

func TestIngestBoundsTheBatch(t *testing.T) {
	t.Parallel()
	ib := setupIngest(t, IngestConfig{MaxEvents: 3, MaxBodyBytes: 2048})
	var events []Event
	for i := range 4 {
		events = append(events, ib.event("network.internet.egress", "internet", 1, ib.now, fmt.Sprintf("k%d", i)))
	}
	code, _, body := ib.post(t, ib.meter, IngestRequest{Events: events})
	require.Equal(t, http.StatusRequestEntityTooLarge, code, body)
	code, _, _ = ib.post(t, ib.meter, `{"events":[`+strings.Repeat(" ", 4096)+`]}`)
	require.Equal(t, http.StatusRequestEntityTooLarge, code)
	// Without a Content-Length, the body is cut where it passes the bound.
	req, err := http.NewRequestWithContext(ib.ctx, http.MethodPost, ib.url, io.MultiReader(strings.NewReader(`{"events":[`+strings.Repeat(" ", 4096)+`]}`)))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+ib.meter)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	code, _, body = ib.post(t, ib.meter, `{"events": 12}`)
	require.Equal(t, http.StatusBadRequest, code, body)
	require.Zero(t, ib.stored(t))
}
