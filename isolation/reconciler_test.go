package isolation_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/isolation"
	"github.com/tenantplane/tenantplane/tenancy"
)

// TestDriftRepaired edits and deletes what the platform owns, as a cluster
// admin would, and sees each put back within 5 seconds by the informers
// alone (no resync runs in this test).
func TestDriftRepaired(t *testing.T) {
	t.Parallel()
	e := setup(t, setupOptions{})
	u, ns := e.signUp()
	e.applied(ns)
	e.settled()
	ctx := context.Background()
	quotas := e.kube.CoreV1().ResourceQuotas(ns.Name)
	policies := e.kube.NetworkingV1().NetworkPolicies(ns.Name)
	binding := isolation.RoleBindingName(u.ID, tenancy.RoleOwner)

	back := func(what string, ok func(ctx context.Context) (bool, error)) {
		t.Helper()
		start := time.Now()
		e.eventually(5*time.Second, what, ok)
		t.Logf("%s repaired in %s", what, time.Since(start).Round(time.Millisecond))
	}
	quotaIsPlan := func(ctx context.Context) (bool, error) {
		q, err := quotas.Get(ctx, isolation.ResourceQuotaName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		pods := q.Spec.Hard[corev1.ResourcePods]
		_, foreign := q.Spec.Hard["count/widgets.example.test"]
		return pods.Value() == 20 && !foreign && len(q.Spec.Hard) == 14, nil
	}
	policyExists := func(name string) func(ctx context.Context) (bool, error) {
		return func(ctx context.Context) (bool, error) {
			p, err := policies.Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return false, nil
			}
			return err == nil && len(p.Spec.Egress) == 3, err
		}
	}

	require.NoError(t, policies.Delete(ctx, isolation.NetworkPolicyEgressName, metav1.DeleteOptions{}))
	back("deleted egress NetworkPolicy", policyExists(isolation.NetworkPolicyEgressName))

	_, err := policies.Patch(ctx, isolation.NetworkPolicyEgressName, types.MergePatchType,
		[]byte(`{"spec":{"egress":[{}]}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"})
	require.NoError(t, err)
	back("egress NetworkPolicy opened to everything", policyExists(isolation.NetworkPolicyEgressName))

	_, err = quotas.Patch(ctx, isolation.ResourceQuotaName, types.MergePatchType,
		[]byte(`{"spec":{"hard":{"pods":"1000","count/widgets.example.test":"5"}}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"})
	require.NoError(t, err)
	back("ResourceQuota raised and given a foreign limit", quotaIsPlan)

	require.NoError(t, quotas.Delete(ctx, isolation.ResourceQuotaName, metav1.DeleteOptions{}))
	back("deleted ResourceQuota", quotaIsPlan)

	require.NoError(t, e.kube.RbacV1().RoleBindings(ns.Name).Delete(ctx, binding, metav1.DeleteOptions{}))
	back("deleted RoleBinding", func(ctx context.Context) (bool, error) {
		_, err := e.kube.RbacV1().RoleBindings(ns.Name).Get(ctx, binding, metav1.GetOptions{})
		return err == nil, nil
	})

	_, err = e.kube.CoreV1().Namespaces().Patch(ctx, ns.Name, types.MergePatchType,
		[]byte(`{"metadata":{"labels":{"pod-security.kubernetes.io/enforce":"privileged"}}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"})
	require.NoError(t, err)
	back("namespace Pod Security relaxed", func(ctx context.Context) (bool, error) {
		n, err := e.kube.CoreV1().Namespaces().Get(ctx, ns.Name, metav1.GetOptions{})
		return err == nil && n.Labels["pod-security.kubernetes.io/enforce"] == "restricted", err
	})

	require.NoError(t, e.kube.CoreV1().ServiceAccounts(e.cfg.UsersNamespace).Delete(ctx, isolation.ServiceAccountName(u.ID), metav1.DeleteOptions{}))
	back("deleted user ServiceAccount", func(ctx context.Context) (bool, error) {
		_, err := e.kube.CoreV1().ServiceAccounts(e.cfg.UsersNamespace).Get(ctx, isolation.ServiceAccountName(u.ID), metav1.GetOptions{})
		return err == nil, nil
	})
	require.Positive(t, metricValue(t, e.reg, "tenantplane_isolation_drift_events_total"))
}

// TestMembershipFollowsTenancy drives membership changes through the
// tenancy service and sees the RoleBindings follow: added, role changed
// (a new binding, the old one gone), removed at once, disabled user's
// account and bindings gone.
func TestMembershipFollowsTenancy(t *testing.T) {
	t.Parallel()
	e := setup(t, setupOptions{})
	owner, ns := e.signUp()
	dev, _ := e.signUp()
	e.applied(ns)
	ctx := context.Background()
	bindings := func(ctx context.Context) (map[string]string, error) {
		rbs, err := e.kube.RbacV1().RoleBindings(ns.Name).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		out := map[string]string{}
		for _, rb := range rbs.Items {
			out[rb.Name] = rb.RoleRef.Name
		}
		return out, nil
	}
	want := func(what string, w map[string]string) {
		t.Helper()
		e.eventually(10*time.Second, what, func(ctx context.Context) (bool, error) {
			got, err := bindings(ctx)
			return err == nil && len(got) == len(w) && equalMaps(got, w), err
		})
	}
	ownerRB := isolation.RoleBindingName(owner.ID, tenancy.RoleOwner)

	_, err := e.svc.AddMember(as(owner.ID), ns.ID, dev.ID, tenancy.RoleDeveloper)
	require.NoError(t, err)
	want("developer added", map[string]string{ownerRB: "tenantplane:owner",
		isolation.RoleBindingName(dev.ID, tenancy.RoleDeveloper): "tenantplane:developer"})

	_, err = e.svc.SetMemberRole(as(owner.ID), ns.ID, dev.ID, tenancy.RoleViewer)
	require.NoError(t, err)
	want("developer made viewer", map[string]string{ownerRB: "tenantplane:owner",
		isolation.RoleBindingName(dev.ID, tenancy.RoleViewer): "tenantplane:viewer"})

	// The viewer's kubeconfig reads but cannot write.
	c := e.tenantClient(dev.ID, ns)
	_, err = c.CoreV1().ConfigMaps(ns.Name).List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	_, err = c.CoreV1().ConfigMaps(ns.Name).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
	require.True(t, apierrors.IsForbidden(err), "viewer may not write: %v", err)

	require.NoError(t, e.svc.RemoveMember(as(owner.ID), ns.ID, dev.ID))
	want("viewer removed", map[string]string{ownerRB: "tenantplane:owner"})
	_, err = c.CoreV1().ConfigMaps(ns.Name).List(ctx, metav1.ListOptions{})
	require.True(t, apierrors.IsForbidden(err), "a removed member reads nothing: %v", err)
	// Disabling the owner takes away their account (and so every token)
	// and their bindings.
	oc := e.tenantClient(owner.ID, ns)
	require.NoError(t, e.svc.DisableUser(system("admin-console"), owner.ID))
	want("disabled owner's binding gone", map[string]string{})
	e.eventually(30*time.Second, "disabled owner's token to stop working", func(ctx context.Context) (bool, error) {
		_, err := oc.CoreV1().ConfigMaps(ns.Name).List(ctx, metav1.ListOptions{})
		return apierrors.IsUnauthorized(err), nil
	})
	_, err = e.kubecfgs.Issue(as(owner.ID), ns.ID, 0)
	require.Equal(t, errcode.Forbidden, errcode.Of(err))

	require.NoError(t, e.svc.EnableUser(system("admin-console"), owner.ID))
	want("re-enabled owner's binding back", map[string]string{ownerRB: "tenantplane:owner"})
}

func equalMaps(a, b map[string]string) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return len(a) == len(b)
}

// TestOutboxRetriesWithBackoff creates a namespace whose name Kubernetes
// already has for something else: the reconciler refuses to take it over,
// records each attempt and its error with a growing delay, and succeeds
// once the name is free.
func TestOutboxRetriesWithBackoff(t *testing.T) {
	t.Parallel()
	e := setup(t, setupOptions{})
	owner, _ := e.signUp()
	ctx := context.Background()
	orgs, err := e.svc.MyOrgs(as(owner.ID), tenancy.PageArgs{})
	require.NoError(t, err)
	name := "taken-" + e.cfg.Instance
	_, err = e.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	require.NoError(t, err)

	ns, err := e.svc.CreateNamespace(as(owner.ID), orgs.Edges[0].Node.Org.ID, name)
	require.NoError(t, err)
	type row struct {
		attempts int
		lastErr  string
	}
	read := func(ctx context.Context) (row, error) {
		var r row
		err := e.db.Pool.QueryRow(ctx, `SELECT attempts, last_error FROM outbox
			WHERE key = $1 AND kind = 'namespace.create'`, tenancy.NamespaceKey(ns.ID)).Scan(&r.attempts, &r.lastErr)
		return r, err
	}
	e.eventually(15*time.Second, "three failed attempts", func(ctx context.Context) (bool, error) {
		r, err := read(ctx)
		return err == nil && r.attempts >= 3, err
	})
	r, err := read(ctx)
	require.NoError(t, err)
	require.Contains(t, r.lastErr, "does not belong to namespace")
	require.Positive(t, metricValue(t, e.reg, "tenantplane_isolation_outbox_failures_total"))
	// Nothing of the tenant's reached the foreign namespace.
	rbs, err := e.kube.RbacV1().RoleBindings(name).List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	require.Empty(t, rbs.Items)
	foreign := nsObject(t, e.kube, name)
	require.NotContains(t, foreign.Labels, isolation.LabelManagedBy)

	require.NoError(t, e.kube.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{}))
	e.applied(ns)
	e.eventually(20*time.Second, "the row to be done", func(ctx context.Context) (bool, error) {
		var done bool
		err := e.db.Pool.QueryRow(ctx, `SELECT done_at IS NOT NULL FROM outbox WHERE key = $1 AND kind = 'namespace.create'`,
			tenancy.NamespaceKey(ns.ID)).Scan(&done)
		return done, err
	})
}

// TestNamespaceDeletionWaitsForKubernetes deletes a namespace through the
// tenancy service: the outbox row stays pending until Kubernetes has
// removed the namespace, then the deletion is recorded and the owner's
// account (with no namespace left) goes.
func TestNamespaceDeletionWaitsForKubernetes(t *testing.T) {
	t.Parallel()
	e := setup(t, setupOptions{})
	owner, ns := e.signUp()
	e.applied(ns)
	ctx := context.Background()
	_, err := e.kube.CoreV1().ConfigMaps(ns.Name).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "data"}}, metav1.CreateOptions{})
	require.NoError(t, err)

	_, err = e.svc.DeleteNamespace(as(owner.ID), ns.ID)
	require.NoError(t, err)
	err = e.susp.Suspend(system("billing"), ns.ID, "debt")
	require.Equal(t, errcode.Conflict, errcode.Of(err), "a deleting namespace cannot be suspended")
	_, err = e.kubecfgs.Issue(as(owner.ID), ns.ID, 0)
	require.Equal(t, errcode.Conflict, errcode.Of(err))

	var sawTerminating bool
	e.eventually(60*time.Second, "the namespace to be gone and recorded", func(ctx context.Context) (bool, error) {
		n, err := e.kube.CoreV1().Namespaces().Get(ctx, ns.Name, metav1.GetOptions{})
		if err == nil && n.DeletionTimestamp != nil {
			sawTerminating = true
			var done bool
			require.NoError(t, e.db.Pool.QueryRow(ctx, `SELECT bool_and(done_at IS NOT NULL) FROM outbox WHERE key = $1`,
				tenancy.NamespaceKey(ns.ID)).Scan(&done))
			require.False(t, done, "the outbox row is done only once Kubernetes is")
		}
		var recorded bool
		if err := e.db.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM kube_namespace_deletions WHERE namespace_id = $1)`, ns.ID).Scan(&recorded); err != nil {
			return false, err
		}
		return apierrors.IsNotFound(err) && recorded, nil
	})
	require.True(t, sawTerminating, "the namespace went through Terminating")
	e.settled()
	e.eventually(10*time.Second, "the owner's account to go", func(ctx context.Context) (bool, error) {
		_, err := e.kube.CoreV1().ServiceAccounts(e.cfg.UsersNamespace).Get(ctx, isolation.ServiceAccountName(owner.ID), metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}

// TestResyncRepairsAndRemovesOrphans runs without informer-driven repair
// (the reconciler is not running): a full resync alone puts back a deleted
// policy and deletes a namespace of this installation that Postgres does
// not know.
func TestResyncRepairsAndRemovesOrphans(t *testing.T) {
	t.Parallel()
	e := setup(t, setupOptions{noRun: true})
	_, ns := e.signUp()
	ctx := context.Background()
	require.NoError(t, e.rec.SyncNamespace(ctx, ns.ID))
	require.NoError(t, e.kube.NetworkingV1().NetworkPolicies(ns.Name).Delete(ctx, isolation.NetworkPolicyIngressName, metav1.DeleteOptions{}))
	orphan := "orphan-" + e.cfg.Instance
	_, err := e.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: orphan, Labels: map[string]string{
		isolation.LabelManagedBy: isolation.ManagedBy, isolation.LabelInstance: e.cfg.Instance, isolation.LabelNamespaceID: "999999",
	}}}, metav1.CreateOptions{})
	require.NoError(t, err)
	// Another installation's namespace with the same ID is not ours.
	other := "other-" + e.cfg.Instance
	_, err = e.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: other, Labels: map[string]string{
		isolation.LabelManagedBy: isolation.ManagedBy, isolation.LabelInstance: "someone-else", isolation.LabelNamespaceID: "999999",
	}}}, metav1.CreateOptions{})
	require.NoError(t, err)
	e.eventually(5*time.Second, "the orphan in the cache", func(ctx context.Context) (bool, error) {
		_, err := e.kube.CoreV1().Namespaces().Get(ctx, orphan, metav1.GetOptions{})
		return err == nil, err
	})
	time.Sleep(200 * time.Millisecond) // let the informer see it

	require.NoError(t, e.rec.Resync(ctx))
	require.Positive(t, metricValue(t, e.reg, "tenantplane_isolation_queue_depth"), "the orphan was queued")
	_, err = e.kube.NetworkingV1().NetworkPolicies(ns.Name).Get(ctx, isolation.NetworkPolicyIngressName, metav1.GetOptions{})
	require.NoError(t, err, "the resync put the policy back")
	// Orphans go through the queue; one sync of the key deletes it.
	require.Error(t, e.rec.SyncNamespace(ctx, 999999), "deletion waits for Kubernetes")
	o := nsObject(t, e.kube, orphan)
	require.NotNil(t, o.DeletionTimestamp, "the orphan is being deleted")
	require.Nil(t, nsObject(t, e.kube, other).DeletionTimestamp, "another installation's namespace is left alone")
}

