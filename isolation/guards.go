package isolation

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	admissionv1ac "k8s.io/client-go/applyconfigurations/admissionregistration/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Guard is one cluster-wide ValidatingAdmissionPolicy and the binding that
// applies it to tenant namespaces only.
type Guard struct {
	Policy  *admissionv1ac.ValidatingAdmissionPolicyApplyConfiguration
	Binding *admissionv1ac.ValidatingAdmissionPolicyBindingApplyConfiguration
}

// The guards, named "<Config.Instance>-<guard>".
const (
	GuardWorkloads        = "workloads"
	GuardStorage          = "storage"
	GuardStorageTemplates = "storage-templates"
	GuardServices         = "services"
	GuardIngressHosts     = "ingress-hosts"
	GuardRouteHosts       = "route-hosts"
	GuardProtect          = "protect"
)

// GuardName is the name of a guard's policy and binding.
func GuardName(cfg Config, guard string) string { return cfg.Instance + "-" + guard }

// Guards are the admission policies for what Pod Security and RBAC cannot
// say, named "<Config.Instance>-<guard>" and bound to this installation's
// tenant namespaces only. Their parameters are the annotations Desired puts
// on each tenant namespace (CEL sees the request's namespace object, which
// tenants cannot change), so one policy serves every plan and a plan change
// needs no policy change:
//
//   - workloads: pods, and the pod templates of Deployments, ReplicaSets,
//     StatefulSets, DaemonSets, Jobs, CronJobs and ReplicationControllers,
//     must use the plan's RuntimeClass (or its GPU class), carry
//     kubernetes.io/egress-bandwidth no larger than the plan allows, and
//     take ephemeral volumes only from allowed storage classes. Templates
//     are checked when created or changed, so that the platform can still
//     scale or suspend a workload made under an older plan.
//   - storage, storage-templates: PVCs and StatefulSet volume claim
//     templates name an allowed storage class.
//   - services: Services are ClusterIP (or headless) and have no
//     externalIPs.
//   - ingress-hosts, route-hosts: every Ingress and HTTPRoute host is one
//     the namespace claimed (claims are unique in Postgres, so no host is
//     ever claimed by two tenants) or lies under the namespace's own domain,
//     and there is no catch-all rule.
//   - protect: tenants (their users' ServiceAccounts and the namespace's own
//     ServiceAccounts) may not create, change or delete anything labelled as
//     managed by the platform, nor set, change or remove tenantplane.io/
//     annotations on their own objects.
func Guards(cfg Config) []Guard {
	return []Guard{
		guard(cfg, GuardWorkloads, workloadsPolicy()),
		guard(cfg, GuardStorage, storagePolicy()),
		guard(cfg, GuardStorageTemplates, storageTemplatesPolicy()),
		guard(cfg, GuardServices, servicesPolicy()),
		guard(cfg, GuardIngressHosts, ingressHostsPolicy()),
		guard(cfg, GuardRouteHosts, routeHostsPolicy()),
		guard(cfg, GuardProtect, protectPolicy(cfg)),
	}
}

// InstallGuards applies the guards and the users namespace with server-side
// apply. Run it once at start, before the reconciler.
func InstallGuards(ctx context.Context, kube kubernetes.Interface, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	opts := metav1.ApplyOptions{FieldManager: FieldManager, Force: true}
	ns := UsersNamespace(cfg)
	if _, err := kube.CoreV1().Namespaces().Apply(ctx, ns, opts); err != nil {
		return fmt.Errorf("applying namespace %s: %w", cfg.UsersNamespace, err)
	}
	adm := kube.AdmissionregistrationV1()
	guards := Guards(cfg)
	slices.Reverse(guards) // the probed ones last: when they work, all were loaded
	for _, g := range guards {
		if _, err := adm.ValidatingAdmissionPolicies().Apply(ctx, g.Policy, opts); err != nil {
			return fmt.Errorf("applying admission policy %s: %w", *g.Policy.Name, err)
		}
		if _, err := adm.ValidatingAdmissionPolicyBindings().Apply(ctx, g.Binding, opts); err != nil {
			return fmt.Errorf("applying admission policy binding %s: %w", *g.Binding.Name, err)
		}
	}
	return waitGuards(ctx, kube, cfg)
}

