//! `inspect`: any object by name or id, tried as docker tries them (container, image,
//! volume, network), shown as the engine's JSON or through `-f`.

use anyhow::{bail, Result};
use clap::Args;
use http::Method;

use crate::client::{enc, CliError, Client};
use crate::template::Value;

#[derive(Debug, Args, Clone)]
pub struct InspectArgs {
    /// Format output using a custom template: 'json' or a Go template
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    /// Display total file sizes if the type is container
    #[arg(short = 's', long)]
    pub size: bool,
    /// Only inspect objects of the given type
    #[arg(long = "type", value_name = "string")]
    pub kind: Option<String>,
    #[arg(required = true, value_name = "NAME|ID")]
    pub names: Vec<String>,
}

/// docker's typed objects answer `.ID` where the JSON says `Id`; both work there.
pub fn with_aliases(mut v: Value) -> Value {
    if let Value::Map(m) = &mut v {
        m.alias("ID", "Id");
        // A container: docker runs the template on its typed object first, where
        // a container without a health check has a nil Health.
        if let Some(Value::Map(state)) = m.get_mut("State") {
            state.typed_field("Health", Value::Nil);
        }
    }
    v
}

pub async fn inspect(c: &Client, a: InspectArgs) -> Result<i32> {
    let kinds: Vec<&str> = match a.kind.as_deref() {
        None | Some("") => vec!["container", "image", "volume", "network"],
        Some(k @ ("container" | "image" | "volume" | "network")) => vec![k],
        Some(k @ ("node" | "service" | "task" | "secret" | "config" | "plugin")) => {
            bail!("berth has no {k}s (they belong to Swarm and plugins)")
        }
        Some(k) => bail!("\"{k}\" is not a valid value for --type"),
    };
    let mut found = vec![];
    let mut errors = vec![];
    for n in &a.names {
        let mut got = None;
        for kind in &kinds {
            let path = match *kind {
                "container" => format!("/containers/{}/json?size={}", enc(n), a.size as u8),
                "image" => format!("/images/{}/json", enc(n)),
                "volume" => format!("/volumes/{}", enc(n)),
                _ => format!("/networks/{}", enc(n)),
            };
            match c.json_ordered(Method::GET, &path).await {
                Ok(v) => {
                    got = Some(v);
                    break;
                }
                // Not this kind (or a kind this engine does not serve): try the next.
                Err(CliError::Api { status, .. })
                    if status == 404 || status == 501 || status == 400 =>
                {
                    continue
                }
                Err(e) => return Err(e.into()),
            }
        }
        match got {
            Some(v) => found.push(with_aliases(v)),
            None => errors.push(match a.kind.as_deref() {
                Some(k) => format!("Error: No such {k}: {n}"),
                None => format!("Error: No such object: {n}"),
            }),
        }
    }
    crate::container::print_inspect(a.format.as_deref(), found, errors).await
}
