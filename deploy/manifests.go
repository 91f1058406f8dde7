package deploy

import "embed"

// Manifests holds the YAML files of this folder: kustomization.yaml and the
// manifests it lists.
//
//go:embed *.yaml
var Manifests embed.FS
