package isolation_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/isolation"
	"github.com/tenantplane/tenantplane/tenancy"
)

func clientFor(t *testing.T, kc isolation.Kubeconfig) kubernetes.Interface {
	t.Helper()
	rc, err := clientcmd.RESTConfigFromKubeConfig(kc.Data)
	require.NoError(t, err)
	c, err := kubernetes.NewForConfig(rc)
	require.NoError(t, err)
	return c
}

// TestKubeconfigIssueAndRevoke issues kubeconfigs through TokenRequest,
// checks who gets one and for how long, and revokes them all.
func TestKubeconfigIssueAndRevoke(t *testing.T) {
	t.Parallel()
	e := setup(t, setupOptions{})
	owner, ns := e.signUp()
	stranger, _ := e.signUp()
	e.applied(ns)
	ctx := context.Background()

	start := time.Now()
	kc, err := e.kubecfgs.Issue(as(owner.ID), ns.ID, 0)
	require.NoError(t, err)
	require.Equal(t, ns.Name, kc.Namespace)
	require.Equal(t, e.cfg.UsersNamespace+"/"+isolation.ServiceAccountName(owner.ID), kc.ServiceAccount)
	require.WithinDuration(t, start.Add(8*time.Hour), kc.ExpiresAt, time.Minute, "default lifetime is 8h")
	raw, err := clientcmd.Load(kc.Data)
	require.NoError(t, err)
	require.Equal(t, ns.Name, raw.Contexts[raw.CurrentContext].Namespace)
	for _, ai := range raw.AuthInfos {
		require.NotEmpty(t, ai.Token)
		require.Empty(t, ai.ClientCertificateData, "no long-lived credentials")
	}
	c := clientFor(t, kc)
	_, err = c.CoreV1().Pods(ns.Name).List(ctx, metav1.ListOptions{})
	require.NoError(t, err)

	short, err := e.kubecfgs.Issue(as(owner.ID), ns.ID, 30*time.Minute)
	require.NoError(t, err)
	require.WithinDuration(t, start.Add(30*time.Minute), short.ExpiresAt, time.Minute)

	for _, tc := range []struct {
		name string
		ctx  context.Context
		ns   int64
		ttl  time.Duration
		want errcode.Code
	}{
		{"too short", as(owner.ID), ns.ID, 5 * time.Minute, errcode.BadUserInput},
		{"too long", as(owner.ID), ns.ID, 25 * time.Hour, errcode.BadUserInput},
		{"not a member", as(stranger.ID), ns.ID, 0, errcode.Forbidden},
		{"no such namespace", as(owner.ID), 987654, 0, errcode.NotFound},
		{"anonymous", context.Background(), ns.ID, 0, errcode.Unauthenticated},
	} {
		_, err := e.kubecfgs.Issue(tc.ctx, tc.ns, tc.ttl)
		require.Equal(t, tc.want, errcode.Of(err), tc.name)
	}

	// Only the user, an admin or the platform revokes.
	require.Equal(t, errcode.Forbidden, errcode.Of(e.kubecfgs.RevokeAll(as(stranger.ID), owner.ID, "")))
	require.NoError(t, e.kubecfgs.RevokeAll(as(owner.ID), owner.ID, ""))
	e.eventually(30*time.Second, "revoked tokens to stop working (the API server caches a token's authentication for 10s)", func(ctx context.Context) (bool, error) {
		_, err1 := c.CoreV1().Pods(ns.Name).List(ctx, metav1.ListOptions{})
		_, err2 := clientFor(t, short).CoreV1().Pods(ns.Name).List(ctx, metav1.ListOptions{})
		return apierrors.IsUnauthorized(err1) && apierrors.IsUnauthorized(err2), nil
	})
	fresh, err := e.kubecfgs.Issue(as(owner.ID), ns.ID, 0)
	require.NoError(t, err)
	_, err = clientFor(t, fresh).CoreV1().Pods(ns.Name).List(ctx, metav1.ListOptions{})
	require.NoError(t, err, "a kubeconfig issued after the revocation works")
	var audited int
	require.NoError(t, e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE action = 'kubeconfig.revoke_all' AND target = $1 AND actor = $1`,
		tenancy.UserKey(owner.ID)).Scan(&audited))
	require.Equal(t, 1, audited)
}

func clientcmdRESTConfig(data []byte) (*rest.Config, error) {
	return clientcmd.RESTConfigFromKubeConfig(data)
}
