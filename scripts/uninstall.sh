#!/usr/bin/env bash
# Remove what install.sh installed: stops every container (the shims call the
# binaries about to go) and both daemons, removes the units, the binaries and group
# berth. The state -- images, containers and volumes in /var/lib/berth, run state
# in /run/berth, logs in /var/log/berth -- goes only with --purge, or when you say
# yes at the prompt; without a terminal to ask on it stays.
#
# Usage: sudo ./scripts/uninstall.sh [--purge]
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "uninstall.sh: run as root" >&2; exit 1; }

purge=0
case "${1:-}" in
  --purge) purge=1 ;;
  "") ;;
  *) echo "usage: uninstall.sh [--purge]" >&2; exit 2 ;;
esac

. scripts/daemons.sh
prefix=${PREFIX:-/usr/local}
bindir=$prefix/bin
state_dirs=(/var/lib/berth "$BERTH_RUN" "$BERTH_LOG")

if [ "$purge" = 0 ]; then
  if [ -t 0 ] && [ -t 1 ]; then
    read -r -p "Also delete berth's images, containers, volumes and logs (${state_dirs[*]})? [y/N] " answer
    case "$answer" in [yY]*) purge=1 ;; esac
  else
    echo "no terminal to ask on: keeping ${state_dirs[*]} (uninstall.sh --purge deletes them)"
  fi
fi

sock=$BERTH_RUN/berth.sock
api() { curl -sS --max-time 60 --unix-socket "$sock" "$@"; }

# Through the engine while it runs: it unmounts the root filesystems and removes
# the cgroups as it goes. With --purge every container goes, else running ones stop.
if curl -sf -o /dev/null --max-time 5 --unix-socket "$sock" http://berth/_ping; then
  if [ "$purge" = 1 ]; then filter=all=1; else filter=; fi
  ids=$(api "http://berth/containers/json?$filter" | grep -o '"Id":"[0-9a-f]*"' | cut -d'"' -f4 || true)
  for id in $ids; do
    if [ "$purge" = 1 ]; then
      echo "removing container ${id:0:12}"
      api -o /dev/null -X DELETE "http://berth/containers/$id?force=1&v=1" || true
    else
      echo "stopping container ${id:0:12}"
      api -o /dev/null -X POST "http://berth/containers/$id/stop?t=10" || true
    fi
  done
fi

if berth_have_systemd; then
  systemctl disable --now "${BERTH_UNITS[@]}" 2>/dev/null || true
fi
berth_stop berthd
berth_stop manager

# What the engine could not clean up (it was down, or a container would not go):
# kill the shims and the containers they ran, unmount what is under the roots.
leftover_pids() {
  local f
  # shim.pid has no newline at its end: one per line, not cat's run-on.
  for f in "$BERTH_RUN"/tasks/*/shim.pid; do [ -f "$f" ] && { cat "$f"; echo; }; done
  for f in "$BERTH_RUN"/runtime/*/state.json; do
    [ -f "$f" ] && grep -o '"init_process_pid": *[0-9]*' "$f" | grep -o '[0-9]*$'
  done
  true
}
live() { [ -r "/proc/$1/stat" ] && ! grep -q ') [ZX] ' "/proc/$1/stat"; }
killed=()
for pid in $(leftover_pids); do
  if live "$pid"; then
    echo "killing leftover process $pid ($(cat "/proc/$pid/comm" 2>/dev/null))"
    kill -KILL "$pid" 2>/dev/null || true
    killed+=("$pid")
  fi
done
# A killed process leaves its cgroup and lets go of its mounts only once it is
# gone: wait (up to 5 s) before unmounting and removing cgroups.
for pid in "${killed[@]}"; do
  for _ in $(seq 50); do live "$pid" || break; sleep 0.1; done
done
if [ "$purge" = 1 ]; then
  # Deepest first; lazily, since a dying container may hold one a moment longer.
  for root in "$BERTH_RUN" /var/lib/berth; do
    awk -v r="$root/" 'index($5, r) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
      while read -r m; do umount -l "$m" 2>/dev/null || true; done
  done
  # The cgroups the runtime recorded for containers still on disk, then the
  # berth parents if that left them empty (rmdir never removes a busy one, and
  # nothing here touches cgroups of berth stacks running from other roots).
  for f in "$BERTH_RUN"/runtime/*/state.json; do
    [ -f "$f" ] || continue
    sed -n 's/.*"cgroup_paths": *{\([^}]*\)}.*/\1/p' "$f" | tr ',' '\n' | cut -d'"' -f4 |
      while read -r d; do [ -n "$d" ] && [ -d "$d" ] && { rmdir "$d" 2>/dev/null || true; }; done
  done
  for d in /sys/fs/cgroup/berth /sys/fs/cgroup/*/berth; do
    [ -d "$d" ] && { rmdir "$d" 2>/dev/null || true; }
  done
  rm -rf "${state_dirs[@]}"
  echo "deleted ${state_dirs[*]}"
fi

for u in "${BERTH_UNITS[@]}"; do rm -f "/etc/systemd/system/$u"; done
if berth_have_systemd; then systemctl daemon-reload; fi
for b in berth berthd berth-manager berth-shim berth-runtime berth-init; do
  rm -f "$bindir/$b" "$bindir/.$b.new"
done
rm -rf "$prefix/share/doc/berth"
if getent group berth >/dev/null; then groupdel berth; fi
echo "berth is uninstalled"
