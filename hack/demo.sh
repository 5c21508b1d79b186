#!/usr/bin/env bash
# The demo: a local control plane, the emulator with a demo directory, the operator, the
# resources in examples/, and `kubectl get cloudsso`.
#   hack/demo.sh              bring it up (idempotent); the operator runs as a process here
#   hack/demo.sh --in-cluster the same with a real node: the operator's image built here and
#                             installed by the Helm chart, two pods (root: containerd, kubelet)
#   hack/demo.sh down         stop the operator, the emulator and the cluster (and its node)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
DEMO="$ROOT/.local/demo"
NAMESPACE=cloudsso-demo
EMULATOR_ADDR=127.0.0.1:18600
METRICS_ADDR=127.0.0.1:18680
IN_CLUSTER=false
case "${1:-}" in
  --in-cluster) IN_CLUSTER=true ;;
  down | "") ;;
  *) echo "usage: $0 [--in-cluster|down]" >&2; exit 2 ;;
esac
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${CLOUDSSO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cloudsso-mfa-operator}/target}
BIN="$CARGO_TARGET_DIR/debug"
log() { printf '==> %s\n' "$*"; }

stop() {
  for name in operator emulator; do
    [[ -f $DEMO/$name.pid ]] && kill "$(cat "$DEMO/$name.pid")" 2>/dev/null || true
    rm -f "$DEMO/$name.pid"
  done
}

if [[ ${1:-} == down ]]; then
  stop; hack/local-cluster.sh down; exit 0
fi

log "building (first run: a few minutes)"
cargo build --quiet --bins --features emulator
export KUBECONFIG
if $IN_CLUSTER; then
  log "starting the local control plane and node (first run builds Kubernetes from source: ~25 minutes)"
  KUBECONFIG=$(hack/local-cluster.sh up --node)
else
  log "starting the local control plane (first run builds kube-apiserver from source: ~15 minutes)"
  KUBECONFIG=$(hack/local-cluster.sh up)
fi
eval "$(hack/local-cluster.sh env 2>/dev/null)"
mkdir -p "$DEMO"
stop
# Pods reach this machine on the node's bridge, not on loopback.
$IN_CLUSTER && EMULATOR_ADDR=$NODE_HOST_IP:18600

log "starting the emulator on $EMULATOR_ADDR with examples/emulator-seed.json"
"$BIN/cloudsso-emulator" --listen "$EMULATOR_ADDR" --seed examples/emulator-seed.json >"$DEMO/emulator.log" 2>&1 &
echo $! >"$DEMO/emulator.pid"
for _ in $(seq 1 50); do curl -fs "http://$EMULATOR_ADDR/_emulator/healthz" >/dev/null && break; sleep 0.2; done

log "installing the CRDs"
kubectl apply --server-side -f crds/ >/dev/null
kubectl wait --for condition=established crd -l '!nothing' --all --timeout=60s >/dev/null

kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
if $IN_CLUSTER; then
  log "building the operator's image and importing it into the node"
  image=$(hack/image.sh)
  kubectl apply -n "$NAMESPACE" -f examples/credentials-secret.yaml >/dev/null
  # The image holds the operator alone; the emulator runs here on the host, on NODE_HOST_IP.
  # Every example names its own Secret (credentialsSecretRef): no CloudAccount is needed.
  log "helm install: two replicas of $image, leader election"
  helm upgrade --install cloudsso-mfa-operator deploy/helm/cloudsso-mfa-operator -n "$NAMESPACE" \
    --set image.repository="${image%:*}" --set image.tag="${image##*:}" --set image.pullPolicy=Never \
    --set controller.resyncInterval=20s \
    --set controller.logFormat=text --wait --timeout 3m >/dev/null
  kubectl get pods -n "$NAMESPACE" -o wide
  service_ip=$(kubectl get service -n "$NAMESPACE" cloudsso-mfa-operator-metrics -o jsonpath='{.spec.clusterIP}')
  METRICS_ADDR=$service_ip:8080
else
  log "starting the operator with leader election (log: $DEMO/operator.log, metrics: http://$METRICS_ADDR/metrics)"
  "$BIN/cloudsso-mfa-operator" run --resync-interval 20s --metrics-addr "$METRICS_ADDR" \
    --leader-election --leader-election-namespace "$NAMESPACE" >"$DEMO/operator.log" 2>&1 &
  echo $! >"$DEMO/operator.pid"
fi

