package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// kubeControllers are the kube-controller-manager controllers that run:
// those that quota status, namespace deletion, default ServiceAccounts,
// garbage collection, workloads, fake Nodes, storage and admission policies
// need. The names are those of kube-controller-manager v1.37 (see its
// --controllers flag).
var kubeControllers = []string{
	"resourcequota-controller",
	"namespace-controller",
	"serviceaccount-controller",
	"serviceaccount-token-controller",
	"root-ca-certificate-publisher-controller",
	"clusterrole-aggregation-controller",
	"garbage-collector-controller",
	"deployment-controller",
	"replicaset-controller",
	"statefulset-controller",
	"daemonset-controller",
	"job-controller",
	"cronjob-controller",
	"ttl-after-finished-controller",
	"disruption-controller",
	"endpoints-controller",
	"endpointslice-controller",
	"node-lifecycle-controller",
	"taint-eviction-controller",
	"pod-garbage-collector-controller",
	"persistentvolume-binder-controller",
	"persistentvolumeclaim-protection-controller",
	"persistentvolume-protection-controller",
	"validatingadmissionpolicy-status-controller",
}

// kubeAdmissionPlugins are enabled in kube-apiserver on top of its defaults.
var kubeAdmissionPlugins = []string{
	"NamespaceLifecycle",
	"LimitRanger",
	"ServiceAccount",
	"PodSecurity",
	"ResourceQuota",
	"ValidatingAdmissionPolicy",
	"MutatingAdmissionPolicy",
}

const (
	// serviceAccountIssuer is the issuer of service account tokens.
	serviceAccountIssuer = "https://kubernetes.default.svc.cluster.local"
	// kwokNodeAnnotation marks the Nodes that kwok manages.
	kwokNodeAnnotation = "kwok.x-k8s.io/node"
	// startTimeout bounds StartKube when ctx has no deadline. A warm start
	// takes seconds; the rest is room for a busy machine.
	startTimeout = 2 * time.Minute
	// stopGrace is how long Stop lets a process end on SIGTERM before it
	// sends SIGKILL.
	stopGrace = 250 * time.Millisecond
)

// KubeOptions says what StartKube runs besides etcd, kube-apiserver and
// kube-controller-manager.
type KubeOptions struct {
	// Pods also starts kube-scheduler and kwok with fake Nodes, so that Pods
	// are scheduled and reach Running without a container runtime.
	Pods bool
	// Nodes is how many fake Nodes there are when Pods is set; 0 means 1.
	Nodes int
	// Metrics also starts metrics-server behind the aggregation layer, so
	// that metrics.k8s.io serves the usage kwok reports for Pods (see
	// EnableMetrics); it implies Pods.
	Metrics bool
	// Port is kube-apiserver's secure port on 127.0.0.1; 0 picks a free one.
	Port int
}

// KubeCluster is a running Kubernetes control plane on loopback: etcd,
// kube-apiserver and kube-controller-manager, and, once Pods are enabled,
// kube-scheduler and kwok with fake Nodes. Its files (certificates, etcd's
// data, kubeconfigs and a log per process) are in a temporary folder that
// Stop removes. Its methods are safe for concurrent use.
type KubeCluster struct {
	dir        string
	kubeconfig string
	config     *rest.Config
	client     *kubernetes.Clientset
	nodeCount  int
	pki        *kubePKI

	mu       sync.Mutex
	procs    []*process // in start order
	nodes    []string   // names of the fake Nodes, once Pods are enabled
	kwokPort int        // kwok's kubelet endpoint, once Pods are enabled
	metrics  bool       // metrics.k8s.io is served
	stopped  bool
}

