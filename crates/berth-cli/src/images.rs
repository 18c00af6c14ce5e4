//! Image, volume, events and disk-usage verbs: `images`, `pull`, `push`, `load`,
//! `save`, `import`, `tag`, `rmi`, `history`, `commit`, `events`, `system df`,
//! `image ...` and `volume ...`.
//!
//! pull, push and load read dockerd's JSON progress stream; on a terminal each layer
//! gets its own progress bar, otherwise each layer's status changes are printed as
//! plain `id: status` lines (what a log file wants).

use std::collections::HashMap;
use std::io::{IsTerminal, Read, Write};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::{Args, Subcommand};
use http::Method;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};

use crate::client::{enc, Client};
use crate::format::{ago, human_size, render, table};

/// `images` / `image ls`.
#[derive(Debug, Args)]
pub struct ImagesOpts {
    /// Only show image ids.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Show all images (intermediate ones too).
    #[arg(short = 'a', long)]
    all: bool,
    /// Don't truncate ids.
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Filter (dangling=, label=, reference=, before=, since=).
    #[arg(short = 'f', long = "filter")]
    filter: Vec<String>,
    /// `json` or a Go-style template.
    #[arg(long)]
    format: Option<String>,
    /// Only images of this repository (and tag).
    repository: Option<String>,
}

/// `rmi` / `image rm`.
#[derive(Debug, Args)]
pub struct RmiOpts {
    #[arg(short = 'f', long)]
    force: bool,
    #[arg(long = "no-prune")]
    no_prune: bool,
    #[arg(required = true)]
    images: Vec<String>,
}

/// `history` / `image history`.
#[derive(Debug, Args)]
pub struct HistoryOpts {
    #[arg(short = 'q', long)]
    quiet: bool,
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Sizes and dates for humans (-H is the host, as in docker's global flags).
    #[arg(long = "human", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    human: bool,
    #[arg(long)]
    format: Option<String>,
    image: String,
}

/// `image prune`.
#[derive(Debug, Args)]
pub struct ImagePruneOpts {
    /// Remove all unused images, not only dangling ones.
    #[arg(short = 'a', long)]
    all: bool,
    /// Do not ask for confirmation.
    #[arg(short = 'f', long)]
    force: bool,
    #[arg(long = "filter")]
    filter: Vec<String>,
}

/// `pull` / `push`.
#[derive(Debug, Args)]
pub struct PullOpts {
    /// No progress output.
    #[arg(short = 'q', long)]
    quiet: bool,
    image: String,
}

/// `load`.
#[derive(Debug, Args)]
pub struct LoadOpts {
    /// Read from this tar file instead of stdin.
    #[arg(short = 'i', long)]
    input: Option<String>,
    #[arg(short = 'q', long)]
    quiet: bool,
}

/// `save`.
#[derive(Debug, Args)]
pub struct SaveOpts {
    /// Write to this file instead of stdout.
    #[arg(short = 'o', long)]
    output: Option<String>,
    #[arg(required = true)]
    images: Vec<String>,
}

/// `import`.
#[derive(Debug, Args)]
pub struct ImportOpts {
    /// A Dockerfile instruction for the image (CMD, ENTRYPOINT, ENV, ...).
    #[arg(short = 'c', long = "change")]
    change: Vec<String>,
    #[arg(short = 'm', long)]
    message: Option<String>,
    /// A tar file, or `-` for stdin.
    file: String,
    /// REPOSITORY[:TAG] for the new image.
    reference: Option<String>,
}

/// `tag`.
#[derive(Debug, Args)]
pub struct TagOpts {
    source: String,
    target: String,
}

/// The image, volume, event and disk-usage verbs (flattened into the top level).
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// List images.
    Images(ImagesOpts),
    /// Download an image from a registry.
    Pull(PullOpts),
    /// Upload an image to a registry.
    Push(PullOpts),
    /// Load images from a tar archive (docker save format).
    Load(LoadOpts),
    /// Save images to a tar archive.
    Save(SaveOpts),
    /// Import a root filesystem tarball as an image.
    Import(ImportOpts),
    /// Give an image another name.
    Tag(TagOpts),
    /// Remove images.
    Rmi(RmiOpts),
    /// Show an image's layers.
    History(HistoryOpts),
    /// Make an image from a container's changes.
    Commit {
        #[arg(short = 'a', long)]
        author: Option<String>,
        #[arg(short = 'm', long)]
        message: Option<String>,
        #[arg(short = 'c', long = "change")]
        change: Vec<String>,
        /// Pause the container while committing.
        #[arg(short = 'p', long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
        pause: bool,
        container: String,
        reference: Option<String>,
    },
    /// Stream the engine's events.
    Events {
        /// Events from this time on (unix seconds, RFC 3339, or a duration ago: 10m).
        #[arg(long)]
        since: Option<String>,
        /// Stop at this time.
        #[arg(long)]
        until: Option<String>,
        #[arg(short = 'f', long = "filter")]
        filter: Vec<String>,
        #[arg(long)]
        format: Option<String>,
    },
    /// Manage images.
    #[command(subcommand)]
    Image(ImageSub),
    /// Manage volumes.
    #[command(subcommand)]
    Volume(VolumeSub),
    /// Manage the engine.
    #[command(subcommand)]
    System(SystemSub),
}

