package collectors

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tenantplane/tenantplane/collectors/usage"
	"github.com/tenantplane/tenantplane/collectors/usage/usagestore"
	"github.com/tenantplane/tenantplane/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// fakeClock is the clock the tests drive minutes with.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t.UTC()
}

// bundle is what a collector test needs: a store on its own database, the
// shared control plane, and an org to own tenant namespaces.
type bundle struct {
	ctx   context.Context
	pool  *pgxpool.Pool
	store *usagestore.Store
	kube  *testenv.KubeCluster
	org   int64
	clock *fakeClock
	log   *slog.Logger
}

func setup(t *testing.T, pods bool) *bundle {
	t.Helper()
	return setupTB(t, pods)
}

func setupTB(t testing.TB, pods bool) *bundle {
	t.Helper()
	db := testenv.Postgres(t)
	b := &bundle{ctx: t.Context(), pool: db.Pool, store: usagestore.New(db.Pool), clock: &fakeClock{},
		log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if testing.Verbose() {
		b.log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if pods {
		b.kube = testenv.KubeWithPods(t)
	} else {
		b.kube = testenv.Kube(t)
	}
	now := time.Now().UTC()
	require.NoError(t, db.Pool.QueryRow(b.ctx, `INSERT INTO orgs (name, created_at, updated_at) VALUES ('acme', $1, $1) RETURNING id`, now).Scan(&b.org))
	_, err := b.store.EnsurePartitions(b.ctx, now.AddDate(0, 0, -2), now.AddDate(0, 0, 2))
	require.NoError(t, err)
	return b
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// namespace creates a Kubernetes namespace and, when tenant, its row in
// the namespaces table with state; it returns the name and the row's id.
func (b *bundle) namespace(t testing.TB, tenant bool, state string) (string, int64) {
	t.Helper()
	ns, err := b.kube.Client().CoreV1().Namespaces().Create(b.ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "usage-", Labels: map[string]string{"app.kubernetes.io/managed-by": "tenantplane"}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = b.kube.Client().CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
	})
	if !tenant {
		return ns.Name, 0
	}
	var id int64
	require.NoError(t, b.pool.QueryRow(b.ctx, `INSERT INTO namespaces (org_id, name, state, created_at, updated_at) VALUES ($1, $2, $3, now(), now()) RETURNING id`,
		b.org, ns.Name, state).Scan(&id))
	return ns.Name, id
}

// rows returns what the store holds of source for minutes [from, to), by
// namespace id, resource, class and minute.
func (b *bundle) rows(t *testing.T, source string, from, to time.Time) map[rowKey]int64 {
	t.Helper()
	rows, err := b.pool.Query(b.ctx, `SELECT namespace_id, resource, class, minute, quantity FROM usage_minute
WHERE source = $1 AND minute >= $2 AND minute < $3`, source, from, to)
	require.NoError(t, err)
	defer rows.Close()
	out := map[rowKey]int64{}
	for rows.Next() {
		var k rowKey
		var q int64
		require.NoError(t, rows.Scan(&k.ns, &k.resource, &k.class, &k.minute, &q))
		k.minute = k.minute.UTC()
		_, dup := out[k]
		require.False(t, dup, "row %v twice", k)
		out[k] = q
	}
	require.NoError(t, rows.Err())
	return out
}

type rowKey struct {
	ns       int64
	resource string
	class    string
	minute   time.Time
}

func (k rowKey) String() string {
	return fmt.Sprintf("ns%d/%s/%s@%s", k.ns, k.resource, k.class, k.minute.UTC().Format("15:04"))
}

// show renders rows in a form whose differences read well.
func show(m map[rowKey]int64) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(out)
	return out
}

func (b *bundle) gaps(t *testing.T, from, to time.Time) []usage.Gap {
	t.Helper()
	g, err := b.store.Gaps(b.ctx, from, to)
	require.NoError(t, err)
	return g
}

// eventually polls f until it is true or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (b *bundle) collector(t *testing.T, cfg Config, src UsageSource) *Collector {
	t.Helper()
	if cfg.Identity == "" {
		cfg.Identity = "test"
	}
	c, err := New(cfg, b.kube.Client(), src, b.store, nil, nil, b.log, b.clock.Now)
	require.NoError(t, err)
	return c
}