// StartKube starts a control plane and returns when kube-apiserver is ready
// and the controllers run (the default ServiceAccount of the default
// namespace exists). The programs come from tools/install.sh. On error
// nothing is left running, and the error carries the tail of the log of the
// process that failed.
func StartKube(ctx context.Context, opts KubeOptions) (*KubeCluster, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, startTimeout)
		defer cancel()
	}
	names := []string{"etcd", "kube-apiserver", "kube-controller-manager"}
	if opts.Pods || opts.Metrics {
		names = append(names, "kube-scheduler", "kwok")
	}
	if opts.Metrics {
		names = append(names, "metrics-server")
	}
	if err := checkInstalled(names...); err != nil {
		return nil, err
	}
	dir, err := makePeerDir("tenantplane-kube-")
	if err != nil {
		return nil, fmt.Errorf("start kubernetes control plane: %w", err)
	}
	c := &KubeCluster{dir: dir, nodeCount: max(opts.Nodes, 1)}
	if err := c.start(ctx, opts); err != nil {
		c.Stop()
		return nil, fmt.Errorf("start kubernetes control plane: %w", err)
	}
	return c, nil
}

func (c *KubeCluster) start(ctx context.Context, opts KubeOptions) error {
	pki, err := c.writePKI()
	if err != nil {
		return err
	}
	c.pki = pki
	for attempt := 1; ; attempt++ {
		err := c.startPlane(ctx, opts.Port)
		if err == nil {
			break
		}
		// A free port that another program took before ours bound it is
		// worth another try with other ports; nothing else is, and neither
		// is a port that the caller chose.
		if attempt == 3 || opts.Port != 0 || !c.portTaken() {
			return err
		}
		if err := c.resetPlane(attempt); err != nil {
			return err
		}
	}
	if opts.Metrics {
		return c.EnableMetrics(ctx)
	}
	if opts.Pods {
		return c.EnablePods(ctx)
	}
	return nil
}

// kubePKI is what the control plane's certificates are made of.
type kubePKI struct {
	ca                   *certAuthority
	caPath               string
	servingCert, servKey string
	saKey, saPub         string
	admin, controller    keyPair
	scheduler, kwok      keyPair
	// The aggregation layer: kube-apiserver proxies metrics.k8s.io to
	// metrics-server with the front proxy's client certificate, which
	// metrics-server trusts through the front proxy CA. kwok's kubelet
	// endpoint and metrics-server serve certificates of the cluster CA.
	frontProxyCAPath                  string
	proxyCert, proxyKey               string
	kwokServing, kwokServingKey       string
	metricsServing, metricsServingKey string
	metricsServer                     keyPair
}

func (c *KubeCluster) writePKI() (*kubePKI, error) {
	pkiDir := filepath.Join(c.dir, "pki")
	if err := os.Mkdir(pkiDir, 0o700); err != nil {
		return nil, fmt.Errorf("create pki folder: %w", err)
	}
	ca, err := newCA()
	if err != nil {
		return nil, err
	}
	p := &kubePKI{ca: ca, caPath: filepath.Join(pkiDir, "ca.crt")}
	if err := os.WriteFile(p.caPath, ca.certPEM, 0o600); err != nil {
		return nil, fmt.Errorf("write ca certificate: %w", err)
	}
	serving, err := ca.serving(
		[]net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback, net.IPv4(10, 96, 0, 1)},
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
	)
	if err != nil {
		return nil, err
	}
	if p.servingCert, p.servKey, err = serving.write(pkiDir, "apiserver"); err != nil {
		return nil, err
	}
	private, public, err := newSigningKey()
	if err != nil {
		return nil, err
	}
	p.saKey, p.saPub = filepath.Join(pkiDir, "sa.key"), filepath.Join(pkiDir, "sa.pub")
	if err := os.WriteFile(p.saKey, private, 0o600); err != nil {
		return nil, fmt.Errorf("write service account key: %w", err)
	}
	if err := os.WriteFile(p.saPub, public, 0o600); err != nil {
		return nil, fmt.Errorf("write service account public key: %w", err)
	}
	// kube-scheduler has the identity that the bootstrap RBAC policy grants
	// what it needs; the others are in system:masters.
	for _, id := range []struct {
		kp     *keyPair
		user   string
		groups []string
	}{
		{&p.admin, "tenantplane-admin", []string{"system:masters"}},
		{&p.controller, "system:kube-controller-manager", []string{"system:masters"}},
		{&p.scheduler, "system:kube-scheduler", nil},
		{&p.kwok, "kwok", []string{"system:masters"}},
		{&p.metricsServer, "system:metrics-server", []string{"system:masters"}},
	} {
		if *id.kp, err = ca.client(id.user, id.groups...); err != nil {
			return nil, err
		}
	}
	if err := p.writeAggregationPKI(pkiDir); err != nil {
		return nil, err
	}
	return p, nil
}

