//! `berth image ...` and its top-level shortcuts (`images`, `pull`, `push`, `rmi`,
//! `tag`, `history`, `load`, `save`, `import`).

use std::io::{IsTerminal, Read};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::{ArgAction, Args, Subcommand};
use http::Method;
use serde_json::Value;

use crate::cli::confirm;
use crate::client::{enc, filters_query, Client};
use crate::container::FORMAT_HELP;
use crate::format::{self, image as fimage, misc, units};
use crate::pull::{self, PullOpts};

#[derive(Debug, Args, Clone)]
pub struct ImagesArgs {
    /// Show all images (default hides intermediate images)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Show digests
    #[arg(long)]
    pub digests: bool,
    /// Filter output based on conditions provided
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    #[arg(long, help = FORMAT_HELP)]
    pub format: Option<String>,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Only show image IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub repository: Option<String>,
}

#[derive(Debug, Args, Clone)]
pub struct PullArgs {
    /// Download all tagged images in the repository
    #[arg(short = 'a', long = "all-tags")]
    pub all_tags: bool,
    /// Set platform if server is multi-platform capable
    #[arg(long, env = "DOCKER_DEFAULT_PLATFORM")]
    pub platform: Option<String>,
    /// Suppress verbose output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Skip image verification (accepted for docker compatibility; berth does not sign)
    #[arg(long = "disable-content-trust", default_value_t = true, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub disable_content_trust: bool,
    #[arg(value_name = "NAME[:TAG|@DIGEST]")]
    pub image: String,
}

#[derive(Debug, Args, Clone)]
pub struct RmiArgs {
    /// Force removal of the image
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Do not delete untagged parents
    #[arg(long = "no-prune")]
    pub no_prune: bool,
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

#[derive(Debug, Args, Clone)]
pub struct HistoryArgs {
    #[arg(long, help = FORMAT_HELP)]
    pub format: Option<String>,
    /// Print sizes and dates in human readable format
    #[arg(long = "human", default_value_t = true, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub human: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Only show image IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    #[arg(value_name = "IMAGE")]
    pub image: String,
}

#[derive(Debug, Args, Clone)]
pub struct ImagePruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long = "filter")]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
}

#[derive(Debug, Args, Clone)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN
    #[arg(short = 'i', long)]
    pub input: Option<String>,
    /// Suppress the load output
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

#[derive(Debug, Args, Clone)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

#[derive(Debug, Args, Clone)]
pub struct ImportArgs {
    /// Apply Dockerfile instruction to the created image
    #[arg(short = 'c', long = "change")]
    pub change: Vec<String>,
    /// Set commit message for imported image
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    pub platform: Option<String>,
    #[arg(value_name = "file|URL|-")]
    pub file: String,
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub reference: Option<String>,
}

#[derive(Debug, Args, Clone)]
pub struct TagArgs {
    #[arg(value_name = "SOURCE_IMAGE[:TAG]")]
    pub source: String,
    #[arg(value_name = "TARGET_IMAGE[:TAG]")]
    pub target: String,
}

