#!/usr/bin/env bash
# Starting and stopping berth-manager and berthd where systemd is not PID 1 (CI
# containers, this kind of machine): background processes in their own session,
# logs under /var/log/berth, pid files under /run/berth. Sourced by install.sh and
# uninstall.sh; under systemd they use systemctl instead.

BERTH_RUN=${BERTH_RUN:-/run/berth}
BERTH_LOG=${BERTH_LOG:-/var/log/berth}
# shellcheck disable=SC2034 # used by the scripts that source this one
BERTH_UNITS=(berth-manager.service berthd.socket berthd.service)

# True when systemd manages this machine (the test sd_booted(3) uses).
berth_have_systemd() {
  [ -d /run/systemd/system ]
}

# berth_alive PID NAME: PID is a live (not zombie) process named NAME. A zombie
# still answers kill -0, and where PID 1 never reaps orphans a stopped daemon
# stays one for good, so the state letter is what tells.
berth_alive() {
  local pid=$1 name=$2 comm state
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
  comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
  [ "$comm" = "$name" ] || return 1
  # Field 3, after the ")" that closes the command name.
  state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# berth_pid NAME: the pid in $BERTH_RUN/NAME.pid when that process still runs.
berth_pid() {
  local pid
  pid=$(cat "$BERTH_RUN/$1.pid" 2>/dev/null) || return 1
  berth_alive "$pid" "$(berth_comm "$1")" && echo "$pid"
}

# The process name of each daemon (its pid file is named after the short name).
berth_comm() {
  case $1 in
    manager) echo berth-manager ;;
    berthd) echo berthd ;;
  esac
}

# berth_stop NAME: SIGTERM the daemon in NAME.pid and wait for it to end (SIGKILL
# after 20 s). The manager leaves every container and its shim running.
berth_stop() {
  local name=$1 pid i
  pid=$(berth_pid "$name") || { rm -f "$BERTH_RUN/$name.pid"; return 0; }
  echo "stopping $(berth_comm "$name") (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 200); do
    berth_alive "$pid" "$(berth_comm "$name")" || break
    [ "$i" = 200 ] && { echo "$(berth_comm "$name") still runs after 20 s: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; }
    sleep 0.1
  done
  rm -f "$BERTH_RUN/$name.pid"
}

# berth_start NAME BINARY ARGS...: start BINARY in its own session, stdin from
# /dev/null, output appended to $BERTH_LOG/NAME.log, pid in $BERTH_RUN/NAME.pid.
berth_start() {
  local name=$1 bin=$2 pid
  shift 2
  mkdir -p "$BERTH_LOG" "$BERTH_RUN"
  # A script's background job is not a process group leader, so setsid(1) calls
  # setsid() and execs in place: $! is the daemon's own pid.
  setsid nohup "$bin" "$@" </dev/null >>"$BERTH_LOG/$name.log" 2>&1 &
  pid=$!
  echo "$pid" >"$BERTH_RUN/$name.pid"
  # Until setsid and nohup have exec'd the daemon the process has their names,
  # which berth_alive would take for a dead daemon.
  for _ in $(seq 100); do
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$(basename "$bin" | cut -c1-15)" ] && return 0
    [ -e "/proc/$pid" ] || return 1
    sleep 0.05
  done
  return 1
}

# berth_wait_socket PATH NAME PID: wait up to 30 s for PATH to accept connections
# while PID (named NAME) lives. curl's exit status 7 is "could not connect"; any
# other means it connected (the manager speaks gRPC, not what curl asks).
berth_wait_socket() {
  local path=$1 name=$2 pid=$3 rc
  for _ in $(seq 300); do
    if [ -S "$path" ]; then
      rc=0
      curl -s -o /dev/null --max-time 2 --unix-socket "$path" http://berth/_ping || rc=$?
      [ "$rc" != 7 ] && return 0
    fi
    berth_alive "$pid" "$name" || return 1
    sleep 0.1
  done
  return 1
}
