#!/usr/bin/env bash
# The install acceptance test (run by test.sh): install.sh from this checkout leaves
# both daemons running and `berth run --rm busybox echo hello world` working; a
# second install.sh (the upgrade) restarts both daemons with SIGTERM and a running
# container keeps its pid and stays controllable; uninstall.sh --purge leaves
# nothing. It installs for real (/usr/local/bin, /run/berth, /var/lib/berth), so it
# refuses to run where berth is already installed rather than disturb it.
# Usage: sudo ./scripts/test-install.sh [BINARY_DIR]   (default target/debug)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
if [ -e /usr/local/bin/berthd ] || [ -e /run/berth ] || [ -e /var/lib/berth ]; then
  if [ -n "${BERTH_TEST_INSTALL_REQUIRED:-}" ]; then
    echo "test-install.sh: FAILED: berth's paths exist on this machine, and the caller said they did not before" >&2
    exit 1
  fi
  echo "test-install.sh: berth is installed on this machine already; skipping (it would be replaced)"
  exit 0
fi
export BERTH_PREBUILT=${1:-$PWD/target/debug}
fail() { echo "test-install.sh: FAILED: $*" >&2; exit 1; }
cleanup() { ./scripts/uninstall.sh --purge >/dev/null 2>&1 || true; }
trap cleanup EXIT

./scripts/install.sh
out=$(berth run --rm busybox echo hello world) || fail "berth run after install"
[ "$out" = "hello world" ] || fail "berth run printed $out"
manager=$(cat /run/berth/manager.pid) berthd=$(cat /run/berth/berthd.pid)

id=$(berth run -d busybox sh -c 'trap "exit 7" TERM; while :; do sleep 0.1; done')
pid=$(berth inspect --format '{{.State.Pid}}' "$id")
./scripts/install.sh
[ "$(cat /run/berth/manager.pid)" != "$manager" ] || fail "the manager was not restarted"
[ "$(cat /run/berth/berthd.pid)" != "$berthd" ] || fail "berthd was not restarted"
[ "$(berth inspect --format '{{.State.Pid}} {{.State.Status}}' "$id")" = "$pid running" ] ||
  fail "the container did not survive the upgrade"
[ -d "/proc/$pid" ] || fail "the container's process is gone"
# Still controllable through the new daemons: stop delivers TERM, wait reads 7.
berth stop -t 5 "$id" >/dev/null
[ "$(berth wait "$id")" = 7 ] || fail "exit code after the upgrade"
berth rm "$id" >/dev/null
echo "test-install.sh: install, run, upgrade with a running container, stop after it: ok"
