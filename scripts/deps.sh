#!/usr/bin/env bash
# Packages berth needs, in two lists: what running berth needs, and what building
# and testing it needs on top. Sourced by install.sh and test.sh, which run
# `apt-get update` once and install only what is missing.

# Run time: install.sh imports busybox from busybox-static (the runtime has libseccomp
# linked in, from libseccomp-dev's static archive at build time);
# berthd's networks are netavark's (bridges, NAT, ports: iptables) with aardvark-dns;
# the manager's CRI pods get their namespaces from util-linux's unshare and their
# networks from the standard CNI plugins (containernetworking-plugins, /usr/lib/cni).
BERTH_RUNTIME_PACKAGES=(busybox-static iproute2 procps netavark aardvark-dns iptables
  util-linux containernetworking-plugins)

# Build and test: compilers and headers, the peers we test against (runc, crun,
# docker.io, containerd and podman, which run berth-runtime in its tests,
# docker-registry, skopeo, docker-compose 1.29) and the tools the tests and scripts call
# (golang-go builds critest and crictl for scripts/critest.sh).
BERTH_TEST_PACKAGES=(build-essential pkg-config libseccomp-dev git ca-certificates
  runc crun skopeo umoci docker-registry docker.io containerd podman apache2-utils jq psmisc
  util-linux curl bc systemd hyperfine python3-venv docker-compose golang-go)

# docker-py, pinned, for the tests that check berthd against it (e2e_truth): a venv
# under target/ made once from PyPI. Prints the venv's python.
BERTH_DOCKER_PY_VERSION=7.2.0
berth_docker_py() {
  local venv=${1:-target/docker-py}
  if ! "$venv/bin/python" -c "import docker, sys; sys.exit(docker.__version__ != '$BERTH_DOCKER_PY_VERSION')" 2>/dev/null; then
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install -q "docker==$BERTH_DOCKER_PY_VERSION" >&2
  fi
  echo "$PWD/$venv/bin/python"
}

# Install the named packages that are not installed yet (one apt-get update first).
berth_apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
