package testenv

// Versions of the external programs that tools/install.sh builds. They
// mirror tools/versions.env, the one place to change them; a test checks
// that the two agree.
const (
	// KubeVersion is the version of kube-apiserver, kube-controller-manager
	// and kube-scheduler.
	KubeVersion = "v1.37.2"
	// EtcdVersion is the version of etcd.
	EtcdVersion = "v3.7.3"
	// KwokVersion is the version of kwok, which fakes Nodes and their Pods.
	KwokVersion = "v0.8.0"
	// MetricsServerVersion is the version of metrics-server, which serves
	// metrics.k8s.io from the kubelets' (here kwok's) resource metrics.
	MetricsServerVersion = "v0.8.0"
	// StripeMockVersion is the version of stripe-mock.
	StripeMockVersion = "v0.203.0"
	// GolangciLintVersion is the version of golangci-lint.
	GolangciLintVersion = "v2.15.0"
)
