//! `berth context ...`: berth has one context, `default`, the engine named by `-H`,
//! `BERTH_HOST`, `DOCKER_HOST` or the default socket.

use anyhow::{bail, Result};
use clap::{Args, Subcommand};

use crate::container::FORMAT_HELP;
use crate::format;
use crate::template::{Map, Value};

#[derive(Debug, Args, Clone)]
pub struct ContextLsArgs {
    #[arg(long, help = FORMAT_HELP)]
    pub format: Option<String>,
    /// Only show context names
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

#[derive(Debug, Args, Clone)]
pub struct ContextInspectArgs {
    /// Format output using a custom template: 'json' or a Go template
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    #[arg(value_name = "CONTEXT")]
    pub contexts: Vec<String>,
}

#[derive(Debug, Args, Clone)]
pub struct ContextUseArgs {
    #[arg(value_name = "CONTEXT")]
    pub context: String,
}

/// `berth context ...`.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum ContextCmd {
    /// Display detailed information on one or more contexts
    #[command(override_usage = "berth context inspect [OPTIONS] [CONTEXT] [CONTEXT...]")]
    Inspect(ContextInspectArgs),
    /// List contexts
    #[command(visible_alias = "list", override_usage = "berth context ls [OPTIONS]")]
    Ls(ContextLsArgs),
    /// Print the name of the current context
    #[command(override_usage = "berth context show")]
    Show,
    /// Set the current docker context
    #[command(override_usage = "berth context use CONTEXT")]
    Use(ContextUseArgs),
}

const TABLE: &str =
    "table {{.Name}}{{if .Current}} *{{end}}\t{{.Description}}\t{{.DockerEndpoint}}\t{{.Error}}";

fn default_context(host: &str) -> Value {
    let mut m = Map::structure("*formatter.ClientContext");
    m.insert("Current", true);
    m.insert("Description", "Current DOCKER_HOST based configuration");
    m.insert("DockerEndpoint", host);
    m.insert("Error", "");
    m.insert("Name", "default");
    Value::Map(m)
}

fn header() -> Map {
    format::header(&[
        ("Name", "NAME"),
        ("Description", "DESCRIPTION"),
        ("DockerEndpoint", "DOCKER ENDPOINT"),
        ("Error", "ERROR"),
    ])
}

pub fn run(host: &str, cmd: ContextCmd) -> Result<i32> {
    match cmd {
        ContextCmd::Ls(a) => {
            let fmt = match (a.quiet, a.format.as_deref()) {
                (true, _) => "{{.Name}}".to_string(),
                (false, None | Some("") | Some("table")) => TABLE.to_string(),
                (false, Some(f)) => f.to_string(),
            };
            print!(
                "{}",
                format::write(&fmt, &header(), &[default_context(host)])?
            );
            Ok(0)
        }
        ContextCmd::Show => {
            println!("default");
            Ok(0)
        }
        ContextCmd::Use(a) => {
            if a.context != "default" {
                bail!("context \"{}\" does not exist", a.context);
            }
            println!("default");
            eprintln!("Current context is now \"default\"");
            Ok(0)
        }
        ContextCmd::Inspect(a) => {
            for n in &a.contexts {
                if n != "default" {
                    bail!("context \"{n}\" does not exist");
                }
            }
            let v = serde_json::json!([{
                "Name": "default",
                "Metadata": {},
                "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": false}},
                "TLSMaterial": {},
                "Storage": {"MetadataPath": "<IN MEMORY>", "TLSPath": "<IN MEMORY>"}
            }]);
            let v = Value::from(&v);
            match a.format.as_deref() {
                Some(f) if !f.is_empty() => {
                    let Value::List(items) = v else { return Ok(0) };
                    print!("{}", format::each(f, &items)?);
                }
                _ => println!("{}", v.to_json_pretty()),
            }
            Ok(0)
        }
    }
}
