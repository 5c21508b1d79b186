#!/usr/bin/env bash
# Regenerates crds/ from the Rust types: one file per CRD, named after it, so that
# `cat crds/*.yaml` is byte-for-byte what `cloudsso-mfa-operator crd` prints.
set -euo pipefail
cd "$(dirname "$0")/.."
yaml=$(cargo run --quiet --bin cloudsso-mfa-operator -- crd)
rm -f crds/*.yaml; mkdir -p crds
printf '%s\n' "$yaml" | awk '
  /^---$/ { if (doc != "") { print doc > file; close(file) } doc = $0; file = ""; next }
  { doc = doc "\n" $0 }
  /^  name: / && file == "" { file = "crds/" $2 ".yaml" }
  END { if (doc != "") print doc > file }'
ls crds
