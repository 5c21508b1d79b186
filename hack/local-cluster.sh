#!/usr/bin/env bash
# A real kube-apiserver with etcd on loopback, as controller-runtime's envtest runs them, and, on
# request, a real node beside it: containerd + runc, kubelet, kube-proxy, kube-scheduler and
# kube-controller-manager, so that the chart's pods run on this machine.
#   hack/local-cluster.sh up [--node]
#                                build once (cached), start, wait until it serves, print the kubeconfig
#                                path; --node adds the node (root; Debian's containerd, runc,
#                                containernetworking-plugins, iptables) and waits until it is Ready
#   hack/local-cluster.sh env    print exports (KUBECONFIG, PATH with the matching kubectl and helm,
#                                and with a node NODE_HOST_IP, the bridge address pods reach) for eval
#   hack/local-cluster.sh down   stop everything it started and remove its data, processes, mounts,
#                                network namespaces, bridge, routes and iptables rules
#   hack/local-cluster.sh import-image ARCHIVE
#                                import an OCI image archive into the node's containerd
#   hack/local-cluster.sh restart-apiserver [SECONDS]
#                                stop kube-apiserver, wait, start it again on the same port and data
#                                (for tests that clients recover from an API server restart)
# Idempotent: `up` on a running cluster reuses it. RBAC authorization is on.
#
# Network safety (the node): every packet stays on this machine. Before anything starts, the pod
# range and the service range are blackholed; the node's bridge and the service /24 get more
# specific routes, pods get no default route (only the pod /24 and the service /24 through the
# bridge), and an iptables rule drops anything forwarded between the bridge and another interface.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
LOCAL="$ROOT/.local"
STATE="$LOCAL/cluster"
NODE_DIR="$STATE/node"
KUBECONFIG_PATH="$LOCAL/kubeconfig"
CACHE_ROOT=${CLOUDSSO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cloudsso-mfa-operator}
log() { echo "[local-cluster] $*" >&2; }
die() { echo "[local-cluster] error: $*" >&2; exit 1; }

# The node's addresses. The service range is the API server's; the first address is `kubernetes`.
NODE_NAME=cloudsso-node
BRIDGE=cssomfa0
NODE_HOST_IP=10.244.0.1
POD_SUBNET=10.244.0.0/24
POD_RANGE=10.244.0.0/16
SERVICE_RANGE=10.0.0.0/24
SERVICE_GUARD=10.0.0.0/16
PAUSE_IMAGE=registry.local/pause:3.10-local
RULE_COMMENT=cloudsso-local-node
# Where containernetworking-plugins put the CNI plugins on Debian.
CNI_BIN_DIR=${CNI_BIN_DIR:-/usr/lib/cni}
# Sysctls the kubelet sets on start; saved on `up` and put back on `down`.
KUBELET_SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes)

bin_dir() { "$ROOT/hack/build-control-plane.sh" "$@"; }
with_node() { [[ -f $STATE/node.enabled ]]; }
api_host() { cat "$STATE/apiserver.host" 2>/dev/null || echo 127.0.0.1; }
pid_alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

running() {
  [[ -f $STATE/apiserver.pid && -f $STATE/etcd.pid && -f $KUBECONFIG_PATH ]] || return 1
  pid_alive "$STATE/apiserver.pid" && pid_alive "$STATE/etcd.pid" || return 1
  ready
}

ready() {
  local port; port=$(cat "$STATE/apiserver.port" 2>/dev/null) || return 1
  curl -fsS --max-time 2 --cacert "$STATE/pki/ca.crt" --cert "$STATE/pki/admin.crt" --key "$STATE/pki/admin.key" \
    "https://$(api_host):$port/readyz" >/dev/null 2>&1
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }

# A port given by the user (environment) must be free; say which one is taken, in one line.
port_for() {
  local name=$1 var=$2 port=${!2:-}
  if [[ -z $port ]]; then free_port; return; fi
  [[ $port =~ ^[0-9]+$ ]] && ((port > 0 && port < 65536)) || die "$var=$port is not a port number"
  if python3 -c 'import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", int(sys.argv[1])))' "$port" 2>/dev/null; then
    echo "$port"
  else
    die "port $port ($name, from $var) is already in use on this machine"
  fi
}

