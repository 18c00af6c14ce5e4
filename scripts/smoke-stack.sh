#!/usr/bin/env bash
# Smoke check of the whole stack (berth CLI -> berthd -> berth-manager -> berth-shim
# -> berth-runtime) on any Linux host, cgroup v1, hybrid or v2-only. It needs only
# the six release binaries, a static busybox, bash and coreutils: no Rust, no
# netavark (every container runs with --network none), no python. Carried to a
# cgroup v2-only host it checks what the hybrid CI host cannot: the eBPF device
# program under a real container, memory/pids/cpu limits and the OOM kill through
# the engine, seccomp, update, pause, and containers that outlive a killed manager.
# Everything runs on its own temporary roots and sockets; nothing is left behind.
# Usage: sudo scripts/smoke-stack.sh [BIN_DIR] [BUSYBOX]
set -uo pipefail
bin=$(readlink -f "${1:-target/release}")
export BUSYBOX=${2:-/bin/busybox}
here=$(cd "$(dirname "$0")" && pwd)
# Short: <state>/tasks/<64 hex id>/shim.sock must fit a unix socket address.
work=$(mktemp -d /tmp/bss.XXXX)
fail=0
pids=()

# The host's cgroup2 mount, where one exists.
cg2=""
for d in /sys/fs/cgroup /sys/fs/cgroup/unified; do
  [ "$(stat -fc %T "$d" 2>/dev/null)" = cgroup2fs ] && { cg2=$d; break; }
done
v2only=0; [ "$cg2" = /sys/fs/cgroup ] && v2only=1

cleanup() {
  if [ -S "$work/berth.sock" ]; then
    ids=$("${berth[@]}" ps -aq 2>/dev/null)
    [ -n "$ids" ] && "${berth[@]}" rm -f $ids >/dev/null 2>&1
  fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  # Shims of containers that were not removed, and their containers.
  pkill -9 -f "$work/" 2>/dev/null
  sleep 0.2
  grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m"; done
  # The containers' parent cgroup, once empty (a berth running beside keeps its own).
  rmdir /sys/fs/cgroup/berth /sys/fs/cgroup/*/berth 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

check() { # name, expected, actual
  if [ "$2" = "$3" ]; then echo "ok   $1"; else echo "FAIL $1: expected [$2], got [$3]"; fail=1; fi
}
contains() { # name, needle, haystack
  case "$3" in *"$2"*) echo "ok   $1" ;; *) echo "FAIL $1: [$2] not in [$3]"; fail=1 ;; esac
}

echo "host: $(uname -r), cgroup $([ $v2only = 1 ] && echo v2-only || echo "v1/hybrid (cgroup2 at ${cg2:-none})")"
echo "{}" >"$work/daemon.json"
"$bin/berth-manager" --address "$work/manager.sock" --root "$work/root" --state "$work/run" \
  --runtime "$bin/berth-runtime" --shim "$bin/berth-shim" --log-level warn 2>>"$work/manager.log" &
manager_pid=$!; pids+=("$manager_pid")
for _ in $(seq 200); do [ -S "$work/manager.sock" ] && break; sleep 0.05; done
"$bin/berthd" -H "unix://$work/berth.sock" --manager "$work/manager.sock" \
  --data-root "$work/engine" --exec-root "$work/run/engine" --init-path "$bin/berth-init" \
  --config-file "$work/daemon.json" --log-level warn 2>>"$work/berthd.log" &
pids+=("$!")
for _ in $(seq 200); do [ -S "$work/berth.sock" ] && break; sleep 0.05; done
berth=("$bin/berth" -H "unix://$work/berth.sock")
b() { "${berth[@]}" "$@" 2>&1; }
run() { b run --rm --network none "$@"; }
logs() { tail -n 30 "$work/manager.log" "$work/berthd.log"; }

"$here/make-rootfs.sh" "$work/rootfs"
tar -C "$work/rootfs" -cf "$work/busybox.tar" .
b import --change 'CMD ["sh"]' "$work/busybox.tar" busybox:latest >/dev/null || { logs; exit 1; }

check "pid 1 inside" 1 "$(run busybox sh -c 'echo $$')"
check "exit code passed through" 3 "$(run busybox sh -c 'exit 3' >/dev/null; echo $?)"

# Limits, seen from inside (a cgroup namespace on v2, as Docker) and from the host.
if [ $v2only = 1 ]; then
  check "-m 100m: memory.max" 104857600 "$(run -m 100m busybox cat /sys/fs/cgroup/memory.max)"
  check "--pids-limit 20: pids.max" 20 "$(run --pids-limit 20 busybox cat /sys/fs/cgroup/pids.max)"
  check "--cpus 0.5: cpu.max" "50000 100000" "$(run --cpus 0.5 busybox cat /sys/fs/cgroup/cpu.max)"
  check "own cgroup namespace" "0::/" "$(run busybox cat /proc/self/cgroup)"
else
  check "-m 100m: memory.limit_in_bytes" 104857600 \
    "$(run -m 100m busybox cat /sys/fs/cgroup/memory/memory.limit_in_bytes)"
fi
b run --name smoke-oom --network none -m 32m --memory-swap 32m busybox sh -c 'tail /dev/zero' >/dev/null
check "allocation past -m 32m: exit" 137 "$(b inspect -f '{{.State.ExitCode}}' smoke-oom)"
check "allocation past -m 32m: OOMKilled" true "$(b inspect -f '{{.State.OOMKilled}}' smoke-oom)"
b rm smoke-oom >/dev/null

# Devices: Docker's rules allow mknod of any node but open only of its list; on a v2
# host an eBPF program enforces that, on v1 the devices controller.
# A block device the host itself may open (the root disk, another disk, a loop
# device; some sandboxes refuse even root the disk), so that a refusal inside is
# the container's rules.
disk=""
for cand in $(awk '$5 == "/" {print $3}' /proc/self/mountinfo) \
  $(cat /sys/block/*/dev 2>/dev/null | sort -t: -k1,1n -k2,2n); do
  [ "${cand%%:*}" = 0 ] && continue
  rm -f "$work/disk"
  mknod "$work/disk" b "${cand%%:*}" "${cand##*:}" 2>/dev/null &&
    head -c 1 "$work/disk" >/dev/null 2>&1 && { disk=$cand; break; }
