//! `berth-runtime delete`. SKELETON.

use crate::cli::{Cli, DeleteArgs};

pub fn run(_cli: &Cli, _args: &DeleteArgs) -> anyhow::Result<i32> {
    anyhow::bail!("delete is not built yet")
}