// startPlane starts etcd and kube-apiserver at once (kube-apiserver waits
// for etcd by itself), then kube-controller-manager once kube-apiserver is
// ready, and returns when the default ServiceAccount exists.
// kube-controller-manager gives up on a kube-apiserver that is not healthy
// within about 10 seconds, which a loaded machine can exceed.
func (c *KubeCluster) startPlane(ctx context.Context, port int) error {
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	if port == 0 {
		port = ports[2]
	}
	etcdClient := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	etcdPeer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	host := fmt.Sprintf("https://127.0.0.1:%d", port)
	pki := c.pki

	c.config = &rest.Config{
		Host: host,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   pki.ca.certPEM,
			CertData: pki.admin.certPEM,
			KeyData:  pki.admin.keyPEM,
		},
		// Tests share one control plane; client-side throttling would only
		// slow them down.
		QPS:   1000,
		Burst: 2000,
	}
	if c.client, err = kubernetes.NewForConfig(c.config); err != nil {
		return fmt.Errorf("create admin client: %w", err)
	}
	c.kubeconfig = filepath.Join(c.dir, "admin.kubeconfig")
	if err := writeKubeconfig(c.kubeconfig, host, pki.ca.certPEM, pki.admin); err != nil {
		return err
	}
	cmKubeconfig := filepath.Join(c.dir, "controller-manager.kubeconfig")
	if err := writeKubeconfig(cmKubeconfig, host, pki.ca.certPEM, pki.controller); err != nil {
		return err
	}

	etcd, err := c.run("etcd", ToolPath("etcd", EtcdVersion), []string{
		"--name=testenv",
		"--data-dir=" + filepath.Join(c.dir, "etcd"),
		"--listen-client-urls=" + etcdClient,
		"--advertise-client-urls=" + etcdClient,
		"--listen-peer-urls=" + etcdPeer,
		"--initial-advertise-peer-urls=" + etcdPeer,
		"--initial-cluster=testenv=" + etcdPeer,
		"--unsafe-no-fsync", // throwaway data: durability buys nothing
		"--log-level=warn",
	}, nil)
	if err != nil {
		return err
	}
	apiserver, err := c.run("kube-apiserver", ToolPath("kube-apiserver", KubeVersion), []string{
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + itoa(port),
		"--etcd-servers=" + etcdClient,
		"--tls-cert-file=" + pki.servingCert,
		"--tls-private-key-file=" + pki.servKey,
		"--client-ca-file=" + pki.caPath,
		"--service-account-issuer=" + serviceAccountIssuer,
		"--service-account-key-file=" + pki.saPub,
		"--service-account-signing-key-file=" + pki.saKey,
		"--service-cluster-ip-range=10.96.0.0/16",
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=" + strings.Join(kubeAdmissionPlugins, ","),
		"--endpoint-reconciler-type=none",
		"--allow-privileged=true",
		"--profiling=false",
		"--cert-dir=" + filepath.Join(c.dir, "pki"),
		// The aggregation layer, so that metrics.k8s.io (EnableMetrics)
		// is served through kube-apiserver as in a real cluster.
		"--requestheader-client-ca-file=" + pki.frontProxyCAPath,
		"--requestheader-allowed-names=" + frontProxyClientName,
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file=" + pki.proxyCert,
		"--proxy-client-key-file=" + pki.proxyKey,
	}, nil)
	if err != nil {
		return err
	}
	err = poll(ctx, "kube-apiserver /readyz", 50*time.Millisecond, []*process{etcd, apiserver}, func(ctx context.Context) (bool, error) {
		_, err := c.client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil, err
	})
	if err != nil {
		return err
	}
	// Its identity is in system:masters, and it runs every controller with
	// it: minting a token per controller (--use-service-account-credentials)
	// would add seconds to every start.
	cm, err := c.run("kube-controller-manager", ToolPath("kube-controller-manager", KubeVersion), []string{
		"--kubeconfig=" + cmKubeconfig,
		"--controllers=" + strings.Join(kubeControllers, ","),
		"--service-account-private-key-file=" + pki.saKey,
		"--root-ca-file=" + pki.caPath,
		"--leader-elect=false",
		"--secure-port=0",
		"--cluster-name=tenantplane-testenv",
		"--profiling=false",
	}, nil)
	if err != nil {
		return err
	}
	procs := []*process{etcd, apiserver, cm}
	return poll(ctx, "the default service account", 50*time.Millisecond, procs, func(ctx context.Context) (bool, error) {
		_, err := c.client.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, err
	})
}

