//! `berth-runtime kill [--all] ID [SIGNAL]`.

use anyhow::Context;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::cgroups::CgroupManager;
use crate::cli::{Cli, KillArgs};
use crate::signal;
use crate::state::{State, Status};

pub fn run(cli: &Cli, args: &KillArgs) -> anyhow::Result<i32> {
    let sig = signal::parse(&args.signal)?;
    let state = State::load(&cli.root, &args.id)?;
    let status = state.status(&cli.root);
    if args.all {
        signal_all(&state, sig)?;
        return Ok(0);
    }
    if status == Status::Stopped {
        anyhow::bail!("container {} is not running", args.id);
    }
    kill(Pid::from_raw(state.init_process_pid), sig)
        .with_context(|| format!("sending {sig} to container {}", args.id))?;
    Ok(0)
}

/// Signal every process in the container's cgroup. The cgroup is frozen while the
/// pids are read and signalled so that a fork cannot slip a new process past us,
/// then thawed so that the signal can be delivered.
pub fn signal_all(state: &State, sig: Signal) -> anyhow::Result<()> {
    let cg = CgroupManager::from_paths(&state.cgroup_paths)?;
    let was_frozen = cg.is_frozen().unwrap_or(false);
    let froze = !was_frozen && sig == Signal::SIGKILL && cg.freeze().is_ok();
    let pids = cg.pids();
    let mut result = Ok(());
    match pids {
        Ok(pids) => {
            for pid in pids {
                // A process that exited meanwhile is not an error.
                if let Err(e) = kill(Pid::from_raw(pid), sig) {
                    if e != nix::errno::Errno::ESRCH {
                        result = Err(anyhow::anyhow!("sending {sig} to pid {pid}: {e}"));
                    }
                }
            }
        }
        Err(e) => result = Err(e.into()),
    }
    if froze || (was_frozen && sig == Signal::SIGKILL) {
        let _ = cg.thaw();
    }
    result
}