#[derive(Debug, Args, Clone)]
pub struct ImageInspectArgs {
    /// Format output using a custom template: 'json' or a Go template
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

/// `berth image ...`.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum ImageCmd {
    /// Show the history of an image
    #[command(override_usage = "berth image history [OPTIONS] IMAGE")]
    History(HistoryArgs),
    /// Import the contents from a tarball to create a filesystem image
    #[command(override_usage = "berth image import [OPTIONS] file|URL|- [REPOSITORY[:TAG]]")]
    Import(ImportArgs),
    /// Display detailed information on one or more images
    #[command(override_usage = "berth image inspect [OPTIONS] IMAGE [IMAGE...]")]
    Inspect(ImageInspectArgs),
    /// Load an image from a tar archive or STDIN
    #[command(override_usage = "berth image load [OPTIONS]")]
    Load(LoadArgs),
    /// List images
    #[command(
        visible_alias = "list",
        override_usage = "berth image ls [OPTIONS] [REPOSITORY[:TAG]]"
    )]
    Ls(ImagesArgs),
    /// Remove unused images
    #[command(override_usage = "berth image prune [OPTIONS]")]
    Prune(ImagePruneArgs),
    /// Download an image from a registry
    #[command(override_usage = "berth image pull [OPTIONS] NAME[:TAG|@DIGEST]")]
    Pull(PullArgs),
    /// Upload an image to a registry
    #[command(override_usage = "berth image push [OPTIONS] NAME[:TAG]")]
    Push(PullArgs),
    /// Remove one or more images
    #[command(
        visible_alias = "remove",
        override_usage = "berth image rm [OPTIONS] IMAGE [IMAGE...]"
    )]
    Rm(RmiArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    #[command(override_usage = "berth image save [OPTIONS] IMAGE [IMAGE...]")]
    Save(SaveArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    #[command(override_usage = "berth image tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]")]
    Tag(TagArgs),
}

pub async fn run(c: &Client, cmd: ImageCmd) -> Result<i32> {
    match cmd {
        ImageCmd::History(a) => history(c, a).await,
        ImageCmd::Import(a) => import(c, a).await,
        ImageCmd::Inspect(a) => inspect(c, a).await,
        ImageCmd::Load(a) => load(c, a).await,
        ImageCmd::Ls(a) => images(c, a).await,
        ImageCmd::Prune(a) => prune(c, a).await,
        ImageCmd::Pull(a) => pull_cmd(c, a).await,
        ImageCmd::Push(a) => push_cmd(c, a).await,
        ImageCmd::Rm(a) => rmi(c, a).await,
        ImageCmd::Save(a) => save(c, a).await,
        ImageCmd::Tag(a) => tag(c, a).await,
    }
}

pub async fn pull_cmd(c: &Client, a: PullArgs) -> Result<i32> {
    if a.all_tags && pull::split_ref(&a.image).1.is_some() {
        bail!("tag can't be used with --all-tags/-a");
    }
    pull::pull(
        c,
        &a.image,
        &PullOpts {
            quiet: a.quiet,
            platform: a.platform.clone(),
            to_stderr: false,
            all_tags: a.all_tags,
        },
    )
    .await?;
    Ok(0)
}

pub async fn push_cmd(c: &Client, a: PullArgs) -> Result<i32> {
    pull::push(c, &a.image, a.quiet, a.all_tags, a.platform.as_deref()).await?;
    Ok(0)
}

pub async fn images(c: &Client, a: ImagesArgs) -> Result<i32> {
    let source = match &a.format {
        Some(f) => f.clone(),
        None if !a.quiet => crate::config::ConfigFile::load()
            .ok()
            .and_then(|cfg| cfg.format("imagesFormat"))
            .unwrap_or_else(|| "table".into()),
        None => "table".into(),
    };
    let fmt = fimage::format_for(&source, a.quiet, a.digests);
    let mut filters = a.filter.clone();
    if let Some(r) = &a.repository {
        filters.push(format!("reference={r}"));
    }
    let f = filters_query(&filters)?;
    let mut path = format!("/images/json?all={}", a.all as u8);
    if !f.is_empty() {
        path.push_str(&format!("&filters={f}"));
    }
    let list = c.json(Method::GET, &path, None).await?;
    let digests = a.digests || fmt.contains("{{.Digest}}");
    let mut rows = vec![];
    for img in list.as_array().into_iter().flatten() {
        rows.extend(fimage::rows(img, !a.no_trunc, digests));
    }
    // `-q` prints each image once, however many names it has.
    if a.quiet {
        let mut seen = std::collections::HashSet::new();
        rows.retain(|r| {
            let id = crate::template::render("{{.ID}}", r).unwrap_or_default();
            seen.insert(id)
        });
    }
    print!("{}", format::write(&fmt, &fimage::header(), &rows)?);
    Ok(0)
}

pub async fn rmi(c: &Client, a: RmiArgs) -> Result<i32> {
    let mut errors = vec![];
    for img in &a.images {
        let path = format!(
            "/images/{}?force={}&noprune={}",
            enc(img),
            a.force,
            a.no_prune
        );
        match c.json(Method::DELETE, &path, None).await {
            Ok(v) => {
                for item in v.as_array().into_iter().flatten() {
                    if let Some(u) = item["Untagged"].as_str() {
                        println!("Untagged: {u}");
                    }
                    if let Some(d) = item["Deleted"].as_str() {
                        println!("Deleted: {d}");
                    }
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    if errors.is_empty() {
        return Ok(0);
    }
    Err(crate::cli::StatusError {
        code: 1,
        message: errors.join("\n"),
    }
    .into())
}

pub async fn history(c: &Client, a: HistoryArgs) -> Result<i32> {
    let v = c
        .json(
            Method::GET,
            &format!("/images/{}/history", enc(&a.image)),
            None,
        )
        .await?;
    let fmt = match a.format.as_deref() {
        None | Some("") | Some("table") => {
            if a.quiet {
                "{{.ID}}".to_string()
            } else if a.human {
                misc::HISTORY_TABLE.to_string()
            } else {
                misc::HISTORY_TABLE_NON_HUMAN.to_string()
            }
        }
        Some(f) => f.to_string(),
    };
    let rows: Vec<_> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| misc::history_row(h, !a.no_trunc, a.human))
        .collect();
    print!("{}", format::write(&fmt, &misc::history_header(), &rows)?);
    Ok(0)
}

pub async fn tag(c: &Client, a: TagArgs) -> Result<i32> {
    let (repo, tag) = fimage::split_tag(&a.target).unwrap_or((&a.target, "latest"));
    c.json(
        Method::POST,
        &format!(
            "/images/{}/tag?repo={}&tag={}",
            enc(&a.source),
            enc(repo),
            enc(tag)
        ),
        None,
    )
    .await?;
    Ok(0)
}

/// A file's contents, or stdin's for `-` (refusing a terminal).
fn read_input(path: Option<&str>) -> Result<Bytes> {
    let mut data = Vec::new();
    match path {
        None | Some("-") => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                bail!("requested load from stdin, but stdin is empty");
            }
            stdin
                .lock()
                .read_to_end(&mut data)
                .context("reading stdin")?;
        }
        Some(p) => {
            data =
                std::fs::read(p).with_context(|| format!("open {p}: no such file or directory"))?;
        }
    }
    Ok(Bytes::from(data))
}

pub async fn load(c: &Client, a: LoadArgs) -> Result<i32> {
    let data = read_input(a.input.as_deref())?;
    let quiet = a.quiet || !std::io::stdout().is_terminal();
    let resp = c
        .send_bytes(
            Method::POST,
            &format!("/images/load?quiet={}", quiet as u8),
            data,
            &[("Content-Type", "application/x-tar")],
        )
        .await?;
    pull::follow(resp.into_body(), a.quiet).await?;
    Ok(0)
}

pub async fn save(c: &Client, a: SaveArgs) -> Result<i32> {
    if a.output.as_deref().is_none_or(|o| o == "-") && std::io::stdout().is_terminal() {
        bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
    }
    let names: Vec<String> = a
        .images
        .iter()
        .map(|n| format!("names={}", enc(n)))
        .collect();
    let resp = c
        .send(
            Method::GET,
            &format!("/images/get?{}", names.join("&")),
            None,
            false,
        )
        .await?;
    crate::container::save_body(resp, a.output.as_deref()).await?;
    Ok(0)
}

pub async fn import(c: &Client, a: ImportArgs) -> Result<i32> {
    let data = read_input(Some(&a.file))?;
    let mut q = String::from("fromSrc=-");
    if let Some(r) = &a.reference {
        let (repo, tag) = fimage::split_tag(r).unwrap_or((r, ""));
        q.push_str(&format!("&repo={}&tag={}", enc(repo), enc(tag)));
    }
    for ch in &a.change {
        q.push_str(&format!("&changes={}", enc(ch)));
    }
    if let Some(m) = &a.message {
        q.push_str(&format!("&message={}", enc(m)));
    }
    if let Some(p) = &a.platform {
        q.push_str(&format!("&platform={}", enc(p)));
    }
    let resp = c
        .send_bytes(
            Method::POST,
            &format!("/images/create?{q}"),
            data,
            &[("Content-Type", "application/x-tar")],
        )
        .await?;
    let mut id = String::new();
    pull::each_line(resp.into_body(), |l| {
        let v: Value = serde_json::from_slice(l).unwrap_or(Value::Null);
        if let Some(e) = v["error"].as_str() {
            bail!("{e}");
        }
        if let Some(s) = v["status"].as_str() {
            id = s.to_string();
        }
        Ok(())
    })
    .await?;
    println!("{id}");
    Ok(0)
}

pub async fn inspect(c: &Client, a: ImageInspectArgs) -> Result<i32> {
    let mut found = vec![];
    let mut errors = vec![];
    for n in &a.images {
        match c
            .json_ordered(Method::GET, &format!("/images/{}/json", enc(n)))
            .await
        {
            Ok(v) => found.push(v),
            Err(e) => errors.push(e.to_string()),
        }
    }
    crate::container::print_inspect(a.format.as_deref(), found, errors).await
}

/// An image prune's `ImagesDeleted`, as docker prints it (`image prune`, `system
/// prune`).
pub fn print_deleted_images(deleted: &Value) {
    let deleted: Vec<&Value> = deleted.as_array().into_iter().flatten().collect();
    if deleted.is_empty() {
        return;
    }
    println!("Deleted Images:");
    for d in deleted {
        if let Some(u) = d["Untagged"].as_str() {
            println!("untagged: {u}");
        }
        if let Some(x) = d["Deleted"].as_str() {
            println!("deleted: {x}");
        }
    }
    println!();
}

pub async fn prune(c: &Client, a: ImagePruneArgs) -> Result<i32> {
    let what = if a.all {
        "WARNING! This will remove all images without at least one container associated to them."
    } else {
        "WARNING! This will remove all dangling images."
    };
    if !a.force && !confirm(what)? {
        return Ok(0);
    }
    let mut filter = a.filter.clone();
    if a.all {
        filter.push("dangling=false".into());
    }
    let f = filters_query(&filter)?;
    let v = c
        .json(Method::POST, &format!("/images/prune?filters={f}"), None)
        .await?;
    print_deleted_images(&v["ImagesDeleted"]);
    println!(
        "Total reclaimed space: {}",
        units::human_size(v["SpaceReclaimed"].as_f64().unwrap_or(0.0))
    );
    Ok(0)
}
