package isolation_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/tenantplane/tenantplane/isolation"
	"github.com/tenantplane/tenantplane/tenancy"
)

func statefulSet(name string, replicas int32) *appsv1.StatefulSet {
	p := goodPod(name)
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.StatefulSetSpec{
			Replicas: &replicas, ServiceName: name,
			Selector: &metav1.LabelSelector{MatchLabels: p.Labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: p.ObjectMeta, Spec: p.Spec},
		},
	}
}

func replicaSet(name string, replicas int32) *appsv1.ReplicaSet {
	p := goodPod(name)
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: p.Labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: p.ObjectMeta, Spec: p.Spec},
		},
	}
}

func jobSpec(name string) batchv1.JobSpec {
	p := goodPod(name)
	p.Spec.RestartPolicy = corev1.RestartPolicyNever
	return batchv1.JobSpec{Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Annotations: p.Annotations}, Spec: p.Spec}}
}

func cronJob(name string, suspend bool) *batchv1.CronJob {
	return &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: batchv1.CronJobSpec{
			// Midnight on February 29th: it never fires while a test runs.
			Schedule: "0 0 29 2 *", Suspend: &suspend,
			JobTemplate: batchv1.JobTemplateSpec{Spec: jobSpec(name)},
		},
	}
}

func job(name string, suspend bool) *batchv1.Job {
	s := jobSpec(name)
	s.Suspend = &suspend
	return &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: s}
}

// workloadState is every replica count and suspend flag in a namespace,
// with the suspension annotations still present.
type workloadState struct {
	values map[string]string // "Deployment/web" -> "3", "CronJob/nightly" -> "false"
	saved  map[string]string // the same keys -> saved annotation, when present
}

func readWorkloads(ctx context.Context, c kubernetes.Interface, ns string) (workloadState, error) {
	st := workloadState{values: map[string]string{}, saved: map[string]string{}}
	put := func(key, val string, ann map[string]string, savedKey string) {
		st.values[key] = val
		if s, ok := ann[savedKey]; ok {
			st.saved[key] = s
		}
	}
	deps, err := c.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return st, err
	}
	for _, d := range deps.Items {
		put("Deployment/"+d.Name, fmt.Sprint(*d.Spec.Replicas), d.Annotations, isolation.AnnotationSavedReplicas)
	}
	sts, err := c.AppsV1().StatefulSets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return st, err
	}
	for _, d := range sts.Items {
		put("StatefulSet/"+d.Name, fmt.Sprint(*d.Spec.Replicas), d.Annotations, isolation.AnnotationSavedReplicas)
	}
	rss, err := c.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return st, err
	}
	for _, d := range rss.Items {
		if len(d.OwnerReferences) == 0 {
			put("ReplicaSet/"+d.Name, fmt.Sprint(*d.Spec.Replicas), d.Annotations, isolation.AnnotationSavedReplicas)
		}
	}
	cjs, err := c.BatchV1().CronJobs(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return st, err
	}
	for _, d := range cjs.Items {
		put("CronJob/"+d.Name, fmt.Sprint(*d.Spec.Suspend), d.Annotations, isolation.AnnotationSavedSuspend)
	}
	jobs, err := c.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return st, err
	}
	for _, d := range jobs.Items {
		put("Job/"+d.Name, fmt.Sprint(*d.Spec.Suspend), d.Annotations, isolation.AnnotationSavedSuspend)
	}
	return st, nil
}

// suspendedValue is what suspension sets: zero replicas, suspended.
func suspendedValue(key string) string {
	if key[:3] == "Cro" || key[:3] == "Job" {
		return "true"
	}
	return "0"
}

