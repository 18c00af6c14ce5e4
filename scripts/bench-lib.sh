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
  "$bin/berthd" -H "unix://$work/berth.sock" --manager "$work/manager.sock" \
    --data-root "$work/engine" --exec-root "$work/run/engine" --log-level warn \
    --bridge "$1" --bip "$2" --config-file "$work/daemon.json" 2>"$work/berthd.log" &
  berthd_pid=$!; pids+=("$berthd_pid")
  for _ in $(seq 200); do [ -S "$work/berth.sock" ] && break; sleep 0.05; done
  berth=("$bin/berth" -H "unix://$work/berth.sock")
}
