#!/usr/bin/env bash
# Benchmark (not a test): `run --rm busybox true` through berth (berth CLI → berthd
# → berth-manager → berth-shim → berth-runtime) and, when Debian's docker.io is
# installed, through docker (docker CLI → dockerd → containerd → shim → runc), in
# turns in one hyperfine run, each stack private on temporary directories. Then the
# resident memory of the daemons, idle and with 50 running containers:
# berthd + berth-manager against dockerd + containerd (shims are counted apart).
# Then how fast exits travel: the time from a container's death (kill -9 of its
# init from the host, a `wait` already pending) to that `wait` returning, berth and
# docker in turns (median, p99); and, with the 50 containers, the time from
# starting berth-manager again (it was SIGKILLed, and the containers killed while it
# was down) until berthd shows none of them running (for docker: containerd
# SIGKILLed, dockerd restarts it).
# Then networking: `run --rm` on the default bridge and with `-p`, berth vs docker vs
# podman (each on a bridge and subnet of its own), and TCP throughput from the host to
# a container through a port published on 127.0.0.1 (iperf3), berth vs docker.
# Last, the memory of one container's monitor, measured live side by side:
# berth-shim, podman's conmon and docker's containerd-shim-runc-v2
# (scripts/bench-shim-memory.sh).
# Prints medians and ratios. Usage: sudo ./scripts/bench-engine.sh [RUNS] [EXIT_RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-50}
exit_runs=${2:-40}
containers=${BENCH_CONTAINERS:-50}
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
. scripts/deps.sh
berth_apt_install busybox-static hyperfine jq procps iperf3 netavark aardvark-dns iptables

target=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release -q -p berth-engine -p berth-cli -p berth-manager -p berth-shim -p berth-runtime -p berth-init --bins
bin=$target/release

