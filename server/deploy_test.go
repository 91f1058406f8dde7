//go:build linux

package server

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/tenantplane/tenantplane/deploy"
)

// TestDeployManifestsSpeakTheCommandsFlags reads the Deployment and the
// DaemonSet of deploy/: each runs a subcommand that exists, every
// TENANTPLANE_ variable it sets names a flag of that subcommand, and the
// agents' ServiceAccount is the one the server's default --meter lets push
// network usage.
func TestDeployManifestsSpeakTheCommandsFlags(t *testing.T) {
	t.Parallel()
	root := newRootCommand()
	checked := 0
	for _, file := range []string{"server.yaml", "agent.yaml"} {
		b, err := fs.ReadFile(deploy.Manifests, file)
		require.NoError(t, err)
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
		for {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			require.NoError(t, err)
			var kind struct {
				Kind string `json:"kind"`
			}
			require.NoError(t, yaml.Unmarshal(doc, &kind))
			if kind.Kind != "Deployment" && kind.Kind != "DaemonSet" {
				continue
			}
			var w struct {
				Spec struct {
					Template struct {
						Spec struct {
							ServiceAccountName string `json:"serviceAccountName"`
							Containers         []struct {
								Args []string `json:"args"`
								Env  []struct {
									Name string `json:"name"`
								} `json:"env"`
							} `json:"containers"`
						} `json:"spec"`
					} `json:"template"`
				} `json:"spec"`
			}
			require.NoError(t, yaml.Unmarshal(doc, &w))
			spec := w.Spec.Template.Spec
			c := spec.Containers[0]
			cmd, _, err := root.Find(c.Args)
			require.NoError(t, err, "%s: args %v", file, c.Args)
			require.NotEqual(t, root, cmd, "%s: args %v name a subcommand", file, c.Args)
			for _, e := range c.Env {
				if e.Name == "DATABASE_URL" {
					continue // the alias of --database-url
				}
				flag, ok := strings.CutPrefix(e.Name, EnvPrefix)
				require.True(t, ok, "%s: %s", file, e.Name)
				require.NotNil(t, cmd.Flags().Lookup(strings.ToLower(strings.ReplaceAll(flag, "_", "-"))),
					"%s: %s names no flag of %s", file, e.Name, cmd.Name())
				checked++
			}
			if cmd.Name() == "agent" {
				require.Contains(t, defaultMeteringConfig().Meters[0], "tenantplane-system/"+spec.ServiceAccountName+":")
			}
		}
	}
	require.Positive(t, checked)
}
