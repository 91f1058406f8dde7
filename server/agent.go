//go:build linux

package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"

	"github.com/tenantplane/tenantplane/bpf/agent"
)

// agentFlags is the configuration of `tenantplane agent`: the node agent's
// own settings, plus where it finds Kubernetes and serves its metrics.
type agentFlags struct {
	cfg           agent.Config
	prefixes      []string
	kubeconfig    string
	metricsListen string
	logLevel      string
}

func (f *agentFlags) bind(fs *pflag.FlagSet) {
	fs.StringVar(&f.cfg.NodeName, "node-name", "", "the node whose pods are metered (the DaemonSet sets it from spec.nodeName)")
	fs.StringVar(&f.cfg.IngestURL, "ingest-url", "", "URL of the usage ingest API, POST /v1/usage")
	fs.StringVar(&f.cfg.TokenFile, "token-file", "/var/run/secrets/kubernetes.io/serviceaccount/token", "ServiceAccount token sent to the ingest API, re-read before each push")
	fs.StringVar(&f.cfg.StateDir, "state-dir", "/var/lib/tenantplane/netmeter", "folder on the node for the meter's state (a hostPath)")
	fs.StringVar(&f.cfg.PinPath, "pin-path", "/sys/fs/bpf/tenantplane", "bpffs folder of the pinned maps and links")
	fs.StringSliceVar(&f.prefixes, "cluster-prefixes", nil, "cluster prefixes with their class, CIDR=class (pods, Services, nodes, load balancers); the rest is internet")
	fs.StringVar(&f.cfg.InterfacePattern, "interface-pattern", "", "glob the host-side veth of a pod must match, such as cali* or lxc*")
	fs.StringSliceVar(&f.cfg.ExcludeNamespaces, "exclude-namespaces", []string{"kube-system"}, "namespaces whose pods are not metered")
	fs.DurationVar(&f.cfg.Interval, "interval", time.Minute, "how often counters are read and pushed")
	fs.IntVar(&f.cfg.MaxEndpoints, "max-endpoints", 16384, "pod addresses the kernel map holds")
	fs.IntVar(&f.cfg.MaxCounters, "max-counters", 65536, "(pod, direction, class) counters the kernel map holds")
	fs.IntVar(&f.cfg.MaxPendingBatches, "max-pending-batches", 1440, "batches kept while the ingest API is unreachable")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file; empty for in-cluster (also KUBECONFIG)")
	fs.StringVar(&f.metricsListen, "metrics-listen", ":9102", "address of /metrics and /healthz")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
}

// config turns the flags into the agent's configuration.
func (f *agentFlags) config() (agent.Config, error) {
	cfg := f.cfg
	for _, p := range f.prefixes {
		cidr, class, ok := strings.Cut(p, "=")
		prefix, err := netip.ParsePrefix(strings.TrimSpace(cidr))
		if !ok || err != nil {
			return cfg, &configError{"--cluster-prefixes (TENANTPLANE_CLUSTER_PREFIXES)", fmt.Sprintf("%q is not CIDR=class", p)}
		}
		cfg.Prefixes = append(cfg.Prefixes, agent.Prefix{Prefix: prefix, Class: strings.TrimSpace(class)})
	}
	if _, _, err := net.SplitHostPort(f.metricsListen); err != nil {
		return cfg, &configError{"--metrics-listen (TENANTPLANE_METRICS_LISTEN)", err.Error()}
	}
	return cfg, nil
}

func newAgentCommand() *cobra.Command {
	var f agentFlags
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Meter the network bytes of the pods of this node with eBPF and push them to the usage ingest API",
		Long: `The node agent runs as a DaemonSet with hostNetwork, CAP_BPF and
CAP_NET_ADMIN, a hostPath for --state-dir and the node's bpffs at
--pin-path. The counters and the program's attachments are pinned, so a
restart of the agent neither loses nor doubles a byte.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd); err != nil {
				return err
			}
			cfg, err := f.config()
			if err != nil {
				return err
			}
			log := newLogger(cmd.ErrOrStderr(), f.logLevel)
			rc, err := kubeRESTConfig(f.kubeconfig)
			if err != nil {
				return err
			}
			kube, err := kubernetes.NewForConfig(rc)
			if err != nil {
				return fmt.Errorf("kubernetes client: %w", err)
			}
			reg := newRegistry()
			a, err := agent.New(cfg, kube, reg, log, clock)
			if err != nil {
				return &configError{"agent", err.Error()}
			}
			l, err := net.Listen("tcp", f.metricsListen)
			if err != nil {
				return fmt.Errorf("listening on %s: %w", f.metricsListen, err)
			}
			mux := http.NewServeMux()
			mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
			mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
			srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
			go func() {
				if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
					log.Error("metrics server", "err", err)
				}
			}()
			defer func() {
				ctx, cancel := context.WithTimeout(context.WithoutCancel(cmd.Context()), 5*time.Second)
				defer cancel()
				_ = srv.Shutdown(ctx)
			}()
			return a.Run(cmd.Context())
		},
	}
	f.bind(cmd.Flags())
	return cmd
}
