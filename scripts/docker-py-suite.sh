#!/usr/bin/env bash
# docker-py's integration tests against a private berth stack (berth-manager + berthd
# on temporary directories, from the binaries in $BERTH_BIN, default target/debug), or,
# with --dockerd, against a private dockerd (Debian's docker.io) on temporary
# directories, to know which tests the reference engine passes on this machine.
# Fetches no source: give it a docker-py 7.2.0 tree. It makes its own venv from PyPI
# (docker==7.2.0, pytest, pytest-timeout, paramiko), imports the busybox test rootfs
# as alpine:3.10, alpine:latest and busybox:latest (the images the tests use), runs
# pytest and prints its summary.
# Everything it starts or creates is removed at the end, even when a test fails.
#
#   sudo ./scripts/docker-py-suite.sh /work/peers/docker-py [--dockerd] [--all] [PYTEST ARGS...]
#
# Without --all and without pytest arguments it runs the network tests
# (api_network_test.py, models_networks_test.py, minus the three that need swarm) and
# the container tests that publish ports, use links or networks.
# --all runs the whole of tests/integration but swarm, services, secrets, configs,
# nodes and plugins (they need a swarm or the internet) and credentials/ (they need a
# docker-credential helper, and one of them replaces os.environ, so that every test
# after it talks to /var/run/docker.sock instead of $DOCKER_HOST); PYTEST ARGS are
# added to it (e.g. --junitxml=FILE to keep every test's outcome).
# Each test is bounded by pytest-timeout (DPY_TEST_TIMEOUT seconds, default 180) and
# the whole pytest run by DPY_TIMEOUT seconds (default 5400), so a hang cannot stall it.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
src=$(realpath "${1:?usage: docker-py-suite.sh DOCKER_PY_DIR [--dockerd] [--all] [PYTEST ARGS...]}")
shift
[ -f "$src/tests/integration/api_network_test.py" ] || { echo "$src is not a docker-py tree" >&2; exit 1; }
engine=berth
all=0
while [ $# -gt 0 ]; do
  case $1 in
    --dockerd) engine=dockerd; shift ;;
    --all) all=1; shift ;;
    *) break ;;
  esac
done
bin=$(realpath "${BERTH_BIN:-target/debug}")
if [ "$engine" = berth ]; then
  for b in berth berthd berth-manager berth-shim berth-runtime berth-init; do
    [ -x "$bin/$b" ] || { echo "$bin/$b is not built (cargo build --workspace)" >&2; exit 1; }
  done
else
  for b in dockerd containerd docker; do
    command -v "$b" >/dev/null || { echo "$b not found (apt-get install docker.io)" >&2; exit 1; }
  done
fi

