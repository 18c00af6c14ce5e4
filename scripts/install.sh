#!/usr/bin/env bash
# Install berth on this machine, or upgrade it: the packages it needs at run time,
# a release build, the binaries under /usr/local/bin, the systemd units, group
# berth, and both daemons running; then a busybox image to try it with.
#
# With systemd as PID 1 the units are enabled and (re)started. Without it (CI
# containers, build machines) the daemons are started in the background, logs in
# /var/log/berth, pid files in /run/berth. Either way running it again upgrades in
# place: the old daemons stop, the new ones start, running containers keep running.
#
# Usage: sudo ./scripts/install.sh          (PREFIX=/usr/local by default)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "install.sh: run as root (sudo ./scripts/install.sh)" >&2; exit 1; }

. scripts/deps.sh
. scripts/daemons.sh
# Building needs a C toolchain and libseccomp's headers; this script needs curl.
berth_apt_install "${BERTH_RUNTIME_PACKAGES[@]}" build-essential pkg-config libseccomp-dev curl

# shellcheck source=/dev/null # rustup's, where it exists
if ! command -v cargo >/dev/null && [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi
command -v cargo >/dev/null || { echo "install.sh: cargo not found: install Rust (https://rustup.rs) first" >&2; exit 1; }

binaries=(berth berthd berth-manager berth-shim berth-runtime berth-init)
build_args=()
for b in "${binaries[@]}"; do build_args+=(--bin "$b"); done
cargo build --release --locked "${build_args[@]}"

prefix=${PREFIX:-/usr/local}
bindir=$prefix/bin
mkdir -p "$bindir"
for b in "${binaries[@]}"; do
  # Copy under a temporary name, then rename over the old one: a running daemon or
  # shim keeps its old binary (same inode), and nothing ever runs a half-written one.
  install -m 0755 "target/release/$b" "$bindir/.$b.new"
  mv -f -T "$bindir/.$b.new" "$bindir/$b"
done
echo "installed to $bindir: ${binaries[*]}"
install -D -m 0644 docs/operations.md "$prefix/share/doc/berth/operations.md"

# Members of group berth may use the engine's socket (which is as good as root).
if ! getent group berth >/dev/null; then
  groupadd --system berth
  echo "created group berth (add users with: usermod -aG berth USER)"
fi
install -d -m 0711 "$BERTH_RUN"
install -d -m 0711 /var/lib/berth
install -d -m 0750 "$BERTH_LOG"

# The units name /usr/local/bin; another PREFIX is written into the copies.
for u in systemd/*.service systemd/*.socket; do
  dest=/etc/systemd/system/$(basename "$u")
  sed "s#/usr/local/bin/#$bindir/#g" "$u" >"$dest.new"
  chmod 0644 "$dest.new"
  mv -f -T "$dest.new" "$dest"
done
echo "installed the units to /etc/systemd/system: ${BERTH_UNITS[*]}"

sock=$BERTH_RUN/berth.sock
if berth_have_systemd; then
  systemctl daemon-reload
  systemctl enable "${BERTH_UNITS[@]}"
  systemctl start berthd.socket
  # restart starts what is stopped, and on an upgrade replaces the running
  # daemons; the manager's KillMode=process keeps every shim and container.
  systemctl restart berth-manager.service berthd.service
  echo "started berth-manager.service and berthd.service (logs: journalctl -u berth-manager -u berthd)"
else
  upgrade=0
  if berth_pid manager >/dev/null || berth_pid berthd >/dev/null; then upgrade=1; fi
  berth_stop berthd
  berth_stop manager
  # Sockets answered by daemons this script did not start would be taken over
  # (berthd replaces a socket file) or refused: stop those first.
  for s in "$BERTH_RUN/manager.sock" "$sock"; do
    rc=0
    curl -s -o /dev/null --max-time 2 --unix-socket "$s" http://berth/_ping || rc=$?
    if [ "$rc" != 7 ]; then
      echo "install.sh: something not started by install.sh answers on $s; stop it first" >&2
      exit 1
    fi
  done

  berth_start manager "$bindir/berth-manager" || true
  manager_pid=$(cat "$BERTH_RUN/manager.pid")
  if ! berth_wait_socket "$BERTH_RUN/manager.sock" berth-manager "$manager_pid"; then
    echo "install.sh: berth-manager did not start; the end of $BERTH_LOG/manager.log:" >&2
    tail -n 20 "$BERTH_LOG/manager.log" >&2
    exit 1
  fi
  berth_start berthd "$bindir/berthd" || true
  berthd_pid=$(cat "$BERTH_RUN/berthd.pid")
  for _ in $(seq 300); do
    curl -sf -o /dev/null --max-time 2 --unix-socket "$sock" http://berth/_ping && break
    berth_alive "$berthd_pid" berthd || break
    sleep 0.1
  done
  if ! curl -sf -o /dev/null --max-time 2 --unix-socket "$sock" http://berth/_ping; then
    echo "install.sh: berthd did not start; the end of $BERTH_LOG/berthd.log:" >&2
    tail -n 20 "$BERTH_LOG/berthd.log" >&2
    exit 1
  fi
  [ "$upgrade" = 1 ] && what=restarted || what=started
  cat <<EOF
systemd is not PID 1 here, so the units are installed but not used: $what
berth-manager (pid $manager_pid) and berthd (pid $berthd_pid) in the background.
  logs:      $BERTH_LOG/manager.log, $BERTH_LOG/berthd.log
  pid files: $BERTH_RUN/manager.pid, $BERTH_RUN/berthd.pid
Nothing restarts them after a crash or a reboot: run install.sh again.
EOF
fi

# A busybox image to try berth with, from the distribution's busybox-static.
status=$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$sock" http://berth/images/busybox:latest/json || true)
if [ "$status" != 200 ]; then
  work=$(mktemp -d /tmp/berth-install.XXXXXX)
  trap 'rm -rf "$work"' EXIT
  ./scripts/make-rootfs.sh "$work/rootfs"
  tar --numeric-owner -C "$work/rootfs" -cf "$work/busybox.tar" .
  if "$bindir/berth" import --help >/dev/null 2>&1; then
    "$bindir/berth" import --change 'CMD ["sh"]' "$work/busybox.tar" busybox:latest >/dev/null
  else
    # The API call `docker import` makes; the answer is a JSON progress stream
    # whose failures come as {"error": ...} lines even with status 200.
    out=$(curl -sS --unix-socket "$sock" -X POST -H 'Content-Type: application/x-tar' \
      --data-binary @"$work/busybox.tar" -w '\n%{http_code}' \
      'http://berth/images/create?fromSrc=-&repo=busybox&tag=latest&changes=CMD%20%5B%22sh%22%5D') || true
    code=${out##*$'\n'}
    if [ "$code" != 200 ] || grep -q '"error"' <<<"$out"; then
      echo "install.sh: berth is installed and running, but importing busybox failed (HTTP $code):" >&2
      echo "${out%$'\n'*}" >&2
      exit 1
    fi
  fi
  status=$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$sock" http://berth/images/busybox:latest/json || true)
  [ "$status" = 200 ] || { echo "install.sh: busybox:latest is still missing after the import" >&2; exit 1; }
  echo "imported busybox:latest from $(command -v busybox || echo /bin/busybox)"
fi

cat <<EOF

berth is installed and running. Try:
  berth run --rm busybox echo hello world
EOF
