//! `berth-runtime spec`. SKELETON.

use crate::cli::{Cli, SpecArgs};

pub fn run(_cli: &Cli, _args: &SpecArgs) -> anyhow::Result<i32> {
    anyhow::bail!("spec is not built yet")
}
