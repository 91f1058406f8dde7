package server

import (
	"context"
	"encoding/json"
	"fmt"
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
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/billing/billingstore"
	"github.com/tenantplane/tenantplane/internal/testenv"
	"github.com/tenantplane/tenantplane/isolation"
	"github.com/tenantplane/tenantplane/tenancy"
)

// testClock is a settable clock for the lifecycle.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// webhookSink receives webhooks on loopback and keeps those whose
// signature verifies.
type webhookSink struct {
	mu     sync.Mutex
	secret string
	now    func() time.Time
	events []billing.WebhookPayload
	bad    int
}

func (s *webhookSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	defer s.mu.Unlock()
	var p billing.WebhookPayload
	if billing.VerifyWebhookSignature(s.secret, r.Header.Get(billing.WebhookSignatureHeader), body, s.now(), time.Minute) != nil ||
		json.Unmarshal(body, &p) != nil {
		s.bad++
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	s.events = append(s.events, p)
}

func (s *webhookSink) types() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, e := range s.events {
		out = append(out, e.Type)
	}
	return out
}

// workloads is what a tenant runs, as the test compares it.
type workloads struct {
	deployments  map[string]appsv1.DeploymentSpec
	statefulSets map[string]appsv1.StatefulSetSpec
	cronJobs     map[string]batchv1.CronJobSpec
	annotations  map[string]map[string]string
}

func readTenantWorkloads(ctx context.Context, kube kubernetes.Interface, ns string) (workloads, error) {
	w := workloads{deployments: map[string]appsv1.DeploymentSpec{}, statefulSets: map[string]appsv1.StatefulSetSpec{},
		cronJobs: map[string]batchv1.CronJobSpec{}, annotations: map[string]map[string]string{}}
	deps, err := kube.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return w, err
	}
	for _, d := range deps.Items {
		w.deployments[d.Name], w.annotations["Deployment/"+d.Name] = d.Spec, d.Annotations
	}
	sts, err := kube.AppsV1().StatefulSets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return w, err
	}
	for _, s := range sts.Items {
		w.statefulSets[s.Name], w.annotations["StatefulSet/"+s.Name] = s.Spec, s.Annotations
	}
	cjs, err := kube.BatchV1().CronJobs(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return w, err
	}
	for _, c := range cjs.Items {
		w.cronJobs[c.Name], w.annotations["CronJob/"+c.Name] = c.Spec, c.Annotations
	}
	return w, nil
}

func tenantPodSpec() corev1.PodTemplateSpec {
	no, yes := false, true
	rc := "kata-fc"
	grace := int64(1)
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "x"},
			Annotations: map[string]string{isolation.AnnotationEgressBandwidth: "10M"}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: &grace,
			RuntimeClassName:              &rc,
			SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: &yes, RunAsUser: new(int64(1000)),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			Containers: []corev1.Container{{Name: "app", Image: "registry.example.test/app:1",
				SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: &no,
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}}},
		},
	}
}

func template(app string) corev1.PodTemplateSpec {
	t := tenantPodSpec()
	t.Labels = map[string]string{"app": app}
	return t
}

