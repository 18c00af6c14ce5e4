#!/usr/bin/env bash
# Run cri-tools' CRI validation suite (critest) against berth-manager's CRI socket.
#
#   sudo scripts/critest.sh CRI_TOOLS_SRC [CRITEST_ARGS...]
#
# CRI_TOOLS_SRC is a cri-tools source tree (v1.26, dependencies vendored): critest
# and crictl are built from it with the installed Go, offline, into
# target/cri-tools/. The test images critest names (docker.io/library/busybox,
# gcr.io/k8s-staging-cri-tools/test-image-*, ...) are made here from the busybox
# test rootfs (scripts/make-rootfs.sh), pushed with skopeo to a private
# docker-registry on 127.0.0.1, and the manager is told to pull those registries'
# repositories from it (cri.registry_mirrors in its config file). A private
# berth-manager (temporary root, state and sockets, CRI enabled, pods on a CNI
# bridge berthcri0 with 10.250.0.0/24) serves critest;
# everything is torn down at the end, whatever happened.
#
# With CRITEST_CONTAINERD=1 the same critest, images and mirrors run first against
# Debian's containerd 1.6 with its CRI plugin (its own config, root, state and
# socket under the temporary directory; runc; the standard CNI plugins from
# /usr/lib/cni with a bridge+host-local+portmap+loopback conflist on 10.251.0.0/24,
# bridge berthctd0), for the reference figure; its line comes before berth's.
# CRITEST_CONTAINERD_RUNC names the runc it uses (default: runc in PATH).
#
# Environment: BERTH_BIN (where berth-manager, berth-shim and berth-runtime are;
# default target/debug), CRITEST_TIMEOUT (seconds for the whole suite, default
# 1500), CRITEST_FOCUS / CRITEST_SKIP (ginkgo regexps), CRITEST_PARALLEL (default 1;
# more needs the ginkgo CLI in PATH),
# CRITEST_BUILD_ONLY=1 stops once critest and crictl are built (target/cri-tools/),
# KEEP=1 keeps the temporary directory (logs) for a look afterwards.
#
# The last line printed is `N passed, M failed, K skipped`.
set -euo pipefail

src=${1:?usage: critest.sh CRI_TOOLS_SRC [CRITEST_ARGS...]}
shift
src=$(cd "$src" && pwd)
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${BERTH_BIN:-$here/target/debug}
timeout_s=${CRITEST_TIMEOUT:-1500}
[ "$(id -u)" = 0 ] || { echo "critest.sh: run as root" >&2; exit 1; }
for t in go skopeo umoci docker-registry; do
  command -v "$t" >/dev/null || { echo "critest.sh: $t not installed (scripts/deps.sh)" >&2; exit 1; }
done

# 1. critest and crictl, offline from the vendored tree (Go's build cache makes a
#    second run quick).
tools=$here/target/cri-tools
mkdir -p "$tools"
echo "== building critest and crictl from $src" >&2
(
  cd "$src"
  export GO111MODULE=on GOFLAGS=-mod=vendor GOPROXY=off CGO_ENABLED=0
  go build -trimpath -o "$tools/crictl" ./cmd/crictl
  go test -c -trimpath -o "$tools/critest" ./cmd/critest
)
# CRITEST_BUILD_ONLY=1: only critest and crictl (the crictl tests use it).
[ "${CRITEST_BUILD_ONLY:-}" = 1 ] && exit 0
for b in berth-manager berth-shim berth-runtime; do
  [ -x "$bin/$b" ] || { echo "critest.sh: $bin/$b missing (cargo build -p $b)" >&2; exit 1; }
done

