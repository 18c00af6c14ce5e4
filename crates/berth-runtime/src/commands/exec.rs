//! `berth-runtime exec`. SKELETON: the process helper replaces this.

use crate::cli::Cli;

pub fn run(_cli: &Cli, _args: &crate::cli::ExecArgs) -> anyhow::Result<i32> {
    anyhow::bail!("exec is not built yet")
}
