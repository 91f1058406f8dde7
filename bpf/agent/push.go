//go:build linux

package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"
)

// ingestRequest is the body of POST /v1/usage.
type ingestRequest struct {
	Events []Event `json:"events"`
}

// ingestResponse is the ingest API's answer to a batch.
type ingestResponse struct {
	Accepted   int `json:"accepted"`
	Stored     int `json:"stored"`
	Duplicates int `json:"duplicates"`
	Rejected   []struct {
		Index   int    `json:"index"`
		Code    string `json:"code"`
		Field   string `json:"field"`
		Message string `json:"message"`
	} `json:"rejected"`
}

// push sends the pending batches in order until one fails, and saves the
// state once the sent ones are off it. A batch that was sent but not taken
// off the saved state is sent again after a restart, and its events are
// then duplicates the ingest API ignores.
func (a *Agent) push(ctx context.Context) {
	snap := a.st.snapshot()
	sent, changed := 0, false
	for sent < len(a.st.Pending) {
		done, retry := a.send(ctx, a.st.Pending[sent])
		if !done {
			break
		}
		if len(retry) > 0 {
			// The ingest API's clock is behind ours: these events
			// go again, with their keys, once it has caught up.
			a.mu.Lock()
			a.st.Pending[sent].Events = retry
			a.mu.Unlock()
			changed = true
			break
		}
		sent++
	}
	if sent == 0 && !changed {
		return
	}
	a.mu.Lock()
	a.st.Pending = a.st.Pending[sent:]
	a.mu.Unlock()
	if !a.save(snap, "a push") {
		// The file still has them: keep going without them, they are
		// sent again, as duplicates, only if the agent restarts first.
		a.mu.Lock()
		a.st.Pending = a.st.Pending[sent:]
		a.mu.Unlock()
	}
	a.updateGauges()
}

// skewRetry is how young (by our clock) an event refused for its time may
// be to be sent again rather than dropped: the ingest API refuses events
// from its future, which clock skew between hosts makes of fresh ones.
const skewRetry = 10 * time.Minute

// send posts one batch, in requests of at most MaxEventsPerRequest events.
// It reports whether the batch is done with: accepted, or refused for good
// (a malformed or oversized request, which no retry mends); retry are the
// events of a done batch refused for a time in the ingest API's future.
func (a *Agent) send(ctx context.Context, b batch) (done bool, retry []Event) {
	token, err := os.ReadFile(a.cfg.TokenFile)
	if err != nil {
		a.m.pushErrors.Inc()
		a.log.Error("reading the ServiceAccount token", "file", a.cfg.TokenFile, "err", err)
		return false, nil
	}
	now := a.now()
	for start := 0; start < len(b.Events); start += a.cfg.MaxEventsPerRequest {
		events := b.Events[start:min(start+a.cfg.MaxEventsPerRequest, len(b.Events))]
		status, resp, err := a.post(ctx, strings.TrimSpace(string(token)), events)
		switch {
		case err != nil:
			a.m.pushErrors.Inc()
			a.log.Warn("pushing network usage; will retry", "batch", b.Seq, "err", err)
			return false, nil
		case status == http.StatusOK:
			a.m.pushed.WithLabelValues("stored").Add(float64(resp.Stored))
			a.m.pushed.WithLabelValues("duplicate").Add(float64(resp.Duplicates))
			for _, r := range resp.Rejected {
				if r.Index < 0 || r.Index >= len(events) {
					continue
				}
				e := events[r.Index]
				if at, err := time.Parse(time.RFC3339Nano, e.Time); err == nil && r.Field == "time" && now.Sub(at) < skewRetry {
					a.m.pushed.WithLabelValues("retried").Inc()
					a.log.Warn("the ingest API refused a network usage event for its time; the clocks differ, it goes again",
						"batch", b.Seq, "time", e.Time, "message", r.Message)
					retry = append(retry, e)
					continue
				}
				a.m.pushed.WithLabelValues("rejected").Inc()
				level := slog.LevelWarn
				if r.Code == "NOT_FOUND" {
					// A namespace that is no tenant's: platform pods.
					level = slog.LevelDebug
				}
				a.log.Log(ctx, level, "the ingest API rejected a network usage event", "batch", b.Seq, "namespace", e.Namespace,
					"resource", e.Resource, "quantity", e.Quantity, "code", r.Code, "field", r.Field, "message", r.Message)
			}
		case status == http.StatusBadRequest || status == http.StatusRequestEntityTooLarge || status == http.StatusUnprocessableEntity:
			a.m.pushed.WithLabelValues("dropped").Add(float64(len(events)))
			a.log.Error("the ingest API refused a batch of network usage for good; dropping it", "batch", b.Seq, "status", status, "events", len(events))
		default:
			a.m.pushErrors.Inc()
			a.log.Warn("pushing network usage; will retry", "batch", b.Seq, "status", status)
			return false, nil
		}
	}
	return true, retry
}

func (a *Agent) post(ctx context.Context, token string, events []Event) (int, ingestResponse, error) {
	var resp ingestResponse
	body, err := json.Marshal(ingestRequest{Events: events})
	if err != nil {
		return 0, resp, fmt.Errorf("encode events: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.cfg.IngestURL, bytes.NewReader(body))
	if err != nil {
		return 0, resp, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := a.http.Do(req)
	if err != nil {
		return 0, resp, fmt.Errorf("post usage: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<16))
		return res.StatusCode, resp, nil
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, 16<<20)).Decode(&resp); err != nil {
		return res.StatusCode, resp, fmt.Errorf("decode ingest response: %w", err)
	}
	return res.StatusCode, resp, nil
}
