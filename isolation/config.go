package isolation

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Config is the platform's side of isolation: what each plan allows, where
// the platform's own namespaces are, the address ranges tenants must never
// reach, and how kubeconfigs are issued. Start from DefaultConfig; every
// constructor in this package validates it.
type Config struct {
	// Instance names this installation (default "tenantplane"). Every
	// object carries it in LabelInstance and the guards are named after it,
	// so that several installations (staging beside production, or tests)
	// can share one cluster without touching each other's objects.
	Instance string

	// Plans maps an org's plan name (orgs.plan) to what it allows. A
	// namespace whose org has a plan missing here is not reconciled and the
	// error is recorded.
	Plans map[string]Plan

	// UsersNamespace is the platform namespace that holds one ServiceAccount
	// per user; tenant RoleBindings point at them and issued kubeconfigs
	// carry their tokens. Default "tenantplane-users".
	UsersNamespace string

	// PodSecurityVersion pins the Pod Security Standards version of the
	// enforce, audit and warn labels, e.g. "v1.37" or "latest".
	PodSecurityVersion string

	// Network says where the platform's namespaces and the address ranges
	// tenants must not reach are.
	Network Network

	// TenantDomain, when set (e.g. "apps.example.com"), gives each tenant
	// the host names "<namespace>.<TenantDomain>" and "*.<namespace>.<TenantDomain>"
	// without claiming them; other hosts must be claimed.
	TenantDomain string

	// KubeconfigTTL is the default lifetime of an issued kubeconfig's token
	// (8h); KubeconfigMaxTTL the longest one may ask for (24h). Kubernetes
	// refuses tokens shorter than 10 minutes.
	KubeconfigTTL    time.Duration
	KubeconfigMaxTTL time.Duration
}

// Network locates the platform namespaces tenant pods may talk to or be
// reached from, and the address ranges they must never reach.
type Network struct {
	// IngressNamespaces and MonitoringNamespaces may reach tenant pods.
	IngressNamespaces    []string
	MonitoringNamespaces []string
	// DNSNamespace and DNSPodLabels select the cluster DNS pods, which
	// tenant pods may reach on DNSPort (UDP and TCP).
	DNSNamespace string
	DNSPodLabels map[string]string
	DNSPort      int32
	// PodCIDRs, ServiceCIDRs and NodeCIDRs are the cluster's own address
	// ranges; tenant egress to the internet excludes all of them, so that a
	// tenant reaches neither another tenant's pods nor any node.
	PodCIDRs     []netip.Prefix
	ServiceCIDRs []netip.Prefix
	NodeCIDRs    []netip.Prefix
	// BlockedCIDRs are further ranges excluded from internet egress, by
	// default the cloud metadata addresses 169.254.169.254/32 and
	// fd00:ec2::254/128.
	BlockedCIDRs []netip.Prefix
}

// Plan is what one plan allows a tenant namespace.
type Plan struct {
	// Quota is the namespace's ResourceQuota.
	Quota Quota
	// Limits are the LimitRange defaults and maxima.
	Limits Limits
	// RuntimeClass is the RuntimeClass every pod must use, e.g. a Kata
	// class backed by Firecracker.
	RuntimeClass string
	// GPURuntimeClass is the one other RuntimeClass pods may use, for GPU
	// workloads; empty when the plan has no GPUs.
	GPURuntimeClass string
	// StorageClasses are the storage classes PVCs may use, each with its
	// share of requests.storage in the quota.
	StorageClasses map[string]resource.Quantity
	// MaxEgressBandwidth bounds the kubernetes.io/egress-bandwidth
	// annotation that every pod must carry, e.g. "100M" (bits per second).
	MaxEgressBandwidth resource.Quantity
}

// Quota is the hard limits of a plan's ResourceQuota. services.nodeports
// and services.loadbalancers are always 0 and need no setting.
type Quota struct {
	RequestsCPU     resource.Quantity
	LimitsCPU       resource.Quantity
	RequestsMemory  resource.Quantity
	LimitsMemory    resource.Quantity
	RequestsStorage resource.Quantity
	// GPUs bounds requests.nvidia.com/gpu; 0 for plans without GPUs.
	GPUs                   int64
	Pods                   int64
	Services               int64
	PersistentVolumeClaims int64
	ConfigMaps             int64
	Secrets                int64
	// ObjectCounts adds "count/<resource>.<group>" limits, e.g.
	// "count/deployments.apps": 50.
	ObjectCounts map[string]int64
}

