//! `berth-runtime delete [--force] ID`: kill what is left, remove the cgroup, run
//! poststop hooks, remove the state directory.

use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::cgroups::CgroupManager;
use crate::cli::{Cli, DeleteArgs};
use crate::state::{self, State, StateError, Status};
use crate::{hooks, logger};

pub fn run(cli: &Cli, args: &DeleteArgs) -> anyhow::Result<i32> {
    let state = match State::load(&cli.root, &args.id) {
        Ok(s) => s,
        Err(StateError::NotFound(_)) if args.force => {
            // Docker and containerd call `delete --force` to clean up after a failed
            // create: a container that never got a state file is already gone. A
            // directory left without state.json is removed.
            let dir = state::container_dir(&cli.root, &args.id)?;
            let _ = std::fs::remove_dir_all(dir);
            return Ok(0);
        }
        Err(e) => return Err(e.into()),
    };
    let status = state.status(&cli.root);
    match status {
        Status::Stopped | Status::Created => {}
        Status::Running | Status::Paused | Status::Creating if !args.force => {
            anyhow::bail!(
                "cannot delete container {} that is not stopped: {status}",
                args.id
            )
        }
        _ => {}
    }
    destroy(cli, &state)?;
    Ok(0)
}

/// Kill the container's processes, remove its cgroup and state, run poststop hooks.
pub fn destroy(cli: &Cli, state: &State) -> anyhow::Result<()> {
    if state.init_alive() {
        let _ = super::kill::signal_all(state, Signal::SIGKILL);
        let _ = kill(Pid::from_raw(state.init_process_pid), Signal::SIGKILL);
        wait_gone(state, Duration::from_secs(10)).with_context(|| {
            format!(
                "container {} init {} did not die",
                state.id, state.init_process_pid
            )
        })?;
    }
    if let Ok(cg) = CgroupManager::from_paths(&state.cgroup_paths) {
        // Without a pid namespace, processes may outlive the init: kill them too.
        if let Ok(pids) = cg.pids() {
            for pid in pids {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        cg.remove()
            .with_context(|| format!("removing the cgroup of container {}", state.id))?;
    }
    let mut oci = state.oci_state(&cli.root);
    oci.status = Status::Stopped;
    if let Some(h) = state
        .config
        .hooks()
        .as_ref()
        .and_then(|h| h.poststop().clone())
    {
        // Poststop failures are logged, not fatal: the container is gone either way,
        // and every hook still runs.
        for e in hooks::run_all(&h, &oci) {
            logger::warn(&format!("poststop hook: {e}"));
        }
    }
    let dir = state.dir(&cli.root);
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    Ok(())
}

/// Wait until the init is gone (or a zombie nobody of ours will reap), using a
/// pidfd so no polling of /proc is needed on current kernels.
fn wait_gone(state: &State, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, state.init_process_pid, 0) };
    if fd >= 0 {
        let fd = fd as i32;
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: pfd is a valid pollfd for the duration of the call.
        unsafe { libc::poll(&mut pfd, 1, ms) };
        // SAFETY: fd was returned by pidfd_open above and is closed once.
        unsafe { libc::close(fd) };
    }
    while state.init_alive() {
        if Instant::now() >= deadline {
            anyhow::bail!("timed out");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}
