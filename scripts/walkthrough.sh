#!/usr/bin/env bash
# Runs the commands of docs/walkthrough.md and fails when an output no longer says
# what the document claims. It prints each command and its output as it goes.
#
#   sudo ./scripts/walkthrough.sh            against the installed berth
#                                            (/run/berth/berth.sock, state /run/berth)
#   sudo ./scripts/walkthrough.sh --private  against a private berth-manager + berthd
#                                            on temporary directories, from the
#                                            binaries in $BERTH_BIN (default
#                                            target/debug); what test.sh runs
#
# Everything it starts or creates is removed when it ends, even when a check fails.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }

private=0
[ "${1:-}" = --private ] && private=1

work=$(mktemp -d /tmp/berth-walk.XXXXXX)
pids=()
names=()
cleanup() {
  set +e
  for n in "${names[@]}"; do berth rm -f "$n" >/dev/null 2>&1; done
  if [ "$private" = 1 ]; then
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    for f in "$work"/run/tasks/*/shim.pid; do [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; done
    # Networks a failed run left set up (veths, iptables rules, namespaces).
    "$bin/berthd" --teardown-networks --exec-root "$state/engine" 2>/dev/null
    grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m"; done
    # The parent of the containers' cgroups, when nothing else uses it any more.
    rmdir /sys/fs/cgroup/*/berth /sys/fs/cgroup/berth 2>/dev/null
  fi
  rm -rf "$work"
  true
}
trap cleanup EXIT

fail() { echo "walkthrough: FAILED: $*" >&2; exit 1; }
# Print a command as the document shows it, run it, print its output.
show() {
  echo "\$ $*"
  local out
  out=$(eval "$@" 2>&1) || { echo "$out"; fail "command failed: $*"; }
  [ -n "$out" ] && echo "$out"
  LAST=$out
}
expect() { # expect <what the doc claims> <test expression...>
  local claim=$1; shift
  "$@" || fail "$claim (last output: ${LAST:-})"
}

if [ "$private" = 1 ]; then
  bin=$(realpath "${BERTH_BIN:-target/debug}")
  for b in berth berthd berth-manager berth-shim berth-runtime berth-init; do
    [ -x "$bin/$b" ] || fail "$bin/$b is not built (cargo build --workspace)"
  done
  state=$work/run
  "$bin/berth-manager" --address "$work/manager.sock" --root "$work/root" --state "$state" \
    --runtime "$bin/berth-runtime" --shim "$bin/berth-shim" 2>"$work/manager.log" &
  manager_pid=$!; pids+=("$manager_pid")
  for _ in $(seq 300); do [ -S "$work/manager.sock" ] && break; sleep 0.05; done
  # A bridge and subnet of its own, so it never meets an installed berth's.
  "$bin/berthd" -H "unix://$work/berth.sock" --manager "$work/manager.sock" \
    --data-root "$work/engine" --exec-root "$state/engine" --init-path "$bin/berth-init" \
    --bridge "bwalk$((RANDOM % 10000))" --bip "10.$((128 + RANDOM % 128)).$((RANDOM % 256)).1/24" \
    --default-address-pool "base=10.$((RANDOM % 128)).0.0/16,size=24" \
    --config-file "$work/daemon.json" 2>"$work/berthd.log" &
  pids+=("$!")
  for _ in $(seq 300); do [ -S "$work/berth.sock" ] && break; sleep 0.05; done
  export BERTH_HOST=unix://$work/berth.sock
  PATH=$bin:$PATH
  ./scripts/make-rootfs.sh "$work/rootfs" >/dev/null
  tar -C "$work/rootfs" -cf "$work/busybox.tar" .
  berth import --change 'CMD ["sh"]' "$work/busybox.tar" busybox:latest >/dev/null
else
  state=/run/berth
  manager_pid=$(pgrep -xo berth-manager) || fail "berth-manager is not running (sudo ./scripts/install.sh)"
fi
command -v jq >/dev/null || fail "jq is missing (apt-get install jq)"
command -v pstree >/dev/null || fail "pstree is missing (apt-get install psmisc)"

echo "## A container is a process"
show "berth run --rm busybox sh -c 'echo \$\$'"
expect "echo \$\$ prints 1 inside" [ "$LAST" = 1 ]
names+=(walk)
show berth run -d --name walk busybox sleep 1000
id=$LAST
show "berth inspect --format '{{.State.Pid}}' walk"
pid=$LAST
expect "State.Pid is a host pid" [ -d "/proc/$pid" ]
show ps -o pid,comm -p "$pid"
expect "the host sees the container's sleep" grep -q sleep <<<"$LAST"
show "berth exec walk ps -o pid,comm"
expect "inside, sleep is PID 1" grep -Eq '^ *1 +sleep' <<<"$LAST"

