package isolation_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/isolation"
	"github.com/tenantplane/tenantplane/tenancy"
)

// BenchmarkCreateNamespaceApplied creates namespaces through the tenancy
// service, one at a time, with the reconciler running as in production,
// and measures for each the time from the creating transaction to every
// object applied in Kubernetes: its outbox row's created_at to its
// done_at. Each iteration creates 100 namespaces (so that `make bench`,
// which runs every benchmark once, gets percentiles worth the name); it
// reports the p50 and p99 over all of them.
//
//	go test ./isolation -run '^$' -bench CreateNamespaceApplied -benchtime 1x
func BenchmarkCreateNamespaceApplied(b *testing.B) {
	e := setup(b, setupOptions{tenancy: func(c *tenancy.Config) { c.MaxNamespacesPerOrg = 1 << 20 }})
	owner, _ := e.signUp()
	orgs, err := e.svc.MyOrgs(as(owner.ID), tenancy.PageArgs{})
	require.NoError(b, err)
	orgID := orgs.Edges[0].Node.Org.ID
	e.settled()
	ctx := context.Background()
	var lat []time.Duration
	i := 0
	for b.Loop() {
		for range 100 {
			i++
			ns, err := e.svc.CreateNamespace(as(owner.ID), orgID, fmt.Sprintf("%s-b%d", e.cfg.Instance, i))
			require.NoError(b, err)
			var took time.Duration
			for {
				var done bool
				err := e.db.Pool.QueryRow(ctx, `SELECT done_at IS NOT NULL, COALESCE(done_at - created_at, '0') FROM outbox
					WHERE key = $1 AND kind = 'namespace.create'`, tenancy.NamespaceKey(ns.ID)).Scan(&done, &took)
				require.NoError(b, err)
				if done {
					break
				}
				time.Sleep(2 * time.Millisecond)
			}
			lat = append(lat, took)
		}
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(len(lat)), "samples")
}

// BenchmarkFullResync1000 signs up 1,000 users (each with a namespace of
// their own) through the tenancy service, applies their objects once
// (first-apply-s), and then measures a full resync of all of them from
// Postgres (resync-s: objects the cache shows as last applied are not
// sent), the same resync sending every object (resync-all-s), and
// `kubectl apply --server-side` of exactly the same objects (kubectl-s),
// with the ratios kubectl / ours.
//
//	go test ./isolation -run '^$' -bench FullResync1000 -benchtime 1x
func BenchmarkFullResync1000(b *testing.B) {
	const tenants = 1000
	kubectl := "/usr/bin/kubectl"
	if p, err := exec.LookPath("kubectl"); err == nil {
		kubectl = p
	}
	e := setup(b, setupOptions{noRun: true, reconfn: func(rc *isolation.ReconcilerConfig) { rc.Workers = 32 }})
	ctx := context.Background()
	var ids []int64
	for range tenants {
		_, ns := e.signUp()
		ids = append(ids, ns.ID)
	}
	start := time.Now()
	require.NoError(b, e.rec.Resync(ctx))
	cold := time.Since(start)

	// The same objects, for kubectl.
	ts, err := e.store.Tenants(ctx, ids)
	require.NoError(b, err)
	var items []any
	for _, id := range ids {
		o, err := isolation.Desired(ts[id], e.cfg)
		require.NoError(b, err)
		items = append(items, o.Namespace)
		for _, q := range o.ResourceQuotas {
			items = append(items, q)
		}
		items = append(items, o.LimitRange)
		for _, p := range o.NetworkPolicies {
			items = append(items, p)
		}
		for _, r := range o.Roles {
			items = append(items, r)
		}
		for _, sa := range o.ServiceAccounts {
			items = append(items, sa)
		}
		for _, rb := range o.RoleBindings {
			items = append(items, rb)
		}
	}
	list, err := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "List", "items": items})
	require.NoError(b, err)
	file := filepath.Join(b.TempDir(), "objects.json")
	require.NoError(b, os.WriteFile(file, list, 0o600))

	// A first warm resync lets the informers catch up with the objects
	// just created; the timed one is then the steady state.
	require.NoError(b, e.rec.Resync(ctx))
	sentBefore := metricValue(b, e.reg, "tenantplane_isolation_applied_objects_total")
	var ours time.Duration
	for b.Loop() {
		start := time.Now()
		require.NoError(b, e.rec.Resync(ctx))
		ours = time.Since(start)
	}

	// The same resync sending every object, as if nothing were known.
	always, err := isolation.NewReconciler(isolation.Deps{Kube: e.kube, Store: e.store}, e.cfg,
		isolation.ReconcilerConfig{Workers: 32, AlwaysApply: true})
	require.NoError(b, err)
	require.NoError(b, always.Start(ctx))
	start = time.Now()
	require.NoError(b, always.Resync(ctx))
	forced := time.Since(start)

	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, kubectl, "--kubeconfig", e.kc.KubeconfigPath(), "apply", "--server-side",
		"--force-conflicts", "--field-manager", isolation.FieldManager, "-f", file)
	cmd.Stdout, cmd.Stderr = &out, &out
	start = time.Now()
	err = cmd.Run()
	theirs := time.Since(start)
	require.NoError(b, err, out.String())
	require.Equal(b, len(items), bytes.Count(out.Bytes(), []byte("serverside-applied")), "kubectl applied every object")

	b.ReportMetric(float64(len(items)), "objects")
	b.ReportMetric(metricValue(b, e.reg, "tenantplane_isolation_applied_objects_total")-sentBefore, "resync-sent")
	b.ReportMetric(cold.Seconds(), "first-apply-s")
	b.ReportMetric(ours.Seconds(), "resync-s")
	b.ReportMetric(theirs.Seconds(), "kubectl-s")
	b.ReportMetric(forced.Seconds(), "resync-all-s")
	b.ReportMetric(theirs.Seconds()/ours.Seconds(), "kubectl/resync")
	b.ReportMetric(theirs.Seconds()/forced.Seconds(), "kubectl/resync-all")
}
