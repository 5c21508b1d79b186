#!/usr/bin/env bash
# Measures leader handover: runs the two-replica e2e test N times (default 5) against the local
# control plane (or KUBECONFIG) and reports min / median / max of
#   - the handover after the leader is killed (bounded by the lease duration, 6 s in the test),
#   - the handover after SIGTERM to the leader (the Lease is released: one retry period, 1 s),
#   - SIGTERM to exit with a reconcile in flight (every cloud call delayed 1.5 s).
# The report goes to stdout and .local/bench/handover.txt.
#   hack/bench-handover.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${CLOUDSSO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cloudsso-mfa-operator}/target}
mkdir -p .local/bench
samples=.local/bench/handover.samples
: >"$samples"
cargo test --quiet --no-run --test e2e_operations
for i in $(seq 1 "$runs"); do
  echo "run $i/$runs" >&2
  cargo test --quiet --test e2e_operations -- --nocapture one_replica sigterm 2>&1 | grep -o '\[measure\].*' >>"$samples" \
    || { echo "bench-handover: run $i failed" >&2; exit 1; }
done
python3 - "$samples" "$runs" <<'PY' | tee .local/bench/handover.txt
import re, statistics, sys
samples, runs = sys.argv[1], sys.argv[2]
series = {}
for line in open(samples):
    m = re.match(r"\[measure\] (.*?): ([0-9.]+)(ms|s)", line)
    if m:
        value = float(m.group(2)) / (1000 if m.group(3) == "ms" else 1)
        series.setdefault(m.group(1), []).append(value)
print(f"leader handover, {runs} runs (lease duration 6s, renew deadline 4s, retry period 1s)")
for name, values in series.items():
    print(f"  {name:55s} min {min(values):6.2f}s  median {statistics.median(values):6.2f}s  max {max(values):6.2f}s")
PY
