#!/usr/bin/env bash
# Smoke check of berth-runtime on any Linux machine, cgroup v1, hybrid or v2:
# uses only a built berth-runtime binary and a static busybox, so it can be carried
# to a machine without Rust (used to check the cgroup v2 paths on a v2-only host).
# Usage: sudo scripts/smoke-runtime.sh [BERTH_RUNTIME] [BUSYBOX]
set -euo pipefail
rt=${1:-target/release/berth-runtime}
rt=$(readlink -f "$rt")
export BUSYBOX=${2:-/bin/busybox}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/berth-smoke.XXXXXX)
root=$work/root
id=smoke$$
fail=0
cleanup() {
  "$rt" --root "$root" delete --force "$id" >/dev/null 2>&1 || true
  "$rt" --root "$root" delete --force "$id-oom" >/dev/null 2>&1 || true
  for d in /sys/fs/cgroup/berth-smoke /sys/fs/cgroup/*/berth-smoke; do
    [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
check() { # name, expected, actual
  if [ "$2" = "$3" ]; then echo "ok   $1"; else echo "FAIL $1: expected [$2], got [$3]"; fail=1; fi
}

"$here/make-rootfs.sh" "$work/bundle/rootfs"
mkdir -p "$work/tmp" && (cd "$work/tmp" && "$rt" spec)
cd "$work/bundle"
v2=0; [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ] && v2=1
echo "cgroup layout: $([ $v2 = 1 ] && echo v2 || echo v1/hybrid); $(uname -r)"

conf() { # python statements on the default spec `c`, cgroup name
  python3 - "$work/tmp/config.json" "/berth-smoke/$2" "$1" >config.json <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["process"]["terminal"] = False
c["linux"]["cgroupsPath"] = sys.argv[2]
r = c["linux"].setdefault("resources", {})
exec(sys.argv[3])
print(json.dumps(c))
PY
}
field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

conf 'c["process"]["args"]=["sh","-c","echo $$; hostname"]' "$id"
out=$("$rt" --root "$root" run "$id" | tr '\n' ' ')
check "pid 1 and hostname" "1 berth " "$out"

conf 'c["process"]["args"]=["sleep","1000"]; r["memory"]={"limit":104857600}; r["pids"]={"limit":64}; r["cpu"]={"quota":50000,"period":100000}' "$id"
"$rt" --root "$root" create "$id" >/dev/null 2>&1 </dev/null
"$rt" --root "$root" start "$id"
pid=$("$rt" --root "$root" state "$id" | field pid)
check "status running" running "$("$rt" --root "$root" state "$id" | field status)"
if [ $v2 = 1 ]; then
  cg=/sys/fs/cgroup/berth-smoke/$id
  check "memory.max" 104857600 "$(cat $cg/memory.max)"
  check "pids.max" 64 "$(cat $cg/pids.max)"
  check "cpu.max" "50000 100000" "$(cat $cg/cpu.max)"
  check "cgroup of pid" "0::/berth-smoke/$id" "$(cat /proc/$pid/cgroup)"
else
  check "memory.limit_in_bytes" 104857600 "$(cat /sys/fs/cgroup/memory/berth-smoke/$id/memory.limit_in_bytes)"
  check "pids.max" 64 "$(cat /sys/fs/cgroup/pids/berth-smoke/$id/pids.max)"
fi
for ns in pid mnt uts ipc net; do
  [ "$(readlink /proc/$pid/ns/$ns)" != "$(readlink /proc/self/ns/$ns)" ] || { echo "FAIL $ns namespace shared"; fail=1; }
done
check "exec sees pid 1" "1" "$("$rt" --root "$root" exec "$id" sh -c 'ps -o pid,comm | grep sleep' | awk '{print $1}')"
"$rt" --root "$root" pause "$id"
check "paused" paused "$("$rt" --root "$root" state "$id" | field status)"
"$rt" --root "$root" resume "$id"
"$rt" --root "$root" update --memory 50m "$id"
if [ $v2 = 1 ]; then check "updated memory.max" 52428800 "$(cat /sys/fs/cgroup/berth-smoke/$id/memory.max)"; fi
check "events --stats" stats "$("$rt" --root "$root" events --stats "$id" | field type)"
"$rt" --root "$root" kill "$id" KILL
sleep 0.2
"$rt" --root "$root" delete "$id"
check "cgroup removed" "" "$(ls -d /sys/fs/cgroup/berth-smoke/$id /sys/fs/cgroup/*/berth-smoke/$id 2>/dev/null)"
check "state removed" "" "$(ls "$root")"

conf 'c["process"]["args"]=["sh","-c","head -c 209715200 /dev/zero | tail >/dev/null"]; r["memory"]={"limit":104857600,"swap":104857600}' "$id-oom"
set +e; "$rt" --root "$root" run "$id-oom" >/dev/null 2>&1; code=$?; set -e
check "oom kill exit code" 137 "$code"

[ $fail = 0 ] && echo "all smoke checks passed"
exit $fail