/// `image ...`.
#[derive(Debug, Subcommand)]
pub enum ImageSub {
    /// List images.
    #[command(alias = "list")]
    Ls(ImagesOpts),
    /// Remove images.
    #[command(alias = "remove")]
    Rm(RmiOpts),
    /// Remove unused images.
    Prune(ImagePruneOpts),
    /// Show an image's layers.
    History(HistoryOpts),
    /// Download an image.
    Pull(PullOpts),
    /// Upload an image.
    Push(PullOpts),
    /// Load images from a tar archive.
    Load(LoadOpts),
    /// Save images to a tar archive.
    Save(SaveOpts),
    /// Import a root filesystem tarball.
    Import(ImportOpts),
    /// Give an image another name.
    Tag(TagOpts),
    /// Show images' details.
    Inspect {
        #[arg(short = 'f', long)]
        format: Option<String>,
        #[arg(required = true)]
        images: Vec<String>,
    },
}

/// `volume ...`.
#[derive(Debug, Subcommand)]
pub enum VolumeSub {
    /// Create a volume.
    Create {
        #[arg(long)]
        name: Option<String>,
        #[arg(short = 'd', long, default_value = "local")]
        driver: String,
        #[arg(short = 'o', long = "opt")]
        opt: Vec<String>,
        #[arg(short = 'l', long = "label")]
        label: Vec<String>,
        volume: Option<String>,
    },
    /// List volumes.
    #[command(alias = "list")]
    Ls {
        #[arg(short = 'q', long)]
        quiet: bool,
        #[arg(short = 'f', long = "filter")]
        filter: Vec<String>,
        #[arg(long)]
        format: Option<String>,
    },
    /// Show volumes' details.
    Inspect {
        #[arg(short = 'f', long)]
        format: Option<String>,
        #[arg(required = true)]
        volumes: Vec<String>,
    },
    /// Remove volumes.
    #[command(alias = "remove")]
    Rm {
        #[arg(short = 'f', long)]
        force: bool,
        #[arg(required = true)]
        volumes: Vec<String>,
    },
    /// Remove unused volumes.
    Prune {
        /// Named volumes too, not only anonymous ones.
        #[arg(short = 'a', long)]
        all: bool,
        #[arg(short = 'f', long)]
        force: bool,
        #[arg(long = "filter")]
        filter: Vec<String>,
    },
}

/// `system ...`.
#[derive(Debug, Subcommand)]
pub enum SystemSub {
    /// Show disk usage.
    Df {
        #[arg(short = 'v', long)]
        verbose: bool,
        #[arg(long)]
        format: Option<String>,
    },
}

/// `key=value` filters as the API's `filters` JSON, url-encoded (empty when none).
fn filters_param(filters: &[String]) -> Result<String> {
    let mut m: serde_json::Map<String, Value> = serde_json::Map::new();
    for f in filters {
        let (k, v) = f
            .split_once('=')
            .with_context(|| format!("bad filter {f:?}: expected key=value"))?;
        let e = m.entry(k.to_string()).or_insert_with(|| json!([]));
        if let Some(a) = e.as_array_mut() {
            a.push(json!(v));
        }
    }
    if m.is_empty() {
        return Ok(String::new());
    }
    Ok(enc(&Value::Object(m).to_string()))
}

/// Splits `name[:tag]` (a registry port is not a tag).
fn split_ref(r: &str) -> (&str, &str) {
    match r.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, t),
        _ => (r, ""),
    }
}

fn short_id(id: &str, no_trunc: bool) -> String {
    if no_trunc {
        id.to_string()
    } else {
        id.trim_start_matches("sha256:").chars().take(12).collect()
    }
}

fn print_formatted(format: &str, v: &Value) -> Result<()> {
    if format == "json" {
        println!("{v}");
    } else {
        println!("{}", render(format, v)?);
    }
    Ok(())
}

/// Reads a whole streamed answer body, passing each complete line to `f`.
async fn each_line(mut body: Incoming, mut f: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
    let mut buf: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.context("reading berthd's answer")?;
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                let line = line.trim_ascii();
                if !line.is_empty() {
                    f(line)?;
                }
            }
        }
    }
    if !buf.trim_ascii().is_empty() {
        f(buf.trim_ascii())?;
    }
    Ok(())
}