# Short: a shim socket, <state>/tasks/<64-hex id>/shim.sock, must fit in 107 bytes.
work=$(mktemp -d /tmp/bcri-XXXXXX)
pids=()
# Alive: there and not a zombie (kill -0 is true of a zombie).
alive() { [ -r "/proc/$1/stat" ] && ! grep -q ') Z ' "/proc/$1/stat"; }
# containerd pins pod network namespaces in /var/run/netns/cni-*: the ones that
# appear during this run are ours.
netns_before=$(ls /var/run/netns 2>/dev/null || true)
# containerd puts its pods' cgroups under k8s.io/ in every hierarchy: removed at the
# end when this run made them.
k8s_cgroups_before=$(ls -d /sys/fs/cgroup/*/k8s.io /sys/fs/cgroup/k8s.io 2>/dev/null || true)
cleanup() {
  set +e
  if [ -n "${manager_pid:-}" ]; then
    kill -TERM "$manager_pid" 2>/dev/null
    wait "$manager_pid" 2>/dev/null
  fi
  # Shims (and so their containers) of the private manager.
  for p in "$work"/run/tasks/*/shim.pid; do
    [ -f "$p" ] && kill -KILL "$(cat "$p")" 2>/dev/null
  done
  if [ -n "${ctd_pid:-}" ]; then
    kill -TERM "$ctd_pid" 2>/dev/null
    wait "$ctd_pid" 2>/dev/null
  fi
  # containerd's shims for the pods critest left: only ours (their -address is
  # under the temporary directory), each by its pid.
  for p in $(pgrep -f -- "-address $work/" 2>/dev/null); do
    kill -KILL "$p" 2>/dev/null
  done
  ip link del berthctd0 2>/dev/null
  ip link del berthcri0 2>/dev/null
  for d in /sys/fs/cgroup/*/k8s.io /sys/fs/cgroup/k8s.io; do
    [ -d "$d" ] || continue
    grep -qx "$d" <<<"$k8s_cgroups_before" && continue
    find "$d" -mindepth 1 -depth -type d -exec rmdir {} \; 2>/dev/null
    rmdir "$d" 2>/dev/null
  done
  for n in $(ls /var/run/netns 2>/dev/null); do
    case "$n" in cni-*) grep -qx "$n" <<<"$netns_before" || ip netns del "$n" 2>/dev/null ;; esac
  done
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  # Containers the runtime still knows, then every mount under the work tree,
  # deepest first.
  for c in "$work"/run/runtime/*/; do
    [ -d "$c" ] && "$bin/berth-runtime" --root "$work/run/runtime" delete --force "$(basename "$c")" 2>/dev/null
  done
  awk -v w="$work" '$5 ~ "^"w {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null
  done
  if [ "${KEEP:-}" = 1 ]; then
    echo "critest.sh: kept $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

# 2. A registry on 127.0.0.1 and the images critest pulls.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
reg=127.0.0.1:$port
mkdir -p "$work/registry"
cat >"$work/registry/config.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/registry/data
  delete:
    enabled: true
http:
  addr: $reg
EOF
docker-registry serve "$work/registry/config.yml" >"$work/registry.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  curl -fsS "http://$reg/v2/" >/dev/null 2>&1 && break
  sleep 0.1
done

echo "== making the test images" >&2
rootfs=$work/rootfs
"$here/scripts/make-rootfs.sh" "$rootfs"
# Users and groups critest's image tests and security-context tests expect.
printf 'www-data:x:33:33:www-data:/var/www:/bin/false\n' >>"$rootfs/etc/passwd"
printf 'www-data:x:33:\n' >>"$rootfs/etc/group"
mkdir -p "$rootfs/www"
echo '<html><body>Welcome to berth</body></html>' >"$rootfs/www/index.html"
# Upstream busybox images link their applets to the binary with hard links, not
# symlinks (critest's MaskedPaths spec masks /bin/ls and runs the shell).
find "$rootfs" -type l -lname /bin/busybox -exec ln -f "$rootfs/bin/busybox" {} \;
# Debian's busybox has neither pgrep nor ipcs, which critest runs: stand-ins
# reading /proc as the real ones do.
# (rm first: an applet of that name would be a hard link to busybox itself)
rm -f "$rootfs/usr/bin/pgrep" "$rootfs/usr/bin/ipcs"
cat >"$rootfs/usr/bin/pgrep" <<'SH'
#!/bin/sh
found=1
for p in /proc/[0-9]*; do
  [ "$(cat "$p/comm" 2>/dev/null)" = "$1" ] && { echo "${p#/proc/}"; found=0; }
done
exit $found
SH
cat >"$rootfs/usr/bin/ipcs" <<'SH'
#!/bin/sh
cat /proc/sysvipc/shm
SH
chmod 0755 "$rootfs/usr/bin/pgrep" "$rootfs/usr/bin/ipcs"
layout=$work/oci
umoci init --layout "$layout"
umoci new --image "$layout:base"
# unpack + repack rather than `umoci insert ROOTFS /`, whose layer holds an entry
# named "/", which berth's unpacker refuses as an absolute path.
umoci unpack --image "$layout:base" "$work/bundle" >/dev/null
cp -a "$rootfs/." "$work/bundle/rootfs/"
umoci repack --image "$layout:base" "$work/bundle"
umoci config --image "$layout:base" --config.cmd sh --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# name (registry-less, pushed under the mirror) and its umoci config flags.
push() { # push TAG_IN_LAYOUT REPOSITORY:TAG
  skopeo copy -q --dest-tls-verify=false "oci:$layout:$1" "docker://$reg/$2"
}
variant() { # variant NEW_TAG UMOCI_CONFIG_FLAGS...
  local tag=$1
  shift
  umoci config --image "$layout:base" --tag "$tag" "$@"
}
cri=k8s-staging-cri-tools
variant user-uid --config.user 1002
variant user-username --config.user www-data
variant user-uid-group --config.user 1003:1003
variant user-username-group --config.user www-data:www-data
# The stand-in for nginx: busybox httpd serving a page (critest wants a 200) and
# leaving its pid where nginx does (the HostPID specs read it).
web_cmd() { # web_cmd PORT
  echo "mkdir -p /var/run && echo \$\$ >/var/run/nginx.pid && exec httpd -f -p $1 -h /www"
}
variant web --config.cmd sh --config.cmd -c --config.cmd "$(web_cmd 80)" --config.exposedports 80/tcp
variant web-hostnet --config.cmd sh --config.cmd -c --config.cmd "$(web_cmd 12003)"
# Every name its own image (critest checks that an image has exactly the tags it
# pulled), except test-image-tags:1..3, one image under three tags.
n=0
distinct() { # distinct FROM_TAG REPOSITORY:TAG
  n=$((n + 1))
  umoci config --image "$layout:$1" --tag "d$n" --config.label "io.berth.test.name=$2"
  push "d$n" "$2"
}
distinct base library/busybox:1.28
distinct base library/busybox:latest
distinct web library/nginx:latest
distinct base "$cri/test-image-latest:latest"
distinct base "$cri/test-image-tag:test"
distinct base "$cri/test-image-tag:all"
distinct base "$cri/test-image-1:latest"
distinct base "$cri/test-image-2:latest"
distinct base "$cri/test-image-3:latest"
for t in 1 2 3; do push base "$cri/test-image-tags:$t"; done
distinct user-uid "$cri/test-image-user-uid:latest"
distinct user-username "$cri/test-image-user-username:latest"
distinct user-uid-group "$cri/test-image-user-uid-group:latest"
distinct user-username-group "$cri/test-image-user-username-group:latest"
distinct base "$cri/test-image-predefined-group:latest"
push web-hostnet "$cri/hostnet-nginx-amd64:latest"
# containerd's sandbox image (berth will use berth-init instead).
# (not `sleep`: critest looks for its own sleep with pgrep, and would find the pause)
variant pause --config.cmd tail --config.cmd -f --config.cmd /dev/null
push pause pause:3.6
cat >"$work/images.yaml" <<EOF
defaultTestContainerImage: docker.io/library/busybox:1.28
webServerTestImage: docker.io/library/nginx:latest
EOF

# critest against ENDPOINT; the summary is left in $result.
run_critest() { # run_critest NAME ENDPOINT [CRITEST_ARGS...]
  local name=$1 endpoint=$2
  shift 2
  echo "== critest against $name (at most ${timeout_s}s)" >&2
  local args=(
    --runtime-endpoint "$endpoint" --image-endpoint "$endpoint"
    --test-images-file "$work/images.yaml" --ginkgo.no-color
  )
  # critest runs ginkgo's CLI for more than one node; go test's own -parallel
  # flag is refused by ginkgo, so one node is asked for by saying nothing.
  [ "${CRITEST_PARALLEL:-1}" -gt 1 ] && args+=(--parallel "$CRITEST_PARALLEL")
  [ -n "${CRITEST_FOCUS:-}" ] && args+=(--ginkgo.focus "$CRITEST_FOCUS")
  [ -n "${CRITEST_SKIP:-}" ] && args+=(--ginkgo.skip "$CRITEST_SKIP")
  mkdir -p "$work/critest-$name"
  set +e
  (cd "$work/critest-$name" && timeout -k 10 "$timeout_s" "$tools/critest" "${args[@]}" "$@") \
    >"$work/critest-$name.log" 2>&1
  local rc=$?
  set -e
  grep -E -- '^\s*(\[FAIL\]|\[PANICKED\])|^Ran [0-9]+ of' "$work/critest-$name.log" >&2 || true
  # ginkgo's summary: "FAIL! -- 12 Passed | 60 Failed | 0 Pending | 9 Skipped" (or
  # "SUCCESS! -- ...").
  local summary
  summary=$(grep -E -- '-- [0-9]+ Passed \| [0-9]+ Failed' "$work/critest-$name.log" | tail -1 || true)
  if [ -z "$summary" ]; then
    tail -20 "$work/critest-$name.log" >&2
    echo "critest.sh: no ginkgo summary from $name (critest exited $rc)" >&2
    result="0 passed, 0 failed, 0 skipped"
    return
  fi
  result="$(sed -E 's/.* ([0-9]+) Passed.*/\1/' <<<"$summary") passed, $(sed -E 's/.* ([0-9]+) Failed.*/\1/' <<<"$summary") failed, $(sed -E 's/.* ([0-9]+) Skipped.*/\1/' <<<"$summary") skipped"
}

# 3. The reference: containerd 1.6's CRI plugin, configured alike.
if [ "${CRITEST_CONTAINERD:-}" = 1 ]; then
  ctd=$work/ctd
  mkdir -p "$ctd/net.d" "$ctd/root" "$ctd/state" "$ctd/opt"
  cat >"$ctd/net.d/10-berthctd.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "berthctd", "plugins": [
  {"type": "bridge", "bridge": "berthctd0", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "dataDir": "$ctd/ipam",
            "ranges": [[{"subnet": "10.251.0.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}},
  {"type": "loopback"}]}
EOF
  mirrors=""
  for r in docker.io gcr.io k8s.gcr.io registry.k8s.io; do
    mirrors+="[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"$r\"]
  endpoint = [\"http://$reg\"]
"
  done
  cat >"$ctd/config.toml" <<EOF
version = 2
root = "$ctd/root"
state = "$ctd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "$ctd/containerd.sock"
[ttrpc]
  address = "$ctd/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$ctd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.6"
  stream_server_port = "0"
  # Pods ask for oom_score_adj -998, which a manager running in a container (as
  # here) may not set: keep to containerd's own, as in a user namespace.
  restrict_oom_score_adj = true
[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "$ctd/net.d"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  BinaryName = "${CRITEST_CONTAINERD_RUNC:-runc}"
$mirrors
EOF
  containerd --config "$ctd/config.toml" >"$ctd/containerd.log" 2>&1 &
  ctd_pid=$!
  for _ in $(seq 300); do
    [ -S "$ctd/containerd.sock" ] && break
    sleep 0.1
  done
  run_critest containerd "unix://$ctd/containerd.sock" "$@"
  ctd_result=$result
  kill -TERM "$ctd_pid" 2>/dev/null
  wait "$ctd_pid" 2>/dev/null || true
  ctd_pid=
  echo "containerd 1.6: $ctd_result"
fi

# 4. A private manager with CRI on, its pods on their own CNI bridge.
mkdir -p "$work/root" "$work/run" "$work/net.d"
cat >"$work/net.d/10-berthcri.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "berthcri", "plugins": [
  {"type": "bridge", "bridge": "berthcri0", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "dataDir": "$work/ipam",
            "ranges": [[{"subnet": "10.250.0.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}},
  {"type": "loopback"}]}
EOF
cat >"$work/manager.json" <<EOF
{"cri": {"enabled": true, "address": "$work/cri.sock",
  "cni_conf_dir": "$work/net.d", "cni_bin_dirs": ["/usr/lib/cni"],
  "registry_mirrors": {"docker.io": "$reg", "gcr.io": "$reg", "k8s.gcr.io": "$reg",
                       "registry.k8s.io": "$reg"}}}
EOF
"$bin/berth-manager" --config "$work/manager.json" --address "$work/manager.sock" \
  --root "$work/root" --state "$work/run" --runtime "$bin/berth-runtime" \
  --shim "$bin/berth-shim" --log-level-file "$work/none" >"$work/manager.log" 2>&1 &
manager_pid=$!
for _ in $(seq 300); do
  [ -S "$work/cri.sock" ] && break
  alive "$manager_pid" || { cat "$work/manager.log" >&2; exit 1; }
  sleep 0.1
done
"$tools/crictl" --runtime-endpoint "unix://$work/cri.sock" --image-endpoint "unix://$work/cri.sock" version >&2

# 5. critest against berth.
run_critest berth "unix://$work/cri.sock" "$@"
echo "berth: $result" >&2
echo "$result"
