#!/usr/bin/env bash
# Benchmark (not a test): `pull` of a multi-layer image from a local docker-registry
# on 127.0.0.1, end to end through each engine: `berth pull` (berth CLI → berthd →
# berth-manager: layers fetched and unpacked into snapshots) against `docker pull`
# (docker CLI → dockerd: fetched, then extracted into overlay2), in one hyperfine
# run, each engine private on temporary directories, the image removed again
# before every pull (`rmi`: its blobs and snapshots go with it). Prints medians and
# the ratio, and the peak resident memory of the daemons during a pull. The image
# (LAYERS layers of MB_PER_LAYER MB of text-like data, the busybox rootfs in the
# first) is built here and pushed by skopeo.
# Usage: sudo ./scripts/bench-pull.sh [RUNS] [LAYERS] [MB_PER_LAYER] [BIN]
# (BIN: a directory with release binaries of berth; default target/release, built
# if missing.)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
layers=${2:-5}
mb=${3:-40}
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
. scripts/deps.sh
berth_apt_install busybox-static skopeo docker-registry jq hyperfine python3 curl bc

bin=${4:-${CARGO_TARGET_DIR:-$PWD/target}/release}
if [ -z "${4:-}" ]; then
  cargo build --release -q -p berth-engine -p berth-cli -p berth-manager -p berth-shim -p berth-runtime -p berth-init --bins
fi

work=$(mktemp -d /tmp/bpl.XXXXXX)
pids=()
cleanup() {
  set +e
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  "$bin/berthd" --teardown-networks --exec-root "$work/run/engine" 2>/dev/null
  grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
# shellcheck source=scripts/bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"

start_registry
ref=127.0.0.1:$reg_port/bench/image:latest
push_bench_image "$layers" "$mb" "$ref"

start_berth "bpl$$" "$(free_net).1/24"
names=(berth)
cmds=("${berth[*]} pull -q $ref")
prep=("sh -c '${berth[*]} rmi -f $ref >/dev/null 2>&1 || true'")
have_docker=0
if command -v dockerd >/dev/null; then
  have_docker=1
  mkdir -p "$work/docker"
  dockerd --host="unix://$work/docker/docker.sock" --data-root="$work/docker/data" \
    --exec-root="$work/docker/exec" --pidfile="$work/docker/docker.pid" \
    --iptables=false --ip6tables=false --bridge=none \
    >"$work/docker/dockerd.log" 2>&1 &
  pids+=("$!")
  for _ in $(seq 1200); do docker -H "unix://$work/docker/docker.sock" version >/dev/null 2>&1 && break; sleep 0.1; done
  d="docker -H unix://$work/docker/docker.sock"
  names+=(docker)
  cmds+=("$d pull -q $ref")
  prep+=("sh -c '$d rmi -f $ref >/dev/null 2>&1 || true'")
else
  echo "docker.io not installed: timing berth alone"
fi

# One pull in the open first: an error shows now rather than as many failures.
"${berth[@]}" pull -q "$ref" >/dev/null
args=()
for i in "${!cmds[@]}"; do
  args+=(--prepare "${prep[$i]}" -n "${names[$i]}" "${cmds[$i]}")
done
uptime
hyperfine --runs "$runs" --export-json "$work/result.json" "${args[@]}"

# Memory is bounded while layers stream: the daemons' resident memory, sampled
# every 50 ms during one more pull of each.
peak() { # peak VmRSS (MiB), summed over PIDS, while CMD runs: peak CMD PIDS...
  local cmd=$1; shift
  local max=0 r p
  eval "$cmd" >/dev/null 2>&1 &
  local job=$!
  while kill -0 "$job" 2>/dev/null; do
    r=0
    for p in "$@"; do r=$((r + $(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0))); done
    [ "$r" -gt "$max" ] && max=$r
    sleep 0.05
  done
  wait "$job" || true
  echo "scale=1; $max / 1024" | bc
}
eval "${prep[0]}"
echo "peak VmRSS during a pull: berthd + berth-manager $(peak "${cmds[0]}" "$manager_pid" "$berthd_pid") MiB"
if [ "$have_docker" = 1 ]; then
  eval "${prep[1]}"
  dpid=$(cat "$work/docker/docker.pid")
  cpid=$(pgrep -P "$dpid" -x containerd || true)
  echo "peak VmRSS during a pull: dockerd + containerd $(peak "${cmds[1]}" "$dpid" $cpid) MiB"
fi

echo
echo "median pull of $layers x ${mb} MB layers ($runs runs each):"
jq -r '.results[] | "\(.command)\t\(.median * 1000 | floor) ms"' "$work/result.json" | column -t -s $'\t'
if [ "$have_docker" = 1 ]; then
  jq -r '.results as $r | "docker/berth: \(($r[1].median / $r[0].median) * 100 | floor / 100)x (berth is that many times faster)"' "$work/result.json"
fi
echo "($(nproc) cores, $(uname -r), $(date -u '+%F %H:%M UTC'))"
