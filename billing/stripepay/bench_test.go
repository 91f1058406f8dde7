package stripepay_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/billing/stripepay"
)

// BenchmarkWebhooks measures verified webhook deliveries handled per
// second over loopback HTTP: 1,000 top-ups of 100 orgs, each announced by
// checkout.session.completed and payment_intent.succeeded (2,000 events),
// each event delivered 5 times (10,000 deliveries, shuffled) by 8
// concurrent senders. Every delivery is verified; the first of each event
// is stored and processed, the rest are duplicates and change nothing.
// The reference is the same deliveries to a handler that only verifies the
// signature, measured in the same run; the ratio is webhooks ÷ reference.
func BenchmarkWebhooks(b *testing.B) {
	bb := setup(b, func(_ *stripepay.Config, d *stripepay.Deps) {
		d.Logger = slog.New(slog.DiscardHandler)
		d.Observer = nil
	})
	ctx := context.Background()
	const orgs, topUps, copies, senders = 100, 1_000, 5, 8
	orgIDs := make([]int64, orgs)
	for i := range orgIDs {
		orgIDs[i] = newOrg(b, bb.db.Pool, fmt.Sprintf("bench-%d", i), fmt.Sprintf("o%d@bench.example", i))
	}
	var events [][]byte
	want := map[int64]int64{}
	for i := range topUps {
		org := orgIDs[i%orgs]
		cents := int64(500 + i)
		tu, err := bb.store.CreateTopUp(ctx, stripepay.TopUp{OrgID: org, Amount: cents * 10_000, Currency: "USD",
			Status: stripepay.TopUpPending, CreatedBy: "user:1", CreatedAt: t0, UpdatedAt: t0},
			stripepay.Audit{Actor: "user:1", Action: "billing.topup.start", Target: "org:" + itoa(org)})
		require.NoError(b, err)
		pi := fmt.Sprintf("pi_bench_%d", i)
		created := time.Now().Add(-time.Minute)
		events = append(events,
			event("evt_cs_"+pi, "checkout.session.completed", created, checkoutCompleted(org, tu.ID, pi, cents)),
			event("evt_pi_"+pi, "payment_intent.succeeded", created, paymentIntent(org, tu.ID, pi, cents)))
		want[org] += cents * 10_000
	}

	for n := 0; n < b.N; n++ {
		b.StopTimer()
		// Signed before the clock starts, as Stripe signs each delivery.
		var bodies [][]byte
		var headers []string
		for _, e := range events {
			for range copies {
				bodies = append(bodies, e)
				headers = append(headers, sign(e, time.Now(), secret))
			}
		}
		r := rand.New(rand.NewPCG(1, uint64(n)))
		r.Shuffle(len(bodies), func(i, j int) {
			bodies[i], bodies[j] = bodies[j], bodies[i]
			headers[i], headers[j] = headers[j], headers[i]
		})

		verifyOnly := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(r.Body)
			if err == nil {
				_, err = bb.svc.Verify(body, r.Header.Get(stripepay.SignatureHeader))
			}
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			_, _ = w.Write([]byte(`{"received":true}`))
		})
		b.StartTimer()
		ref := sendAll(b, verifyOnly, bodies, headers, senders)
		rate := sendAll(b, bb.svc.Webhook(), bodies, headers, senders)
		b.StopTimer()

		for org, amount := range want {
			require.Equal(b, amount, bb.balance(org).Cash)
		}
		require.Equal(b, topUps, bb.count(`SELECT count(*) FROM ledger_entries`))
		require.Equal(b, len(events), bb.count(`SELECT count(*) FROM stripe_events WHERE processed_at IS NOT NULL AND attempts = 1`))
		bb.verified()
		dups := metricValue(b, bb, "tenantplane_stripe_webhook_events_total", "type", "payment_intent.succeeded", "outcome", "duplicate") +
			metricValue(b, bb, "tenantplane_stripe_webhook_events_total", "type", "checkout.session.completed", "outcome", "duplicate")
		require.Equal(b, float64(len(bodies)-len(events)), dups, "every duplicate ignored")

		b.ReportMetric(rate, "webhooks/s")
		b.ReportMetric(ref, "verify-only/s")
		b.ReportMetric(rate/ref, "ratio")
		fmt.Printf("webhooks: %d deliveries (%d events × %d) by %d senders: %.0f/s; verify-only reference %.0f/s; ratio %.3f\n",
			len(bodies), len(events), copies, senders, rate, ref, rate/ref)
	}
}

// sendAll posts every body with its header to h over loopback HTTP from
// senders goroutines and returns deliveries per second; each must get 200.
func sendAll(b *testing.B, h http.Handler, bodies [][]byte, headers []string, senders int) float64 {
	srv := httptest.NewServer(h)
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: senders}}
	next := make(chan int, len(bodies))
	for i := range bodies {
		next <- i
	}
	close(next)
	var mu sync.Mutex
	var failed error
	start := time.Now()
	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			for i := range next {
				req, _ := http.NewRequest(http.MethodPost, srv.URL+"/webhooks/stripe", bytes.NewReader(bodies[i]))
				req.Header.Set(stripepay.SignatureHeader, headers[i])
				resp, err := client.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					mu.Lock()
					failed = err
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	require.NoError(b, failed)
	return float64(len(bodies)) / elapsed.Seconds()
}
