package isolation_test

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tenantplane/tenantplane/internal/testenv"
	"github.com/tenantplane/tenantplane/isolation"
	"github.com/tenantplane/tenantplane/isolation/isolationstore"
	"github.com/tenantplane/tenantplane/tenancy"
	"github.com/tenantplane/tenantplane/tenancy/tenancystore"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// env is what an integration test works with: a database of its own, the
// shared control plane, the tenancy service, and an isolation installation
// of its own (its own Instance and users namespace), so that tests running
// in parallel on one control plane never touch each other's objects.
type env struct {
	t        testing.TB
	kc       *testenv.KubeCluster
	kube     kubernetes.Interface
	db       *testenv.DB
	svc      *tenancy.Service
	store    *isolationstore.Store
	cfg      isolation.Config
	rec      *isolation.Reconciler
	reg      *prometheus.Registry
	kubecfgs *isolation.Kubeconfigs
	hosts    *isolation.Hosts
	susp     *isolation.Suspension
	// platform is the identity the isolation components act as.
	platform *rest.Config
}

type setupOptions struct {
	pods    bool // kube-scheduler and kwok, so that pods run
	noRun   bool // do not run the reconciler (tests drive it)
	tweak   func(*isolation.Config)
	reconfn func(*isolation.ReconcilerConfig)
	tenancy func(*tenancy.Config)
	// platformRBAC runs every isolation component as a ServiceAccount
	// holding only isolation.PlatformRules, not as a cluster admin.
	platformRBAC bool
}

var instanceSerial atomic.Int64

// testArgon2 keeps password hashing cheap in tests.
var testArgon2 = tenancy.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1, KeyLen: 32, SaltLen: 16}

func setup(t testing.TB, o setupOptions) *env {
	t.Helper()
	var kc *testenv.KubeCluster
	if o.pods {
		kc = testenv.KubeWithPods(t)
	} else {
		kc = testenv.Kube(t)
	}
	db := testenv.Postgres(t)
	cfg := testConfig()
	cfg.Instance = fmt.Sprintf("it%d", instanceSerial.Add(1))
	cfg.UsersNamespace = cfg.Instance + "-users"
	if o.tweak != nil {
		o.tweak(&cfg)
	}
	admin := kc.Client()
	clusterFixtures(t, admin)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	platform := kc.Config()
	if o.platformRBAC {
		platform = platformIdentity(t, kc, cfg.Instance)
	}
	kube, err := kubernetes.NewForConfig(platform)
	require.NoError(t, err)
	require.NoError(t, isolation.InstallGuards(ctx, kube, cfg))

	tcfg := tenancy.DefaultConfig()
	tcfg.Argon2 = testArgon2
	tcfg.BaseURL = "https://console.test"
	if o.tenancy != nil {
		o.tenancy(&tcfg)
	}
	svc, err := tenancy.New(tenancystore.New(db.Pool), tcfg, nil, nil)
	require.NoError(t, err)

	store := isolationstore.New(db.Pool)
	t.Cleanup(store.Close)
	reg := prometheus.NewRegistry()
	rc := isolation.ReconcilerConfig{Workers: 8, OutboxPoll: 200 * time.Millisecond, RetryBase: 100 * time.Millisecond, RetryMax: 2 * time.Second, DeletionPoll: 200 * time.Millisecond}
	if o.reconfn != nil {
		o.reconfn(&rc)
	}
	dyn, err := dynamic.NewForConfig(platform)
	require.NoError(t, err)
	rec, err := isolation.NewReconciler(isolation.Deps{Kube: kube, Dynamic: dyn, Store: store, Registerer: reg}, cfg, rc)
	require.NoError(t, err)
	if o.noRun {
		require.NoError(t, rec.Start(ctx))
	} else {
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = rec.Run(ctx)
		}()
		t.Cleanup(func() {
			cancel()
			<-done
		})
	}
	kcfg := kc.Config()
	kubecfgs, err := isolation.NewKubeconfigs(kube, store, cfg, isolation.ClusterAccess{Server: kcfg.Host, CAData: kcfg.CAData}, nil, nil)
	require.NoError(t, err)
	hosts, err := isolation.NewHosts(store, cfg, nil)
	require.NoError(t, err)
	susp, err := isolation.NewSuspension(svc, rec)
	require.NoError(t, err)
	return &env{t: t, kc: kc, kube: admin, db: db, svc: svc, store: store, cfg: cfg, rec: rec, reg: reg,
		kubecfgs: kubecfgs, hosts: hosts, susp: susp, platform: platform}
}

// platformIdentity creates a ServiceAccount bound to a ClusterRole with
// isolation.PlatformRules and returns a client configuration that acts as
// it (the admin impersonating it).
func platformIdentity(t testing.TB, kc *testenv.KubeCluster, instance string) *rest.Config {
	t.Helper()
	ctx := context.Background()
	admin := kc.Client()
	ns, name := instance+"-system", instance+"-platform"
	_, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	require.NoError(t, err)
	opts := metav1.ApplyOptions{FieldManager: "test", Force: true}
	_, err = admin.RbacV1().ClusterRoles().Apply(ctx, isolation.PlatformClusterRole(name), opts)
	require.NoError(t, err)
	_, err = admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: ns}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	c := kc.Config()
	c.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + ns + ":" + name,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}}
	// The authorizer learns of the binding from its informer: wait until
	// it grants the identity its rules, or its first steps are refused.
	pc, err := kubernetes.NewForConfig(c)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		r, err := pc.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
				Verb: "create", Resource: "namespaces"}},
		}, metav1.CreateOptions{})
		return err == nil && r.Status.Allowed
	}, 10*time.Second, 10*time.Millisecond, "the platform identity's ClusterRoleBinding never took effect")
	return c
}

