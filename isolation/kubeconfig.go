package isolation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/tenancy"
)

// ClusterAccess is how tenants reach the Kubernetes API: the address and
// CA bundle written into every kubeconfig.
type ClusterAccess struct {
	// Server is the API server's public URL, e.g. "https://kube.example.com:6443".
	Server string
	// CAData is the PEM bundle that verifies it; empty when the server's
	// certificate chains to a public CA.
	CAData []byte
}

// Kubeconfig is an issued kubeconfig.
type Kubeconfig struct {
	// Data is the kubeconfig file (YAML).
	Data []byte
	// Namespace is its current context's namespace.
	Namespace string
	// ServiceAccount is "<users namespace>/<name>", the identity it acts as.
	ServiceAccount string
	// ExpiresAt is when its token stops working.
	ExpiresAt time.Time
}

// Kubeconfigs issues kubeconfigs with short-lived tokens from the
// TokenRequest API, never long-lived secrets, and revokes them all at once
// by recreating the user's ServiceAccount: every token is bound to the
// account's UID, so a new account invalidates every token issued before.
type Kubeconfigs struct {
	kube   kubernetes.Interface
	store  Store
	cfg    Config
	access ClusterAccess
	log    *slog.Logger
	now    func() time.Time
}

// NewKubeconfigs returns a Kubeconfigs. log and clock may be nil.
func NewKubeconfigs(kube kubernetes.Interface, store Store, cfg Config, access ClusterAccess, log *slog.Logger, clock func() time.Time) (*Kubeconfigs, error) {
	if kube == nil || store == nil {
		return nil, errors.New("isolation: kubeconfigs need a Kubernetes client and a Store")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if u, err := url.Parse(access.Server); err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("isolation: ClusterAccess.Server %q must be an https URL", access.Server)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if clock == nil {
		clock = time.Now
	}
	return &Kubeconfigs{kube: kube, store: store, cfg: cfg, access: access, log: log,
		now: func() time.Time { return clock().UTC() }}, nil
}

// Issue returns a kubeconfig for the acting user (the tenancy.Actor in
// ctx) in namespace nsID, valid for ttl (0 means Config.KubeconfigTTL; at
// least 10 minutes, at most KubeconfigMaxTTL). The user must be an enabled
// member; a suspended namespace gives read-only access, as its RoleBindings
// say; a namespace being deleted is CONFLICT.
func (k *Kubeconfigs) Issue(ctx context.Context, nsID int64, ttl time.Duration) (Kubeconfig, error) {
	a, ok := tenancy.ActorFrom(ctx)
	if !ok || a.UserID == 0 {
		return Kubeconfig{}, errcode.New(errcode.Unauthenticated, "log in first")
	}
	if ttl == 0 {
		ttl = k.cfg.KubeconfigTTL
	}
	if ttl < minTokenTTL || ttl > k.cfg.KubeconfigMaxTTL {
		return Kubeconfig{}, errcode.Invalid("ttl", fmt.Sprintf("must be between %s and %s", minTokenTTL, k.cfg.KubeconfigMaxTTL))
	}
	ts, err := k.store.Tenants(ctx, []int64{nsID})
	if err != nil {
		return Kubeconfig{}, fmt.Errorf("issuing kubeconfig: %w", err)
	}
	t, ok := ts[nsID]
	if !ok {
		return Kubeconfig{}, errcode.New(errcode.NotFound, "namespace not found")
	}
	if t.State == tenancy.NamespaceDeleting {
		return Kubeconfig{}, errNamespaceDeleting
	}
	var member *Member
	for i := range t.Members {
		if t.Members[i].UserID == a.UserID {
			member = &t.Members[i]
		}
	}
	if member == nil || member.Disabled {
		return Kubeconfig{}, errcode.New(errcode.Forbidden, "only members get a kubeconfig for a namespace")
	}
	// The reconciler creates the account too; applying it here means a
	// kubeconfig never waits for the reconciler.
	sa := UserServiceAccount(a.UserID, k.cfg)
	if _, err := k.kube.CoreV1().ServiceAccounts(k.cfg.UsersNamespace).Apply(ctx, sa, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
		return Kubeconfig{}, fmt.Errorf("applying service account of user %d: %w", a.UserID, err)
	}
	secs := int64(ttl / time.Second)
	tr, err := k.kube.CoreV1().ServiceAccounts(k.cfg.UsersNamespace).CreateToken(ctx, *sa.Name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs}},
		metav1.CreateOptions{})
	if err != nil {
		return Kubeconfig{}, fmt.Errorf("requesting token of user %d: %w", a.UserID, err)
	}
	user := "tenantplane-" + *sa.Name
	conf := clientcmdapi.NewConfig()
	conf.Clusters["tenantplane"] = &clientcmdapi.Cluster{Server: k.access.Server, CertificateAuthorityData: k.access.CAData}
	conf.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	conf.Contexts[t.Name] = &clientcmdapi.Context{Cluster: "tenantplane", AuthInfo: user, Namespace: t.Name}
	conf.CurrentContext = t.Name
	data, err := clientcmd.Write(*conf)
	if err != nil {
		return Kubeconfig{}, fmt.Errorf("writing kubeconfig: %w", err)
	}
	k.log.Info("kubeconfig issued", "user", a.UserID, "namespace", t.Name, "expires", tr.Status.ExpirationTimestamp.Time)
	return Kubeconfig{
		Data:           data,
		Namespace:      t.Name,
		ServiceAccount: k.cfg.UsersNamespace + "/" + *sa.Name,
		ExpiresAt:      tr.Status.ExpirationTimestamp.UTC(),
	}, nil
}

