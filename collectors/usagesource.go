package collectors

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	metricsv1beta1 "k8s.io/metrics/pkg/client/clientset/versioned/typed/metrics/v1beta1"
)

// UsageSource reads the current usage of every pod.
type UsageSource interface {
	// PodUsage returns the latest usage of each pod; served is false when
	// no usage API is served in the cluster, which is not an error.
	PodUsage(ctx context.Context) (reads []PodUsage, served bool, err error)
}

// MetricsAPI reads pod usage from metrics.k8s.io/v1beta1 (metrics-server
// or a compatible adapter).
type MetricsAPI struct {
	disco   discovery.DiscoveryInterface
	metrics metricsv1beta1.PodMetricsesGetter
}

// NewMetricsAPI returns a UsageSource over the metrics API; disco tells
// whether the API is served.
func NewMetricsAPI(disco discovery.DiscoveryInterface, m metricsv1beta1.PodMetricsesGetter) *MetricsAPI {
	return &MetricsAPI{disco: disco, metrics: m}
}

// PodUsage implements UsageSource.
func (a *MetricsAPI) PodUsage(ctx context.Context) ([]PodUsage, bool, error) {
	if _, err := a.disco.ServerResourcesForGroupVersion("metrics.k8s.io/v1beta1"); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("discovering metrics.k8s.io: %w", err)
	}
	list, err := a.metrics.PodMetricses(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, true, fmt.Errorf("listing pod metrics: %w", err)
	}
	out := make([]PodUsage, 0, len(list.Items))
	for _, pm := range list.Items {
		u := PodUsage{Namespace: pm.Namespace, Name: pm.Name, At: pm.Timestamp.UTC(), Containers: make([]ContainerUsage, 0, len(pm.Containers))}
		for _, c := range pm.Containers {
			u.Containers = append(u.Containers, ContainerUsage{
				Name: c.Name, CPUNano: c.Usage.Cpu().ScaledValue(resource.Nano), MemBytes: c.Usage.Memory().Value(),
			})
		}
		out = append(out, u)
	}
	return out, true, nil
}
