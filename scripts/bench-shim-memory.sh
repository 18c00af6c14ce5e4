#!/usr/bin/env bash
# Benchmark (not a test): the memory of the process that watches one container,
# measured live in one run with the same container (`sleep 1000` on busybox):
# berth-shim (berth), conmon (podman) and containerd-shim-runc-v2 (docker). For each:
# VmRSS, RssAnon (private heap and stacks), RssFile (code and mapped files), Pss
# (RSS with shared pages divided among their users) and its thread count. Each
# engine runs private on temporary directories.
# Usage: sudo ./scripts/bench-shim-memory.sh [BIN]  (BIN: a directory with release
# binaries of berth; default target/release, built if missing). Set SAMPLES=N to
# average over N containers of each engine (default 3), ENGINES to measure fewer
# (default "berth podman docker").
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
. scripts/deps.sh
berth_apt_install busybox-static jq procps

bin=${1:-${CARGO_TARGET_DIR:-$PWD/target}/release}
samples=${SAMPLES:-3}
engines=" ${ENGINES:-berth podman docker} "
if [ -z "${1:-}" ]; then
  cargo build --release -q -p berth-engine -p berth-cli -p berth-manager -p berth-shim -p berth-runtime -p berth-init --bins
fi

# Short: a shim socket, <state>/tasks/<64-hex id>/shim.sock, must fit in 107 bytes.
work=$(mktemp -d /tmp/bsm.XXXXXX)
pids=()
podman=()
cleanup() {
  set +e
  [ -S "$work/berth.sock" ] && "$bin/berth" -H "unix://$work/berth.sock" rm -f $("$bin/berth" -H "unix://$work/berth.sock" ps -aq 2>/dev/null) >/dev/null 2>&1
  [ -n "${podman[*]:-}" ] && "${podman[@]}" rm -af -t 0 >/dev/null 2>&1
  [ -S "$work/docker/docker.sock" ] && timeout 60 docker -H "unix://$work/docker/docker.sock" rm -f $(docker -H "unix://$work/docker/docker.sock" ps -aq 2>/dev/null) >/dev/null 2>&1
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  "$bin/berthd" --teardown-networks --exec-root "$work/run/engine" 2>/dev/null
  for f in "$work"/run/tasks/*/shim.pid; do [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; done
  for f in $(pgrep -f "containerd-shim.*$work"); do kill -9 "$f"; done
  grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
  for d in /sys/fs/cgroup/*/berth /sys/fs/cgroup/berth /sys/fs/cgroup/*/berth-bench-docker /sys/fs/cgroup/*/berth-bench-podman; do
    [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  rm -rf "$work"
}
trap cleanup EXIT
# shellcheck source=scripts/bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"


# "VmRSS RssAnon RssFile Pss Threads" of one pid, sizes in KiB.
mem_of() {
  local p=$1
  local pss
  pss=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)
  awk -v pss="$pss" '/^VmRSS:/ {r=$2} /^RssAnon:/ {a=$2} /^RssFile:/ {f=$2} /^Threads:/ {t=$2}
    END {print r, a, f, pss, t}' "/proc/$p/status"
}
# Mean of each column over the pids, printed as a row for NAME.
report() {
  local name=$1; shift
  [ $# -gt 0 ] || { printf '%-26s (none found)\n' "$name"; return; }
  for p in "$@"; do mem_of "$p"; done | awk -v n="$name" '
    {r+=$1; a+=$2; f+=$3; s+=$4; t+=$5; c++}
    END {printf "%-26s VmRSS %6.2f MiB  RssAnon %5.2f MiB  RssFile %5.2f MiB  Pss %5.2f MiB  threads %d  (%d)\n",
      n, r/c/1024, a/c/1024, f/c/1024, s/c/1024, t/c, c}'
}

./scripts/make-rootfs.sh "$work/rootfs" >/dev/null
tar -C "$work/rootfs" -cf "$work/busybox.tar" .

# berth
start_berth "bsm$$" "$(free_net).1/24"
"${berth[@]}" import --change 'CMD ["sh"]' "$work/busybox.tar" busybox:latest >/dev/null
for _ in $(seq "$samples"); do "${berth[@]}" run -d --network none busybox sleep 1000 >/dev/null; done
shims=$(for f in "$work"/run/tasks/*/shim.pid; do cat "$f"; echo; done)

# podman (conmon)
conmons=
if [[ $engines == *" podman "* ]] && command -v podman >/dev/null && command -v conmon >/dev/null; then
  podman=(podman --root "$work/podman/root" --runroot "$work/podman/run" --cgroup-manager cgroupfs
    --events-backend file --storage-driver overlay --runtime runc)
  "${podman[@]}" import --change 'CMD ["sh"]' "$work/busybox.tar" localhost/busybox:latest >/dev/null
  # podman's default limits (RLIMIT_NOFILE 1048576) are above this host's hard limits,
  # and runc's setrlimit then fails with EPERM: ask for small ones.
  ok=1
  for _ in $(seq "$samples"); do
    "${podman[@]}" run -d --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --cgroup-parent /berth-bench-podman localhost/busybox sleep 1000 \
      >/dev/null 2>"$work/podman.err" || { ok=0; echo "podman cannot run a container here: $(tail -n 3 "$work/podman.err")"; break; }
  done
  [ "$ok" = 1 ] && conmons=$(pgrep -f "conmon.*$work/podman" || true)
fi

# docker (containerd-shim-runc-v2)
dshims=
if [[ $engines == *" docker "* ]] && command -v dockerd >/dev/null; then
  mkdir -p "$work/docker"
  dockerd --host="unix://$work/docker/docker.sock" --data-root="$work/docker/data" \
    --exec-root="$work/docker/exec" --pidfile="$work/docker/docker.pid" \
    --iptables=false --ip6tables=false --bridge=none --cgroup-parent=/berth-bench-docker \
    >"$work/docker/dockerd.log" 2>&1 &
  pids+=("$!")
  for _ in $(seq 1200); do docker -H "unix://$work/docker/docker.sock" version >/dev/null 2>&1 && break; sleep 0.1; done
  d=(docker -H "unix://$work/docker/docker.sock")
  "${d[@]}" import --change 'CMD ["sh"]' "$work/busybox.tar" busybox:latest >/dev/null
  for _ in $(seq "$samples"); do "${d[@]}" run -d --network none busybox sleep 1000 >/dev/null; done
  dshims=$(pgrep -f "containerd-shim.*$work" || true)
fi

# Let every monitor settle (first log writes, lazy initialisation) before reading.
sleep 2
echo "== memory of one container's monitor (sleep 1000, mean of $samples)"
report "berth-shim" $shims
report "conmon (podman)" $conmons
report "containerd-shim-runc-v2" $dshims
size() { [ -n "$1" ] && stat -c %s "$1" | awk '{printf "%.2f MiB", $1/1048576}'; }
echo "binaries: berth-shim $(size "$bin/berth-shim"), conmon $(size "$(command -v conmon || true)"), containerd-shim-runc-v2 $(size "$(command -v containerd-shim-runc-v2 || true)")"
echo "($(nproc) cores, $(uname -r), $(date -u '+%F %H:%M UTC'))"
