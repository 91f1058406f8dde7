package isolation_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/isolation"
	"github.com/tenantplane/tenantplane/tenancy"
)

var (
	routeCRDOnce sync.Once
	routeCRDErr  error
	httpRoutes   = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}
)

// gatewayAPI installs a small HTTPRoute CustomResourceDefinition (the
// fields the guards read) and waits until it is served.
func gatewayAPI(t *testing.T, cfg *rest.Config) {
	t.Helper()
	routeCRDOnce.Do(func() {
		dyn, err := dynamic.NewForConfig(cfg)
		if err != nil {
			routeCRDErr = err
			return
		}
		crds := dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
		crd := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
			"metadata": map[string]any{"name": "httproutes.gateway.networking.k8s.io",
				// As the Gateway API's own CRDs say: k8s.io groups need it.
				"annotations": map[string]any{"api-approved.kubernetes.io": "https://github.com/kubernetes-sigs/gateway-api/pull/3328"}},
			"spec": map[string]any{
				"group": "gateway.networking.k8s.io", "scope": "Namespaced",
				"names": map[string]any{"plural": "httproutes", "singular": "httproute", "kind": "HTTPRoute", "listKind": "HTTPRouteList"},
				"versions": []any{map[string]any{
					"name": "v1", "served": true, "storage": true,
					"schema": map[string]any{"openAPIV3Schema": map[string]any{
						"type": "object",
						"properties": map[string]any{"spec": map[string]any{
							"type":                                 "object",
							"x-kubernetes-preserve-unknown-fields": true,
							"properties": map[string]any{"hostnames": map[string]any{
								"type": "array", "items": map[string]any{"type": "string"},
							}},
						}},
					}},
				}},
			},
		}}
		ctx := context.Background()
		if _, err := crds.Create(ctx, crd, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			routeCRDErr = err
			return
		}
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			if _, err := dyn.Resource(httpRoutes).List(ctx, metav1.ListOptions{}); err == nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		routeCRDErr = context.DeadlineExceeded
	})
	require.NoError(t, routeCRDErr)
}

func httpRoute(name string, hosts ...string) *unstructured.Unstructured {
	hs := make([]any, len(hosts))
	for i, h := range hosts {
		hs[i] = h
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
		"metadata": map[string]any{"name": name},
		"spec":     map[string]any{"hostnames": hs},
	}}
}

