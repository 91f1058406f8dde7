package testenv

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
)

const (
	// frontProxyClientName is the common name of the client certificate
	// kube-apiserver proxies aggregated requests with; the only name that
	// metrics-server accepts request headers from.
	frontProxyClientName = "front-proxy-client"
	// resourceMetricsPathAnnotation tells metrics-server (v0.7 and later)
	// the path of a Node's resource metrics on its kubelet endpoint; kwok
	// serves every fake Node's on one port, under its own path.
	resourceMetricsPathAnnotation = "metrics.k8s.io/resource-metrics-path"
	// metricsServiceName and metricsServiceNamespace name the Service that
	// the metrics.k8s.io APIService points at, as in metrics-server's own
	// manifests.
	metricsServiceName      = "metrics-server"
	metricsServiceNamespace = metav1.NamespaceSystem
	// metricsResolution is how often metrics-server scrapes kwok: its
	// minimum. A pod's usage is served after two scrapes.
	metricsResolution = 10 * time.Second

	// UsageCPUAnnotation, followed by a container's name, is the Pod
	// annotation whose quantity (e.g. "250m") kwok reports as that
	// container's CPU usage, and metrics.k8s.io serves; see SetUsage.
	UsageCPUAnnotation = "usage.testenv.tenantplane.io/cpu."
	// UsageMemoryAnnotation, followed by a container's name, is the Pod
	// annotation whose quantity (e.g. "64Mi") kwok reports as that
	// container's memory working set.
	UsageMemoryAnnotation = "usage.testenv.tenantplane.io/memory."
)

// kwokUsage is the ClusterResourceUsage that kwok reports container usage
// from: each container's CPU and memory from its own annotation on the
// Pod, and none where there is no annotation (metrics-server then leaves
// the Pod out, as it does for a Pod that a kubelet has no stats of).
const kwokUsage = `apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterResourceUsage
metadata:
  name: usage-from-container-annotations
spec:
  usages:
  - usage:
      cpu:
        expression: |
          ("` + UsageCPUAnnotation + `" + container.name) in pod.metadata.annotations
          ? Quantity(pod.metadata.annotations["` + UsageCPUAnnotation + `" + container.name])
          : Quantity("0")
      memory:
        expression: |
          ("` + UsageMemoryAnnotation + `" + container.name) in pod.metadata.annotations
          ? Quantity(pod.metadata.annotations["` + UsageMemoryAnnotation + `" + container.name])
          : Quantity("0")
`

// SetUsage sets the annotations that make kwok report cpu and memory
// (quantities such as "250m" and "64Mi") as the usage of the named
// container of pod, before the Pod is created. metrics.k8s.io serves it
// once metrics-server has scraped twice (about 20 seconds).
func SetUsage(pod *corev1.Pod, container, cpu, memory string) {
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[UsageCPUAnnotation+container] = cpu
	pod.Annotations[UsageMemoryAnnotation+container] = memory
}

// writeAggregationPKI writes what the aggregation layer needs: a front
// proxy CA and kube-apiserver's client certificate from it, and serving
// certificates (from the cluster CA) for kwok's kubelet endpoint and for
// metrics-server.
func (p *kubePKI) writeAggregationPKI(dir string) error {
	frontCA, err := newCA()
	if err != nil {
		return err
	}
	p.frontProxyCAPath = filepath.Join(dir, "front-proxy-ca.crt")
	if err := os.WriteFile(p.frontProxyCAPath, frontCA.certPEM, 0o600); err != nil {
		return fmt.Errorf("write front proxy ca certificate: %w", err)
	}
	proxy, err := frontCA.client(frontProxyClientName)
	if err != nil {
		return err
	}
	if p.proxyCert, p.proxyKey, err = proxy.write(dir, "front-proxy-client"); err != nil {
		return err
	}
	loopback := []net.IP{net.IPv4(127, 0, 0, 1)}
	kwok, err := p.ca.serving(loopback, []string{"localhost"})
	if err != nil {
		return err
	}
	if p.kwokServing, p.kwokServingKey, err = kwok.write(dir, "kwok-serving"); err != nil {
		return err
	}
	// kube-apiserver checks the name of the Service it reaches
	// metrics-server through.
	svc := metricsServiceName + "." + metricsServiceNamespace + ".svc"
	ms, err := p.ca.serving(loopback, []string{svc, svc + ".cluster.local", "localhost"})
	if err != nil {
		return err
	}
	if p.metricsServing, p.metricsServingKey, err = ms.write(dir, "metrics-server"); err != nil {
		return err
	}
	return nil
}

// kwokMetricConfigs returns the kwok configurations that serve kubelet
// resource metrics: the Metric that tools/install.sh copied from kwok's
// module, and kwokUsage, written to the cluster's folder.
func (c *KubeCluster) kwokMetricConfigs() ([]string, error) {
	metric := filepath.Join(filepath.Dir(ToolPath("kwok", KwokVersion)), "metrics", "metrics-resource.yaml")
	if _, err := os.Stat(metric); err != nil {
		return nil, fmt.Errorf("no kwok metric configuration (run tools/install.sh kwok): %w", err)
	}
	usage := filepath.Join(c.dir, "kwok-usage.yaml")
	if err := os.WriteFile(usage, []byte(kwokUsage), 0o600); err != nil {
		return nil, fmt.Errorf("write kwok usage configuration: %w", err)
	}
	return []string{metric, usage}, nil
}