work=$(mktemp -d /tmp/berth-dpy.XXXXXX)
pids=()
cleanup() {
  set +e
  # DPY_LOGS=DIR keeps the daemons' logs.
  [ -n "${DPY_LOGS:-}" ] && mkdir -p "$DPY_LOGS" && cp "$work"/*.log "$work"/docker/*.log "$DPY_LOGS"/ 2>/dev/null
  [ -S "$work/berth.sock" ] && "$bin/berth" -H "unix://$work/berth.sock" rm -f $("$bin/berth" -H "unix://$work/berth.sock" ps -aq) >/dev/null 2>&1
  [ -S "$work/docker/docker.sock" ] && timeout 60 docker -H "unix://$work/docker/docker.sock" rm -f $(docker -H "unix://$work/docker/docker.sock" ps -aq 2>/dev/null) >/dev/null 2>&1
  [ -S "$work/docker/docker.sock" ] && timeout 60 docker -H "unix://$work/docker/docker.sock" network prune -f >/dev/null 2>&1
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  for f in "$work"/run/tasks/*/shim.pid; do [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; done
  for f in $(pgrep -f "containerd-shim.*$work"); do kill -9 "$f"; done
  [ "$engine" = berth ] && "$bin/berthd" --teardown-networks --exec-root "$work/run/engine" 2>/dev/null
  [ -n "$docker_bridge" ] && [ -e "/sys/class/net/$docker_bridge" ] && ip link del "$docker_bridge"
  grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m"; done
  rmdir /sys/fs/cgroup/*/berth /sys/fs/cgroup/berth 2>/dev/null
  for d in /sys/fs/cgroup/*/berth-dpy-docker; do
    [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  rm -rf "$work"
  true
}
docker_bridge=
trap cleanup EXIT

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q docker==7.2.0 pytest pytest-timeout paramiko

./scripts/make-rootfs.sh "$work/rootfs" >/dev/null
tar -C "$work/rootfs" -cf "$work/busybox.tar" .

if [ "$engine" = dockerd ]; then
  mkdir -p "$work/docker"
  # dockerd makes only docker0 itself; a bridge of another name must exist, with its
  # address (dockerd refuses --bip beside --bridge).
  docker_bridge="bdpyd$((RANDOM % 10000))"
  ip link add "$docker_bridge" type bridge
  ip addr add "10.$((128 + RANDOM % 128)).$((RANDOM % 256)).1/24" dev "$docker_bridge"
  ip link set "$docker_bridge" up
  dockerd --host="unix://$work/docker/docker.sock" --data-root="$work/docker/data" \
    --exec-root="$work/docker/exec" --pidfile="$work/docker/docker.pid" \
    --iptables=false --ip6tables=false --bridge="$docker_bridge" \
    --default-address-pool "base=10.$((RANDOM % 128)).0.0/16,size=24" \
    --cgroup-parent=/berth-dpy-docker >"$work/docker/dockerd.log" 2>&1 &
  pids+=("$!")
  for _ in $(seq 300); do docker -H "unix://$work/docker/docker.sock" version >/dev/null 2>&1 && break; sleep 0.1; done
  sock="$work/docker/docker.sock"
  cli=(docker -H "unix://$sock")
else
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
  sock="$work/berth.sock"
  cli=("$bin/berth" -H "unix://$sock")
fi
"${cli[@]}" import --change 'CMD ["sh"]' "$work/busybox.tar" alpine:3.10 >/dev/null
"${cli[@]}" tag alpine:3.10 alpine:latest
"${cli[@]}" tag alpine:3.10 busybox:latest

if [ "$all" = 1 ]; then
  set -- tests/integration \
    --ignore tests/integration/api_swarm_test.py --ignore tests/integration/models_swarm_test.py \
    --ignore tests/integration/api_service_test.py --ignore tests/integration/models_services_test.py \
    --ignore tests/integration/api_secret_test.py --ignore tests/integration/api_config_test.py \
    --ignore tests/integration/models_nodes_test.py --ignore tests/integration/api_plugin_test.py \
    --ignore tests/integration/credentials \
    --deselect tests/integration/api_network_test.py::TestNetworks::test_create_inspect_network_with_scope \
    --deselect tests/integration/api_network_test.py::TestNetworks::test_create_network_attachable \
    --deselect tests/integration/api_network_test.py::TestNetworks::test_create_network_ingress \
    "$@"
elif [ $# = 0 ]; then
  set -- tests/integration/api_network_test.py tests/integration/models_networks_test.py \
    tests/integration/api_container_test.py tests/integration/models_containers_test.py \
    -k "network or Network or port or Port or link" \
    --deselect tests/integration/api_network_test.py::TestNetworks::test_create_inspect_network_with_scope \
    --deselect tests/integration/api_network_test.py::TestNetworks::test_create_network_attachable \
    --deselect tests/integration/api_network_test.py::TestNetworks::test_create_network_ingress
fi
cd "$src"
status=0
# A home of its own, with a client config: docker-py keeps contexts beside the config
# file it finds, and without one in the current directory (the docker-py tree), where
# a context left by an interrupted run fails the next runs.
mkdir -p "$work/home/.docker"
echo '{}' >"$work/home/.docker/config.json"
HOME="$work/home" DOCKER_HOST="unix://$sock" timeout -k 30 "${DPY_TIMEOUT:-5400}" "$work/venv/bin/python" -m pytest \
  -q -rf --no-header -p no:cacheprovider --timeout "${DPY_TEST_TIMEOUT:-180}" "$@" || status=$?
exit "$status"
