//! The one pull (and push): `X-Registry-Auth` from the credentials `login` stored,
//! and the engine's JSON progress stream shown as docker shows it: a bar per layer on
//! a terminal, `id: status` lines otherwise.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http::Method;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

use crate::client::{enc, Client};
use crate::config::{registry_of, ConfigFile};

/// `X-Registry-Auth` for anonymous access (`{}`, as the docker CLI sends).
pub const ANONYMOUS_AUTH: &str = "e30=";

/// How to pull.
#[derive(Debug, Clone, Default)]
pub struct PullOpts {
    pub quiet: bool,
    pub platform: Option<String>,
    /// Progress on stderr (when `run` and `create` pull).
    pub to_stderr: bool,
    pub all_tags: bool,
}

/// The registry credentials for an image's registry, as the header value.
pub fn registry_auth(image: &str) -> Result<String> {
    let cfg = ConfigFile::load()?;
    Ok(match cfg.auth(&registry_of(image))? {
        Some(a) => a.header(),
        None => ANONYMOUS_AUTH.to_string(),
    })
}

/// `name[:tag]` split where the tag is after the last `/`; a digest is kept whole.
pub fn split_ref(r: &str) -> (&str, Option<&str>) {
    if let Some((n, d)) = r.split_once('@') {
        return (n, Some(d));
    }
    match crate::format::image::split_tag(r) {
        Some((n, t)) => (n, Some(t)),
        None => (r, None),
    }
}

/// The reference with `:latest` when it names no tag or digest.
pub fn with_tag(image: &str) -> String {
    match split_ref(image) {
        (_, Some(_)) => image.to_string(),
        (n, None) => format!("{n}:latest"),
    }
}

/// docker's fully qualified form of a reference (`docker.io/library/busybox:latest`).
pub fn qualified(image: &str) -> String {
    let r = with_tag(image);
    let first = r.split('/').next().unwrap_or("");
    if r.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost") {
        r
    } else if r.contains('/') {
        format!("docker.io/{r}")
    } else {
        format!("docker.io/library/{r}")
    }
}

/// `POST /images/create?fromImage=`: pulls `image`, showing progress.
pub async fn pull(c: &Client, image: &str, o: &PullOpts) -> Result<()> {
    let (name, tag) = split_ref(image);
    if tag.is_none() && !o.all_tags && !o.quiet {
        say(o, "Using default tag: latest");
    }
    let tag = if o.all_tags {
        ""
    } else {
        tag.unwrap_or("latest")
    };
    let mut q = format!("fromImage={}&tag={}", enc(name), enc(tag));
    if let Some(p) = &o.platform {
        q.push_str(&format!("&platform={}", enc(p)));
    }
    let auth = registry_auth(image)?;
    let resp = c
        .send_bytes(
            Method::POST,
            &format!("/images/create?{q}"),
            Bytes::new(),
            &[("X-Registry-Auth", &auth)],
        )
        .await?;
    let mut p = Progress::new(o.quiet, o.to_stderr);
    each_line(resp.into_body(), |l| p.line(l)).await?;
    p.finish();
    if !o.to_stderr {
        if o.all_tags {
            println!("{}", qualified(name).trim_end_matches(":latest"));
        } else {
            println!("{}", qualified(image));
        }
    }
    Ok(())
}

/// `POST /images/{name}/push`.
pub async fn push(
    c: &Client,
    image: &str,
    quiet: bool,
    all_tags: bool,
    platform: Option<&str>,
) -> Result<()> {
    let (name, tag) = split_ref(image);
    if tag.is_none() && !all_tags && !quiet {
        println!("Using default tag: latest");
    }
    let tag = if all_tags {
        ""
    } else {
        tag.unwrap_or("latest")
    };
    let mut q = format!("tag={}", enc(tag));
    if let Some(p) = platform {
        q.push_str(&format!("&platform={}", enc(p)));
    }
    let auth = registry_auth(image)?;
    let resp = c
        .send_bytes(
            Method::POST,
            &format!("/images/{}/push?{q}", enc(name)),
            Bytes::new(),
            &[("X-Registry-Auth", &auth)],
        )
        .await?;
    let mut p = Progress::new(quiet, false);
    each_line(resp.into_body(), |l| p.line(l)).await?;
    p.finish();
    if quiet {
        println!("{}", with_tag(image));
    }
    Ok(())
}

fn say(o: &PullOpts, s: &str) {
    if o.to_stderr {
        eprintln!("{s}");
    } else {
        println!("{s}");
    }
}

/// Reads a whole streamed answer body, passing each complete line to `f`.
pub async fn each_line(mut body: Incoming, mut f: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
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
    to_stderr: bool,
    multi: Option<MultiProgress>,
    bars: HashMap<String, ProgressBar>,
    last: HashMap<String, String>,
    /// Collected `aux` objects (push's digest).
    pub aux: Vec<Value>,
}

impl Progress {
    pub fn new(quiet: bool, to_stderr: bool) -> Progress {
        let on_terminal = if to_stderr {
            std::io::stderr().is_terminal()
        } else {
            std::io::stdout().is_terminal()
        };
        let target = if to_stderr {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::stdout()
        };
        let multi = (!quiet && on_terminal).then(|| MultiProgress::with_draw_target(target));
        Progress {
            quiet,
            to_stderr,
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
                    self.println(&format!("{id}: {status}"));
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
            None if self.to_stderr => eprintln!("{s}"),
            None => {
                println!("{s}");
                let _ = std::io::stdout().flush();
            }
        }
    }

    /// Leaves the bars drawn where they are.
    pub fn finish(&mut self) {
        for b in self.bars.values() {
            b.abandon();
        }
    }
}

/// Reads a progress answer to its end (load, import): fails on the stream's error.
pub async fn follow(body: Incoming, quiet: bool) -> Result<Progress> {
    let mut p = Progress::new(quiet, false);
    each_line(body, |l| p.line(l)).await?;
    p.finish();
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        assert_eq!(split_ref("a:1"), ("a", Some("1")));
        assert_eq!(split_ref("localhost:5000/a"), ("localhost:5000/a", None));
        assert_eq!(
            split_ref("localhost:5000/a:2"),
            ("localhost:5000/a", Some("2"))
        );
        assert_eq!(split_ref("a@sha256:ab"), ("a", Some("sha256:ab")));
        assert_eq!(qualified("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(qualified("me/app:1"), "docker.io/me/app:1");
        assert_eq!(qualified("127.0.0.1:5000/x"), "127.0.0.1:5000/x:latest");
    }

    #[test]
    fn progress_lines_fail_on_errors() {
        let mut p = Progress::new(true, false);
        p.line(br#"{"status":"Pulling fs layer","progressDetail":{},"id":"abc"}"#)
            .unwrap();
        let e = p
            .line(br#"{"errorDetail":{"message":"boom"},"error":"boom"}"#)
            .unwrap_err();
        assert_eq!(e.to_string(), "boom");
    }
}
