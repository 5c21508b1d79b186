#!/usr/bin/env bash
# The whole test suite, unit and e2e, on a fresh machine: installs what it needs (Debian packages,
# PyPI packages, Go modules for the control plane and the node), checks formatting and lints,
# builds, brings up a real kube-apiserver with a real node (containerd, kubelet, kube-proxy; unless
# KUBECONFIG points at a cluster, e.g. kind), builds the operator's image and imports it into the
# node, runs every test, and stops the cluster it started. Fails loudly at the first failing step.
# CLOUDSSO_NO_NODE=1 leaves the node out (its tests then skip, except under CI=true).
#   hack/test.sh --kind   the same suite against a kind cluster (hack/kind.sh up, or the one up
#                         already), the image loaded with `kind load image-archive`, the emulator
#                         on kind's NODE_HOST_IP; a cluster it brought up it takes down again.
set -euo pipefail
kind=false
case "${1:-}" in
  --kind) kind=true ;;
  "") ;;
  *) echo "usage: $0 [--kind]" >&2; exit 2 ;;
esac
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
CACHE_ROOT=${CLOUDSSO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cloudsso-mfa-operator}
# Builds live outside the clone so that a fresh clone on the same machine starts warm.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE_ROOT/target}
step() { printf '\n==> %s\n' "$*"; }
fail() { printf '\nFAILED: %s\n' "$*" >&2; exit 1; }
started=$SECONDS

