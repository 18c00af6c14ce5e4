#!/usr/bin/env bash
# Benchmark (not a test): how the engines behave as the number of containers grows,
# berth vs docker vs podman in the same run, each private on temporary directories
# (--network none everywhere: the engine, not networking).
#
# 1. Parallel starts: P `run --rm busybox true` at once, for each P of --parallel;
#    the wall time until all finished, and how many failed.
# 2. Idle growth: with N idle containers running (`sleep`), for each N of --idle,
#    the latency of `run --rm busybox true`, `ps`, `inspect` and `stop` (--samples
#    of each; median and p90), and the daemons' resident memory (berthd +
#    berth-manager, dockerd + containerd, podman has none), then the CPU time the
#    daemons and monitors used over --idle-cpu seconds of nothing happening.
# 3. Restart: the largest N's containers killed while the daemons are down (berth:
#    berthd and the manager; docker: its containerd), the time until every exit
#    is seen.
#
# Prints medians, p90s and the ratios docker/berth and podman/berth, and each
# engine's latency at N against its own at the first N.
#
# Usage: sudo ./scripts/bench-scale.sh [--idle "0 20 100"] [--parallel "1 10 50"]
#          [--samples 10] [--idle-cpu 10] [--engines "berth docker podman"] [--bin DIR]
# The issue's full curves: --idle "0 100 500" --parallel "1 10 50 200" --idle-cpu 60.
# The defaults finish in about ten minutes on two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
idle_levels="0 20 100"
parallel_levels="1 10 50"
samples=10
idle_cpu=10
engines="berth docker podman"
bin=
while [ $# -gt 0 ]; do
  case $1 in
    --idle) idle_levels=$2; shift 2 ;;
    --parallel) parallel_levels=$2; shift 2 ;;
    --samples) samples=$2; shift 2 ;;
    --idle-cpu) idle_cpu=$2; shift 2 ;;
    --engines) engines=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
. scripts/deps.sh
berth_apt_install busybox-static jq procps bc

given_bin=$bin
if [ -z "$bin" ]; then
  cargo build --release -q -p berth-engine -p berth-cli -p berth-manager -p berth-shim -p berth-runtime -p berth-init --bins
  bin=${CARGO_TARGET_DIR:-$PWD/target}/release
fi