// Limits are a plan's LimitRange: container defaults and maxima and the
// largest PVC.
type Limits struct {
	DefaultRequestCPU    resource.Quantity
	DefaultRequestMemory resource.Quantity
	DefaultLimitCPU      resource.Quantity
	DefaultLimitMemory   resource.Quantity
	MaxCPU               resource.Quantity
	MaxMemory            resource.Quantity
	MaxPVCStorage        resource.Quantity
}

// Kubeconfig lifetimes Kubernetes accepts for a TokenRequest.
const (
	minTokenTTL = 10 * time.Minute
)

// DefaultConfig returns a configuration with one plan, "free", and the
// documented defaults. Server configuration starts from it.
func DefaultConfig() Config {
	q := resource.MustParse
	return Config{
		Plans: map[string]Plan{
			"free": {
				Quota: Quota{
					RequestsCPU: q("2"), LimitsCPU: q("4"),
					RequestsMemory: q("4Gi"), LimitsMemory: q("8Gi"),
					RequestsStorage: q("20Gi"),
					Pods:            20, Services: 10, PersistentVolumeClaims: 10,
					ConfigMaps: 50, Secrets: 50,
				},
				Limits: Limits{
					DefaultRequestCPU: q("100m"), DefaultRequestMemory: q("128Mi"),
					DefaultLimitCPU: q("500m"), DefaultLimitMemory: q("512Mi"),
					MaxCPU: q("2"), MaxMemory: q("4Gi"), MaxPVCStorage: q("10Gi"),
				},
				RuntimeClass:       "kata-fc",
				StorageClasses:     map[string]resource.Quantity{"openebs-lvm": q("20Gi")},
				MaxEgressBandwidth: q("100M"),
			},
		},
		Instance:           "tenantplane",
		UsersNamespace:     "tenantplane-users",
		PodSecurityVersion: "latest",
		Network: Network{
			IngressNamespaces:    []string{"ingress-nginx"},
			MonitoringNamespaces: []string{"monitoring"},
			DNSNamespace:         "kube-system",
			DNSPodLabels:         map[string]string{"k8s-app": "kube-dns"},
			DNSPort:              53,
			PodCIDRs:             []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")},
			ServiceCIDRs:         []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12")},
			BlockedCIDRs: []netip.Prefix{
				netip.MustParsePrefix("169.254.169.254/32"),
				netip.MustParsePrefix("fd00:ec2::254/128"),
			},
		},
		KubeconfigTTL:    8 * time.Hour,
		KubeconfigMaxTTL: 24 * time.Hour,
	}
}

// Validate reports every invalid setting.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(c.Plans) == 0 {
		add("at least one plan is needed")
	}
	for _, name := range sortedKeys(c.Plans) {
		if msgs := validation.IsDNS1123Label(name); len(msgs) > 0 {
			add("plan name %q: %v", name, msgs)
		}
		if err := c.Plans[name].validate(); err != nil {
			add("plan %s: %w", name, err)
		}
	}
	if msgs := validation.IsDNS1123Label(c.Instance); len(msgs) > 0 || len(c.Instance) > 40 {
		add("Instance %q must be a DNS label of at most 40 characters", c.Instance)
	}
	if msgs := validation.IsDNS1123Label(c.UsersNamespace); len(msgs) > 0 {
		add("UsersNamespace %q: %v", c.UsersNamespace, msgs)
	}
	if c.PodSecurityVersion != "latest" && !podSecurityVersion.MatchString(c.PodSecurityVersion) {
		add("PodSecurityVersion %q must be \"latest\" or like \"v1.37\"", c.PodSecurityVersion)
	}
	if err := c.Network.validate(); err != nil {
		errs = append(errs, err)
	}
	if c.TenantDomain != "" {
		if msgs := validation.IsDNS1123Subdomain(c.TenantDomain); len(msgs) > 0 {
			add("TenantDomain %q: %v", c.TenantDomain, msgs)
		}
	}
	if c.KubeconfigTTL < minTokenTTL || c.KubeconfigMaxTTL < c.KubeconfigTTL {
		add("need 10m <= KubeconfigTTL (%s) <= KubeconfigMaxTTL (%s)", c.KubeconfigTTL, c.KubeconfigMaxTTL)
	}
	if len(errs) > 0 {
		return fmt.Errorf("isolation config: %w", errors.Join(errs...))
	}
	return nil
}

