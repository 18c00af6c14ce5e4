//! `berth-runtime features` and `--version`. SKELETON.

use crate::cli::Cli;

pub fn run(_cli: &Cli) -> anyhow::Result<i32> {
    anyhow::bail!("features is not built yet")
}

pub fn version_text() -> String {
    format!("berth-runtime version {}\n", env!("CARGO_PKG_VERSION"))
}
