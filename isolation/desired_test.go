package isolation_test

import (
	"encoding/json"
	"maps"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/isolation"
	"github.com/tenantplane/tenantplane/tenancy"
)

// testConfig is DefaultConfig with a second plan that has GPUs and a
// tenant domain.
func testConfig() isolation.Config {
	cfg := isolation.DefaultConfig()
	q := resource.MustParse
	pro := cfg.Plans["free"]
	pro.Quota.GPUs = 2
	pro.Quota.RequestsStorage = q("100Gi")
	pro.Quota.ObjectCounts = map[string]int64{"count/deployments.apps": 30}
	pro.GPURuntimeClass = "kata-gpu"
	pro.StorageClasses = map[string]resource.Quantity{"openebs-lvm": q("80Gi"), "openebs-hostpath-x": q("20Gi")}
	pro.MaxEgressBandwidth = q("1G")
	cfg.Plans["pro"] = pro
	cfg.TenantDomain = "apps.example.test"
	cfg.PodSecurityVersion = "v1.37"
	return cfg
}

func tenant(state tenancy.NamespaceState, plan string, members ...isolation.Member) isolation.Tenant {
	return isolation.Tenant{
		ID: 7, Name: "ns-abc", OrgID: 3, Plan: plan, State: state, Members: members,
		Hosts: []string{"WWW.Example.org", "api.example.org", "www.example.org"},
	}
}

// view is the part of Objects a test compares, in plain values.
type view struct {
	nsLabels      map[string]string
	nsAnnotations map[string]string
	quotas        map[string]map[string]string // name -> resource -> quantity
	bindings      map[string]string            // name -> role
	accounts      []string
	roles         []string
	policies      []string
}

func viewOf(t *testing.T, o isolation.Objects) view {
	t.Helper()
	v := view{quotas: map[string]map[string]string{}, bindings: map[string]string{}}
	if o.Namespace != nil {
		v.nsLabels = o.Namespace.Labels
		v.nsAnnotations = maps.Clone(o.Namespace.Annotations)
		require.NotEmpty(t, v.nsAnnotations[isolation.AnnotationApplied])
		delete(v.nsAnnotations, isolation.AnnotationApplied)
	}
	for _, q := range o.ResourceQuotas {
		hard := map[string]string{}
		for k, val := range *q.Spec.Hard {
			hard[string(k)] = val.String()
		}
		v.quotas[*q.Name] = hard
		require.Equal(t, "ns-abc", *q.Namespace)
	}
	for _, b := range o.RoleBindings {
		v.bindings[*b.Name] = *b.RoleRef.Name
		require.Len(t, b.Subjects, 1)
		require.Equal(t, rbacv1.ServiceAccountKind, *b.Subjects[0].Kind)
		require.Equal(t, "tenantplane-users", *b.Subjects[0].Namespace)
		require.Equal(t, "Role", *b.RoleRef.Kind)
	}
	for _, sa := range o.ServiceAccounts {
		v.accounts = append(v.accounts, *sa.Name)
		require.Equal(t, "tenantplane-users", *sa.Namespace)
		require.Equal(t, isolation.ManagedBy, sa.Labels[isolation.LabelManagedBy])
	}
	for _, r := range o.Roles {
		v.roles = append(v.roles, *r.Name)
	}
	for _, p := range o.NetworkPolicies {
		v.policies = append(v.policies, *p.Name)
	}
	return v
}

