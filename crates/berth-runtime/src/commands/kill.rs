//! `berth-runtime kill`. SKELETON.

use crate::cli::{Cli, KillArgs};

pub fn run(_cli: &Cli, _args: &KillArgs) -> anyhow::Result<i32> {
    anyhow::bail!("kill is not built yet")
}
