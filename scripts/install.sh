#!/usr/bin/env bash
# Install berth on this machine and leave a working engine behind: the packages it
# needs at run time, a release build, the binaries under /usr/local/bin, the `berth`
# group, the systemd units, the daemons started, and a busybox image.
# Running it again upgrades in place: the daemons restart, containers keep running.
# Usage: sudo ./scripts/install.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "install.sh: run as root (sudo ./scripts/install.sh)" >&2; exit 1; }

. scripts/deps.sh
# Building needs a C toolchain and libseccomp's headers as well.
berth_apt_install "${BERTH_RUNTIME_PACKAGES[@]}" build-essential pkg-config libseccomp-dev

if ! command -v cargo >/dev/null && [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi
command -v cargo >/dev/null || { echo "install.sh: cargo not found: install Rust (https://rustup.rs) first" >&2; exit 1; }

# BERTH_PREBUILT=<dir>: install the binaries found there instead of building
# (scripts/test-install.sh uses the ones test.sh built).
built=${BERTH_PREBUILT:-}
if [ -z "$built" ]; then
  cargo build --release --locked --bins
  built=target/release
fi
bindir=/usr/local/bin
for b in berth berthd berth-manager berth-shim berth-runtime berth-init; do
  # A new file renamed over the old one: a running daemon, shim or runtime keeps
  # its old inode, and nothing ever sees a half-written binary.
  cp "$built/$b" "$bindir/.$b.new"
  chmod 0755 "$bindir/.$b.new"
  mv -f "$bindir/.$b.new" "$bindir/$b"
done
echo "install.sh: installed berth, berthd, berth-manager, berth-shim, berth-runtime, berth-init to $bindir"

getent group berth >/dev/null || groupadd --system berth
install -d -m 0755 /etc/berth /usr/local/share/doc/berth
install -m 0644 docs/operations.md docs/walkthrough.md /usr/local/share/doc/berth/
install -m 0644 systemd/berth-manager.service systemd/berthd.service systemd/berthd.socket /etc/systemd/system/
install -d -m 0711 /run/berth
install -d -m 0700 /var/lib/berth

# Wait until a unix socket answers: something listens on it. The file alone says
# nothing after a crash, when the dead daemon's socket is still there.
wait_socket() {
  for _ in $(seq 200); do
    ss -xlnH | awk -v p="$1" '$5 == p { found = 1 } END { exit !found }' && return 0
    sleep 0.05
  done
  echo "install.sh: nothing listens on $1; see ${2:-the logs}" >&2
  return 1
}

if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable berth-manager.service berthd.socket berthd.service >/dev/null
  # KillMode=process: a restart replaces the daemon only; shims and containers stay.
  systemctl restart berth-manager.service
  systemctl restart berthd.socket berthd.service
  echo "install.sh: berth-manager and berthd started by systemd (journalctl -u berth-manager -u berthd)"
else
  # No systemd as PID 1 (a container, a CI machine): run the daemons in their own
  # sessions, logs under /var/log/berth, pid files under /run/berth.
  install -d -m 0750 /var/log/berth
  running() { # pidfile name
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 1
    [ -r "/proc/$pid/stat" ] || return 1
    # A zombie (nothing reaps it on some machines) is gone for our purpose.
    [ "$(awk '{print $3}' "/proc/$pid/stat")" != Z ] || return 1
    [ "$(cat "/proc/$pid/comm")" = "$2" ]
  }
  stop() { # pidfile name
    running "$1" "$2" || return 0
    kill -TERM "$(cat "$1")"
    for _ in $(seq 200); do running "$1" "$2" || return 0; sleep 0.05; done
    echo "install.sh: $2 did not stop on SIGTERM" >&2
    return 1
  }
  # berthd first: it is the manager's client.
  stop /run/berth/berthd.pid berthd
  stop /run/berth/manager.pid berth-manager
  setsid "$bindir/berth-manager" --address /run/berth/manager.sock --root /var/lib/berth/manager \
    --state /run/berth </dev/null >>/var/log/berth/manager.log 2>&1 &
  echo $! >/run/berth/manager.pid
  wait_socket /run/berth/manager.sock /var/log/berth/manager.log
  setsid "$bindir/berthd" -H unix:///run/berth/berth.sock --manager /run/berth/manager.sock \
    --data-root /var/lib/berth/engine --exec-root /run/berth/engine \
    </dev/null >>/var/log/berth/berthd.log 2>&1 &
  echo $! >/run/berth/berthd.pid
  wait_socket /run/berth/berth.sock /var/log/berth/berthd.log
  echo "install.sh: systemd is not PID 1 here: started berth-manager and berthd in the background"
  echo "install.sh:   logs in /var/log/berth, pid files in /run/berth; re-run this script to restart them"
fi

# A busybox image, so that `berth run busybox ...` works at once: imported from the
# distribution's busybox-static, since a fresh machine may reach no registry.
export BERTH_HOST=unix:///run/berth/berth.sock
if ! "$bindir/berth" images --format json | grep -q '"busybox:latest"'; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  ./scripts/make-rootfs.sh "$tmp/rootfs" >/dev/null
  tar -C "$tmp/rootfs" -cf "$tmp/busybox.tar" .
  "$bindir/berth" import --change 'CMD ["sh"]' -m "busybox-static from the distribution" \
    "$tmp/busybox.tar" busybox:latest >/dev/null
  echo "install.sh: imported busybox:latest from busybox-static"
fi
echo
echo "berth is installed. Try:  berth run --rm busybox echo hello world"