# One certificate signed by the cluster CA: NAME SUBJECT [EXTENSIONS].
issue_cert() {
  local pki="$STATE/pki" name=$1 subject=$2 ext=${3:-extendedKeyUsage=clientAuth}
  openssl req -newkey rsa:2048 -nodes -subj "$subject" -keyout "$pki/$name.key" -out "$pki/$name.csr" 2>/dev/null
  printf '%s\n' "$ext" >"$pki/$name.ext"
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial -days 365 \
    -extfile "$pki/$name.ext" -out "$pki/$name.crt" 2>/dev/null
}

make_pki() {
  local pki="$STATE/pki"; mkdir -p "$pki"
  openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=local-cluster-ca" \
    -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
  # Serving certificate: loopback, the node's bridge address (pods reach the API server there) and
  # the first service IP (the in-cluster kubernetes Service).
  issue_cert apiserver "/CN=kube-apiserver" \
    "$(printf 'subjectAltName=DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:10.0.0.1,IP:%s\nextendedKeyUsage=serverAuth' "$NODE_HOST_IP")"
  # Admin client certificate in system:masters, as envtest's admin user.
  issue_cert admin "/O=system:masters/CN=admin"
  # Service-account token signing keys.
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
}

# The node's components each get the identity the default RBAC (and the Node authorizer) expects.
make_node_pki() {
  issue_cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME"
  issue_cert kube-proxy "/CN=system:kube-proxy"
  issue_cert kube-scheduler "/CN=system:kube-scheduler"
  issue_cert kube-controller-manager "/CN=system:kube-controller-manager"
}

