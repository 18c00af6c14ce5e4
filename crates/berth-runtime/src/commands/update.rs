//! `berth-runtime update`. SKELETON.

use crate::cli::{Cli, UpdateArgs};

pub fn run(_cli: &Cli, _args: &UpdateArgs) -> anyhow::Result<i32> {
    anyhow::bail!("update is not built yet")
}
