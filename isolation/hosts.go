package isolation

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/tenancy"
)

// Hosts keeps the host names tenants claim for their Ingresses and
// HTTPRoutes. A claim is unique in Postgres, so no host is ever claimed
// by two namespaces; the claimed hosts travel to the namespace's
// annotations, where the tenantplane-hosts admission policy checks every
// Ingress and HTTPRoute against them. A released host stays held until the
// namespace no longer uses it, so it can never be in use by two tenants.
type Hosts struct {
	store Store
	cfg   Config
	now   func() time.Time
}

// NewHosts returns a Hosts. clock may be nil.
func NewHosts(store Store, cfg Config, clock func() time.Time) (*Hosts, error) {
	if store == nil {
		return nil, errors.New("isolation: hosts need a Store")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if clock == nil {
		clock = time.Now
	}
	return &Hosts{store: store, cfg: cfg, now: func() time.Time { return clock().UTC() }}, nil
}

// NormalizeHost lower-cases host, drops a trailing dot and checks that a
// namespace may claim it: a DNS name of at least two labels, no wildcard,
// and not under Config.TenantDomain, whose names belong to namespaces by
// their names.
func NormalizeHost(host string, cfg Config) (string, error) {
	h := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(host)), ".")
	if strings.Contains(h, "*") {
		return "", errcode.Invalid("host", "wildcard hosts cannot be claimed")
	}
	if msgs := validation.IsDNS1123Subdomain(h); len(msgs) > 0 || !strings.Contains(h, ".") {
		return "", errcode.Invalid("host", "must be a DNS name such as www.example.com")
	}
	if d := cfg.TenantDomain; d != "" && (h == d || strings.HasSuffix(h, "."+d)) {
		return "", errcode.Invalid("host", "names under "+d+" belong to namespaces and need no claim")
	}
	return h, nil
}

// Claim claims host for namespace nsID for the acting user, who must be an
// owner or admin of it (or a platform admin). A host held by any namespace
// is CONFLICT.
func (h *Hosts) Claim(ctx context.Context, nsID int64, host string) (string, error) {
	c, err := h.change(ctx, nsID, host)
	if err != nil {
		return "", err
	}
	if err := h.store.ClaimHost(ctx, c); err != nil {
		return "", fmt.Errorf("claiming host %s: %w", c.Host, err)
	}
	return c.Host, nil
}

// Release gives up a host namespace nsID holds. It stays held until no
// Ingress or HTTPRoute of the namespace uses it.
func (h *Hosts) Release(ctx context.Context, nsID int64, host string) error {
	c, err := h.change(ctx, nsID, host)
	if err != nil {
		return err
	}
	if err := h.store.ReleaseHost(ctx, c); err != nil {
		return fmt.Errorf("releasing host %s: %w", c.Host, err)
	}
	return nil
}

// List returns the hosts namespace nsID holds.
func (h *Hosts) List(ctx context.Context, nsID int64) ([]HostClaim, error) {
	return h.store.Hosts(ctx, nsID)
}

func (h *Hosts) change(ctx context.Context, nsID int64, host string) (HostChange, error) {
	a, ok := tenancy.ActorFrom(ctx)
	if !ok || (a.UserID == 0 && a.System == "") {
		return HostChange{}, errcode.New(errcode.Unauthenticated, "log in first")
	}
	norm, err := NormalizeHost(host, h.cfg)
	if err != nil {
		return HostChange{}, err
	}
	ts, err := h.store.Tenants(ctx, []int64{nsID})
	if err != nil {
		return HostChange{}, err
	}
	t, ok := ts[nsID]
	if !ok {
		return HostChange{}, errcode.New(errcode.NotFound, "namespace not found")
	}
	if !a.PlatformAdmin && a.System == "" {
		allowed := false
		for _, m := range t.Members {
			allowed = allowed || (m.UserID == a.UserID && !m.Disabled && m.Role.AtLeast(tenancy.RoleAdmin))
		}
		if !allowed {
			return HostChange{}, errcode.New(errcode.Forbidden, "only owners and admins of the namespace manage its hosts")
		}
	}
	return HostChange{NamespaceID: nsID, Host: norm, Actor: actorKey(a), RequestID: a.RequestID, At: h.now()}, nil
}

var httpRoutes = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}

// hostsInUse lists the hosts of every Ingress and HTTPRoute in namespace
// ns, live from the API server.
func (r *Reconciler) hostsInUse(ctx context.Context, ns string) ([]string, error) {
	var hosts []string
	ings, err := r.kube.NetworkingV1().Ingresses(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing ingresses: %w", err)
	}
	for _, ing := range ings.Items {
		for _, rule := range ing.Spec.Rules {
			hosts = append(hosts, rule.Host)
		}
		for _, tls := range ing.Spec.TLS {
			hosts = append(hosts, tls.Hosts...)
		}
	}
	if r.dyn == nil {
		return hosts, nil
	}
	routes, err := r.dyn.Resource(httpRoutes).Namespace(ns).List(ctx, metav1.ListOptions{})
	if apierrors.IsNotFound(err) {
		return hosts, nil // no Gateway API in this cluster
	}
	if err != nil {
		return nil, fmt.Errorf("listing httproutes: %w", err)
	}
	for _, rt := range routes.Items {
		names, _, _ := unstructured.NestedStringSlice(rt.Object, "spec", "hostnames")
		hosts = append(hosts, names...)
	}
	return hosts, nil
}