// portTaken reports whether a process exited because its port was taken.
func (c *KubeCluster) portTaken() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.procs {
		if p.exited() && addrInUse(p) {
			return true
		}
	}
	return false
}

// resetPlane stops every process of a failed attempt and removes etcd's
// data, keeping the logs as *.log.<attempt>, so that the next attempt
// starts afresh.
func (c *KubeCluster) resetPlane(attempt int) error {
	c.mu.Lock()
	procs := c.procs
	c.procs = nil
	c.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].stop(0)
		_ = os.Rename(procs[i].logPath, fmt.Sprintf("%s.%d", procs[i].logPath, attempt))
	}
	if err := os.RemoveAll(filepath.Join(c.dir, "etcd")); err != nil {
		return fmt.Errorf("remove etcd data of attempt %d: %w", attempt, err)
	}
	return nil
}

// EnablePods starts kube-scheduler and kwok, and creates the fake Nodes,
// unless they already run; it returns when every fake Node is Ready. Pods
// then go Pending, Running and, for those whose containers end, Succeeded,
// through kwok's stages.
func (c *KubeCluster) EnablePods(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return errors.New("enable pods: the control plane is stopped")
	}
	if c.nodes != nil {
		return nil
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, startTimeout)
		defer cancel()
	}
	if err := checkInstalled("kube-scheduler", "kwok"); err != nil {
		return err
	}
	if err := c.enablePods(ctx); err != nil {
		return fmt.Errorf("enable pods: %w", err)
	}
	return nil
}

// undoStarts stops the processes started after the first n when *err is
// set, for an enable step that failed halfway.
func (c *KubeCluster) undoStarts(n int, err *error) {
	if *err == nil {
		return
	}
	for _, p := range c.procs[n:] {
		p.stop(0)
	}
	c.procs = c.procs[:n]
}

