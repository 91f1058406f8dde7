package testenv_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
	metricsclient "k8s.io/metrics/pkg/client/clientset/versioned"

	"github.com/tenantplane/tenantplane/internal/testenv"
)

// newNamespace creates a namespace of its own for a test, as every test on
// the shared control plane should, and deletes it afterwards.
func newNamespace(t *testing.T, kc *testenv.KubeCluster) string {
	t.Helper()
	ns, err := kc.Client().CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "testenv-"},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = kc.Client().CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
	})
	return ns.Name
}

// eventually calls f until it returns true, failing t after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, f func(ctx context.Context) (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	var lastErr error
	for {
		ok, err := f(ctx)
		if ok {
			return
		}
		lastErr = err
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not within %v (last error: %v)", what, timeout, lastErr)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func TestKubeNamespaceGetsDefaultServiceAccount(t *testing.T) {
	t.Parallel()
	kc := testenv.Kube(t)
	ns := newNamespace(t, kc)

	// The serviceaccount controller of kube-controller-manager runs.
	eventually(t, 30*time.Second, "default service account in "+ns, func(ctx context.Context) (bool, error) {
		_, err := kc.Client().CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, err
	})
}

func TestKubeAdminKubeconfigFile(t *testing.T) {
	t.Parallel()
	kc := testenv.Kube(t)

	cfg, err := clientcmd.BuildConfigFromFlags("", kc.KubeconfigPath())
	require.NoError(t, err)
	client, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	v, err := client.Discovery().ServerVersion()
	require.NoError(t, err)
	require.Equal(t, testenv.KubeVersion, v.GitVersion)
	_, err = client.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{})
	require.NoError(t, err, "the admin is in system:masters")
}

func TestKubeServiceAccountKubeconfigFollowsRBAC(t *testing.T) {
	t.Parallel()
	kc := testenv.Kube(t)
	ctx := t.Context()
	ns := newNamespace(t, kc)
	other := newNamespace(t, kc)
	admin := kc.Client()

	_, err := admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: "tenant"},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = admin.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "configmaps"},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{""},
			Resources: []string{"configmaps"},
			Verbs:     []string{"get", "list", "create"},
		}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = admin.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "tenant-configmaps"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "configmaps"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "tenant", Namespace: ns}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	kubeconfig, restCfg, err := kc.ServiceAccountKubeconfig(ctx, ns, "tenant", time.Hour)
	require.NoError(t, err)
	// The kubeconfig, as a tenant would get it, is what the test uses.
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	require.NoError(t, err)
	require.Equal(t, restCfg.Host, cfg.Host)
	require.Equal(t, restCfg.BearerToken, cfg.BearerToken)
	raw, err := clientcmd.Load(kubeconfig)
	require.NoError(t, err)
	require.Equal(t, ns, raw.Contexts[raw.CurrentContext].Namespace)
	tenant, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)

	_, err = tenant.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	require.True(t, apierrors.IsForbidden(err), "listing nodes: want 403, got %v", err)
	_, err = tenant.CoreV1().ConfigMaps(other).List(ctx, metav1.ListOptions{})
	require.True(t, apierrors.IsForbidden(err), "listing another namespace: want 403, got %v", err)

	_, err = tenant.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "mine"},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	cms, err := tenant.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	require.NotEmpty(t, cms.Items)

	_, _, err = kc.ServiceAccountKubeconfig(ctx, ns, "nobody", time.Hour)
	require.Error(t, err, "a token for a missing service account")
}