# Short: a shim socket, <state>/tasks/<64-hex id>/shim.sock, must fit in 107 bytes.
work=$(mktemp -d /tmp/bbe.XXXXXX)
pids=()
cleanup() {
  set +e
  [ -S "$work/berth.sock" ] && "$bin/berth" -H "unix://$work/berth.sock" rm -f $("$bin/berth" -H "unix://$work/berth.sock" ps -aq 2>/dev/null) >/dev/null 2>&1
  [ -n "${podman[*]:-}" ] && "${podman[@]}" rm -af >/dev/null 2>&1
  # dockerd 20.10 can take minutes (or hang) removing 50 containers at once; past
  # a minute, stopping dockerd and containerd below ends them anyway.
  [ -S "$work/docker/docker.sock" ] && timeout 60 docker -H "unix://$work/docker/docker.sock" rm -f $(docker -H "unix://$work/docker/docker.sock" ps -aq 2>/dev/null) >/dev/null 2>&1
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  # What berth set up in the kernel, if a container outlived its removal.
  "$bin/berthd" --teardown-networks --exec-root "$work/run/engine" 2>/dev/null
  # dockerd leaves its bridge behind.
  [ -e "/sys/class/net/$docker_bridge" ] && ip link del "$docker_bridge"
  # Shims of anything a failed run left, then their mounts and cgroups.
  for f in "$work"/run/tasks/*/shim.pid; do [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; done
  grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
  for f in $(pgrep -f "containerd-shim.*$work"); do kill -9 "$f"; done
  for d in /sys/fs/cgroup/*/berth /sys/fs/cgroup/berth /sys/fs/cgroup/*/berth-bench-docker; do
    [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  hugetlb_v1_take_back
  rm -rf "$work"
}
docker_bridge=bbd$$
podman=()
trap cleanup EXIT
# shellcheck source=scripts/bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"
run_roots_on_tmpfs "$work/run" "$work/docker/exec" "$work/podman/run"
# podman's crun refuses this hybrid host otherwise (see bench-lib.sh).
hugetlb_v1_give

# A /24 of 10.128.0.0/9 that no route of this host uses, for each engine's bridge.
berth_net=$(free_net)
docker_net=$(free_net)

# Memory of processes whose command line matches, in MiB (RSS, summed).
rss_mib() {
  local total=0 p
  for p in "$@"; do
    [ -r "/proc/$p/status" ] || continue
    total=$((total + $(awk '/^VmRSS:/ {print $2}' "/proc/$p/status")))
  done
  echo "scale=1; $total / 1024" | bc
}

start_berth "bbb$$" "$berth_net.1/24"

./scripts/make-rootfs.sh "$work/rootfs" >/dev/null
tar -C "$work/rootfs" -cf "$work/busybox.tar" .
"${berth[@]}" import --change 'CMD ["sh"]' "$work/busybox.tar" busybox:latest >/dev/null

cmds=(-n berth "${berth[*]} run --rm busybox true")
have_docker=0
if command -v dockerd >/dev/null && command -v containerd >/dev/null; then
  have_docker=1
  mkdir -p "$work/docker"
  # dockerd makes only docker0 itself; a bridge of another name must exist.
  # dockerd refuses -b with --bip: the bridge carries the address itself.
  ip link add "$docker_bridge" type bridge
  ip addr add "$docker_net.1/24" dev "$docker_bridge"
  ip link set "$docker_bridge" up
  dockerd --host="unix://$work/docker/docker.sock" --data-root="$work/docker/data" \
    --exec-root="$work/docker/exec" --pidfile="$work/docker/docker.pid" \
    --iptables=false --ip6tables=false --bridge="$docker_bridge" \
    --cgroup-parent=/berth-bench-docker \
    >"$work/docker/dockerd.log" 2>&1 &
  pids+=("$!")
  # dockerd can take a minute to come up on a loaded machine.
  for _ in $(seq 1200); do docker -H "unix://$work/docker/docker.sock" version >/dev/null 2>&1 && break; sleep 0.1; done
  docker -H "unix://$work/docker/docker.sock" version >/dev/null 2>&1 || { tail -n 20 "$work/docker/dockerd.log"; exit 1; }
  docker -H "unix://$work/docker/docker.sock" import --change 'CMD ["sh"]' "$work/busybox.tar" busybox:latest >/dev/null
  # --network none on both here: the engine alone (networking is timed below).
  cmds+=(-n docker "docker -H unix://$work/docker/docker.sock run --rm --network none busybox true")
else
  echo "docker.io not installed: timing berth alone"
fi
cmds[2]="${berth[*]} run --rm --network none busybox true"

# One run in the open first: if the stack cannot run a container, say why.
"${berth[@]}" run --rm --network none busybox true || { tail -n 20 "$work/berthd.log" "$work/manager.log"; exit 1; }
hyperfine -N --warmup 3 --runs "$runs" --export-json "$work/run.json" "${cmds[@]}"
jq -r '.results[] | "\(.command | split(" ")[0] | split("/")[-1]) median \(.median * 1000 | floor) ms"' "$work/run.json"
if [ "$have_docker" = 1 ]; then
  jq -r '.results as $r | "docker/berth latency ratio: \(($r[1].median / $r[0].median) * 100 | floor / 100)"' "$work/run.json"
fi

echo "== resident memory (MiB), idle"
berth_idle=$(rss_mib "$manager_pid" "$berthd_pid")
echo "berthd + berth-manager: $berth_idle"
if [ "$have_docker" = 1 ]; then
  dpid=$(cat "$work/docker/docker.pid")
  cpid=$(pgrep -P "$dpid" -x containerd || true)
  docker_idle=$(rss_mib "$dpid" $cpid)
  echo "dockerd + containerd: $docker_idle"
fi

echo "== resident memory (MiB), $containers containers running"
for i in $(seq "$containers"); do "${berth[@]}" run -d --network none busybox sleep 1000 >/dev/null; done
berth_busy=$(rss_mib "$manager_pid" "$berthd_pid")
# A shim names its task directory in its environment, not its command line.
berth_shims=$(rss_mib $(for p in $(pgrep -x berth-shim); do grep -qa "$work" "/proc/$p/environ" 2>/dev/null && echo "$p"; done))
echo "berthd + berth-manager: $berth_busy (shims: $berth_shims in all)"
if [ "$have_docker" = 1 ]; then
  for i in $(seq "$containers"); do docker -H "unix://$work/docker/docker.sock" run -d --network none busybox sleep 1000 >/dev/null; done
  docker_busy=$(rss_mib "$dpid" $cpid)
  docker_shims=$(rss_mib $(pgrep -f "containerd-shim.*$work" || true))
  echo "dockerd + containerd: $docker_busy (shims: $docker_shims in all)"
fi
# Percentiles of a file of numbers (microseconds), as "median X ms, p99 Y ms".
percentiles() {
  sort -n "$1" | awk '{a[NR]=$1} END {
    m = a[int((NR + 1) / 2)]; i = int(NR * 0.99); if (i < NR * 0.99) i++; if (i < 1) i = 1
    printf "median %.1f ms, p99 %.1f ms (%d runs)", m / 1000, a[i] / 1000, NR }'
}

# One sample: a container whose init is killed from the host while a wait on it is
# pending; prints the microseconds from the kill to the wait's answer.
exit_to_wait() {
  local sock=$1; shift
  local id pid cpid t0 t1
  id=$("$@" run -d --network none busybox sleep 1000)
  pid=$("$@" inspect -f '{{.State.Pid}}' "$id")
  curl -s --unix-socket "$sock" -X POST "http://engine/containers/$id/wait" >/dev/null &
  cpid=$!
  sleep 0.3
  t0=${EPOCHREALTIME//[.,]/}
  kill -9 "$pid"
  wait "$cpid"
  t1=${EPOCHREALTIME//[.,]/}
  echo $((t1 - t0))
  "$@" rm -f "$id" >/dev/null
}

echo "== exit to wait return (kill -9 of the init from the host, wait pending)"
: >"$work/exit-berth.txt"; : >"$work/exit-docker.txt"
for _ in $(seq "$exit_runs"); do
  exit_to_wait "$work/berth.sock" "${berth[@]}" >>"$work/exit-berth.txt"
  if [ "$have_docker" = 1 ]; then
    exit_to_wait "$work/docker/docker.sock" docker -H "unix://$work/docker/docker.sock" >>"$work/exit-docker.txt"
  fi
done
echo "berth: $(percentiles "$work/exit-berth.txt")"
[ "$have_docker" = 1 ] && echo "docker: $(percentiles "$work/exit-docker.txt")"

echo "== every exit seen after a manager restart ($containers containers killed while it was down)"
cpids=$("${berth[@]}" inspect -f '{{.State.Pid}}' $("${berth[@]}" ps -q))
kill -9 "$manager_pid"; wait "$manager_pid" 2>/dev/null || true
for p in $cpids; do kill -9 "$p"; done
t0=${EPOCHREALTIME//[.,]/}
start_berth_manager
echo "berth: $(seen_all "$t0" "${berth[@]}")"
if [ "$have_docker" = 1 ]; then
  d=(docker -H "unix://$work/docker/docker.sock")
  cpids=$("${d[@]}" inspect -f '{{.State.Pid}}' $("${d[@]}" ps -q))
  ctr=$(pgrep -P "$dpid" -x containerd || true)
  t0=${EPOCHREALTIME//[.,]/}
  # dockerd starts its containerd again by itself.
  [ -n "$ctr" ] && kill -9 $ctr
  for p in $cpids; do kill -9 "$p"; done
  echo "docker: $(seen_all "$t0" "${d[@]}")"
fi

for c in $("${berth[@]}" ps -aq); do "${berth[@]}" rm -f "$c" >/dev/null; done
if [ "$have_docker" = 1 ]; then
  docker -H "unix://$work/docker/docker.sock" rm -f $(docker -H "unix://$work/docker/docker.sock" ps -aq) >/dev/null
fi

echo "== networking: run --rm on the default bridge, and with -p 127.0.0.1::80"
ncmds=(-n berth-bridge "${berth[*]} run --rm busybox true"
  -n berth-publish "${berth[*]} run --rm -p 127.0.0.1::80 busybox true")
if [ "$have_docker" = 1 ]; then
  ncmds+=(-n docker-bridge "docker -H unix://$work/docker/docker.sock run --rm busybox true"
    -n docker-publish "docker -H unix://$work/docker/docker.sock run --rm -p 127.0.0.1::80 busybox true")
fi
if command -v podman >/dev/null; then
  # Private storage; podman's own default network (netavark, podman0, 10.88.0.0/16).
  podman=(podman --root "$work/podman/root" --runroot "$work/podman/run" --cgroup-manager cgroupfs
    --events-backend file --storage-driver overlay)
  # podman's default limits (RLIMIT_NOFILE 1048576) can be above the host's hard
  # limits, and the runtime's setrlimit then fails with EPERM: ask for small ones.
  pl="--ulimit nofile=1024:1024 --ulimit nproc=1024:1024"
  "${podman[@]}" import --change 'CMD ["sh"]' "$work/busybox.tar" localhost/busybox:latest >/dev/null
  # Only when it can run a container here (say why otherwise, and go on without it).
  if "${podman[@]}" run --rm $pl localhost/busybox true >"$work/podman.err" 2>&1; then
    ncmds+=(-n podman-bridge "${podman[*]} run --rm $pl localhost/busybox true"
      -n podman-publish "${podman[*]} run --rm $pl -p 127.0.0.1::80 localhost/busybox true")
  else
    echo "podman cannot run a container here, left out: $(tail -n 3 "$work/podman.err")"
  fi
fi
"${berth[@]}" run --rm -p 127.0.0.1::80 busybox true || { tail -n 20 "$work/berthd.log"; exit 1; }
hyperfine -N --warmup 3 --runs "$runs" --export-json "$work/net.json" "${ncmds[@]}"
jq -r '.results[] | "\(.command) median \(.median * 1000 | floor) ms"' "$work/net.json"
jq -r '.results as $r | ($r | map({key: .command, value: .median}) | from_entries) as $m
  | ["bridge", "publish"][] as $k
  | "\($k): docker/berth \(if $m["docker-\($k)"] then ($m["docker-\($k)"] / $m["berth-\($k)"] * 100 | floor / 100) else "-" end), podman/berth \(if $m["podman-\($k)"] then ($m["podman-\($k)"] / $m["berth-\($k)"] * 100 | floor / 100) else "-" end)"' "$work/net.json"

echo "== TCP throughput host -> container through a port published on 127.0.0.1 (iperf3, 10 s)"
# An image with iperf3 and the libraries it links, on the busybox rootfs.
mkdir -p "$work/iperf"
cp -a "$work/rootfs/." "$work/iperf/"
for f in /usr/bin/iperf3 $(ldd /usr/bin/iperf3 | grep -o '/[^ ]*'); do
  mkdir -p "$work/iperf$(dirname "$f")"
  cp -L "$f" "$work/iperf$f"
done
tar -C "$work/iperf" -cf "$work/iperf.tar" .
iperf() { # iperf NAME CLI... : serve in a container, measure from the host
  local name=$1 port; shift
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$@" import --change 'CMD ["iperf3", "-s"]' "$work/iperf.tar" iperf:bench >/dev/null
  "$@" run -d --name "iperf-$name" -p "127.0.0.1:$port:5201" iperf:bench >/dev/null
  for _ in $(seq 50); do iperf3 -c 127.0.0.1 -p "$port" -t 1 >/dev/null 2>&1 && break; sleep 0.2; done
  iperf3 -c 127.0.0.1 -p "$port" -t 10 -J | jq -r --arg n "$name" '"\($n) \(.end.sum_received.bits_per_second / 1e9 * 100 | floor / 100) Gbit/s"'
  "$@" rm -f "iperf-$name" >/dev/null
}
iperf berth "${berth[@]}" | tee "$work/iperf.txt"
if [ "$have_docker" = 1 ]; then
  iperf docker docker -H "unix://$work/docker/docker.sock" | tee -a "$work/iperf.txt"
  awk '{v[$1]=$2} END {if (v["berth"] > 0) printf "docker/berth throughput ratio: %.2f\n", v["docker"] / v["berth"]}' "$work/iperf.txt"
fi
echo "== per-container monitor memory, live: berth-shim vs conmon vs containerd-shim-runc-v2"
./scripts/bench-shim-memory.sh "$bin" | sed -n '/^== /,$p'
echo "($runs runs, $containers containers, $(nproc) cores, $(uname -r), release LTO ${CARGO_PROFILE_RELEASE_LTO:-as Cargo.toml says (fat)}, $(date -u +%F))"