done
if [ -n "$disk" ]; then
  maj=${disk%%:*}; min=${disk##*:}
  probe="mknod /tmp/disk b $maj $min && echo mknod-ok; head -c 1 /tmp/disk >/dev/null && echo opened"
  out=$(run busybox sh -c "$probe")
  contains "default: mknod of the host disk ($disk)" mknod-ok "$out"
  contains "default: opening it is refused" "Operation not permitted" "$out"
  check "--privileged: it opens" "mknod-ok opened" "$(run --privileged busybox sh -c "$probe" | tr '\n' ' ' | sed 's/ $//')"
  check "--privileged: berthd's capabilities" "$(grep CapBnd /proc/self/status | cut -f2)" \
    "$(run --privileged busybox grep CapEff /proc/self/status | cut -f2)"
  out=$(run --device "$work/disk:/dev/xdisk:r" busybox sh -c 'head -c 1 /dev/xdisk >/dev/null && echo read-ok; echo x 2>&1 >/dev/xdisk')
  contains "--device $disk:r: read" read-ok "$out"
  contains "--device $disk:r: write refused" "Operation not permitted" "$out"
else
  echo "skip devices: no block device on this host"
fi
out=$(run busybox sh -c 'mknod /tmp/mem c 1 1 && head -c 1 /tmp/mem' 2>&1)
contains "default: /dev/mem (c 1:1) refused" "Operation not permitted" "$out"
check "default: /dev/null usable" ok "$(run busybox sh -c 'echo x >/dev/null && echo ok')"

# Seccomp and capabilities, as Docker's defaults.
check "seccomp filter" "Seccomp:	2" "$(run busybox grep '^Seccomp:' /proc/self/status)"
contains "unshare -U -r refused" "Operation not permitted" "$(run busybox unshare -U -r true)"
check "seccomp=unconfined" "Seccomp:	0" \
  "$(run --security-opt seccomp=unconfined busybox grep '^Seccomp:' /proc/self/status)"
check "mount refused" fail "$(run busybox sh -c 'mount -t tmpfs x /mnt 2>/dev/null && echo ok || echo fail')"

# A long-running container: pause, update, stats, kill -9 1 inside, kill -9 outside.
id=$(b run -d --name smoke-long --network none -m 100m busybox sleep 1000)
pid=$(b inspect -f '{{.State.Pid}}' "$id")
check "running" running "$(b inspect -f '{{.State.Status}}' "$id")"
hostcg=$(sed -n 's/^0:://p' "/proc/$pid/cgroup")
[ $v2only = 1 ] && check "host cgroup memory.max" 104857600 "$(cat "/sys/fs/cgroup$hostcg/memory.max")"
b update -m 200m --memory-swap 400m "$id" >/dev/null
check "update -m 200m" 209715200 "$(b inspect -f '{{.HostConfig.Memory}}' "$id")"
if [ $v2only = 1 ]; then
  check "update: memory.max" 209715200 "$(cat "/sys/fs/cgroup$hostcg/memory.max")"
  check "update: memory.swap.max" 209715200 "$(cat "/sys/fs/cgroup$hostcg/memory.swap.max")"
fi
b pause "$id" >/dev/null
check "paused" paused "$(b inspect -f '{{.State.Status}}' "$id")"
[ $v2only = 1 ] && check "cgroup.freeze" 1 "$(cat "/sys/fs/cgroup$hostcg/cgroup.freeze")"
b unpause "$id" >/dev/null
check "unpaused" running "$(b inspect -f '{{.State.Status}}' "$id")"
mem=$(b stats --no-stream --format '{{.MemUsage}}' "$id")
contains "stats memory" "/ 200MiB" "$mem"
b exec "$id" kill -9 1 >/dev/null
sleep 0.3
check "kill -9 1 inside does nothing" running "$(b inspect -f '{{.State.Status}}' "$id")"

# The manager killed: the container runs on, and its exit while the manager is
# down is seen once it is back.
kill -9 "$manager_pid"; wait "$manager_pid" 2>/dev/null
check "container outlives the manager" S "$(awk '{print $3}' "/proc/$pid/stat")"
kill -9 "$pid"
"$bin/berth-manager" --address "$work/manager.sock" --root "$work/root" --state "$work/run" \
  --runtime "$bin/berth-runtime" --shim "$bin/berth-shim" --log-level warn 2>>"$work/manager.log" &
pids+=("$!")
check "exit while the manager was down" 137 "$(timeout 20 "${berth[@]}" wait "$id")"
contains "ps -a" "Exited (137)" "$(b ps -a --filter name=smoke-long --format '{{.Status}}')"
b rm "$id" >/dev/null

# --init reaps orphans: a zombie under berth-init does not stay.
out=$(run --init busybox sh -c 'sh -c "sleep 0.1 & exit"; sleep 0.5; cat /proc/1/comm; ps -o stat | grep -c Z')
check "--init: pid 1 and no zombies" "berth-init 0" "$(echo $out)"

check "nothing left running" "" "$(b ps -q)"
[ $fail = 0 ] || logs
echo "$([ $fail = 0 ] && echo PASS || echo FAIL)"
exit $fail