# Short: a shim socket, <state>/tasks/<64-hex id>/shim.sock, must fit in 107 bytes.
work=$(mktemp -d /tmp/bsc.XXXXXX)
pids=()
podman=()
docker=()
berth=()
cleanup() {
  set +e
  [ -n "${berth[*]:-}" ] && "${berth[@]}" rm -f $("${berth[@]}" ps -aq 2>/dev/null) >/dev/null 2>&1
  [ -n "${podman[*]:-}" ] && "${podman[@]}" rm -af -t 0 >/dev/null 2>&1
  [ -n "${docker[*]:-}" ] && timeout 600 "${docker[@]}" rm -f $("${docker[@]}" ps -aq 2>/dev/null) >/dev/null 2>&1
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  [ -x "$bin/berthd" ] && "$bin/berthd" --teardown-networks --exec-root "$work/run/engine" 2>/dev/null
  for f in "$work"/run/tasks/*/shim.pid; do [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; done
  for f in $(pgrep -f "containerd-shim.*$work"); do kill -9 "$f"; done
  for f in $(pgrep -f "conmon.*$work"); do kill -9 "$f"; done
  # A `docker rm -f` that gave up (hundreds of containers) leaves their processes
  # running once dockerd and the shims are gone: kill what is left in the other
  # engines' own cgroup parents, so that their cgroups (and a v1 hugetlb hierarchy
  # given for the run) can go.
  for d in /sys/fs/cgroup/*/berth-bench-docker /sys/fs/cgroup/*/berth-bench-podman; do
    [ -d "$d" ] && find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -9 2>/dev/null
  done
  sleep 1
  grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
  for d in /sys/fs/cgroup/*/berth /sys/fs/cgroup/berth /sys/fs/cgroup/*/berth-bench-docker /sys/fs/cgroup/*/berth-bench-podman; do
    [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  hugetlb_v1_take_back
  rm -rf "$work"
}
trap cleanup EXIT
# shellcheck source=scripts/bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"
run_roots_on_tmpfs "$work/run" "$work/docker/exec" "$work/podman/run"
# podman's crun refuses this hybrid host otherwise (see bench-lib.sh).
hugetlb_v1_give


./scripts/make-rootfs.sh "$work/rootfs" >/dev/null
tar -C "$work/rootfs" -cf "$work/busybox.tar" .

have() { case " $engines " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
active=()
if have berth; then
  berth_net=("bsc$$" "$(free_net).1/24")
  start_berth "${berth_net[@]}"
  "${berth[@]}" import --change 'CMD ["sh"]' "$work/busybox.tar" busybox:latest >/dev/null
  "${berth[@]}" run --rm --network none busybox true || { tail -n 20 "$work/berthd.log" "$work/manager.log"; exit 1; }
  active+=(berth)
fi
if have docker && command -v dockerd >/dev/null; then
  mkdir -p "$work/docker"
  dockerd --host="unix://$work/docker/docker.sock" --data-root="$work/docker/data" \
    --exec-root="$work/docker/exec" --pidfile="$work/docker/docker.pid" \
    --iptables=false --ip6tables=false --bridge=none --cgroup-parent=/berth-bench-docker \
    >"$work/docker/dockerd.log" 2>&1 &
  pids+=("$!")
  docker=(docker -H "unix://$work/docker/docker.sock")
  for _ in $(seq 1200); do "${docker[@]}" version >/dev/null 2>&1 && break; sleep 0.1; done
  if "${docker[@]}" import --change 'CMD ["sh"]' "$work/busybox.tar" busybox:latest >/dev/null 2>&1 &&
    "${docker[@]}" run --rm --network none busybox true; then
    active+=(docker)
  else
    echo "docker cannot run a container here, left out: $(tail -n 3 "$work/docker/dockerd.log")"
  fi
fi
if have podman && command -v podman >/dev/null; then
  # podman's default limits (RLIMIT_NOFILE 1048576) are above this host's hard
  # limits, and runc's setrlimit then fails with EPERM: ask for small ones.
  podman=(podman --root "$work/podman/root" --runroot "$work/podman/run" --cgroup-manager cgroupfs
    --events-backend file --storage-driver overlay --runtime runc)
  podman_run_opts=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --cgroup-parent /berth-bench-podman)
  "${podman[@]}" import --change 'CMD ["sh"]' "$work/busybox.tar" localhost/busybox:latest >/dev/null 2>&1
  if "${podman[@]}" run --rm --network none "${podman_run_opts[@]}" localhost/busybox true 2>"$work/podman.err"; then
    active+=(podman)
  else
    echo "podman cannot run a container here, left out: $(tail -n 3 "$work/podman.err")"
  fi
fi
echo "engines: ${active[*]}"

# The CLI of an engine, and the options and image its `run` takes.
cli() {
  case $1 in
    berth) echo "${berth[*]}" ;;
    docker) echo "${docker[*]}" ;;
    podman) echo "${podman[*]}" ;;
  esac
}
run_opts() {
  case $1 in
    podman) echo "--network none ${podman_run_opts[*]} localhost/busybox" ;;
    *) echo "--network none busybox" ;;
  esac
}
# Remove containers at once (podman's rm -f would first wait 10 s for a sleep that
# ignores SIGTERM as PID 1).
rm_f() {
  local e=$1; shift
  case $e in
    podman) $(cli "$e") rm -f -t 0 "$@" ;;
    *) $(cli "$e") rm -f "$@" ;;
  esac
}
# "median p90" (ms) of a file of microseconds.
stats() {
  sort -n "$1" | awk '{a[NR]=$1} END {
    if (NR == 0) { print "- -"; exit }
    m = a[int((NR + 1) / 2)]; i = int(NR * 0.9); if (i < NR * 0.9) i++; if (i < 1) i = 1
    printf "%.1f %.1f\n", m / 1000, a[i] / 1000 }'
}
results=$work/results.txt # engine stage level median p90
: >"$results"
record() { # engine stage level file
  echo "$1 $2 $3 $(stats "$4")" >>"$results"
}

