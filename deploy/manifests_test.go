package deploy_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"path"
	"slices"
	"testing"

	"github.com/tenantplane/tenantplane/collectors"
	"github.com/tenantplane/tenantplane/isolation"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/restmapper"
	rbacvalidation "k8s.io/component-helpers/auth/rbac/validation"
	"sigs.k8s.io/yaml"

	"github.com/tenantplane/tenantplane/deploy"
	"github.com/tenantplane/tenantplane/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// manifest is one YAML document of a file.
type manifest struct {
	file string
	doc  []byte
	obj  runtime.Object
}

// listed returns the files that kustomization.yaml lists, read strictly.
func listed(t *testing.T) []string {
	t.Helper()
	b, err := fs.ReadFile(deploy.Manifests, "kustomization.yaml")
	require.NoError(t, err)
	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
	}
	require.NoError(t, yaml.UnmarshalStrict(b, &k))
	require.Equal(t, "Kustomization", k.Kind)
	return k.Resources
}

// manifests decodes every document of every listed file with client-go's
// scheme in strict mode: an unknown or repeated field fails.
func manifests(t *testing.T) []manifest {
	t.Helper()
	decoder := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	var out []manifest
	for _, file := range listed(t) {
		b, err := fs.ReadFile(deploy.Manifests, file)
		require.NoError(t, err)
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
		for {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			require.NoError(t, err, file)
			if len(bytes.TrimSpace(stripComments(doc))) == 0 {
				continue
			}
			obj, _, err := decoder.Decode(doc, nil, nil)
			require.NoError(t, err, "%s:\n%s", file, doc)
			out = append(out, manifest{file: file, doc: doc, obj: obj})
		}
	}
	return out
}

// stripComments drops the comment lines of a YAML document.
func stripComments(doc []byte) []byte {
	var b bytes.Buffer
	for line := range bytes.Lines(doc) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			b.Write(line)
		}
	}
	return b.Bytes()
}

func TestKustomizationListsEveryManifest(t *testing.T) {
	t.Parallel()
	files, err := fs.Glob(deploy.Manifests, "*.yaml")
	require.NoError(t, err)
	files = slices.DeleteFunc(files, func(f string) bool { return f == "kustomization.yaml" })
	got := listed(t)
	slices.Sort(got)
	require.Equal(t, files, got)
}

