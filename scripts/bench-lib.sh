# Shared by the bench-*.sh scripts (sourced, never run): a private berth stack on
# the caller's $work with the binaries in $bin, its pids added to the caller's
# pids array.

# A /24 of 10.128.0.0/9 that no route of this host uses, for berth's bridge.
free_net() {
  local n
  while :; do
    n="10.$((128 + RANDOM % 128)).$((RANDOM % 256))"
    ip route | grep -q "^$n\." || { echo "$n"; return; }
  done
}

# run_roots_on_tmpfs DIR...: a tmpfs on each DIR (made if missing). Every engine's
# run-time state (berth's --state and exec root, dockerd's exec root with
# containerd's state and runc's, podman's runroot) lives under /run, which is a
# tmpfs on every systemd host and on Debian's sysvinit too. A machine whose /run
# sits on the root disk (a container, or a VM without an init that mounts it)
# would charge every engine's per-run files to the disk, which its users never
# pay. The caller's cleanup unmounts them (they are under its work directory).
run_roots_on_tmpfs() {
  local d
  for d in "$@"; do
    mkdir -p "$d"
    mount -t tmpfs -o size=1g,mode=0711 tmpfs "$d"
  done
}

# Starts berth-manager (again, after a kill: its log is appended to); sets manager_pid.
start_berth_manager() {
  "$bin/berth-manager" --address "$work/manager.sock" --root "$work/root" --state "$work/run" \
    --runtime "$bin/berth-runtime" --shim "$bin/berth-shim" --log-level warn 2>>"$work/manager.log" &
  manager_pid=$!; pids+=("$manager_pid")
}

# start_berth BRIDGE BIP: the manager, then berthd on bridge BRIDGE with address
# BIP (a.b.c.1/24); sets manager_pid, berthd_pid and berth (the CLI, as an array).
start_berth() {
  start_berth_manager
  for _ in $(seq 200); do [ -S "$work/manager.sock" ] && break; sleep 0.05; done
  start_berthd "$1" "$2"
  for _ in $(seq 200); do [ -S "$work/berth.sock" ] && break; sleep 0.05; done
  berth=("$bin/berth" -H "unix://$work/berth.sock")
}

# start_berthd BRIDGE BIP: berthd alone (the manager already up); sets berthd_pid.
start_berthd() {
  "$bin/berthd" -H "unix://$work/berth.sock" --manager "$work/manager.sock" \
    --data-root "$work/engine" --exec-root "$work/run/engine" --log-level warn \
    --bridge "$1" --bip "$2" --config-file "$work/daemon.json" 2>>"$work/berthd.log" &
  berthd_pid=$!; pids+=("$berthd_pid")
}

# seen_all T0 CLI...: polls until the engine lists no running container, at most
# 60 s; prints how long after T0 (EPOCHREALTIME microseconds) that was.
seen_all() {
  local t0=$1; shift
  local deadline=$(($(date +%s) + 60))
  # A daemon that does not answer yet lists nothing: it must answer first.
  while ! "$@" version >/dev/null 2>&1 || [ -n "$("$@" ps -q 2>/dev/null)" ]; do
    [ "$(date +%s)" -ge "$deadline" ] && { echo "not all seen after 60 s ($("$@" ps -q | wc -l) still running)"; return; }
    sleep 0.01
  done
  echo "all seen $(((${EPOCHREALTIME//[.,]/} - t0) / 1000)) ms after the restart"
}

# start_registry: docker-registry on a free port of 127.0.0.1 with its storage in
# $work/registry; sets reg_port and reg_pid (added to pids).
start_registry() {
  reg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  cat >"$work/registry.yml" <<YML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$reg_port
YML
  /usr/bin/docker-registry serve "$work/registry.yml" >/dev/null 2>&1 &
  reg_pid=$!; pids+=("$reg_pid")
  for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$reg_port/v2/" >/dev/null 2>&1 && return
    sleep 0.1
  done
  echo "docker-registry did not come up" >&2; return 1
}