# The PolicyReport CRD (wgpolicyk8s.io/v1alpha2) as Kyverno or Policy Reporter installs it, so the
# UserMfaPolicies' reports show; without it a policy says so in its status and writes none.
if ! kubectl get crd policyreports.wgpolicyk8s.io >/dev/null 2>&1; then
  kubectl apply --server-side -f tests/crds/policyreport.yaml >/dev/null
  kubectl wait --for condition=Established --timeout=60s crd/policyreports.wgpolicyk8s.io >/dev/null
fi
log "applying examples/ in namespace $NAMESPACE (endpoint http://$EMULATOR_ADDR)"
for example in examples/credentials-secret.yaml examples/directory-mfa-policy.yaml \
  examples/user-mfa-settings.yaml examples/ram-user-mfa-status.yaml \
  examples/ram-security-preference.yaml examples/ram-user-mfa-setting.yaml \
  examples/user-mfa-policy-all-users.yaml examples/user-mfa-policy-group.yaml; do
  sed "s#http://127.0.0.1:18600#http://$EMULATOR_ADDR#" "$example"
  echo "---"
done | kubectl apply -n "$NAMESPACE" -f - >/dev/null
kubectl wait -n "$NAMESPACE" --for condition=Ready --timeout=60s \
  directorymfapolicy/corp-directory usermfasetting/alice usermfasetting/bob usermfasetting/carol \
  ramusermfastatus/ops ramusermfastatus/ci ramsecuritypreference/ram-account \
  ramusermfasetting/ops >/dev/null

# The policies count users that fail (dave has MFA off and no device): Ready=False is their answer,
# so wait for their first count instead.
kubectl wait -n "$NAMESPACE" --for jsonpath='{.status.matchedUsers}'=7 --timeout=60s \
  usermfapolicy/everyone >/dev/null
kubectl wait -n "$NAMESPACE" --for jsonpath='{.status.matchedUsers}'=4 --timeout=60s \
  usermfapolicy/engineering-audit >/dev/null

log "kubectl get cloudsso -n $NAMESPACE"
kubectl get cloudsso -n "$NAMESPACE"
log "who fails the policy 'everyone': kubectl get policyreport everyone -n $NAMESPACE"
kubectl get policyreport everyone -n "$NAMESPACE" \
  -o jsonpath='{range .results[*]}{.result}{"\t"}{.properties.userName}{"\t"}{.message}{"\n"}{end}'

log "compliance gauges from http://$METRICS_ADDR/metrics"
# In the cluster the Service picks a pod per connection; only the leader counts: ask until it answers.
for _ in $(seq 1 20); do
  metrics=$(curl -fs "http://$METRICS_ADDR/metrics" || true)
  grep -q '^cloudsso_mfa_operator_leader 1' <<<"$metrics" && break
  sleep 0.5
done
grep -E '^cloudsso_mfa_operator_(directory_users|policy_users|leader)' <<<"$metrics" || true
cat <<TIP

Try a change:
  eval "\$(hack/local-cluster.sh env)"
  # play a console change: turn bob's MFA off behind the operator's back; it is put back within a resync (20s)
  curl -s http://$EMULATOR_ADDR/_emulator/state | python3 -c 'import json,sys; s=json.load(sys.stdin); [u.update(userMfaAuthenticationSettings="Disabled") for u in s["directories"][0]["users"] if u["userName"]=="bob"]; print(json.dumps(s))' | curl -s -X PUT --data-binary @- http://$EMULATOR_ADDR/_emulator/state
  kubectl get events -n $NAMESPACE --field-selector reason=DriftRepaired -w
  # the census of the directory, then who leads and everything the operator counts
  kubectl get dmp -n $NAMESPACE -o wide
  kubectl get lease -n $NAMESPACE cloudsso-mfa-operator -o jsonpath='{.spec.holderIdentity}{"\\n"}'
  curl -s http://$METRICS_ADDR/metrics | grep -v '^#'
  # audit the directory straight from the cloud
  ALIBABA_CLOUD_ACCESS_KEY_ID=LTAI5tDemoAccessKey ALIBABA_CLOUD_ACCESS_KEY_SECRET=demo-secret-not-for-production \\
    $BIN/cloudsso-mfa-operator audit --directory-id d-00fc2p61demo --endpoint http://$EMULATOR_ADDR
Stop everything: hack/demo.sh down
TIP
if $IN_CLUSTER; then
  cat <<TIP
The operator runs as pods: kubectl logs -n $NAMESPACE -l app.kubernetes.io/name=cloudsso-mfa-operator
  kubectl delete pod -n $NAMESPACE <the leader>   # the other pod takes the Lease within seconds
TIP
fi
