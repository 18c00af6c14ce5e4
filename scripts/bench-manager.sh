#!/usr/bin/env bash
# Benchmark (not a test): COUNT containers (busybox `true`) created, started,
# waited for and deleted through berth-manager's gRPC API, one after the other and
# then all at once, with berth-runtime and with runc, each against a private
# manager on temporary directories (its run directory on a tmpfs, as /run is).
# Prints each step's median and 90th percentile and the total time, then the
# resident memory of 10 idle shims and of the manager.
# Usage: sudo ./scripts/bench-manager.sh [COUNT]
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-100}
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
. scripts/deps.sh
berth_apt_install busybox-static runc

target=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release -q -p berth-manager -p berth-shim -p berth-runtime --bins
cargo build --release -q -p berth-manager --example bench_manager
bin=$target/release
bench=$bin/examples/bench_manager

work=$(mktemp -d /tmp/berth-bench-mgr.XXXXXX)
manager_pid=
stop_manager() {
  if [ -n "$manager_pid" ]; then
    kill -TERM "$manager_pid" 2>/dev/null || true
    wait "$manager_pid" 2>/dev/null || true
    manager_pid=
  fi
}
cleanup() {
  # Best effort, every step: a step finding nothing to undo must not skip the rest.
  set +e
  stop_manager
  # Anything a failed run left: shims, containers, mounts, cgroups.
  for pidfile in "$work"/*/run/tasks/*/shim.pid; do
    [ -f "$pidfile" ] && kill -9 "$(cat "$pidfile")" 2>/dev/null || true
  done
  for root in "$work"/*/run/runtime; do
    [ -d "$root" ] || continue
    for c in "$root"/*; do
      [ -e "$c" ] && "${runtime_bin:-runc}" --root "$root" delete --force "$(basename "$c")" 2>/dev/null || true
    done
  done
  grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  for d in /sys/fs/cgroup/*/berth-bench /sys/fs/cgroup/berth-bench; do
    [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  rm -rf "$work"
  true
}
trap cleanup EXIT

for rt in berth-runtime runc; do
  runtime_bin=$rt
  [ "$rt" = berth-runtime ] && runtime_bin=$bin/berth-runtime
  command -v "$runtime_bin" >/dev/null || { echo "skipping $rt: not installed"; continue; }
  dir=$work/$rt
  mkdir -p "$dir/run"
  mount -t tmpfs -o size=256m tmpfs "$dir/run"
  "$bin/berth-manager" --address "$dir/m.sock" --root "$dir/root" --state "$dir/run" \
    --runtime "$runtime_bin" --shim "$bin/berth-shim" --log-level warn 2>"$dir/manager.log" &
  manager_pid=$!
  for _ in $(seq 200); do [ -S "$dir/m.sock" ] && break; sleep 0.05; done
  [ -S "$dir/m.sock" ] || { cat "$dir/manager.log"; exit 1; }

  echo "== $rt: $count sequential"
  "$bench" --socket "$dir/m.sock" --count "$count" --mode sequential --prefix s
  echo "== $rt: $count parallel"
  "$bench" --socket "$dir/m.sock" --count "$count" --mode parallel --prefix p
  echo "== $rt: memory"
  "$bench" --socket "$dir/m.sock" --rss 10 --prefix m
  stop_manager
  umount -l "$dir/run"
done
echo "($count containers, $(nproc) cores, $(uname -r), $(date -u +%F))"
