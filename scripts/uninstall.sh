#!/usr/bin/env bash
# Undo scripts/install.sh: stop the daemons, remove the units, binaries, docs and
# the `berth` group. Containers, images and volumes (/var/lib/berth, /run/berth,
# /var/log/berth) are deleted only with --purge, or after a yes at the prompt;
# without a terminal to ask on, they are kept.
# Usage: sudo ./scripts/uninstall.sh [--purge]
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "uninstall.sh: run as root" >&2; exit 1; }
purge=0
[ "${1:-}" = --purge ] && purge=1
if [ "$purge" = 0 ] && [ -t 0 ]; then
  read -r -p "Delete every berth container, image and volume (/var/lib/berth, /run/berth)? [y/N] " a
  case "$a" in y | Y | yes) purge=1 ;; esac
fi

bindir=/usr/local/bin
export BERTH_HOST=unix:///run/berth/berth.sock
if [ "$purge" = 1 ] && [ -x "$bindir/berth" ] && [ -S /run/berth/berth.sock ]; then
  # Through the engine, so each container's mounts and cgroups go with it.
  ids=$("$bindir/berth" ps -aq 2>/dev/null || true)
  [ -n "$ids" ] && "$bindir/berth" rm -f $ids >/dev/null || true
fi

if [ -d /run/systemd/system ]; then
  systemctl disable --now berthd.service berthd.socket berth-manager.service 2>/dev/null || true
else
  for p in berthd:/run/berth/berthd.pid berth-manager:/run/berth/manager.pid; do
    name=${p%%:*} file=${p#*:}
    pid=$(cat "$file" 2>/dev/null) || continue
    if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ]; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 100); do
        [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || echo Z)" = Z ] && break
        sleep 0.05
      done
    fi
    rm -f "$file"
  done
fi

if [ "$purge" = 1 ] && [ -x "$bindir/berthd" ]; then
  # What the engine could not tear down (it was down): veths, iptables rules, DNS
  # entries and namespaces of its containers' networks, from its own records.
  "$bindir/berthd" --teardown-networks --exec-root /run/berth/engine || true
fi

rm -f /etc/systemd/system/berth-manager.service /etc/systemd/system/berthd.service \
  /etc/systemd/system/berthd.socket
if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
for b in berth berthd berth-manager berth-shim berth-runtime berth-init; do rm -f "$bindir/$b"; done
rm -rf /usr/local/share/doc/berth /etc/berth
if getent group berth >/dev/null; then groupdel berth; fi

if [ "$purge" = 1 ]; then
  # Best effort from here: a step with nothing to undo must not stop the rest.
  set +e
  # What the engine could not remove (it was down): the shims, and each container's
  # init, which killing its shim leaves running (the manager kills it, and the
  # manager is gone). Pids are checked first, since the files may be older than
  # the processes now holding those pids: a shim by its name, an init by the start
  # time the runtime recorded (field 22 of /proc/PID/stat).
  leftovers=()
  for f in /run/berth/tasks/*/shim.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = berth-shim ] && leftovers+=("$pid")
  done
  for f in /run/berth/runtime/*/state.json; do
    [ -f "$f" ] || continue
    pid=$(grep -o '"init_process_pid": *[0-9]*' "$f" | grep -o '[0-9]*$')
    start=$(grep -o '"init_process_start": *[0-9]*' "$f" | grep -o '[0-9]*$')
    if [ -z "$pid" ] || [ -z "$start" ]; then continue; fi
    [ "$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f20)" = "$start" ] && leftovers+=("$pid")
  done
  for pid in "${leftovers[@]}"; do
    echo "uninstall.sh: killing leftover $(cat "/proc/$pid/comm" 2>/dev/null) (pid $pid)"
    kill -9 "$pid" 2>/dev/null
  done
  # A killed process leaves its cgroup, and lets its mounts go, once it is gone
  # (a zombie where nothing reaps it): wait up to 5 s for each.
  for pid in "${leftovers[@]}"; do
    for _ in $(seq 50); do
      [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || echo Z)" = Z ] && break
      sleep 0.1
    done
  done
  # Then anything still mounted.
  grep -oE ' (/run/berth|/var/lib/berth)[^ ]*' /proc/self/mountinfo | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null || true; done
  # Empty cgroups only: one still in use (another berth on this machine) stays.
  for d in /sys/fs/cgroup/*/berth /sys/fs/cgroup/berth; do
    if [ -d "$d" ]; then find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true; fi
  done
  rm -rf /var/lib/berth /run/berth /var/log/berth
  echo "uninstall.sh: berth removed, with its containers, images and volumes"
else
  echo "uninstall.sh: berth removed; its data is kept in /var/lib/berth (and /run/berth, /var/log/berth)"
  echo "uninstall.sh: running containers, if any, keep running; run with --purge to delete everything"
fi
true
