//! `berth build` and `berth builder prune`: the context directory packed as a tar
//! (without what `.dockerignore` excludes), sent to `POST /build`, and the JSON
//! progress stream shown: on a terminal as a live view (one line a step with its
//! time, a RUN's output folded away once the step is done), otherwise as dockerd's
//! plain lines. A failed build exits with the failed command's code, as docker does.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::Args;
use http::Method;
use http_body_util::BodyExt;
use serde_json::Value;

use crate::client::{enc, Client};

// `berth build` flags (docker's). A plain comment: a doc comment would be the
// command's about text, set after `build`'s own (its flags are added when parsed).
#[derive(Debug, Args)]
pub struct BuildOpts {
    /// Name and optionally a tag (name:tag); may repeat.
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// Name of the Dockerfile (default: PATH/Dockerfile).
    #[arg(short = 'f', long = "file")]
    pub file: Option<String>,
    /// Set build-time variables (KEY=VALUE, or KEY to take it from the environment).
    #[arg(long = "build-arg")]
    pub build_args: Vec<String>,
    /// Set the target build stage.
    #[arg(long)]
    pub target: Option<String>,
    /// Do not use the cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Always attempt to pull a newer version of the base images.
    #[arg(long)]
    pub pull: bool,
    /// Print only the image ID on success.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Set metadata for the image (KEY=VALUE).
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Networking mode for RUN instructions.
    #[arg(long)]
    pub network: Option<String>,
    /// Add a custom host-to-IP mapping (host:ip).
    #[arg(long = "add-host")]
    pub add_hosts: Vec<String>,
    /// Write the image ID to the file.
    #[arg(long)]
    pub iidfile: Option<String>,
    /// auto, plain or tty.
    #[arg(long, default_value = "auto")]
    pub progress: String,
    /// Remove intermediate containers after a successful build.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub rm: bool,
    /// Always remove intermediate containers.
    #[arg(long)]
    pub force_rm: bool,
    /// Images to consider as cache sources.
    #[arg(long = "cache-from")]
    pub cache_from: Vec<String>,
    /// Size of /dev/shm for RUN (bytes, or with k/m/g).
    #[arg(long)]
    pub shm_size: Option<String>,
    /// Memory limit for RUN.
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// The build context: a directory, or "-" for a tar on stdin.
    pub context: String,
}

fn bytes_of(s: &str) -> Result<i64> {
    let s = s.trim().to_ascii_lowercase();
    let (num, mult) = match s.chars().last() {
        Some('k') => (&s[..s.len() - 1], 1i64 << 10),
        Some('m') => (&s[..s.len() - 1], 1 << 20),
        Some('g') => (&s[..s.len() - 1], 1 << 30),
        Some('b') => (&s[..s.len() - 1], 1),
        _ => (&s[..], 1),
    };
    Ok(num
        .parse::<i64>()
        .with_context(|| format!("invalid size {s:?}"))?
        * mult)
}