echo "== parallel run --rm busybox true (wall time until all have finished)"
for p in $parallel_levels; do
  for e in "${active[@]}"; do
    c=$(cli "$e"); o=$(run_opts "$e")
    t0=${EPOCHREALTIME//[.,]/}
    runs=()
    for _ in $(seq "$p"); do
      $c run --rm $o true >/dev/null 2>>"$work/parallel-$e.err" &
      runs+=("$!")
    done
    fails=0
    for j in "${runs[@]}"; do wait "$j" || fails=$((fails + 1)); done
    t1=${EPOCHREALTIME//[.,]/}
    echo $((t1 - t0)) >"$work/p.txt"
    record "$e" parallel "$p" "$work/p.txt"
    printf '%-7s %4d at once: %8.0f ms, %d failed\n' "$e" "$p" "$(echo "($t1 - $t0) / 1000" | bc -l)" "$fails"
    # Leave nothing behind (a failed --rm may leave a container).
    ids=$($c ps -aq)
    [ -z "$ids" ] || rm_f "$e" $ids >/dev/null 2>&1 || true
  done
done

# Resident memory of the daemons, in KiB.
daemon_kib() {
  local total=0 p ps=()
  case $1 in
    berth) ps=("$manager_pid" "$berthd_pid") ;;
    docker)
      local d; d=$(cat "$work/docker/docker.pid")
      ps=("$d" $(pgrep -P "$d" -x containerd || true)) ;;
    podman) echo 0; return ;;
  esac
  for p in "${ps[@]}"; do
    [ -r "/proc/$p/status" ] && total=$((total + $(awk '/^VmRSS:/ {print $2}' "/proc/$p/status")))
  done
  echo "$total"
}
# Every process of an engine that should be idle: daemons and monitors.
engine_pids() {
  case $1 in
    berth)
      echo "$manager_pid $berthd_pid"
      # shim.pid has no newline at its end.
      # (An `if`: with no container, the unmatched glob's failed test would be the
      # function's status, and `set -e` would end the script.)
      for f in "$work"/run/tasks/*/shim.pid; do if [ -f "$f" ]; then echo "$(cat "$f")"; fi; done ;;
    docker)
      local d; d=$(cat "$work/docker/docker.pid")
      echo "$d $(pgrep -P "$d" -x containerd || true) $(pgrep -f "containerd-shim.*$work" || true)" ;;
    podman) pgrep -f "conmon.*$work" || true ;;
  esac
}
cpu_ticks() { # summed utime+stime of the pids
  local t=0 p
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] && t=$((t + $(sed 's/^.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
  done
  echo "$t"
}

echo "== latency with idle containers running (median / p90 of $samples, ms)"
stop_cmd='trap "exit 0" TERM; sleep 100000 & wait'
declare -A running
for e in "${active[@]}"; do running[$e]=0; done
for n in $idle_levels; do
  for e in "${active[@]}"; do
    c=$(cli "$e"); o=$(run_opts "$e")
    while [ "${running[$e]}" -lt "$n" ]; do
      $c run -d $o sleep 100000 >/dev/null
      running[$e]=$((running[$e] + 1))
    done
    target=$($c run -d $o sleep 100000)
    mem=$(daemon_kib "$e")
    echo "$e idle $n $mem" >>"$work/mem.txt"
    : >"$work/run.txt"; : >"$work/ps.txt"; : >"$work/inspect.txt"; : >"$work/stop.txt"
    for _ in $(seq "$samples"); do
      t0=${EPOCHREALTIME//[.,]/}; $c run --rm $o true >/dev/null; t1=${EPOCHREALTIME//[.,]/}; echo $((t1 - t0)) >>"$work/run.txt"
      t0=${EPOCHREALTIME//[.,]/}; $c ps >/dev/null; t1=${EPOCHREALTIME//[.,]/}; echo $((t1 - t0)) >>"$work/ps.txt"
      t0=${EPOCHREALTIME//[.,]/}; $c inspect "$target" >/dev/null; t1=${EPOCHREALTIME//[.,]/}; echo $((t1 - t0)) >>"$work/inspect.txt"
      s=$($c run -d $o sh -c "$stop_cmd")
      t0=${EPOCHREALTIME//[.,]/}; $c stop "$s" >/dev/null; t1=${EPOCHREALTIME//[.,]/}; echo $((t1 - t0)) >>"$work/stop.txt"
      rm_f "$e" "$s" >/dev/null
    done
    rm_f "$e" "$target" >/dev/null
    for op in run ps inspect stop; do record "$e" "$op" "$n" "$work/$op.txt"; done
    printf '%-7s %4d idle: run --rm %s, ps %s, inspect %s, stop %s; daemons %s\n' "$e" "$n" \
      "$(stats "$work/run.txt" | tr ' ' /)" "$(stats "$work/ps.txt" | tr ' ' /)" \
      "$(stats "$work/inspect.txt" | tr ' ' /)" "$(stats "$work/stop.txt" | tr ' ' /)" \
      "$(if [ "$e" = podman ]; then echo "- (none)"; else echo "$(echo "scale=1; $mem / 1024" | bc) MiB"; fi)"
  done
done

echo "== daemon memory per idle container (KiB, from the first to the last level)"
for e in "${active[@]}"; do
  [ "$e" = podman ] && continue
  awk -v e="$e" '$1 == e {if (!seen) {n0 = $3; m0 = $4; seen = 1} n1 = $3; m1 = $4}
    END {if (n1 > n0) printf "%-7s %.0f KiB per container (%d -> %d containers)\n", e, (m1 - m0) / (n1 - n0), n0, n1}' "$work/mem.txt"
done

if [ "$idle_cpu" -gt 0 ]; then
  echo "== CPU used in ${idle_cpu} s of idling (daemons and per-container monitors, ms)"
  hz=$(getconf CLK_TCK)
  # The last requests' after-effects (exits of the stopped samples, removals) settle first.
  sleep 10
  for e in "${active[@]}"; do
    ps_=$(engine_pids "$e")
    # The daemons are the first pids engine_pids names (none for podman).
    ds=
    case $e in berth | docker) ds=$(echo $ps_ | cut -d' ' -f1-2) ;; esac
    a=$(cpu_ticks $ps_); ad=$(cpu_ticks $ds); sleep "$idle_cpu"; b=$(cpu_ticks $ps_); bd=$(cpu_ticks $ds)
    printf '%-7s %d ms over %d processes (daemons %d ms, monitors %d ms)\n' "$e" $(((b - a) * 1000 / hz)) \
      "$(echo $ps_ | wc -w)" $(((bd - ad) * 1000 / hz)) $((((b - a) - (bd - ad)) * 1000 / hz))
  done
fi

# The largest level's idle containers are killed while the daemons are down: how
# long until the engine has seen every exit. berth: berthd and berth-manager are
# both killed and started again (berthd's first reconcile lists every container).
# docker: its containerd is killed (dockerd starts it again; with dockerd itself
# the containers would stop too). podman has no daemon.
echo "== every exit seen after the daemons' restart (the idle containers killed meanwhile)"
for e in "${active[@]}"; do
  c=$(cli "$e")
  if [ -z "$($c ps -q)" ]; then
    echo "$e: no idle container to kill (the largest --idle level is 0)"
    continue
  fi
  case $e in
    berth)
      cpids=$($c inspect -f '{{.State.Pid}}' $($c ps -q))
      kill -9 "$berthd_pid" "$manager_pid"; wait "$berthd_pid" "$manager_pid" 2>/dev/null || true
      for p in $cpids; do kill -9 "$p"; done
      t0=${EPOCHREALTIME//[.,]/}
      # Both at once, as a service manager starts them: berthd's link waits.
      start_berth_manager
      start_berthd "${berth_net[@]}"
      echo "berth ($(echo $cpids | wc -w) containers): $(seen_all "$t0" $c)" ;;
    docker)
      cpids=$($c inspect -f '{{.State.Pid}}' $($c ps -q))
      ctr=$(pgrep -P "$(cat "$work/docker/docker.pid")" -x containerd || true)
      t0=${EPOCHREALTIME//[.,]/}
      [ -n "$ctr" ] && kill -9 $ctr
      for p in $cpids; do kill -9 "$p"; done
      echo "docker ($(echo $cpids | wc -w) containers): $(seen_all "$t0" $c)" ;;
  esac
done

echo "== ratios (median): other/berth in the same stage, and each engine against its first level"
awk '{k = $2 " " $3; med[$1 " " k] = $4; if (!($2 in first)) first[$2] = $3; keys[k] = 1; eng[$1] = 1}
  END {
    for (k in keys) {
      split(k, s, " "); line = sprintf("%-8s %4s:", s[1], s[2])
      b = med["berth " k]
      for (e in eng) {
        if (med[e " " k] == "") continue
        line = line sprintf("  %s %s ms", e, med[e " " k])
        if (e != "berth" && b > 0) line = line sprintf(" (%.2fx berth)", med[e " " k] / b)
        f = med[e " " s[1] " " first[s[1]]]
        if (s[1] != "parallel" && f > 0 && s[2] != first[s[1]]) line = line sprintf(" [%.2fx its %s]", med[e " " k] / f, first[s[1]])
      }
      print line
    }
  }' "$results" | sort -k1,1 -k2n
# The build is only known when this script made it; --bin's binaries are the caller's.
if [ -n "$given_bin" ]; then
  build="binaries from $given_bin"
else
  build="release LTO ${CARGO_PROFILE_RELEASE_LTO:-as Cargo.toml says (fat)}"
fi
echo "(idle ${idle_levels// /\/}, parallel ${parallel_levels// /\/}, $samples samples, $(nproc) cores, $(uname -r), $build, $(date -u '+%F %H:%M UTC'))"
