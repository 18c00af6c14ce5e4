#!/usr/bin/env bash
# Build the busybox test root filesystem into DIR from Debian's busybox-static:
# the binary at /bin/busybox, one symlink per applet, /etc/passwd and /etc/group with
# root and nobody, and empty /proc /sys /dev /tmp. Tests and install.sh use it.
set -euo pipefail
dest=${1:?usage: make-rootfs.sh DIR}
bb=${BUSYBOX:-/bin/busybox}
[ -x "$bb" ] || { echo "make-rootfs.sh: $bb not found (apt-get install busybox-static)" >&2; exit 1; }
mkdir -p "$dest"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,root,var,home}
chmod 1777 "$dest/tmp"
install -m 0755 "$bb" "$dest/bin/busybox"
"$bb" --list-full | while read -r applet; do
  [ "$applet" = bin/busybox ] && continue
  mkdir -p "$dest/$(dirname "$applet")"
  ln -sf /bin/busybox "$dest/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$dest/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$dest/etc/group"
