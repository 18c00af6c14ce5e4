//! `berth builder ...`: builds (`builder build`, the same as `berth build`, in
//! [`crate::build`]) and the build cache (`POST /build/prune`).

use anyhow::Result;
use clap::{Args, Subcommand};
use http::Method;

use crate::cli::ask;
use crate::client::{filters_query, Client};
use crate::format::units;

#[derive(Debug, Args, Clone)]
pub struct BuilderPruneArgs {
    /// Remove all unused build cache, not just dangling ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Provide filter values (e.g. "until=24h")
    #[arg(long = "filter")]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Amount of disk space to keep for cache
    #[arg(long = "keep-storage", value_parser = crate::container::opts::parse_ram)]
    pub keep_storage: Option<i64>,
}

/// `berth builder ...`.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum BuilderCmd {
    /// Build an image from a Dockerfile
    #[command(override_usage = "berth builder build [OPTIONS] PATH | URL | -")]
    Build(Box<crate::build::BuildOpts>),
    /// Remove build cache
    #[command(override_usage = "berth builder prune")]
    Prune(BuilderPruneArgs),
}

pub async fn run(c: &Client, cmd: BuilderCmd) -> Result<i32> {
    match cmd {
        BuilderCmd::Build(a) => crate::build::build(c, &a).await,
        BuilderCmd::Prune(a) => {
            let warning = if a.all {
                "WARNING! This will remove all build cache."
            } else {
                "WARNING! This will remove all dangling build cache."
            };
            if !a.force
                && !ask(&format!(
                    "{warning} Are you sure you want to continue? [y/N] "
                ))?
            {
                return Ok(0);
            }
            let mut q = vec![format!("all={}", a.all as u8)];
            if let Some(k) = a.keep_storage {
                q.push(format!("keep-storage={k}"));
            }
            let f = filters_query(&a.filter)?;
            if !f.is_empty() {
                q.push(format!("filters={f}"));
            }
            let v = c
                .json(Method::POST, &format!("/build/prune?{}", q.join("&")), None)
                .await?;
            crate::container::print_deleted("Deleted build cache objects:", &v["CachesDeleted"]);
            println!(
                "Total reclaimed space: {}",
                units::human_size(v["SpaceReclaimed"].as_f64().unwrap_or(0.0))
            );
            Ok(0)
        }
    }
}
