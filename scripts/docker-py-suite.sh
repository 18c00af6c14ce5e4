#!/usr/bin/env bash
# docker-py's integration tests against a private berth stack (berth-manager + berthd
# on temporary directories, from the binaries in $BERTH_BIN, default target/debug).
# Fetches no source: give it a docker-py 7.2.0 tree. It makes its own venv from PyPI
# (docker==7.2.0, pytest, paramiko), imports the busybox test rootfs as alpine:3.10 and
# alpine:latest (the image the tests use), runs pytest and prints its summary.
# Everything it starts or creates is removed at the end, even when a test fails.
#
#   sudo ./scripts/docker-py-suite.sh /work/peers/docker-py [PYTEST ARGS...]
#
# Without pytest arguments it runs the network tests (api_network_test.py,
# models_networks_test.py, minus the three that need swarm) and the container
# tests that publish ports, use links or networks.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
src=$(realpath "${1:?usage: docker-py-suite.sh DOCKER_PY_DIR [PYTEST ARGS...]}")
shift
[ -f "$src/tests/integration/api_network_test.py" ] || { echo "$src is not a docker-py tree" >&2; exit 1; }
bin=$(realpath "${BERTH_BIN:-target/debug}")
for b in berth berthd berth-manager berth-shim berth-runtime berth-init; do
  [ -x "$bin/$b" ] || { echo "$bin/$b is not built (cargo build --workspace)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/berth-dpy.XXXXXX)
pids=()
cleanup() {
  set +e
  [ -S "$work/berth.sock" ] && "$bin/berth" -H "unix://$work/berth.sock" rm -f $("$bin/berth" -H "unix://$work/berth.sock" ps -aq) >/dev/null 2>&1
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  for f in "$work"/run/tasks/*/shim.pid; do [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; done
  "$bin/berthd" --teardown-networks --exec-root "$work/run/engine" 2>/dev/null
  grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m"; done
  rmdir /sys/fs/cgroup/*/berth /sys/fs/cgroup/berth 2>/dev/null
  rm -rf "$work"
  true
}
trap cleanup EXIT

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q docker==7.2.0 pytest paramiko

"$bin/berth-manager" --address "$work/manager.sock" --root "$work/root" --state "$work/run" \
  --runtime "$bin/berth-runtime" --shim "$bin/berth-shim" 2>"$work/manager.log" &
pids+=("$!")
for _ in $(seq 300); do [ -S "$work/manager.sock" ] && break; sleep 0.05; done
# A bridge, a subnet and an address pool of its own.
"$bin/berthd" -H "unix://$work/berth.sock" --manager "$work/manager.sock" \
  --data-root "$work/engine" --exec-root "$work/run/engine" --init-path "$bin/berth-init" \
  --bridge "bdpy$((RANDOM % 10000))" --bip "10.$((128 + RANDOM % 128)).$((RANDOM % 256)).1/24" \
  --default-address-pool "base=10.$((RANDOM % 128)).0.0/16,size=24" \
  --config-file "$work/daemon.json" 2>"$work/berthd.log" &
pids+=("$!")
for _ in $(seq 300); do [ -S "$work/berth.sock" ] && break; sleep 0.05; done
berth=("$bin/berth" -H "unix://$work/berth.sock")
./scripts/make-rootfs.sh "$work/rootfs" >/dev/null
tar -C "$work/rootfs" -cf "$work/busybox.tar" .
"${berth[@]}" import --change 'CMD ["sh"]' "$work/busybox.tar" alpine:3.10 >/dev/null
"${berth[@]}" tag alpine:3.10 alpine:latest
"${berth[@]}" tag alpine:3.10 busybox:latest

if [ $# = 0 ]; then
  set -- tests/integration/api_network_test.py tests/integration/models_networks_test.py \
    tests/integration/api_container_test.py tests/integration/models_containers_test.py \
    -k "network or Network or port or Port or link" \
    --deselect tests/integration/api_network_test.py::TestNetworks::test_create_inspect_network_with_scope \
    --deselect tests/integration/api_network_test.py::TestNetworks::test_create_network_attachable \
    --deselect tests/integration/api_network_test.py::TestNetworks::test_create_network_ingress
fi
cd "$src"
status=0
DOCKER_HOST="unix://$work/berth.sock" "$work/venv/bin/python" -m pytest -q -rf --no-header \
  -p no:cacheprovider "$@" || status=$?
exit "$status"
