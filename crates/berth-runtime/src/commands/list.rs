//! `berth-runtime list`. SKELETON.

use crate::cli::{Cli, ListArgs};

pub fn run(_cli: &Cli, _args: &ListArgs) -> anyhow::Result<i32> {
    anyhow::bail!("list is not built yet")
}
