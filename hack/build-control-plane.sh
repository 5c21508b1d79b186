#!/usr/bin/env bash
# Builds kube-apiserver, kubectl, etcd and helm from their Go modules (no downloads of prebuilt
# binaries: this machine only reaches the Go module proxy) and caches them per version outside the
# work tree. With --node it also builds what a node runs: kubelet, kube-proxy, kube-scheduler,
# kube-controller-manager (same release, same wrapper module) and the pause program of the sandbox
# image (hack/pause/pause.go). With --kind, all of --node and kubeadm (hack/kind/node-image.sh).
# Prints the bin directory on stdout; everything else goes to stderr.
set -euo pipefail
NODE=false
KUBEADM=false
case "${1:-}" in
  --node) NODE=true ;;
  --kind) NODE=true; KUBEADM=true ;;
  "") ;;
  *) echo "usage: $0 [--node|--kind]" >&2; exit 2 ;;
esac

K8S_VERSION=${K8S_VERSION:-v1.34.4}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
HELM_VERSION=${HELM_VERSION:-v4.3.1}
CACHE_ROOT=${CLOUDSSO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cloudsso-mfa-operator}
BIN_DIR="$CACHE_ROOT/controlplane/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION/bin"
HACK_DIR=$(cd "$(dirname "$0")" && pwd)

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
log() { echo "[build-control-plane] $*" >&2; }

CONTROL_PLANE=(kube-apiserver kubectl etcd helm)
NODE_BINARIES=(kubelet kube-proxy kube-scheduler kube-controller-manager pause)
have_all() { local b; for b in "$@"; do [[ -x $BIN_DIR/$b ]] || return 1; done; }
wanted=("${CONTROL_PLANE[@]}"); $NODE && wanted+=("${NODE_BINARIES[@]}"); $KUBEADM && wanted+=(kubeadm)
# Cached: say nothing but the directory, so callers' own messages stay the only lines on stderr.
if have_all "${wanted[@]}"; then
  echo "$BIN_DIR"; exit 0
fi
command -v go >/dev/null || { log "error: the Go toolchain is required (go not on PATH)"; exit 1; }
mkdir -p "$BIN_DIR"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT

# kube-apiserver and kubectl: a wrapper module that replaces every staging module with its published
# v0.x version. The list comes from the release's own go.mod, as it changes between releases.
# The wrapper module and the version stamp, made once per run for every Kubernetes binary.
KUBE_STAMP=""
kubernetes_module() {
  [[ -f $work/k8s/go.mod ]] && return 0
  local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  local staging_version="v0.${K8S_VERSION#v1.}"
  local mod; mod=$(cd "$work" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
  [[ -f $mod ]] || { log "error: could not fetch go.mod of k8s.io/kubernetes@$K8S_VERSION"; exit 1; }
  mkdir -p "$work/k8s"
  {
    echo "module cloudsso-mfa-operator/hack/controlplane"
    echo
    grep -E '^go |^godebug ' "$mod"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    grep -E '^\s+k8s\.io/[a-z0-9-]+ => \./staging/' "$mod" | awk -v v="$staging_version" '{print "\t" $1 " => " $1 " " v}'
    echo ")"
  } >"$work/k8s/go.mod"
  cp "$work/k8s/go.mod" "$HACK_DIR/controlplane.go.mod.generated" 2>/dev/null || true
  local pkg=k8s.io/component-base/version cpkg=k8s.io/client-go/pkg/version
  local stamp="-X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  stamp+=" -X $cpkg.gitVersion=$K8S_VERSION -X $cpkg.gitMajor=1 -X $cpkg.gitMinor=$minor -X $cpkg.gitTreeState=clean"
  stamp+=" -X $pkg.buildDate=1970-01-01T00:00:00Z"
  KUBE_STAMP=$stamp
}

# Builds the named commands of k8s.io/kubernetes/cmd in one `go build`, so shared packages compile once.
build_kubernetes() {
  kubernetes_module
  local cmd pkgs=()
  for cmd in "$@"; do pkgs+=("k8s.io/kubernetes/cmd/$cmd"); done
  (cd "$work/k8s" && go get "${pkgs[@]/%/@$K8S_VERSION}" >&2)
  log "building $* $K8S_VERSION (several minutes on 2 cores)"
  mkdir -p "$work/out"
  (cd "$work/k8s" && go build -trimpath -ldflags "-s -w $KUBE_STAMP" -o "$work/out/" "${pkgs[@]}")
  for cmd in "$@"; do mv "$work/out/$cmd" "$BIN_DIR/$cmd"; done
}

# The sandbox ("pause") program: static, stdlib only, so it needs no module.
build_pause() {
  log "building pause"
  (cd "$HACK_DIR/pause" && go build -trimpath -ldflags "-s -w" -o "$BIN_DIR/pause" ./pause.go)
}

build_etcd() {
  mkdir -p "$work/etcd"
  printf 'module cloudsso-mfa-operator/hack/etcd\n\ngo 1.26.0\n' >"$work/etcd/go.mod"
  (cd "$work/etcd" && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2)
  log "building etcd $ETCD_VERSION"
  (cd "$work/etcd" && go build -trimpath -ldflags "-s -w" -o "$BIN_DIR/etcd" go.etcd.io/etcd/server/v3)
}

build_helm() {
  mkdir -p "$work/helm"
  printf 'module cloudsso-mfa-operator/hack/helm\n\ngo 1.26.0\n' >"$work/helm/go.mod"
  (cd "$work/helm" && go get "helm.sh/helm/v4/cmd/helm@$HELM_VERSION" >&2)
  log "building helm $HELM_VERSION"
  (cd "$work/helm" && go build -trimpath -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" -o "$BIN_DIR/helm" helm.sh/helm/v4/cmd/helm)
}

[[ -x $BIN_DIR/etcd ]] || build_etcd
have_all kube-apiserver kubectl || build_kubernetes kube-apiserver kubectl
[[ -x $BIN_DIR/helm ]] || build_helm
if $NODE; then
  have_all kubelet kube-proxy kube-scheduler kube-controller-manager \
    || build_kubernetes kubelet kube-proxy kube-scheduler kube-controller-manager
  [[ -x $BIN_DIR/pause ]] || build_pause
fi
if $KUBEADM; then
  [[ -x $BIN_DIR/kubeadm ]] || build_kubernetes kubeadm
fi
log "binaries ready in $BIN_DIR"
echo "$BIN_DIR"