var fixturesOnce sync.Once

// clusterFixtures creates what a real cluster would offer: the RuntimeClasses
// and StorageClasses the plans name, and one that no plan allows.
func clusterFixtures(t testing.TB, kube kubernetes.Interface) {
	t.Helper()
	var err error
	fixturesOnce.Do(func() {
		ctx := context.Background()
		for _, rc := range []string{"kata-fc", "kata-gpu", "runc"} {
			_, e := kube.NodeV1().RuntimeClasses().Create(ctx, &nodev1.RuntimeClass{
				ObjectMeta: metav1.ObjectMeta{Name: rc}, Handler: rc,
			}, metav1.CreateOptions{})
			if e != nil && !apierrors.IsAlreadyExists(e) {
				err = e
			}
		}
		for _, sc := range []string{"openebs-lvm", "openebs-hostpath-x", "local-path"} {
			mode := storagev1.VolumeBindingWaitForFirstConsumer
			_, e := kube.StorageV1().StorageClasses().Create(ctx, &storagev1.StorageClass{
				ObjectMeta: metav1.ObjectMeta{Name: sc}, Provisioner: "example.test/" + sc, VolumeBindingMode: &mode,
			}, metav1.CreateOptions{})
			if e != nil && !apierrors.IsAlreadyExists(e) {
				err = e
			}
		}
	})
	require.NoError(t, err)
}

var ipSerial atomic.Uint32

// anon is an anonymous request from a fresh address, so that sign-up rate
// limits never trip.
func anon() context.Context {
	n := ipSerial.Add(1)
	return tenancy.WithActor(context.Background(), tenancy.Actor{IP: netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)})})
}

// as is a request by user id.
func as(id int64) context.Context {
	return tenancy.WithActor(context.Background(), tenancy.Actor{UserID: id, RequestID: "req-test"})
}

// system is a request by a platform component.
func system(name string) context.Context {
	return tenancy.WithActor(context.Background(), tenancy.Actor{System: name})
}

var emailSerial atomic.Int64

// signUp creates a user through the tenancy service, which creates their
// personal org and namespace.
func (e *env) signUp() (tenancy.User, tenancy.Namespace) {
	e.t.Helper()
	u, err := e.svc.SignUp(anon(), fmt.Sprintf("user%d@example.test", emailSerial.Add(1)), "correct horse battery", "")
	require.NoError(e.t, err)
	nss, err := e.svc.MyNamespaces(as(u.ID), tenancy.PageArgs{})
	require.NoError(e.t, err)
	require.Len(e.t, nss.Edges, 1)
	return u, nss.Edges[0].Node.Namespace
}

// settled waits until the outbox has no pending rows.
func (e *env) settled() {
	e.t.Helper()
	e.eventually(20*time.Second, "the outbox to drain", func(ctx context.Context) (bool, error) {
		st, err := e.store.OutboxStats(ctx, time.Now())
		return err == nil && st.Pending == 0, err
	})
}

// eventually polls f until it is true, failing after timeout.
func (e *env) eventually(timeout time.Duration, what string, f func(ctx context.Context) (bool, error)) {
	defer func(start time.Time) { e.t.Logf("%s took %s", what, time.Since(start).Round(time.Millisecond)) }(time.Now())
	e.t.Helper()
	eventually(e.t, timeout, what, f)
}

func eventually(t testing.TB, timeout time.Duration, what string, f func(ctx context.Context) (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last error
	for {
		ok, err := f(ctx)
		if ok {
			return
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %s waiting for %s (last error: %v)", timeout, what, last)
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// tenantClient issues a kubeconfig for user in namespace ns through
// Kubeconfigs, as the GraphQL kubeconfig query does, and returns a client
// that uses it.
func (e *env) tenantClient(userID int64, ns tenancy.Namespace) kubernetes.Interface {
	e.t.Helper()
	kc, err := e.kubecfgs.Issue(as(userID), ns.ID, 0)
	require.NoError(e.t, err)
	rc, err := clientcmd.RESTConfigFromKubeConfig(kc.Data)
	require.NoError(e.t, err)
	rc.QPS, rc.Burst = 100, 200
	c, err := kubernetes.NewForConfig(rc)
	require.NoError(e.t, err)
	return c
}

// applied waits until namespace ns has its RoleBindings, the last objects
// applied.
func (e *env) applied(ns tenancy.Namespace) {
	e.t.Helper()
	e.eventually(20*time.Second, "namespace "+ns.Name+" to be applied", func(ctx context.Context) (bool, error) {
		rbs, err := e.kube.RbacV1().RoleBindings(ns.Name).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		return len(rbs.Items) > 0, nil
	})
}

func nsObject(t testing.TB, kube kubernetes.Interface, name string) *corev1.Namespace {
	t.Helper()
	ns, err := kube.CoreV1().Namespaces().Get(context.Background(), name, metav1.GetOptions{})
	require.NoError(t, err)
	return ns
}
