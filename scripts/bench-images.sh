#!/usr/bin/env bash
# Benchmark (not a test): pull + unpack of a multi-layer image from a local
# docker-registry, with berth-manager (examples/pull.rs) and with `skopeo copy` +
# `umoci unpack`, in turns in one run, with hyperfine. Prints each median and the
# ratio to berth. The image (LAYERS layers of MB_PER_LAYER MB of text-like data, the
# busybox rootfs in the first) is built here as an OCI layout and pushed by skopeo.
# Usage: sudo ./scripts/bench-images.sh [RUNS] [LAYERS] [MB_PER_LAYER]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
layers=${2:-5}
mb=${3:-40}
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
. scripts/deps.sh
berth_apt_install busybox-static skopeo docker-registry umoci jq hyperfine python3

target=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release -q -p berth-manager --example pull
berth=$target/release/examples/pull

work=$(mktemp -d /tmp/berth-bench-images.XXXXXX)
reg_pid=
cleanup() {
  [ -n "$reg_pid" ] && kill "$reg_pid" 2>/dev/null && wait "$reg_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# A local registry.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/registry.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
EOF
/usr/bin/docker-registry serve "$work/registry.yml" >/dev/null 2>&1 &
reg_pid=$!
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break
  sleep 0.1
done

# The image: an OCI layout with gzip layers, pushed by skopeo.
layout=$work/layout
mkdir -p "$layout/blobs/sha256"
diff_ids=()
layer_descs=()
for i in $(seq 1 "$layers"); do
  d=$work/l$i
  mkdir -p "$d/data$i"
  [ "$i" = 1 ] && ./scripts/make-rootfs.sh "$d"
  # Text-like data: compresses about 4:3, like binaries and libraries do.
  for f in $(seq 1 "$mb"); do
    head -c 786432 /dev/urandom | base64 -w 76 >"$d/data$i/f$f"
  done
  tar -C "$d" --numeric-owner -cf "$work/l$i.tar" .
  diff_ids+=("sha256:$(sha256sum "$work/l$i.tar" | cut -d' ' -f1)")
  gzip -1 -c "$work/l$i.tar" >"$work/l$i.tar.gz"
  h=$(sha256sum "$work/l$i.tar.gz" | cut -d' ' -f1)
  mv "$work/l$i.tar.gz" "$layout/blobs/sha256/$h"
  layer_descs+=("{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$h\",\"size\":$(stat -c %s "$layout/blobs/sha256/$h")}")
  rm -rf "$d" "$work/l$i.tar"
done
config=$(jq -cn --argjson ids "$(printf '%s\n' "${diff_ids[@]}" | jq -R . | jq -cs .)" \
  '{architecture:"amd64", os:"linux", config:{Cmd:["/bin/sh"]}, rootfs:{type:"layers", diff_ids:$ids}}')
printf '%s' "$config" >"$work/config.json"
ch=$(sha256sum "$work/config.json" | cut -d' ' -f1)
mv "$work/config.json" "$layout/blobs/sha256/$ch"
manifest=$(printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[%s]}' \
  "$ch" "$(stat -c %s "$layout/blobs/sha256/$ch")" "$(IFS=,; echo "${layer_descs[*]}")")
printf '%s' "$manifest" >"$work/manifest.json"
mh=$(sha256sum "$work/manifest.json" | cut -d' ' -f1)
msize=$(stat -c %s "$work/manifest.json")
mv "$work/manifest.json" "$layout/blobs/sha256/$mh"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"bench"}}]}' \
  "$mh" "$msize" >"$layout/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
ref=127.0.0.1:$port/bench/image:latest
skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$layout:bench" "docker://$ref"
total=$(du -sb "$layout/blobs" | cut -f1)
echo "image: $layers layers, $((total / 1000000)) MB compressed, pushed to $ref"
rm -rf "$layout"

# One warm-up each shows an error now rather than many failures later.
"$berth" "$work/berth-root" "$ref" >/dev/null
rm -rf "$work/berth-root"
names=(berth)
cmds=("$berth $work/berth-root $ref")
prep=("rm -rf $work/berth-root")
if command -v umoci >/dev/null; then
  names+=("skopeo+umoci")
  cmds+=("sh -c 'skopeo --insecure-policy copy -q --src-tls-verify=false docker://$ref oci:$work/oci:bench && umoci unpack --image $work/oci:bench $work/bundle >/dev/null'")
else
  echo "umoci not installed: timing skopeo copy alone (no unpack)"
  names+=("skopeo")
  cmds+=("skopeo --insecure-policy copy -q --src-tls-verify=false docker://$ref oci:$work/oci:bench")
fi
prep+=("rm -rf $work/oci $work/bundle")

args=()
for i in "${!cmds[@]}"; do
  args+=(--prepare "${prep[$i]}" -n "${names[$i]}" "${cmds[$i]}")
done
hyperfine --runs "$runs" --export-json "$work/result.json" "${args[@]}"

echo
echo "median pull+unpack of $layers x ${mb} MB layers ($runs runs each):"
base=$(jq -r '.results[0].median' "$work/result.json")
jq -r --argjson base "$base" '.results[] | "\(.command)\t\(.median * 1000 | floor) ms\t\(.median / $base * 100 | floor / 100)x berth"' \
  "$work/result.json" | column -t -s $'\t'
