package isolation_test

import (
	"context"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/isolation"
)

// goodPod is a pod that a free-plan tenant may run: restricted Pod
// Security, the plan's RuntimeClass and an egress bandwidth annotation.
func goodPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name},
			Annotations: map[string]string{isolation.AnnotationEgressBandwidth: "10M"}},
		Spec: goodPodSpec(),
	}
}

func goodPodSpec() corev1.PodSpec {
	no, yes := false, true
	rc := "kata-fc"
	return corev1.PodSpec{
		// Quick to stop, so tests that delete pods need not wait for the
		// default 30 seconds.
		TerminationGracePeriodSeconds: ptrTo(int64(1)),
		RuntimeClassName:              &rc,
		SecurityContext: &corev1.PodSecurityContext{
			RunAsNonRoot:   &yes,
			RunAsUser:      ptrTo(int64(1000)),
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		Containers: []corev1.Container{{
			Name: "app", Image: "registry.example.test/app:1",
			SecurityContext: &corev1.SecurityContext{
				AllowPrivilegeEscalation: &no,
				Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			},
		}},
	}
}

func ptrTo[T any](v T) *T { return &v }

func goodDeployment(name string, replicas int32) *appsv1.Deployment {
	p := goodPod(name)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: p.Labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: p.ObjectMeta, Spec: p.Spec},
		},
	}
}

func pvc(name, class, size string) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			StorageClassName: &class,
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}},
		},
	}
}

func ingress(name string, hosts ...string) *networkingv1.Ingress {
	ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: name}}
	prefix := networkingv1.PathTypePrefix
	for _, h := range hosts {
		ing.Spec.Rules = append(ing.Spec.Rules, networkingv1.IngressRule{
			Host: h,
			IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
				Paths: []networkingv1.HTTPIngressPath{{Path: "/", PathType: &prefix, Backend: networkingv1.IngressBackend{
					Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}},
				}}},
			}},
		})
	}
	return ing
}