// EnableMetrics enables Pods (EnablePods), starts metrics-server and
// registers it as the metrics.k8s.io/v1beta1 APIService, unless that is
// done; it returns when kube-apiserver reports the APIService available.
// metrics-server scrapes kwok's emulated kubelet resource metrics every
// 10 seconds, so a Pod's usage (SetUsage) is served about 20 seconds after
// it runs, with CPU as the rate between the last two scrapes.
func (c *KubeCluster) EnableMetrics(ctx context.Context) error {
	if err := c.EnablePods(ctx); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return errors.New("enable metrics: the control plane is stopped")
	}
	if c.metrics {
		return nil
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, startTimeout)
		defer cancel()
	}
	if err := checkInstalled("metrics-server"); err != nil {
		return err
	}
	if err := c.enableMetrics(ctx); err != nil {
		return fmt.Errorf("enable metrics: %w", err)
	}
	c.metrics = true
	return nil
}

func (c *KubeCluster) enableMetrics(ctx context.Context) (err error) {
	pki := c.pki
	defer c.undoStarts(len(c.procs), &err)
	kubeconfig := filepath.Join(c.dir, "metrics-server.kubeconfig")
	if err := writeKubeconfig(kubeconfig, c.config.Host, c.config.CAData, pki.metricsServer); err != nil {
		return err
	}
	ports, err := freePorts(1)
	if err != nil {
		return err
	}
	port := ports[0]
	ms, err := c.runLocked("metrics-server", ToolPath("metrics-server", MetricsServerVersion), []string{
		"--bind-address=127.0.0.1",
		"--secure-port=" + itoa(port),
		"--tls-cert-file=" + pki.metricsServing,
		"--tls-private-key-file=" + pki.metricsServingKey,
		"--kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig,
		"--authorization-kubeconfig=" + kubeconfig,
		// kwok's kubelet endpoint: the Node's InternalIP (127.0.0.1),
		// the port in its status, a certificate of the cluster's CA.
		"--kubelet-preferred-address-types=InternalIP",
		"--kubelet-use-node-status-port",
		"--kubelet-certificate-authority=" + pki.caPath,
		"--metric-resolution=" + metricsResolution.String(),
		"--kubelet-request-timeout=5s",
		"--profiling=false",
	}, nil)
	if err != nil {
		return err
	}
	if err := c.registerMetricsAPI(ctx, port); err != nil {
		return err
	}
	return poll(ctx, "metrics.k8s.io to be available", 100*time.Millisecond, []*process{ms}, func(ctx context.Context) (bool, error) {
		_, err := c.client.Discovery().ServerResourcesForGroupVersion("metrics.k8s.io/v1beta1")
		return err == nil, err
	})
}

// registerMetricsAPI creates the Service and the APIService through which
// kube-apiserver serves metrics.k8s.io from metrics-server on loopback:
// an ExternalName Service, because no Endpoints can name 127.0.0.1.
func (c *KubeCluster) registerMetricsAPI(ctx context.Context, port int) error {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: metricsServiceName, Namespace: metricsServiceNamespace},
		Spec: corev1.ServiceSpec{
			Type:         corev1.ServiceTypeExternalName,
			ExternalName: "127.0.0.1",
			Ports:        []corev1.ServicePort{{Name: "https", Port: int32(port), TargetPort: intstr.FromInt32(int32(port))}},
		},
	}
	if _, err := c.client.CoreV1().Services(svc.Namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create service %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	dyn, err := dynamic.NewForConfig(c.config)
	if err != nil {
		return fmt.Errorf("create dynamic client: %w", err)
	}
	apiService := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiregistration.k8s.io/v1",
		"kind":       "APIService",
		"metadata":   map[string]any{"name": "v1beta1.metrics.k8s.io"},
		"spec": map[string]any{
			"group":                "metrics.k8s.io",
			"version":              "v1beta1",
			"groupPriorityMinimum": int64(100),
			"versionPriority":      int64(100),
			"caBundle":             base64.StdEncoding.EncodeToString(c.pki.ca.certPEM),
			"service": map[string]any{
				"namespace": metricsServiceNamespace,
				"name":      metricsServiceName,
				"port":      int64(port),
			},
		},
	}}
	gvr := schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}
	if _, err := dyn.Resource(gvr).Create(ctx, apiService, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create apiservice v1beta1.metrics.k8s.io: %w", err)
	}
	return nil
}

// KubeWithMetrics returns the shared control plane of KubeWithPods with
// metrics-server serving metrics.k8s.io from the usage kwok reports for
// each container (SetUsage).
func KubeWithMetrics(t testing.TB) *KubeCluster {
	t.Helper()
	c := KubeWithPods(t)
	shared.metricsOnce.Do(func() {
		shared.metricsErr = c.EnableMetrics(context.Background())
	})
	if shared.metricsErr != nil {
		peerFailed(t, "kubernetes control plane with metrics-server", "tools", shared.metricsErr)
	}
	return c
}