func TestDesired(t *testing.T) {
	t.Parallel()
	owner := isolation.Member{UserID: 42, Role: tenancy.RoleOwner}
	dev := isolation.Member{UserID: 5, Role: tenancy.RoleDeveloper}
	disabled := isolation.Member{UserID: 9, Role: tenancy.RoleAdmin, Disabled: true}
	freeQuota := map[string]string{
		"requests.cpu": "2", "limits.cpu": "4", "requests.memory": "4Gi", "limits.memory": "8Gi",
		"requests.storage": "20Gi", "openebs-lvm.storageclass.storage.k8s.io/requests.storage": "20Gi",
		"pods": "20", "services": "10", "persistentvolumeclaims": "10", "configmaps": "50", "secrets": "50",
		"services.nodeports": "0", "services.loadbalancers": "0", "requests.nvidia.com/gpu": "0",
	}
	allRoles := []string{"tenantplane:owner", "tenantplane:admin", "tenantplane:developer", "tenantplane:viewer"}
	policies := []string{isolation.NetworkPolicyIngressName, isolation.NetworkPolicyEgressName}

	tests := []struct {
		name     string
		tenant   isolation.Tenant
		wantErr  errcode.Code
		want     view
		wantNone bool
	}{
		{
			name:   "active free namespace with an owner, a developer and a disabled admin",
			tenant: tenant(tenancy.NamespaceActive, "free", owner, dev, disabled),
			want: view{
				nsLabels: map[string]string{
					"app.kubernetes.io/managed-by": "tenantplane", "tenantplane.io/namespace-id": "7",
					"tenantplane.io/instance": "tenantplane",
					"tenantplane.io/org":      "3", "tenantplane.io/plan": "free", "tenantplane.io/state": "active",
					"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "v1.37",
					"pod-security.kubernetes.io/audit": "restricted", "pod-security.kubernetes.io/audit-version": "v1.37",
					"pod-security.kubernetes.io/warn": "restricted", "pod-security.kubernetes.io/warn-version": "v1.37",
				},
				nsAnnotations: map[string]string{
					isolation.AnnotationRuntimeClass:       "kata-fc",
					isolation.AnnotationStorageClasses:     "openebs-lvm",
					isolation.AnnotationMaxEgressBandwidth: "100M",
					isolation.AnnotationHosts:              "api.example.org,www.example.org",
					isolation.AnnotationDomain:             "ns-abc.apps.example.test",
				},
				quotas: map[string]map[string]string{"tenantplane": freeQuota},
				bindings: map[string]string{
					"tenantplane:user-5:developer": "tenantplane:developer",
					"tenantplane:user-42:owner":    "tenantplane:owner",
				},
				accounts: []string{"user-5", "user-42"},
				roles:    allRoles,
				policies: policies,
			},
		},
		{
			name:   "suspended namespace: read-only bindings and a quota without pods",
			tenant: tenant(tenancy.NamespaceSuspended, "free", owner, dev),
			want: view{
				quotas: map[string]map[string]string{"tenantplane": freeQuota, "tenantplane-suspended": {"pods": "0"}},
				bindings: map[string]string{
					"tenantplane:user-5:viewer":  "tenantplane:viewer",
					"tenantplane:user-42:viewer": "tenantplane:viewer",
				},
				accounts: []string{"user-5", "user-42"},
				roles:    allRoles,
				policies: policies,
			},
		},
		{
			name:   "gpu plan allows its GPU runtime class, GPUs and two storage classes",
			tenant: tenant(tenancy.NamespaceActive, "pro", owner),
			want: view{
				nsAnnotations: map[string]string{
					isolation.AnnotationRuntimeClass:       "kata-fc",
					isolation.AnnotationGPURuntimeClass:    "kata-gpu",
					isolation.AnnotationStorageClasses:     "openebs-hostpath-x,openebs-lvm",
					isolation.AnnotationMaxEgressBandwidth: "1G",
					isolation.AnnotationHosts:              "api.example.org,www.example.org",
					isolation.AnnotationDomain:             "ns-abc.apps.example.test",
				},
				quotas: map[string]map[string]string{"tenantplane": {
					"requests.cpu": "2", "limits.cpu": "4", "requests.memory": "4Gi", "limits.memory": "8Gi",
					"requests.storage": "100Gi",
					"openebs-lvm.storageclass.storage.k8s.io/requests.storage":        "80Gi",
					"openebs-hostpath-x.storageclass.storage.k8s.io/requests.storage": "20Gi",
					"pods": "20", "services": "10", "persistentvolumeclaims": "10", "configmaps": "50", "secrets": "50",
					"services.nodeports": "0", "services.loadbalancers": "0", "requests.nvidia.com/gpu": "2",
					"count/deployments.apps": "30",
				}},
				bindings: map[string]string{"tenantplane:user-42:owner": "tenantplane:owner"},
				accounts: []string{"user-42"},
				roles:    allRoles,
				policies: policies,
			},
		},
		{
			name:     "deleting namespace has no objects",
			tenant:   tenant(tenancy.NamespaceDeleting, "free", owner),
			wantNone: true,
		},
		{
			name:    "unknown plan",
			tenant:  tenant(tenancy.NamespaceActive, "platinum", owner),
			wantErr: errcode.BadUserInput,
		},
		{
			name:    "name that is no DNS label",
			tenant:  isolation.Tenant{ID: 7, Name: "Ns_ABC", OrgID: 3, Plan: "free", State: tenancy.NamespaceActive},
			wantErr: errcode.BadUserInput,
		},
		{
			name:    "a namespace of the cluster",
			tenant:  isolation.Tenant{ID: 7, Name: "kube-system", OrgID: 3, Plan: "free", State: tenancy.NamespaceActive},
			wantErr: errcode.BadUserInput,
		},
		{
			name:    "a platform namespace",
			tenant:  isolation.Tenant{ID: 7, Name: "ingress-nginx", OrgID: 3, Plan: "free", State: tenancy.NamespaceActive},
			wantErr: errcode.BadUserInput,
		},
		{
			name:    "unknown state",
			tenant:  tenant("archived", "free", owner),
			wantErr: errcode.BadUserInput,
		},
		{
			name:    "a user twice",
			tenant:  tenant(tenancy.NamespaceActive, "free", owner, isolation.Member{UserID: 42, Role: tenancy.RoleViewer}),
			wantErr: errcode.BadUserInput,
		},
		{
			name:    "unknown role",
			tenant:  tenant(tenancy.NamespaceActive, "free", isolation.Member{UserID: 1, Role: "root"}),
			wantErr: errcode.BadUserInput,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o, err := isolation.Desired(tc.tenant, testConfig())
			if tc.wantErr != "" {
				require.Error(t, err)
				require.Equal(t, tc.wantErr, errcode.Of(err))
				return
			}
			require.NoError(t, err)
			if tc.wantNone {
				require.Zero(t, o.Count())
				require.Nil(t, o.Namespace)
				return
			}
			got := viewOf(t, o)
			if tc.want.nsLabels != nil {
				require.Equal(t, tc.want.nsLabels, got.nsLabels)
			}
			if tc.want.nsAnnotations != nil {
				require.Equal(t, tc.want.nsAnnotations, got.nsAnnotations)
			}
			require.Equal(t, tc.want.quotas, got.quotas)
			require.Equal(t, tc.want.bindings, got.bindings)
			require.Equal(t, tc.want.accounts, got.accounts)
			require.Equal(t, tc.want.roles, got.roles)
			require.Equal(t, tc.want.policies, got.policies)
			require.Equal(t, 1+len(got.quotas)+1+len(got.policies)+len(got.roles)+len(got.bindings)+len(got.accounts), o.Count())

			// Every object in the namespace carries both ownership labels.
			for _, labels := range objectLabels(o) {
				require.Equal(t, isolation.ManagedBy, labels[isolation.LabelManagedBy])
				require.Equal(t, "7", labels[isolation.LabelNamespaceID])
				require.Equal(t, "tenantplane", labels[isolation.LabelInstance])
			}
		})
	}
}

