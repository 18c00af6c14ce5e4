//! `berth-runtime start`. SKELETON: the process helper replaces this.

use crate::cli::Cli;

pub fn run(_cli: &Cli, _args: &crate::cli::IdArg) -> anyhow::Result<i32> {
    anyhow::bail!("start is not built yet")
}
