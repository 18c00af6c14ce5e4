//! `berth-runtime run`. SKELETON: the process helper replaces this.

use crate::cli::Cli;

pub fn run(_cli: &Cli, _args: &crate::cli::RunArgs) -> anyhow::Result<i32> {
    anyhow::bail!("run is not built yet")
}