// TestMultiTenancy acts with a tenant's own issued kubeconfig and shows that
// each way out of its namespace is refused, by the mechanism meant to
// refuse it, and that the tenant can still do its job.
func TestMultiTenancy(t *testing.T) {
	t.Parallel()
	e := setup(t, setupOptions{pods: true})
	alice, aliceNS := e.signUp()
	bob, bobNS := e.signUp()
	e.applied(aliceNS)
	e.applied(bobNS)
	ctx := context.Background()

	// Bob holds a host; Alice holds one of her own.
	_, err := e.hosts.Claim(as(bob.ID), bobNS.ID, "shop.bob.example")
	require.NoError(t, err)
	_, err = e.hosts.Claim(as(alice.ID), aliceNS.ID, "www.alice.example")
	require.NoError(t, err)
	_, err = e.hosts.Claim(as(alice.ID), aliceNS.ID, "shop.bob.example")
	require.Equal(t, errcode.Conflict, errcode.Of(err), "a host claimed by another tenant cannot be claimed")
	e.settled()
	e.eventually(10*time.Second, "host claims on the namespace", func(ctx context.Context) (bool, error) {
		ns, err := e.kube.CoreV1().Namespaces().Get(ctx, aliceNS.Name, metav1.GetOptions{})
		return err == nil && ns.Annotations[isolation.AnnotationHosts] == "www.alice.example", err
	})

	c := e.tenantClient(alice.ID, aliceNS)
	ns := aliceNS.Name
	pods := func(mut func(*corev1.Pod)) func(context.Context, kubernetes.Interface) error {
		return func(ctx context.Context, c kubernetes.Interface) error {
			p := goodPod("p")
			mut(p)
			_, err := c.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		}
	}
	ctr := func(p *corev1.Pod) *corev1.Container { return &p.Spec.Containers[0] }
	svc := func(mut func(*corev1.Service)) func(context.Context, kubernetes.Interface) error {
		return func(ctx context.Context, c kubernetes.Interface) error {
			s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "s"}, Spec: corev1.ServiceSpec{
				Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Port: 80}}}}
			mut(s)
			_, err := c.CoreV1().Services(ns).Create(ctx, s, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		}
	}
	rbacDenied := `cannot (list|get|create|update|patch|delete) resource`
	refused := []struct {
		name string
		do   func(context.Context, kubernetes.Interface) error
		// why matches the refusal's message, naming what refused it.
		why string
	}{
		{"list nodes", func(ctx context.Context, c kubernetes.Interface) error {
			_, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			return err
		}, rbacDenied},
		{"list namespaces", func(ctx context.Context, c kubernetes.Interface) error {
			_, err := c.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
			return err
		}, rbacDenied},
		{"list cluster roles", func(ctx context.Context, c kubernetes.Interface) error {
			_, err := c.RbacV1().ClusterRoles().List(ctx, metav1.ListOptions{})
			return err
		}, rbacDenied},
		{"privileged container", pods(func(p *corev1.Pod) {
			ctr(p).SecurityContext.Privileged = ptrTo(true)
			ctr(p).SecurityContext.AllowPrivilegeEscalation = nil
		}), "PodSecurity"},
		{"added capability", pods(func(p *corev1.Pod) {
			ctr(p).SecurityContext.Capabilities.Add = []corev1.Capability{"NET_ADMIN"}
		}), "PodSecurity"},
		{"privilege escalation", pods(func(p *corev1.Pod) { ctr(p).SecurityContext.AllowPrivilegeEscalation = ptrTo(true) }), "PodSecurity"},
		{"running as root", pods(func(p *corev1.Pod) {
			p.Spec.SecurityContext.RunAsNonRoot = ptrTo(false)
			p.Spec.SecurityContext.RunAsUser = ptrTo(int64(0))
		}), "PodSecurity"},
		{"host pid", pods(func(p *corev1.Pod) { p.Spec.HostPID = true }), "PodSecurity"},
		{"host ipc", pods(func(p *corev1.Pod) { p.Spec.HostIPC = true }), "PodSecurity"},
		{"host network", pods(func(p *corev1.Pod) { p.Spec.HostNetwork = true }), "PodSecurity"},
		{"host port", pods(func(p *corev1.Pod) { ctr(p).Ports = []corev1.ContainerPort{{ContainerPort: 80, HostPort: 80}} }), "PodSecurity"},
		{"hostPath volume", pods(func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "root", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}}}
		}), "PodSecurity"},
		{"no runtime class", pods(func(p *corev1.Pod) { p.Spec.RuntimeClassName = nil }), "runtimeClassName"},
		{"runtime class the plan does not allow", pods(func(p *corev1.Pod) { p.Spec.RuntimeClassName = ptrTo("runc") }), "runtimeClassName"},
		{"gpu runtime class without gpus", pods(func(p *corev1.Pod) { p.Spec.RuntimeClassName = ptrTo("kata-gpu") }), "runtimeClassName"},
		{"no egress bandwidth annotation", pods(func(p *corev1.Pod) { p.Annotations = nil }), "egress-bandwidth"},
		{"egress bandwidth above the plan", pods(func(p *corev1.Pod) { p.Annotations[isolation.AnnotationEgressBandwidth] = "1G" }), "egress-bandwidth"},
		{"ephemeral volume of another storage class", pods(func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{
				VolumeClaimTemplate: &corev1.PersistentVolumeClaimTemplate{Spec: pvc("x", "local-path", "1Gi").Spec}}}}}
		}), "storage class"},
		{"platform annotation on a workload", func(ctx context.Context, c kubernetes.Interface) error {
			d := goodDeployment("sneaky", 1)
			d.Annotations = map[string]string{isolation.AnnotationSavedReplicas: "50"}
			_, err := c.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		}, "tenantplane.io/ annotations"},
		{"deployment whose pods break the plan", func(ctx context.Context, c kubernetes.Interface) error {
			d := goodDeployment("bad", 1)
			d.Spec.Template.Spec.RuntimeClassName = ptrTo("runc")
			_, err := c.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		}, "runtimeClassName"},
		{"NodePort service", svc(func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeNodePort }), "ClusterIP|nodeports"},
		{"LoadBalancer service", svc(func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeLoadBalancer }), "ClusterIP|loadbalancers"},
		{"externalIPs", svc(func(s *corev1.Service) { s.Spec.ExternalIPs = []string{"203.0.113.9"} }), "externalIPs"},
		{"ExternalName service", svc(func(s *corev1.Service) {
			s.Spec.Type, s.Spec.ExternalName, s.Spec.Selector = corev1.ServiceTypeExternalName, "web.other.svc.cluster.local", nil
		}), "ClusterIP"},
		{"change its ResourceQuota", func(ctx context.Context, c kubernetes.Interface) error {
			_, err := c.CoreV1().ResourceQuotas(ns).Patch(ctx, isolation.ResourceQuotaName, "application/merge-patch+json",
				[]byte(`{"spec":{"hard":{"pods":"1000"}}}`), metav1.PatchOptions{})
			return err
		}, rbacDenied},
		{"delete its ResourceQuota", func(ctx context.Context, c kubernetes.Interface) error {
			return c.CoreV1().ResourceQuotas(ns).Delete(ctx, isolation.ResourceQuotaName, metav1.DeleteOptions{})
		}, rbacDenied},
		{"change its LimitRange", func(ctx context.Context, c kubernetes.Interface) error {
			_, err := c.CoreV1().LimitRanges(ns).Patch(ctx, isolation.LimitRangeName, "application/merge-patch+json",
				[]byte(`{"metadata":{"labels":{"x":"y"}}}`), metav1.PatchOptions{})
			return err
		}, rbacDenied},
		{"delete its LimitRange", func(ctx context.Context, c kubernetes.Interface) error {
			return c.CoreV1().LimitRanges(ns).Delete(ctx, isolation.LimitRangeName, metav1.DeleteOptions{})
		}, rbacDenied},
		{"delete its NetworkPolicy", func(ctx context.Context, c kubernetes.Interface) error {
			return c.NetworkingV1().NetworkPolicies(ns).Delete(ctx, isolation.NetworkPolicyEgressName, metav1.DeleteOptions{})
		}, rbacDenied},
		{"add a NetworkPolicy that opens egress", func(ctx context.Context, c kubernetes.Interface) error {
			_, err := c.NetworkingV1().NetworkPolicies(ns).Create(ctx, &networkingv1.NetworkPolicy{
				ObjectMeta: metav1.ObjectMeta{Name: "open"},
				Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
					Egress: []networkingv1.NetworkPolicyEgressRule{{}}},
			}, metav1.CreateOptions{})
			return err
		}, rbacDenied},
		{"change its NetworkPolicy", func(ctx context.Context, c kubernetes.Interface) error {
			_, err := c.NetworkingV1().NetworkPolicies(ns).Patch(ctx, isolation.NetworkPolicyIngressName, "application/merge-patch+json",
				[]byte(`{"spec":{"ingress":[{}]}}`), metav1.PatchOptions{})
			return err
		}, rbacDenied},
		{"change its RoleBinding", func(ctx context.Context, c kubernetes.Interface) error {
			_, err := c.RbacV1().RoleBindings(ns).Patch(ctx, isolation.RoleBindingName(alice.ID, "owner"), "application/merge-patch+json",
				[]byte(`{"subjects":[{"kind":"Group","name":"system:authenticated","apiGroup":"rbac.authorization.k8s.io"}]}`), metav1.PatchOptions{})
			return err
		}, rbacDenied},
		{"delete its RoleBinding", func(ctx context.Context, c kubernetes.Interface) error {
			return c.RbacV1().RoleBindings(ns).Delete(ctx, isolation.RoleBindingName(alice.ID, "owner"), metav1.DeleteOptions{})
		}, rbacDenied},
		{"bind itself to a ClusterRole", func(ctx context.Context, c kubernetes.Interface) error {
			_, err := c.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: "escalate"},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
				Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: isolation.ServiceAccountName(alice.ID), Namespace: e.cfg.UsersNamespace}},
			}, metav1.CreateOptions{})
			return err
		}, rbacDenied},
		{"bind itself cluster-wide", func(ctx context.Context, c kubernetes.Interface) error {
			_, err := c.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: "escalate-" + ns},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
				Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: isolation.ServiceAccountName(alice.ID), Namespace: e.cfg.UsersNamespace}},
			}, metav1.CreateOptions{})
			return err
		}, rbacDenied},
		{"read another tenant's Secrets", func(ctx context.Context, c kubernetes.Interface) error {
			_, err := c.CoreV1().Secrets(bobNS.Name).List(ctx, metav1.ListOptions{})
			return err
		}, rbacDenied},
		{"read another tenant's pods", func(ctx context.Context, c kubernetes.Interface) error {
			_, err := c.CoreV1().Pods(bobNS.Name).List(ctx, metav1.ListOptions{})
			return err
		}, rbacDenied},
		{"create in another tenant's namespace", func(ctx context.Context, c kubernetes.Interface) error {
			_, err := c.CoreV1().ConfigMaps(bobNS.Name).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
			return err
		}, rbacDenied},
		{"read its own account in the platform namespace", func(ctx context.Context, c kubernetes.Interface) error {
			_, err := c.CoreV1().ServiceAccounts(e.cfg.UsersNamespace).Get(ctx, isolation.ServiceAccountName(alice.ID), metav1.GetOptions{})
			return err
		}, rbacDenied},
		{"storage class the plan does not allow", func(ctx context.Context, c kubernetes.Interface) error {
			_, err := c.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc("data", "local-path", "1Gi"), metav1.CreateOptions{})
			return err
		}, "storage class"},
		{"PVC above the plan's largest", func(ctx context.Context, c kubernetes.Interface) error {
			_, err := c.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc("big", "openebs-lvm", "15Gi"), metav1.CreateOptions{})
			return err
		}, "maximum storage usage per PersistentVolumeClaim"},
		{"Ingress with another tenant's host", func(ctx context.Context, c kubernetes.Interface) error {
			_, err := c.NetworkingV1().Ingresses(ns).Create(ctx, ingress("steal", "shop.bob.example"), metav1.CreateOptions{})
			return err
		}, "claimed by this namespace"},
		{"Ingress under another tenant's domain", func(ctx context.Context, c kubernetes.Interface) error {
			_, err := c.NetworkingV1().Ingresses(ns).Create(ctx, ingress("steal2", "www."+bobNS.Name+".apps.example.test"), metav1.CreateOptions{})
			return err
		}, "claimed by this namespace"},
		{"catch-all Ingress", func(ctx context.Context, c kubernetes.Interface) error {
			ing := ingress("all", "www.alice.example")
			ing.Spec.Rules[0].Host = ""
			_, err := c.NetworkingV1().Ingresses(ns).Create(ctx, ing, metav1.CreateOptions{})
			return err
		}, "catch-all"},
	}
	for _, tc := range refused {
		t.Run("refused/"+tc.name, func(t *testing.T) {
			err := tc.do(ctx, c)
			require.Error(t, err)
			require.True(t, apierrors.IsForbidden(err) || apierrors.IsInvalid(err), "want forbidden or invalid, got %v", err)
			require.Regexp(t, regexp.MustCompile(tc.why), err.Error())
		})
	}

	t.Run("allowed/its job", func(t *testing.T) {
		_, err := c.AppsV1().Deployments(ns).Create(ctx, goodDeployment("web", 2), metav1.CreateOptions{})
		require.NoError(t, err)
		_, err = c.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{})
		require.NoError(t, err)
		_, err = c.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cfg"}, Data: map[string]string{"a": "b"}}, metav1.CreateOptions{})
		require.NoError(t, err)
		_, err = c.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "pw"}, StringData: map[string]string{"pw": "x"}}, metav1.CreateOptions{})
		require.NoError(t, err)
		_, err = c.CoreV1().Secrets(ns).Get(ctx, "pw", metav1.GetOptions{})
		require.NoError(t, err)
		_, err = c.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc("data", "openebs-lvm", "5Gi"), metav1.CreateOptions{})
		require.NoError(t, err)
		_, err = c.NetworkingV1().Ingresses(ns).Create(ctx, ingress("web", "www.alice.example", "api."+ns+".apps.example.test"), metav1.CreateOptions{})
		require.NoError(t, err)
		_, err = c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		// The Deployment's pods, made by the controllers, pass the guards
		// and run.
		eventually(t, 30*time.Second, "the deployment's pods to run", func(ctx context.Context) (bool, error) {
			d, err := c.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
			return err == nil && d.Status.ReadyReplicas == 2, err
		})
		// And a bare pod of its own, which it may relabel but whose egress
		// bandwidth it may not raise past the plan.
		_, err = c.CoreV1().Pods(ns).Create(ctx, goodPod("solo"), metav1.CreateOptions{})
		require.NoError(t, err)
		_, err = c.CoreV1().Pods(ns).Patch(ctx, "solo", "application/merge-patch+json",
			[]byte(`{"metadata":{"labels":{"tier":"web"}}}`), metav1.PatchOptions{})
		require.NoError(t, err)
		_, err = c.CoreV1().Pods(ns).Patch(ctx, "solo", "application/merge-patch+json",
			[]byte(`{"metadata":{"annotations":{"kubernetes.io/egress-bandwidth":"10G"}}}`), metav1.PatchOptions{})
		require.True(t, apierrors.IsForbidden(err), "raising a pod's egress bandwidth: %v", err)
		_, err = c.CoreV1().Pods(ns).Patch(ctx, "solo", "application/merge-patch+json",
			[]byte(`{"metadata":{"annotations":{"kubernetes.io/egress-bandwidth":null}}}`), metav1.PatchOptions{})
		require.True(t, apierrors.IsForbidden(err), "removing a pod's egress bandwidth: %v", err)
	})

	t.Run("refused/beyond its quota", func(t *testing.T) {
		// Each pod gets the plan's default limit of 500m CPU; the quota's
		// 4 CPUs of limits run out at 8 pods, before the 25 asked for.
		_, err := c.AppsV1().Deployments(ns).Create(ctx, goodDeployment("many", 25), metav1.CreateOptions{})
		require.NoError(t, err)
		eventually(t, 30*time.Second, "the quota to stop the deployment", func(ctx context.Context) (bool, error) {
			q, err := c.CoreV1().ResourceQuotas(ns).Get(ctx, isolation.ResourceQuotaName, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			used, hard := q.Status.Used[corev1.ResourceLimitsCPU], q.Status.Hard[corev1.ResourceLimitsCPU]
			return used.Cmp(hard) == 0, nil
		})
		_, err = c.CoreV1().Pods(ns).Create(ctx, goodPod("one-more"), metav1.CreateOptions{})
		require.Error(t, err)
		require.Contains(t, err.Error(), "exceeded quota")
	})
}