/// Shows a JSON progress stream: bars on a terminal, status lines otherwise. Fails
/// with the stream's `error` if it has one.
pub struct Progress {
    quiet: bool,
    multi: Option<MultiProgress>,
    bars: HashMap<String, ProgressBar>,
    last: HashMap<String, String>,
    /// Collected `aux` objects (push's digest).
    pub aux: Vec<Value>,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        let multi = (!quiet && std::io::stdout().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stdout()));
        Progress {
            quiet,
            multi,
            bars: HashMap::new(),
            last: HashMap::new(),
            aux: vec![],
        }
    }

    fn bar(&mut self, id: &str) -> Option<&ProgressBar> {
        let multi = self.multi.as_ref()?;
        if !self.bars.contains_key(id) {
            let style = ProgressStyle::with_template(
                "{prefix}: {msg:<18} {bar:40.cyan/blue} {bytes:>9}/{total_bytes:9}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            let b = multi.add(ProgressBar::new(0).with_style(style));
            b.set_prefix(id.to_string());
            self.bars.insert(id.to_string(), b);
        }
        self.bars.get(id)
    }

    /// Handles one line of the stream.
    pub fn line(&mut self, raw: &[u8]) -> Result<()> {
        let v: Value = serde_json::from_slice(raw).unwrap_or(Value::Null);
        if let Some(e) = v["error"].as_str() {
            self.finish();
            bail!("{e}");
        }
        if !v["aux"].is_null() {
            self.aux.push(v["aux"].clone());
        }
        if let Some(s) = v["stream"].as_str() {
            if !self.quiet || s.starts_with("Loaded image") {
                self.println(s.trim_end());
            }
            return Ok(());
        }
        let Some(status) = v["status"].as_str() else {
            return Ok(());
        };
        if self.quiet {
            return Ok(());
        }
        match v["id"].as_str() {
            Some(id) if !v["progressDetail"].is_null() => {
                let (cur, total) = (
                    v["progressDetail"]["current"].as_u64(),
                    v["progressDetail"]["total"].as_u64(),
                );
                if let Some(b) = self.bar(id) {
                    b.set_message(status.to_string());
                    if let Some(t) = total {
                        b.set_length(t);
                    }
                    if let Some(c) = cur {
                        b.set_position(c);
                    }
                    if matches!(
                        status,
                        "Pull complete" | "Already exists" | "Pushed" | "Layer already exists"
                    ) {
                        let len = b.length().unwrap_or(0);
                        b.set_position(len);
                    }
                } else if self.last.get(id).map(String::as_str) != Some(status) {
                    println!("{id}: {status}");
                    self.last.insert(id.to_string(), status.to_string());
                }
            }
            Some(id) => self.println(&format!("{id}: {status}")),
            None => self.println(status),
        }
        Ok(())
    }

    fn println(&self, s: &str) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(s);
            }
            None => println!("{s}"),
        }
    }

    /// Leaves the bars drawn where they are.
    pub fn finish(&mut self) {
        for b in self.bars.values() {
            b.abandon();
        }
    }
}

/// Reads a progress answer to its end.
async fn follow(body: Incoming, quiet: bool) -> Result<Progress> {
    let mut p = Progress::new(quiet);
    each_line(body, |l| p.line(l)).await?;
    p.finish();
    Ok(p)
}

/// `X-Registry-Auth` for anonymous access (the docker CLI sends `{}` too).
const ANONYMOUS_AUTH: &str = "e30=";

/// `pull`.
pub async fn pull(c: &Client, o: &PullOpts) -> Result<()> {
    let (name, tag) = split_ref(&o.image);
    let (name, tag) = match name.split_once('@') {
        Some((n, d)) => (n, d),
        None => (name, if tag.is_empty() { "latest" } else { tag }),
    };
    let resp = c
        .send_bytes(
            Method::POST,
            &format!("/images/create?fromImage={}&tag={}", enc(name), enc(tag)),
            Bytes::new(),
            &[("X-Registry-Auth", ANONYMOUS_AUTH)],
        )
        .await?;
    follow(resp.into_body(), o.quiet).await?;
    let shown = if o.image.contains('@') || o.image.contains(':') {
        o.image.clone()
    } else {
        format!("{}:latest", o.image)
    };
    println!("{shown}");
    Ok(())
}

async fn push(c: &Client, o: &PullOpts) -> Result<()> {
    let (name, tag) = split_ref(&o.image);
    let tag = if tag.is_empty() { "latest" } else { tag };
    let resp = c
        .send_bytes(
            Method::POST,
            &format!("/images/{}/push?tag={}", enc(name), enc(tag)),
            Bytes::new(),
            &[("X-Registry-Auth", ANONYMOUS_AUTH)],
        )
        .await?;
    follow(resp.into_body(), o.quiet).await?;
    Ok(())
}