// RevokeAll invalidates every kubeconfig ever issued to userID by deleting
// and recreating their ServiceAccount, and records it in the audit log with
// the reason, when given. Users may revoke their own; platform admins and
// the platform anyone's.
func (k *Kubeconfigs) RevokeAll(ctx context.Context, userID int64, reason string) error {
	a, ok := tenancy.ActorFrom(ctx)
	if !ok || (a.UserID == 0 && a.System == "") {
		return errcode.New(errcode.Unauthenticated, "log in first")
	}
	if a.UserID != userID && !a.PlatformAdmin && a.System == "" {
		return errcode.New(errcode.Forbidden, "only your own kubeconfigs")
	}
	reason = strings.TrimSpace(reason)
	if len(reason) > maxReasonLen || !utf8.ValidString(reason) || strings.ContainsFunc(reason, unicode.IsControl) {
		return errcode.Invalid("reason", fmt.Sprintf("must be printable text of at most %d bytes", maxReasonLen))
	}
	sas := k.kube.CoreV1().ServiceAccounts(k.cfg.UsersNamespace)
	name := ServiceAccountName(userID)
	old, err := sas.Get(ctx, name, metav1.GetOptions{})
	hadAccount := err == nil
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return fmt.Errorf("revoking kubeconfigs of user %d: %w", userID, err)
	default:
		uid := old.UID
		err := sas.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("revoking kubeconfigs of user %d: %w", userID, err)
		}
	}
	// Recreated at once when the user still has namespaces, so that their
	// RoleBindings keep a subject; new kubeconfigs work right away.
	users, err := k.store.Users(ctx, []int64{userID})
	if err != nil {
		return fmt.Errorf("revoking kubeconfigs of user %d: %w", userID, err)
	}
	if u, ok := users[userID]; ok && !u.Disabled && u.Namespaces > 0 {
		if _, err := sas.Apply(ctx, UserServiceAccount(userID, k.cfg), metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
			return fmt.Errorf("recreating service account of user %d: %w", userID, err)
		}
	}
	detail := map[string]any{"service_account": k.cfg.UsersNamespace + "/" + name, "had_account": hadAccount}
	if reason != "" {
		detail["reason"] = reason
	}
	return k.store.Audit(ctx, AuditEntry{
		At: k.now(), Actor: actorKey(a), Action: "kubeconfig.revoke_all",
		Target: tenancy.UserKey(userID), RequestID: a.RequestID, Detail: detail,
	})
}

// maxReasonLen bounds the reason recorded with a revocation.
const maxReasonLen = 500

// actorKey is the audit log's name for a: "user:ID", "system:NAME" or
// "anonymous".
func actorKey(a tenancy.Actor) string {
	switch {
	case a.UserID != 0:
		return "user:" + strconv.FormatInt(a.UserID, 10)
	case a.System != "":
		return "system:" + a.System
	}
	return "anonymous"
}
