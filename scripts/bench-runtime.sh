#!/usr/bin/env bash
# Benchmark (not a test): `run` of a busybox `true` bundle with berth-runtime, runc
# and crun, in turns in one run, with hyperfine. Prints each median and the ratio to
# berth-runtime. Usage: sudo ./scripts/bench-runtime.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-200}
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
. scripts/deps.sh
berth_apt_install busybox-static runc crun jq hyperfine bc

cargo build --release -q -p berth-runtime
[ "${BENCH_NO_SEAL:-}" = 1 ] && export _BERTH_RUNTIME_SEALED=1 && echo "WARNING: memfd re-exec disabled (measuring its cost only)"
berth=$PWD/target/release/berth-runtime

work=$(mktemp -d /tmp/berth-bench.XXXXXX)
mounted_hugetlb=0
# The runtimes' state roots live on a tmpfs, as /run does on every systemd host
# (the default roots are /run/berth/runtime, /run/runc, /run/crun): berth-runtime
# fsyncs its state.json, which is free on tmpfs and costs milliseconds on a disk.
mkdir -p "$work/roots" && mount -t tmpfs -o size=64m tmpfs "$work/roots"
cleanup() {
  umount "$work/roots" 2>/dev/null || true
  for d in /sys/fs/cgroup/*/berth-bench /sys/fs/cgroup/berth-bench; do
    [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  if [ "$mounted_hugetlb" = 1 ]; then
    # The v1 hierarchy only goes away (giving hugetlb back to cgroup2) if it has
    # no child cgroup left when unmounted: remove the empty berth ones anything
    # made meanwhile (run this script alone, not beside the tests).
    find /sys/fs/cgroup/hugetlb -mindepth 1 -depth -type d -name 'berth*' -exec rmdir {} \; 2>/dev/null || true
    umount /sys/fs/cgroup/hugetlb && rmdir /sys/fs/cgroup/hugetlb || true
    # A cgroup removed just before is still dying and keeps the hierarchy alive
    # at umount; mount and unmount again until cgroup2 has hugetlb back.
    for _ in 1 2 3 4 5; do
      grep -qw hugetlb /sys/fs/cgroup/unified/cgroup.controllers && break
      sleep 1
      mkdir -p /sys/fs/cgroup/hugetlb && mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb &&
        umount /sys/fs/cgroup/hugetlb; rmdir /sys/fs/cgroup/hugetlb 2>/dev/null || true
    done
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# crun 1.8 refuses a hybrid layout whose v2 mount still holds a controller
# (hugetlb here): give hugetlb a v1 hierarchy for the length of the benchmark.
if [ -f /sys/fs/cgroup/unified/cgroup.controllers ] && grep -qw hugetlb /sys/fs/cgroup/unified/cgroup.controllers \
   && [ ! -d /sys/fs/cgroup/hugetlb ]; then
  mkdir -p /sys/fs/cgroup/hugetlb && mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb && mounted_hugetlb=1
fi

bundle=$work/bundle
./scripts/make-rootfs.sh "$bundle/rootfs"
(cd "$bundle" && runc spec)
jq '.process.terminal=false | .process.args=["/bin/true"] | .linux.cgroupsPath="/berth-bench/c"' \
  "$bundle/config.json" >"$bundle/config.json.new" && mv "$bundle/config.json.new" "$bundle/config.json"

cmds=()
names=()
for rt in berth-runtime runc crun; do
  bin=$rt; [ "$rt" = berth-runtime ] && bin=$berth
  command -v "$bin" >/dev/null || { echo "skipping $rt: not installed"; continue; }
  mkdir -p "$work/roots/$rt"
  # One warm-up run shows an error now rather than 200 failures later.
  "$bin" --root "$work/roots/$rt" run -b "$bundle" bench >/dev/null
  names+=("$rt")
  cmds+=("$bin --root $work/roots/$rt run -b $bundle bench")
done

hyperfine -N --style basic --warmup 5 --runs "$runs" --export-json "$work/h.json" "${cmds[@]}"

base=$(jq '.results[0].median' "$work/h.json")
printf '%-14s %12s %10s\n' runtime median_ms "x berth"
for i in "${!names[@]}"; do
  m=$(jq ".results[$i].median" "$work/h.json")
  printf '%-14s %12.2f %10.2f\n' "${names[$i]}" "$(echo "$m*1000" | bc -l)" "$(echo "$m/$base" | bc -l)"
done
echo "($runs runs each, $(nproc) cores, $(uname -r), $(date -u +%F))"