// TestManifestsDecodeStrictly decodes every manifest into client-go's
// types and checks what each part needs of the others.
func TestManifestsDecodeStrictly(t *testing.T) {
	t.Parallel()
	byKind := map[string][]string{}
	var ds *appsv1.DaemonSet
	var server *appsv1.Deployment
	var svc *corev1.Service
	var agentRole, serverRole *rbacv1.ClusterRole
	for _, m := range manifests(t) {
		acc, err := metaAccessor(m.obj)
		require.NoError(t, err)
		kind := m.obj.GetObjectKind().GroupVersionKind().Kind
		byKind[kind] = append(byKind[kind], acc.GetNamespace()+"/"+acc.GetName())
		switch o := m.obj.(type) {
		case *appsv1.DaemonSet:
			ds = o
		case *appsv1.Deployment:
			server = o
		case *corev1.Service:
			svc = o
		case *rbacv1.ClusterRole:
			switch o.Name {
			case "tenantplane-agent":
				agentRole = o
			case "tenantplane":
				serverRole = o
			}
		}
	}
	require.Equal(t, map[string][]string{
		"Namespace":          {"/tenantplane-system"},
		"ServiceAccount":     {"tenantplane-system/tenantplane", "tenantplane-system/tenantplane-agent"},
		"ClusterRole":        {"/tenantplane", "/tenantplane-agent"},
		"ClusterRoleBinding": {"/tenantplane", "/tenantplane-agent"},
		"Role":               {"tenantplane-system/tenantplane-leader-election"},
		"RoleBinding":        {"tenantplane-system/tenantplane-leader-election"},
		"Deployment":         {"tenantplane-system/tenantplane"},
		"Service":            {"tenantplane-system/tenantplane"},
		"DaemonSet":          {"tenantplane-system/tenantplane-agent"},
	}, byKind)

	// The agent: host network, CAP_BPF and CAP_NET_ADMIN only, bpffs from
	// the host, its node's name from the downward API, and the server's
	// Service as the ingest URL.
	pod := ds.Spec.Template.Spec
	require.True(t, pod.HostNetwork)
	require.Equal(t, "tenantplane-agent", pod.ServiceAccountName)
	c := pod.Containers[0]
	require.Equal(t, []string{"agent"}, c.Args)
	require.Equal(t, []corev1.Capability{"ALL"}, c.SecurityContext.Capabilities.Drop)
	require.Equal(t, []corev1.Capability{"BPF", "NET_ADMIN"}, c.SecurityContext.Capabilities.Add)
	require.False(t, *c.SecurityContext.AllowPrivilegeEscalation)
	require.Nil(t, c.SecurityContext.Privileged)
	volumes := map[string]string{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v.HostPath.Path
	}
	mounts := map[string]string{}
	for _, vm := range c.VolumeMounts {
		mounts[volumes[vm.Name]] = vm.MountPath
	}
	require.Equal(t, "/sys/fs/bpf", mounts["/sys/fs/bpf"])
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	require.Equal(t, "spec.nodeName", env["TENANTPLANE_NODE_NAME"].ValueFrom.FieldRef.FieldPath)
	require.Equal(t, "http://"+svc.Name+"."+svc.Namespace+".svc/v1/usage", env["TENANTPLANE_INGEST_URL"].Value)
	require.Equal(t, server.Spec.Template.Spec.Containers[0].Ports[0].Name, svc.Spec.Ports[0].TargetPort.StrVal)
	require.Equal(t, []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}}}, agentRole.Rules)

	// The server's ClusterRole grants what its components need, which
	// isolation's tests prove by running under no more, and nothing else.
	needed := slices.Concat(isolation.PlatformRules(), collectors.PlatformRules())
	covers, missing := rbacvalidation.Covers(serverRole.Rules, needed)
	require.True(t, covers, "deploy/server.yaml's ClusterRole lacks %v", missing)
	covers, extra := rbacvalidation.Covers(needed, serverRole.Rules)
	require.True(t, covers, "deploy/server.yaml's ClusterRole grants more than its components need: %v", extra)
}

func metaAccessor(obj runtime.Object) (metav1.Object, error) {
	o, ok := obj.(metav1.Object)
	if !ok {
		return nil, errors.New("not an object with metadata")
	}
	return o, nil
}

// TestManifestsPassServerSideDryRun creates every manifest in a real
// kube-apiserver with server-side dry run and strict field validation, so
// that defaulting, validation and admission all pass; the namespace is
// then created for real, which the namespaced objects need.
func TestManifestsPassServerSideDryRun(t *testing.T) {
	t.Parallel()
	kube := testenv.Kube(t)
	ctx := t.Context()
	dyn, err := dynamic.NewForConfig(kube.Config())
	require.NoError(t, err)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(kube.Client().Discovery()))
	for _, m := range manifests(t) {
		js, err := yaml.YAMLToJSON(m.doc)
		require.NoError(t, err)
		u := &unstructured.Unstructured{}
		require.NoError(t, u.UnmarshalJSON(js))
		gvk := u.GroupVersionKind()
		mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		require.NoError(t, err, "%s %s", m.file, gvk)
		var ri dynamic.ResourceInterface = dyn.Resource(mapping.Resource)
		if u.GetNamespace() != "" {
			ri = dyn.Resource(mapping.Resource).Namespace(u.GetNamespace())
		}
		what := path.Join(m.file, gvk.Kind, u.GetNamespace(), u.GetName())
		_, err = ri.Create(ctx, u, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: metav1.FieldValidationStrict})
		require.NoError(t, err, what)
		if gvk.Kind == "Namespace" {
			_, err = ri.Create(ctx, u, metav1.CreateOptions{FieldValidation: metav1.FieldValidationStrict})
			if !apierrors.IsAlreadyExists(err) {
				require.NoError(t, err, what)
			}
		}
	}
}