func objectLabels(o isolation.Objects) []map[string]string {
	out := []map[string]string{o.Namespace.Labels, o.LimitRange.Labels}
	for _, q := range o.ResourceQuotas {
		out = append(out, q.Labels)
	}
	for _, p := range o.NetworkPolicies {
		out = append(out, p.Labels)
	}
	for _, r := range o.Roles {
		out = append(out, r.Labels)
	}
	for _, b := range o.RoleBindings {
		out = append(out, b.Labels)
	}
	return out
}

// TestDesiredNetworkPolicies checks the exact peers: ingress from the
// namespace itself and the platform's ingress and monitoring namespaces;
// egress to itself, DNS, and the internet minus pods, services, nodes and
// the metadata address.
func TestDesiredNetworkPolicies(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.Network.NodeCIDRs = mustPrefixes("192.168.0.0/16", "fd00:1::/64")
	o, err := isolation.Desired(tenant(tenancy.NamespaceActive, "free"), cfg)
	require.NoError(t, err)
	var ingress, egress networkingv1.NetworkPolicy
	roundTrip(t, o.NetworkPolicies[0], &ingress)
	roundTrip(t, o.NetworkPolicies[1], &egress)

	require.Equal(t, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}, ingress.Spec.PolicyTypes)
	require.Empty(t, ingress.Spec.PodSelector.MatchLabels)
	require.Len(t, ingress.Spec.Ingress, 1)
	var from []string
	for _, p := range ingress.Spec.Ingress[0].From {
		switch {
		case p.NamespaceSelector != nil:
			from = append(from, "ns:"+p.NamespaceSelector.MatchLabels[corev1.LabelMetadataName])
		case p.PodSelector != nil:
			require.Empty(t, p.PodSelector.MatchLabels)
			from = append(from, "same-namespace")
		}
	}
	require.Equal(t, []string{"same-namespace", "ns:ingress-nginx", "ns:monitoring"}, from)

	require.Equal(t, []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}, egress.Spec.PolicyTypes)
	require.Len(t, egress.Spec.Egress, 3)
	require.NotNil(t, egress.Spec.Egress[0].To[0].PodSelector)
	require.Nil(t, egress.Spec.Egress[0].To[0].NamespaceSelector)
	dns := egress.Spec.Egress[1]
	require.Equal(t, map[string]string{corev1.LabelMetadataName: "kube-system"}, dns.To[0].NamespaceSelector.MatchLabels)
	require.Equal(t, map[string]string{"k8s-app": "kube-dns"}, dns.To[0].PodSelector.MatchLabels)
	require.Len(t, dns.Ports, 2)
	require.Equal(t, int32(53), dns.Ports[0].Port.IntVal)
	internet := egress.Spec.Egress[2]
	require.Len(t, internet.To, 2)
	require.Equal(t, "0.0.0.0/0", internet.To[0].IPBlock.CIDR)
	require.Equal(t, []string{"10.244.0.0/16", "10.96.0.0/12", "169.254.169.254/32", "192.168.0.0/16"}, internet.To[0].IPBlock.Except)
	require.Equal(t, "::/0", internet.To[1].IPBlock.CIDR)
	require.Equal(t, []string{"fd00:1::/64", "fd00:ec2::254/128"}, internet.To[1].IPBlock.Except)
	require.Nil(t, internet.Ports, "the internet is reachable on every port")
}

