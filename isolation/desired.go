package isolation

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	networkingv1ac "k8s.io/client-go/applyconfigurations/networking/v1"
	rbacv1ac "k8s.io/client-go/applyconfigurations/rbac/v1"

	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/tenancy"
)

// Objects are the Kubernetes objects one tenant namespace must have, ready
// for server-side apply. A namespace in state deleting has none.
type Objects struct {
	// Namespace is the tenant namespace itself; nil when it must not exist.
	Namespace *corev1ac.NamespaceApplyConfiguration
	// ResourceQuotas holds the plan's quota and, while suspended, a second
	// one that allows no pods.
	ResourceQuotas  []*corev1ac.ResourceQuotaApplyConfiguration
	LimitRange      *corev1ac.LimitRangeApplyConfiguration
	NetworkPolicies []*networkingv1ac.NetworkPolicyApplyConfiguration
	Roles           []*rbacv1ac.RoleApplyConfiguration
	RoleBindings    []*rbacv1ac.RoleBindingApplyConfiguration
	// ServiceAccounts live in Config.UsersNamespace, one per member; they
	// are shared by every namespace the user belongs to, so they carry no
	// namespace-id label and are removed by the user's own reconcile.
	ServiceAccounts []*corev1ac.ServiceAccountApplyConfiguration
}

// Count is the number of objects.
func (o Objects) Count() int {
	n := len(o.ResourceQuotas) + len(o.NetworkPolicies) + len(o.Roles) + len(o.RoleBindings) + len(o.ServiceAccounts)
	if o.Namespace != nil {
		n++
	}
	if o.LimitRange != nil {
		n++
	}
	return n
}

// Desired computes the exact objects tenant t must have under cfg. It is a
// pure function of its inputs. cfg must be valid (Config.Validate); an
// unknown plan or a bad tenant name is an error, and a namespace being
// deleted has no objects.
func Desired(t Tenant, cfg Config) (Objects, error) {
	if t.ID <= 0 {
		return Objects{}, errcode.Invalid("id", "namespace id must be positive")
	}
	if msgs := validation.IsDNS1123Label(t.Name); len(msgs) > 0 {
		return Objects{}, errcode.Invalid("name", fmt.Sprintf("namespace name %q: %s", t.Name, strings.Join(msgs, "; ")))
	}
	if reservedName(t.Name, cfg) {
		return Objects{}, errcode.Invalid("name", fmt.Sprintf("namespace name %q is reserved for the platform", t.Name))
	}
	if !t.State.Valid() {
		return Objects{}, errcode.Invalid("state", fmt.Sprintf("unknown namespace state %q", t.State))
	}
	if t.State == tenancy.NamespaceDeleting {
		return Objects{}, nil
	}
	plan, ok := cfg.Plans[t.Plan]
	if !ok {
		return Objects{}, errcode.Invalid("plan", fmt.Sprintf("namespace %s: org plan %q is not configured", t.Name, t.Plan))
	}
	suspended := t.State == tenancy.NamespaceSuspended
	b := builder{t: t, cfg: cfg, plan: plan}

	o := Objects{
		Namespace:       b.namespace(),
		ResourceQuotas:  []*corev1ac.ResourceQuotaApplyConfiguration{b.quota()},
		LimitRange:      b.limitRange(),
		NetworkPolicies: []*networkingv1ac.NetworkPolicyApplyConfiguration{b.ingressPolicy(), b.egressPolicy()},
	}
	if suspended {
		o.ResourceQuotas = append(o.ResourceQuotas, b.suspendedQuota())
	}
	for _, r := range tenancy.Roles() {
		o.Roles = append(o.Roles, b.role(r))
	}
	members := slices.Clone(t.Members)
	slices.SortFunc(members, func(a, b Member) int { return int(a.UserID - b.UserID) })
	for i, m := range members {
		if i > 0 && members[i-1].UserID == m.UserID {
			return Objects{}, errcode.Invalid("members", fmt.Sprintf("user %d is a member twice", m.UserID))
		}
		if !m.Role.Valid() {
			return Objects{}, errcode.Invalid("members", fmt.Sprintf("user %d has unknown role %q", m.UserID, m.Role))
		}
		if m.Disabled {
			continue
		}
		role := m.Role
		if suspended {
			role = tenancy.RoleViewer // read-only until resumed
		}
		o.RoleBindings = append(o.RoleBindings, b.roleBinding(m.UserID, role))
		o.ServiceAccounts = append(o.ServiceAccounts, UserServiceAccount(m.UserID, cfg))
	}
	o.stamp()
	return o, nil
}