// TestSuspendResumeExact suspends a namespace with Deployments,
// StatefulSets, an ownerless ReplicaSet, CronJobs, a Job and a bare pod
// through the Suspender, and resumes it: afterwards every replica count and
// suspend flag is what it was before, and the pods run again.
func TestSuspendResumeExact(t *testing.T) {
	t.Parallel()
	e := setup(t, setupOptions{pods: true})
	owner, ns := e.signUp()
	e.applied(ns)
	ctx := context.Background()
	c := e.tenantClient(owner.ID, ns)
	n := ns.Name

	_, err := c.AppsV1().Deployments(n).Create(ctx, goodDeployment("web", 3), metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = c.AppsV1().Deployments(n).Create(ctx, goodDeployment("idle", 0), metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = c.AppsV1().StatefulSets(n).Create(ctx, statefulSet("db", 2), metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = c.AppsV1().ReplicaSets(n).Create(ctx, replicaSet("bare", 1), metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = c.BatchV1().CronJobs(n).Create(ctx, cronJob("nightly", false), metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = c.BatchV1().CronJobs(n).Create(ctx, cronJob("paused", true), metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = c.BatchV1().Jobs(n).Create(ctx, job("later", true), metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = c.CoreV1().Pods(n).Create(ctx, goodPod("solo"), metav1.CreateOptions{})
	require.NoError(t, err)
	running := func(want int) func(ctx context.Context) (bool, error) {
		return func(ctx context.Context) (bool, error) {
			pods, err := c.CoreV1().Pods(n).List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, err
			}
			ready := 0
			for _, p := range pods.Items {
				if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
					ready++
				}
			}
			return ready == want, nil
		}
	}
	e.eventually(60*time.Second, "7 pods running", running(3+2+1+1))
	before, err := readWorkloads(ctx, c, n)
	require.NoError(t, err)
	require.Empty(t, before.saved)
	require.Equal(t, map[string]string{
		"Deployment/web": "3", "Deployment/idle": "0", "StatefulSet/db": "2", "ReplicaSet/bare": "1",
		"CronJob/nightly": "false", "CronJob/paused": "true", "Job/later": "true",
	}, before.values)

	// Suspend.
	require.NoError(t, e.susp.Suspend(system("billing"), ns.ID, "debt"))
	e.eventually(30*time.Second, "everything suspended and no pod left", func(ctx context.Context) (bool, error) {
		st, err := readWorkloads(ctx, e.kube, n)
		if err != nil {
			return false, err
		}
		for k := range before.values {
			if st.values[k] != suspendedValue(k) || st.saved[k] != before.values[k] {
				return false, nil
			}
		}
		pods, err := e.kube.CoreV1().Pods(n).List(ctx, metav1.ListOptions{})
		return err == nil && len(pods.Items) == 0, err
	})
	suspendedNS := nsObject(t, e.kube, n)
	require.Contains(t, suspendedNS.Annotations, isolation.AnnotationSuspended)
	require.Equal(t, "suspended", suspendedNS.Labels[isolation.LabelState])
	_, err = e.kube.CoreV1().ResourceQuotas(n).Get(ctx, isolation.SuspendedResourceQuotaName, metav1.GetOptions{})
	require.NoError(t, err)
	_, err = e.kube.RbacV1().RoleBindings(n).Get(ctx, isolation.RoleBindingName(owner.ID, tenancy.RoleViewer), metav1.GetOptions{})
	require.NoError(t, err)
	_, err = e.kube.RbacV1().RoleBindings(n).Get(ctx, isolation.RoleBindingName(owner.ID, tenancy.RoleOwner), metav1.GetOptions{})
	require.True(t, apierrors.IsNotFound(err), "the owner's write binding is gone while suspended")

	// The tenant reads but changes nothing while suspended.
	_, err = c.AppsV1().Deployments(n).List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	_, err = c.AppsV1().Deployments(n).Patch(ctx, "web", types.MergePatchType, []byte(`{"spec":{"replicas":5}}`), metav1.PatchOptions{})
	require.True(t, apierrors.IsForbidden(err), "scaling up while suspended: %v", err)
	_, err = c.CoreV1().Pods(n).Create(ctx, goodPod("sneak"), metav1.CreateOptions{})
	require.True(t, apierrors.IsForbidden(err), "a pod while suspended: %v", err)

	// Suspending again, or reconciling again, changes nothing.
	require.NoError(t, e.susp.Suspend(system("billing"), ns.ID, "debt"))
	require.NoError(t, e.rec.SyncNamespace(ctx, ns.ID))
	require.NoError(t, e.rec.SyncNamespace(ctx, ns.ID))
	again, err := readWorkloads(ctx, e.kube, n)
	require.NoError(t, err)
	require.Equal(t, before.values, again.saved, "saved values are never overwritten")

	// Resume.
	require.NoError(t, e.susp.Resume(system("billing"), ns.ID))
	e.eventually(30*time.Second, "everything restored", func(ctx context.Context) (bool, error) {
		st, err := readWorkloads(ctx, e.kube, n)
		if err != nil {
			return false, err
		}
		return equalMaps(st.values, before.values) && len(st.saved) == 0, nil
	})
	e.eventually(10*time.Second, "the marker and the zero quota to go", func(ctx context.Context) (bool, error) {
		n := nsObject(t, e.kube, n)
		_, marked := n.Annotations[isolation.AnnotationSuspended]
		_, err := e.kube.CoreV1().ResourceQuotas(ns.Name).Get(ctx, isolation.SuspendedResourceQuotaName, metav1.GetOptions{})
		return !marked && apierrors.IsNotFound(err), nil
	})
	after, err := readWorkloads(ctx, c, n)
	require.NoError(t, err)
	require.Equal(t, before.values, after.values)
	require.Empty(t, after.saved)
	// The owner writes again, and the workloads run again; the bare pod
	// was removed for good.
	_, err = c.CoreV1().ConfigMaps(n).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "back"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	e.eventually(60*time.Second, "6 pods running again", running(3+2+1))
	require.NoError(t, e.susp.Resume(system("billing"), ns.ID), "resuming an active namespace changes nothing")
}

// TestSuspendFinishesAfterCrash leaves a suspension, and then a resume,
// half done, as a crash would, and shows that the next reconcile finishes
// each exactly: values saved before the crash are kept, not saved again
// from the half-changed state.
func TestSuspendFinishesAfterCrash(t *testing.T) {
	t.Parallel()
	e := setup(t, setupOptions{noRun: true})
	owner, ns := e.signUp()
	ctx := context.Background()
	require.NoError(t, e.rec.SyncNamespace(ctx, ns.ID))
	c := e.tenantClient(owner.ID, ns)
	n := ns.Name
	for _, d := range []*appsv1.Deployment{goodDeployment("a", 3), goodDeployment("b", 2)} {
		_, err := c.AppsV1().Deployments(n).Create(ctx, d, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	_, err := c.BatchV1().CronJobs(n).Create(ctx, cronJob("c", false), metav1.CreateOptions{})
	require.NoError(t, err)
	before, err := readWorkloads(ctx, e.kube, n)
	require.NoError(t, err)

	// Suspended in Postgres; the worker got as far as marking the
	// namespace and scaling Deployment a, then died.
	require.NoError(t, e.susp.Suspend(system("billing"), ns.ID, "debt"))
	patchNS := fmt.Sprintf(`{"metadata":{"annotations":{%q:"2030-01-01T00:00:00Z"}}}`, isolation.AnnotationSuspended)
	_, err = e.kube.CoreV1().Namespaces().Patch(ctx, n, types.MergePatchType, []byte(patchNS), metav1.PatchOptions{FieldManager: isolation.SuspenderFieldManager})
	require.NoError(t, err)
	patchA := fmt.Sprintf(`{"metadata":{"annotations":{%q:"3"}},"spec":{"replicas":0}}`, isolation.AnnotationSavedReplicas)
	_, err = e.kube.AppsV1().Deployments(n).Patch(ctx, "a", types.MergePatchType, []byte(patchA), metav1.PatchOptions{FieldManager: isolation.SuspenderFieldManager})
	require.NoError(t, err)

	n0, err := e.rec.DrainOutboxOnce(ctx)
	require.NoError(t, err)
	require.Positive(t, n0, "the outbox row of the suspension was claimed")
	mid, err := readWorkloads(ctx, e.kube, n)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"Deployment/a": "0", "Deployment/b": "0", "CronJob/c": "true"}, mid.values)
	require.Equal(t, before.values, mid.saved)

	// Resumed in Postgres; the worker restored a and died.
	require.NoError(t, e.susp.Resume(system("billing"), ns.ID))
	patchA = fmt.Sprintf(`{"metadata":{"annotations":{%q:null}},"spec":{"replicas":3}}`, isolation.AnnotationSavedReplicas)
	_, err = e.kube.AppsV1().Deployments(n).Patch(ctx, "a", types.MergePatchType, []byte(patchA), metav1.PatchOptions{FieldManager: isolation.SuspenderFieldManager})
	require.NoError(t, err)

	_, err = e.rec.DrainOutboxOnce(ctx)
	require.NoError(t, err)
	after, err := readWorkloads(ctx, e.kube, n)
	require.NoError(t, err)
	require.Equal(t, before.values, after.values)
	require.Empty(t, after.saved)
	require.NotContains(t, nsObject(t, e.kube, n).Annotations, isolation.AnnotationSuspended)
}
