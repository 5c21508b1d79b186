#!/usr/bin/env bash
# Regenerates crds/ from the Rust types: one file per CRD, named after it, so that
# `cat crds/*.yaml` is byte-for-byte what `cloudsso-mfa-operator crd` prints; the chart gets a copy.
set -euo pipefail
cd "$(dirname "$0")/.."
yaml=$(cargo run --quiet --bin cloudsso-mfa-operator -- crd)
rm -f crds/*.yaml; mkdir -p crds
printf '%s\n' "$yaml" | awk '
  /^---$/ { if (doc != "") { print doc > file; close(file) } doc = $0; file = ""; next }
  { doc = doc "\n" $0 }
  /^  name: / && file == "" { file = "crds/" $2 ".yaml" }
  END { if (doc != "") print doc > file }'
# The Helm chart carries the same files (Helm installs crds/ before the templates).
chart=deploy/helm/cloudsso-mfa-operator/crds
rm -f "$chart"/*.yaml; mkdir -p "$chart"
cp crds/*.yaml "$chart"/
ls crds
