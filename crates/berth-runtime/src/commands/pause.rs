//! `berth-runtime pause` and `resume`: the freezer.

use crate::cli::{Cli, IdArg};
use crate::Container;

pub fn pause(cli: &Cli, args: &IdArg) -> anyhow::Result<i32> {
    Container::load(&cli.root, &args.id)?.pause()?;
    Ok(0)
}

pub fn resume(cli: &Cli, args: &IdArg) -> anyhow::Result<i32> {
    Container::load(&cli.root, &args.id)?.resume()?;
    Ok(0)
}
