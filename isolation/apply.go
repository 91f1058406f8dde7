package isolation

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/util/retry"

	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/tenancy"
)

// applyTenant applies objs, deletes what t no longer needs, and suspends
// or resumes its workloads to match its state.
func (r *Reconciler) applyTenant(ctx context.Context, t Tenant, objs Objects) error {
	if err := r.checkOwnership(ctx, t); err != nil {
		return err
	}
	opts := r.applyOpts()
	ns, err := r.caches.namespaces.Get(t.Name)
	if err != nil || !r.unchanged(ns, objs.Namespace.Annotations) {
		ns, err = r.kube.CoreV1().Namespaces().Apply(ctx, objs.Namespace, opts)
		if err := r.applied("Namespace", t.Name, err); err != nil {
			return err
		}
	}
	if ns.DeletionTimestamp != nil {
		return &waitError{what: "namespace " + t.Name + " to finish terminating", after: r.rc.DeletionPoll}
	}
	suspended := t.State == tenancy.NamespaceSuspended
	_, marked := ns.Annotations[AnnotationSuspended]
	if suspended && !marked {
		// Marked before the first workload is touched, so that a crash
		// anywhere after leaves a resume to finish.
		if err := r.markSuspended(ctx, t.Name, true); err != nil {
			return err
		}
	}

	// Guards first (quotas, limits, network policies, roles and accounts),
	// then the bindings that let members in.
	g, gctx := errgroup.WithContext(ctx)
	core, rbac := r.kube.CoreV1(), r.kube.RbacV1()
	c := r.caches
	for _, q := range objs.ResourceQuotas {
		cached, err := c.quotas.ResourceQuotas(t.Name).Get(*q.Name)
		if err == nil && r.unchanged(cached, q.Annotations) {
			continue
		}
		g.Go(func() error { return r.applyQuota(gctx, q, opts) })
	}
	if cached, err := c.limitRanges.LimitRanges(t.Name).Get(*objs.LimitRange.Name); err != nil || !r.unchanged(cached, objs.LimitRange.Annotations) {
		g.Go(func() error {
			_, err := core.LimitRanges(t.Name).Apply(gctx, objs.LimitRange, opts)
			return r.applied("LimitRange", *objs.LimitRange.Name, err)
		})
	}
	for _, p := range objs.NetworkPolicies {
		cached, err := c.networkPolicies.NetworkPolicies(t.Name).Get(*p.Name)
		if err == nil && r.unchanged(cached, p.Annotations) {
			continue
		}
		g.Go(func() error {
			_, err := r.kube.NetworkingV1().NetworkPolicies(t.Name).Apply(gctx, p, opts)
			return r.applied("NetworkPolicy", *p.Name, err)
		})
	}
	for _, ro := range objs.Roles {
		cached, err := c.roles.Roles(t.Name).Get(*ro.Name)
		if err == nil && r.unchanged(cached, ro.Annotations) {
			continue
		}
		g.Go(func() error {
			_, err := rbac.Roles(t.Name).Apply(gctx, ro, opts)
			return r.applied("Role", *ro.Name, err)
		})
	}
	for _, sa := range objs.ServiceAccounts {
		cached, err := c.serviceAccounts.ServiceAccounts(r.cfg.UsersNamespace).Get(*sa.Name)
		if err == nil && r.unchanged(cached, sa.Annotations) {
			continue
		}
		g.Go(func() error {
			_, err := core.ServiceAccounts(r.cfg.UsersNamespace).Apply(gctx, sa, opts)
			return r.applied("ServiceAccount", *sa.Name, err)
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("namespace %s: %w", t.Name, err)
	}
	g, gctx = errgroup.WithContext(ctx)
	for _, b := range objs.RoleBindings {
		cached, err := c.roleBindings.RoleBindings(t.Name).Get(*b.Name)
		if err == nil && r.unchanged(cached, b.Annotations) {
			continue
		}
		g.Go(func() error {
			_, err := rbac.RoleBindings(t.Name).Apply(gctx, b, opts)
			return r.applied("RoleBinding", *b.Name, err)
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("namespace %s: %w", t.Name, err)
	}
	if err := r.prune(ctx, t, objs); err != nil {
		return fmt.Errorf("namespace %s: %w", t.Name, err)
	}
	if len(t.ReleasedHosts) > 0 {
		if err := r.forgetReleasedHosts(ctx, t); err != nil {
			return fmt.Errorf("namespace %s: %w", t.Name, err)
		}
	}
	// Each workload is patched on the version read, so a controller's
	// status update in between is a conflict; both passes finish what an
	// earlier one left, so they run again at once rather than wait for
	// the outbox's backoff.
	switch {
	case suspended:
		return retry.RetryOnConflict(retry.DefaultRetry, func() error { return r.suspendWorkloads(ctx, t.Name) })
	case marked:
		if err := retry.RetryOnConflict(retry.DefaultRetry, func() error { return r.resumeWorkloads(ctx, t.Name) }); err != nil {
			return err
		}
		return r.markSuspended(ctx, t.Name, false)
	}
	return nil
}

// unchanged reports whether cached, an object from the informer cache, is
// exactly as the platform last applied it with the annotations want: the
// same AnnotationApplied hash, and no field manager but the platform's
// (controllers writing status do not count). Anyone else's change, by
// update or apply, shows in the managed fields; a deleted object is not in
// the cache at all.
func (r *Reconciler) unchanged(cached metav1.Object, want map[string]string) bool {
	if r.rc.AlwaysApply || cached.GetAnnotations()[AnnotationApplied] != want[AnnotationApplied] {
		return false
	}
	for _, mf := range cached.GetManagedFields() {
		switch {
		case mf.Subresource != "":
		case mf.Manager == FieldManager && mf.Operation == metav1.ManagedFieldsOperationApply:
		case mf.Manager == SuspenderFieldManager:
		default:
			return false
		}
	}
	r.m.unchanged.Inc()
	return true
}

func (r *Reconciler) applied(kind, name string, err error) error {
	r.m.applied.Inc()
	if err != nil {
		return fmt.Errorf("applying %s %s: %w", kind, name, err)
	}
	return nil
}

// applyQuota applies a ResourceQuota and then removes any limit someone
// else added to it: map keys owned by another field manager survive a
// server-side apply, and a quota must hold exactly the plan's limits.
func (r *Reconciler) applyQuota(ctx context.Context, want *corev1ac.ResourceQuotaApplyConfiguration, opts metav1.ApplyOptions) error {
	q, err := r.kube.CoreV1().ResourceQuotas(*want.Namespace).Apply(ctx, want, opts)
	if err := r.applied("ResourceQuota", *want.Name, err); err != nil {
		return err
	}
	extra := false
	for k := range q.Spec.Hard {
		if _, ok := (*want.Spec.Hard)[k]; !ok {
			delete(q.Spec.Hard, k)
			extra = true
		}
	}
	if !extra {
		return nil
	}
	_, err = r.kube.CoreV1().ResourceQuotas(q.Namespace).Update(ctx, q, metav1.UpdateOptions{FieldManager: FieldManager})
	if err != nil {
		return fmt.Errorf("removing foreign limits from ResourceQuota %s: %w", q.Name, err)
	}
	return nil
}

// checkOwnership refuses to take over a namespace that exists but is not
// this tenant's: a tenant must never be handed kube-system because it
// chose the name.
func (r *Reconciler) checkOwnership(ctx context.Context, t Tenant) error {
	ns, err := r.caches.namespaces.Get(t.Name)
	if apierrors.IsNotFound(err) {
		ns, err = r.kube.CoreV1().Namespaces().Get(ctx, t.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("looking up namespace %s: %w", t.Name, err)
	}
	if !r.owns(ns, t.ID) {
		return errcode.New(errcode.Conflict, fmt.Sprintf("namespace %s exists in Kubernetes and does not belong to namespace %d", t.Name, t.ID))
	}
	return nil
}

// owns reports whether Kubernetes namespace ns is namespace id of this
// installation.
func (r *Reconciler) owns(ns *corev1.Namespace, id int64) bool {
	return ns.Labels[LabelManagedBy] == ManagedBy && ns.Labels[LabelInstance] == r.cfg.Instance &&
		ns.Labels[LabelNamespaceID] == strconv.FormatInt(id, 10)
}

// prune deletes every object labelled as namespace t's that objs does not
// hold.
func (r *Reconciler) prune(ctx context.Context, t Tenant, objs Objects) error {
	sel := ownedBy(t.ID)
	want := map[string]bool{}
	for _, q := range objs.ResourceQuotas {
		want["ResourceQuota/"+*q.Name] = true
	}
	want["LimitRange/"+*objs.LimitRange.Name] = true
	for _, p := range objs.NetworkPolicies {
		want["NetworkPolicy/"+*p.Name] = true
	}
	for _, ro := range objs.Roles {
		want["Role/"+*ro.Name] = true
	}
	for _, b := range objs.RoleBindings {
		want["RoleBinding/"+*b.Name] = true
	}
	type victim struct {
		kind string
		meta metav1.Object
		del  func(context.Context, string, metav1.DeleteOptions) error
	}
	var victims []victim
	quotas, _ := r.caches.quotas.ResourceQuotas(t.Name).List(sel)
	for _, o := range quotas {
		victims = append(victims, victim{"ResourceQuota", o, r.kube.CoreV1().ResourceQuotas(t.Name).Delete})
	}
	lrs, _ := r.caches.limitRanges.LimitRanges(t.Name).List(sel)
	for _, o := range lrs {
		victims = append(victims, victim{"LimitRange", o, r.kube.CoreV1().LimitRanges(t.Name).Delete})
	}
	nps, _ := r.caches.networkPolicies.NetworkPolicies(t.Name).List(sel)
	for _, o := range nps {
		victims = append(victims, victim{"NetworkPolicy", o, r.kube.NetworkingV1().NetworkPolicies(t.Name).Delete})
	}
	roles, _ := r.caches.roles.Roles(t.Name).List(sel)
	for _, o := range roles {
		victims = append(victims, victim{"Role", o, r.kube.RbacV1().Roles(t.Name).Delete})
	}
	bindings, _ := r.caches.roleBindings.RoleBindings(t.Name).List(sel)
	for _, o := range bindings {
		victims = append(victims, victim{"RoleBinding", o, r.kube.RbacV1().RoleBindings(t.Name).Delete})
	}
	var errs []error
	for _, v := range victims {
		if want[v.kind+"/"+v.meta.GetName()] {
			continue
		}
		uid := v.meta.GetUID()
		err := v.del(ctx, v.meta.GetName(), metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		switch {
		case err == nil:
			r.m.deleted.Inc()
			r.log.Info("deleted undesired object", "namespace", t.Name, "kind", v.kind, "name", v.meta.GetName())
		case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
		default:
			errs = append(errs, fmt.Errorf("deleting %s %s: %w", v.kind, v.meta.GetName(), err))
			continue
		}
		if v.kind == "RoleBinding" {
			// The user may have lost their last namespace: their
			// ServiceAccount goes then.
			if id, err := strconv.ParseInt(v.meta.GetLabels()[LabelUserID], 10, 64); err == nil && id > 0 {
				r.queue.Add(tenancy.UserKey(id))
			}
		}
	}
	return errors.Join(errs...)
}

// markSuspended sets or removes the suspension marker on a namespace. It
// uses its own field manager, so that applying the namespace never removes
// the marker.
func (r *Reconciler) markSuspended(ctx context.Context, name string, on bool) error {
	val := "null"
	if on {
		val = strconv.Quote(r.now().Format("2006-01-02T15:04:05Z"))
	}
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%s}}}`, AnnotationSuspended, val)
	_, err := r.kube.CoreV1().Namespaces().Patch(ctx, name, types.MergePatchType, []byte(patch),
		metav1.PatchOptions{FieldManager: SuspenderFieldManager})
	if err != nil {
		return fmt.Errorf("marking namespace %s suspended=%t: %w", name, on, err)
	}
	return nil
}

// deleteNamespace deletes a tenant namespace and waits, by returning a
// waitError, until Kubernetes has finished; then it records the deletion.
func (r *Reconciler) deleteNamespace(ctx context.Context, t Tenant) error {
	ns, err := r.kube.CoreV1().Namespaces().Get(ctx, t.Name, metav1.GetOptions{})
	gone := apierrors.IsNotFound(err) || (err == nil && !r.owns(ns, t.ID))
	if err != nil && !gone {
		return fmt.Errorf("looking up namespace %s: %w", t.Name, err)
	}
	if gone {
		if err := r.store.NamespaceDeleted(ctx, t.ID, r.now()); err != nil {
			return fmt.Errorf("recording deletion of namespace %d: %w", t.ID, err)
		}
		for _, m := range t.Members {
			r.queue.Add(tenancy.UserKey(m.UserID))
		}
		r.log.Info("namespace deleted from kubernetes", "namespace", t.Name, "id", t.ID)
		return nil
	}
	if ns.DeletionTimestamp == nil {
		uid := ns.UID
		err := r.kube.CoreV1().Namespaces().Delete(ctx, t.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting namespace %s: %w", t.Name, err)
		}
		r.m.deleted.Inc()
	}
	return &waitError{what: "namespace " + t.Name + " to be deleted", after: r.rc.DeletionPoll}
}

// deleteOrphans deletes tenant namespaces labelled with an ID that
// Postgres no longer has.
func (r *Reconciler) deleteOrphans(ctx context.Context, id int64) error {
	nss, err := r.caches.namespaces.List(ownedBy(id))
	if err != nil {
		return err
	}
	if len(nss) == 0 {
		return nil
	}
	for _, ns := range nss {
		if ns.DeletionTimestamp != nil {
			continue
		}
		uid := ns.UID
		err := r.kube.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting orphaned namespace %s: %w", ns.Name, err)
		}
		r.m.deleted.Inc()
		r.log.Info("deleting namespace unknown to postgres", "namespace", ns.Name, "id", id)
	}
	return &waitError{what: "orphaned namespaces to be deleted", after: r.rc.DeletionPoll}
}

// forgetReleasedHosts drops released host claims that no Ingress or
// HTTPRoute of the namespace uses any more. The namespace annotation no
// longer lists them (it was applied before), so no new use can appear.
func (r *Reconciler) forgetReleasedHosts(ctx context.Context, t Tenant) error {
	used, err := r.hostsInUse(ctx, t.Name)
	if err != nil {
		return err
	}
	var inUse []string
	for _, h := range t.ReleasedHosts {
		if slices.Contains(used, h) {
			inUse = append(inUse, h)
		}
	}
	return r.store.ForgetReleasedHosts(ctx, t.ID, inUse)
}
