//! Networks: the home of `berth network ...` and of the networking flags of `run` and
//! `create` (`--network` today; `-p`, `-P`, `--ip`, `--network-alias`, `--expose`
//! belong here too). The networking work owns this module; the verbs are not
//! implemented yet, so no `network` command is registered.

use anyhow::Result;
use clap::Args;
use serde_json::{json, Value};

/// The networking flags of `run` and `create`.
#[derive(Debug, Args, Clone, Default)]
pub struct NetworkFlags {
    /// Connect a container to a network
    #[arg(long, alias = "net")]
    pub network: Option<String>,
}

impl NetworkFlags {
    /// Puts the flags into a `POST /containers/create` body.
    pub fn apply(&self, body: &mut Value) -> Result<()> {
        body["HostConfig"]["NetworkMode"] = json!(self
            .network
            .clone()
            .unwrap_or_else(|| "default".to_string()));
        Ok(())
    }
}