// TestHostClaims shows that a host name belongs to one namespace at a
// time: claims are unique, Ingresses and HTTPRoutes may use only what their
// namespace holds, and a released host stays held until it is no longer
// used.
func TestHostClaims(t *testing.T) {
	t.Parallel()
	e := setup(t, setupOptions{})
	gatewayAPI(t, e.kc.Config())
	alice, aliceNS := e.signUp()
	bob, bobNS := e.signUp()
	viewer, _ := e.signUp()
	_, err := e.svc.AddMember(as(alice.ID), aliceNS.ID, viewer.ID, tenancy.RoleViewer)
	require.NoError(t, err)
	ctx := context.Background()
	const host = "www.shop.example"

	for _, tc := range []struct {
		name string
		ctx  context.Context
		host string
		want errcode.Code
	}{
		{"wildcard", as(alice.ID), "*.shop.example", errcode.BadUserInput},
		{"single label", as(alice.ID), "localhost", errcode.BadUserInput},
		{"not a name", as(alice.ID), "www_shop.example", errcode.BadUserInput},
		{"under the tenant domain", as(alice.ID), "x." + bobNS.Name + ".apps.example.test", errcode.BadUserInput},
		{"a viewer", as(viewer.ID), host, errcode.Forbidden},
		{"not a member", as(bob.ID), host, errcode.Forbidden},
	} {
		_, err := e.hosts.Claim(tc.ctx, aliceNS.ID, tc.host)
		require.Equal(t, tc.want, errcode.Of(err), tc.name)
	}
	got, err := e.hosts.Claim(as(alice.ID), aliceNS.ID, " WWW.Shop.Example. ")
	require.NoError(t, err)
	require.Equal(t, host, got)
	_, err = e.hosts.Claim(as(bob.ID), bobNS.ID, host)
	require.Equal(t, errcode.Conflict, errcode.Of(err))
	claims, err := e.hosts.List(ctx, aliceNS.ID)
	require.NoError(t, err)
	require.Len(t, claims, 1)
	e.settled()

	ac, bc := e.tenantClient(alice.ID, aliceNS), e.tenantClient(bob.ID, bobNS)
	adyn, bdyn := tenantDynamic(t, e, alice.ID, aliceNS), tenantDynamic(t, e, bob.ID, bobNS)
	_, err = ac.NetworkingV1().Ingresses(aliceNS.Name).Create(ctx, ingress("shop", host), metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = adyn.Resource(httpRoutes).Namespace(aliceNS.Name).Create(ctx, httpRoute("shop", host), metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = bdyn.Resource(httpRoutes).Namespace(bobNS.Name).Create(ctx, httpRoute("steal", host), metav1.CreateOptions{})
	require.True(t, apierrors.IsForbidden(err), "another tenant's host in an HTTPRoute: %v", err)
	require.Contains(t, err.Error(), "claimed by this namespace")
	_, err = bdyn.Resource(httpRoutes).Namespace(bobNS.Name).Create(ctx, httpRoute("own", "app."+bobNS.Name+".apps.example.test"), metav1.CreateOptions{})
	require.NoError(t, err, "a host under the tenant's own domain needs no claim")
	_, err = bc.NetworkingV1().Ingresses(bobNS.Name).Create(ctx, ingress("steal", host), metav1.CreateOptions{})
	require.True(t, apierrors.IsForbidden(err))

	// Released while still in use: no longer usable by Alice, still held.
	require.NoError(t, e.hosts.Release(as(alice.ID), aliceNS.ID, host))
	require.Equal(t, errcode.NotFound, errcode.Of(e.hosts.Release(as(alice.ID), aliceNS.ID, host)))
	e.settled()
	require.Equal(t, "", nsObject(t, e.kube, aliceNS.Name).Annotations[isolation.AnnotationHosts])
	_, err = ac.NetworkingV1().Ingresses(aliceNS.Name).Create(ctx, ingress("again", host), metav1.CreateOptions{})
	require.True(t, apierrors.IsForbidden(err), "a released host cannot be used anew: %v", err)
	_, err = e.hosts.Claim(as(bob.ID), bobNS.ID, host)
	require.Equal(t, errcode.Conflict, errcode.Of(err), "held while Alice's Ingress and HTTPRoute use it")

	require.NoError(t, ac.NetworkingV1().Ingresses(aliceNS.Name).Delete(ctx, "shop", metav1.DeleteOptions{}))
	require.NoError(t, e.rec.SyncNamespace(ctx, aliceNS.ID))
	_, err = e.hosts.Claim(as(bob.ID), bobNS.ID, host)
	require.Equal(t, errcode.Conflict, errcode.Of(err), "still held while the HTTPRoute uses it")

	require.NoError(t, adyn.Resource(httpRoutes).Namespace(aliceNS.Name).Delete(ctx, "shop", metav1.DeleteOptions{}))
	require.NoError(t, e.rec.SyncNamespace(ctx, aliceNS.ID))
	_, err = e.hosts.Claim(as(bob.ID), bobNS.ID, host)
	require.NoError(t, err, "free once nothing uses it")
	e.settled()
	_, err = bc.NetworkingV1().Ingresses(bobNS.Name).Create(ctx, ingress("shop", host), metav1.CreateOptions{})
	require.NoError(t, err)
}

func tenantDynamic(t *testing.T, e *env, userID int64, ns tenancy.Namespace) dynamic.Interface {
	t.Helper()
	kc, err := e.kubecfgs.Issue(as(userID), ns.ID, 0)
	require.NoError(t, err)
	rc, err := clientcmdRESTConfig(kc.Data)
	require.NoError(t, err)
	d, err := dynamic.NewForConfig(rc)
	require.NoError(t, err)
	return d
}
