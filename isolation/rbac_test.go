package isolation_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tenantplane/tenantplane/isolation"
	"github.com/tenantplane/tenantplane/tenancy"
)

// TestPlatformRulesAreEnough runs every isolation component as a
// ServiceAccount holding only isolation.PlatformRules, through a tenant's
// whole life: guards installed, namespace applied, a member added, a
// kubeconfig issued and revoked, a host claimed, suspension and resume of
// workloads, and deletion.
func TestPlatformRulesAreEnough(t *testing.T) {
	t.Parallel()
	e := setup(t, setupOptions{platformRBAC: true})
	pc, err := kubernetes.NewForConfig(e.platform)
	require.NoError(t, err)
	_, err = pc.CoreV1().Secrets("kube-system").List(context.Background(), metav1.ListOptions{})
	require.True(t, apierrors.IsForbidden(err), "the platform identity is no admin: %v", err)
	owner, ns := e.signUp()
	dev, _ := e.signUp()
	e.applied(ns)
	ctx := context.Background()
	_, err = e.svc.AddMember(as(owner.ID), ns.ID, dev.ID, tenancy.RoleDeveloper)
	require.NoError(t, err)
	c := e.tenantClient(owner.ID, ns)
	_, err = c.AppsV1().Deployments(ns.Name).Create(ctx, goodDeployment("web", 2), metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = c.BatchV1().CronJobs(ns.Name).Create(ctx, cronJob("nightly", false), metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = e.hosts.Claim(as(owner.ID), ns.ID, "www.rbac.example")
	require.NoError(t, err)
	require.NoError(t, e.kubecfgs.RevokeAll(as(owner.ID), owner.ID, ""))
	e.settled()

	require.NoError(t, e.susp.Suspend(system("billing"), ns.ID, "debt"))
	e.eventually(20*time.Second, "suspended", func(ctx context.Context) (bool, error) {
		st, err := readWorkloads(ctx, e.kube, ns.Name)
		return err == nil && st.values["Deployment/web"] == "0" && st.values["CronJob/nightly"] == "true", err
	})
	require.NoError(t, e.susp.Resume(system("billing"), ns.ID))
	e.eventually(20*time.Second, "resumed", func(ctx context.Context) (bool, error) {
		st, err := readWorkloads(ctx, e.kube, ns.Name)
		return err == nil && st.values["Deployment/web"] == "2" && st.values["CronJob/nightly"] == "false" && len(st.saved) == 0, err
	})

	// Billing's deletion of a suspended tenant's workloads.
	require.NoError(t, e.susp.Suspend(system("billing"), ns.ID, "debt"))
	e.eventually(20*time.Second, "suspended again", func(ctx context.Context) (bool, error) {
		o, err := e.kube.CoreV1().Namespaces().Get(ctx, ns.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		_, marked := o.Annotations[isolation.AnnotationSuspended]
		return marked, nil
	})
	require.NoError(t, e.rec.RemoveWorkloads(ctx, ns.ID))
	e.eventually(20*time.Second, "the workloads to be gone", func(ctx context.Context) (bool, error) {
		st, err := readWorkloads(ctx, e.kube, ns.Name)
		return err == nil && len(st.values) == 0, err
	})

	_, err = e.svc.DeleteNamespace(as(owner.ID), ns.ID)
	require.NoError(t, err)
	e.eventually(60*time.Second, "the namespace to be deleted", func(ctx context.Context) (bool, error) {
		_, err := e.kube.CoreV1().Namespaces().Get(ctx, ns.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	e.settled()
	require.Zero(t, metricValue(t, e.reg, "tenantplane_isolation_outbox_failures_total"), "no step was refused")
}
