//! `berth-runtime delete [--force] ID`: kill what is left, remove the cgroup, run
//! poststop hooks, remove the state directory.

use crate::cli::{Cli, DeleteArgs};
use crate::state::{self, StateError};
use crate::{Container, Error};

pub fn run(cli: &Cli, args: &DeleteArgs) -> anyhow::Result<i32> {
    match Container::load(&cli.root, &args.id) {
        Ok(c) => c.delete(args.force)?,
        Err(Error::State(StateError::NotFound(_))) if args.force => {
            // Docker and containerd call `delete --force` to clean up after a
            // failed create: a container that never got a state file is already
            // gone. A directory left without state.json is removed.
            let dir = state::container_dir(&cli.root, &args.id)?;
            let _ = std::fs::remove_dir_all(dir);
        }
        Err(e) => return Err(e.into()),
    }
    Ok(0)
}
