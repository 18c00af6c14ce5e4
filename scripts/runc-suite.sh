#!/usr/bin/env bash
# Run runc's own integration suite (tests/integration/*.bats of a runc source tree,
# v1.1.5) against an OCI runtime binary. Not part of test.sh: CI has no runc tree.
#
# Usage: sudo ./scripts/runc-suite.sh RUNC_SRC [-r RUNTIME]... [FILE.bats]...
#   RUNC_SRC   a runc source tree (read only: everything is prepared in a work dir)
#   -r RUNTIME a runtime binary or a name on PATH (repeatable; default: the built
#              berth-runtime, target/debug or target/release, whichever is newer)
#   FILE.bats  run only these files (default: all)
# Environment: SUITE_WORK (work dir, default target/runc-suite), FILE_TIMEOUT (s per
# file, default 600). There is no per-test bound: bats' BATS_TEST_TIMEOUT runs a
# watchdog in the test's shell, and the tests that end with a bare `wait` (events,
# update) would wait for it.
#
# Nothing is fetched at run time. runc's helpers download two images
# (tests/integration/get-images.sh skips the download when the file exists), so they
# are built here from local files first:
#   busybox-amd64.tar.xz  Debian's busybox-static, one symlink per applet
#                         (scripts/make-rootfs.sh)
#   debian-amd64.tar.xz   a minimal Debian userland from this host's own files (dash
#                         as /bin/sh, grep, ldconfig and their libraries): hooks.bats
#                         only needs sh, grep and a glibc ldconfig
# and the suite's Go helpers (recvtty, sd-helper, seccompagent) are built from the
# runc tree's vendor directory with Debian's Go (GOFLAGS=-mod=vendor GOPROXY=off,
# with the seccomp build tag as runc's Makefile builds them).
# What cannot pass offline: "spec validator" (git clone from github.com), and the
# checkpoint tests need criu (skipped when it is not installed).
#
# Prints, for each runtime, the result of every file and a line
# `RUNTIME: N passed, M failed, K skipped`; the last line is the plain
# `N passed, M failed, K skipped` of the first runtime given.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
usage() { sed -n '4,11p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 1 ] || usage
src=$(cd "$1" && pwd) || usage
shift
runtimes=()
files=()
while [ $# -gt 0 ]; do
  case $1 in
  -r) [ $# -ge 2 ] || usage; runtimes+=("$2"); shift 2 ;;
  -h | --help) usage ;;
  *) files+=("$1"); shift ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "runc-suite.sh: run as root" >&2; exit 1; }
[ -f "$src/tests/integration/helpers.bash" ] || { echo "runc-suite.sh: $src is not a runc source tree" >&2; exit 1; }
. "$repo/scripts/deps.sh"
# The suite's own needs: bats, jq and gawk in its helpers, gcc for its test
# programs, Go and libseccomp headers for its helper binaries, busybox-static for
# the image.
berth_apt_install bats jq gawk build-essential golang-go libseccomp-dev busybox-static psmisc