// waitGuards returns once the API server enforces the guards: it loads
// policies asynchronously, so it tries requests the guards must refuse
// (dry-run, in a probe namespace labelled like a tenant's) until they are
// refused, or ctx ends. With several API servers behind a load balancer
// this is a good sign, not a proof, that every one has loaded them.
func waitGuards(ctx context.Context, kube kubernetes.Interface, cfg Config) error {
	probe := cfg.Instance + "-guard-probe"
	labels := map[string]string{LabelManagedBy: ManagedBy, LabelInstance: cfg.Instance, LabelNamespaceID: "0"}
	for _, mode := range []string{"enforce", "audit", "warn"} {
		labels["pod-security.kubernetes.io/"+mode] = "restricted"
	}
	opts := metav1.ApplyOptions{FieldManager: FieldManager, Force: true}
	if _, err := kube.CoreV1().Namespaces().Apply(ctx, corev1ac.Namespace(probe).WithLabels(labels), opts); err != nil {
		return fmt.Errorf("applying guard probe namespace: %w", err)
	}
	dry := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	probes := map[string]func() error{
		GuardServices: func() error {
			_, err := kube.CoreV1().Services(probe).Create(ctx, &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: "probe"},
				Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}, ExternalIPs: []string{"192.0.2.1"}},
			}, dry)
			return err
		},
		GuardStorage: func() error {
			_, err := kube.CoreV1().PersistentVolumeClaims(probe).Create(ctx, &corev1.PersistentVolumeClaim{
				ObjectMeta: metav1.ObjectMeta{Name: "probe"},
				Spec: corev1.PersistentVolumeClaimSpec{
					StorageClassName: ptr("tenantplane-probe-none"),
					AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
					Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Mi")}},
				},
			}, dry)
			return err
		},
		GuardIngressHosts: func() error {
			_, err := kube.NetworkingV1().Ingresses(probe).Create(ctx, &networkingv1.Ingress{
				ObjectMeta: metav1.ObjectMeta{Name: "probe"},
				Spec: networkingv1.IngressSpec{DefaultBackend: &networkingv1.IngressBackend{
					Service: &networkingv1.IngressServiceBackend{Name: "probe", Port: networkingv1.ServiceBackendPort{Number: 80}}}},
			}, dry)
			return err
		},
		GuardWorkloads: func() error {
			_, err := kube.AppsV1().Deployments(probe).Create(ctx, &appsv1.Deployment{
				ObjectMeta: metav1.ObjectMeta{Name: "probe"},
				Spec: appsv1.DeploymentSpec{
					Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "probe"}},
					Template: corev1.PodTemplateSpec{
						ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "probe"}},
						Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "probe", Image: "probe"}}},
					},
				},
			}, dry)
			return err
		},
	}
	for name, try := range probes {
		policy := GuardName(cfg, name)
		for {
			err := try()
			if apierrors.IsForbidden(err) && strings.Contains(err.Error(), policy) {
				break
			}
			if err != nil && !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err) {
				return fmt.Errorf("probing admission policy %s: %w", policy, err)
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("waiting for admission policy %s to be enforced: %w", policy, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}

// UsersNamespace is the platform namespace holding the users'
// ServiceAccounts. No pod may run there.
func UsersNamespace(cfg Config) *corev1ac.NamespaceApplyConfiguration {
	labels := map[string]string{LabelManagedBy: ManagedBy, LabelInstance: cfg.Instance}
	for _, mode := range []string{"enforce", "audit", "warn"} {
		labels["pod-security.kubernetes.io/"+mode] = "restricted"
		labels["pod-security.kubernetes.io/"+mode+"-version"] = cfg.PodSecurityVersion
	}
	return corev1ac.Namespace(cfg.UsersNamespace).WithLabels(labels)
}

func guard(cfg Config, g string, spec *admissionv1ac.ValidatingAdmissionPolicySpecApplyConfiguration) Guard {
	name := GuardName(cfg, g)
	labels := map[string]string{LabelManagedBy: ManagedBy, LabelInstance: cfg.Instance}
	return Guard{
		Policy: admissionv1ac.ValidatingAdmissionPolicy(name).WithLabels(labels).
			WithSpec(spec.WithFailurePolicy(admissionv1.Fail)),
		Binding: admissionv1ac.ValidatingAdmissionPolicyBinding(name).WithLabels(labels).
			WithSpec(admissionv1ac.ValidatingAdmissionPolicyBindingSpec().
				WithPolicyName(name).
				WithValidationActions(admissionv1.Deny).
				WithMatchResources(admissionv1ac.MatchResources().
					WithNamespaceSelector(metav1ac.LabelSelector().
						WithMatchLabels(map[string]string{LabelManagedBy: ManagedBy, LabelInstance: cfg.Instance}).
						WithMatchExpressions(metav1ac.LabelSelectorRequirement().
							WithKey(LabelNamespaceID).
							WithOperator(metav1.LabelSelectorOpExists))))),
	}
}

func rules(ops []admissionv1.OperationType, group, version string, resources ...string) *admissionv1ac.NamedRuleWithOperationsApplyConfiguration {
	return admissionv1ac.NamedRuleWithOperations().
		WithOperations(ops...).
		WithAPIGroups(group).
		WithAPIVersions(version).
		WithResources(resources...).
		WithScope(admissionv1.NamespacedScope)
}

var (
	create       = []admissionv1.OperationType{admissionv1.Create}
	createUpdate = []admissionv1.OperationType{admissionv1.Create, admissionv1.Update}
)

func variable(name, expr string) *admissionv1ac.VariableApplyConfiguration {
	return admissionv1ac.Variable().WithName(name).WithExpression(expr)
}

func check(expr, message string) *admissionv1ac.ValidationApplyConfiguration {
	return admissionv1ac.Validation().WithExpression(expr).WithMessage(message).WithReason(metav1.StatusReasonForbidden)
}

// cel replaces the {placeholders} of a CEL expression with the quoted
// annotation and label keys, so the expressions below stay readable.
func cel(expr string) string {
	return strings.NewReplacer(
		"{runtimeClass}", quote(AnnotationRuntimeClass),
		"{gpuRuntimeClass}", quote(AnnotationGPURuntimeClass),
		"{storageClasses}", quote(AnnotationStorageClasses),
		"{maxEgress}", quote(AnnotationMaxEgressBandwidth),
		"{hosts}", quote(AnnotationHosts),
		"{domain}", quote(AnnotationDomain),
		"{egress}", quote(AnnotationEgressBandwidth),
		"{managedBy}", quote(LabelManagedBy),
		"{managedByValue}", quote(ManagedBy),
	).Replace(expr)
}

func quote(s string) string { return "'" + s + "'" }

// nsAnnotations is the request namespace's annotations, empty when it has
// none.
const nsAnnotations = `has(namespaceObject.metadata.annotations) ? namespaceObject.metadata.annotations : {}`

func workloadsPolicy() *admissionv1ac.ValidatingAdmissionPolicySpecApplyConfiguration {
	return admissionv1ac.ValidatingAdmissionPolicySpec().
		WithMatchConstraints(admissionv1ac.MatchResources().WithResourceRules(
			rules(createUpdate, "", "v1", "pods", "replicationcontrollers"),
			rules(createUpdate, "apps", "v1", "deployments", "replicasets", "statefulsets", "daemonsets"),
			rules(createUpdate, "batch", "v1", "jobs", "cronjobs"),
		)).
		WithVariables(
			variable("ns", nsAnnotations),
			// tmpl is the pod, or the pod template of a workload.
			variable("tmpl", `object.kind == 'Pod' ? object : (object.kind == 'CronJob' ? object.spec.jobTemplate.spec.template : object.spec.template)`),
			variable("oldTmpl", `oldObject == null ? null : (oldObject.kind == 'Pod' ? oldObject :
				(oldObject.kind == 'CronJob' ? oldObject.spec.jobTemplate.spec.template : oldObject.spec.template))`),
			variable("spec", `has(variables.tmpl.spec) ? variables.tmpl.spec : {}`),
			variable("annotations", `has(variables.tmpl.metadata) && has(variables.tmpl.metadata.annotations) ? variables.tmpl.metadata.annotations : {}`),
			variable("oldAnnotations", `variables.oldTmpl != null && has(variables.oldTmpl.metadata) && has(variables.oldTmpl.metadata.annotations) ? variables.oldTmpl.metadata.annotations : {}`),
			// changed is false for an update that leaves the pod template
			// alone (scaling, suspending, relabelling); for a running pod,
			// whose spec barely changes, an update counts when it touches
			// the egress bandwidth.
			variable("changed", cel(`oldObject == null || (object.kind == 'Pod' ?
				(({egress} in variables.annotations) != ({egress} in variables.oldAnnotations) ||
				 ({egress} in variables.annotations && variables.annotations[{egress}] != variables.oldAnnotations[{egress}])) :
				variables.tmpl != variables.oldTmpl)`)),
			storageClasses,
		).
		WithValidations(
			check(cel(`!variables.changed || (has(variables.spec.runtimeClassName) && (
				({runtimeClass} in variables.ns && variables.spec.runtimeClassName == variables.ns[{runtimeClass}]) ||
				({gpuRuntimeClass} in variables.ns && variables.spec.runtimeClassName == variables.ns[{gpuRuntimeClass}])))`),
				"pods must set spec.runtimeClassName to the RuntimeClass their plan allows"),
			check(cel(`!variables.changed || (
				{egress} in variables.annotations && isQuantity(variables.annotations[{egress}]) &&
				{maxEgress} in variables.ns &&
				quantity(variables.annotations[{egress}]).isGreaterThan(quantity('0')) &&
				quantity(variables.annotations[{egress}]).compareTo(quantity(variables.ns[{maxEgress}])) <= 0)`),
				"pods must carry the kubernetes.io/egress-bandwidth annotation, at most what their plan allows"),
			check(`!variables.changed || !has(variables.spec.volumes) || variables.spec.volumes.all(v,
				!has(v.ephemeral) || (has(v.ephemeral.volumeClaimTemplate.spec.storageClassName) &&
				v.ephemeral.volumeClaimTemplate.spec.storageClassName in variables.classes))`,
				"ephemeral volumes must name a storage class their plan allows"),
		)
}

// storageClasses is the plan's storage classes, from the namespace.
var storageClasses = variable("classes", cel(`{storageClasses} in variables.ns ? variables.ns[{storageClasses}].split(',') : []`))

func storagePolicy() *admissionv1ac.ValidatingAdmissionPolicySpecApplyConfiguration {
	return admissionv1ac.ValidatingAdmissionPolicySpec().
		WithMatchConstraints(admissionv1ac.MatchResources().WithResourceRules(
			rules(create, "", "v1", "persistentvolumeclaims"),
		)).
		WithVariables(variable("ns", nsAnnotations), storageClasses).
		WithValidations(
			check(`has(object.spec.storageClassName) && object.spec.storageClassName in variables.classes`,
				"PersistentVolumeClaims must name a storage class their plan allows"),
		)
}

func storageTemplatesPolicy() *admissionv1ac.ValidatingAdmissionPolicySpecApplyConfiguration {
	return admissionv1ac.ValidatingAdmissionPolicySpec().
		WithMatchConstraints(admissionv1ac.MatchResources().WithResourceRules(
			rules(createUpdate, "apps", "v1", "statefulsets"),
		)).
		WithVariables(variable("ns", nsAnnotations), storageClasses).
		WithValidations(
			check(`!has(object.spec.volumeClaimTemplates) ||
				object.spec.volumeClaimTemplates.all(t, has(t.spec.storageClassName) && t.spec.storageClassName in variables.classes)`,
				"volume claim templates must name a storage class their plan allows"),
		)
}

func servicesPolicy() *admissionv1ac.ValidatingAdmissionPolicySpecApplyConfiguration {
	return admissionv1ac.ValidatingAdmissionPolicySpec().
		WithMatchConstraints(admissionv1ac.MatchResources().WithResourceRules(
			rules(createUpdate, "", "v1", "services"),
		)).
		WithValidations(
			check(`!has(object.spec.externalIPs) || size(object.spec.externalIPs) == 0`,
				"Services may not have externalIPs"),
			check(`!has(object.spec.type) || object.spec.type == 'ClusterIP'`,
				"Services must be of type ClusterIP"),
		)
}

// allowedHost is a CEL expression: host h is claimed by the namespace or
// lies under its own domain (which includes wildcards under it).
func allowedHost(h string) string {
	return `(` + h + ` in variables.claimed || (variables.domain != '' && (` + h + ` == variables.domain || ` + h + `.endsWith('.' + variables.domain))))`
}

// hostVariables are the namespace's claimed hosts and its own domain.
func hostVariables() []*admissionv1ac.VariableApplyConfiguration {
	return []*admissionv1ac.VariableApplyConfiguration{
		variable("ns", nsAnnotations),
		variable("claimed", cel(`{hosts} in variables.ns && variables.ns[{hosts}] != '' ? variables.ns[{hosts}].split(',') : []`)),
		variable("domain", cel(`{domain} in variables.ns ? variables.ns[{domain}] : ''`)),
	}
}

func ingressHostsPolicy() *admissionv1ac.ValidatingAdmissionPolicySpecApplyConfiguration {
	return admissionv1ac.ValidatingAdmissionPolicySpec().
		WithMatchConstraints(admissionv1ac.MatchResources().WithResourceRules(
			rules(createUpdate, "networking.k8s.io", "v1", "ingresses"),
		)).
		WithVariables(hostVariables()...).
		WithValidations(
			check(`!has(object.spec.defaultBackend) && has(object.spec.rules) && size(object.spec.rules) > 0 &&
				object.spec.rules.all(r, has(r.host) && `+allowedHost("r.host")+`) &&
				(!has(object.spec.tls) || object.spec.tls.all(t, !has(t.hosts) || t.hosts.all(h, `+allowedHost("h")+`)))`,
				"every Ingress host must be claimed by this namespace (or lie under its own domain), and catch-all rules are not allowed"),
		)
}

func routeHostsPolicy() *admissionv1ac.ValidatingAdmissionPolicySpecApplyConfiguration {
	return admissionv1ac.ValidatingAdmissionPolicySpec().
		WithMatchConstraints(admissionv1ac.MatchResources().WithResourceRules(
			rules(createUpdate, "gateway.networking.k8s.io", "*", "httproutes"),
		)).
		WithVariables(hostVariables()...).
		WithValidations(
			check(`has(object.spec.hostnames) && size(object.spec.hostnames) > 0 &&
				object.spec.hostnames.all(h, `+allowedHost("h")+`)`,
				"every HTTPRoute hostname must be claimed by this namespace (or lie under its own domain)"),
		)
}

func protectPolicy(cfg Config) *admissionv1ac.ValidatingAdmissionPolicySpecApplyConfiguration {
	ops := []admissionv1.OperationType{admissionv1.Create, admissionv1.Update, admissionv1.Delete}
	tenant := fmt.Sprintf(`request.userInfo.username.startsWith('system:serviceaccount:%s:') ||
		request.userInfo.username.startsWith('system:serviceaccount:' + request.namespace + ':')`, cfg.UsersNamespace)
	managed := func(o string) string {
		return cel(o + ` != null && has(` + o + `.metadata.labels) && {managedBy} in ` + o + `.metadata.labels && ` +
			o + `.metadata.labels[{managedBy}] == {managedByValue}`)
	}
	own := func(o string) string {
		return o + ` == null || !has(` + o + `.metadata.annotations) ? [] : ` +
			o + `.metadata.annotations.filter(k, k.startsWith('tenantplane.io/')).map(k, k + '=' + ` + o + `.metadata.annotations[k])`
	}
	return admissionv1ac.ValidatingAdmissionPolicySpec().
		WithMatchConstraints(admissionv1ac.MatchResources().WithResourceRules(
			admissionv1ac.NamedRuleWithOperations().
				WithOperations(ops...).
				WithAPIGroups("*").WithAPIVersions("*").WithResources("*").
				WithScope(admissionv1.NamespacedScope),
		)).
		WithMatchConditions(admissionv1ac.MatchCondition().WithName("tenant").WithExpression(tenant)).
		WithVariables(
			variable("newOwn", own("object")),
			variable("oldOwn", own("oldObject")),
		).
		WithValidations(
			check(`!(`+managed("object")+`) && !(`+managed("oldObject")+`)`,
				"this object is managed by the platform"),
			check(`request.operation == 'DELETE' || (size(variables.newOwn) == size(variables.oldOwn) &&
				variables.newOwn.all(a, a in variables.oldOwn))`,
				"tenantplane.io/ annotations are set by the platform only"),
		)
}
