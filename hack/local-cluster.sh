#!/usr/bin/env bash
# A real kube-apiserver with etcd on loopback, as controller-runtime's envtest runs them.
#   hack/local-cluster.sh up     build once (cached), start, wait until it serves, print the kubeconfig path
#   hack/local-cluster.sh env    print exports (KUBECONFIG, PATH with the matching kubectl and helm) for eval
#   hack/local-cluster.sh down   stop it and remove its data
#   hack/local-cluster.sh restart-apiserver [SECONDS]
#                                stop kube-apiserver, wait, start it again on the same port and data
#                                (for tests that clients recover from an API server restart)
# Idempotent: `up` on a running cluster reuses it. RBAC authorization is on.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
LOCAL="$ROOT/.local"
STATE="$LOCAL/cluster"
KUBECONFIG_PATH="$LOCAL/kubeconfig"
log() { echo "[local-cluster] $*" >&2; }
die() { echo "[local-cluster] error: $*" >&2; exit 1; }

bin_dir() { "$ROOT/hack/build-control-plane.sh"; }

running() {
  [[ -f $STATE/apiserver.pid && -f $STATE/etcd.pid && -f $KUBECONFIG_PATH ]] || return 1
  kill -0 "$(cat "$STATE/apiserver.pid")" 2>/dev/null && kill -0 "$(cat "$STATE/etcd.pid")" 2>/dev/null || return 1
  ready
}

ready() {
  local port; port=$(cat "$STATE/apiserver.port" 2>/dev/null) || return 1
  curl -fsS --max-time 2 --cacert "$STATE/pki/ca.crt" --cert "$STATE/pki/admin.crt" --key "$STATE/pki/admin.key" \
    "https://127.0.0.1:$port/readyz" >/dev/null 2>&1
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }

make_pki() {
  local pki="$STATE/pki"; mkdir -p "$pki"
  openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=local-cluster-ca" \
    -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
  # Serving certificate: loopback names and the first service IP (the in-cluster kubernetes Service).
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:127.0.0.1,IP:10.0.0.1\nextendedKeyUsage=serverAuth\n' >"$pki/apiserver.ext"
  openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial -days 365 \
    -extfile "$pki/apiserver.ext" -out "$pki/apiserver.crt" 2>/dev/null
  # Admin client certificate in system:masters, as envtest's admin user.
  openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=admin" -keyout "$pki/admin.key" -out "$pki/admin.csr" 2>/dev/null
  printf 'extendedKeyUsage=clientAuth\n' >"$pki/admin.ext"
  openssl x509 -req -in "$pki/admin.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial -days 365 \
    -extfile "$pki/admin.ext" -out "$pki/admin.crt" 2>/dev/null
  # Service-account token signing keys.
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
}

write_kubeconfig() {
  local port=$1 b64="base64 -w0"
  cat >"$KUBECONFIG_PATH" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority-data: $($b64 "$STATE/pki/ca.crt")
users:
- name: admin
  user:
    client-certificate-data: $($b64 "$STATE/pki/admin.crt")
    client-key-data: $($b64 "$STATE/pki/admin.key")
contexts:
- name: local
  context: {cluster: local, user: admin}
current-context: local
KUBECONFIG
  chmod 600 "$KUBECONFIG_PATH"
}

start_apiserver() {
  local bin=$1 etcd_port api_port
  etcd_port=$(cat "$STATE/etcd.port"); api_port=$(cat "$STATE/apiserver.port")
  setsid "$bin/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --cert-dir "$STATE/pki" --tls-cert-file "$STATE/pki/apiserver.crt" --tls-private-key-file "$STATE/pki/apiserver.key" \
    --client-ca-file "$STATE/pki/ca.crt" \
    --authorization-mode RBAC \
    --service-cluster-ip-range 10.0.0.0/24 --allow-privileged=true \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$STATE/pki/sa.pub" --service-account-signing-key-file "$STATE/pki/sa.key" \
    --disable-admission-plugins ServiceAccount \
    >>"$STATE/logs/kube-apiserver.log" 2>&1 </dev/null &
  echo $! >"$STATE/apiserver.pid"
}

wait_ready() {
  local deadline=$((SECONDS + 90))
  until ready; do
    kill -0 "$(cat "$STATE/etcd.pid")" 2>/dev/null || die "etcd exited: $(tail -5 "$STATE/logs/etcd.log")"
    kill -0 "$(cat "$STATE/apiserver.pid")" 2>/dev/null || die "kube-apiserver exited: $(tail -5 "$STATE/logs/kube-apiserver.log")"
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

up() {
  if running; then
    log "already running; reusing it"
    echo "$KUBECONFIG_PATH"; return 0
  fi
  stop_processes
  local bin; bin=$(bin_dir)
  rm -rf "$STATE"; mkdir -p "$STATE/etcd" "$STATE/logs"
  make_pki
  local etcd_port peer_port api_port
  etcd_port=$(free_port); peer_port=$(free_port); api_port=$(free_port)
  echo "$api_port" >"$STATE/apiserver.port"

  setsid "$bin/etcd" --name local --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "local=http://127.0.0.1:$peer_port" --unsafe-no-fsync \
    >"$STATE/logs/etcd.log" 2>&1 </dev/null &
  echo $! >"$STATE/etcd.pid"

  echo "$etcd_port" >"$STATE/etcd.port"
  start_apiserver "$bin"
  write_kubeconfig "$api_port"
  wait_ready
  log "kube-apiserver $("$bin/kubectl" --kubeconfig "$KUBECONFIG_PATH" version -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])') serving on https://127.0.0.1:$api_port (RBAC on)"
  echo "$KUBECONFIG_PATH"
}

stop_processes() {
  local name pid
  for name in apiserver etcd; do
    [[ -f $STATE/$name.pid ]] || continue
    pid=$(cat "$STATE/$name.pid")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$STATE/$name.pid"
  done
}

down() {
  stop_processes
  rm -rf "$STATE" "$KUBECONFIG_PATH"
  log "stopped and removed"
}

env_exports() {
  local bin; bin=$(bin_dir)
  echo "export KUBECONFIG='$KUBECONFIG_PATH'"
  echo "export PATH='$bin':\"\$PATH\""
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  env) env_exports ;;
  restart-apiserver) restart_apiserver "${2:-0}" ;;
  *) echo "usage: $0 up|env|down|restart-apiserver [SECONDS]" >&2; exit 2 ;;
esac
