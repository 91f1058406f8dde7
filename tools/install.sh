#!/usr/bin/env bash
# install.sh [name...] builds the external programs pinned under tools/ into
# the tenantplane cache, at $CACHE/bin/<name>-<version>/<name>, the path that
# internal/testenv.ToolPath gives. It builds only what is missing, so a second
# run takes about a second. With no names it builds all of them:
#
#   kube-apiserver kube-controller-manager kube-scheduler etcd kwok
#   metrics-server stripe-mock golangci-lint
#
# $CACHE follows internal/testenv.CacheDir: $TENANTPLANE_CACHE, else
# $XDG_CACHE_HOME/tenantplane, else ~/.cache/tenantplane. Go's own build and
# module caches are used as usual (outside the repository), so a cold build of
# the Kubernetes programs takes minutes and a few GB there, and later rebuilds
# are quick.
set -euo pipefail

tools_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tools/versions.env
source "$tools_dir/versions.env"

if [[ -n "${TENANTPLANE_CACHE:-}" ]]; then
	cache="$TENANTPLANE_CACHE"
elif [[ -n "${XDG_CACHE_HOME:-}" ]]; then
	cache="$XDG_CACHE_HOME/tenantplane"
elif [[ -n "${HOME:-}" ]]; then
	cache="$HOME/.cache/tenantplane"
else
	cache="${TMPDIR:-/tmp}/tenantplane-cache"
fi

all=(kube-apiserver kube-controller-manager kube-scheduler etcd kwok metrics-server stripe-mock golangci-lint)

kube_ldflags="-X k8s.io/component-base/version.gitVersion=$KUBE_VERSION"
kube_ldflags+=" -X k8s.io/component-base/version.gitMajor=$(cut -d. -f1 <<<"${KUBE_VERSION#v}")"
kube_ldflags+=" -X k8s.io/component-base/version.gitMinor=$(cut -d. -f2 <<<"${KUBE_VERSION#v}")"
kube_ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"

# spec NAME sets module (folder under tools/), main module path that carries
# the version, package, version, ldflags and note for the tool NAME.
spec() {
	note=""
	case "$1" in
	kube-apiserver | kube-controller-manager | kube-scheduler)
		module=kube path=k8s.io/kubernetes pkg="k8s.io/kubernetes/cmd/$1"
		version=$KUBE_VERSION ldflags=$kube_ldflags note=" (first build takes minutes)"
		;;
	etcd)
		module=etcd path=go.etcd.io/etcd/server/v3 pkg=go.etcd.io/etcd/server/v3
		version=$ETCD_VERSION ldflags=""
		;;
	kwok)
		module=kwok path=sigs.k8s.io/kwok pkg=sigs.k8s.io/kwok/cmd/kwok
		version=$KWOK_VERSION ldflags="-X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}"
		;;
	metrics-server)
		module=metrics-server path=sigs.k8s.io/metrics-server pkg=sigs.k8s.io/metrics-server/cmd/metrics-server
		version=$METRICS_SERVER_VERSION
		ldflags="-X k8s.io/client-go/pkg/version.gitVersion=$METRICS_SERVER_VERSION"
		;;
	stripe-mock)
		module=stripe-mock path=github.com/stripe/stripe-mock pkg=github.com/stripe/stripe-mock
		version=$STRIPE_MOCK_VERSION ldflags="-X main.version=${STRIPE_MOCK_VERSION#v}"
		;;
	golangci-lint)
		module=golangci-lint path=github.com/golangci/golangci-lint/v2
		pkg=github.com/golangci/golangci-lint/v2/cmd/golangci-lint
		version=$GOLANGCI_LINT_VERSION ldflags="-X main.version=${GOLANGCI_LINT_VERSION#v}"
		;;
	*)
		echo "install.sh: unknown tool $1 (known: ${all[*]})" >&2
		exit 2
		;;
	esac
}

