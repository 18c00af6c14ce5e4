//! `berth-runtime pause` and `resume`: the freezer.

use crate::cgroups::CgroupManager;
use crate::cli::{Cli, IdArg};
use crate::state::{State, Status};

pub fn pause(cli: &Cli, args: &IdArg) -> anyhow::Result<i32> {
    let state = State::load(&cli.root, &args.id)?;
    match state.status(&cli.root) {
        Status::Running | Status::Created => {}
        other => anyhow::bail!("container {} is not running: {other}", args.id),
    }
    CgroupManager::from_paths(&state.cgroup_paths)?.freeze()?;
    Ok(0)
}

pub fn resume(cli: &Cli, args: &IdArg) -> anyhow::Result<i32> {
    let state = State::load(&cli.root, &args.id)?;
    let status = state.status(&cli.root);
    if status != Status::Paused {
        anyhow::bail!("container {} is not paused: {status}", args.id);
    }
    CgroupManager::from_paths(&state.cgroup_paths)?.thaw()?;
    Ok(0)
}