// stamp puts AnnotationApplied on every object.
func (o Objects) stamp() {
	stamp(o.Namespace.ObjectMetaApplyConfiguration, o.Namespace)
	for _, q := range o.ResourceQuotas {
		stamp(q.ObjectMetaApplyConfiguration, q)
	}
	stamp(o.LimitRange.ObjectMetaApplyConfiguration, o.LimitRange)
	for _, p := range o.NetworkPolicies {
		stamp(p.ObjectMetaApplyConfiguration, p)
	}
	for _, r := range o.Roles {
		stamp(r.ObjectMetaApplyConfiguration, r)
	}
	for _, b := range o.RoleBindings {
		stamp(b.ObjectMetaApplyConfiguration, b)
	}
	for _, sa := range o.ServiceAccounts {
		stamp(sa.ObjectMetaApplyConfiguration, sa)
	}
}

// stamp sets AnnotationApplied on meta, the metadata of obj, to a hash of
// obj as it is without it.
func stamp(meta *metav1ac.ObjectMetaApplyConfiguration, obj any) {
	delete(meta.Annotations, AnnotationApplied)
	b, err := json.Marshal(obj)
	if err != nil {
		panic(fmt.Sprintf("isolation: encoding an apply configuration: %v", err)) // only plain values inside
	}
	h := fnv.New64a()
	_, _ = h.Write(b)
	if meta.Annotations == nil {
		meta.Annotations = map[string]string{}
	}
	meta.Annotations[AnnotationApplied] = strconv.FormatUint(h.Sum64(), 36)
}

// reservedName reports whether a tenant may not have namespace name: the
// cluster's own namespaces and the platform's.
func reservedName(name string, cfg Config) bool {
	if name == "default" || strings.HasPrefix(name, "kube-") || strings.HasPrefix(name, "tenantplane") {
		return true
	}
	n := cfg.Network
	return slices.Contains(slices.Concat(n.IngressNamespaces, n.MonitoringNamespaces,
		[]string{n.DNSNamespace, cfg.UsersNamespace}), name)
}

// UserServiceAccount is the ServiceAccount of userID in the users
// namespace, to which the user's RoleBindings point.
func UserServiceAccount(userID int64, cfg Config) *corev1ac.ServiceAccountApplyConfiguration {
	sa := corev1ac.ServiceAccount(ServiceAccountName(userID), cfg.UsersNamespace).
		WithLabels(map[string]string{
			LabelManagedBy: ManagedBy,
			LabelInstance:  cfg.Instance,
			LabelUserID:    strconv.FormatInt(userID, 10),
		}).
		WithAutomountServiceAccountToken(false)
	stamp(sa.ObjectMetaApplyConfiguration, sa)
	return sa
}

type builder struct {
	t    Tenant
	cfg  Config
	plan Plan
}

// labels are the labels of every object in the tenant namespace.
func (b builder) labels() map[string]string {
	return map[string]string{
		LabelManagedBy:   ManagedBy,
		LabelInstance:    b.cfg.Instance,
		LabelNamespaceID: strconv.FormatInt(b.t.ID, 10),
	}
}

func (b builder) namespace() *corev1ac.NamespaceApplyConfiguration {
	labels := b.labels()
	labels[LabelOrg] = strconv.FormatInt(b.t.OrgID, 10)
	labels[LabelPlan] = b.t.Plan
	labels[LabelState] = string(b.t.State)
	for _, mode := range []string{"enforce", "audit", "warn"} {
		labels["pod-security.kubernetes.io/"+mode] = "restricted"
		labels["pod-security.kubernetes.io/"+mode+"-version"] = b.cfg.PodSecurityVersion
	}
	ann := map[string]string{
		AnnotationRuntimeClass:       b.plan.RuntimeClass,
		AnnotationStorageClasses:     strings.Join(sortedKeys(b.plan.StorageClasses), ","),
		AnnotationMaxEgressBandwidth: b.plan.MaxEgressBandwidth.String(),
		AnnotationHosts:              strings.Join(normalHosts(b.t.Hosts), ","),
		AnnotationDomain:             TenantHostSuffix(b.t.Name, b.cfg),
	}
	if b.plan.GPURuntimeClass != "" {
		ann[AnnotationGPURuntimeClass] = b.plan.GPURuntimeClass
	}
	return corev1ac.Namespace(b.t.Name).WithLabels(labels).WithAnnotations(ann)
}

