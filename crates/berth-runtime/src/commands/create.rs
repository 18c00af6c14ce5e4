//! `berth-runtime create`. SKELETON: the process helper replaces this.

use crate::cli::Cli;

pub fn run(_cli: &Cli, _args: &crate::cli::CreateArgs) -> anyhow::Result<i32> {
    anyhow::bail!("create is not built yet")
}
