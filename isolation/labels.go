package isolation

// Labels and annotations the platform puts on what it manages. Everything
// the platform owns carries LabelManagedBy=ManagedBy; everything that
// belongs to one tenant namespace also carries LabelNamespaceID, which is
// how the reconciler finds what is no longer desired and which namespace to
// repair when something drifts.
const (
	LabelManagedBy   = "app.kubernetes.io/managed-by"
	ManagedBy        = "tenantplane"
	LabelNamespaceID = "tenantplane.io/namespace-id"
	LabelOrg         = "tenantplane.io/org"
	LabelPlan        = "tenantplane.io/plan"
	LabelState       = "tenantplane.io/state"
	LabelUserID      = "tenantplane.io/user-id"
	// LabelInstance names the installation (Config.Instance) an object
	// belongs to, so that installations sharing a cluster never touch each
	// other's objects.
	LabelInstance = "tenantplane.io/instance"
)

// Namespace annotations that the cluster-wide admission policies read as
// their parameters: CEL sees the request's namespace object, so a plan's
// limits travel on the namespace itself, which tenants cannot change.
const (
	AnnotationRuntimeClass       = "tenantplane.io/runtime-class"
	AnnotationGPURuntimeClass    = "tenantplane.io/gpu-runtime-class"
	AnnotationStorageClasses     = "tenantplane.io/storage-classes"
	AnnotationMaxEgressBandwidth = "tenantplane.io/max-egress-bandwidth"
	AnnotationHosts              = "tenantplane.io/hosts"
	AnnotationDomain             = "tenantplane.io/domain"
)

// AnnotationApplied holds a hash of everything else the platform applies
// to an object. With the object's managed fields it tells, from the
// informer cache alone, that an object is exactly as last applied, so that
// a resync sends only what changed.
const AnnotationApplied = "tenantplane.io/applied"

// Suspension bookkeeping. AnnotationSuspended marks a namespace whose
// workloads were (or are being) suspended; it is set before the first
// workload is touched and removed after the last one is restored, so a
// crash at any point leaves enough to finish the job.
const (
	AnnotationSuspended       = "tenantplane.io/suspended"
	AnnotationSavedReplicas   = "tenantplane.io/saved-replicas"
	AnnotationSavedSuspend    = "tenantplane.io/saved-suspend"
	AnnotationEgressBandwidth = "kubernetes.io/egress-bandwidth"
)

// Fixed names of the objects in every tenant namespace.
const (
	ResourceQuotaName          = "tenantplane"
	SuspendedResourceQuotaName = "tenantplane-suspended"
	LimitRangeName             = "tenantplane"
	NetworkPolicyIngressName   = "tenantplane-ingress"
	NetworkPolicyEgressName    = "tenantplane-egress"
)

// FieldManager is the one field manager under which the platform applies
// everything it owns.
const FieldManager = "tenantplane"
