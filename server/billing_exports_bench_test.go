package server

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/billing/billingstore"
	"github.com/tenantplane/tenantplane/billing/export"
	"github.com/tenantplane/tenantplane/internal/testenv"
)

// exportChildEnv makes the test binary run `tenantplane export` with the
// arguments in it (separated by newlines) and exit: the benchmark's child
// process, whose peak RSS is the command's own.
const exportChildEnv = "TENANTPLANE_BENCH_EXPORT_ARGS"

func init() {
	if args := os.Getenv(exportChildEnv); args != "" {
		os.Exit(execute(context.Background(), strings.Split(args, "\n"), os.Stdout, os.Stderr))
	}
}

// BenchmarkExportUsageCSV exports 10 million hourly usage rows (2,500
// namespaces, 1,000 hours, four resources) as CSV with `tenantplane
// export` in a child process, and the same rows with psql's \copy of the
// same query, each to /dev/null, twice each in turns; it reports the best
// rate of each, their ratio (target ≥ 0.5) and each child's peak RSS
// (target ≤ 100 MB for the export).
func BenchmarkExportUsageCSV(b *testing.B) {
	const namespaces, hours, resources = 2500, 1000, 4
	const rows = namespaces * hours * resources
	db := testenv.Postgres(b)
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	t1 := t0.Add(hours * time.Hour)
	runSQL := func(sql string, args ...any) {
		_, err := db.Pool.Exec(ctx, sql, args...)
		require.NoError(b, err)
	}
	start := time.Now()
	runSQL(`INSERT INTO orgs (name, created_at, updated_at) VALUES ('bench', $1, $1)`, t0)
	runSQL(`INSERT INTO namespaces (org_id, name, state, created_at, updated_at)
		SELECT (SELECT id FROM orgs), 'ns-' || n, 'active', $1, $1 FROM generate_series(1, $2) n`, t0, namespaces)
	runSQL(`SELECT usage_ensure_partitions($1::date, $2::date)`, t0, t1.AddDate(0, 0, 1))
	runSQL(`INSERT INTO usage_hourly (namespace_id, hour, resource, class, revision, quantity, seq, rolled_at)
		SELECT n.id, $1::timestamptz + h * interval '1 hour', r.resource, r.class, 0, n.id * 7919 + h,
			nextval('usage_hourly_seq'), $1::timestamptz + (h + 1) * interval '1 hour' + interval '2.25 seconds'
		FROM namespaces n, generate_series(0, $2 - 1) h,
			(VALUES ('cpu', ''), ('memory', ''), ('storage', 'openebs-lvm'), ('network.internet.egress', 'internet')) r(resource, class)`,
		t0, hours)
	runSQL(`VACUUM (FREEZE, ANALYZE) usage_hourly`)
	runSQL(`VACUUM ANALYZE namespaces`)
	b.Logf("loaded %d rows in %s", rows, time.Since(start).Round(time.Second))

	from, to := t0.Format(time.RFC3339), t1.Format(time.RFC3339)
	q := export.Query{Kind: export.Usage, Format: export.CSV, Filter: export.Filter{From: t0, To: t1}}
	var opts []string
	for k, v := range billingstore.ExportSettings(q, t1) {
		opts = append(opts, "-c "+k+"="+v)
	}
	sql := strings.Join(strings.Fields(billingstore.ExportSQL(export.Usage, export.CSV)), " ")
	sql = strings.Replace(sql, "COPY (", `\copy (`, 1)
	sql = strings.Replace(sql, ") TO STDOUT WITH", ") to stdout with", 1)

	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	require.NoError(b, err)
	defer func() { _ = devNull.Close() }()
	// The peak RSS is the child's VmHWM, read from /proc while it runs
	// (it only grows). rusage's maxrss would not do: exec records the
	// parent's RSS at fork time in it.
	measure := func(cmd *exec.Cmd) (time.Duration, int64, string) {
		var stderr strings.Builder
		cmd.Stdout, cmd.Stderr = devNull, &stderr
		start := time.Now()
		require.NoError(b, cmd.Start())
		var hwm atomic.Int64
		stop := make(chan struct{})
		polled := make(chan struct{})
		go func() {
			defer close(polled)
			path := fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)
			for {
				if v := vmHWM(path); v > hwm.Load() {
					hwm.Store(v)
				}
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		}()
		err := cmd.Wait()
		close(stop)
		<-polled
		require.NoError(b, err, stderr.String())
		return time.Since(start), hwm.Load(), stderr.String()
	}
	psql := func() (time.Duration, int64) {
		cmd := exec.CommandContext(ctx, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", db.URL, "-c", sql)
		cmd.Env = append(os.Environ(), "PGOPTIONS="+strings.Join(opts, " "))
		d, rss, _ := measure(cmd)
		return d, rss
	}
	cli := func() (time.Duration, int64) {
		cmd := exec.CommandContext(ctx, os.Args[0])
		cmd.Env = append(os.Environ(), exportChildEnv+"="+strings.Join([]string{"export", "usage", "--database-url", db.URL,
			"--from", from, "--to", to, "--format", "csv"}, "\n"))
		d, rss, stderr := measure(cmd)
		require.Contains(b, stderr, fmt.Sprintf("exported %d usage rows", rows))
		return d, rss
	}
	psql() // warm the cache; both read the same pages afterwards
	b.ResetTimer()
	for range b.N {
		var bestPsql, bestCLI time.Duration
		var psqlRSS, cliRSS int64
		for range 2 {
			d, rss := psql()
			if bestPsql == 0 || d < bestPsql {
				bestPsql = d
			}
			psqlRSS = max(psqlRSS, rss)
			d, rss = cli()
			if bestCLI == 0 || d < bestCLI {
				bestCLI = d
			}
			cliRSS = max(cliRSS, rss)
		}
		b.ReportMetric(rows/bestCLI.Seconds(), "export-rows/s")
		b.ReportMetric(rows/bestPsql.Seconds(), "psql-rows/s")
		b.ReportMetric(bestPsql.Seconds()/bestCLI.Seconds(), "export/psql")
		b.ReportMetric(float64(cliRSS)/(1<<20), "export-maxrss-MB")
		b.ReportMetric(float64(psqlRSS)/(1<<20), "psql-maxrss-MB")
	}
}

// vmHWM reads the peak resident set of a process from its status file,
// in bytes; 0 once the process has gone.
func vmHWM(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