// TestDebtLifecycleEndToEnd drains a prepaid balance with usage charges
// posted through the ledger, checks each warning goes out once by mail and
// by signed webhook, lets the grace period pass on a fake clock so that
// the namespace is suspended by isolation's real reconciler in a real
// API server, then pays with a credit and checks every workload is back
// exactly as it was.
func TestDebtLifecycleEndToEnd(t *testing.T) {
	t.Parallel()
	kc := testenv.KubeWithPods(t)
	db := testenv.Postgres(t)
	admin := kc.Client()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)

	// An installation of its own, so tests sharing the control plane never
	// touch each other's objects or Leases.
	isoFile := filepath.Join(t.TempDir(), "isolation.yaml")
	require.NoError(t, os.WriteFile(isoFile, []byte("Instance: lce2e\nUsersNamespace: lce2e-users\n"), 0o600))
	cfg := defaultConfig()
	cfg.DatabaseURL, cfg.Kubeconfig = db.URL, kc.KubeconfigPath()
	cfg.HTTP.Listen, cfg.Identity.Mailer, cfg.LogLevel = "127.0.0.1:0", "log", "warn"
	cfg.Isolation.ConfigFile, cfg.Isolation.LeaseNamespace = isoFile, "lce2e-system"
	cfg.BillingLifecycle.Grace = 2 * time.Hour
	cfg.BillingLifecycle.WebhookAllowHTTP = true
	cfg.BillingLifecycle.WebhookAllowNets = []string{"127.0.0.0/8"}
	require.NoError(t, cfg.validate())
	log := slog.New(slog.DiscardHandler)
	a, err := newApp(ctx, cfg, log)
	require.NoError(t, err)
	t.Cleanup(a.close)
	isoDone := make(chan struct{})
	go func() {
		defer close(isoDone)
		_ = runIsolation(a.isolation, a.kube, cfg.Isolation, log)(ctx)
	}()
	t.Cleanup(func() { cancel(); <-isoDone })

	clock := &testClock{t: time.Now().UTC().Truncate(time.Hour)}
	ledger := billingstore.New(a.pool, clock.now)
	lc, err := newLifecycle(cfg.BillingLifecycle, a, ledger, clock.now, prometheus.NewRegistry())
	require.NoError(t, err)

	_, err = admin.NodeV1().RuntimeClasses().Create(ctx, &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: "kata-fc"},
		Handler: "kata-fc"}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		require.NoError(t, err)
	}

	// A tenant signs up: an org with one namespace, applied by isolation.
	u, err := a.tenancy.SignUp(tenancy.WithActor(ctx, tenancy.Actor{IP: netip.MustParseAddr("10.1.2.3")}),
		"payer@example.test", "correct horse battery", "")
	require.NoError(t, err)
	as := tenancy.WithActor(ctx, tenancy.Actor{UserID: u.ID})
	orgs, err := a.tenancy.MyOrgs(as, tenancy.PageArgs{})
	require.NoError(t, err)
	org := orgs.Edges[0].Node.Org.ID
	nss, err := a.tenancy.OrgNamespaces(as, org, tenancy.PageArgs{})
	require.NoError(t, err)
	ns := nss.Edges[0].Node
	require.Eventually(t, func() bool {
		q, err := admin.CoreV1().ResourceQuotas(ns.Name).Get(ctx, isolation.ResourceQuotaName, metav1.GetOptions{})
		return err == nil && q != nil
	}, 60*time.Second, 50*time.Millisecond, "namespace %s applied", ns.Name)

	// What it runs.
	two, three, one := int32(2), int32(3), int32(1)
	_, err = admin.AppsV1().Deployments(ns.Name).Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{Replicas: &two, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: template("web")}}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = admin.AppsV1().Deployments(ns.Name).Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "api"},
		Spec: appsv1.DeploymentSpec{Replicas: &three, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}},
			Template: template("api")}}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = admin.AppsV1().StatefulSets(ns.Name).Create(ctx, &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec: appsv1.StatefulSetSpec{Replicas: &one, ServiceName: "db",
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}, Template: template("db")}}, metav1.CreateOptions{})
	require.NoError(t, err)
	job := template("nightly")
	job.Spec.RestartPolicy = corev1.RestartPolicyNever
	_, err = admin.BatchV1().CronJobs(ns.Name).Create(ctx, &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Name: "nightly"},
		Spec: batchv1.CronJobSpec{Schedule: "0 0 29 2 *", Suspend: new(false),
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: job}}}}, metav1.CreateOptions{})
	require.NoError(t, err)
	var before workloads
	require.Eventually(t, func() bool {
		w, err := readTenantWorkloads(ctx, admin, ns.Name)
		// The deployment controller has stamped its revision.
		ok := err == nil && w.annotations["Deployment/web"]["deployment.kubernetes.io/revision"] != "" &&
			w.annotations["Deployment/api"]["deployment.kubernetes.io/revision"] != ""
		before = w
		return ok
	}, 60*time.Second, 50*time.Millisecond)

	// The owner configures a webhook to a receiver on loopback.
	sink := &webhookSink{now: clock.now}
	srv := httptest.NewServer(sink)
	t.Cleanup(srv.Close)
	actor := tenancy.Actor{UserID: u.ID}
	_, secret, err := lc.SetWebhook(ctx, org, srv.URL+"/billing", actor)
	require.NoError(t, err)
	sink.mu.Lock()
	sink.secret = secret
	sink.mu.Unlock()

	post := func(kind billing.Kind, amount int64, ref string) {
		t.Helper()
		_, err := ledger.Post(ctx, billing.Posting{OrgID: org, Kind: kind, Amount: amount, Currency: "USD", Reference: ref,
			Actor: "system:test", At: clock.now(), Description: "test"})
		require.NoError(t, err)
		lc.BalanceChanged(ctx, org)
	}

	// A prepaid top-up of 12, drained by one unit of usage an hour.
	post(billing.KindTopUp, 12*billing.MicrosPerUnit, "topup:1")
	for h := range 13 {
		clock.advance(time.Hour)
		post(billing.KindCharge, -billing.MicrosPerUnit, fmt.Sprintf("charge:org:%d:h%d", org, h))
		require.NoError(t, lc.Pass(ctx))
	}
	st, err := a.tenancy.Namespace(as, ns.ID)
	require.NoError(t, err)
	require.Equal(t, tenancy.NamespaceActive, st.State, "inside the grace period")
	rep, err := lc.Debt(ctx, org)
	require.NoError(t, err)
	require.Equal(t, billing.DebtInDebt, rep.Status.State)
	require.Equal(t, int64(-billing.MicrosPerUnit), rep.Status.Usable)
	burn, err := billing.RoundDiv(13*billing.MicrosPerUnit, 24) // 13 charges in the last day
	require.NoError(t, err)
	require.Equal(t, burn, rep.Forecast.BurnPerHour)
	require.Equal(t, time.Hour, *rep.Forecast.TimeLeft, "two hours of grace from the hour the balance reached zero")

	clock.advance(time.Hour)
	require.NoError(t, lc.Pass(ctx))
	rep, err = lc.Debt(ctx, org)
	require.NoError(t, err)
	require.Equal(t, billing.DebtSuspended, rep.Status.State)

	// Isolation suspends it in Kubernetes: everything at zero, a quota
	// that admits no pods.
	require.Eventually(t, func() bool {
		w, err := readTenantWorkloads(ctx, admin, ns.Name)
		if err != nil {
			return false
		}
		_, qerr := admin.CoreV1().ResourceQuotas(ns.Name).Get(ctx, isolation.SuspendedResourceQuotaName, metav1.GetOptions{})
		return qerr == nil && *w.deployments["web"].Replicas == 0 && *w.deployments["api"].Replicas == 0 &&
			*w.statefulSets["db"].Replicas == 0 && *w.cronJobs["nightly"].Suspend
	}, 60*time.Second, 100*time.Millisecond, "namespace suspended in Kubernetes")

	// A credit pays the debt: resumed at once, every workload as before.
	clock.advance(30 * time.Minute)
	post(billing.KindCredit, 50*billing.MicrosPerUnit, "credit:1")
	rep, err = lc.Debt(ctx, org)
	require.NoError(t, err)
	require.Equal(t, billing.DebtNormal, rep.Status.State)
	require.Eventually(t, func() bool {
		w, err := readTenantWorkloads(ctx, admin, ns.Name)
		if err != nil {
			return false
		}
		_, qerr := admin.CoreV1().ResourceQuotas(ns.Name).Get(ctx, isolation.SuspendedResourceQuotaName, metav1.GetOptions{})
		nsObj, nerr := admin.CoreV1().Namespaces().Get(ctx, ns.Name, metav1.GetOptions{})
		_, marked := nsObj.Annotations[isolation.AnnotationSuspended]
		return apierrors.IsNotFound(qerr) && nerr == nil && !marked && *w.deployments["web"].Replicas == 2
	}, 60*time.Second, 100*time.Millisecond, "namespace resumed in Kubernetes")
	after, err := readTenantWorkloads(ctx, admin, ns.Name)
	require.NoError(t, err)
	require.Equal(t, before.deployments, after.deployments)
	require.Equal(t, before.statefulSets, after.statefulSets)
	require.Equal(t, before.cronJobs, after.cronJobs)
	require.Equal(t, before.annotations, after.annotations)

	// Each notice went out once, by mail and by signed webhook.
	require.NoError(t, lc.Pass(ctx))
	rows, err := a.pool.Query(ctx, `SELECT kind, count(*) FROM mail_outbox WHERE recipient = $1 AND kind LIKE 'billing_%' GROUP BY kind`, u.Email)
	require.NoError(t, err)
	mails := map[string]int{}
	for rows.Next() {
		var k string
		var n int
		require.NoError(t, rows.Scan(&k, &n))
		mails[k] = n
	}
	require.NoError(t, rows.Err())
	require.Equal(t, map[string]int{"billing_low_balance": 1, "billing_critical": 1, "billing_debt": 1,
		"billing_suspended": 1, "billing_resumed": 1}, mails)
	require.Equal(t, []string{"billing.debt.low_balance", "billing.debt.critical", "billing.debt.debt",
		"billing.debt.suspended", "billing.debt.resumed"}, sink.types())
	require.Zero(t, sink.bad)
}
