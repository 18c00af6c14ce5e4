//! `berth-runtime state`. SKELETON.

use crate::cli::{Cli, IdArg};

pub fn run(_cli: &Cli, _args: &IdArg) -> anyhow::Result<i32> {
    anyhow::bail!("state is not built yet")
}
