#!/usr/bin/env bash
# A kind cluster for the e2e suite, built and run on this machine: Debian's docker.io as a private
# dockerd (own data root, exec root, socket and pidfile, beside the project's containerd), kind
# built from its Go module, a node image for Kubernetes v1.34.4 built here without any registry
# (hack/kind/node-image.sh), and `kind create cluster` with it.
#   hack/kind.sh up      build what is missing (cached), start dockerd, create the cluster, wait
#                        until its node is Ready; print the kubeconfig path
#   hack/kind.sh env     print exports for eval: KUBECONFIG, DOCKER_HOST, KIND_CLUSTER_NAME,
#                        NODE_HOST_IP (where pods on kind reach this machine), PATH with kind,
#                        kubectl and helm
#   hack/kind.sh load ARCHIVE
#                        `kind load image-archive ARCHIVE` (e.g. hack/image.sh --archive)
#   hack/kind.sh restart-apiserver [SECONDS]
#                        take kube-apiserver's static pod away for SECONDS, then back (for tests
#                        that clients recover from an API server restart)
#   hack/kind.sh down    delete the cluster, stop dockerd, and remove every process, mount,
#                        bridge, route and iptables rule `up` made
# With KIND_DOCKER=system, the Docker engine already running (a laptop's) is used as it is: no
# private dockerd and none of the network guards below (only the two routes to the node).
#
# Network safety (private dockerd): every packet stays on this machine. Before dockerd starts,
# the kind network's range, the pod range and the service range are blackholed and iptables drops
# anything forwarded between kind's bridge and another interface; dockerd runs with
# --ip-masq=false, --iptables=false, --ip-forward=false and no default bridge, and its DNS and
# proxy point at loopback, so it never pulls nor forwards a lookup. Ranges (chosen apart from
# hack/local-cluster.sh's 10.244.0.0/16 and 10.0.0.0/16): kind network 10.210.0.0/24 (this
# machine 10.210.0.1 on bridge cssokind0), pods 10.211.0.0/16, services 10.212.0.0/16; the
# machine routes the node's pod /24 and the services to the node, more specific than the guards.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
STATE="$ROOT/.local/kind"
CACHE_ROOT=${CLOUDSSO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cloudsso-mfa-operator}
KIND_CACHE="$CACHE_ROOT/kind"
KIND_VERSION=${KIND_VERSION:-v0.33.0}
KIND_BIN="$KIND_CACHE/bin/kind-$KIND_VERSION"
CLUSTER=${KIND_CLUSTER_NAME:-cloudsso}
DOCKER_MODE=${KIND_DOCKER:-private}
# The private dockerd: short runtime paths (unix sockets are limited to 108 bytes); its data root
# in the cache, so the node image survives `down` and a warm `up` takes seconds.
RUN_DIR=/run/cloudsso-kind
DOCKER_SOCK="$RUN_DIR/docker.sock"
CONTAINERD_SOCK="$RUN_DIR/containerd/containerd.sock"
DOCKER_DATA="$KIND_CACHE/docker"
CONTAINERD_ROOT="$KIND_CACHE/containerd"
BRIDGE=cssokind0
KIND_NETWORK=kind
NETWORK_SUBNET=10.210.0.0/24
NETWORK_GATEWAY=10.210.0.1
NETWORK_GUARD=10.210.0.0/16
POD_SUBNET=10.211.0.0/16
NODE_POD_CIDR=10.211.0.0/24
SERVICE_SUBNET=10.212.0.0/16
RULE_COMMENT=cloudsso-kind
log() { echo "[kind] $*" >&2; }
die() { echo "[kind] error: $*" >&2; exit 1; }

private() { [[ $DOCKER_MODE == private ]]; }
docker_host() { if private; then echo "unix://$DOCKER_SOCK"; else echo "${DOCKER_HOST:-unix:///var/run/docker.sock}"; fi; }
# Debian's docker.io client (20.10) for its dockerd, ahead of any other docker on PATH.
tools_path() { echo "$STATE/bin:$PATH"; }
dk() { DOCKER_HOST=$(docker_host) PATH=$(tools_path) docker "$@"; }
kind_() { DOCKER_HOST=$(docker_host) PATH=$(tools_path) KIND_EXPERIMENTAL_PROVIDER=docker "$KIND_BIN" "$@"; }
pid_alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
node_name() { echo "$CLUSTER-control-plane"; }