# kubeconfig FILE USER-CERT-NAME
write_kubeconfig() {
  local file=$1 user=$2 port b64="base64 -w0"
  port=$(cat "$STATE/apiserver.port")
  cat >"$file" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://$(api_host):$port
    certificate-authority-data: $($b64 "$STATE/pki/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $($b64 "$STATE/pki/$user.crt")
    client-key-data: $($b64 "$STATE/pki/$user.key")
contexts:
- name: local
  context: {cluster: local, user: $user}
current-context: local
KUBECONFIG
  chmod 600 "$file"
}

start_apiserver() {
  local bin=$1 etcd_port api_port node_flags=()
  etcd_port=$(cat "$STATE/etcd.port"); api_port=$(cat "$STATE/apiserver.port")
  if with_node; then
    # Pods reach the API server through the `kubernetes` Service, whose endpoint is the advertised
    # address: the bridge's, bound there only (never on an outside interface). The ServiceAccount
    # admission plugin mounts pods' tokens; the Node authorizer scopes the kubelet.
    node_flags=(--bind-address "$NODE_HOST_IP" --advertise-address "$NODE_HOST_IP"
      --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction
      --kubelet-client-certificate "$STATE/pki/admin.crt" --kubelet-client-key "$STATE/pki/admin.key"
      --kubelet-preferred-address-types InternalIP)  # the bridge address: no DNS lookup of the node
  else
    node_flags=(--bind-address 127.0.0.1 --advertise-address 127.0.0.1 --authorization-mode RBAC
      --disable-admission-plugins ServiceAccount)
  fi
  setsid "$bin/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" --secure-port "$api_port" "${node_flags[@]}" \
    --cert-dir "$STATE/pki" --tls-cert-file "$STATE/pki/apiserver.crt" --tls-private-key-file "$STATE/pki/apiserver.key" \
    --client-ca-file "$STATE/pki/ca.crt" \
    --service-cluster-ip-range "$SERVICE_RANGE" --allow-privileged=true \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$STATE/pki/sa.pub" --service-account-signing-key-file "$STATE/pki/sa.key" \
    >>"$STATE/logs/kube-apiserver.log" 2>&1 </dev/null &
  echo $! >"$STATE/apiserver.pid"
}

wait_ready() {
  local deadline=$((SECONDS + 90))
  until ready; do
    pid_alive "$STATE/etcd.pid" || die "etcd exited: $(tail -5 "$STATE/logs/etcd.log")"
    pid_alive "$STATE/apiserver.pid" || die "kube-apiserver exited: $(tail -5 "$STATE/logs/kube-apiserver.log")"
    ((SECONDS < deadline)) || die "kube-apiserver not ready after 90s; see $STATE/logs/kube-apiserver.log"
    sleep 0.5
  done
}

restart_apiserver() {
  local pause=${1:-0}
  running || die "no local cluster is running: hack/local-cluster.sh up"
  local pid; pid=$(cat "$STATE/apiserver.pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -9 "$pid" 2>/dev/null || true
  log "kube-apiserver stopped; starting it again in ${pause}s"
  sleep "$pause"
  start_apiserver "$(bin_dir)"
  wait_ready
  log "kube-apiserver serving again"
}

# ---------------------------------------------------------------------------------------------
# The node.

node_preflight() {
  ((EUID == 0)) || die "--node needs root (containerd, runc, network namespaces, routes)"
  local missing=() tool
  declare -A package=([containerd]=containerd [ctr]=containerd [runc]=runc [iptables]=iptables
    [ip]=iproute2 [findmnt]=util-linux [nsenter]=util-linux [openssl]=openssl [curl]=curl)
  for tool in "${!package[@]}"; do command -v "$tool" >/dev/null || missing+=("${package[$tool]}"); done
  for tool in bridge host-local loopback; do [[ -x $CNI_BIN_DIR/$tool ]] || missing+=(containernetworking-plugins); done
  if ((${#missing[@]})); then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    die "missing Debian package(s) for --node: ${missing[*]} (apt-get install ${missing[*]})"
  fi
  [[ -d /sys/fs/cgroup/memory || -f /sys/fs/cgroup/cgroup.controllers ]] || die "no cgroup filesystem under /sys/fs/cgroup"
  # Refuse ranges that something else on this machine already routes: we would hijack them.
  local route
  route=$(ip -4 route show | grep -vE "^blackhole ($POD_RANGE|$SERVICE_GUARD)|dev $BRIDGE " | \
    grep -E '^(10\.244\.|10\.0\.)' | head -1 || true)
  [[ -z $route ]] || die "this machine already routes part of the node's ranges ($POD_RANGE, $SERVICE_GUARD): '$route'"
  ip link show "$BRIDGE" >/dev/null 2>&1 && die "bridge $BRIDGE already exists: a node from another checkout is running (its hack/local-cluster.sh down removes it)"
  true
}

# The guard goes in before any component starts; the bridge's routes are more specific.
network_up() {
  mkdir -p "$NODE_DIR"
  : >"$NODE_DIR/network.enabled"
  ip route replace blackhole "$POD_RANGE"
  ip route replace blackhole "$SERVICE_GUARD"
  ip link add "$BRIDGE" type bridge
  ip addr add "$NODE_HOST_IP/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  # Host-to-Service traffic leaves on the bridge, so kube-proxy's DNAT applies and an unserved
  # address dies here instead of following the default route.
  ip route replace "$SERVICE_RANGE" dev "$BRIDGE" src "$NODE_HOST_IP"
  iptables -I FORWARD -i "$BRIDGE" ! -o "$BRIDGE" -m comment --comment "$RULE_COMMENT" -j DROP
  iptables -I FORWARD -o "$BRIDGE" ! -i "$BRIDGE" -m comment --comment "$RULE_COMMENT" -j DROP
  local name
  for name in "${KUBELET_SYSCTLS[@]}"; do
    echo "$name=$(sysctl -n "$name" 2>/dev/null)" >>"$NODE_DIR/sysctl.saved"
  done
}

# The node's ports, as globals for write_node_config; chosen before anything starts.
choose_node_ports() {
  kubelet_port=$(port_for kubelet KUBELET_PORT); healthz_port=$(port_for "kubelet healthz" KUBELET_HEALTHZ_PORT)
  proxy_healthz=$(port_for "kube-proxy healthz" KUBE_PROXY_HEALTHZ_PORT); proxy_metrics=$(port_for "kube-proxy metrics" KUBE_PROXY_METRICS_PORT)
  scheduler_port=$(port_for kube-scheduler KUBE_SCHEDULER_PORT); cm_port=$(port_for kube-controller-manager KUBE_CONTROLLER_MANAGER_PORT)
}

write_node_config() {
  local sock="$NODE_DIR/containerd/containerd.sock"
  mkdir -p "$NODE_DIR/containerd" "$NODE_DIR/cni/net.d" "$NODE_DIR/cni/ipam" "$NODE_DIR/kubelet" \
    "$NODE_DIR/pod-logs" "$NODE_DIR/opt"
  cat >"$NODE_DIR/containerd/config.toml" <<EOF
# containerd of the local node only: its own root, state and socket, never the machine's.
version = 2
root = "$NODE_DIR/containerd/root"
state = "$NODE_DIR/containerd/state"
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$NODE_DIR/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # Lowering an OOM score needs CAP_SYS_RESOURCE, which this machine's root lacks: the sandbox's
  # -998 would fail runc; clamp to containerd's own score instead.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN_DIR"
    conf_dir = "$NODE_DIR/cni/net.d"
EOF
  # Pods get the pod /24 on the bridge and a route to the service range through it: no default
  # route, so nothing a pod sends can leave this machine.
  cat >"$NODE_DIR/cni/net.d/10-cloudsso-node.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "cloudsso-node",
  "plugins": [
    {
      "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "isDefaultGateway": false,
      "ipMasq": false, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$NODE_DIR/cni/ipam",
        "ranges": [[{"subnet": "$POD_SUBNET", "gateway": "$NODE_HOST_IP"}]],
        "routes": [{"dst": "$SERVICE_RANGE"}]
      }
    },
    {"type": "loopback"}
  ]
}
EOF
  : >"$NODE_DIR/resolv.conf"
  echo "$scheduler_port" >"$NODE_DIR/scheduler.port"; echo "$cm_port" >"$NODE_DIR/controller-manager.port"
  cat >"$NODE_DIR/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# Serve on the bridge only; only holders of a certificate from the cluster CA (the API server)
# get in, so AlwaysAllow behind x509 is the whole policy.
address: $NODE_HOST_IP
port: $kubelet_port
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $healthz_port
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $STATE/pki/ca.crt}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix://$sock
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
resolvConf: $NODE_DIR/resolv.conf
podLogsDir: $NODE_DIR/pod-logs
registerNode: true
serializeImagePulls: false
# Images are built here and cannot be pulled again: never collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "2%", imagefs.available: "2%"}
EOF
  cat >"$NODE_DIR/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $NODE_DIR/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_RANGE
healthzBindAddress: 127.0.0.1:$proxy_healthz
metricsBindAddress: 127.0.0.1:$proxy_metrics
nodePortAddresses: ["$NODE_HOST_IP/32"]
# Leave the machine's sysctls alone: no conntrack tuning, no route_localnet; no OOM score change
# (root here lacks CAP_SYS_RESOURCE to lower it).
oomScoreAdj: 0
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
iptables: {localhostNodePorts: false}
EOF
  local component
  for component in kubelet kube-proxy kube-scheduler kube-controller-manager; do
    write_kubeconfig "$NODE_DIR/$component.kubeconfig" "$component"
  done
}

ctr_node() { ctr --address "$NODE_DIR/containerd/containerd.sock" --namespace k8s.io "$@"; }

start_containerd() {
  setsid containerd --config "$NODE_DIR/containerd/config.toml" >>"$STATE/logs/containerd.log" 2>&1 </dev/null &
  echo $! >"$NODE_DIR/containerd.pid"
  local deadline=$((SECONDS + 30))
  until ctr_node version >/dev/null 2>&1; do
    pid_alive "$NODE_DIR/containerd.pid" || die "containerd exited: $(tail -3 "$STATE/logs/containerd.log")"
    ((SECONDS < deadline)) || die "containerd not serving after 30s; see $STATE/logs/containerd.log"
    sleep 0.2
  done
}

import_image() {
  local archive=$1
  [[ -f $archive ]] || die "no image archive at $archive"
  pid_alive "$NODE_DIR/containerd.pid" || die "the node is not running: hack/local-cluster.sh up --node"
  ctr_node images import --snapshotter overlayfs "$archive" >&2 || die "ctr images import $archive failed"
}

pause_image() {
  local bin=$1 archive="$CACHE_ROOT/images/pause.oci.tar"
  mkdir -p "$CACHE_ROOT/images"
  if [[ ! -f $archive || $bin/pause -nt $archive ]]; then
    python3 "$ROOT/hack/oci-image.py" --ref "$PAUSE_IMAGE" --out "$archive" --file "$bin/pause:/pause:0755" \
      --entrypoint '["/pause"]' --user 65535:65535 >/dev/null
  fi
  import_image "$archive"
}

start_component() {
  local name=$1; shift
  setsid "$@" >>"$STATE/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$NODE_DIR/$name.pid"
}

start_node() {
  local bin=$1
  start_component kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig "$NODE_DIR/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig "$NODE_DIR/kube-controller-manager.kubeconfig" \
    --authorization-kubeconfig "$NODE_DIR/kube-controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$(cat "$NODE_DIR/controller-manager.port")" --leader-elect=false \
    --service-account-private-key-file "$STATE/pki/sa.key" --root-ca-file "$STATE/pki/ca.crt" \
    --use-service-account-credentials --controllers '*' \
    --cluster-signing-cert-file "$STATE/pki/ca.crt" --cluster-signing-key-file "$STATE/pki/ca.key"
  start_component kube-scheduler "$bin/kube-scheduler" \
    --kubeconfig "$NODE_DIR/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig "$NODE_DIR/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig "$NODE_DIR/kube-scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$(cat "$NODE_DIR/scheduler.port")" --leader-elect=false
  start_component kubelet "$bin/kubelet" --config "$NODE_DIR/kubelet/config.yaml" \
    --kubeconfig "$NODE_DIR/kubelet.kubeconfig" --root-dir "$NODE_DIR/kubelet" --cert-dir "$NODE_DIR/kubelet/pki" \
    --hostname-override "$NODE_NAME" --node-ip "$NODE_HOST_IP" --oom-score-adj 0
  start_component kube-proxy "$bin/kube-proxy" --config "$NODE_DIR/kube-proxy.yaml"
}

wait_node_ready() {
  local bin=$1 deadline=$((SECONDS + 120)) name status
  until [[ $("$bin/kubectl" --kubeconfig "$KUBECONFIG_PATH" get node "$NODE_NAME" \
      -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]; do
    for name in kube-controller-manager kube-scheduler kubelet kube-proxy containerd; do
      pid_alive "$NODE_DIR/$name.pid" || die "$name exited: $(tail -3 "$STATE/logs/$name.log")"
    done
    ((SECONDS < deadline)) || die "node $NODE_NAME not Ready after 120s; see $STATE/logs/kubelet.log"
    sleep 1
  done
  # The controller-manager makes every namespace's default ServiceAccount; until it has, pods
  # are refused: wait for the first one.
  until "$bin/kubectl" --kubeconfig "$KUBECONFIG_PATH" get serviceaccount default -n default >/dev/null 2>&1; do
    pid_alive "$NODE_DIR/kube-controller-manager.pid" || die "kube-controller-manager exited: $(tail -3 "$STATE/logs/kube-controller-manager.log")"
    ((SECONDS < deadline)) || die "no default ServiceAccount after 120s; see $STATE/logs/kube-controller-manager.log"
    sleep 0.5
  done
  status=$("$bin/kubectl" --kubeconfig "$KUBECONFIG_PATH" get node "$NODE_NAME" -o jsonpath='{.status.nodeInfo.containerRuntimeVersion} {.status.nodeInfo.kubeletVersion}')
  log "node $NODE_NAME Ready ($status), pods reach this machine at $NODE_HOST_IP"
}

# ---------------------------------------------------------------------------------------------

up() {
  local node=false
  [[ ${1:-} == --node ]] && node=true
  [[ -z ${1:-} || ${1:-} == --node ]] || die "usage: up [--node]"
  if running; then
    if $node && ! with_node; then
      die "a control plane without a node is running; run 'hack/local-cluster.sh down' first, then 'up --node'"
    fi
    if with_node; then log "already running with node $NODE_NAME; reusing it"; else log "already running; reusing it"; fi
    echo "$KUBECONFIG_PATH"; return 0
  fi
  if [[ -d $STATE ]]; then
    log "cleaning up what a previous run left"
    down_all quiet
  fi
  $node && node_preflight
  local bin
  if $node; then bin=$(bin_dir --node); else bin=$(bin_dir); fi
  # Every port is chosen (and a pinned one checked) before anything is made or started.
  local etcd_port peer_port api_port
  etcd_port=$(port_for etcd ETCD_PORT); peer_port=$(free_port); api_port=$(port_for kube-apiserver APISERVER_PORT)
  if $node; then choose_node_ports; fi
  rm -rf "$STATE"; mkdir -p "$STATE/etcd" "$STATE/logs" "$NODE_DIR"
  $node && : >"$STATE/node.enabled"
  echo "$bin" >"$STATE/bin.dir"
  echo "$api_port" >"$STATE/apiserver.port"
  if $node; then
    network_up
    echo "$NODE_HOST_IP" >"$STATE/apiserver.host"
  fi
  make_pki
  $node && make_node_pki

  setsid "$bin/etcd" --name local --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "local=http://127.0.0.1:$peer_port" --unsafe-no-fsync \
    >"$STATE/logs/etcd.log" 2>&1 </dev/null &
  echo $! >"$STATE/etcd.pid"

  echo "$etcd_port" >"$STATE/etcd.port"
  start_apiserver "$bin"
  write_kubeconfig "$KUBECONFIG_PATH" admin
  wait_ready
  log "kube-apiserver $("$bin/kubectl" --kubeconfig "$KUBECONFIG_PATH" version -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])') serving on https://$(api_host):$api_port (RBAC on)"
  if $node; then
    write_node_config
    start_containerd
    pause_image "$bin"
    start_node "$bin"
    wait_node_ready "$bin"
  fi
  echo "$KUBECONFIG_PATH"
}

stop_pidfile() {
  local file=$1 pid
  [[ -f $file ]] || return 0
  pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

# Every process in the node's pod cgroups (containers, shims' children), in every hierarchy.
# (Helpers used in assignments always succeed: under `set -e` a failed lookup would end `down`.)
pod_pids() { cat /sys/fs/cgroup/*/kubepods{,/*,/*/*,/*/*/*}/cgroup.procs 2>/dev/null | sort -u || true; }
shim_pids() { pgrep -f "containerd-shim.*-address $NODE_DIR/containerd/containerd.sock" 2>/dev/null || true; }
our_netns() { sort -u "$NODE_DIR/netns.list" 2>/dev/null || true; }

# Network namespaces of our sandboxes, asked of containerd while it still answers.
record_netns() {
  pid_alive "$NODE_DIR/containerd.pid" || return 0
  local id
  for id in $(ctr_node containers list -q 2>/dev/null); do
    ctr_node containers info "$id" 2>/dev/null | python3 -c '
import json, sys
spec = json.load(sys.stdin).get("Spec") or {}
for ns in (spec.get("linux") or {}).get("namespaces") or []:
    if ns.get("type") == "network" and ns.get("path"):
        print(ns["path"])' >>"$NODE_DIR/netns.list" || true
  done
}

stop_node() {
  local name pid
  for name in kube-proxy kubelet kube-scheduler kube-controller-manager; do stop_pidfile "$NODE_DIR/$name.pid"; done
  record_netns
  # Containers first (so nothing restarts them), then their shims, then containerd.
  for _ in 1 2 3; do
    pid=$(pod_pids); [[ -z $pid ]] && break
    kill -9 $pid 2>/dev/null || true; sleep 0.3
  done
  for pid in $(shim_pids); do kill -9 "$pid" 2>/dev/null || true; done
  stop_pidfile "$NODE_DIR/containerd.pid"
  pkill -9 -f "containerd --config $NODE_DIR/containerd/config.toml" 2>/dev/null || true
  # Mounts: sandboxes' netns, then everything below the node directory, deepest first.
  local ns mount
  for ns in $(our_netns); do
    umount "$ns" 2>/dev/null || umount -l "$ns" 2>/dev/null || true
    rm -f "$ns"
  done
  for mount in $(findmnt -rn -o TARGET | grep -F "$STATE/" | sort -r); do
    umount "$mount" 2>/dev/null || umount -l "$mount" 2>/dev/null || true
  done
  # Empty pod cgroups the kubelet made.
  find /sys/fs/cgroup/*/kubepods -depth -type d -exec rmdir {} \; 2>/dev/null || true
  rm -rf /var/lib/cni/results/cloudsso-node-* 2>/dev/null || true
}

network_down() {
  [[ -f $NODE_DIR/network.enabled ]] || ip link show "$BRIDGE" >/dev/null 2>&1 || return 0
  # The binaries `up` used (recorded then): `down` must never start a build.
  local bin; bin=$(cat "$STATE/bin.dir" 2>/dev/null || true)
  # kube-proxy's own chains go with kube-proxy's own cleanup; the kubelet's (KUBE-FIREWALL, the
  # canaries) with ours: every KUBE-* chain, IPv4 and IPv6 (this is the machine's only node).
  [[ -n $bin && -x $bin/kube-proxy ]] && "$bin/kube-proxy" --cleanup >/dev/null 2>&1 || true
  local tool table chain rule
  for tool in iptables ip6tables; do
    command -v "$tool" >/dev/null || continue
    for table in filter nat mangle; do
      while rule=$("$tool" -t "$table" -S 2>/dev/null | grep -E '^-A [A-Z]+ .*-j KUBE-' | grep -vE '^-A KUBE-' | head -1) && [[ -n $rule ]]; do
        eval "$tool -t $table ${rule/-A/-D}" || break
      done
      for chain in $("$tool" -t "$table" -S 2>/dev/null | sed -n 's/^-N \(KUBE-[A-Z0-9-]*\)$/\1/p'); do
        "$tool" -t "$table" -F "$chain" 2>/dev/null || true
      done
      for chain in $("$tool" -t "$table" -S 2>/dev/null | sed -n 's/^-N \(KUBE-[A-Z0-9-]*\)$/\1/p'); do
        "$tool" -t "$table" -X "$chain" 2>/dev/null || true
      done
    done
  done
  while rule=$(iptables -S FORWARD 2>/dev/null | grep -F -- "--comment $RULE_COMMENT" | head -1) && [[ -n $rule ]]; do
    eval "iptables ${rule/-A/-D}" || break
  done
  ip route del "$SERVICE_RANGE" dev "$BRIDGE" 2>/dev/null || true
  ip link del "$BRIDGE" 2>/dev/null || true
  ip route del blackhole "$POD_RANGE" 2>/dev/null || true
  ip route del blackhole "$SERVICE_GUARD" 2>/dev/null || true
  local line
  while IFS= read -r line; do
    [[ -n ${line#*=} ]] && sysctl -qw "$line" 2>/dev/null || true
  done <"$NODE_DIR/sysctl.saved" 2>/dev/null || true
}

# What `down` must leave behind: nothing. Any leftover is named, in one line.
leftovers() {
  local left=()
  [[ -n $(pod_pids) ]] && left+=("pod processes $(pod_pids | tr '\n' ' ')")
  [[ -n $(shim_pids) ]] && left+=("containerd shims")
  pgrep -f "$STATE/" >/dev/null 2>&1 && left+=("processes $(pgrep -f "$STATE/" | tr '\n' ' ')")
  findmnt -rn -o TARGET | grep -qF "$STATE/" && left+=("mounts under $STATE")
  local ns; for ns in $(our_netns); do [[ -e $ns ]] && left+=("netns $ns"); done
  ip link show "$BRIDGE" >/dev/null 2>&1 && left+=("bridge $BRIDGE")
  ip route show | grep -qE "^blackhole ($POD_RANGE|$SERVICE_GUARD)" && left+=("blackhole routes")
  iptables -S FORWARD 2>/dev/null | grep -qF "$RULE_COMMENT" && left+=("iptables rules")
  { iptables-save 2>/dev/null; ip6tables-save 2>/dev/null; } | grep -q '^:KUBE-' && left+=("KUBE-* iptables chains")
  ((${#left[@]} == 0)) || die "down left behind: ${left[*]}"
}

down_all() {
  local quiet=${1:-}
  if [[ ! -d $STATE && ! -f $KUBECONFIG_PATH ]]; then
    [[ -n $quiet ]] || log "nothing is running; nothing to stop"
    return 0
  fi
  local had_node=false
  [[ -f $STATE/node.enabled || -f $NODE_DIR/network.enabled ]] && had_node=true
  if $had_node; then
    ((EUID == 0)) || die "the node was started as root; run down as root"
    stop_node
  fi
  stop_pidfile "$STATE/apiserver.pid"
  stop_pidfile "$STATE/etcd.pid"
  if $had_node; then network_down; fi
  $had_node && leftovers
  rm -rf "$STATE" "$KUBECONFIG_PATH"
  [[ -n $quiet ]] || log "stopped and removed"
}

env_exports() {
  local bin; bin=$(bin_dir)
  echo "export KUBECONFIG='$KUBECONFIG_PATH'"
  echo "export PATH='$bin':\"\$PATH\""
  if with_node; then echo "export NODE_HOST_IP='$NODE_HOST_IP'"; fi
}

case "${1:-}" in
  up) up "${2:-}" ;;
  down) down_all ;;
  env) env_exports ;;
  import-image) [[ -n ${2:-} ]] || die "usage: import-image ARCHIVE"; import_image "$2" ;;
  restart-apiserver) restart_apiserver "${2:-0}" ;;
  *) echo "usage: $0 up [--node]|env|down|import-image ARCHIVE|restart-apiserver [SECONDS]" >&2; exit 2 ;;
esac
