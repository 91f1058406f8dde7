package collectors

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/tenantplane/tenantplane/collectors/usage"
	"github.com/tenantplane/tenantplane/collectors/usage/usagestore"
	"github.com/tenantplane/tenantplane/internal/testenv"
)

// BenchmarkIngest measures POST /v1/usage on loopback: each iteration sends
// 400,000 events, in batches of 5,000 over 4 connections, each event new
// (so every one is stored), spread over 100 tenant namespaces. Bodies are
// encoded before the clock starts; the token is checked by a real
// TokenReview and then cached.
func BenchmarkIngest(b *testing.B) {
	bb := benchSetup(b)
	ib := &ingestBundle{bundle: bb}
	var names []string
	for range 100 {
		ns, _ := bb.namespace(b, true, "active")
		names = append(names, ns)
	}
	meters, _ := bb.namespace(b, false, "")
	_, err := bb.kube.Client().CoreV1().ServiceAccounts(meters).Create(bb.ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "netmeter"}}, metav1.CreateOptions{})
	require.NoError(b, err)
	_, rc, err := bb.kube.ServiceAccountKubeconfig(bb.ctx, meters, "netmeter", 10*time.Minute)
	require.NoError(b, err)
	ib.meter = rc.BearerToken
	h, err := NewIngest(IngestConfig{Meters: []Meter{{Name: "network", ServiceAccounts: []string{meters + "/netmeter"}, Resources: []string{"network.*"}}}},
		bb.kube.Client().AuthenticationV1(), bb.store, nil, bb.log, func() time.Time { return time.Now().UTC() })
	require.NoError(b, err)
	srv := newLoopbackServer(b, h)

	const total, batch, conns = 400_000, 5_000, 8
	b.StopTimer()
	for i := 0; i < b.N; i++ {
		now := time.Now().UTC().Add(-time.Minute)
		bodies := make([][]byte, 0, total/batch)
		for j := 0; j < total/batch; j++ {
			req := IngestRequest{Events: make([]Event, batch)}
			for k := range req.Events {
				n := j*batch + k
				req.Events[k] = Event{Namespace: names[n%len(names)], Resource: usage.NetworkInternetEgress, Class: "internet",
					Quantity: json.Number(fmt.Sprint(1000 + n%977)), Time: now.Add(time.Duration(n%60) * time.Second).Format(time.RFC3339), Key: fmt.Sprintf("i%d-e%d", i, n)}
			}
			body, err := json.Marshal(req)
			require.NoError(b, err)
			bodies = append(bodies, body)
		}
		work := make(chan []byte, len(bodies))
		for _, body := range bodies {
			work <- body
		}
		close(work)
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conns}}
		b.StartTimer()
		cpu0, pg0 := processCPU(b), postgresCPU(b, bb)
		start := time.Now()
		var wg sync.WaitGroup
		var mu sync.Mutex
		stored := 0
		for range conns {
			wg.Go(func() {
				for body := range work {
					req, _ := http.NewRequestWithContext(bb.ctx, http.MethodPost, srv, bytes.NewReader(body))
					req.Header.Set("Authorization", "Bearer "+ib.meter)
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					var out IngestResponse
					err = json.NewDecoder(resp.Body).Decode(&out)
					resp.Body.Close()
					if err != nil || resp.StatusCode != http.StatusOK {
						b.Errorf("status %d: %v", resp.StatusCode, err)
						return
					}
					mu.Lock()
					stored += out.Stored
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		elapsed := time.Since(start)
		goCPU, pgCPU := processCPU(b)-cpu0, postgresCPU(b, bb)-pg0
		b.StopTimer()
		require.Equal(b, total, stored)
		b.ReportMetric(float64(total)/elapsed.Seconds(), "events/s")
		// CPU per event, which the machine's other load does not change:
		// this process (server and client) and the Postgres backends.
		b.ReportMetric(float64(goCPU.Microseconds())/total, "go-cpu-µs/event")
		b.ReportMetric(float64(pgCPU.Microseconds())/total, "pg-cpu-µs/event")
	}
}

// BenchmarkStoreCopyFromVsPsql writes the same 300,000 rows (one minute of
// 100,000 namespaces, three resources) through the store and with psql
// \copy straight into the table, each into a fresh minute, and reports
// both rates and their ratio (store/psql; 1 means as fast as psql). It
// also reports the store's staging path (CopyFrom into the staging table,
// INSERT … ON CONFLICT DO NOTHING), which a batch takes when one of its
// keys is already stored: 300,000 new rows and one stored one.
func BenchmarkStoreCopyFromVsPsql(b *testing.B) {
	db := testenv.Postgres(b)
	ctx := context.Background()
	store := usagestore.New(db.Pool)
	base := time.Now().UTC().Truncate(time.Minute).Add(-time.Hour)
	_, err := store.EnsurePartitions(ctx, base.AddDate(0, 0, -1), base.AddDate(0, 0, 2))
	require.NoError(b, err)
	const namespaces = 100_000
	resources := []string{usage.CPU, usage.Memory, usage.Storage}
	rows := func(m time.Time) []usage.Sample {
		out := make([]usage.Sample, 0, namespaces*len(resources))
		for ns := int64(1); ns <= namespaces; ns++ {
			for _, r := range resources {
				out = append(out, usage.Sample{NamespaceID: ns, Resource: r, Minute: m, Quantity: ns%5000 + 1})
			}
		}
		return out
	}
	dir := b.TempDir()
	b.StopTimer()
	psql := "/usr/bin/psql"
	for i := 0; i < b.N; i++ {
		mStore, mPsql, mStaged := base.Add(time.Duration(3*i)*time.Minute), base.Add(time.Duration(3*i+1)*time.Minute), base.Add(time.Duration(3*i+2)*time.Minute)
		samples := rows(mStore)
		staged := append(rows(mStaged), samples[0])
		csv := filepath.Join(dir, fmt.Sprintf("rows-%d.csv", i))
		var buf bytes.Buffer
		for _, s := range rows(mPsql) {
			fmt.Fprintf(&buf, "%d,%s,%s,\"\",compute,\"\",%d\n", s.NamespaceID, s.Minute.Format(time.RFC3339), s.Resource, s.Quantity)
		}
		require.NoError(b, os.WriteFile(csv, buf.Bytes(), 0o644))
		b.StartTimer()

		start := time.Now()
		res, err := store.Write(ctx, usage.SourceCompute, samples)
		storeTime := time.Since(start)
		require.NoError(b, err)
		require.Equal(b, len(samples), res.Inserted)

		cmd := exec.CommandContext(ctx, psql, db.URL, "-v", "ON_ERROR_STOP=1", "-c",
			`\copy usage_minute (namespace_id, minute, resource, class, source, key, quantity) FROM '`+csv+`' WITH (FORMAT csv)`)
		start = time.Now()
		out, err := cmd.CombinedOutput()
		psqlTime := time.Since(start)
		require.NoError(b, err, string(out))

		start = time.Now()
		res, err = store.Write(ctx, usage.SourceCompute, staged)
		stagedTime := time.Since(start)
		require.NoError(b, err)
		require.Equal(b, usage.WriteResult{Inserted: len(staged) - 1, Duplicates: 1}, res)

		b.ReportMetric(float64(len(samples))/storeTime.Seconds(), "store-rows/s")
		b.ReportMetric(float64(len(staged))/stagedTime.Seconds(), "staged-rows/s")
		b.ReportMetric(psqlTime.Seconds()/stagedTime.Seconds(), "staged/psql")
		b.ReportMetric(float64(len(samples))/psqlTime.Seconds(), "psql-rows/s")
		b.ReportMetric(psqlTime.Seconds()/storeTime.Seconds(), "store/psql")
		b.StopTimer()
	}
}

// BenchmarkSample10kPods measures the CPU time of sampling one minute of
// 10,000 running pods in 2,000 tenant namespaces. The meter's records are
// filled through its informer event handler from pod objects built here (a
// fake lister), not from an API server: the work measured is the per
// minute sampling, which reads only those records.
func BenchmarkSample10kPods(b *testing.B) {
	m0 := time.Date(2030, 1, 1, 10, 0, 0, 0, time.UTC)
	c := newComputeMeter(BasisMax, BasisMax, map[corev1.ResourceName]string{"nvidia.com/gpu": usage.GPU}, func() time.Time { return m0 })
	tenants := map[string]int64{}
	for i := range 100_000 {
		tenants[fmt.Sprintf("ns-%d", i)] = int64(i + 1)
	}
	start := metav1.NewTime(m0.Add(-time.Hour))
	h := c.handler()
	for i := range 10_000 {
		h.OnAdd(&corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("ns-%d", i%2000), Name: fmt.Sprintf("p-%d", i), UID: types.UID(fmt.Sprintf("uid-%d", i))},
			Spec: corev1.PodSpec{NodeName: "n",
				InitContainers: []corev1.Container{{Name: "init", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m")}}}},
				Containers: []corev1.Container{
					{Name: "a", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")}}},
					{Name: "b", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")}}},
				}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, StartTime: &start},
		}, true)
	}
	c.markSynced(m0.Add(-time.Hour))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		const minutes = 60
		t0 := time.Now()
		for k := range minutes {
			s, _ := c.sample(m0.Add(time.Duration(k)*time.Minute), tenants)
			if len(s) != 2*2000 {
				b.Fatalf("%d samples, want %d", len(s), 2*2000)
			}
		}
		b.ReportMetric(float64(time.Since(t0).Microseconds())/minutes/1000, "ms/minute")
	}
}

// benchSetup is setup for a benchmark.
func benchSetup(b *testing.B) *bundle {
	b.Helper()
	return setupTB(b, false)
}

// newLoopbackServer serves h on 127.0.0.1 for the benchmark and returns
// its URL.
func newLoopbackServer(b *testing.B, h http.Handler) string {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	l, err := (&net.ListenConfig{}).Listen(b.Context(), "tcp", "127.0.0.1:0")
	require.NoError(b, err)
	go func() { _ = srv.Serve(l) }()
	b.Cleanup(func() { _ = srv.Close() })
	return "http://" + l.Addr().String() + "/v1/usage"
}

// processCPU returns the CPU time this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	require.NoError(b, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// postgresCPU returns the CPU time used so far by the processes of the
// test's Postgres cluster that are alive now (its pool keeps its
// backends), from /proc.
func postgresCPU(b *testing.B, bb *bundle) time.Duration {
	rows, err := bb.pool.Query(bb.ctx, `SELECT pid FROM pg_stat_activity`)
	require.NoError(b, err)
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	require.NoError(b, err)
	var ticks int64
	for _, pid := range pids {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// Fields after the command name, which is in parentheses: utime
		// and stime are the 14th and 15th fields of the line.
		f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+2:]))
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + s
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ
}
