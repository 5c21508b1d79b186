#!/usr/bin/env bash
# The operator's image without a Docker engine: builds the release binary, writes an OCI image
# archive of the same shape as the Dockerfile's runtime stage (the operator alone under
# /usr/local/bin, never the emulator; glibc and CA certificates as distroless/cc has them, user
# 65532:65532, entrypoint cloudsso-mfa-operator, cmd run, port 8080), imports it into the local
# node's containerd when one runs, and prints the image reference.
#   hack/image.sh             build, import if the node runs, print the reference
#   hack/image.sh --archive   the same, but print the archive's path (for `kind load image-archive`)
# tests/e2e_node.rs checks that the archive's config equals what the Dockerfile declares.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
CACHE_ROOT=${CLOUDSSO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cloudsso-mfa-operator}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE_ROOT/target}
REPOSITORY=${IMAGE_REPOSITORY:-registry.local/cloudsso-mfa-operator}
OUT="$CACHE_ROOT/images"
log() { echo "[image] $*" >&2; }
die() { echo "[image] error: $*" >&2; exit 1; }

print=ref
case "${1:-}" in
  --archive) print=archive ;;
  "") ;;
  *) die "usage: $0 [--archive]" ;;
esac
command -v cargo >/dev/null || die "cargo (Rust) is required"
[[ -f /etc/ssl/certs/ca-certificates.crt ]] || die "no /etc/ssl/certs/ca-certificates.crt (apt-get install ca-certificates)"

log "building the release binary"
# Without the emulator feature: the production binary has no emulator code in it either.
cargo build --release --locked --quiet --bin cloudsso-mfa-operator
stage=$(mktemp -d); trap 'rm -rf "$stage"' EXIT
cp "$CARGO_TARGET_DIR/release/cloudsso-mfa-operator" "$stage/cloudsso-mfa-operator"
strip "$stage/cloudsso-mfa-operator" 2>/dev/null || true

# The shared libraries the binaries load, at the paths the loader looks them up (distroless/cc
# ships the same glibc pieces): every absolute path ldd names, the ELF interpreter
# (/lib64/ld-linux-x86-64.so.2) included.
files=()
mapfile -t libs < <(ldd "$stage/cloudsso-mfa-operator" \
  | awk '{for (i = 1; i <= NF; i++) if ($i ~ /^\// && $i !~ /:$/) print $i}' | sort -u)
((${#libs[@]})) || die "ldd found no shared libraries; is this a glibc build?"
for lib in "${libs[@]}"; do files+=(--file "$lib:$lib"); done

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
# The tag names the content, so a rebuilt image never hides behind an old tag on the node.
content=$(cat "$stage/cloudsso-mfa-operator" "${libs[@]}" \
  /etc/ssl/certs/ca-certificates.crt hack/image.sh hack/oci-image.py | sha256sum | cut -c1-12)
ref="$REPOSITORY:$version-$content"
mkdir -p "$OUT"
archive="$OUT/cloudsso-mfa-operator.oci.tar"
python3 hack/oci-image.py --ref "$ref" --out "$archive" \
  --file "$stage/cloudsso-mfa-operator:/usr/local/bin/cloudsso-mfa-operator:0755" \
  --file /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:0644 \
  "${files[@]}" \
  --text "/etc/passwd:root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
" \
  --text "/etc/group:root:x:0:
nobody:x:65534:
nonroot:x:65532:
" \
  --text "/etc/nsswitch.conf:hosts: files dns
" \
  --dir /home/nonroot:0700:65532:65532 --dir /tmp:1777 \
  --user 65532:65532 --port 8080 \
  --entrypoint '["/usr/local/bin/cloudsso-mfa-operator"]' --cmd '["run"]' >/dev/null
echo "$ref" >"$OUT/cloudsso-mfa-operator.ref"
log "wrote $archive ($(du -h "$archive" | cut -f1)) as $ref"

if [[ -f $ROOT/.local/cluster/node.enabled ]]; then
  hack/local-cluster.sh import-image "$archive"
  log "imported into the local node's containerd"
else
  log "no local node is running: not imported (hack/local-cluster.sh up --node; or kind load image-archive $archive)"
fi
if [[ $print == archive ]]; then echo "$archive"; else echo "$ref"; fi