echo "## Its namespaces differ from the host's"
for ns in pid mnt net uts ipc; do
  show readlink "/proc/$pid/ns/$ns" "/proc/self/ns/$ns"
  expect "the container's $ns namespace is its own" \
    [ "$(readlink "/proc/$pid/ns/$ns")" != "$(readlink "/proc/self/ns/$ns")" ]
done

echo "## manager → shim → container"
shim=$(ps -o ppid= -p "$pid" | tr -d ' ')
show ps -o pid,ppid,comm -p "$manager_pid,$shim,$pid"
expect "the container's parent is its berth-shim" [ "$(ps -o comm= -p "$shim")" = berth-shim ]
expect "the shim is not the manager's child" [ "$(ps -o ppid= -p "$shim" | tr -d ' ')" != "$manager_pid" ]
show pstree -p "$shim"
expect "pstree shows berth-shim over sleep" grep -q "berth-shim($shim)---sleep($pid)" <<<"$LAST"

echo "## The runtime's state.json"
statejson=$state/runtime/$id/state.json
show jq .init_process_pid "$statejson"
expect "init_process_pid is the host pid" [ "$LAST" = "$pid" ]
show jq .namespace_paths "$statejson"
expect "namespace_paths point at the container's /proc/<pid>/ns" grep -q "\"NEWPID\": \"/proc/$pid/ns/pid\"" <<<"$LAST"

echo "## Cgroups: -m 100m"
names+=(walkmem)
show berth run -d --name walkmem -m 100m busybox sleep 1000
mpid=$(berth inspect --format '{{.State.Pid}}' walkmem)
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  cg=/sys/fs/cgroup$(awk -F: '$1 == "0" {print $3}' "/proc/$mpid/cgroup")
  show cat "$cg/memory.max"
else
  cg=/sys/fs/cgroup/memory$(awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3}' "/proc/$mpid/cgroup")
  show cat "$cg/memory.limit_in_bytes"
fi
expect "the limit is 104857600 bytes" [ "$LAST" = 104857600 ]
echo "\$ berth run --rm -m 100m busybox sh -c 'head -c 200m /dev/zero | tail'"
set +e
berth run --rm -m 100m busybox sh -c 'head -c 200m /dev/zero | tail' >/dev/null 2>&1
code=$?
set -e
echo "(exit status $code)"
expect "an allocation past the limit is killed: 137" [ "$code" = 137 ]

echo "## Overlay layers and diff"
show "berth inspect --format '{{json .GraphDriver.Data}}' walk | jq ."
for k in LowerDir UpperDir MergedDir WorkDir; do
  expect "GraphDriver.Data has $k" grep -q "\"$k\"" <<<"$LAST"
done
upper=$(berth inspect --format '{{.GraphDriver.Data.UpperDir}}' walk)
show "berth exec walk sh -c 'mkdir /test; rm -rf /tmp'"
show berth diff walk
expect "diff shows A /test" grep -qx "A /test" <<<"$LAST"
expect "diff shows D /tmp" grep -qx "D /tmp" <<<"$LAST"
show ls -l "$upper"
expect "the upper dir holds test/ and the whiteout for tmp" grep -q "test" <<<"$LAST"

echo "## PID 1 and signals"
show berth exec walk kill -9 1
show "berth inspect --format '{{.State.Status}}' walk"
expect "kill -9 1 inside does nothing" [ "$LAST" = running ]
show kill -9 "$pid"
for _ in $(seq 100); do
  [ "$(berth inspect --format '{{.State.Status}}' walk)" = exited ] && break
  sleep 0.1
done
show "berth ps -a --filter name=walk --format '{{.Names}}\t{{.Status}}'"
expect "kill -9 of the host pid leaves Exited (137)" grep -Eq '^walk	Exited \(137\)' <<<"$LAST"
show "berth run --rm --init busybox ps -o pid,comm"
expect "with --init, berth-init is PID 1" grep -Eq '^ *1 +berth-init' <<<"$LAST"
show "berth run --rm --init busybox sh -c 'for i in 1 2 3; do (sleep 0.1 &); done; sleep 1; ps -o stat,comm'"
expect "orphans are reaped by berth-init: no zombie" eval '! grep -q "^Z" <<<"$LAST"'

echo "walkthrough: every claim holds"
