package server

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/tenantplane/tenantplane/internal/leader"
	"github.com/tenantplane/tenantplane/isolation"
	"github.com/tenantplane/tenantplane/isolation/isolationstore"
	"github.com/tenantplane/tenantplane/tenancy"
)

// IsolationConfig is how tenant namespaces are locked down and reached.
type IsolationConfig struct {
	// ConfigFile is a YAML file of plans, network and naming settings
	// (isolation.Config's fields); empty keeps the built-in defaults.
	ConfigFile string
	// KubePublicURL is the Kubernetes API address written into tenants'
	// kubeconfigs; empty uses the address tenantplane itself talks to.
	KubePublicURL string
	// KubeCAFile is the CA bundle written into tenants' kubeconfigs; empty
	// uses the one tenantplane itself trusts.
	KubeCAFile string
	// KubeconfigTTL is the default lifetime of an issued kubeconfig, and
	// KubeconfigMaxTTL the longest a tenant may ask for.
	KubeconfigTTL    time.Duration
	KubeconfigMaxTTL time.Duration
	// LeaseNamespace holds the Leases that pick the leading replica.
	LeaseNamespace string
}

func defaultIsolationConfig() IsolationConfig {
	d := isolation.DefaultConfig()
	return IsolationConfig{
		KubeconfigTTL:    d.KubeconfigTTL,
		KubeconfigMaxTTL: d.KubeconfigMaxTTL,
		LeaseNamespace:   "tenantplane-system",
	}
}

func (c *IsolationConfig) bindFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.ConfigFile, "isolation-config", c.ConfigFile, "YAML file of plans and network settings for tenant namespaces")
	fs.StringVar(&c.KubePublicURL, "kube-public-url", c.KubePublicURL, "Kubernetes API address written into tenants' kubeconfigs")
	fs.StringVar(&c.KubeCAFile, "kube-ca-file", c.KubeCAFile, "CA bundle written into tenants' kubeconfigs")
	fs.DurationVar(&c.KubeconfigTTL, "kubeconfig-ttl", c.KubeconfigTTL, "default lifetime of an issued kubeconfig")
	fs.DurationVar(&c.KubeconfigMaxTTL, "kubeconfig-max-ttl", c.KubeconfigMaxTTL, "longest lifetime a tenant may ask for")
	fs.StringVar(&c.LeaseNamespace, "lease-namespace", c.LeaseNamespace, "namespace of the Leases that elect the leading replica")
}

// isolationConfig reads the isolation settings, validated.
func (c *IsolationConfig) isolationConfig() (isolation.Config, error) {
	cfg := isolation.DefaultConfig()
	if c.ConfigFile != "" {
		b, err := os.ReadFile(c.ConfigFile)
		if err != nil {
			return cfg, &configError{"--isolation-config", err.Error()}
		}
		if err := yaml.UnmarshalStrict(b, &cfg); err != nil {
			return cfg, &configError{"--isolation-config", "parsing " + c.ConfigFile + ": " + err.Error()}
		}
	}
	cfg.KubeconfigTTL, cfg.KubeconfigMaxTTL = c.KubeconfigTTL, c.KubeconfigMaxTTL
	if err := cfg.Validate(); err != nil {
		return cfg, &configError{"--isolation-config/--kubeconfig-ttl", err.Error()}
	}
	return cfg, nil
}

func (c *IsolationConfig) validate() error {
	_, err := c.isolationConfig()
	return err
}

// isolationParts is what isolation contributes to the app.
type isolationParts struct {
	cfg         isolation.Config
	store       *isolationstore.Store
	reconciler  *isolation.Reconciler
	kubeconfigs *isolation.Kubeconfigs
	hosts       *isolation.Hosts
	suspension  *isolation.Suspension
}

func newIsolation(cfg IsolationConfig, restCfg *rest.Config, kube kubernetes.Interface, a *app, reg prometheus.Registerer) (*isolationParts, error) {
	icfg, err := cfg.isolationConfig()
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(restCfg)
	if err != nil {
		return nil, fmt.Errorf("building kubernetes dynamic client: %w", err)
	}
	p := &isolationParts{cfg: icfg, store: isolationstore.New(a.pool)}
	p.reconciler, err = isolation.NewReconciler(isolation.Deps{
		Kube: kube, Dynamic: dyn, Store: p.store, Log: a.log, Clock: clock, Registerer: reg,
	}, icfg, isolation.ReconcilerConfig{})
	if err != nil {
		return nil, err
	}
	access := isolation.ClusterAccess{Server: restCfg.Host, CAData: restCfg.CAData}
	if cfg.KubePublicURL != "" {
		access.Server = cfg.KubePublicURL
	}
	if cfg.KubeCAFile != "" {
		if access.CAData, err = os.ReadFile(cfg.KubeCAFile); err != nil {
			return nil, &configError{"--kube-ca-file", err.Error()}
		}
	} else if len(access.CAData) == 0 && restCfg.CAFile != "" {
		if access.CAData, err = os.ReadFile(restCfg.CAFile); err != nil {
			return nil, fmt.Errorf("reading the cluster CA: %w", err)
		}
	}
	if p.kubeconfigs, err = isolation.NewKubeconfigs(kube, p.store, icfg, access, a.log, clock); err != nil {
		return nil, err
	}
	if p.hosts, err = isolation.NewHosts(p.store, icfg, clock); err != nil {
		return nil, err
	}
	if p.suspension, err = isolation.NewSuspension(a.tenancy, p.reconciler); err != nil {
		return nil, err
	}
	return p, nil
}

// lead is the isolation work that one replica does at a time: install the
// cluster-wide guards, then reconcile until leadership ends.
func (p *isolationParts) lead(kube kubernetes.Interface, log *slog.Logger) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := isolation.InstallGuards(ctx, kube, p.cfg); err != nil {
			return fmt.Errorf("installing admission guards: %w", err)
		}
		log.Info("admission guards installed")
		return p.reconciler.Run(ctx)
	}
}

// runIsolation takes part in the election of the isolation leader.
func runIsolation(p *isolationParts, kube kubernetes.Interface, cfg IsolationConfig, log *slog.Logger) func(context.Context) error {
	return func(ctx context.Context) error {
		return leader.Run(ctx, kube, leader.Config{Namespace: cfg.LeaseNamespace, Name: "tenantplane-isolation"},
			log.With("component", "isolation"), p.lead(kube, log))
	}
}

var _ isolation.StateChanger = (*tenancy.Service)(nil)
