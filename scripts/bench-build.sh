#!/usr/bin/env bash
# Benchmark (not a test): `docker build` of a 10-step Dockerfile (FROM, ARG, ENV, two
# RUNs, COPY, WORKDIR, LABEL, EXPOSE, CMD) with the classic builder
# (DOCKER_BUILDKIT=0), the same docker CLI talking to berthd and to a private dockerd
# (Debian's docker.io), in turns in one hyperfine run each: cold (--no-cache), fully
# cached, and after one COPY'd file changed. Both stacks on temporary directories,
# the busybox test rootfs imported into both. Prints medians and ratios.
# Usage: sudo ./scripts/bench-build.sh [RUNS]
# BERTH_BIN=DIR uses binaries already built there instead of a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
. scripts/deps.sh
berth_apt_install busybox-static hyperfine jq docker.io

target=${CARGO_TARGET_DIR:-$PWD/target}
if [ -n "${BERTH_BIN:-}" ]; then
  bin=$BERTH_BIN
else
  cargo build --release -q -p berth-engine -p berth-manager -p berth-shim -p berth-runtime -p berth-init --bins
  bin=$target/release
fi
docker_cli=$(command -v /usr/local/bin/docker || command -v docker)
export DOCKER_BUILDKIT=0

work=$(mktemp -d /tmp/bbb.XXXXXX)
pids=()
cleanup() {
  set +e
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  for f in "$work"/run/tasks/*/shim.pid; do [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; done
  for f in $(pgrep -f "containerd-shim.*$work"); do kill -9 "$f"; done
  grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
  for d in /sys/fs/cgroup/*/berth /sys/fs/cgroup/berth /sys/fs/cgroup/*/berth-bench-docker /sys/fs/cgroup/berth-bench-docker; do
    [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  rm -rf "$work"
}
trap cleanup EXIT

"$bin/berth-manager" --address "$work/manager.sock" --root "$work/root" --state "$work/run" \
  --runtime "$bin/berth-runtime" --shim "$bin/berth-shim" --log-level warn 2>"$work/manager.log" &
pids+=("$!")
for _ in $(seq 200); do [ -S "$work/manager.sock" ] && break; sleep 0.05; done
"$bin/berthd" -H "unix://$work/berth.sock" --manager "$work/manager.sock" \
  --data-root "$work/engine" --exec-root "$work/run/engine" --init-path "$bin/berth-init" \
  --log-level warn 2>"$work/berthd.log" &
pids+=("$!")
for _ in $(seq 200); do [ -S "$work/berth.sock" ] && break; sleep 0.05; done

mkdir -p "$work/docker"
dockerd --host="unix://$work/docker/docker.sock" --data-root="$work/docker/data" \
  --exec-root="$work/docker/exec" --pidfile="$work/docker/docker.pid" \
  --iptables=false --ip6tables=false --bridge=none --cgroup-parent=/berth-bench-docker \
  >"$work/docker/dockerd.log" 2>&1 &
pids+=("$!")
for _ in $(seq 300); do "$docker_cli" -H "unix://$work/docker/docker.sock" version >/dev/null 2>&1 && break; sleep 0.1; done

./scripts/make-rootfs.sh "$work/rootfs" >/dev/null
tar -C "$work/rootfs" -cf "$work/busybox.tar" .
berth=("$docker_cli" -H "unix://$work/berth.sock")
docker=("$docker_cli" -H "unix://$work/docker/docker.sock")
"${berth[@]}" import "$work/busybox.tar" busybox:latest >/dev/null
"${docker[@]}" import "$work/busybox.tar" busybox:latest >/dev/null

ctx=$work/ctx
mkdir -p "$ctx/app"
for i in $(seq 20); do head -c 65536 /dev/urandom | base64 >"$ctx/app/f$i.txt"; done
echo 0 >"$ctx/app/changing.txt"
cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM busybox
ARG VERSION=1
ENV APP=/app MODE=bench
RUN mkdir -p /data && echo "$VERSION" > /data/version
COPY app/ /app/
WORKDIR /app
RUN ls /app | wc -l > /data/count
LABEL bench=build
EXPOSE 8080
CMD ["cat", "/data/count"]
DOCKERFILE

# One build in the open first: if either stack cannot build, say why.
"${berth[@]}" build -q -t bench "$ctx" >/dev/null || { tail -n 20 "$work/berthd.log" "$work/manager.log"; exit 1; }
"${docker[@]}" build -q -t bench "$ctx" >/dev/null

run() {
  local name=$1; shift
  hyperfine -N --warmup 1 --runs "$runs" --export-json "$work/$name.json" "$@" >/dev/null
  jq -r --arg n "$name" '.results as $r | "\($n): berth \($r[0].median * 1000 | floor) ms, docker \($r[1].median * 1000 | floor) ms, berth/docker \(($r[0].median / $r[1].median) * 100 | floor / 100)"' "$work/$name.json"
}
run cold -n berth "${berth[*]} build -q --no-cache -t bench $ctx" \
  -n docker "${docker[*]} build -q --no-cache -t bench $ctx"
run cached -n berth "${berth[*]} build -q -t bench $ctx" \
  -n docker "${docker[*]} build -q -t bench $ctx"
run changed --prepare "sh -c 'date +%s%N > $ctx/app/changing.txt'" \
  -n berth "${berth[*]} build -q -t bench $ctx" \
  -n docker "${docker[*]} build -q -t bench $ctx"
echo "($runs runs, $(nproc) cores, $(uname -r), $(date -u +%F), berth binaries: $bin)"