// TestGPUPlan shows the GPU exception: a plan with GPUs allows its GPU
// RuntimeClass beside the usual one, and its quota counts GPUs.
func TestGPUPlan(t *testing.T) {
	t.Parallel()
	e := setup(t, setupOptions{tweak: func(c *isolation.Config) {
		c.Plans["free"] = c.Plans["pro"] // every org starts on "free": here it has GPUs
	}})
	u, ns := e.signUp()
	e.applied(ns)
	ctx := context.Background()
	c := e.tenantClient(u.ID, ns)
	for rc, ok := range map[string]bool{"kata-gpu": true, "kata-fc": true, "runc": false} {
		p := goodPod("gpu")
		p.Spec.RuntimeClassName = ptrTo(rc)
		_, err := c.CoreV1().Pods(ns.Name).Create(ctx, p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if ok {
			require.NoError(t, err, rc)
		} else {
			require.True(t, apierrors.IsForbidden(err), "%s: %v", rc, err)
		}
	}
	q, err := e.kube.CoreV1().ResourceQuotas(ns.Name).Get(ctx, isolation.ResourceQuotaName, metav1.GetOptions{})
	require.NoError(t, err)
	gpus := q.Spec.Hard["requests.nvidia.com/gpu"]
	require.Equal(t, int64(2), gpus.Value())
}
