package graph_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tenantplane/tenantplane/graph/graphtest"
	"github.com/tenantplane/tenantplane/internal/testenv"
	"github.com/tenantplane/tenantplane/tenancy"
)

// signUpPlatformAdmin signs up a user, makes them a platform admin and logs them
// in again, so that their session carries the grant.
func signUpPlatformAdmin(t *testing.T, e *graphtest.Env, email string) graphtest.User {
	t.Helper()
	u := e.SignUp(t, email)
	_, err := e.Service.GrantPlatformAdmin(e.System(), u.Email)
	require.NoError(t, err)
	tok, err := e.Service.LogIn(e.As(0, false), u.Email, "correct horse battery")
	require.NoError(t, err)
	u.Token = tok.Secret
	e.SyncAuthz(t)
	return u
}

// revoked waits for the API server to refuse token, which it may accept
// from its cache for 10s after the revocation.
func revoked(t *testing.T, token string) {
	t.Helper()
	require.Eventually(t, func() bool {
		ok, err := tokenReview(t, token)
		return err == nil && !ok
	}, 30*time.Second, 250*time.Millisecond, "a revoked token keeps working")
}

// authenticates asks the API server whether token is good.
func authenticates(t *testing.T, token string) bool {
	t.Helper()
	ok, err := tokenReview(t, token)
	require.NoError(t, err)
	return ok
}