func TestKubeResourceQuotaStatusAndEnforcement(t *testing.T) {
	t.Parallel()
	kc := testenv.Kube(t)
	ctx := t.Context()
	ns := newNamespace(t, kc)
	admin := kc.Client()

	hard := corev1.ResourceList{
		"count/configmaps":    resource.MustParse("3"),
		corev1.ResourcePods:   resource.MustParse("10"),
		corev1.ResourceMemory: resource.MustParse("1Gi"),
	}
	_, err := admin.CoreV1().ResourceQuotas(ns).Create(ctx, &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Name: "plan"},
		Spec:       corev1.ResourceQuotaSpec{Hard: hard},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	// The resourcequota controller of kube-controller-manager fills status.
	eventually(t, 30*time.Second, "quota status", func(ctx context.Context) (bool, error) {
		q, err := admin.CoreV1().ResourceQuotas(ns).Get(ctx, "plan", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return len(q.Status.Hard) == len(hard) && q.Status.Used != nil, nil
	})
	q, err := admin.CoreV1().ResourceQuotas(ns).Get(ctx, "plan", metav1.GetOptions{})
	require.NoError(t, err)
	for name, want := range hard {
		got := q.Status.Hard[name]
		require.Zero(t, want.Cmp(got), "status.hard[%s] = %s, want %s", name, got.String(), want.String())
	}

	// Admission enforces it: at most three ConfigMaps, kube-root-ca.crt
	// included once the publisher has made it.
	var rejected error
	for i := range 4 {
		_, err := admin.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%d", i)},
		}, metav1.CreateOptions{})
		if err != nil {
			rejected = err
			break
		}
	}
	require.Error(t, rejected, "a fourth configmap")
	require.True(t, apierrors.IsForbidden(rejected), "want 403 exceeded quota, got %v", rejected)
	require.Contains(t, rejected.Error(), "exceeded quota")
}

func TestKubeNamespaceDeletionFinishes(t *testing.T) {
	t.Parallel()
	kc := testenv.Kube(t)
	ctx := t.Context()
	admin := kc.Client()
	ns := newNamespace(t, kc)
	_, err := admin.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "left-behind"},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	require.NoError(t, admin.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}))
	// The namespace controller empties it and removes its finalizer.
	eventually(t, 60*time.Second, "namespace "+ns+" gone", func(ctx context.Context) (bool, error) {
		_, err := admin.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		return apierrors.IsNotFound(err), err
	})
}

func TestKubePodRunsOnFakeNode(t *testing.T) {
	t.Parallel()
	kc := testenv.KubeWithPods(t)
	ctx := t.Context()
	ns := newNamespace(t, kc)
	require.NotEmpty(t, kc.NodeNames())

	no := false
	yes := true
	pod, err := kc.Client().CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "app"},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken: &no,
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot:   &yes,
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name:  "app",
				Image: "registry.invalid/app:1",
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")},
				},
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: &no,
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	eventually(t, 60*time.Second, "pod running", func(ctx context.Context) (bool, error) {
		p, err := kc.Client().CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return p.Status.Phase == corev1.PodRunning, fmt.Errorf("phase %q", p.Status.Phase)
	})
	p, err := kc.Client().CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
	require.NoError(t, err)
	require.Contains(t, kc.NodeNames(), p.Spec.NodeName, "scheduled by kube-scheduler onto a kwok node")
	require.NotEmpty(t, p.Status.PodIP, "kwok gives it an address")
}

func TestStartKubeThenStopLeavesNothing(t *testing.T) {
	t.Parallel()
	start := time.Now()
	kc, err := testenv.StartKube(t.Context(), testenv.KubeOptions{})
	if err != nil {
		t.Fatalf("start a second control plane: %v", err)
	}
	t.Logf("a control plane of its own started in %v", time.Since(start).Round(time.Millisecond))
	host := kc.Config().Host
	dir := kc.Dir()
	_, err = kc.Client().CoreV1().Namespaces().Get(t.Context(), "default", metav1.GetOptions{})
	require.NoError(t, err)

	stopStart := time.Now()
	kc.Stop()
	t.Logf("and stopped in %v", time.Since(stopStart).Round(time.Millisecond))
	kc.Stop() // a second Stop is harmless

	_, err = os.Stat(dir)
	require.True(t, os.IsNotExist(err), "its folder is removed: %v", err)
	conn, err := net.DialTimeout("tcp", host[len("https://"):], time.Second)
	if err == nil {
		_ = conn.Close()
	}
	require.Error(t, err, "nothing listens on kube-apiserver's port")
}

