#!/usr/bin/env bash
# Install berth on this machine: the packages it needs at run time, a release build,
# and the binaries under /usr/local/bin. Running it again upgrades in place.
# Usage: sudo ./scripts/install.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "install.sh: run as root (sudo ./scripts/install.sh)" >&2; exit 1; }

. scripts/deps.sh
# Building needs a C toolchain and libseccomp's headers as well.
berth_apt_install "${BERTH_RUNTIME_PACKAGES[@]}" build-essential pkg-config libseccomp-dev

if ! command -v cargo >/dev/null && [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi
command -v cargo >/dev/null || { echo "install.sh: cargo not found: install Rust (https://rustup.rs) first" >&2; exit 1; }

cargo build --release --locked --bins
prefix=${PREFIX:-/usr/local}
installed=()
for b in berth berthd berth-manager berth-shim berth-runtime berth-init; do
  src=target/release/$b
  [ -x "$src" ] || continue
  # install(1) writes a new file and renames it, so a running binary is never
  # modified in place (and a container cannot see a half-written runtime).
  install -m 0755 "$src" "$prefix/bin/$b"
  installed+=("$b")
done
echo "installed to $prefix/bin: ${installed[*]}"
