package isolation_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/tenantplane/tenantplane/isolation"
	"github.com/tenantplane/tenantplane/tenancy"
)

// TestGuardsTypeCheck shows that the API server compiles every guard and
// its type checker finds nothing wrong with any expression.
func TestGuardsTypeCheck(t *testing.T) {
	t.Parallel()
	e := setup(t, setupOptions{noRun: true})
	for _, g := range isolation.Guards(e.cfg) {
		name := *g.Policy.Name
		eventually(t, 30*time.Second, "type checking of "+name, func(ctx context.Context) (bool, error) {
			p, err := e.kube.AdmissionregistrationV1().ValidatingAdmissionPolicies().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			if p.Status.ObservedGeneration != p.Generation || p.Status.TypeChecking == nil {
				return false, nil
			}
			require.Empty(t, p.Status.TypeChecking.ExpressionWarnings, "policy %s", name)
			return true, nil
		})
	}
}

// TestProtectGuardBacksRBAC grants a tenant, by an RBAC mistake, full
// rights over the objects the platform manages in its namespace; the
// protect guard still refuses every change to them, for the user's
// ServiceAccount and for the namespace's own ServiceAccounts, while the
// platform itself still changes them.
func TestProtectGuardBacksRBAC(t *testing.T) {
	t.Parallel()
	e := setup(t, setupOptions{})
	u, ns := e.signUp()
	e.applied(ns)
	ctx := context.Background()
	n := ns.Name
	_, err := e.kube.RbacV1().Roles(n).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "mistake"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"", "networking.k8s.io", "rbac.authorization.k8s.io", "apps"},
			Resources: []string{"resourcequotas", "limitranges", "networkpolicies", "rolebindings", "roles", "configmaps", "deployments"},
			Verbs:     []string{"*"}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = e.kube.RbacV1().RoleBindings(n).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "mistake"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "mistake"},
		Subjects: []rbacv1.Subject{
			{Kind: "ServiceAccount", Name: isolation.ServiceAccountName(u.ID), Namespace: e.cfg.UsersNamespace},
			{Kind: "ServiceAccount", Name: "default", Namespace: n},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	podIdentity := e.kc.Config()
	podIdentity.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + n + ":default",
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + n, "system:authenticated"}}
	pc, err := kubernetes.NewForConfig(podIdentity)
	require.NoError(t, err)
	clients := map[string]kubernetes.Interface{"user": e.tenantClient(u.ID, ns), "pod": pc}

	managed := map[string]string{isolation.LabelManagedBy: isolation.ManagedBy}
	for who, c := range clients {
		eventually(t, 10*time.Second, who+" to hold the mistaken rights", func(ctx context.Context) (bool, error) {
			_, err := c.CoreV1().ConfigMaps(n).List(ctx, metav1.ListOptions{})
			return err == nil, nil
		})
		for name, do := range map[string]func() error{
			"patch quota": func() error {
				_, err := c.CoreV1().ResourceQuotas(n).Patch(ctx, isolation.ResourceQuotaName, types.MergePatchType,
					[]byte(`{"spec":{"hard":{"pods":"1000"}}}`), metav1.PatchOptions{})
				return err
			},
			"delete limit range": func() error {
				return c.CoreV1().LimitRanges(n).Delete(ctx, isolation.LimitRangeName, metav1.DeleteOptions{})
			},
			"delete network policy": func() error {
				return c.NetworkingV1().NetworkPolicies(n).Delete(ctx, isolation.NetworkPolicyIngressName, metav1.DeleteOptions{})
			},
			"delete role binding": func() error {
				return c.RbacV1().RoleBindings(n).Delete(ctx, isolation.RoleBindingName(u.ID, tenancy.RoleOwner), metav1.DeleteOptions{})
			},
			"create a look-alike": func() error {
				_, err := c.CoreV1().ConfigMaps(n).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "fake", Labels: managed}}, metav1.CreateOptions{})
				return err
			},
			"strip the label": func() error {
				_, err := c.NetworkingV1().NetworkPolicies(n).Patch(ctx, isolation.NetworkPolicyEgressName, types.MergePatchType,
					[]byte(`{"metadata":{"labels":{"app.kubernetes.io/managed-by":null}}}`), metav1.PatchOptions{})
				return err
			},
		} {
			err := do()
			require.True(t, apierrors.IsForbidden(err), "%s: %s: %v", who, name, err)
			require.Contains(t, err.Error(), "managed by the platform", "%s: %s", who, name)
		}
		// Its own Deployment, but a platform annotation added later.
		dep := goodDeployment("own-"+who, 0)
		_, err := c.AppsV1().Deployments(n).Create(ctx, dep, metav1.CreateOptions{})
		require.NoError(t, err)
		_, err = c.AppsV1().Deployments(n).Patch(ctx, dep.Name, types.MergePatchType,
			[]byte(`{"metadata":{"annotations":{"tenantplane.io/saved-replicas":"40"}}}`), metav1.PatchOptions{})
		require.True(t, apierrors.IsForbidden(err), "%s: %v", who, err)
		require.Contains(t, err.Error(), "tenantplane.io/ annotations")
	}
	// The platform still manages them.
	require.NoError(t, e.rec.SyncNamespace(ctx, ns.ID))
}