/// Packs the context, the Dockerfile added under a private name when it lives
/// outside it; returns the tar and the Dockerfile's name in it.
fn pack_context(o: &BuildOpts) -> Result<(Vec<u8>, String)> {
    if o.context == "-" {
        let mut data = vec![];
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut data)?;
        return Ok((data, o.file.clone().unwrap_or_default()));
    }
    let dir = PathBuf::from(&o.context);
    if !dir.is_dir() {
        bail!("unable to prepare context: path {:?} not found", o.context);
    }
    let ignore_text = std::fs::read_to_string(dir.join(".dockerignore")).unwrap_or_default();
    let ignore = berth_context::Patterns::parse(&ignore_text)?;
    let df_path = match &o.file {
        Some(f) if f == "-" => None,
        Some(f) => Some(PathBuf::from(f)),
        None => Some(dir.join("Dockerfile")),
    };
    // The Dockerfile's name inside the context, when it is in it.
    let canon_dir = dir.canonicalize()?;
    let inside: Option<String> = df_path.as_ref().and_then(|p| {
        let p = if p.is_absolute() || o.file.is_none() {
            p.clone()
        } else if dir.join(p).exists() {
            dir.join(p)
        } else {
            p.clone()
        };
        let c = p.canonicalize().ok()?;
        c.strip_prefix(&canon_dir)
            .ok()
            .map(|r| r.to_string_lossy().into_owned())
    });
    let keep: Vec<&str> = inside.iter().map(String::as_str).collect();
    let tar = berth_context::pack(&dir, &ignore, &keep, Vec::new())?;
    match inside {
        Some(name) => Ok((tar, name)),
        None => {
            // From stdin or outside the context: appended under a private name.
            let text = match &df_path {
                None => {
                    let mut s = vec![];
                    std::io::Read::read_to_end(&mut std::io::stdin(), &mut s)?;
                    s
                }
                Some(p) => std::fs::read(p)
                    .with_context(|| format!("reading the Dockerfile {}", p.display()))?,
            };
            let name = format!(".dockerfile.{}", std::process::id());
            let mut b = tar::Builder::new(Vec::new());
            let mut a = tar::Archive::new(&tar[..]);
            for e in a.entries()? {
                let mut e = e?;
                let mut h = e.header().clone();
                let path = e.path()?.into_owned();
                if h.entry_type().is_symlink() {
                    let t = e.link_name()?.map(|l| l.into_owned()).unwrap_or_default();
                    b.append_link(&mut h, &path, t)?;
                } else {
                    b.append_data(&mut h, &path, &mut e)?;
                }
            }
            let mut h = tar::Header::new_gnu();
            h.set_size(text.len() as u64);
            h.set_mode(0o600);
            b.append_data(&mut h, &name, &text[..])?;
            Ok((b.into_inner()?, name))
        }
    }
}

fn query(o: &BuildOpts, dockerfile: &str) -> Result<String> {
    let mut q = vec![format!("dockerfile={}", enc(dockerfile))];
    for t in &o.tags {
        q.push(format!("t={}", enc(t)));
    }
    let mut args = serde_json::Map::new();
    for a in &o.build_args {
        match a.split_once('=') {
            Some((k, v)) => {
                args.insert(k.to_string(), Value::String(v.to_string()));
            }
            None => {
                if let Ok(v) = std::env::var(a) {
                    args.insert(a.clone(), Value::String(v));
                }
            }
        }
    }
    if !args.is_empty() {
        q.push(format!(
            "buildargs={}",
            enc(&Value::Object(args).to_string())
        ));
    }
    let mut labels = serde_json::Map::new();
    for l in &o.labels {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        labels.insert(k.to_string(), Value::String(v.to_string()));
    }
    if !labels.is_empty() {
        q.push(format!(
            "labels={}",
            enc(&Value::Object(labels).to_string())
        ));
    }
    if let Some(t) = &o.target {
        q.push(format!("target={}", enc(t)));
    }
    if o.no_cache {
        q.push("nocache=1".into());
    }
    if o.pull {
        q.push("pull=1".into());
    }
    if o.quiet {
        q.push("q=1".into());
    }
    q.push(format!("rm={}", if o.rm { 1 } else { 0 }));
    if o.force_rm {
        q.push("forcerm=1".into());
    }
    if let Some(n) = &o.network {
        q.push(format!("networkmode={}", enc(n)));
    }
    for h in &o.add_hosts {
        q.push(format!("extrahosts={}", enc(h)));
    }
    if !o.cache_from.is_empty() {
        q.push(format!(
            "cachefrom={}",
            enc(&serde_json::to_string(&o.cache_from)?)
        ));
    }
    if let Some(s) = &o.shm_size {
        q.push(format!("shmsize={}", bytes_of(s)?));
    }
    if let Some(m) = &o.memory {
        q.push(format!("memory={}", bytes_of(m)?));
    }
    q.push("version=1".into());
    Ok(q.join("&"))
}

/// The live view on a terminal: a line a step, RUN output shown under it while it
/// runs and folded when the next step starts.
struct Live {
    step: Option<(String, Instant)>,
    shown: usize,
}