/// A file's contents, or stdin's for `-`.
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
            data = std::fs::read(p).with_context(|| format!("reading {p}"))?;
        }
    }
    Ok(Bytes::from(data))
}

async fn load(c: &Client, o: &LoadOpts) -> Result<()> {
    let data = read_input(o.input.as_deref())?;
    let quiet = o.quiet || !std::io::stdout().is_terminal();
    let resp = c
        .send_bytes(
            Method::POST,
            &format!("/images/load?quiet={}", if quiet { 1 } else { 0 }),
            data,
            &[("Content-Type", "application/x-tar")],
        )
        .await?;
    follow(resp.into_body(), o.quiet).await?;
    Ok(())
}

async fn save(c: &Client, o: &SaveOpts) -> Result<()> {
    let names: Vec<String> = o
        .images
        .iter()
        .map(|n| format!("names={}", enc(n)))
        .collect();
    let mut out: Box<dyn Write> = match o.output.as_deref() {
        Some(p) if p != "-" => {
            Box::new(std::fs::File::create(p).with_context(|| format!("creating {p}"))?)
        }
        _ => {
            if std::io::stdout().is_terminal() {
                bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
            }
            Box::new(std::io::stdout())
        }
    };
    let resp = c
        .send(
            Method::GET,
            &format!("/images/get?{}", names.join("&")),
            None,
            false,
        )
        .await?;
    let mut body = resp.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.context("reading the archive")?;
        if let Ok(data) = frame.into_data() {
            out.write_all(&data).context("writing the archive")?;
        }
    }
    out.flush().context("writing the archive")?;
    Ok(())
}

