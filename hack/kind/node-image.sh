#!/usr/bin/env bash
# Builds the kind node image for Kubernetes v1.34.4 on this machine, without any image registry,
# into the Docker engine at DOCKER_HOST (hack/kind.sh's private dockerd), and prints its name.
# kind's own `kind build node-image` pulls kindnetd, the storage provisioner, etcd, CoreDNS and
# pause from registries; here every piece is built or installed from what this machine reaches:
#   - the base: Debian 12 debootstrapped with systemd, containerd, runc, CNI plugins and iptables,
#     plus kind's base files (entrypoint, units, sysctls) from the kind module's images/base/files;
#   - kubeadm, kubelet, kubectl and the control plane's images (kube-apiserver,
#     kube-controller-manager, kube-scheduler, kube-proxy, etcd, pause) from
#     hack/build-control-plane.sh --kind; CoreDNS and crictl from their Go modules;
#   - the images pre-imported into the node's containerd under the names kubeadm asks for;
#   - a bridge CNI config from containernetworking-plugins in place of kindnetd (one node).
# Cached by content under ~/.cache/cloudsso-mfa-operator/kind/; rebuilt when any input changes.
set -euo pipefail
HACK_DIR=$(cd "$(dirname "$0")/.." && pwd)
KIND_DIR="$HACK_DIR/kind"
CACHE_ROOT=${CLOUDSSO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cloudsso-mfa-operator}
KIND_CACHE="$CACHE_ROOT/kind"
K8S_VERSION=${K8S_VERSION:-v1.34.4}
KIND_VERSION=${KIND_VERSION:-v0.33.0}
COREDNS_VERSION=${COREDNS_VERSION:-v1.12.1}
CRICTL_VERSION=${CRICTL_VERSION:-v1.34.0}
DEBIAN_SUITE=bookworm
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# The node's pod range: must equal the podSubnet hack/kind.sh gives kind (one node: its /24).
POD_CIDR=${KIND_NODE_POD_CIDR:-10.211.0.0/24}
# What kubeadm v1.34 asks for (`kubeadm config images list`); etcd is the control plane's build.
ETCD_TAG=3.6.5-0
COREDNS_TAG=$COREDNS_VERSION
PAUSE_TAG=3.10.1
BASE_PACKAGES=systemd,systemd-sysv,dbus,conntrack,iptables,nftables,iproute2,ethtool,util-linux,mount,kmod,libseccomp2,pigz,bash,ca-certificates,curl,jq,procps,containerd,runc,containernetworking-plugins,socat
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod DOCKER_BUILDKIT=0
log() { echo "[kind-node-image] $*" >&2; }
die() { echo "[kind-node-image] error: $*" >&2; exit 1; }

((EUID == 0)) || die "building the node image needs root (debootstrap, file ownership)"
[[ -n ${DOCKER_HOST:-} ]] || die "DOCKER_HOST is not set (hack/kind.sh up starts the Docker engine and sets it)"
mkdir -p "$KIND_CACHE/bin" "$KIND_CACHE/images"

# A Go command from its module, in a throwaway wrapper module; the Go build cache is the default one.
go_build() {
  local out=$1 pkg=$2 version=$3 ldflags=${4:-}
  [[ -x $out ]] && return 0
  command -v go >/dev/null || die "the Go toolchain is required to build $pkg"
  local mod; mod=$(mktemp -d)
  printf 'module cloudsso-mfa-operator/hack/kind/build\n\ngo 1.26.0\n' >"$mod/go.mod"
  log "building $pkg@$version"
  (cd "$mod" && nice -n 10 go get "$pkg@$version" >&2 && nice -n 10 go build -trimpath -ldflags "-s -w $ldflags" -o "$out.tmp" "$pkg") \
    || { rm -rf "$mod"; die "go build $pkg@$version failed"; }
  mv "$out.tmp" "$out"; rm -rf "$mod"
}