func TestDesiredLimitRange(t *testing.T) {
	t.Parallel()
	o, err := isolation.Desired(tenant(tenancy.NamespaceActive, "free"), testConfig())
	require.NoError(t, err)
	var lr corev1.LimitRange
	roundTrip(t, o.LimitRange, &lr)
	require.Len(t, lr.Spec.Limits, 2)
	c := lr.Spec.Limits[0]
	require.Equal(t, corev1.LimitTypeContainer, c.Type)
	require.Equal(t, "100m", ptrQ(c.DefaultRequest.Cpu()))
	require.Equal(t, "128Mi", ptrQ(c.DefaultRequest.Memory()))
	require.Equal(t, "500m", ptrQ(c.Default.Cpu()))
	require.Equal(t, "512Mi", ptrQ(c.Default.Memory()))
	require.Equal(t, "2", ptrQ(c.Max.Cpu()))
	require.Equal(t, "4Gi", ptrQ(c.Max.Memory()))
	p := lr.Spec.Limits[1]
	require.Equal(t, corev1.LimitTypePersistentVolumeClaim, p.Type)
	require.Equal(t, "10Gi", ptrQ(p.Max.Storage()))
}

func ptrQ(q *resource.Quantity) string { return q.String() }

func roundTrip(t *testing.T, in, out any) {
	t.Helper()
	b, err := json.Marshal(in)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, out))
}

