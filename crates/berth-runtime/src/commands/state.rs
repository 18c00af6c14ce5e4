//! `berth-runtime state ID`: the spec's state object, indented like runc prints it.

use crate::cli::{Cli, IdArg};
use crate::state::State;

pub fn run(cli: &Cli, args: &IdArg) -> anyhow::Result<i32> {
    let state = State::load(&cli.root, &args.id)?;
    println!(
        "{}",
        serde_json::to_string_pretty(&state.oci_state(&cli.root))?
    );
    Ok(0)
}