async fn import(c: &Client, o: &ImportOpts) -> Result<()> {
    let data = read_input(Some(&o.file))?;
    let mut q = String::from("fromSrc=-");
    if let Some(r) = &o.reference {
        let (repo, tag) = split_ref(r);
        q.push_str(&format!("&repo={}&tag={}", enc(repo), enc(tag)));
    }
    for ch in &o.change {
        q.push_str(&format!("&changes={}", enc(ch)));
    }
    if let Some(m) = &o.message {
        q.push_str(&format!("&message={}", enc(m)));
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
    each_line(resp.into_body(), |l| {
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
    Ok(())
}

async fn images(c: &Client, o: &ImagesOpts) -> Result<()> {
    let mut filters = o.filter.clone();
    if let Some(r) = &o.repository {
        filters.push(format!("reference={r}"));
    }
    let f = filters_param(&filters)?;
    let mut path = format!("/images/json?all={}", if o.all { 1 } else { 0 });
    if !f.is_empty() {
        path.push_str(&format!("&filters={f}"));
    }
    let list = c.json(Method::GET, &path, None).await?;
    let items = list.as_array().cloned().unwrap_or_default();
    let now = chrono::Utc::now().timestamp();
    let mut rows = vec![];
    for x in &items {
        let id = x["Id"].as_str().unwrap_or("");
        if o.quiet {
            println!("{}", short_id(id, o.no_trunc));
            continue;
        }
        if let Some(f) = &o.format {
            print_formatted(f, x)?;
            continue;
        }
        let tags: Vec<String> = x["RepoTags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect();
        let tags = if tags.is_empty() {
            vec!["<none>:<none>".to_string()]
        } else {
            tags
        };
        for t in tags {
            let (repo, tag) = split_ref(&t);
            rows.push(vec![
                repo.to_string(),
                if tag.is_empty() { "<none>" } else { tag }.to_string(),
                short_id(id, o.no_trunc),
                ago(now - x["Created"].as_i64().unwrap_or(now)),
                human_size(x["Size"].as_i64().unwrap_or(0)),
            ]);
        }
    }
    if !o.quiet && o.format.is_none() {
        print!(
            "{}",
            table(&["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], &rows)
        );
    }
    Ok(())
}

async fn rmi(c: &Client, o: &RmiOpts) -> Result<i32> {
    let mut code = 0;
    for img in &o.images {
        let path = format!(
            "/images/{}?force={}&noprune={}",
            enc(img),
            o.force,
            o.no_prune
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
            Err(e) => {
                eprintln!("{e}");
                code = 1;
            }
        }
    }
    Ok(code)
}

async fn history(c: &Client, o: &HistoryOpts) -> Result<()> {
    let v = c
        .json(
            Method::GET,
            &format!("/images/{}/history", enc(&o.image)),
            None,
        )
        .await?;
    let now = chrono::Utc::now().timestamp();
    let mut rows = vec![];
    for x in v.as_array().into_iter().flatten() {
        let id = x["Id"].as_str().unwrap_or("");
        let shown = if id == "<missing>" {
            id.to_string()
        } else {
            short_id(id, o.no_trunc)
        };
        if o.quiet {
            println!("{shown}");
            continue;
        }
        if let Some(f) = &o.format {
            print_formatted(f, x)?;
            continue;
        }
        let mut by = x["CreatedBy"].as_str().unwrap_or("").to_string();
        if !o.no_trunc && by.chars().count() > 45 {
            by = format!("{}…", by.chars().take(44).collect::<String>());
        }
        let created = x["Created"].as_i64().unwrap_or(now);
        rows.push(vec![
            shown,
            if o.human {
                ago(now - created)
            } else {
                created.to_string()
            },
            by,
            if o.human {
                human_size(x["Size"].as_i64().unwrap_or(0))
            } else {
                x["Size"].to_string()
            },
            x["Comment"].as_str().unwrap_or("").to_string(),
        ]);
    }
    if !o.quiet && o.format.is_none() {
        print!(
            "{}",
            table(
                &["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
                &rows
            )
        );
    }
    Ok(())
}

async fn tag(c: &Client, o: &TagOpts) -> Result<()> {
    let (repo, tag) = split_ref(&o.target);
    c.json(
        Method::POST,
        &format!(
            "/images/{}/tag?repo={}&tag={}",
            enc(&o.source),
            enc(repo),
            enc(if tag.is_empty() { "latest" } else { tag })
        ),
        None,
    )
    .await?;
    Ok(())
}

/// A `--since`/`--until` value as the API's `seconds.nanoseconds`: unix seconds stay
/// as they are, RFC 3339 times are converted, durations (`10m`, `1h30m`) count back
/// from now.
pub fn api_time(s: &str, now: chrono::DateTime<chrono::Utc>) -> Result<String> {
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') && !s.is_empty() {
        return Ok(s.to_string());
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(format!(
            "{}.{:09}",
            t.timestamp(),
            t.timestamp_subsec_nanos()
        ));
    }
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    while let Some(ch) = chars.next() {
        if ch.is_ascii_digit() || ch == '.' {
            num.push(ch);
            continue;
        }
        let mut unit = ch.to_string();
        if ch == 'm' && chars.peek() == Some(&'s') {
            chars.next();
            unit = "ms".into();
        }
        let n: f64 = num
            .parse()
            .with_context(|| format!("bad time {s:?}: expected a timestamp or a duration"))?;
        num.clear();
        total += n * match unit.as_str() {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => bail!("bad time {s:?}: expected a timestamp or a duration"),
        };
    }
    if !num.is_empty() {
        bail!("bad time {s:?}: a duration needs a unit (s, m, h)");
    }
    let t = now - chrono::Duration::milliseconds((total * 1000.0) as i64);
    Ok(format!(
        "{}.{:09}",
        t.timestamp(),
        t.timestamp_subsec_nanos()
    ))
}

async fn events(
    c: &Client,
    since: Option<&str>,
    until: Option<&str>,
    filter: &[String],
    format: Option<&str>,
) -> Result<()> {
    let now = chrono::Utc::now();
    let mut q = vec![];
    if let Some(s) = since {
        q.push(format!("since={}", api_time(s, now)?));
    }
    if let Some(u) = until {
        q.push(format!("until={}", api_time(u, now)?));
    }
    let f = filters_param(filter)?;
    if !f.is_empty() {
        q.push(format!("filters={f}"));
    }
    let resp = c
        .send(
            Method::GET,
            &format!("/events?{}", q.join("&")),
            None,
            false,
        )
        .await?;
    each_line(resp.into_body(), |l| {
        let v: Value = serde_json::from_slice(l).unwrap_or(Value::Null);
        if let Some(f) = format {
            print_formatted(f, &v)?;
        } else {
            let nanos = v["timeNano"].as_i64().unwrap_or(0);
            let t = chrono::DateTime::from_timestamp(
                nanos.div_euclid(1_000_000_000),
                u32::try_from(nanos.rem_euclid(1_000_000_000)).unwrap_or(0),
            )
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
            .unwrap_or_default();
            let mut attrs: Vec<String> = v["Actor"]["Attributes"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, x)| format!("{k}={}", x.as_str().unwrap_or("")))
                .collect();
            attrs.sort();
            println!(
                "{t} {} {} {} ({})",
                v["Type"].as_str().unwrap_or(""),
                v["Action"].as_str().unwrap_or(""),
                v["Actor"]["ID"].as_str().unwrap_or(""),
                attrs.join(", ")
            );
        }
        std::io::stdout().flush().ok();
        Ok(())
    })
    .await
}

async fn commit(
    c: &Client,
    container: &str,
    reference: Option<&str>,
    author: Option<&str>,
    message: Option<&str>,
    change: &[String],
    pause: bool,
) -> Result<()> {
    let mut q = format!("container={}&pause={pause}", enc(container));
    if let Some(r) = reference {
        let (repo, tag) = split_ref(r);
        q.push_str(&format!("&repo={}&tag={}", enc(repo), enc(tag)));
    }
    if let Some(a) = author {
        q.push_str(&format!("&author={}", enc(a)));
    }
    if let Some(m) = message {
        q.push_str(&format!("&comment={}", enc(m)));
    }
    for ch in change {
        q.push_str(&format!("&changes={}", enc(ch)));
    }
    let v = c.json(Method::POST, &format!("/commit?{q}"), None).await?;
    println!("{}", v["Id"].as_str().unwrap_or(""));
    Ok(())
}

async fn inspect_each(
    c: &Client,
    kind: &str,
    suffix: &str,
    names: &[String],
    format: Option<&str>,
) -> Result<i32> {
    let mut out = vec![];
    let mut code = 0;
    for n in names {
        match c
            .json(Method::GET, &format!("/{kind}/{}{suffix}", enc(n)), None)
            .await
        {
            Ok(v) => out.push(v),
            Err(e) => {
                eprintln!("{e}");
                code = 1;
            }
        }
    }
    match format {
        Some(f) => {
            for v in &out {
                println!("{}", render(f, v)?);
            }
        }
        None => println!("{}", serde_json::to_string_pretty(&Value::Array(out))?),
    }
    Ok(code)
}

async fn volume(c: &Client, cmd: VolumeSub) -> Result<i32> {
    match cmd {
        VolumeSub::Create {
            name,
            driver,
            opt,
            label,
            volume,
        } => {
            let kv = |items: &[String]| -> serde_json::Map<String, Value> {
                items
                    .iter()
                    .map(|s| {
                        let (k, v) = s.split_once('=').unwrap_or((s, ""));
                        (k.to_string(), json!(v))
                    })
                    .collect()
            };
            let body = json!({
                "Name": name.or(volume).unwrap_or_default(),
                "Driver": driver,
                "DriverOpts": kv(&opt),
                "Labels": kv(&label),
            });
            let v = c.json(Method::POST, "/volumes/create", Some(body)).await?;
            println!("{}", v["Name"].as_str().unwrap_or(""));
        }
        VolumeSub::Ls {
            quiet,
            filter,
            format,
        } => {
            let f = filters_param(&filter)?;
            let path = if f.is_empty() {
                "/volumes".to_string()
            } else {
                format!("/volumes?filters={f}")
            };
            let v = c.json(Method::GET, &path, None).await?;
            let mut rows = vec![];
            for x in v["Volumes"].as_array().into_iter().flatten() {
                let name = x["Name"].as_str().unwrap_or("").to_string();
                if quiet {
                    println!("{name}");
                } else if let Some(f) = &format {
                    print_formatted(f, x)?;
                } else {
                    rows.push(vec![x["Driver"].as_str().unwrap_or("").to_string(), name]);
                }
            }
            if !quiet && format.is_none() {
                print!("{}", table(&["DRIVER", "VOLUME NAME"], &rows));
            }
        }
        VolumeSub::Inspect { format, volumes } => {
            return inspect_each(c, "volumes", "", &volumes, format.as_deref()).await;
        }
        VolumeSub::Rm { force, volumes } => {
            let mut code = 0;
            for v in &volumes {
                match c
                    .json(
                        Method::DELETE,
                        &format!("/volumes/{}?force={force}", enc(v)),
                        None,
                    )
                    .await
                {
                    Ok(_) => println!("{v}"),
                    Err(e) => {
                        eprintln!("{e}");
                        code = 1;
                    }
                }
            }
            return Ok(code);
        }
        VolumeSub::Prune { all, force, filter } => {
            if !force && !confirm("This will remove all unused local volumes.")? {
                return Ok(0);
            }
            let mut filter = filter;
            if all {
                filter.push("all=true".into());
            }
            let f = filters_param(&filter)?;
            let v = c
                .json(Method::POST, &format!("/volumes/prune?filters={f}"), None)
                .await?;
            let deleted: Vec<&str> = v["VolumesDeleted"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if !deleted.is_empty() {
                println!("Deleted Volumes:");
                for d in deleted {
                    println!("{d}");
                }
                println!();
            }
            println!(
                "Total reclaimed space: {}",
                human_size(v["SpaceReclaimed"].as_i64().unwrap_or(0))
            );
        }
    }
    Ok(0)
}

/// Asks on the terminal; without one, says no (use -f).
fn confirm(what: &str) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("{what} Not on a terminal: use -f to go ahead without confirmation");
    }
    print!("WARNING! {what}\nAre you sure you want to continue? [y/N] ");
    std::io::stdout().flush().ok();
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

async fn image_prune(c: &Client, o: &ImagePruneOpts) -> Result<()> {
    let what = if o.all {
        "This will remove all images without at least one container associated to them."
    } else {
        "This will remove all dangling images."
    };
    if !o.force && !confirm(what)? {
        return Ok(());
    }
    let mut filter = o.filter.clone();
    if o.all {
        filter.push("dangling=false".into());
    }
    let f = filters_param(&filter)?;
    let v = c
        .json(Method::POST, &format!("/images/prune?filters={f}"), None)
        .await?;
    let deleted: Vec<&Value> = v["ImagesDeleted"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    if !deleted.is_empty() {
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
    println!(
        "Total reclaimed space: {}",
        human_size(v["SpaceReclaimed"].as_i64().unwrap_or(0))
    );
    Ok(())
}

async fn system_df(c: &Client, verbose: bool, format: Option<&str>) -> Result<()> {
    let v = c.json(Method::GET, "/system/df", None).await?;
    let images = v["Images"].as_array().cloned().unwrap_or_default();
    let containers = v["Containers"].as_array().cloned().unwrap_or_default();
    let volumes = v["Volumes"].as_array().cloned().unwrap_or_default();
    let build = v["BuildCache"].as_array().cloned().unwrap_or_default();
    let sum = |items: &[Value], f: &dyn Fn(&Value) -> i64| items.iter().map(f).sum::<i64>();
    let img_size = sum(&images, &|x| x["Size"].as_i64().unwrap_or(0));
    let img_active = images
        .iter()
        .filter(|x| x["Containers"].as_i64().unwrap_or(0) > 0)
        .count();
    let img_reclaim = sum(&images, &|x| {
        if x["Containers"].as_i64().unwrap_or(0) > 0 {
            0
        } else {
            x["Size"].as_i64().unwrap_or(0)
        }
    });
    let ctr_size = sum(&containers, &|x| x["SizeRw"].as_i64().unwrap_or(0));
    let ctr_active = containers
        .iter()
        .filter(|x| x["State"].as_str() == Some("running"))
        .count();
    let vol_size = sum(&volumes, &|x| x["UsageData"]["Size"].as_i64().unwrap_or(0));
    let vol_active = volumes
        .iter()
        .filter(|x| x["UsageData"]["RefCount"].as_i64().unwrap_or(0) > 0)
        .count();
    let vol_reclaim = sum(&volumes, &|x| {
        if x["UsageData"]["RefCount"].as_i64().unwrap_or(0) > 0 {
            0
        } else {
            x["UsageData"]["Size"].as_i64().unwrap_or(0)
        }
    });
    let pct = |part: i64, whole: i64| {
        if whole > 0 {
            format!("{} ({}%)", human_size(part), part * 100 / whole)
        } else {
            human_size(part)
        }
    };
    let rows = vec![
        (
            "Images",
            images.len(),
            img_active,
            img_size,
            pct(img_reclaim, img_size),
        ),
        (
            "Containers",
            containers.len(),
            ctr_active,
            ctr_size,
            human_size(ctr_size),
        ),
        (
            "Local Volumes",
            volumes.len(),
            vol_active,
            vol_size,
            pct(vol_reclaim, vol_size),
        ),
        ("Build Cache", build.len(), 0, 0, human_size(0)),
    ];
    if let Some(f) = format {
        for (t, total, active, size, reclaim) in &rows {
            let row = json!({"Type": t, "TotalCount": total, "Active": active,
                "Size": human_size(*size), "Reclaimable": reclaim});
            print_formatted(f, &row)?;
        }
        return Ok(());
    }
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|(t, total, active, size, reclaim)| {
            vec![
                t.to_string(),
                total.to_string(),
                active.to_string(),
                human_size(*size),
                reclaim.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
            &table_rows
        )
    );
    if verbose {
        println!("\nImages space usage:\n");
        let now = chrono::Utc::now().timestamp();
        let rows: Vec<Vec<String>> = images
            .iter()
            .map(|x| {
                let t = x["RepoTags"][0].as_str().unwrap_or("<none>:<none>");
                let (r, tg) = split_ref(t);
                vec![
                    r.to_string(),
                    tg.to_string(),
                    short_id(x["Id"].as_str().unwrap_or(""), false),
                    ago(now - x["Created"].as_i64().unwrap_or(now)),
                    human_size(x["Size"].as_i64().unwrap_or(0)),
                    x["Containers"].to_string(),
                ]
            })
            .collect();
        print!(
            "{}",
            table(
                &[
                    "REPOSITORY",
                    "TAG",
                    "IMAGE ID",
                    "CREATED",
                    "SIZE",
                    "CONTAINERS"
                ],
                &rows
            )
        );
        println!("\nLocal Volumes space usage:\n");
        let rows: Vec<Vec<String>> = volumes
            .iter()
            .map(|x| {
                vec![
                    x["Name"].as_str().unwrap_or("").to_string(),
                    x["UsageData"]["RefCount"].to_string(),
                    human_size(x["UsageData"]["Size"].as_i64().unwrap_or(0)),
                ]
            })
            .collect();
        print!("{}", table(&["VOLUME NAME", "LINKS", "SIZE"], &rows));
    }
    Ok(())
}

/// Runs one of these verbs; returns the exit code.
pub async fn run(c: &Client, cmd: ImageCommand) -> Result<i32> {
    match cmd {
        ImageCommand::Images(o) | ImageCommand::Image(ImageSub::Ls(o)) => images(c, &o).await?,
        ImageCommand::Pull(o) | ImageCommand::Image(ImageSub::Pull(o)) => pull(c, &o).await?,
        ImageCommand::Push(o) | ImageCommand::Image(ImageSub::Push(o)) => push(c, &o).await?,
        ImageCommand::Load(o) | ImageCommand::Image(ImageSub::Load(o)) => load(c, &o).await?,
        ImageCommand::Save(o) | ImageCommand::Image(ImageSub::Save(o)) => save(c, &o).await?,
        ImageCommand::Import(o) | ImageCommand::Image(ImageSub::Import(o)) => import(c, &o).await?,
        ImageCommand::Tag(o) | ImageCommand::Image(ImageSub::Tag(o)) => tag(c, &o).await?,
        ImageCommand::Rmi(o) | ImageCommand::Image(ImageSub::Rm(o)) => return rmi(c, &o).await,
        ImageCommand::History(o) | ImageCommand::Image(ImageSub::History(o)) => {
            history(c, &o).await?
        }
        ImageCommand::Image(ImageSub::Prune(o)) => image_prune(c, &o).await?,
        ImageCommand::Image(ImageSub::Inspect { format, images }) => {
            return inspect_each(c, "images", "/json", &images, format.as_deref()).await;
        }
        ImageCommand::Commit {
            author,
            message,
            change,
            pause,
            container,
            reference,
        } => {
            commit(
                c,
                &container,
                reference.as_deref(),
                author.as_deref(),
                message.as_deref(),
                &change,
                pause,
            )
            .await?
        }
        ImageCommand::Events {
            since,
            until,
            filter,
            format,
        } => {
            events(
                c,
                since.as_deref(),
                until.as_deref(),
                &filter,
                format.as_deref(),
            )
            .await?
        }
        ImageCommand::Volume(v) => return volume(c, v).await,
        ImageCommand::System(SystemSub::Df { verbose, format }) => {
            system_df(c, verbose, format.as_deref()).await?
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The verbs as the binary sees them: with the global -H/--host beside them.
    #[derive(Debug, clap::Parser)]
    struct WithHost {
        #[arg(short = 'H', long, global = true)]
        host: Option<String>,
        #[command(subcommand)]
        cmd: ImageCommand,
    }

    #[test]
    fn flags_do_not_clash() {
        use clap::CommandFactory;
        WithHost::command().debug_assert();
    }

    #[test]
    fn times_for_the_api() {
        let now = chrono::DateTime::parse_from_rfc3339("2024-01-01T00:10:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(api_time("1700000000", now).unwrap(), "1700000000");
        assert_eq!(
            api_time("2024-01-01T00:00:00Z", now).unwrap(),
            "1704067200.000000000"
        );
        assert_eq!(api_time("10m", now).unwrap(), "1704067200.000000000");
        assert_eq!(api_time("1m30s", now).unwrap(), "1704067710.000000000");
        assert!(api_time("10", now).is_ok());
        assert!(api_time("5x", now).is_err());
    }

    #[test]
    fn refs_and_filters() {
        assert_eq!(split_ref("a:1"), ("a", "1"));
        assert_eq!(split_ref("localhost:5000/a"), ("localhost:5000/a", ""));
        assert_eq!(split_ref("localhost:5000/a:2"), ("localhost:5000/a", "2"));
        assert_eq!(filters_param(&[]).unwrap(), "");
        assert!(filters_param(&["nope".into()]).is_err());
    }

    #[test]
    fn progress_lines_fail_on_errors() {
        let mut p = Progress::new(true);
        p.line(br#"{"status":"Pulling fs layer","progressDetail":{},"id":"abc"}"#)
            .unwrap();
        let e = p
            .line(br#"{"errorDetail":{"message":"boom"},"error":"boom"}"#)
            .unwrap_err();
        assert_eq!(e.to_string(), "boom");
    }
}
