package isolation

import (
	"context"
	"errors"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	networkinglisters "k8s.io/client-go/listers/networking/v1"
	rbaclisters "k8s.io/client-go/listers/rbac/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/tenantplane/tenantplane/tenancy"
)

// caches are informers on everything the platform owns (selected by
// LabelManagedBy). They tell the reconciler about drift, and let it find
// what is no longer desired without asking the API server.
type caches struct {
	factory      informers.SharedInformerFactory
	usersFactory informers.SharedInformerFactory
	synced       []cache.InformerSynced

	namespaces      corelisters.NamespaceLister
	quotas          corelisters.ResourceQuotaLister
	limitRanges     corelisters.LimitRangeLister
	networkPolicies networkinglisters.NetworkPolicyLister
	roles           rbaclisters.RoleLister
	roleBindings    rbaclisters.RoleBindingLister
	serviceAccounts corelisters.ServiceAccountLister
}

func newCaches(kube kubernetes.Interface, cfg Config, drift func(kind, event, key string)) *caches {
	managed := func(o *metav1.ListOptions) {
		o.LabelSelector = labels.Set{LabelManagedBy: ManagedBy, LabelInstance: cfg.Instance}.String()
	}
	f := informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithTweakListOptions(managed))
	uf := informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithTweakListOptions(managed),
		informers.WithNamespace(cfg.UsersNamespace))
	c := &caches{factory: f, usersFactory: uf}

	type informer interface {
		Informer() cache.SharedIndexInformer
	}
	watch := func(kind string, inf informer, key func(metav1.Object) string) {
		i := inf.Informer()
		_, _ = i.AddEventHandler(driftHandler(kind, key, drift))
		c.synced = append(c.synced, i.HasSynced)
	}
	byNamespaceID := func(o metav1.Object) string {
		id, err := strconv.ParseInt(o.GetLabels()[LabelNamespaceID], 10, 64)
		if err != nil || id <= 0 {
			return ""
		}
		return tenancy.NamespaceKey(id)
	}
	byUserID := func(o metav1.Object) string {
		id, err := strconv.ParseInt(o.GetLabels()[LabelUserID], 10, 64)
		if err != nil || id <= 0 {
			return ""
		}
		return tenancy.UserKey(id)
	}

	ns := f.Core().V1().Namespaces()
	watch("Namespace", ns, byNamespaceID)
	c.namespaces = ns.Lister()
	q := f.Core().V1().ResourceQuotas()
	watch("ResourceQuota", q, byNamespaceID)
	c.quotas = q.Lister()
	lr := f.Core().V1().LimitRanges()
	watch("LimitRange", lr, byNamespaceID)
	c.limitRanges = lr.Lister()
	np := f.Networking().V1().NetworkPolicies()
	watch("NetworkPolicy", np, byNamespaceID)
	c.networkPolicies = np.Lister()
	ro := f.Rbac().V1().Roles()
	watch("Role", ro, byNamespaceID)
	c.roles = ro.Lister()
	rb := f.Rbac().V1().RoleBindings()
	watch("RoleBinding", rb, byNamespaceID)
	c.roleBindings = rb.Lister()
	sa := uf.Core().V1().ServiceAccounts()
	watch("ServiceAccount", sa, byUserID)
	c.serviceAccounts = sa.Lister()
	return c
}

func (c *caches) start(ctx context.Context) error {
	c.factory.Start(ctx.Done())
	c.usersFactory.Start(ctx.Done())
	syncCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), c.synced...) {
		return errors.New("isolation: informer caches did not sync")
	}
	return nil
}

// driftHandler queues the owning key when someone else changes or deletes
// what the platform owns. The initial listing is skipped (the resync at
// start covers it), and so are updates that change only status, such as a
// ResourceQuota's usage.
func driftHandler(kind string, key func(metav1.Object) string, drift func(kind, event, key string)) cache.ResourceEventHandler {
	send := func(event string, obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		o, ok := obj.(metav1.Object)
		if !ok {
			return
		}
		if k := key(o); k != "" {
			drift(kind, event, k)
		}
	}
	return cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(obj any, initial bool) {
			if !initial {
				send("add", obj)
			}
		},
		UpdateFunc: func(oldObj, newObj any) {
			if !equality.Semantic.DeepEqual(content(oldObj), content(newObj)) {
				send("update", newObj)
			}
		},
		DeleteFunc: func(obj any) { send("delete", obj) },
	}
}

// content is what the platform decides about an object: its labels,
// annotations and spec, never its status.
func content(obj any) any {
	meta := func(m metav1.ObjectMeta) any {
		return []any{m.Labels, m.Annotations, m.DeletionTimestamp != nil}
	}
	switch o := obj.(type) {
	case *corev1.Namespace:
		return meta(o.ObjectMeta)
	case *corev1.ResourceQuota:
		return []any{meta(o.ObjectMeta), o.Spec}
	case *corev1.LimitRange:
		return []any{meta(o.ObjectMeta), o.Spec}
	case *networkingv1.NetworkPolicy:
		return []any{meta(o.ObjectMeta), o.Spec}
	case *rbacv1.Role:
		return []any{meta(o.ObjectMeta), o.Rules}
	case *rbacv1.RoleBinding:
		return []any{meta(o.ObjectMeta), o.RoleRef, o.Subjects}
	case *corev1.ServiceAccount:
		return []any{meta(o.ObjectMeta), o.AutomountServiceAccountToken}
	}
	return obj
}

// namespaceIDs lists the IDs of every tenant namespace in Kubernetes.
func (c *caches) namespaceIDs() []int64 {
	nss, _ := c.namespaces.List(labels.Everything())
	var ids []int64
	for _, ns := range nss {
		if id, err := strconv.ParseInt(ns.Labels[LabelNamespaceID], 10, 64); err == nil && id > 0 {
			ids = append(ids, id)
		}
	}
	return ids
}

// serviceAccountUserIDs lists the users that have a ServiceAccount.
func (c *caches) serviceAccountUserIDs() []int64 {
	sas, _ := c.serviceAccounts.List(labels.Everything())
	var ids []int64
	for _, sa := range sas {
		if id, err := strconv.ParseInt(sa.Labels[LabelUserID], 10, 64); err == nil && id > 0 {
			ids = append(ids, id)
		}
	}
	return ids
}

// ownedBy selects the objects of namespace id.
func ownedBy(id int64) labels.Selector {
	return labels.SelectorFromSet(labels.Set{LabelNamespaceID: strconv.FormatInt(id, 10)})
}
