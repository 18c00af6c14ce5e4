//! `berth-runtime start ID`: release a created container's init.

use crate::cli::{Cli, IdArg};
use crate::Container;

pub fn run(cli: &Cli, args: &IdArg) -> anyhow::Result<i32> {
    Container::load(&cli.root, &args.id)?.start()?;
    Ok(0)
}