impl Live {
    fn finish_step(&mut self, err: &mut impl Write, ok: bool) {
        if let Some((title, t)) = self.step.take() {
            // Fold the step's output away.
            for _ in 0..self.shown {
                let _ = write!(err, "\x1b[1A\x1b[2K");
            }
            let _ = write!(err, "\x1b[1A\x1b[2K");
            let mark = if ok {
                "\x1b[32m✔\x1b[0m"
            } else {
                "\x1b[31m✘\x1b[0m"
            };
            let _ = writeln!(
                err,
                "{mark} {title} \x1b[2m{:.1}s\x1b[0m",
                t.elapsed().as_secs_f64()
            );
        }
        self.shown = 0;
    }

    fn text(&mut self, err: &mut impl Write, text: &str) {
        for l in text.split_inclusive('\n') {
            let l = l.trim_end_matches('\n');
            if let Some(title) = l.strip_prefix("Step ") {
                self.finish_step(err, true);
                let title = format!("Step {title}");
                let _ = writeln!(err, "\x1b[34m⠿\x1b[0m {title}");
                self.step = Some((title, Instant::now()));
            } else if l.starts_with(" ---> ") || l.starts_with("Removing intermediate") {
                // Bookkeeping the plain view shows; the live view does not.
            } else if l.starts_with("Successfully") {
                self.finish_step(err, true);
                let _ = writeln!(err, "{l}");
            } else if !l.is_empty() {
                let _ = writeln!(err, "  \x1b[2m{l}\x1b[0m");
                if self.step.is_some() {
                    self.shown += 1;
                }
            }
        }
        let _ = err.flush();
    }
}

/// `berth build`.
pub async fn build(c: &Client, o: &BuildOpts) -> Result<i32> {
    let (tar, dockerfile) = pack_context(o)?;
    let live = match o.progress.as_str() {
        "tty" => true,
        "plain" => false,
        "auto" => std::io::stderr().is_terminal() && !o.quiet,
        other => bail!("invalid --progress {other:?}: use auto, plain or tty"),
    };
    if !o.quiet && !live {
        eprintln!(
            "Sending build context to berthd  {}",
            human(tar.len() as u64)
        );
    }
    let resp = c
        .send_bytes(
            Method::POST,
            &format!("/build?{}", query(o, &dockerfile)?),
            Bytes::from(tar),
            &[("Content-Type", "application/x-tar")],
        )
        .await?;
    let mut body = resp.into_body();
    let mut buf: Vec<u8> = vec![];
    let mut image_id = String::new();
    let mut view = Live {
        step: None,
        shown: 0,
    };
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    let mut failure: Option<(String, i32)> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.context("reading the build's progress")?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        while let Some(i) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            let Ok(v) = serde_json::from_slice::<Value>(&line) else {
                continue;
            };
            if let Some(id) = v.pointer("/aux/ID").and_then(Value::as_str) {
                image_id = id.to_string();
            }
            if let Some(msg) = v.get("error").and_then(Value::as_str) {
                let code = v
                    .pointer("/errorDetail/code")
                    .and_then(Value::as_i64)
                    .filter(|c| *c != 0)
                    .unwrap_or(1);
                failure = Some((msg.to_string(), i32::try_from(code).unwrap_or(1)));
                continue;
            }
            if let Some(text) = v.get("stream").and_then(Value::as_str) {
                if o.quiet {
                    // Quiet: the daemon sends the id alone at the end.
                    continue;
                }
                if live {
                    view.text(&mut stderr, text);
                } else {
                    let _ = write!(stdout, "{text}");
                    let _ = stdout.flush();
                }
            }
        }
    }
    if let Some((msg, code)) = failure {
        if live {
            view.finish_step(&mut stderr, false);
        }
        eprintln!("{msg}");
        return Ok(code);
    }
    if image_id.is_empty() {
        bail!("the build ended without an image");
    }
    if o.quiet {
        println!("{image_id}");
    }
    if let Some(f) = &o.iidfile {
        std::fs::write(Path::new(f), &image_id).with_context(|| format!("writing {f}"))?;
    }
    Ok(0)
}

fn human(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    format!("{v:.3}{}", units[i])
}
