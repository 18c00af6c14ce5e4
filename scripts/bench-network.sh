#!/usr/bin/env bash
# Benchmark (not a test): `run --rm busybox true` with --network none, on the default
# bridge and with -p 127.0.0.1::80, through berth and docker, interleaved: each round
# runs every command once, in turn, so a load that comes and goes weighs on all of
# them alike. Several berth builds can be compared in the same run (NAME=BINDIR, a
# directory with berth, berthd, berth-manager, berth-shim, berth-runtime and
# berth-init); without any, the release build of this tree is built and used.
# Each stack is private on temporary directories, with a bridge and subnet of its own
# (docker with --iptables=false, as in bench-engine.sh). Prints medians and the
# ratios berth/docker.
# Usage: sudo ./scripts/bench-network.sh [RUNS] [NAME=BINDIR ...]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
shift || true
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
. scripts/deps.sh
berth_apt_install busybox-static jq iptables netavark aardvark-dns

builds=("$@")
if [ ${#builds[@]} = 0 ]; then
  target=${CARGO_TARGET_DIR:-$PWD/target}
  cargo build --release -q -p berth-engine -p berth-cli -p berth-manager -p berth-shim -p berth-runtime -p berth-init --bins
  builds=("berth=$target/release")
fi

# Short: a shim socket, <state>/tasks/<64-hex id>/shim.sock, must fit in 107 bytes.
work=$(mktemp -d /tmp/bbn.XXXXXX)
pids=()
names=()
docker_bridge=bbn$$
cleanup() {
  set +e
  for n in "${names[@]}"; do
    local c=("$work/$n/bin/berth" -H "unix://$work/$n/berth.sock")
    "${c[@]}" rm -f $("${c[@]}" ps -aq 2>/dev/null) >/dev/null 2>&1
  done
  [ -S "$work/docker/docker.sock" ] && docker -H "unix://$work/docker/docker.sock" rm -f $(docker -H "unix://$work/docker/docker.sock" ps -aq 2>/dev/null) >/dev/null 2>&1
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  for n in "${names[@]}"; do
    "$work/$n/bin/berthd" --teardown-networks --exec-root "$work/$n/run/engine" 2>/dev/null
  done
  [ -e "/sys/class/net/$docker_bridge" ] && ip link del "$docker_bridge"
  grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
  for f in $(pgrep -f "containerd-shim.*$work"); do kill -9 "$f"; done
  for d in /sys/fs/cgroup/*/berth-bench-docker; do
    [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  rm -rf "$work"
}
trap cleanup EXIT
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh

./scripts/make-rootfs.sh "$work/rootfs" >/dev/null
tar -C "$work/rootfs" -cf "$work/busybox.tar" .
i=0
for b in "${builds[@]}"; do
  n=${b%%=*}; i=$((i + 1)); names+=("$n")
  mkdir -p "$work/$n"
  cp -a "${b#*=}" "$work/$n/bin"
  (
    bin=$work/$n/bin
    work=$work/$n
    pids=()
    start_berth "bbn$i$$" "$(free_net).1/24"
    echo "${pids[*]}" >"$work/pids"
  )
  pids+=($(cat "$work/$n/pids"))
  c=("$work/$n/bin/berth" -H "unix://$work/$n/berth.sock")
  "${c[@]}" import --change 'CMD ["sh"]' "$work/busybox.tar" busybox:latest >/dev/null
  "${c[@]}" run --rm -p 127.0.0.1::80 busybox true || { tail -n 20 "$work/$n/berthd.log"; exit 1; }
done
cmds=()
for n in "${names[@]}"; do
  c="$work/$n/bin/berth -H unix://$work/$n/berth.sock"
  cmds+=("$n-none|$c run --rm --network none busybox true"
    "$n-bridge|$c run --rm busybox true"
    "$n-publish|$c run --rm -p 127.0.0.1::80 busybox true")
done
if command -v dockerd >/dev/null && command -v containerd >/dev/null; then
  mkdir -p "$work/docker"
  ip link add "$docker_bridge" type bridge
  ip addr add "$(free_net).1/24" dev "$docker_bridge"
  ip link set "$docker_bridge" up
  dockerd --host="unix://$work/docker/docker.sock" --data-root="$work/docker/data" \
    --exec-root="$work/docker/exec" --pidfile="$work/docker/docker.pid" \
    --iptables=false --ip6tables=false --bridge="$docker_bridge" \
    --cgroup-parent=/berth-bench-docker >"$work/docker/dockerd.log" 2>&1 &
  pids+=("$!")
  for _ in $(seq 1200); do docker -H "unix://$work/docker/docker.sock" version >/dev/null 2>&1 && break; sleep 0.1; done
  d="docker -H unix://$work/docker/docker.sock"
  $d import --change 'CMD ["sh"]' "$work/busybox.tar" busybox:latest >/dev/null
  cmds+=("docker-none|$d run --rm --network none busybox true"
    "docker-bridge|$d run --rm busybox true"
    "docker-publish|$d run --rm -p 127.0.0.1::80 busybox true")
else
  echo "docker.io not installed: timing berth alone"
fi

# Two warm-up rounds, then the timed ones.
for r in $(seq $((runs + 2))); do
  for c in "${cmds[@]}"; do
    t0=${EPOCHREALTIME//[.,]/}
    ${c#*|} >/dev/null || echo "failed: ${c%%|*}" >&2
    t1=${EPOCHREALTIME//[.,]/}
    [ "$r" -gt 2 ] && echo $((t1 - t0)) >>"$work/t.${c%%|*}"
  done
done
median() { sort -n "$1" | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR + 1) / 2)] / 1000}'; }
for c in "${cmds[@]}"; do
  k=${c%%|*}
  printf '%-16s median %7s ms\n' "$k" "$(median "$work/t.$k")"
done
if [ -d "$work/docker" ]; then
  for n in "${names[@]}"; do
    for m in none bridge publish; do
      echo "$n-$m / docker-$m: $(echo "scale=2; $(median "$work/t.$n-$m") / $(median "$work/t.docker-$m")" | bc)"
    done
  done
fi
echo "($runs rounds, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(uname -r), $(date -u '+%F %H:%M') UTC)"