# kind's module source: its base image files (entrypoint, systemd units, sysctls).
kind_source() {
  local dir
  dir=$(cd "$KIND_CACHE" && go mod download -json "sigs.k8s.io/kind@$KIND_VERSION" 2>/dev/null | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
  [[ -d $dir/images/base/files ]] || die "no images/base/files in sigs.k8s.io/kind@$KIND_VERSION (go mod download failed?)"
  echo "$dir"
}

# The Debian base, debootstrapped once and kept as a tar.
base_tar() {
  local key tar
  key=$(echo "$DEBIAN_SUITE $BASE_PACKAGES" | sha256sum | cut -c1-12)
  tar="$KIND_CACHE/base-$DEBIAN_SUITE-$key.tar"
  if [[ ! -f $tar ]]; then
    command -v debootstrap >/dev/null || die "debootstrap is missing (apt-get install debootstrap)"
    local root="$KIND_CACHE/base.tmp"
    rm -rf "$root"; mkdir -p "$root"
    log "debootstrapping Debian $DEBIAN_SUITE with systemd and containerd (about 3 minutes)"
    nice -n 10 debootstrap --variant=minbase --include="$BASE_PACKAGES" "$DEBIAN_SUITE" "$root" "$DEBIAN_MIRROR" \
      >"$KIND_CACHE/debootstrap.log" 2>&1 || die "debootstrap failed; see $KIND_CACHE/debootstrap.log"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" --numeric-owner -cf "$tar.tmp" . && mv "$tar.tmp" "$tar"
    rm -rf "$root"
  fi
  echo "$tar"
}

sha() { sha256sum "$@" | sha256sum | cut -c1-12; }

bin=$("$HACK_DIR/build-control-plane.sh" --kind) || die "hack/build-control-plane.sh --kind failed"
go_build "$KIND_CACHE/bin/coredns-$COREDNS_VERSION" github.com/coredns/coredns "$COREDNS_VERSION"
go_build "$KIND_CACHE/bin/crictl-$CRICTL_VERSION" sigs.k8s.io/cri-tools/cmd/crictl "$CRICTL_VERSION" \
  "-X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION"
base=$(base_tar)
src=$(kind_source)

# The image's name carries a digest of every input, so a changed input never hides behind a tag.
inputs=("$base" "$bin"/{kubeadm,kubelet,kubectl,kube-apiserver,kube-controller-manager,kube-scheduler,kube-proxy,etcd,pause}
  "$KIND_CACHE/bin/coredns-$COREDNS_VERSION" "$KIND_CACHE/bin/crictl-$CRICTL_VERSION" "$0" "$KIND_DIR"/node/*
  "$HACK_DIR/oci-image.py")
key=$( { sha "${inputs[@]}"; echo "$POD_CIDR $src"; } | sha256sum | cut -c1-12)
image="cloudsso.local/kind-node:$K8S_VERSION-$key"
if docker image inspect "$image" >/dev/null 2>&1; then
  echo "$image"; exit 0
fi
log "building $image"
started=$SECONDS
work="$KIND_CACHE/node.tmp"
ctd_pid=""
cleanup() {
  [[ -n $ctd_pid ]] && kill "$ctd_pid" 2>/dev/null && wait "$ctd_pid" 2>/dev/null || true
  rm -rf "$work" /run/cloudsso-kind/build-containerd
}
trap cleanup EXIT
rm -rf "$work"; mkdir -p "$work/rootfs" "$work/images"
root="$work/rootfs"
tar -C "$root" -xf "$base"

# --- the component images -------------------------------------------------------------------
# Static binaries: one layer each, written by the project's own OCI writer.
oci() { python3 "$HACK_DIR/oci-image.py" --ref "$1" --out "$work/images/$2.tar" "${@:3}" >/dev/null; }
for component in kube-apiserver kube-controller-manager kube-scheduler; do
  oci "registry.k8s.io/$component:$K8S_VERSION" "$component" --file "$bin/$component:/usr/local/bin/$component:0755"
done
oci "registry.k8s.io/etcd:$ETCD_TAG" etcd --file "$bin/etcd:/usr/local/bin/etcd:0755" --dir /var/lib/etcd:0700
oci "registry.k8s.io/coredns/coredns:$COREDNS_TAG" coredns --file "$KIND_CACHE/bin/coredns-$COREDNS_VERSION:/coredns:0755" \
  --entrypoint '["/coredns"]' --port 53  # root: kubeadm's Deployment grants it NET_BIND_SERVICE
oci "registry.k8s.io/pause:$PAUSE_TAG" pause --file "$bin/pause:/pause:0755" --entrypoint '["/pause"]' --user 65535:65535
# kube-proxy runs iptables, iptables-restore and conntrack: the Debian base with kube-proxy added.
docker image inspect "cloudsso.local/kind-base:$key" >/dev/null 2>&1 || docker import "$base" "cloudsso.local/kind-base:$key" >/dev/null
mkdir -p "$work/kube-proxy"
cp "$bin/kube-proxy" "$KIND_DIR/node/iptables-wrapper" "$work/kube-proxy/"
cat >"$work/kube-proxy/Dockerfile" <<EOF
FROM cloudsso.local/kind-base:$key
COPY kube-proxy /usr/local/bin/kube-proxy
COPY iptables-wrapper /usr/sbin/iptables-wrapper
RUN for cmd in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do \
      ln -sf iptables-wrapper /usr/sbin/\$cmd; done
EOF
docker build -q -t "registry.k8s.io/kube-proxy:$K8S_VERSION" "$work/kube-proxy" >/dev/null || die "docker build of the kube-proxy image failed"
docker save -o "$work/images/kube-proxy.tar" "registry.k8s.io/kube-proxy:$K8S_VERSION"
docker rmi "registry.k8s.io/kube-proxy:$K8S_VERSION" >/dev/null

# --- the node's files -----------------------------------------------------------------------
files="$src/images/base/files"
install -m 0755 "$files"/usr/local/bin/* "$root/usr/local/bin/"
mkdir -p "$root/kind/bin" "$root/kind/manifests" "$root/etc/containerd" "$root/etc/systemd/system/kubelet.service.d" \
  "$root/etc/kubernetes/manifests" "$root/etc/cni/net.d"
install -m 0755 "$files"/kind/bin/* "$root/kind/bin/"
install -m 0644 "$files"/kind/README.txt "$root/kind/"
install -m 0644 "$files"/etc/crictl.yaml "$root/etc/"
install -m 0644 "$files"/etc/sysctl.d/* "$root/etc/sysctl.d/"
install -m 0644 "$files"/etc/systemd/system/{kubelet.service,kubelet.slice,undo-mount-hacks.service} "$root/etc/systemd/system/"
install -m 0644 "$files"/etc/systemd/system/kubelet.service.d/* "$root/etc/systemd/system/kubelet.service.d/"
# kind's containerd unit, with Debian's containerd and no OOM score request (no CAP_SYS_RESOURCE).
sed -e 's|^ExecStart=/usr/local/bin/containerd|ExecStart=/usr/bin/containerd|' -e '/^OOMScoreAdjust=/d' \
  "$files/etc/systemd/system/containerd.service" >"$root/etc/systemd/system/containerd.service"
install -m 0644 "$KIND_DIR/node/containerd.toml" "$root/etc/containerd/config.toml"
# The kubelet: kind's flags, and no OOM score below 0 (it would fail here).
echo 'KUBELET_EXTRA_ARGS=--runtime-cgroups=/system.slice/containerd.service --oom-score-adj=0' >"$root/etc/default/kubelet"
install -m 0755 "$bin/kubeadm" "$bin/kubelet" "$bin/kubectl" "$root/usr/bin/"
install -m 0755 "$KIND_CACHE/bin/crictl-$CRICTL_VERSION" "$root/usr/bin/crictl"
echo -n "$K8S_VERSION" >"$root/kind/version"
# The CNI in place of kindnetd: Debian's bridge plugin, the node's pod /24, no masquerade (the
# machine routes the pod range to the node; nothing leaves it).
cat >"$root/etc/cni/net.d/10-cloudsso-bridge.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "cloudsso-kind",
  "plugins": [
    {
      "type": "bridge", "bridge": "cni0", "isGateway": true, "isDefaultGateway": true,
      "ipMasq": false, "hairpinMode": true,
      "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]]}
    },
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
EOF
# kind applies these when the cluster config does not disable them: the CNI is already on the node
# (a ConfigMap records which), and a StorageClass without a provisioner (no test claims volumes).
cat >"$root/kind/manifests/default-cni.yaml" <<EOF
apiVersion: v1
kind: ConfigMap
metadata: {name: cloudsso-kind-cni, namespace: kube-system}
data:
  cni: "bridge plugin from containernetworking-plugins, /etc/cni/net.d/10-cloudsso-bridge.conflist, pods in $POD_CIDR"
EOF
cat >"$root/kind/manifests/default-storage.yaml" <<'EOF'
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
EOF
# systemd as kind's Dockerfile leaves it: only containerd, the kubelet and undo-mount-hacks enabled.
find "$root/lib/systemd/system/sysinit.target.wants/" -name systemd-tmpfiles-setup.service -delete
rm -f "$root"/lib/systemd/system/multi-user.target.wants/* "$root"/etc/systemd/system/*.wants/* \
  "$root"/lib/systemd/system/local-fs.target.wants/* "$root"/lib/systemd/system/sockets.target.wants/*udev* \
  "$root"/lib/systemd/system/sockets.target.wants/*initctl* "$root"/lib/systemd/system/basic.target.wants/*
echo "ReadKMsg=no" >>"$root/etc/systemd/journald.conf"
chroot "$root" systemctl enable kubelet.service containerd.service undo-mount-hacks.service >/dev/null 2>&1 \
  || die "systemctl enable in the node's root failed"
chroot "$root" systemctl mask systemd-binfmt.service >/dev/null 2>&1 || true
: >"$root/etc/machine-id"

# --- the images into the node's containerd ----------------------------------------------------
# A containerd of the host's, for this import only, writing the node's own /var/lib/containerd
# (content and metadata; the node's CRI unpacks on first use, as with kind's own images).
ctd_state=/run/cloudsso-kind/build-containerd
mkdir -p "$ctd_state"
cat >"$ctd_state/config.toml" <<EOF
version = 2
root = "$root/var/lib/containerd"
state = "$ctd_state/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$ctd_state/containerd.sock"
[ttrpc]
  address = "$ctd_state/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$ctd_state/opt"
EOF
containerd --config "$ctd_state/config.toml" >"$work/containerd.log" 2>&1 &
ctd_pid=$!
for _ in $(seq 1 100); do ctr --address "$ctd_state/containerd.sock" version >/dev/null 2>&1 && break; sleep 0.1; done
for archive in "$work"/images/*.tar; do
  ctr --address "$ctd_state/containerd.sock" -n k8s.io images import --no-unpack --all-platforms "$archive" >/dev/null \
    || die "ctr images import $(basename "$archive") failed"
done
ctr --address "$ctd_state/containerd.sock" -n k8s.io images list -q | sed 's/^/[kind-node-image]   /' >&2
kill "$ctd_pid"; wait "$ctd_pid" 2>/dev/null || true; ctd_pid=""

# --- the image ---------------------------------------------------------------------------------
tar -C "$root" --numeric-owner -c . | docker import \
  --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' \
  --change 'ENV container=docker' \
  - "$image" >/dev/null || die "docker import of the node image failed"
docker rmi "cloudsso.local/kind-base:$key" >/dev/null 2>&1 || true
# Older node images (other inputs) only take space in the data root: keep the new one alone.
for old in $(docker images --format '{{.Repository}}:{{.Tag}}' cloudsso.local/kind-node); do
  [[ $old == "$image" ]] || docker rmi "$old" >/dev/null 2>&1 || true
done
log "built $image in $((SECONDS - started))s"
echo "$image"