step "tools"
missing=()
for tool in openssl curl python3; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if ((${#missing[@]})); then
  pkgs=(); for tool in "${missing[@]}"; do case $tool in python3) pkgs+=(python3 python3-pip) ;; *) pkgs+=("$tool") ;; esac; done
  command -v apt-get >/dev/null || fail "missing ${missing[*]} and no apt-get to install them"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null || fail "apt-get install ${pkgs[*]}"
fi
# promtool and a Prometheus server (Debian's prometheus) for tests/e2e_prometheus.rs, which runs
# its own on loopback: without recommends (node-exporter), and the package's own service (all
# interfaces, :9090) neither started by the install (policy-rc.d) nor enabled for the next boot.
if ! command -v promtool >/dev/null; then
  command -v apt-get >/dev/null || fail "missing promtool and no apt-get to install prometheus"
  policy_rc=/usr/sbin/policy-rc.d; own_policy_rc=false
  [[ -e $policy_rc ]] || { printf '#!/bin/sh\nexit 101\n' >"$policy_rc" && chmod +x "$policy_rc" && own_policy_rc=true; } || fail "cannot write $policy_rc (root?)"
  apt_status=0
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null || apt_status=$?
  ! $own_policy_rc || rm -f "$policy_rc"
  ((apt_status == 0)) || fail "apt-get install prometheus"
  ! command -v systemctl >/dev/null || systemctl disable --quiet prometheus 2>/dev/null || true
  command -v promtool >/dev/null && command -v prometheus >/dev/null || fail "the prometheus package gave no promtool or prometheus"
fi
command -v cargo >/dev/null || fail "cargo (Rust) is required: https://rustup.rs"
# The node: its Debian packages (containerd, runc, CNI plugins, iptables) need root.
node=false
if $kind; then
  ((EUID == 0)) || fail "--kind needs root (hack/kind.sh runs a private dockerd)"
elif [[ -z ${KUBECONFIG:-} && -z ${CLOUDSSO_NO_NODE:-} ]]; then
  ((EUID == 0)) || fail "the local node needs root (or CLOUDSSO_NO_NODE=1 to leave it out)"
  node=true
  node_pkgs=()
  command -v containerd >/dev/null || node_pkgs+=(containerd)
  command -v runc >/dev/null || node_pkgs+=(runc)
  [[ -x /usr/lib/cni/bridge ]] || node_pkgs+=(containernetworking-plugins)
  command -v iptables >/dev/null || node_pkgs+=(iptables)
  command -v ip >/dev/null || node_pkgs+=(iproute2)
  if ((${#node_pkgs[@]})); then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${node_pkgs[@]}" >/dev/null \
      || fail "apt-get install ${node_pkgs[*]}"
  fi
fi
command -v go >/dev/null || [[ -n ${KUBECONFIG:-} ]] || fail "the Go toolchain is required to build kube-apiserver (or set KUBECONFIG to a cluster)"
python3 -m pip install --quiet --disable-pip-version-check -r tests/sdk/requirements.txt 2>&1 | grep -v "running pip as the 'root' user" || true
python3 -c "import alibabacloud_cloudsso20210515, alibabacloud_ims20190815, alibabacloud_sts20150401, aliyunsdkcore, pytest" || fail "the official Alibaba Cloud SDKs did not install (tests/sdk/requirements.txt)"
rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt clippy >/dev/null 2>&1 || true

step "format and lints"
cargo fmt --check || fail "cargo fmt --check (run cargo fmt)"
cargo clippy --all-targets --quiet -- -D warnings || fail "cargo clippy"

step "build"
cargo build --all-targets --quiet || fail "cargo build"

step "control plane"
own_cluster=false
own_kind=false
if $kind; then
  if ! hack/kind.sh env >/dev/null 2>&1; then
    trap 'hack/kind.sh down >/dev/null 2>&1 || true' EXIT
    hack/kind.sh up >/dev/null || fail "hack/kind.sh up"
    own_kind=true
  fi
  eval "$(hack/kind.sh env)"
  export KUBECONFIG NODE_HOST_IP
  step "the operator's image, loaded into kind"
  CLOUDSSO_IMAGE=$(hack/image.sh) || fail "hack/image.sh"
  export CLOUDSSO_IMAGE CLOUDSSO_IMAGE_ARCHIVE="$CACHE_ROOT/images/cloudsso-mfa-operator.oci.tar"
  hack/kind.sh load "$CLOUDSSO_IMAGE_ARCHIVE" || fail "hack/kind.sh load $CLOUDSSO_IMAGE_ARCHIVE"
  echo "    $CLOUDSSO_IMAGE on kind cluster $KIND_CLUSTER_NAME; pods reach this machine at $NODE_HOST_IP"
elif [[ -z ${KUBECONFIG:-} ]]; then
  trap 'hack/local-cluster.sh down >/dev/null 2>&1 || true' EXIT
  if $node; then
    KUBECONFIG=$(hack/local-cluster.sh up --node) || fail "hack/local-cluster.sh up --node"
    eval "$(hack/local-cluster.sh env)"
  else
    KUBECONFIG=$(hack/local-cluster.sh up) || fail "hack/local-cluster.sh up"
  fi
  export KUBECONFIG
  own_cluster=true
fi
if $node; then
  step "the operator's image, imported into the node"
  CLOUDSSO_IMAGE=$(hack/image.sh) || fail "hack/image.sh"
  export CLOUDSSO_IMAGE NODE_HOST_IP CLOUDSSO_IMAGE_ARCHIVE="$CACHE_ROOT/images/cloudsso-mfa-operator.oci.tar"
  echo "    $CLOUDSSO_IMAGE; pods reach this machine at $NODE_HOST_IP"
fi
export KUBECTL=${KUBECTL:-$(hack/build-control-plane.sh 2>/dev/null)/kubectl}
[[ -x $KUBECTL ]] || KUBECTL=$(command -v kubectl) || fail "no kubectl"
"$KUBECTL" version --kubeconfig "$KUBECONFIG" | sed 's/^/    /' || fail "the API server does not answer"

step "Rust tests: unit, integration, e2e against the API server"
set +e +o pipefail
cargo test --all-targets --no-fail-fast 2>&1 | tee "$CACHE_ROOT/cargo-test.log" \
  | grep --line-buffered -E '^(test |     Running|test result|failures:|---- )|panicked|timed out|e2e\]'
cargo_status=${PIPESTATUS[0]}
set -e -o pipefail
((cargo_status == 0)) || fail "cargo test exited $cargo_status (full log: $CACHE_ROOT/cargo-test.log)"

step "the official Python SDKs against the emulator"
CLOUDSSO_EMULATOR_BIN="$CARGO_TARGET_DIR/debug/cloudsso-emulator" python3 -m pytest -q tests/sdk || fail "pytest tests/sdk"

if $own_cluster; then
  # Stopped here, not only by the trap, so a leftover (process, mount, netns, bridge, route) fails CI.
  step "stop the local cluster"
  trap - EXIT
  hack/local-cluster.sh down || fail "hack/local-cluster.sh down"
fi
if $own_kind; then
  step "take the kind cluster down"
  trap - EXIT
  hack/kind.sh down || fail "hack/kind.sh down"
fi
echo "all tests passed in $((SECONDS - started))s"
