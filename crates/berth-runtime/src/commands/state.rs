//! `berth-runtime state ID`: the spec's state object, indented like runc prints it.

use crate::cli::{Cli, IdArg};
use crate::Container;

pub fn run(cli: &Cli, args: &IdArg) -> anyhow::Result<i32> {
    let c = Container::load(&cli.root, &args.id)?;
    println!("{}", serde_json::to_string_pretty(&c.oci_state())?);
    Ok(0)
}