# push_bench_image LAYERS MB REF: an image of LAYERS gzip layers of MB MB of
# text-like data each (the busybox rootfs in the first), built as an OCI layout in
# $work and pushed to REF by skopeo.
push_bench_image() {
  local layers=$1 mb=$2 ref=$3 layout=$work/layout i d f h ch mh
  local diff_ids=() descs=()
  mkdir -p "$layout/blobs/sha256"
  for i in $(seq 1 "$layers"); do
    d=$work/l$i
    mkdir -p "$d/data$i"
    [ "$i" = 1 ] && ./scripts/make-rootfs.sh "$d" >/dev/null
    # Text-like data: compresses about 4:3, like binaries and libraries do.
    for f in $(seq 1 "$mb"); do
      head -c 786432 /dev/urandom | base64 -w 76 >"$d/data$i/f$f"
    done
    tar -C "$d" --numeric-owner -cf "$work/l$i.tar" .
    diff_ids+=("sha256:$(sha256sum "$work/l$i.tar" | cut -d' ' -f1)")
    gzip -1 -c "$work/l$i.tar" >"$work/l$i.tar.gz"
    h=$(sha256sum "$work/l$i.tar.gz" | cut -d' ' -f1)
    mv "$work/l$i.tar.gz" "$layout/blobs/sha256/$h"
    descs+=("{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$h\",\"size\":$(stat -c %s "$layout/blobs/sha256/$h")}")
    rm -rf "$d" "$work/l$i.tar"
  done
  jq -cjn --argjson ids "$(printf '%s\n' "${diff_ids[@]}" | jq -R . | jq -cs .)" \
    '{architecture:"amd64", os:"linux", config:{Cmd:["/bin/sh"]}, rootfs:{type:"layers", diff_ids:$ids}}' >"$work/config.json"
  ch=$(sha256sum "$work/config.json" | cut -d' ' -f1)
  mv "$work/config.json" "$layout/blobs/sha256/$ch"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[%s]}' \
    "$ch" "$(stat -c %s "$layout/blobs/sha256/$ch")" "$(IFS=,; echo "${descs[*]}")" >"$work/manifest.json"
  mh=$(sha256sum "$work/manifest.json" | cut -d' ' -f1)
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"bench"}}]}' \
    "$mh" "$(stat -c %s "$work/manifest.json")" >"$layout/index.json"
  mv "$work/manifest.json" "$layout/blobs/sha256/$mh"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
  skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$layout:bench" "docker://$ref"
  echo "image: $layers layers, $(($(du -sb "$layout/blobs" | cut -f1) / 1000000)) MB compressed, pushed to $ref"
  rm -rf "$layout"
}

# crun 1.8 (podman's runtime) refuses a hybrid layout whose v2 mount still holds a
# controller (hugetlb here, which has no v1 hierarchy on this host):
# hugetlb_v1_give mounts one for the length of a benchmark (sets
# mounted_hugetlb=1 when it did), hugetlb_v1_take_back gives hugetlb back to
# cgroup2. Run such a benchmark alone, not beside the tests.
mounted_hugetlb=0
hugetlb_v1_give() {
  if [ -f /sys/fs/cgroup/unified/cgroup.controllers ] && grep -qw hugetlb /sys/fs/cgroup/unified/cgroup.controllers \
     && [ ! -d /sys/fs/cgroup/hugetlb ]; then
    mkdir -p /sys/fs/cgroup/hugetlb && mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb && mounted_hugetlb=1
  fi
  return 0
}
hugetlb_v1_take_back() {
  [ "$mounted_hugetlb" = 1 ] || return 0
  # The v1 hierarchy only goes away (giving hugetlb back to cgroup2) if it has no
  # child cgroup left when unmounted: remove the empty ones the engines made.
  find /sys/fs/cgroup/hugetlb -mindepth 1 -depth -type d -exec rmdir {} \; 2>/dev/null || true
  umount /sys/fs/cgroup/hugetlb && rmdir /sys/fs/cgroup/hugetlb || true
  # A cgroup removed just before is still dying and keeps the hierarchy alive at
  # umount; mount and unmount again until cgroup2 has hugetlb back.
  for _ in 1 2 3 4 5; do
    grep -qw hugetlb /sys/fs/cgroup/unified/cgroup.controllers && break
    sleep 1
    mkdir -p /sys/fs/cgroup/hugetlb && mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb &&
      umount /sys/fs/cgroup/hugetlb; rmdir /sys/fs/cgroup/hugetlb 2>/dev/null || true
  done
  mounted_hugetlb=0
}
