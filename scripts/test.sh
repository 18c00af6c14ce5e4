#!/usr/bin/env bash
# Everything CI runs: install what the tests need, check formatting and lints, build
# once, run every test (unit and integration, as root, on the real kernel).
# Usage: sudo ./scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "test.sh: run as root (sudo ./scripts/test.sh): the tests create namespaces, cgroups and mounts" >&2; exit 1; }

. scripts/deps.sh
berth_apt_install "${BERTH_RUNTIME_PACKAGES[@]}" "${BERTH_TEST_PACKAGES[@]}"

if ! command -v cargo >/dev/null; then
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null || { echo "test.sh: cargo not found (install Rust with rustup)" >&2; exit 1; }

# A fresh build gains nothing from incremental state, which was a third of target/
# (4.7 of 14 GB) and not needed by any later step.
export CARGO_INCREMENTAL=0

step() { printf '\n== %s\n' "$*"; }

# On a hybrid host, the unified root's enabled controllers, to check that the tests
# put them back (crun refuses a hybrid host with one enabled there). On a cgroup
# v2-only host the root enables controllers for every container, as with runc.
cg2_root=/sys/fs/cgroup/unified
cg2_before=$(cat "$cg2_root/cgroup.subtree_control" 2>/dev/null || true)

# Whether berth is installed for real here before the tests: if not, nothing the
# tests do may create its directories, and the install test must run, not skip.
installed_before=
for p in /usr/local/bin/berthd /run/berth /var/lib/berth; do
  [ -e "$p" ] && installed_before="$installed_before $p"
done

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo build"
cargo build --workspace --all-targets --locked

step "systemd units (systemd-analyze verify)"
# Verified against the binaries just built: verify checks that ExecStart exists.
units=$(mktemp -d)
for u in systemd/*.service systemd/*.socket; do
  sed "s|/usr/local/bin/|$PWD/target/debug/|g" "$u" >"$units/$(basename "$u")"
done
out=$(systemd-analyze verify "$units"/* 2>&1) || { echo "$out"; rm -rf "$units"; exit 1; }
# verify exits 0 on some warnings; treat any remark about our units as a failure.
if grep -E "berth" <<<"$out"; then rm -rf "$units"; exit 1; fi
rm -rf "$units"

step "docker-py (for the engine's docker-py tests)"
BERTH_DOCKER_PY=$(berth_docker_py target/docker-py)
export BERTH_DOCKER_PY

# crictl for the CRI end-to-end tests (cri_crictl, cri_streaming): built from a
# cri-tools source tree when one is given (CI cannot fetch one; without it those
# tests say they skip).
if [ -n "${BERTH_CRI_TOOLS:-}" ]; then
  step "crictl from $BERTH_CRI_TOOLS"
  CRITEST_BUILD_ONLY=1 ./scripts/critest.sh "$BERTH_CRI_TOOLS"
fi

step "cargo test"
# Integration tests use the binaries built above (target/debug), never rebuild them.
cargo test --workspace --locked --no-fail-fast -- --test-threads=2

step "manager daemon tests again with runc as the runtime"
# The manager must drive any OCI runtime with runc's command line, not only ours.
BERTH_MANAGER_TEST_RUNTIME=runc cargo test -p berth-manager --locked --no-fail-fast \
  --test daemon_basic --test daemon_cycles --test daemon_errors --test daemon_exec \
  --test daemon_restart --test daemon_shim_kill -- --test-threads=2

step "walkthrough (docs/walkthrough.md's claims, on a private stack)"
./scripts/walkthrough.sh --private

step "smoke-stack.sh (the whole stack from its binaries alone, as carried to other hosts)"
./scripts/smoke-stack.sh target/debug

step "install.sh, upgrade with a running container, uninstall.sh (with the binaries built above)"
if [ -z "$installed_before" ]; then
  for p in /usr/local/bin/berthd /run/berth /var/lib/berth; do
    [ -e "$p" ] && { echo "test.sh: a test created $p (tests must keep to their own roots)"; exit 1; }
  done
  BERTH_TEST_INSTALL_REQUIRED=1 ./scripts/test-install.sh "$PWD/target/debug"
else
  echo "berth is installed on this machine ($installed_before ): the install test would replace it; skipped"
fi

step "leftovers"
bad=0
if grep -E 'berth-test|berth-walk' /proc/self/mountinfo; then echo "mounts left behind"; bad=1; fi
# Test stacks name their bridges bt/bn + 8 hex digits; walkthrough's bwalk*.
if ip -o link | grep -E ': (bt|bn)[0-9a-f]{8}[:@]|: bwalk[0-9]+[:@]'; then echo "bridges left behind"; bad=1; fi
if pgrep -af 'aardvark-dns --config /tmp/berth-(test|walk)'; then echo "aardvark-dns left running"; bad=1; fi
# netavark's rules name their bridge (isolation, forwarding).
if iptables-save 2>/dev/null | grep -E -- '-[io] ((bt|bn)[0-9a-f]{8}|bwalk[0-9]+)( |$)'; then echo "firewall rules left behind"; bad=1; fi
# Every test cgroup is a top-level berth-test* of its own (even an empty one is a
# leftover: its test's guard removes it).
for d in /sys/fs/cgroup/*/berth-test* /sys/fs/cgroup/berth-test*; do
  if [ -d "$d" ]; then echo "cgroup left: $d"; bad=1; fi
done
cg2_after=$(cat "$cg2_root/cgroup.subtree_control" 2>/dev/null || true)
if [ "$cg2_after" != "$cg2_before" ]; then
  echo "controllers enabled at $cg2_root: '$cg2_before' before the tests, '$cg2_after' after"; bad=1
fi
exit $bad
