package server

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	metricsclient "k8s.io/metrics/pkg/client/clientset/versioned"

	"github.com/tenantplane/tenantplane/collectors"
	"github.com/tenantplane/tenantplane/collectors/usage"
	"github.com/tenantplane/tenantplane/collectors/usage/usagestore"
)

// MeteringConfig is how usage is measured, ingested and kept.
type MeteringConfig struct {
	// CPUBasis and MemoryBasis are what a container is billed for:
	// request, limit, usage or max (of request and usage).
	CPUBasis    string
	MemoryBasis string
	// Retention is how long minute samples are kept (hourly rollups stay).
	Retention time.Duration
	// LateWindow is how late an event may arrive and still be counted.
	LateWindow time.Duration
	// Meters are who may push usage to POST /v1/usage, each
	// "NAME:NAMESPACE/SERVICEACCOUNT[,…]:RESOURCE[,…]" where a resource may
	// end in * ("network.*").
	Meters []string
}

func defaultMeteringConfig() MeteringConfig {
	return MeteringConfig{
		CPUBasis: string(collectors.BasisMax), MemoryBasis: string(collectors.BasisMax),
		Retention: 7 * 24 * time.Hour, LateWindow: 24 * time.Hour,
		Meters: []string{"network:tenantplane-system/tenantplane-agent:network.*"},
	}
}

func (c *MeteringConfig) bindFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.CPUBasis, "cpu-basis", c.CPUBasis, "what CPU is billed by: request, limit, usage or max")
	fs.StringVar(&c.MemoryBasis, "memory-basis", c.MemoryBasis, "what memory is billed by: request, limit, usage or max")
	fs.DurationVar(&c.Retention, "usage-retention", c.Retention, "how long minute samples are kept")
	fs.DurationVar(&c.LateWindow, "usage-late-window", c.LateWindow, "how late a usage event may arrive")
	fs.StringArrayVar(&c.Meters, "meter", c.Meters, "who may push usage: NAME:NAMESPACE/SERVICEACCOUNT[,...]:RESOURCE[,...] (repeatable)")
}

func (c *MeteringConfig) meters() ([]collectors.Meter, error) {
	var ms []collectors.Meter
	for _, s := range c.Meters {
		parts := strings.Split(s, ":")
		if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
			return nil, &configError{"--meter (TENANTPLANE_METER)", fmt.Sprintf("%q is not NAME:NAMESPACE/SERVICEACCOUNT:RESOURCES", s)}
		}
		m := collectors.Meter{Name: parts[0], ServiceAccounts: strings.Split(parts[1], ","), Resources: strings.Split(parts[2], ",")}
		for _, sa := range m.ServiceAccounts {
			if ns, name, ok := strings.Cut(sa, "/"); !ok || ns == "" || name == "" {
				return nil, &configError{"--meter (TENANTPLANE_METER)", fmt.Sprintf("%q is not NAMESPACE/SERVICEACCOUNT", sa)}
			}
		}
		ms = append(ms, m)
	}
	return ms, nil
}

func (c *MeteringConfig) validate() error {
	for _, b := range []struct{ flag, v string }{{"--cpu-basis", c.CPUBasis}, {"--memory-basis", c.MemoryBasis}} {
		switch collectors.Basis(b.v) {
		case collectors.BasisRequest, collectors.BasisLimit, collectors.BasisUsage, collectors.BasisMax:
		default:
			return &configError{b.flag, fmt.Sprintf("%q is not request, limit, usage or max", b.v)}
		}
	}
	if c.Retention < 24*time.Hour {
		return &configError{"--usage-retention", "must be at least 24h"}
	}
	if c.LateWindow <= 0 || c.LateWindow > c.Retention {
		return &configError{"--usage-late-window", "must be positive and within --usage-retention"}
	}
	_, err := c.meters()
	return err
}

// meteringParts is what metering contributes to the app.
type meteringParts struct {
	collector *collectors.Collector
	ingest    *collectors.Ingest
	queries   *usage.Queries
	upkeep    *usage.Upkeep
}

func newMetering(ctx context.Context, cfg Config, restCfg *rest.Config, kube kubernetes.Interface, a *app, reg prometheus.Registerer) (*meteringParts, error) {
	store := usagestore.New(a.pool)
	upkeep, err := usage.NewUpkeep(store, usage.UpkeepConfig{Retention: cfg.Metering.Retention, LateWindow: cfg.Metering.LateWindow}, a.log, clock)
	if err != nil {
		return nil, err
	}
	// Partitions must exist before the first write reaches them.
	if err := upkeep.RunOnce(ctx); err != nil {
		return nil, fmt.Errorf("preparing usage partitions: %w", err)
	}
	mc, err := metricsclient.NewForConfig(restCfg)
	if err != nil {
		return nil, fmt.Errorf("building metrics client: %w", err)
	}
	host, _ := os.Hostname()
	p := &meteringParts{upkeep: upkeep}
	p.collector, err = collectors.New(collectors.Config{
		CPU: collectors.Basis(cfg.Metering.CPUBasis), Memory: collectors.Basis(cfg.Metering.MemoryBasis),
		LeaseNamespace: cfg.Isolation.LeaseNamespace, Identity: fmt.Sprintf("%s-%d", host, os.Getpid()),
	}, kube, collectors.NewMetricsAPI(kube.Discovery(), mc.MetricsV1beta1()), store, upkeep, reg, a.log, clock)
	if err != nil {
		return nil, err
	}
	meters, err := cfg.Metering.meters()
	if err != nil {
		return nil, err
	}
	p.ingest, err = collectors.NewIngest(collectors.IngestConfig{
		Meters: meters, LateWindow: cfg.Metering.LateWindow, MaxBodyBytes: cfg.HTTP.MaxBodyBytes,
	}, kube.AuthenticationV1(), store, reg, a.log, clock)
	if err != nil {
		return nil, err
	}
	if p.queries, err = usage.NewQueries(store, usage.QueryConfig{}); err != nil {
		return nil, err
	}
	return p, nil
}

// run watches pods and claims on every replica and samples on the one
// that holds the collectors' Lease (whose namespace it creates if need be).
func (p *meteringParts) run() func(context.Context) error {
	return func(ctx context.Context) error {
		if err := p.collector.Run(ctx); err != nil && ctx.Err() == nil {
			return fmt.Errorf("collectors: %w", err)
		}
		return nil
	}
}