// TenantHostSuffix is the domain every host of namespace name may end in
// without a claim, "<name>.<TenantDomain>", or "" when there is no
// TenantDomain.
func TenantHostSuffix(name string, cfg Config) string {
	if cfg.TenantDomain == "" {
		return ""
	}
	return name + "." + cfg.TenantDomain
}

func normalHosts(hosts []string) []string {
	out := make([]string, 0, len(hosts))
	for _, h := range hosts {
		out = append(out, strings.ToLower(h))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func (b builder) quota() *corev1ac.ResourceQuotaApplyConfiguration {
	q := b.plan.Quota
	hard := corev1.ResourceList{
		corev1.ResourceRequestsCPU:                     q.RequestsCPU,
		corev1.ResourceLimitsCPU:                       q.LimitsCPU,
		corev1.ResourceRequestsMemory:                  q.RequestsMemory,
		corev1.ResourceLimitsMemory:                    q.LimitsMemory,
		corev1.ResourceRequestsStorage:                 q.RequestsStorage,
		corev1.ResourcePods:                            count(q.Pods),
		corev1.ResourceServices:                        count(q.Services),
		corev1.ResourcePersistentVolumeClaims:          count(q.PersistentVolumeClaims),
		corev1.ResourceConfigMaps:                      count(q.ConfigMaps),
		corev1.ResourceSecrets:                         count(q.Secrets),
		corev1.ResourceServicesNodePorts:               count(0),
		corev1.ResourceServicesLoadBalancers:           count(0),
		corev1.ResourceName("requests.nvidia.com/gpu"): count(q.GPUs),
	}
	for _, sc := range sortedKeys(b.plan.StorageClasses) {
		hard[corev1.ResourceName(sc+".storageclass.storage.k8s.io/requests.storage")] = b.plan.StorageClasses[sc]
	}
	for k, v := range q.ObjectCounts {
		hard[corev1.ResourceName(k)] = count(v)
	}
	return corev1ac.ResourceQuota(ResourceQuotaName, b.t.Name).
		WithLabels(b.labels()).
		WithSpec(corev1ac.ResourceQuotaSpec().WithHard(hard))
}

func (b builder) suspendedQuota() *corev1ac.ResourceQuotaApplyConfiguration {
	return corev1ac.ResourceQuota(SuspendedResourceQuotaName, b.t.Name).
		WithLabels(b.labels()).
		WithSpec(corev1ac.ResourceQuotaSpec().WithHard(corev1.ResourceList{corev1.ResourcePods: count(0)}))
}

func count(n int64) resource.Quantity { return *resource.NewQuantity(n, resource.DecimalSI) }

func (b builder) limitRange() *corev1ac.LimitRangeApplyConfiguration {
	l := b.plan.Limits
	return corev1ac.LimitRange(LimitRangeName, b.t.Name).
		WithLabels(b.labels()).
		WithSpec(corev1ac.LimitRangeSpec().WithLimits(
			corev1ac.LimitRangeItem().
				WithType(corev1.LimitTypeContainer).
				WithDefaultRequest(corev1.ResourceList{corev1.ResourceCPU: l.DefaultRequestCPU, corev1.ResourceMemory: l.DefaultRequestMemory}).
				WithDefault(corev1.ResourceList{corev1.ResourceCPU: l.DefaultLimitCPU, corev1.ResourceMemory: l.DefaultLimitMemory}).
				WithMax(corev1.ResourceList{corev1.ResourceCPU: l.MaxCPU, corev1.ResourceMemory: l.MaxMemory}),
			corev1ac.LimitRangeItem().
				WithType(corev1.LimitTypePersistentVolumeClaim).
				WithMax(corev1.ResourceList{corev1.ResourceStorage: l.MaxPVCStorage}),
		))
}

// nsPeer selects every pod of the namespace named name.
func nsPeer(name string) *networkingv1ac.NetworkPolicyPeerApplyConfiguration {
	return networkingv1ac.NetworkPolicyPeer().WithNamespaceSelector(
		metav1ac.LabelSelector().WithMatchLabels(map[string]string{corev1.LabelMetadataName: name}))
}

// ingressPolicy admits traffic only from the namespace itself and from the
// platform's ingress and monitoring namespaces.
func (b builder) ingressPolicy() *networkingv1ac.NetworkPolicyApplyConfiguration {
	peers := []*networkingv1ac.NetworkPolicyPeerApplyConfiguration{
		networkingv1ac.NetworkPolicyPeer().WithPodSelector(metav1ac.LabelSelector()),
	}
	for _, ns := range slices.Concat(b.cfg.Network.IngressNamespaces, b.cfg.Network.MonitoringNamespaces) {
		peers = append(peers, nsPeer(ns))
	}
	return networkingv1ac.NetworkPolicy(NetworkPolicyIngressName, b.t.Name).
		WithLabels(b.labels()).
		WithSpec(networkingv1ac.NetworkPolicySpec().
			WithPodSelector(metav1ac.LabelSelector()).
			WithPolicyTypes(networkingv1.PolicyTypeIngress).
			WithIngress(networkingv1ac.NetworkPolicyIngressRule().WithFrom(peers...)))
}

// egressPolicy lets pods reach their own namespace, the cluster DNS and the
// internet, where the internet is every address except the cluster's pods,
// services and nodes and the blocked ranges (the metadata address).
func (b builder) egressPolicy() *networkingv1ac.NetworkPolicyApplyConfiguration {
	n := b.cfg.Network
	udp, tcp := corev1.ProtocolUDP, corev1.ProtocolTCP
	dnsPort := intstr.FromInt32(n.DNSPort)
	excluded := slices.Concat(n.PodCIDRs, n.ServiceCIDRs, n.NodeCIDRs, n.BlockedCIDRs)
	internet := func(all netip.Prefix) *networkingv1ac.NetworkPolicyPeerApplyConfiguration {
		var except []string
		for _, p := range excluded {
			if p.Addr().Is4() == all.Addr().Is4() {
				except = append(except, p.String())
			}
		}
		slices.Sort(except)
		block := networkingv1ac.IPBlock().WithCIDR(all.String())
		if len(except) > 0 {
			block.WithExcept(slices.Compact(except)...)
		}
		return networkingv1ac.NetworkPolicyPeer().WithIPBlock(block)
	}
	return networkingv1ac.NetworkPolicy(NetworkPolicyEgressName, b.t.Name).
		WithLabels(b.labels()).
		WithSpec(networkingv1ac.NetworkPolicySpec().
			WithPodSelector(metav1ac.LabelSelector()).
			WithPolicyTypes(networkingv1.PolicyTypeEgress).
			WithEgress(
				networkingv1ac.NetworkPolicyEgressRule().WithTo(
					networkingv1ac.NetworkPolicyPeer().WithPodSelector(metav1ac.LabelSelector())),
				networkingv1ac.NetworkPolicyEgressRule().
					WithTo(networkingv1ac.NetworkPolicyPeer().
						WithNamespaceSelector(metav1ac.LabelSelector().WithMatchLabels(map[string]string{corev1.LabelMetadataName: n.DNSNamespace})).
						WithPodSelector(metav1ac.LabelSelector().WithMatchLabels(maps.Clone(n.DNSPodLabels)))).
					WithPorts(
						networkingv1ac.NetworkPolicyPort().WithProtocol(udp).WithPort(dnsPort),
						networkingv1ac.NetworkPolicyPort().WithProtocol(tcp).WithPort(dnsPort)),
				networkingv1ac.NetworkPolicyEgressRule().WithTo(
					internet(netip.MustParsePrefix("0.0.0.0/0")),
					internet(netip.MustParsePrefix("::/0"))),
			))
}

func (b builder) role(r tenancy.Role) *rbacv1ac.RoleApplyConfiguration {
	var rules []*rbacv1ac.PolicyRuleApplyConfiguration
	for _, pr := range RoleRules(r) {
		rules = append(rules, rbacv1ac.PolicyRule().
			WithAPIGroups(pr.APIGroups...).
			WithResources(pr.Resources...).
			WithVerbs(pr.Verbs...))
	}
	return rbacv1ac.Role(RoleName(r), b.t.Name).WithLabels(b.labels()).WithRules(rules...)
}

func (b builder) roleBinding(userID int64, r tenancy.Role) *rbacv1ac.RoleBindingApplyConfiguration {
	labels := b.labels()
	labels[LabelUserID] = strconv.FormatInt(userID, 10)
	return rbacv1ac.RoleBinding(RoleBindingName(userID, r), b.t.Name).
		WithLabels(labels).
		WithRoleRef(rbacv1ac.RoleRef().WithAPIGroup(rbacv1.GroupName).WithKind("Role").WithName(RoleName(r))).
		WithSubjects(rbacv1ac.Subject().
			WithKind(rbacv1.ServiceAccountKind).
			WithName(ServiceAccountName(userID)).
			WithNamespace(b.cfg.UsersNamespace))
}