func tokenReview(t *testing.T, token string) (bool, error) {
	tr, err := testenv.Kube(t).Client().AuthenticationV1().TokenReviews().Create(context.Background(),
		&authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
	if err != nil {
		return false, err
	}
	return tr.Status.Authenticated, nil
}

func auditReasons(t *testing.T, e *graphtest.Env, action, target string) []string {
	t.Helper()
	rows, err := e.DB.Pool.Query(context.Background(),
		`SELECT coalesce(detail->>'reason', '') FROM audit_log WHERE action = $1 AND target = $2 ORDER BY id`, action, target)
	require.NoError(t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		out = append(out, s)
	}
	require.NoError(t, rows.Err())
	return out
}

const kubeconfigMutation = `mutation($ns: ID!, $ttl: Int) {
	kubeconfig(namespaceId: $ns, ttlSeconds: $ttl) { yaml namespace serviceAccount expiresAt } }`

type kubeconfigAnswer struct {
	Kubeconfig struct {
		YAML           string `json:"yaml"`
		Namespace      string
		ServiceAccount string
		ExpiresAt      time.Time
	}
}

func TestKubeconfigIssueAndRevoke(t *testing.T) {
	t.Parallel()
	e := graphtest.New(t)
	owner := e.SignUp(t, "owner@example.com")
	viewer := e.SignUp(t, "viewer@example.com")
	stranger := e.SignUp(t, "stranger@example.com")
	_, err := e.Service.AddMember(e.As(owner.ID, false), owner.NamespaceID, viewer.ID, tenancy.RoleViewer)
	require.NoError(t, err)
	e.SyncAuthz(t)
	ns, err := e.Service.Namespace(e.As(owner.ID, false), owner.NamespaceID)
	require.NoError(t, err)

	before := time.Now()
	r := e.MustDo(t, viewer.Token, kubeconfigMutation, map[string]any{"ns": fmt.Sprint(owner.NamespaceID), "ttl": 3600})
	var got kubeconfigAnswer
	r.Decode(t, &got)
	k := got.Kubeconfig
	require.Equal(t, ns.Name, k.Namespace)
	require.Equal(t, fmt.Sprintf("%s/user-%d", e.Isolation.Config.UsersNamespace, viewer.ID), k.ServiceAccount)
	require.WithinDuration(t, before.Add(time.Hour), k.ExpiresAt, time.Minute)
	conf, err := clientcmd.Load([]byte(k.YAML))
	require.NoError(t, err)
	require.Equal(t, ns.Name, conf.Contexts[conf.CurrentContext].Namespace)
	token := conf.AuthInfos[conf.Contexts[conf.CurrentContext].AuthInfo].Token
	require.True(t, authenticates(t, token))

	// The domain bounds the lifetime; another tenant's namespace does not
	// exist for the caller.
	bad := e.Do(t, viewer.Token, kubeconfigMutation, map[string]any{"ns": fmt.Sprint(owner.NamespaceID), "ttl": 10})
	require.Len(t, bad.Errors, 1)
	require.Equal(t, "BAD_USER_INPUT", bad.Errors[0].Code())
	other := e.Do(t, stranger.Token, kubeconfigMutation, map[string]any{"ns": fmt.Sprint(owner.NamespaceID)})
	require.Len(t, other.Errors, 1)
	require.Equal(t, "NOT_FOUND", other.Errors[0].Code())

	// Revoking one's own invalidates every token issued before.
	e.MustDo(t, viewer.Token, `mutation { revokeMyKubeconfigs }`, nil)
	revoked(t, token)

	// A platform admin revokes anyone's, with a reason in the audit log.
	r = e.MustDo(t, owner.Token, kubeconfigMutation, map[string]any{"ns": fmt.Sprint(owner.NamespaceID)})
	r.Decode(t, &got)
	conf, err = clientcmd.Load([]byte(got.Kubeconfig.YAML))
	require.NoError(t, err)
	ownerToken := conf.AuthInfos[conf.Contexts[conf.CurrentContext].AuthInfo].Token
	require.True(t, authenticates(t, ownerToken))
	refused := e.Do(t, viewer.Token, `mutation($u: ID!) { revokeUserKubeconfigs(userId: $u, reason: "leaked") }`,
		map[string]any{"u": fmt.Sprint(owner.ID)})
	require.Len(t, refused.Errors, 1)
	require.Equal(t, "FORBIDDEN", refused.Errors[0].Code())
	padmin := signUpPlatformAdmin(t, e, "padmin@example.com")
	e.MustDo(t, padmin.Token, `mutation($u: ID!) { revokeUserKubeconfigs(userId: $u, reason: "leaked on a pastebin") }`,
		map[string]any{"u": fmt.Sprint(owner.ID)})
	revoked(t, ownerToken)
	require.Equal(t, []string{"leaked on a pastebin"}, auditReasons(t, e, "kubeconfig.revoke_all", tenancy.UserKey(owner.ID)))
	require.Equal(t, []string{""}, auditReasons(t, e, "kubeconfig.revoke_all", tenancy.UserKey(viewer.ID)))
	missing := e.Do(t, padmin.Token, `mutation { revokeUserKubeconfigs(userId: "999999", reason: "x") }`, nil)
	require.Len(t, missing.Errors, 1)
	require.Equal(t, "NOT_FOUND", missing.Errors[0].Code())
}

func TestHostsClaimListRelease(t *testing.T) {
	t.Parallel()
	e := graphtest.New(t)
	owner := e.SignUp(t, "owner@example.com")
	viewer := e.SignUp(t, "viewer@example.com")
	rival := e.SignUp(t, "rival@example.com")
	_, err := e.Service.AddMember(e.As(owner.ID, false), owner.NamespaceID, viewer.ID, tenancy.RoleViewer)
	require.NoError(t, err)
	e.SyncAuthz(t)
	ns := fmt.Sprint(owner.NamespaceID)
	claim := `mutation($ns: ID!, $h: String!) { claimHost(namespaceId: $ns, host: $h) { host createdAt } }`

	r := e.MustDo(t, owner.Token, claim, map[string]any{"ns": ns, "h": "WWW.Example.com."})
	var claimed struct{ ClaimHost struct{ Host string } }
	r.Decode(t, &claimed)
	require.Equal(t, "www.example.com", claimed.ClaimHost.Host)

	// Members read the hosts; only owners and admins claim them; no two
	// namespaces hold one.
	r = e.MustDo(t, viewer.Token, `query($ns: ID!) { namespace(id: $ns) { hosts { host } } }`, map[string]any{"ns": ns})
	var listed struct {
		Namespace struct{ Hosts []struct{ Host string } }
	}
	r.Decode(t, &listed)
	require.Equal(t, []struct{ Host string }{{"www.example.com"}}, listed.Namespace.Hosts)
	for _, c := range []struct {
		token, ns, host, code string
	}{
		{viewer.Token, ns, "api.example.com", "FORBIDDEN"},
		{rival.Token, fmt.Sprint(rival.NamespaceID), "www.example.com", "CONFLICT"},
		{rival.Token, ns, "api.example.com", "NOT_FOUND"},
		{owner.Token, ns, "*.example.com", "BAD_USER_INPUT"},
	} {
		r := e.Do(t, c.token, claim, map[string]any{"ns": c.ns, "h": c.host})
		require.Len(t, r.Errors, 1, c.host)
		require.Equal(t, c.code, r.Errors[0].Code(), c.host)
	}

	e.MustDo(t, owner.Token, `mutation($ns: ID!) { releaseHost(namespaceId: $ns, host: "www.example.com") }`, map[string]any{"ns": ns})
	r = e.Do(t, owner.Token, `mutation($ns: ID!) { releaseHost(namespaceId: $ns, host: "nope.example.com") }`, map[string]any{"ns": ns})
	require.Len(t, r.Errors, 1)
	require.Equal(t, "NOT_FOUND", r.Errors[0].Code())
}

func TestSuspendAndResumeNamespace(t *testing.T) {
	t.Parallel()
	e := graphtest.New(t)
	owner := e.SignUp(t, "owner@example.com")
	padmin := signUpPlatformAdmin(t, e, "padmin@example.com")
	vars := map[string]any{"ns": fmt.Sprint(owner.NamespaceID)}

	r := e.Do(t, owner.Token, `mutation($ns: ID!) { suspendNamespace(id: $ns, reason: "mine") { state } }`, vars)
	require.Len(t, r.Errors, 1)
	require.Equal(t, "FORBIDDEN", r.Errors[0].Code())

	var s struct{ SuspendNamespace, ResumeNamespace struct{ State string } }
	e.MustDo(t, padmin.Token, `mutation($ns: ID!) { suspendNamespace(id: $ns, reason: "abuse report 17") { state } }`, vars).Decode(t, &s)
	require.Equal(t, "SUSPENDED", s.SuspendNamespace.State)
	var q struct{ Namespace struct{ State string } }
	e.MustDo(t, owner.Token, `query($ns: ID!) { namespace(id: $ns) { state } }`, vars).Decode(t, &q)
	require.Equal(t, "SUSPENDED", q.Namespace.State)
	e.MustDo(t, padmin.Token, `mutation($ns: ID!) { resumeNamespace(id: $ns, reason: "report closed") { state } }`, vars).Decode(t, &s)
	require.Equal(t, "ACTIVE", s.ResumeNamespace.State)

	key := tenancy.NamespaceKey(owner.NamespaceID)
	require.Equal(t, []string{"abuse report 17"}, auditReasons(t, e, "namespace.suspend", key))
	require.Equal(t, []string{"report closed"}, auditReasons(t, e, "namespace.resume", key))
	r = e.Do(t, padmin.Token, `mutation { suspendNamespace(id: "999999", reason: "x") { state } }`, nil)
	require.Len(t, r.Errors, 1)
	require.Equal(t, "NOT_FOUND", r.Errors[0].Code())
}
