package isolation

import (
	"context"
	"errors"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/tenancy"
)

// RemoveWorkloads deletes the workloads of a suspended tenant namespace:
// its Deployments, StatefulSets, DaemonSets, ReplicaSets, CronJobs, Jobs
// and Pods. Volumes, Secrets, ConfigMaps and Services stay, and so does
// everything the platform applies. It refuses a namespace that is not
// suspended in Postgres, or whose Kubernetes namespace is not this
// installation's tenant namespace of that ID, marked suspended; so it can
// never touch a system namespace or another tenant's. Billing calls it
// (billing.WorkloadRemover) when a suspended org's deletion period ends.
func (r *Reconciler) RemoveWorkloads(ctx context.Context, nsID int64) error {
	ts, err := r.store.Tenants(ctx, []int64{nsID})
	if err != nil {
		return fmt.Errorf("loading namespace %d: %w", nsID, err)
	}
	t, ok := ts[nsID]
	if !ok {
		return errcode.New(errcode.NotFound, "namespace not found")
	}
	if t.State != tenancy.NamespaceSuspended {
		return errcode.New(errcode.Conflict, fmt.Sprintf("namespace %s is %s, not suspended", t.Name, t.State))
	}
	ns, err := r.kube.CoreV1().Namespaces().Get(ctx, t.Name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("looking up namespace %s: %w", t.Name, err)
	}
	if !r.owns(ns, t.ID) {
		return errcode.New(errcode.Conflict, fmt.Sprintf("namespace %s is not tenant namespace %d", t.Name, t.ID))
	}
	if _, marked := ns.Annotations[AnnotationSuspended]; !marked {
		return errcode.New(errcode.Conflict, fmt.Sprintf("namespace %s is not suspended in Kubernetes yet", t.Name))
	}
	bg := metav1.DeletePropagationBackground
	del, all := metav1.DeleteOptions{PropagationPolicy: &bg}, metav1.ListOptions{}
	apps, batch := r.kube.AppsV1(), r.kube.BatchV1()
	name := t.Name
	var errs []error
	for _, d := range []struct {
		kind string
		f    func() error
	}{
		{"deployments", func() error { return apps.Deployments(name).DeleteCollection(ctx, del, all) }},
		{"statefulsets", func() error { return apps.StatefulSets(name).DeleteCollection(ctx, del, all) }},
		{"daemonsets", func() error { return apps.DaemonSets(name).DeleteCollection(ctx, del, all) }},
		{"replicasets", func() error { return apps.ReplicaSets(name).DeleteCollection(ctx, del, all) }},
		{"cronjobs", func() error { return batch.CronJobs(name).DeleteCollection(ctx, del, all) }},
		{"jobs", func() error { return batch.Jobs(name).DeleteCollection(ctx, del, all) }},
		{"pods", func() error { return r.kube.CoreV1().Pods(name).DeleteCollection(ctx, del, all) }},
	} {
		if err := d.f(); err != nil {
			errs = append(errs, fmt.Errorf("deleting %s of %s: %w", d.kind, name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	r.log.Info("deleted workloads of suspended namespace", "namespace", name, "id", nsID)
	return nil
}
