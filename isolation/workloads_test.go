package isolation_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/isolation"
)

func TestRemoveWorkloadsOnlyOfSuspendedTenants(t *testing.T) {
	t.Parallel()
	e := setup(t, setupOptions{})
	owner, ns := e.signUp()
	e.applied(ns)
	ctx := context.Background()
	c := e.tenantClient(owner.ID, ns)
	n := ns.Name
	_, err := c.AppsV1().Deployments(n).Create(ctx, goodDeployment("web", 2), metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = c.AppsV1().StatefulSets(n).Create(ctx, statefulSet("db", 1), metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = c.BatchV1().CronJobs(n).Create(ctx, cronJob("nightly", false), metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = c.CoreV1().ConfigMaps(n).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "settings"}}, metav1.CreateOptions{})
	require.NoError(t, err)

	// An active namespace is refused, and so is one that does not exist.
	require.Equal(t, errcode.Conflict, errcode.Of(e.rec.RemoveWorkloads(ctx, ns.ID)))
	require.Equal(t, errcode.NotFound, errcode.Of(e.rec.RemoveWorkloads(ctx, ns.ID+1000)))
	deps, err := e.kube.AppsV1().Deployments(n).List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	require.Len(t, deps.Items, 1)

	require.NoError(t, e.susp.Suspend(system("billing"), ns.ID, "debt"))
	e.eventually(20*time.Second, "the namespace to be marked suspended", func(ctx context.Context) (bool, error) {
		o, err := e.kube.CoreV1().Namespaces().Get(ctx, n, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		_, marked := o.Annotations[isolation.AnnotationSuspended]
		return marked, nil
	})
	require.NoError(t, e.rec.RemoveWorkloads(ctx, ns.ID))
	e.eventually(20*time.Second, "the workloads to be gone", func(ctx context.Context) (bool, error) {
		deps, err := e.kube.AppsV1().Deployments(n).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		sts, err := e.kube.AppsV1().StatefulSets(n).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		cjs, err := e.kube.BatchV1().CronJobs(n).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		return len(deps.Items)+len(sts.Items)+len(cjs.Items) == 0, nil
	})
	// Data and the platform's own objects stay.
	_, err = e.kube.CoreV1().ConfigMaps(n).Get(ctx, "settings", metav1.GetOptions{})
	require.NoError(t, err)
	_, err = e.kube.CoreV1().ResourceQuotas(n).Get(ctx, isolation.ResourceQuotaName, metav1.GetOptions{})
	require.NoError(t, err)
	// A second call finds nothing left and succeeds.
	require.NoError(t, e.rec.RemoveWorkloads(ctx, ns.ID))
}