# check_pin fails when versions.env and the module's go.mod disagree, so the
# folder name in the cache never lies about what was built.
check_pin() {
	local pinned
	pinned=$(awk -v p="$path" '$1 == p && $2 ~ /^v/ { print $2; exit }' "$tools_dir/$module/go.mod")
	if [[ "$pinned" != "$version" ]]; then
		echo "install.sh: tools/versions.env says $1 $version but tools/$module/go.mod requires $path ${pinned:-nothing}" >&2
		exit 1
	fi
}

# kwok_configs copies, next to the kwok binary, the kwok Stage files that
# make fake Nodes ready, keep their leases and move Pods through their
# phases (stages/), and the Metric that serves each fake Node's kubelet
# resource metrics for metrics-server (metrics/).
kwok_configs() {
	local dir=$1 src
	src=$(GOWORK=off GOFLAGS=-mod=readonly go list -C "$tools_dir/kwok" -m -f '{{.Dir}}' sigs.k8s.io/kwok)
	rm -rf "$dir/stages.tmp" "$dir/metrics.tmp"
	mkdir -p "$dir/stages.tmp" "$dir/metrics.tmp"
	cp "$src/kustomize/stage/node/fast/node-initialize.yaml" \
		"$src/kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml" \
		"$src"/kustomize/stage/pod/general/pod-*.yaml "$dir/stages.tmp/"
	cp "$src/kustomize/metrics/resource/metrics-resource.yaml" "$dir/metrics.tmp/"
	chmod -R u+w "$dir/stages.tmp" "$dir/metrics.tmp"
	rm -rf "$dir/stages" "$dir/metrics"
	mv "$dir/stages.tmp" "$dir/stages"
	mv "$dir/metrics.tmp" "$dir/metrics"
}

# kwok_configs_present reports whether kwok_configs has run in dir.
kwok_configs_present() {
	[[ -d "$1/stages" && -f "$1/metrics/metrics-resource.yaml" ]]
}

install_one() {
	local name=$1
	spec "$name"
	check_pin "$name"
	local dir="$cache/bin/$name-$version"
	local bin="$dir/$name"
	if [[ -x "$bin" && "$name" == kwok ]] && ! kwok_configs_present "$dir"; then
		kwok_configs "$dir"
		echo "copied   kwok $version configs: $dir"
	fi
	if [[ -x "$bin" ]]; then
		echo "ok       $name $version"
		return
	fi
	echo "building $name $version$note…"
	local start=$SECONDS
	mkdir -p "$dir"
	# -C builds inside the tool's own module, so its go.mod and go.sum pin
	# every dependency; GOWORK=off and -mod=readonly keep anything else from
	# changing that.
	# -s -w drops debug information nobody reads here: a third smaller, and
	# quicker to link.
	# A cold build of the Kubernetes programs is silent for minutes: say
	# every 20 seconds that it is still going.
	(
		while sleep 20; do echo "         … still building $name ($((SECONDS - start))s)"; done
	) &
	local ticker=$!
	if ! GOWORK=off GOFLAGS=-mod=readonly go build -C "$tools_dir/$module" -ldflags "-s -w $ldflags" -o "$bin.tmp" "$pkg"; then
		kill "$ticker" 2>/dev/null || true
		exit 1
	fi
	kill "$ticker" 2>/dev/null || true
	wait "$ticker" 2>/dev/null || true
	if [[ "$name" == kwok ]]; then
		kwok_configs "$dir"
	fi
	mv "$bin.tmp" "$bin"
	echo "built    $name $version in $((SECONDS - start))s: $bin"
}

# --path NAME prints where NAME is (or will be) installed, and builds nothing.
if [[ "${1:-}" == --path ]]; then
	spec "${2:?install.sh --path needs a tool name}"
	echo "$cache/bin/$2-$version/$2"
	exit 0
fi
if [[ $# -eq 0 ]]; then
	set -- "${all[@]}"
fi
# Check every name and pin before building anything.
for name in "$@"; do
	spec "$name"
	check_pin "$name"
done
mkdir -p "$cache/bin"
# Two runs at once (two terminals, or CI and a developer) would build the same
# thing twice; the lock makes the second wait and then find it built.
if command -v flock >/dev/null; then
	exec 9>"$cache/bin/.install.lock"
	flock 9
fi
for name in "$@"; do
	install_one "$name"
done