func TestStartKubeWithoutToolsSaysWhatToInstall(t *testing.T) {
	// Not parallel: it points the cache elsewhere, and the parallel tests
	// wait until it is done.
	t.Setenv("TENANTPLANE_CACHE", t.TempDir())
	_, err := testenv.StartKube(t.Context(), testenv.KubeOptions{})
	require.Error(t, err)
	require.Contains(t, err.Error(), "tools/install.sh")
	require.Contains(t, err.Error(), "kube-apiserver-"+testenv.KubeVersion)
	_, err = testenv.StartStripeMock(t.Context())
	require.Error(t, err)
	require.Contains(t, err.Error(), "tools/install.sh")
}

func TestStartKubeReportsWhyAProcessFailed(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer func() { _ = l.Close() }()

	_, err = testenv.StartKube(t.Context(), testenv.KubeOptions{Port: l.Addr().(*net.TCPAddr).Port})
	require.Error(t, err)
	require.Contains(t, err.Error(), "kube-apiserver exited")
	require.Contains(t, err.Error(), "address already in use", "the error carries the tail of its log")
}

// TestKubeMetricsServeKwokUsage reads, through kube-apiserver's aggregation
// layer, the usage that metrics-server scraped from kwok for each container
// of a pod: memory exactly, CPU as the rate between two scrapes.
func TestKubeMetricsServeKwokUsage(t *testing.T) {
	t.Parallel()
	kc := testenv.KubeWithMetrics(t)
	ns := newNamespace(t, kc)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "busy", Namespace: ns},
		Spec: corev1.PodSpec{
			NodeName: kc.NodeNames()[0],
			Containers: []corev1.Container{
				{Name: "app", Image: "busybox"},
				{Name: "proxy", Image: "busybox"},
			},
		},
	}
	testenv.SetUsage(pod, "app", "40m", "48Mi")
	testenv.SetUsage(pod, "proxy", "3m", "20Mi")
	_, err := kc.Client().CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{})
	require.NoError(t, err)

	mc, err := metricsclient.NewForConfig(kc.Config())
	require.NoError(t, err)
	var pm *metricsv1beta1.PodMetrics
	eventually(t, time.Minute, "pod metrics of "+ns+"/busy", func(ctx context.Context) (bool, error) {
		pm, err = mc.MetricsV1beta1().PodMetricses(ns).Get(ctx, "busy", metav1.GetOptions{})
		return err == nil, err
	})
	got := map[string][2]int64{}
	for _, c := range pm.Containers {
		// CPU is a rate over the window between two scrapes, which the
		// scrape's own latency blurs by far less than half a millicore.
		milli := (c.Usage.Cpu().ScaledValue(resource.Nano) + 500_000) / 1_000_000
		got[c.Name] = [2]int64{milli, c.Usage.Memory().Value()}
	}
	require.Equal(t, map[string][2]int64{"app": {40, 48 << 20}, "proxy": {3, 20 << 20}}, got)
	require.Positive(t, pm.Window.Duration)

	// The aggregation layer passes the caller on: a service account
	// without RBAC to read metrics is refused by metrics-server.
	_, err = kc.Client().CoreV1().ServiceAccounts(ns).Create(t.Context(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "nobody"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, cfg, err := kc.ServiceAccountKubeconfig(t.Context(), ns, "nobody", time.Hour)
	require.NoError(t, err)
	nobody, err := metricsclient.NewForConfig(cfg)
	require.NoError(t, err)
	_, err = nobody.MetricsV1beta1().PodMetricses(ns).Get(t.Context(), "busy", metav1.GetOptions{})
	require.True(t, apierrors.IsForbidden(err), "want forbidden, got %v", err)
}
