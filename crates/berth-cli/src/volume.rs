//! `berth volume ...`.

use anyhow::Result;
use clap::{Args, Subcommand};
use http::Method;
use serde_json::{json, Map, Value};

use crate::cli::{confirm, StatusError};
use crate::client::{enc, filters_query, Client};
use crate::container::FORMAT_HELP;
use crate::format::{self, misc, units};

#[derive(Debug, Args, Clone)]
pub struct VolumeCreateArgs {
    /// Specify volume driver name
    #[arg(short = 'd', long, default_value = "local")]
    pub driver: String,
    /// Set metadata for a volume
    #[arg(long = "label")]
    pub label: Vec<String>,
    /// Specify volume name
    #[arg(long)]
    pub name: Option<String>,
    /// Set driver specific options
    #[arg(short = 'o', long = "opt")]
    pub opt: Vec<String>,
    #[arg(value_name = "VOLUME")]
    pub volume: Option<String>,
}

#[derive(Debug, Args, Clone)]
pub struct VolumeLsArgs {
    /// Provide filter values (e.g. "dangling=true")
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    #[arg(long, help = FORMAT_HELP)]
    pub format: Option<String>,
    /// Only display volume names
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

#[derive(Debug, Args, Clone)]
pub struct VolumeInspectArgs {
    /// Format output using a custom template: 'json' or a Go template
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    #[arg(required = true, value_name = "VOLUME")]
    pub volumes: Vec<String>,
}

#[derive(Debug, Args, Clone)]
pub struct VolumeRmArgs {
    /// Force the removal of one or more volumes
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(required = true, value_name = "VOLUME")]
    pub volumes: Vec<String>,
}

#[derive(Debug, Args, Clone)]
pub struct VolumePruneArgs {
    /// Remove all unused volumes, not just anonymous ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Provide filter values (e.g. "label=<label>")
    #[arg(long = "filter")]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
}

/// `berth volume ...`.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum VolumeCmd {
    /// Create a volume
    #[command(override_usage = "berth volume create [OPTIONS] [VOLUME]")]
    Create(VolumeCreateArgs),
    /// Display detailed information on one or more volumes
    #[command(override_usage = "berth volume inspect [OPTIONS] VOLUME [VOLUME...]")]
    Inspect(VolumeInspectArgs),
    /// List volumes
    #[command(visible_alias = "list", override_usage = "berth volume ls [OPTIONS]")]
    Ls(VolumeLsArgs),
    /// Remove unused local volumes
    #[command(override_usage = "berth volume prune [OPTIONS]")]
    Prune(VolumePruneArgs),
    /// Remove one or more volumes
    #[command(
        visible_alias = "remove",
        override_usage = "berth volume rm [OPTIONS] VOLUME [VOLUME...]"
    )]
    Rm(VolumeRmArgs),
}

fn kv(items: &[String]) -> Map<String, Value> {
    items
        .iter()
        .map(|s| {
            let (k, v) = s.split_once('=').unwrap_or((s, ""));
            (k.to_string(), json!(v))
        })
        .collect()
}

pub async fn run(c: &Client, cmd: VolumeCmd) -> Result<i32> {
    match cmd {
        VolumeCmd::Create(a) => {
            if a.name.is_some() && a.volume.is_some() {
                anyhow::bail!("conflicting options: cannot specify a volume-name through both --name and as a positional arg");
            }
            let body = json!({
                "Name": a.name.or(a.volume).unwrap_or_default(),
                "Driver": a.driver,
                "DriverOpts": kv(&a.opt),
                "Labels": kv(&a.label),
            });
            let v = c.json(Method::POST, "/volumes/create", Some(body)).await?;
            println!("{}", v["Name"].as_str().unwrap_or(""));
            Ok(0)
        }
        VolumeCmd::Ls(a) => {
            let f = filters_query(&a.filter)?;
            let path = if f.is_empty() {
                "/volumes".to_string()
            } else {
                format!("/volumes?filters={f}")
            };
            let v = c.json(Method::GET, &path, None).await?;
            let source = match &a.format {
                Some(f) => f.clone(),
                None if !a.quiet => crate::config::ConfigFile::load()
                    .ok()
                    .and_then(|cfg| cfg.format("volumesFormat"))
                    .unwrap_or_else(|| "table".into()),
                None => "table".into(),
            };
            let fmt = misc::volume_format(&source, a.quiet);
            let mut vols: Vec<&Value> = v["Volumes"].as_array().into_iter().flatten().collect();
            vols.sort_by(|x, y| x["Name"].as_str().cmp(&y["Name"].as_str()));
            let rows: Vec<_> = vols.into_iter().map(misc::volume_row).collect();
            print!("{}", format::write(&fmt, &misc::volume_header(), &rows)?);
            Ok(0)
        }
        VolumeCmd::Inspect(a) => {
            let mut found = vec![];
            let mut errors = vec![];
            for n in &a.volumes {
                match c
                    .json_ordered(Method::GET, &format!("/volumes/{}", enc(n)))
                    .await
                {
                    Ok(v) => found.push(v),
                    Err(e) => errors.push(e.to_string()),
                }
            }
            crate::container::print_inspect(a.format.as_deref(), found, errors).await
        }
        VolumeCmd::Rm(a) => {
            let mut errors = vec![];
            for v in &a.volumes {
                match c
                    .json(
                        Method::DELETE,
                        &format!("/volumes/{}?force={}", enc(v), a.force),
                        None,
                    )
                    .await
                {
                    Ok(_) => println!("{v}"),
                    Err(e) => errors.push(e.to_string()),
                }
            }
            if errors.is_empty() {
                return Ok(0);
            }
            Err(StatusError {
                code: 1,
                message: errors.join("\n"),
            }
            .into())
        }
        VolumeCmd::Prune(a) => {
            let warning = if a.all {
                "WARNING! This will remove all local volumes not used by at least one container."
            } else {
                "WARNING! This will remove anonymous local volumes not used by at least one container."
            };
            if !a.force && !confirm(warning)? {
                return Ok(0);
            }
            let mut filter = a.filter.clone();
            if a.all {
                filter.push("all=true".into());
            }
            let f = filters_query(&filter)?;
            let v = c
                .json(Method::POST, &format!("/volumes/prune?filters={f}"), None)
                .await?;
            crate::container::print_deleted("Deleted Volumes:", &v["VolumesDeleted"]);
            println!(
                "Total reclaimed space: {}",
                units::human_size(v["SpaceReclaimed"].as_f64().unwrap_or(0.0))
            );
            Ok(0)
        }
    }
}