func (p Plan) validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if msgs := validation.IsDNS1123Subdomain(p.RuntimeClass); len(msgs) > 0 {
		add("RuntimeClass %q: %v", p.RuntimeClass, msgs)
	}
	if p.GPURuntimeClass != "" {
		if msgs := validation.IsDNS1123Subdomain(p.GPURuntimeClass); len(msgs) > 0 {
			add("GPURuntimeClass %q: %v", p.GPURuntimeClass, msgs)
		}
		if p.GPURuntimeClass == p.RuntimeClass {
			add("GPURuntimeClass must differ from RuntimeClass")
		}
	}
	if (p.GPURuntimeClass != "") != (p.Quota.GPUs > 0) {
		add("a plan has GPUs (Quota.GPUs > 0) exactly when it has a GPURuntimeClass")
	}
	if len(p.StorageClasses) == 0 {
		add("at least one storage class is needed")
	}
	for _, sc := range sortedKeys(p.StorageClasses) {
		if msgs := validation.IsDNS1123Subdomain(sc); len(msgs) > 0 {
			add("storage class %q: %v", sc, msgs)
		}
		if q := p.StorageClasses[sc]; q.Sign() < 0 || q.Cmp(p.Quota.RequestsStorage) > 0 {
			add("storage class %s quota %s must be between 0 and RequestsStorage", sc, q.String())
		}
	}
	if p.MaxEgressBandwidth.Sign() <= 0 {
		add("MaxEgressBandwidth must be positive")
	}
	q := p.Quota
	for _, v := range []struct {
		name string
		q    resource.Quantity
	}{
		{"RequestsCPU", q.RequestsCPU}, {"LimitsCPU", q.LimitsCPU},
		{"RequestsMemory", q.RequestsMemory}, {"LimitsMemory", q.LimitsMemory},
		{"RequestsStorage", q.RequestsStorage},
	} {
		if v.q.Sign() < 0 {
			add("Quota.%s must not be negative", v.name)
		}
	}
	if q.GPUs < 0 || q.Pods < 0 || q.Services < 0 || q.PersistentVolumeClaims < 0 || q.ConfigMaps < 0 || q.Secrets < 0 {
		add("Quota counts must not be negative")
	}
	for _, k := range sortedKeys(q.ObjectCounts) {
		if !objectCountKey.MatchString(k) || q.ObjectCounts[k] < 0 {
			add("Quota.ObjectCounts %q=%d must be count/<resource>[.<group>] with a count >= 0", k, q.ObjectCounts[k])
		}
	}
	l := p.Limits
	for _, v := range []struct {
		name string
		q    resource.Quantity
	}{
		{"DefaultRequestCPU", l.DefaultRequestCPU}, {"DefaultRequestMemory", l.DefaultRequestMemory},
		{"DefaultLimitCPU", l.DefaultLimitCPU}, {"DefaultLimitMemory", l.DefaultLimitMemory},
		{"MaxCPU", l.MaxCPU}, {"MaxMemory", l.MaxMemory}, {"MaxPVCStorage", l.MaxPVCStorage},
	} {
		if v.q.Sign() <= 0 {
			add("Limits.%s must be positive", v.name)
		}
	}
	if l.DefaultRequestCPU.Cmp(l.DefaultLimitCPU) > 0 || l.DefaultLimitCPU.Cmp(l.MaxCPU) > 0 {
		add("need Limits.DefaultRequestCPU <= DefaultLimitCPU <= MaxCPU")
	}
	if l.DefaultRequestMemory.Cmp(l.DefaultLimitMemory) > 0 || l.DefaultLimitMemory.Cmp(l.MaxMemory) > 0 {
		add("need Limits.DefaultRequestMemory <= DefaultLimitMemory <= MaxMemory")
	}
	return errors.Join(errs...)
}

func (n Network) validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	for _, ns := range slices.Concat(n.IngressNamespaces, n.MonitoringNamespaces, []string{n.DNSNamespace}) {
		if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
			add("Network namespace %q: %v", ns, msgs)
		}
	}
	if len(n.DNSPodLabels) == 0 {
		add("Network.DNSPodLabels must select the DNS pods")
	}
	for k, v := range n.DNSPodLabels {
		if len(validation.IsQualifiedName(k)) > 0 || len(validation.IsValidLabelValue(v)) > 0 {
			add("Network.DNSPodLabels %s=%s is not a valid label", k, v)
		}
	}
	if n.DNSPort <= 0 || n.DNSPort > 65535 {
		add("Network.DNSPort %d out of range", n.DNSPort)
	}
	for _, p := range slices.Concat(n.PodCIDRs, n.ServiceCIDRs, n.NodeCIDRs, n.BlockedCIDRs) {
		if !p.IsValid() || p != p.Masked() {
			add("Network CIDR %s must be a valid masked prefix", p)
		}
	}
	if len(n.PodCIDRs) == 0 {
		add("Network.PodCIDRs must be set, or tenants could reach each other")
	}
	return errors.Join(errs...)
}
