//! `berth-runtime events`. SKELETON.

use crate::cli::{Cli, EventsArgs};

pub fn run(_cli: &Cli, _args: &EventsArgs) -> anyhow::Result<i32> {
    anyhow::bail!("events is not built yet")
}