if [ ${#runtimes[@]} -eq 0 ]; then
  bin=$repo/target/debug/berth-runtime
  [ "$repo/target/release/berth-runtime" -nt "$bin" ] && bin=$repo/target/release/berth-runtime
  [ -x "$bin" ] || { echo "runc-suite.sh: build berth-runtime first (cargo build -p berth-runtime)" >&2; exit 1; }
  runtimes=("$bin")
fi
work=${SUITE_WORK:-$repo/target/runc-suite}
file_timeout=${FILE_TIMEOUT:-600}
mkdir -p "$work"

# Each runtime is copied first, so that a rebuild during the run (it takes a
# while) does not change the binary under test halfway through.
for i in "${!runtimes[@]}"; do
  r=${runtimes[$i]}
  [[ $r == */* ]] || r=$(command -v "$r") || { echo "runc-suite.sh: ${runtimes[$i]} not found" >&2; exit 1; }
  r=$(readlink -f "$r")
  snap=$work/under-test/$i/$(basename "$r")
  mkdir -p "$(dirname "$snap")"
  cp "$r" "$snap.tmp" && mv "$snap.tmp" "$snap"
  runtimes[$i]=$snap
done

# The suite's tree: tests/integration copied, helpers built beside it where
# helpers.bash looks for them (INTEGRATION_ROOT/../../contrib/cmd/NAME/NAME).
tree=$work/tree
rm -rf "$tree/tests"
mkdir -p "$tree/tests" "$tree/contrib/cmd"
cp -a "$src/tests/integration" "$tree/tests/"
cp "$src/go.mod" "$tree/"
testdata=$tree/tests/integration/testdata
mkdir -p "$work/images"

busybox_image=$work/images/busybox-2.tar.xz
if [ ! -s "$busybox_image" ]; then
  echo "building the busybox image from busybox-static"
  d=$(mktemp -d)
  "$repo/scripts/make-rootfs.sh" "$d/rootfs"
  # The shape of the image the suite downloads (docker-library's busybox):
  # no /proc or /sys, which some tests replace with symlinks.
  rmdir "$d/rootfs/proc" "$d/rootfs/sys"
  tar -C "$d/rootfs" --numeric-owner -cJf "$busybox_image.tmp" .
  mv "$busybox_image.tmp" "$busybox_image"
  rm -rf "$d"
fi
if [ ! -s "$work/images/debian.tar.xz" ]; then
  echo "building the minimal debian image from this host's files"
  d=$(mktemp -d)
  r=$d/rootfs
  mkdir -p "$r"/{bin,sbin,lib,usr/bin,usr/lib,etc/ld.so.conf.d,proc,sys,dev,tmp,root,var}
  chmod 1777 "$r/tmp"
  cp -L /bin/dash "$r/bin/sh"
  cp -L /bin/grep "$r/bin/grep"
  cp -L /sbin/ldconfig "$r/sbin/ldconfig"
  cp -L /bin/cat /bin/ls /bin/mount /bin/touch "$r/bin/" 2>/dev/null || true
  # Every library those binaries load, at the path the loader asks for.
  for b in "$r"/bin/* "$r"/sbin/*; do
    ldd "$b" 2>/dev/null | grep -o '/[^ ]*' || true
  done | sort -u | while read -r lib; do
    mkdir -p "$r$(dirname "$lib")"
    cp -L "$lib" "$r$lib"
  done
  [ -e /etc/ld.so.conf ] && cp /etc/ld.so.conf "$r/etc/"
  cp /etc/ld.so.conf.d/*.conf "$r/etc/ld.so.conf.d/" 2>/dev/null || true
  cp /etc/debian_version "$r/etc/" 2>/dev/null || true
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$r/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
  chroot "$r" /sbin/ldconfig
  tar -C "$r" --numeric-owner -cJf "$work/images/debian.tar.xz.tmp" .
  mv "$work/images/debian.tar.xz.tmp" "$work/images/debian.tar.xz"
  rm -rf "$d"
fi
arch=$(go env GOARCH)
cp "$busybox_image" "$testdata/busybox-$arch.tar.xz"
cp "$work/images/debian.tar.xz" "$testdata/debian-$arch.tar.xz"

for h in recvtty sd-helper seccompagent; do
  out=$work/bin/$h
  if [ ! -x "$out" ]; then
    echo "building $h from $src (vendored, offline)"
    mkdir -p "$work/bin" "$work/go/cache" "$work/go/path"
    (cd "$src" && GOFLAGS=-mod=vendor GOPROXY=off GOCACHE=$work/go/cache GOPATH=$work/go/path \
      go build -buildvcs=false -tags seccomp -o "$out" "./contrib/cmd/$h")
  fi
  mkdir -p "$tree/contrib/cmd/$h"
  cp "$out" "$tree/contrib/cmd/$h/$h"
done
cp "$src"/contrib/cmd/seccompagent/*.sh "$tree/contrib/cmd/seccompagent/"

if [ ${#files[@]} -eq 0 ]; then
  for f in "$tree"/tests/integration/*.bats; do files+=("$(basename "$f")"); done
fi

# After a file that timed out, nothing of its containers may stay behind to
# disturb the next one: delete them, unmount and remove what the tests made.
cleanup_after() {
  local rt=$1 tmp=$2 st ct m
  for st in "$tmp"/*/runc.*/state; do
    [ -d "$st" ] || continue
    for ct in $("$rt" --root "$st" list -q 2>/dev/null); do
      timeout 20 "$rt" --root "$st" delete -f "$ct" >/dev/null 2>&1 || true
    done
  done
  # A process stuck in a frozen cgroup cannot die until it is thawed.
  for m in /sys/fs/cgroup/freezer/runc-cgroups-integration-test /sys/fs/cgroup/runc-cgroups-integration-test \
    /sys/fs/cgroup/unified/runc-cgroups-integration-test; do
    [ -d "$m" ] || continue
    find "$m" -name freezer.state -exec sh -c 'echo THAWED >"$1"' _ {} \; 2>/dev/null || true
    find "$m" -name cgroup.freeze -exec sh -c 'echo 0 >"$1"' _ {} \; 2>/dev/null || true
  done
  for p in $(ps -eo pid=,args= | awk -v t="$tmp" 'index($0, t) {print $1}'); do
    [ "$p" != $$ ] && kill -9 "$p" 2>/dev/null || true
  done
  { grep -F " $tmp" /proc/self/mountinfo || true; } | awk '{print $5}' | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  for m in /sys/fs/cgroup/*/runc-cgroups-integration-test /sys/fs/cgroup/runc-cgroups-integration-test; do
    [ -d "$m" ] && find "$m" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  rm -rf "$tmp"
}

# The suite's helpers mkdir its parent cgroup under every controller of
# /proc/cgroups, mounted or not: on a hybrid host that leaves plain
# directories on the /sys/fs/cgroup tmpfs. Remove the empty ones this run
# made; restore the hugetlb arrangement below.
cgroup_entries_before=$(ls /sys/fs/cgroup)
mounted_hugetlb=0
finish() {
  local e
  for e in /sys/fs/cgroup/*; do
    mountpoint -q "$e" && continue
    grep -qxF "$(basename "$e")" <<<"$cgroup_entries_before" && continue
    find "$e" -depth -type d -empty -delete 2>/dev/null || true
  done
  if [ "$mounted_hugetlb" = 1 ]; then
    find /sys/fs/cgroup/hugetlb -mindepth 1 -depth -type d -exec rmdir {} \; 2>/dev/null || true
    # A cgroup removed just before may still be dying and keep the hierarchy
    # alive: retry until cgroup2 has hugetlb back.
    for _ in 1 2 3 4 5; do
      umount /sys/fs/cgroup/hugetlb 2>/dev/null || true
      grep -qw hugetlb /sys/fs/cgroup/unified/cgroup.controllers && break
      sleep 1
      mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb 2>/dev/null || true
    done
    rmdir /sys/fs/cgroup/hugetlb 2>/dev/null || true
  fi
}
trap finish EXIT
# crun 1.8 refuses a hybrid layout whose cgroup2 mount still holds a
# controller (hugetlb on this kind of host): give hugetlb a v1 hierarchy for
# the length of the run, as scripts/bench-runtime.sh does, so that crun's
# figure means something. Every runtime runs under the same layout.
if [ "${SUITE_HUGETLB_V1:-1}" = 1 ] && [ -f /sys/fs/cgroup/unified/cgroup.controllers ] &&
  grep -qw hugetlb /sys/fs/cgroup/unified/cgroup.controllers && ! mountpoint -q /sys/fs/cgroup/hugetlb; then
  mkdir -p /sys/fs/cgroup/hugetlb
  if mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb 2>/dev/null; then
    mounted_hugetlb=1
    echo "hugetlb moved to a cgroup v1 hierarchy for this run (crun refuses it on cgroup2 in hybrid mode)"
  else
    echo "warning: could not give hugetlb a v1 hierarchy (enabled in a cgroup2 subtree_control?); crun will fail here" >&2
  fi
fi

devnull_owner=$(stat -c %u:%g /dev/null)
results=$work/results
summaries=()
first_line=
for rt in "${runtimes[@]}"; do
  name=$(basename "$rt")
  outdir=$results/$name
  rm -rf "$outdir"
  mkdir -p "$outdir"
  total_pass=0 total_fail=0 total_skip=0
  echo "== $name ($rt)"
  for f in "${files[@]}"; do
    f=$(basename "$f")
    [ -f "$tree/tests/integration/$f" ] || { echo "no such file: $f" >&2; exit 1; }
    tmp=$(mktemp -d /tmp/runc-suite.XXXXXX)
    chmod 755 "$tmp"
    planned=$(bats --count "$tree/tests/integration/$f")
    rc=0
    # script(1) gives the tests a controlling terminal: runc's default config
    # has `terminal: true`, and a foreground `run` of it relays /dev/tty.
    # Inside, timeout bounds the file (in the foreground: runc reads the
    # terminal, which a background process group may not); outside, a second
    # one bounds script and everything it started.
    tap=$outdir/${f%.bats}.tap
    inner="timeout --foreground -k 10 $file_timeout bats --tap $(printf %q "$tree/tests/integration/$f") >$(printf %q "$tap") 2>&1; echo \$? >$(printf %q "$tmp/rc")"
    TMPDIR=$tmp RUNC=$rt SHELL=/bin/bash \
      timeout -k 10 $((file_timeout + 30)) script -qec "$inner" /dev/null </dev/null >/dev/null 2>&1 || true
    rc=$(cat "$tmp/rc" 2>/dev/null || echo 124)
    pass=$(grep -cE "^ok [0-9]+ " "$tap" || true)
    skip=$(grep -cE '^ok [0-9]+ .*# skip' "$tap" || true)
    fail=$(grep -cE '^not ok [0-9]+ ' "$tap" || true)
    pass=$((pass - skip))
    note=
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
      # Tests that never reported count as failed.
      fail=$((planned - pass - skip))
      note=" (timed out after ${file_timeout}s)"
      echo "# file timed out after ${file_timeout}s" >>"$tap"
    fi
    cleanup_after "$rt" "$tmp"
    # exec.bats checks that `exec --user` leaves the host's /dev/null owned by
    # root (runc issue 3674); a runtime with that bug (crun 1.8.1 has it) would
    # otherwise fail the same test for every runtime after it.
    if [ "$(stat -c %u:%g /dev/null)" != "$devnull_owner" ]; then
      echo "  $name changed the owner of the host's /dev/null in $f; restored"
      chown "$devnull_owner" /dev/null
    fi
    printf '  %-28s %3d passed, %3d failed, %3d skipped%s\n' "$f" "$pass" "$fail" "$skip" "$note"
    total_pass=$((total_pass + pass))
    total_fail=$((total_fail + fail))
    total_skip=$((total_skip + skip))
  done
  line="$total_pass passed, $total_fail failed, $total_skip skipped"
  echo "  (TAP output of each file: $outdir)"
  summaries+=("$name: $line")
  [ -n "$first_line" ] || first_line=$line
done
for s in "${summaries[@]}"; do echo "$s"; done
echo "$first_line"
