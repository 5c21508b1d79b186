#!/usr/bin/env bash
# Measures the operator at scale against the local control plane and the emulator: one directory
# with N users (default 500), a DirectoryMfaPolicy and one UserMfaSetting per user (half of them
# changing the user's setting), then reports
#   - time from the operator's start until every resource is Ready,
#   - the cloud calls it made (from the emulator's counters) and the census it took,
#   - the operator's resident memory (VmHWM peak and VmRSS after one more resync).
# The report goes to stdout and .local/bench/scale.txt; the numbers size the chart's resources.
#   hack/bench-scale.sh [N] [QPS]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
users=${1:-500}
qps=${2:-100}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${CLOUDSSO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cloudsso-mfa-operator}/target}
work="$ROOT/.local/bench/scale"
rm -rf "$work"; mkdir -p "$work"
ns=bench-scale-$RANDOM
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  kubectl delete namespace "$ns" --wait=false >/dev/null 2>&1 || true
}
trap cleanup EXIT

cargo build --quiet --release --bins --features emulator
bin="$CARGO_TARGET_DIR/release"
export KUBECONFIG; KUBECONFIG=$(hack/local-cluster.sh up)
eval "$(hack/local-cluster.sh env 2>/dev/null)"
kubectl apply --server-side -f crds/ >/dev/null

python3 - "$users" "$work" "$ns" <<'PY'
import json, sys
users, work, ns = int(sys.argv[1]), sys.argv[2], sys.argv[3]
directory = "d-benchscale01"
seed = {"accessKeys": [{"accessKeyId": "LTAI5tBenchKey", "accessKeySecret": "bench-secret"}],
        "directories": [{"directoryId": directory, "mfaAuthenticationSettings": "Byuser", "operationForRiskLogin": "Autonomous",
                         "users": [{"userId": f"u-bench{i:08d}", "userName": f"user{i}",
                                    "userMfaAuthenticationSettings": "Enabled" if i % 3 else "Disabled",
                                    "mfaDevices": [{"deviceId": f"mfa-bench{i:08d}", "deviceName": f"user{i}-totp", "deviceType": "TOTP",
                                                    "effectiveTime": "2025-01-01T00:00:00Z"}] if i % 2 else []}
                                   for i in range(users)]}]}
json.dump(seed, open(f"{work}/seed.json", "w"))
docs = [{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keys", "namespace": ns},
         "stringData": {"accessKeyId": "LTAI5tBenchKey", "accessKeySecret": "bench-secret"}},
        {"apiVersion": "cloudsso.mfa-operator.dev/v1alpha1", "kind": "DirectoryMfaPolicy", "metadata": {"name": "dir", "namespace": ns},
         "spec": {"directoryId": directory, "mfaAuthenticationSettings": "Byuser", "operationForRiskLogin": "Autonomous",
                  "endpoint": "ENDPOINT", "credentialsSecretRef": {"name": "keys"}}}]
for i in range(users):
    docs.append({"apiVersion": "cloudsso.mfa-operator.dev/v1alpha1", "kind": "UserMfaSetting",
                 "metadata": {"name": f"user{i}", "namespace": ns},
                 "spec": {"directoryId": directory, "userId": f"u-bench{i:08d}",
                          "userMfaAuthenticationSettings": "Enabled" if i % 2 else "Disabled",
                          "endpoint": "ENDPOINT", "credentialsSecretRef": {"name": "keys"}}})
json.dump({"apiVersion": "v1", "kind": "List", "items": docs}, open(f"{work}/resources.json", "w"))
PY

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin/cloudsso-emulator" --listen "127.0.0.1:$port" --seed "$work/seed.json" >"$work/emulator.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do curl -fs "http://127.0.0.1:$port/_emulator/healthz" >/dev/null && break; sleep 0.2; done
sed -i "s|ENDPOINT|http://127.0.0.1:$port|g" "$work/resources.json"
kubectl create namespace "$ns" >/dev/null
kubectl apply --server-side -f "$work/resources.json" >/dev/null

resync=60s
started=$(date +%s.%N)
"$bin/cloudsso-mfa-operator" run --watch-namespace "$ns" --metrics-addr 127.0.0.1:0 --cloud-qps "$qps" \
  --resync-interval "$resync" --max-concurrent-reconciles 8 >"$work/operator.log" 2>&1 &
operator=$!
pids+=("$operator")
total=$((users + 1))
while :; do
  ready=$(kubectl get -n "$ns" usermfasettings,directorymfapolicies -o json |
    python3 -c 'import json,sys; print(sum(any(c["type"]=="Ready" and c["status"]=="True" for c in (i.get("status") or {}).get("conditions", [])) for i in json.load(sys.stdin)["items"]))')
  [[ $ready -ge $total ]] && break
  kill -0 "$operator" 2>/dev/null || { echo "bench-scale: the operator exited; see $work/operator.log" >&2; exit 1; }
  sleep 1
done
converged=$(python3 -c "import time; print(f'{time.time() - $started:.1f}')")
calls=$(curl -fs "http://127.0.0.1:$port/_emulator/calls" | python3 -c 'import json,sys; c=json.load(sys.stdin); print(", ".join(f"{a} {sum(o.values())}" for a, o in sorted(c.items())))')
peak=$(awk '/VmHWM/ {print $2 " " $3}' "/proc/$operator/status")
sleep 65   # one more resync: the steady state
rss=$(awk '/VmRSS/ {print $2 " " $3}' "/proc/$operator/status")
{
  echo "scale: 1 DirectoryMfaPolicy + $users UserMfaSettings (half of them changing their user), release build, --cloud-qps $qps"
  echo "  all Ready after:        ${converged}s from the operator's start"
  echo "  cloud calls to Ready:   $calls"
  echo "  memory:                 peak $peak, after one more ${resync} resync $rss"
} | tee "$ROOT/.local/bench/scale.txt"