cluster_running() {
  [[ -f $STATE/kubeconfig ]] || return 1
  if private; then pid_alive "$STATE/dockerd.pid" || return 1; fi
  [[ $(dk inspect -f '{{.State.Running}}' "$(node_name)" 2>/dev/null) == true ]]
}

# ---------------------------------------------------------------------------------------------
# What `up` needs, installed or built when missing.

install_packages() {
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  [[ -x /usr/bin/docker ]] || missing+=(docker.io)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v iptables >/dev/null || missing+=(iptables)
  command -v ip >/dev/null || missing+=(iproute2)
  command -v containerd >/dev/null || missing+=(containerd)
  ((${#missing[@]})) || return 0
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  log "installing Debian packages: ${missing[*]}"
  # docker.io's postinst would start the machine's own dockerd (docker0, masquerade): refuse it.
  local guard=false
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; guard=true
  fi
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null) \
    || { $guard && rm -f /usr/sbin/policy-rc.d; die "apt-get install ${missing[*]} failed"; }
  $guard && rm -f /usr/sbin/policy-rc.d
  return 0
}

build_kind() {
  [[ -x $KIND_BIN ]] && return 0
  command -v go >/dev/null || die "the Go toolchain is required to build kind"
  local mod; mod=$(mktemp -d)
  printf 'module cloudsso-mfa-operator/hack/kind/build\n\ngo 1.26.0\n' >"$mod/go.mod"
  log "building kind $KIND_VERSION from its Go module"
  mkdir -p "$KIND_CACHE/bin"
  (cd "$mod" && export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod \
    && nice -n 10 go get "sigs.k8s.io/kind@$KIND_VERSION" >&2 \
    && nice -n 10 go build -trimpath -ldflags "-s -w" -o "$KIND_BIN.tmp" sigs.k8s.io/kind) \
    || { rm -rf "$mod"; die "building kind failed"; }
  mv "$KIND_BIN.tmp" "$KIND_BIN"; rm -rf "$mod"
}

# ---------------------------------------------------------------------------------------------
# The private dockerd and its network.

# Does root hold CAP_SYS_RESOURCE (bit 24) in its bounding set? Without it runc needs the wrapper.
has_sys_resource() { (( (0x$(awk '/^CapBnd/ {print $2}' /proc/self/status) >> 24) & 1 )); }

preflight() {
  ((EUID == 0)) || die "hack/kind.sh needs root (a private dockerd, routes and iptables rules)"
  if [[ -n ${KIND_API_PORT:-} ]]; then
    [[ $KIND_API_PORT =~ ^[0-9]+$ ]] && ((KIND_API_PORT > 0 && KIND_API_PORT < 65536)) \
      || die "KIND_API_PORT=$KIND_API_PORT is not a port number"
    python3 -c 'import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", int(sys.argv[1])))' "$KIND_API_PORT" 2>/dev/null \
      || die "port $KIND_API_PORT (the API server, from KIND_API_PORT) is already in use on this machine"
  fi
  private || return 0
  [[ -S $DOCKER_SOCK ]] && DOCKER_HOST="unix://$DOCKER_SOCK" /usr/bin/docker version >/dev/null 2>&1 \
    && die "$DOCKER_SOCK is in use: a private dockerd from another checkout runs (its hack/kind.sh down stops it)"
  ip link show "$BRIDGE" >/dev/null 2>&1 \
    && die "bridge $BRIDGE already exists: a kind cluster from another checkout runs (its hack/kind.sh down removes it)"
  local route
  route=$(ip -4 route show | grep -vE "^blackhole ($NETWORK_GUARD|$POD_SUBNET|$SERVICE_SUBNET)( |$)" \
    | grep -E '^(10\.210\.|10\.211\.|10\.212\.)' | head -1 || true)
  [[ -z $route ]] || die "this machine already routes part of kind's ranges (10.210-212.0.0/16): '$route'"
}

# The guards go in before dockerd starts; the bridge's own route is more specific.
network_up() {
  : >"$STATE/network.enabled"
  ip route replace blackhole "$NETWORK_GUARD"
  ip route replace blackhole "$POD_SUBNET"
  ip route replace blackhole "$SERVICE_SUBNET"
  iptables -I FORWARD -i "$BRIDGE" ! -o "$BRIDGE" -m comment --comment "$RULE_COMMENT" -j DROP
  iptables -I FORWARD -o "$BRIDGE" ! -i "$BRIDGE" -m comment --comment "$RULE_COMMENT" -j DROP
  # kind mounts the host's /lib/modules into the node; docker would create it here if missing.
  if [[ ! -e /lib/modules ]]; then mkdir -p /lib/modules; : >"$STATE/lib-modules.created"; fi
}

start_dockerd() {
  mkdir -p "$RUN_DIR/containerd" "$DOCKER_DATA" "$CONTAINERD_ROOT" "$STATE/logs" "$STATE/bin"
  ln -sf /usr/bin/docker "$STATE/bin/docker"
  cat >"$STATE/containerd.toml" <<EOF
# containerd of hack/kind.sh's private dockerd only: its own root, state and socket; no CRI.
version = 2
root = "$CONTAINERD_ROOT"
state = "$RUN_DIR/containerd/state"
oom_score = 0
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$RUN_DIR/containerd/opt"
EOF
  setsid containerd --config "$STATE/containerd.toml" >>"$STATE/logs/containerd.log" 2>&1 </dev/null &
  echo $! >"$STATE/containerd.pid"
  local deadline=$((SECONDS + 30))
  until ctr --address "$CONTAINERD_SOCK" version >/dev/null 2>&1; do
    pid_alive "$STATE/containerd.pid" || die "containerd exited: $(tail -3 "$STATE/logs/containerd.log")"
    ((SECONDS < deadline)) || die "containerd not serving after 30s; see $STATE/logs/containerd.log"
    sleep 0.2
  done
  local runtime=()
  if ! has_sys_resource; then
    # runc refuses --privileged without CAP_SYS_RESOURCE in the bounding set: drop just that one.
    install -m 0755 "$ROOT/hack/kind/runc-wrapper" "$STATE/runc-wrapper"
    runtime=(--add-runtime "cloudsso-runc=$STATE/runc-wrapper" --default-runtime cloudsso-runc)
    log "root lacks CAP_SYS_RESOURCE: runc runs through hack/kind/runc-wrapper"
  fi
  echo '{}' >"$STATE/daemon.json"
  # A pull or a lookup would leave the machine: the proxy and DNS are loopback, so both fail here.
  HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY= \
  setsid dockerd --config-file "$STATE/daemon.json" \
    --host "unix://$DOCKER_SOCK" --pidfile "$STATE/dockerd.pid.docker" \
    --data-root "$DOCKER_DATA" --exec-root "$RUN_DIR/docker" --containerd "$CONTAINERD_SOCK" \
    --bridge none --iptables=false --ip-masq=false --ip-forward=false \
    --dns 127.0.0.1 --oom-score-adjust 0 --storage-driver overlay2 --userland-proxy=true \
    --log-driver json-file "${runtime[@]}" >>"$STATE/logs/dockerd.log" 2>&1 </dev/null &
  echo $! >"$STATE/dockerd.pid"
  deadline=$((SECONDS + 60))
  until dk version >/dev/null 2>&1; do
    pid_alive "$STATE/dockerd.pid" || die "dockerd exited: $(tail -3 "$STATE/logs/dockerd.log")"
    ((SECONDS < deadline)) || die "dockerd not serving after 60s; see $STATE/logs/dockerd.log"
    sleep 0.3
  done
  # kind uses an existing network of its name as it is: ours, on our bridge and range.
  dk network create --driver bridge --subnet "$NETWORK_SUBNET" --gateway "$NETWORK_GATEWAY" \
    -o "com.docker.network.bridge.name=$BRIDGE" -o com.docker.network.bridge.enable_ip_masquerade=false \
    -o com.docker.network.driver.mtu=1500 "$KIND_NETWORK" >/dev/null || die "docker network create $KIND_NETWORK failed"
}

# ---------------------------------------------------------------------------------------------

write_kind_config() {
  local port=${KIND_API_PORT:-0}
  cat >"$STATE/kind-config.yaml" <<EOF
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
networking:
  ipFamily: ipv4
  apiServerAddress: 127.0.0.1
  apiServerPort: $port
  podSubnet: $POD_SUBNET
  serviceSubnet: $SERVICE_SUBNET
  # The node image carries a bridge CNI config (kindnetd cannot be had here).
  disableDefaultCNI: true
  kubeProxyMode: iptables
nodes:
- role: control-plane
kubeadmConfigPatches:
- |
  kind: KubeletConfiguration
  # Root here lacks CAP_SYS_RESOURCE: no OOM score below 0. (kind's own config already keeps
  # images from garbage collection, which matters here: none can be pulled again.)
  oomScoreAdj: 0
- |
  kind: KubeProxyConfiguration
  oomScoreAdj: 0
EOF
}

wait_node_ready() {
  local kubectl=$1 deadline=$((SECONDS + 180))
  until [[ $("$kubectl" --kubeconfig "$STATE/kubeconfig" get node "$(node_name)" \
      -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]; do
    ((SECONDS < deadline)) || die "node $(node_name) not Ready after 180s (hack/kind.sh env; kubectl describe node)"
    sleep 1
  done
  until "$kubectl" --kubeconfig "$STATE/kubeconfig" get serviceaccount default -n default >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "no default ServiceAccount after 180s"
    sleep 0.5
  done
  "$kubectl" --kubeconfig "$STATE/kubeconfig" -n kube-system rollout status deployment/coredns --timeout 120s >/dev/null 2>&1 \
    || log "warning: CoreDNS is not rolled out yet"
}

up() {
  [[ -z ${1:-} ]] || die "usage: up (no arguments)"
  ((EUID == 0)) || die "hack/kind.sh needs root (a private dockerd, routes and iptables rules)"
  cluster_running && die "kind cluster '$CLUSTER' is already up (hack/kind.sh env to use it, hack/kind.sh down to stop it)"
  if [[ -d $STATE ]]; then
    log "cleaning up what a previous run left"
    down_all quiet
  fi
  preflight
  local started=$SECONDS
  install_packages
  build_kind
  # Everything built before anything runs: the Go and Debian steps are the slow ones.
  mkdir -p "$STATE/logs" "$STATE/bin"
  : >"$STATE/mode.$DOCKER_MODE"
  local bin; bin=$("$ROOT/hack/build-control-plane.sh" --kind) || die "hack/build-control-plane.sh --kind failed"
  ln -sf "$KIND_BIN" "$STATE/bin/kind"; ln -sf "$bin/kubectl" "$STATE/bin/kubectl"; ln -sf "$bin/helm" "$STATE/bin/helm"
  if private; then
    network_up
    start_dockerd
  else
    ln -sf "$(command -v docker)" "$STATE/bin/docker"
  fi
  local image
  image=$(DOCKER_HOST=$(docker_host) PATH=$(tools_path) "$ROOT/hack/kind/node-image.sh") || die "hack/kind/node-image.sh failed"
  write_kind_config
  log "kind create cluster --name $CLUSTER --image $image"
  local created=$SECONDS
  kind_ create cluster --name "$CLUSTER" --image "$image" --config "$STATE/kind-config.yaml" \
    --kubeconfig "$STATE/kubeconfig" --retain >>"$STATE/logs/kind-create.log" 2>&1 \
    || die "kind create cluster failed: $(grep -m1 -iE 'error|fail' "$STATE/logs/kind-create.log" || tail -1 "$STATE/logs/kind-create.log") (full log: $STATE/logs/kind-create.log; hack/kind.sh down cleans up)"
  local node_ip
  node_ip=$(dk inspect -f "{{(index .NetworkSettings.Networks \"$KIND_NETWORK\").IPAddress}}" "$(node_name)")
  echo "$node_ip" >"$STATE/node.ip"
  # This machine reaches the pods and the Services through the node (the e2e tests scrape a
  # ClusterIP, and pods answer this machine without masquerade); more specific than the guards.
  ip route replace "$NODE_POD_CIDR" via "$node_ip"
  ip route replace "$SERVICE_SUBNET" via "$node_ip"
  : >"$STATE/routes.enabled"
  if private; then
    echo "$NETWORK_GATEWAY" >"$STATE/node-host.ip"
  else
    dk network inspect "$KIND_NETWORK" -f '{{range .IPAM.Config}}{{if .Gateway}}{{.Gateway}} {{end}}{{end}}' | awk '{print $1}' >"$STATE/node-host.ip"
  fi
  wait_node_ready "$bin/kubectl"
  log "cluster '$CLUSTER' Ready in $((SECONDS - created))s (up: $((SECONDS - started))s); node $node_ip, pods reach this machine at $(cat "$STATE/node-host.ip")"
  echo "$STATE/kubeconfig"
}

# ---------------------------------------------------------------------------------------------

stop_pidfile() {
  local file=$1 pid
  [[ -f $file ]] || return 0
  pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

# The shims of our containerd (found by its socket), and the processes of containers they ran.
shim_pids() { pgrep -f "containerd-shim.*-address $CONTAINERD_SOCK" 2>/dev/null || true; }
our_mounts() { findmnt -rn -o TARGET | grep -E "^($RUN_DIR|$DOCKER_DATA|$CONTAINERD_ROOT)(/|$)" | sort -r || true; }

network_down() {
  local rule
  while rule=$(iptables -S FORWARD 2>/dev/null | grep -F -- "--comment $RULE_COMMENT" | head -1) && [[ -n $rule ]]; do
    eval "iptables ${rule/-A/-D}" || break
  done
  ip route del "$NODE_POD_CIDR" dev "$BRIDGE" 2>/dev/null || true
  ip route del "$SERVICE_SUBNET" dev "$BRIDGE" 2>/dev/null || true
  ip link del "$BRIDGE" 2>/dev/null || true
  ip route del blackhole "$NETWORK_GUARD" 2>/dev/null || true
  ip route del blackhole "$POD_SUBNET" 2>/dev/null || true
  ip route del blackhole "$SERVICE_SUBNET" 2>/dev/null || true
  if [[ -f $STATE/lib-modules.created ]]; then rmdir /lib/modules 2>/dev/null || true; fi
}

leftovers() {
  local left=()
  pid_alive "$STATE/dockerd.pid" && left+=("dockerd")
  pid_alive "$STATE/containerd.pid" && left+=("containerd")
  [[ -n $(shim_pids) ]] && left+=("containerd shims $(shim_pids | tr '\n' ' ')")
  pgrep -f "$RUN_DIR/" >/dev/null 2>&1 && left+=("processes $(pgrep -f "$RUN_DIR/" | tr '\n' ' ')")
  [[ -n $(our_mounts) ]] && left+=("mounts $(our_mounts | tr '\n' ' ')")
  ip link show "$BRIDGE" >/dev/null 2>&1 && left+=("bridge $BRIDGE")
  ip route show | grep -qE "^blackhole ($NETWORK_GUARD|$POD_SUBNET|$SERVICE_SUBNET)|dev $BRIDGE" && left+=("routes")
  iptables -S FORWARD 2>/dev/null | grep -qF "$RULE_COMMENT" && left+=("iptables rules")
  ((${#left[@]} == 0)) || die "down left behind: ${left[*]}"
}

down_all() {
  local quiet=${1:-}
  if [[ ! -d $STATE ]]; then
    [[ -n $quiet ]] || log "nothing is running; nothing to stop"
    return 0
  fi
  ((EUID == 0)) || die "hack/kind.sh down needs root (the cluster was started as root)"
  [[ -f $STATE/mode.system ]] && DOCKER_MODE=system
  if dk version >/dev/null 2>&1; then
    [[ -x $KIND_BIN ]] && kind_ delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
    private && dk network rm "$KIND_NETWORK" >/dev/null 2>&1 || true
  fi
  if [[ -f $STATE/routes.enabled && -f $STATE/node.ip ]]; then
    ip route del "$NODE_POD_CIDR" via "$(cat "$STATE/node.ip")" 2>/dev/null || true
    ip route del "$SERVICE_SUBNET" via "$(cat "$STATE/node.ip")" 2>/dev/null || true
  fi
  if private; then
    stop_pidfile "$STATE/dockerd.pid"
    local pid
    for pid in $(shim_pids); do kill -9 "$pid" 2>/dev/null || true; done
    stop_pidfile "$STATE/containerd.pid"
    local mount
    for mount in $(our_mounts); do umount "$mount" 2>/dev/null || umount -l "$mount" 2>/dev/null || true; done
    network_down
    leftovers
    rm -rf "$RUN_DIR"
  fi
  rm -rf "$STATE"
  [[ -n $quiet ]] || log "stopped and removed"
}

env_exports() {
  [[ -f $STATE/kubeconfig ]] || die "no kind cluster is up: hack/kind.sh up"
  [[ -f $STATE/mode.system ]] && DOCKER_MODE=system
  echo "export KUBECONFIG='$STATE/kubeconfig'"
  echo "export DOCKER_HOST='$(docker_host)'"
  echo "export KIND_CLUSTER_NAME='$CLUSTER'"
  echo "export NODE_HOST_IP='$(cat "$STATE/node-host.ip")'"
  echo "export PATH='$STATE/bin':\"\$PATH\""
}

load_archive() {
  local archive=${1:-}
  [[ -n $archive ]] || die "usage: load ARCHIVE"
  [[ -f $archive ]] || die "no image archive at $archive"
  [[ -f $STATE/mode.system ]] && DOCKER_MODE=system
  cluster_running || die "no kind cluster is up: hack/kind.sh up"
  kind_ load image-archive "$archive" --name "$CLUSTER" >&2 || die "kind load image-archive $archive failed"
}

# The API server's static pod out of the kubelet's manifests, SECONDS down, and back; waits until
# it serves again (tests/e2e_apiserver_restart.rs: the operator's watches must reconnect).
restart_apiserver() {
  local pause=${1:-0}
  [[ $pause =~ ^[0-9]+$ ]] || die "usage: restart-apiserver [SECONDS]"
  [[ -f $STATE/mode.system ]] && DOCKER_MODE=system
  cluster_running || die "no kind cluster is up: hack/kind.sh up"
  local node; node=$(node_name)
  local kubectl="$STATE/bin/kubectl" deadline
  dk exec "$node" mv /etc/kubernetes/manifests/kube-apiserver.yaml /etc/kubernetes/kube-apiserver.yaml.stopped
  deadline=$((SECONDS + 60))
  while [[ -n $(dk exec "$node" crictl ps -q --name kube-apiserver 2>/dev/null) ]]; do
    ((SECONDS < deadline)) || die "kube-apiserver still runs 60s after its manifest was removed"
    sleep 0.5
  done
  log "kube-apiserver stopped; starting it again in ${pause}s"
  sleep "$pause"
  dk exec "$node" mv /etc/kubernetes/kube-apiserver.yaml.stopped /etc/kubernetes/manifests/kube-apiserver.yaml
  deadline=$((SECONDS + 120))
  until "$kubectl" --kubeconfig "$STATE/kubeconfig" get --raw /readyz >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "kube-apiserver not serving 120s after its restart"
    sleep 0.5
  done
  log "kube-apiserver serving again"
}

case "${1:-}" in
  up) up "${2:-}" ;;
  restart-apiserver) restart_apiserver "${2:-0}" ;;
  down) down_all ;;
  env) env_exports ;;
  load) load_archive "${2:-}" ;;
  *) echo "usage: $0 up|env|load ARCHIVE|restart-apiserver [SECONDS]|down" >&2; exit 2 ;;
esac
