#!/usr/bin/env bash
# Benchmark (not a test): `run` of a busybox `true` bundle with berth-runtime, runc
# and crun, in turns in one run, with hyperfine (ROUNDS rounds, default 4, each
# starting with another runtime). Prints each median and the ratio to berth-runtime.
# Usage: sudo [ROUNDS=N] [BERTH_BASELINE="/path/to/older/berth-runtime ..."] ./scripts/bench-runtime.sh [RUNS]
# BERTH_BASELINE adds older builds (berth-base1, berth-base2 ...) to the same rounds,
# for before/after figures taken under the same load.
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
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
# The runtimes' state roots live on a tmpfs, as /run does on every systemd host
# (the default roots are /run/berth/runtime, /run/runc, /run/crun): berth-runtime
# fsyncs its state.json, which is free on tmpfs and costs milliseconds on a disk.
mkdir -p "$work/roots" && mount -t tmpfs -o size=64m tmpfs "$work/roots"
cleanup() {
  umount "$work/roots" 2>/dev/null || true
  for d in /sys/fs/cgroup/*/berth-bench /sys/fs/cgroup/berth-bench; do
    [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  hugetlb_v1_take_back
  rm -rf "$work"
}
trap cleanup EXIT

# For crun: hugetlb on a v1 hierarchy while this runs (see bench-lib.sh).
hugetlb_v1_give

bundle=$work/bundle
./scripts/make-rootfs.sh "$bundle/rootfs"
(cd "$bundle" && runc spec)
jq '.process.terminal=false | .process.args=["/bin/true"] | .linux.cgroupsPath="/berth-bench/c"' \
  "$bundle/config.json" >"$bundle/config.json.new" && mv "$bundle/config.json.new" "$bundle/config.json"

cmds=()
names=()
read -r -a baselines <<<"${BERTH_BASELINE:-}"
bases=()
for i in "${!baselines[@]}"; do bases+=("berth-base$((i + 1))"); done
for rt in berth-runtime runc crun "${bases[@]}"; do
  bin=$rt; [ "$rt" = berth-runtime ] && bin=$berth
  case $rt in berth-base*) bin=${baselines[$((${rt#berth-base} - 1))]} ;; esac
  command -v "$bin" >/dev/null || { echo "skipping $rt: not installed"; continue; }
  mkdir -p "$work/roots/$rt"
  # One warm-up run shows an error now rather than 200 failures later.
  "$bin" --root "$work/roots/$rt" run -b "$bundle" bench >/dev/null
  names+=("$rt")
  cmds+=("$bin --root $work/roots/$rt run -b $bundle bench")
done

# hyperfine runs one command's runs in a block, then the next's: on a shared
# machine whichever block meets a busy spell is penalised (the first one was,
# by up to 2x, in turns of the same binaries). So the runs are split into
# ROUNDS hyperfine runs, each starting with a different runtime, and the
# times of all rounds are pooled.
rounds=${ROUNDS:-4}
per_round=$(((runs + rounds - 1) / rounds))
n=${#cmds[@]}
for r in $(seq 0 $((rounds - 1))); do
  order=()
  for k in $(seq 0 $((n - 1))); do order+=("${cmds[$(((k + r) % n))]}"); done
  echo "round $((r + 1))/$rounds: $per_round runs each, starting with ${names[$((r % n))]}"
  hyperfine -N --style basic --warmup 5 --runs "$per_round" --export-json "$work/h$r.json" "${order[@]}" >/dev/null
done

# Pool each command's times over the rounds (hyperfine's JSON has them all).
jq -s '[.[].results[]] | group_by(.command) | map({command: .[0].command, times: (map(.times) | add)})
  | map(. + {n: (.times | length), median: (.times | sort | if length % 2 == 1 then .[length / 2 | floor]
      else (.[length / 2 - 1] + .[length / 2]) / 2 end), mean: ((.times | add) / (.times | length))})
  | map(. + {sd: ((.times | map(. * .) | add) / .n - .mean * .mean | if . < 0 then 0 else . end | sqrt)})' \
  "$work"/h*.json >"$work/pooled.json"
stat() { jq -r --arg c "$1" ".[] | select(.command == \$c) | .$2" "$work/pooled.json"; }
base=$(stat "${cmds[0]}" median)
printf '%-14s %10s %18s %10s\n' runtime median_ms "mean ± sd (ms)" "x berth"
for i in "${!names[@]}"; do
  m=$(stat "${cmds[$i]}" median)
  printf '%-14s %10.2f %10.2f ± %5.2f %10.2f\n' "${names[$i]}" "$(echo "$m*1000" | bc -l)" \
    "$(echo "$(stat "${cmds[$i]}" mean)*1000" | bc -l)" "$(echo "$(stat "${cmds[$i]}" sd)*1000" | bc -l)" \
    "$(echo "$m/$base" | bc -l)"
done
echo "($(stat "${cmds[0]}" n) runs each in $rounds rounds, $(nproc) cores, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%F))"
