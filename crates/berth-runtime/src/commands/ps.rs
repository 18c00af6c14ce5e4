//! `berth-runtime ps`. SKELETON.

use crate::cli::{Cli, PsArgs};

pub fn run(_cli: &Cli, _args: &PsArgs) -> anyhow::Result<i32> {
    anyhow::bail!("ps is not built yet")
}