func (c *KubeCluster) enablePods(ctx context.Context) (err error) {
	pki := c.pki
	// On failure, stop what this started, so that a later call starts
	// afresh rather than beside it.
	defer c.undoStarts(len(c.procs), &err)
	schedConfig := filepath.Join(c.dir, "scheduler.kubeconfig")
	if err := writeKubeconfig(schedConfig, c.config.Host, c.config.CAData, pki.scheduler); err != nil {
		return err
	}
	sched, err := c.runLocked("kube-scheduler", ToolPath("kube-scheduler", KubeVersion), []string{
		"--kubeconfig=" + schedConfig,
		"--leader-elect=false",
		"--secure-port=0",
		"--profiling=false",
	}, nil)
	if err != nil {
		return err
	}

	kwokConfig := filepath.Join(c.dir, "kwok.kubeconfig")
	if err := writeKubeconfig(kwokConfig, c.config.Host, c.config.CAData, pki.kwok); err != nil {
		return err
	}
	stagesDir := filepath.Join(filepath.Dir(ToolPath("kwok", KwokVersion)), "stages")
	stages, err := filepath.Glob(filepath.Join(stagesDir, "*.yaml"))
	if err != nil {
		return fmt.Errorf("find kwok stages: %w", err)
	}
	if len(stages) == 0 {
		return fmt.Errorf("no kwok stages in %s (run tools/install.sh kwok)", stagesDir)
	}
	metricConfigs, err := c.kwokMetricConfigs()
	if err != nil {
		return err
	}
	ports, err := freePorts(1)
	if err != nil {
		return err
	}
	c.kwokPort = ports[0]
	// kwok serves every fake Node's kubelet endpoint on one port, over TLS
	// with a certificate of the cluster's CA; its resource metrics are
	// what metrics-server scrapes (see EnableMetrics).
	args := []string{
		"--kubeconfig=" + kwokConfig,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector=" + kwokNodeAnnotation + "=fake",
		"--node-lease-duration-seconds=40",
		"--cidr=10.244.0.0/16",
		"--node-ip=127.0.0.1",
		"--node-port=" + itoa(c.kwokPort),
		"--server-address=127.0.0.1:" + itoa(c.kwokPort),
		"--tls-cert-file=" + pki.kwokServing,
		"--tls-private-key-file=" + pki.kwokServingKey,
	}
	for _, s := range append(stages, metricConfigs...) {
		args = append(args, "--config="+s)
	}
	// kwok also reads ~/.kwok/kwok.yaml; a HOME of our own keeps a
	// developer's configuration out.
	kwok, err := c.runLocked("kwok", ToolPath("kwok", KwokVersion), args, []string{"HOME=" + c.dir})
	if err != nil {
		return err
	}

	var names []string
	for i := range c.nodeCount {
		name := fmt.Sprintf("kwok-node-%d", i)
		if err := c.createNode(ctx, name); err != nil {
			return err
		}
		names = append(names, name)
	}
	err = poll(ctx, "fake nodes to be ready", 50*time.Millisecond, []*process{sched, kwok}, func(ctx context.Context) (bool, error) {
		for _, name := range names {
			n, err := c.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			if !nodeReady(n) {
				return false, fmt.Errorf("node %s is not ready", name)
			}
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	c.nodes = names
	return nil
}

func (c *KubeCluster) createNode(ctx context.Context, name string) error {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:              resource.MustParse("32"),
		corev1.ResourceMemory:           resource.MustParse("256Gi"),
		corev1.ResourceEphemeralStorage: resource.MustParse("1Ti"),
		corev1.ResourcePods:             resource.MustParse("250"),
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Annotations: map[string]string{
				kwokNodeAnnotation: "fake",
				// Where metrics-server finds this Node's resource
				// metrics on kwok's shared kubelet endpoint.
				resourceMetricsPathAnnotation: "/metrics/nodes/" + name + "/metrics/resource",
			},
			Labels: map[string]string{
				"type":                   "kwok",
				"kubernetes.io/hostname": name,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
			},
		},
		Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity},
	}
	_, err := c.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create node %s: %w", name, err)
	}
	return nil
}

func nodeReady(n *corev1.Node) bool {
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Config returns a copy of the admin client configuration: a client
// certificate in system:masters.
func (c *KubeCluster) Config() *rest.Config { return rest.CopyConfig(c.config) }

// Client returns a clientset with the admin identity.
func (c *KubeCluster) Client() kubernetes.Interface { return c.client }

// KubeconfigPath returns the path of a kubeconfig file with the admin
// identity, for kubectl or another program.
func (c *KubeCluster) KubeconfigPath() string { return c.kubeconfig }

// Dir returns the temporary folder with the control plane's files and a log
// file per process (etcd.log, kube-apiserver.log, …).
func (c *KubeCluster) Dir() string { return c.dir }

// NodeNames returns the names of the fake Nodes; it is empty until Pods are
// enabled.
func (c *KubeCluster) NodeNames() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.nodes...)
}

// ServiceAccountKubeconfig mints a token for the ServiceAccount
// namespace/name with the TokenRequest API, valid for ttl (the apiserver
// refuses less than ten minutes), and returns a kubeconfig that uses it,
// with the namespace as its default, and the same identity as a rest.Config.
func (c *KubeCluster) ServiceAccountKubeconfig(ctx context.Context, namespace, name string, ttl time.Duration) ([]byte, *rest.Config, error) {
	seconds := int64(ttl / time.Second)
	tr, err := c.client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &seconds},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("request token for service account %s/%s: %w", namespace, name, err)
	}
	cfg := &rest.Config{
		Host:            c.config.Host,
		BearerToken:     tr.Status.Token,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.config.CAData},
	}
	user := "system:serviceaccount:" + namespace + ":" + name
	kc := clientcmdapi.NewConfig()
	kc.Clusters["tenantplane"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	kc.Contexts["tenantplane"] = &clientcmdapi.Context{Cluster: "tenantplane", AuthInfo: user, Namespace: namespace}
	kc.CurrentContext = "tenantplane"
	b, err := clientcmd.Write(*kc)
	if err != nil {
		return nil, nil, fmt.Errorf("encode kubeconfig of service account %s/%s: %w", namespace, name, err)
	}
	return b, cfg, nil
}