// metricValue sums the samples of the metric name in reg.
func metricValue(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			}
		}
	}
	return sum
}

// TestResyncSendsOnlyChanges shows that a resync of namespaces that are
// exactly as last applied sends nothing, and that one changed by someone
// else (even a field the platform does not set) is sent again.
func TestResyncSendsOnlyChanges(t *testing.T) {
	t.Parallel()
	e := setup(t, setupOptions{noRun: true})
	var nss []tenancy.Namespace
	for range 5 {
		_, ns := e.signUp()
		nss = append(nss, ns)
	}
	ctx := context.Background()
	require.NoError(t, e.rec.Resync(ctx))
	applied := metricValue(t, e.reg, "tenantplane_isolation_applied_objects_total")
	require.Equal(t, float64(5*11), applied, "the first resync applies every object")
	time.Sleep(500 * time.Millisecond) // let the informers catch up

	require.NoError(t, e.rec.Resync(ctx))
	require.Equal(t, applied, metricValue(t, e.reg, "tenantplane_isolation_applied_objects_total"), "nothing was sent")
	require.Equal(t, float64(5*11), metricValue(t, e.reg, "tenantplane_isolation_unchanged_objects_total"))

	_, err := e.kube.CoreV1().LimitRanges(nss[2].Name).Patch(ctx, isolation.LimitRangeName, types.MergePatchType,
		[]byte(`{"metadata":{"labels":{"someone":"else"}}}`), metav1.PatchOptions{FieldManager: "kubectl-label"})
	require.NoError(t, err)
	time.Sleep(500 * time.Millisecond)
	require.NoError(t, e.rec.Resync(ctx))
	require.Equal(t, applied+1, metricValue(t, e.reg, "tenantplane_isolation_applied_objects_total"), "only the touched object was sent")
}
