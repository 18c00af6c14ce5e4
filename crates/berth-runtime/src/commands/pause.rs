//! `berth-runtime pause` and `resume`. SKELETON.

use crate::cli::{Cli, IdArg};

pub fn pause(_cli: &Cli, _args: &IdArg) -> anyhow::Result<i32> {
    anyhow::bail!("pause is not built yet")
}

pub fn resume(_cli: &Cli, _args: &IdArg) -> anyhow::Result<i32> {
    anyhow::bail!("resume is not built yet")
}