// TestRoleRules checks, verb by verb, what each role may do, and that no
// role can touch what the platform owns.
func TestRoleRules(t *testing.T) {
	t.Parallel()
	type ask struct {
		group, resource, verb string
	}
	owned := []ask{
		{"", "resourcequotas", "update"}, {"", "resourcequotas", "delete"},
		{"", "limitranges", "patch"}, {"networking.k8s.io", "networkpolicies", "delete"},
		{"networking.k8s.io", "networkpolicies", "create"},
		{"rbac.authorization.k8s.io", "rolebindings", "create"}, {"rbac.authorization.k8s.io", "rolebindings", "delete"},
		{"rbac.authorization.k8s.io", "roles", "update"}, {"rbac.authorization.k8s.io", "roles", "bind"},
		{"rbac.authorization.k8s.io", "roles", "escalate"}, {"", "namespaces", "get"},
		{"apps", "daemonsets", "create"}, {"", "nodes", "list"}, {"", "serviceaccounts/token", "create"},
	}
	tests := []struct {
		role  tenancy.Role
		allow []ask
		deny  []ask
	}{
		{
			role:  tenancy.RoleViewer,
			allow: []ask{{"", "pods", "list"}, {"apps", "deployments", "watch"}, {"", "pods", "get"}, {"", "pods/log", "get"}},
			deny: append([]ask{{"", "secrets", "get"}, {"", "secrets", "list"}, {"apps", "deployments", "update"},
				{"", "pods", "delete"}, {"", "pods/exec", "create"}, {"", "configmaps", "create"}}, owned...),
		},
		{
			role: tenancy.RoleDeveloper,
			allow: []ask{{"apps", "deployments", "create"}, {"", "secrets", "get"}, {"", "services", "create"},
				{"", "persistentvolumeclaims", "create"}, {"batch", "cronjobs", "patch"}, {"", "pods/exec", "create"},
				{"networking.k8s.io", "ingresses", "create"}, {"apps", "deployments/scale", "update"}},
			deny: append([]ask{{"", "serviceaccounts", "create"}}, owned...),
		},
		{
			role:  tenancy.RoleAdmin,
			allow: []ask{{"", "serviceaccounts", "create"}, {"apps", "statefulsets", "delete"}},
			deny:  owned,
		},
		{
			role:  tenancy.RoleOwner,
			allow: []ask{{"", "serviceaccounts", "delete"}, {"", "secrets", "deletecollection"}},
			deny:  owned,
		},
	}
	for _, tc := range tests {
		t.Run(string(tc.role), func(t *testing.T) {
			t.Parallel()
			rules := isolation.RoleRules(tc.role)
			for _, a := range tc.allow {
				require.True(t, allows(rules, a.group, a.resource, a.verb), "%s may %s %s/%s", tc.role, a.verb, a.group, a.resource)
			}
			for _, a := range tc.deny {
				require.False(t, allows(rules, a.group, a.resource, a.verb), "%s may not %s %s/%s", tc.role, a.verb, a.group, a.resource)
			}
			for _, r := range rules {
				require.NotContains(t, r.Verbs, "*")
				require.NotContains(t, r.Resources, "*")
				require.NotContains(t, r.APIGroups, "*")
			}
		})
	}
}

func allows(rules []rbacv1.PolicyRule, group, res, verb string) bool {
	for _, r := range rules {
		if slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, res) && slices.Contains(r.Verbs, verb) {
			return true
		}
	}
	return false
}

// TestDesiredStamp shows that every object carries a hash of its content:
// the same input gives the same hashes, and a change changes exactly the
// hashes of the objects it touches.
func TestDesiredStamp(t *testing.T) {
	t.Parallel()
	owner := isolation.Member{UserID: 42, Role: tenancy.RoleOwner}
	hashes := func(tn isolation.Tenant) map[string]string {
		o, err := isolation.Desired(tn, testConfig())
		require.NoError(t, err)
		out := map[string]string{"Namespace": o.Namespace.Annotations[isolation.AnnotationApplied],
			"LimitRange": o.LimitRange.Annotations[isolation.AnnotationApplied]}
		for _, q := range o.ResourceQuotas {
			out["ResourceQuota/"+*q.Name] = q.Annotations[isolation.AnnotationApplied]
		}
		for _, p := range o.NetworkPolicies {
			out["NetworkPolicy/"+*p.Name] = p.Annotations[isolation.AnnotationApplied]
		}
		for _, b := range o.RoleBindings {
			out["RoleBinding/"+*b.Name] = b.Annotations[isolation.AnnotationApplied]
		}
		for _, sa := range o.ServiceAccounts {
			out["ServiceAccount/"+*sa.Name] = sa.Annotations[isolation.AnnotationApplied]
		}
		for k, v := range out {
			require.NotEmpty(t, v, k)
		}
		return out
	}
	base := tenant(tenancy.NamespaceActive, "free", owner)
	a, b := hashes(base), hashes(base)
	require.Equal(t, a, b, "deterministic")

	moreHosts := base
	moreHosts.Hosts = append(slices.Clone(base.Hosts), "new.example.org")
	c := hashes(moreHosts)
	require.NotEqual(t, a["Namespace"], c["Namespace"], "the hosts annotation changed")
	delete(a, "Namespace")
	delete(c, "Namespace")
	require.Equal(t, a, c, "nothing else changed")

	pro := base
	pro.Plan = "pro"
	d := hashes(pro)
	require.NotEqual(t, a["ResourceQuota/tenantplane"], d["ResourceQuota/tenantplane"])
	require.Equal(t, a["NetworkPolicy/tenantplane-egress"], d["NetworkPolicy/tenantplane-egress"])
}