// Stop ends every process of the control plane (each in its own process
// group, so nothing is left running) and removes its folder. It may be
// called more than once.
func (c *KubeCluster) Stop() {
	c.mu.Lock()
	procs := c.procs
	c.procs = nil
	c.stopped = true
	c.mu.Unlock()
	// Clients first, and etcd last. Nothing in the folder outlives Stop, so
	// a clean shutdown buys nothing: kube-apiserver would take a second.
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].stop(stopGrace)
	}
	_ = os.RemoveAll(c.dir)
}

// run starts a process of the control plane and remembers it for Stop.
func (c *KubeCluster) run(name, bin string, args, env []string) (*process, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.runLocked(name, bin, args, env)
}

func (c *KubeCluster) runLocked(name, bin string, args, env []string) (*process, error) {
	if c.stopped {
		return nil, fmt.Errorf("start %s: the control plane is stopped", name)
	}
	p, err := startProcess(name, bin, args, c.dir, env, nil)
	if err != nil {
		return nil, err
	}
	c.procs = append(c.procs, p)
	return p, nil
}

// checkInstalled returns an error naming every program that
// tools/install.sh has not built yet.
func checkInstalled(names ...string) error {
	var missing []string
	for _, n := range names {
		path := ToolPath(n, toolVersion(n))
		if _, err := os.Stat(path); err != nil {
			missing = append(missing, path)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("not installed: %s (run tools/install.sh)", strings.Join(missing, ", "))
	}
	return nil
}

func toolVersion(name string) string {
	switch name {
	case "kube-apiserver", "kube-controller-manager", "kube-scheduler":
		return KubeVersion
	case "etcd":
		return EtcdVersion
	case "kwok":
		return KwokVersion
	case "metrics-server":
		return MetricsServerVersion
	case "stripe-mock":
		return StripeMockVersion
	case "golangci-lint":
		return GolangciLintVersion
	}
	panic("testenv: unknown tool " + name)
}

// writeKubeconfig writes a kubeconfig for the client certificate id.
func writeKubeconfig(path, host string, caPEM []byte, id keyPair) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["tenantplane"] = &clientcmdapi.Cluster{Server: host, CertificateAuthorityData: caPEM}
	kc.AuthInfos["user"] = &clientcmdapi.AuthInfo{ClientCertificateData: id.certPEM, ClientKeyData: id.keyPEM}
	kc.Contexts["tenantplane"] = &clientcmdapi.Context{Cluster: "tenantplane", AuthInfo: "user"}
	kc.CurrentContext = "tenantplane"
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", filepath.Base(path), err)
	}
	return nil
}

var shared struct {
	kubeOnce    sync.Once
	kube        *KubeCluster
	kubeErr     error
	podsOnce    sync.Once
	podsErr     error
	metricsOnce sync.Once
	metricsErr  error
}

// Kube returns the control plane shared by the tests of this test binary,
// starting it on first use; Main stops it. Tests isolate themselves by
// namespace. If it cannot be started, t fails with what to install.
func Kube(t testing.TB) *KubeCluster {
	t.Helper()
	shared.kubeOnce.Do(func() {
		shared.kube, shared.kubeErr = StartKube(context.Background(), KubeOptions{})
		if shared.kubeErr == nil {
			onStop(shared.kube.Stop)
		}
	})
	if shared.kubeErr != nil {
		peerFailed(t, "kubernetes control plane", "tools", shared.kubeErr)
	}
	return shared.kube
}

// KubeWithPods returns the shared control plane of Kube with kube-scheduler
// and kwok running, so that Pods on its fake Nodes reach Running.
func KubeWithPods(t testing.TB) *KubeCluster {
	t.Helper()
	c := Kube(t)
	shared.podsOnce.Do(func() {
		shared.podsErr = c.EnablePods(context.Background())
	})
	if shared.podsErr != nil {
		peerFailed(t, "kubernetes control plane with pods", "tools", shared.podsErr)
	}
	return c
}
