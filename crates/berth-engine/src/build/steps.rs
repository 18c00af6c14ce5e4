//! Running a Dockerfile: stages, build args, each instruction's effect on the image
//! config, the cache probe, and the step that makes the new image.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bollard_stubs::models::{ContainerConfig, HealthConfig, HostConfig};
use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;

use super::cache::{self, Cache, Entry};
use super::context::{self, TempDir};
use super::copy::{self, Ownership, Resolved};
use super::dockerfile::{self, CmdForm, CopySpec, Health, Instruction, Kind, Source};
use super::lex::{self, Env};
use super::runner::{self, RunEnd, Scratch};
use super::{BuildError, BuildOptions, Output};
use crate::api::images::familiar;
use crate::engine::Engine;
use crate::error::EngineError;

/// Names the files `ADD <url>` downloads into a build's work directory.
static DOWNLOADS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Build args every build knows without an ARG (kept out of history unless declared).
const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

const DEFAULT_SHELL: &[&str] = &["/bin/sh", "-c"];

fn short(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(12).collect()
}

/// One stage's state while it is built.
#[derive(Debug, Clone, Default)]
struct State {
    image: String,
    config: ContainerConfig,
    /// ARGs declared in this stage, with their values.
    args: BTreeMap<String, Option<String>>,
    maintainer: String,
    cmd_set: bool,
}

struct Builder<'a> {
    engine: &'a Arc<Engine>,
    opts: &'a BuildOptions,
    out: &'a Output,
    ctx: PathBuf,
    tmp: &'a TempDir,
    cache: Cache,
    /// With `cachefrom`: the only images a cache hit may be.
    cache_allowed: Option<HashSet<String>>,
    escape: char,
    meta_args: BTreeMap<String, Option<String>>,
    used_args: HashSet<String>,
    stage_images: Vec<Option<String>>,
    stage_names: Vec<Option<String>>,
    image_fs: HashMap<String, PathBuf>,
    /// RUN containers not yet removed.
    containers: Vec<String>,
    step: usize,
    total: usize,
    files: usize,
}

fn config_value(c: &ContainerConfig) -> Value {
    fn sorted(v: Value) -> Value {
        match v {
            Value::Object(m) => {
                let b: BTreeMap<String, Value> =
                    m.into_iter().map(|(k, v)| (k, sorted(v))).collect();
                Value::Object(b.into_iter().collect())
            }
            Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
            other => other,
        }
    }
    sorted(serde_json::to_value(c).unwrap_or(Value::Null))
}

fn env_map(list: &[String]) -> Env {
    list.iter()
        .filter_map(|e| e.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn set_env(config: &mut ContainerConfig, key: &str, value: &str) {
    let env = config.env.get_or_insert_with(Vec::new);
    let entry = format!("{key}={value}");
    match env
        .iter_mut()
        .find(|e| e.split_once('=').map(|(k, _)| k) == Some(key) || e.as_str() == key)
    {
        Some(e) => *e = entry,
        None => env.push(entry),
    }
}

/// Go's `%q` of a string slice: `["a" "b"]`.
fn go_quote_list(v: &[String]) -> String {
    let items: Vec<String> = v.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", items.join(" "))
}

fn go_quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// Go's `time.Duration` string.
fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".to_string();
    }
    if ns < 1_000_000_000 {
        if ns % 1_000_000 == 0 {
            return format!("{}ms", ns / 1_000_000);
        }
        return format!("{ns}ns");
    }
    let total = ns as f64 / 1e9;
    let h = (total / 3600.0).floor() as i64;
    let m = ((total - h as f64 * 3600.0) / 60.0).floor() as i64;
    let s = total - h as f64 * 3600.0 - m as f64 * 60.0;
    let secs = format!("{s}");
    let secs = secs.trim_end_matches(".0");
    match (h, m) {
        (0, 0) => format!("{secs}s"),
        (0, m) => format!("{m}m{secs}s"),
        (h, m) => format!("{h}h{m}m{secs}s"),
    }
}

/// Parses a Go duration ("30s", "1m30s", "500ms", "1h").
pub fn parse_duration(s: &str) -> Option<i64> {
    if s == "0" {
        return Some(0);
    }
    let mut total: f64 = 0.0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let mult = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += num * mult;
        rest = &rest[u..];
    }
    Some(total as i64)
}

/// Go's `%q` of a small int, as dockerd prints a health check's retries.
fn go_char(n: i64) -> String {
    match u8::try_from(n) {
        Ok(b) if (0x20..0x7f).contains(&b) && b != b'\'' && b != b'\\' => {
            format!("'{}'", b as char)
        }
        Ok(b) if b < 0x80 => format!("'\\x{b:02x}'"),
        _ => format!("'\\u{n:04x}'"),
    }
}

fn clean_abs(p: &str) -> String {
    let mut out: Vec<&str> = vec![];
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    format!("/{}", out.join("/"))
}

fn port_specs(words: &[String]) -> Result<Vec<String>, BuildError> {
    let mut out = vec![];
    for w in words {
        let (ports, proto) = w.split_once('/').unwrap_or((w, "tcp"));
        let proto = proto.to_ascii_lowercase();
        if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
            return Err(BuildError::new(format!("invalid proto: {proto}")));
        }
        // host-ip:host-port:container-port forms keep the last part
        let ports = ports.rsplit(':').next().unwrap_or(ports);
        let (a, b) = ports.split_once('-').unwrap_or((ports, ports));
        let (a, b): (u16, u16) = match (a.parse(), b.parse()) {
            (Ok(a), Ok(b)) if a <= b => (a, b),
            _ => return Err(BuildError::new(format!("invalid containerPort: {ports}"))),
        };
        for p in a..=b {
            out.push(format!("{p}/{proto}"));
        }
    }
    Ok(out)
}

impl<'a> Builder<'a> {
    /// Variables a word of this stage sees: ENV first, then the ARGs that have values.
    fn env(&self, st: &State) -> Env {
        let mut env = env_map(st.config.env.as_deref().unwrap_or(&[]));
        for (k, v) in &st.args {
            if let Some(v) = v {
                env.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        env
    }

    fn word(&self, st: &State, w: &str) -> Result<String, BuildError> {
        Ok(lex::process_word(w, &self.env(st), self.escape)?)
    }

    fn words(&self, st: &State, w: &str) -> Result<Vec<String>, BuildError> {
        Ok(lex::process_words(w, &self.env(st), self.escape)?)
    }

    fn shell(st: &State) -> Vec<String> {
        st.config
            .shell
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_SHELL.iter().map(|s| s.to_string()).collect())
    }

    fn cmdline(st: &State, c: &CmdForm) -> Vec<String> {
        match c {
            CmdForm::Exec(v) => v.clone(),
            CmdForm::Shell(s) => {
                let mut v = Self::shell(st);
                v.push(s.clone());
                v
            }
        }
    }

    /// Build args a RUN sees (not overridden by ENV): (all, the ones history shows).
    fn run_args(&self, st: &State) -> (Vec<String>, Vec<String>) {
        let env = env_map(st.config.env.as_deref().unwrap_or(&[]));
        let mut all = BTreeMap::new();
        for (k, v) in &st.args {
            if let Some(v) = v {
                all.insert(k.clone(), (v.clone(), true));
            }
        }
        for p in PROXY_ARGS {
            if let Some(Some(v)) = self.opts.build_args.get(*p) {
                all.entry(p.to_string()).or_insert((v.clone(), false));
            }
        }
        let mut vars = vec![];
        let mut shown = vec![];
        for (k, (v, declared)) in all {
            if env.contains_key(&k) {
                continue;
            }
            vars.push(format!("{k}={v}"));
            if declared || !PROXY_ARGS.contains(&k.as_str()) {
                shown.push(format!("{k}={v}"));
            }
        }
        shown.sort();
        (vars, shown)
    }

    async fn step_line(&mut self, ins: &Instruction) -> Result<(), BuildError> {
        if self.out.cancelled() {
            return Err(BuildError::new("the build was cancelled"));
        }
        self.step += 1;
        self.out
            .stream(&format!(
                "Step {}/{} : {}\n",
                self.step, self.total, ins.original
            ))
            .await;
        Ok(())
    }

    /// A cache hit for this step, if any.
    async fn probe(&self, key: &str) -> Option<String> {
        if self.opts.no_cache {
            return None;
        }
        let entry = self.cache.get(key)?;
        if let Some(allowed) = &self.cache_allowed {
            if !allowed.contains(&entry.image) {
                return None;
            }
        }
        match self.engine.manager.images_get(&entry.image).await {
            Ok(img) => Some(img.id),
            Err(_) => {
                self.cache.remove(key);
                None
            }
        }
    }

    fn remember(&self, key: &str, parent: &str, image: &str, created_by: &str) {
        let e = Entry {
            image: image.to_string(),
            parent: parent.to_string(),
            created_by: created_by.to_string(),
            created: crate::lifecycle::now_rfc3339(),
        };
        if let Err(e) = self.cache.put(key, &e) {
            tracing::warn!(error = %e, "writing the build cache");
        }
    }

    /// A config-only step: probe the cache, else commit a new image with an empty
    /// layer.
    async fn metadata_step(&mut self, st: &mut State, message: &str) -> Result<(), BuildError> {
        let mut created_by = Self::shell(st);
        created_by.push("#(nop) ".to_string());
        created_by.push(message.to_string());
        let created_by = created_by.join(" ");
        let cfg = config_value(&st.config);
        let key = cache::key(&st.image, &created_by, &cfg);
        if let Some(id) = self.probe(&key).await {
            self.out.stream(" ---> Using cache\n").await;
            st.image = id;
            return Ok(());
        }
        let img = runner::commit(
            self.engine,
            None,
            &st.image,
            cfg,
            &created_by,
            &st.maintainer,
        )
        .await?;
        self.remember(&key, &st.image, &img.id, &created_by);
        st.image = img.id;
        Ok(())
    }

    async fn from(&mut self, ins: &Instruction) -> Result<State, BuildError> {
        let Kind::From {
            image, platform, ..
        } = &ins.kind
        else {
            return Err(BuildError::new("a stage must start with FROM"));
        };
        let meta: Env = self
            .meta_args
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect();
        for k in self.meta_args.keys() {
            if image.contains(k.as_str()) {
                self.used_args.insert(k.clone());
            }
        }
        let name = lex::process_word(image, &meta, self.escape)?;
        if let Some(p) = platform {
            let p = lex::process_word(p, &meta, self.escape)?;
            check_platform(&p)?;
        }
        let mut st = State::default();
        if name.eq_ignore_ascii_case("scratch") {
            self.out.stream(" ---> \n").await;
            return Ok(st);
        }
        // An earlier stage by name.
        if let Some(i) = self
            .stage_names
            .iter()
            .position(|n| n.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(&name)))
        {
            if let Some(Some(id)) = self.stage_images.get(i) {
                st.image = id.clone();
            }
        }
        if st.image.is_empty() {
            st.image = self.base_image(&name).await?;
        }
        let img = self.engine.manager.images_get(&st.image).await?;
        st.config = parse_config(&img.config);
        self.out
            .stream(&format!(" ---> {}\n", short(&st.image)))
            .await;
        // ONBUILD triggers of the base run now, and are not inherited.
        let triggers = st.config.on_build.take().unwrap_or_default();
        if !triggers.is_empty() {
            self.out
                .stream(&format!(
                    "# Executing {} build trigger{}\n",
                    triggers.len(),
                    if triggers.len() == 1 { "" } else { "s" }
                ))
                .await;
            for t in triggers {
                let ins =
                    dockerfile::parse_trigger(&t).map_err(|e| BuildError::new(e.to_string()))?;
                self.dispatch(&mut st, &ins).await?;
            }
        }
        Ok(st)
    }

    /// The image a FROM names: local, or pulled when missing (or with `pull`).
    async fn base_image(&self, name: &str) -> Result<String, BuildError> {
        if !self.opts.pull {
            if let Ok(img) = self.engine.manager.images_get(name).await {
                return Ok(img.id);
            }
        }
        let reference =
            if name.contains('@') || name.rsplit('/').next().is_some_and(|l| l.contains(':')) {
                name.to_string()
            } else {
                format!("{name}:latest")
            };
        let pulled = async {
            let mut updates = self
                .engine
                .manager
                .images_pull(&reference, Default::default())
                .await?;
            while let Some(u) = updates.recv().await {
                if let crate::manager::images::PullUpdate::Done(img) = u? {
                    return Ok::<_, EngineError>(img.id);
                }
            }
            Err(EngineError::NoSuchImage(name.to_string()))
        }
        .await;
        match pulled {
            Ok(id) => Ok(id),
            Err(e) => {
                // With `pull`, a local image still does when the registry is out of reach.
                if let Ok(img) = self.engine.manager.images_get(name).await {
                    return Ok(img.id);
                }
                Err(BuildError::new(format!(
                    "pull access denied for {}, repository does not exist or may require 'docker login': {}",
                    name,
                    e.message()
                )))
            }
        }
    }

    async fn dispatch(&mut self, st: &mut State, ins: &Instruction) -> Result<(), BuildError> {
        match &ins.kind {
            Kind::From { .. } => Err(BuildError::new("FROM inside a stage")),
            Kind::Arg(args) => {
                let mut msg = vec![];
                for (name, default) in args {
                    self.used_args.insert(name.clone());
                    let default = match default {
                        Some(d) => Some(self.word(st, d)?),
                        None => None,
                    };
                    let value = match self.opts.build_args.get(name) {
                        Some(Some(v)) => Some(v.clone()),
                        _ => default
                            .clone()
                            .or_else(|| self.meta_args.get(name).cloned().flatten()),
                    };
                    st.args.insert(name.clone(), value);
                    msg.push(match default {
                        Some(d) => format!("{name}={d}"),
                        None => name.clone(),
                    });
                }
                self.metadata_step(st, &format!("ARG {}", msg.join(" ")))
                    .await
            }
            Kind::Env(pairs) => {
                let mut msg = String::from("ENV");
                for (k, v) in pairs {
                    let k = self.word(st, k)?;
                    let v = self.word(st, v)?;
                    set_env(&mut st.config, &k, &v);
                    msg.push_str(&format!(" {k}={v}"));
                }
                self.metadata_step(st, &msg).await
            }
            Kind::Label(pairs) => {
                let mut msg = String::from("LABEL");
                for (k, v) in pairs {
                    let k = self.word(st, k)?;
                    let v = self.word(st, v)?;
                    st.config
                        .labels
                        .get_or_insert_with(Default::default)
                        .insert(k.clone(), v.clone());
                    msg.push_str(&format!(" {k}={v}"));
                }
                self.metadata_step(st, &msg).await
            }
            Kind::Maintainer(m) => {
                st.maintainer = self.word(st, m)?;
                let msg = format!("MAINTAINER {}", st.maintainer);
                self.metadata_step(st, &msg).await
            }
            Kind::Expose(ports) => {
                let mut words = vec![];
                for p in ports {
                    words.extend(self.words(st, p)?);
                }
                let mut specs = port_specs(&words)?;
                let exposed = st.config.exposed_ports.get_or_insert_with(Default::default);
                for p in &specs {
                    exposed.insert(p.clone(), Default::default());
                }
                specs.sort();
                specs.dedup();
                self.metadata_step(st, &format!("EXPOSE {}", specs.join(" ")))
                    .await
            }
            Kind::User(u) => {
                let u = self.word(st, u)?;
                st.config.user = Some(u.clone());
                self.metadata_step(st, &format!("USER {u}")).await
            }
            Kind::Volume(vols) => {
                let mut all = vec![];
                for v in vols {
                    let v = self.word(st, v)?;
                    if v.trim().is_empty() {
                        return Err(BuildError::new(
                            "VOLUME specified can not be an empty string",
                        ));
                    }
                    all.push(v);
                }
                let map = st.config.volumes.get_or_insert_with(Default::default);
                for v in &all {
                    map.insert(v.clone(), Default::default());
                }
                self.metadata_step(st, &format!("VOLUME [{}]", all.join(" ")))
                    .await
            }
            Kind::Stopsignal(s) => {
                let s = self.word(st, s)?;
                crate::lifecycle::parse_signal(&s)
                    .map_err(|_| BuildError::new(format!("Invalid signal: {s}")))?;
                st.config.stop_signal = Some(s.clone());
                self.metadata_step(st, &format!("STOPSIGNAL {s}")).await
            }
            Kind::Shell(sh) => {
                if sh.is_empty() {
                    return Err(BuildError::new("SHELL requires at least one argument"));
                }
                st.config.shell = Some(sh.clone());
                self.metadata_step(st, &format!("SHELL [{}]", sh.join(" ")))
                    .await
            }
            Kind::Cmd(c) => {
                let cmd = Self::cmdline(st, c);
                st.config.cmd = Some(cmd.clone());
                st.cmd_set = true;
                self.metadata_step(st, &format!("CMD {}", go_quote_list(&cmd)))
                    .await
            }
            Kind::Entrypoint(c) => {
                let ep = Self::cmdline(st, c);
                st.config.entrypoint = Some(ep.clone());
                if !st.cmd_set {
                    st.config.cmd = None;
                }
                self.metadata_step(st, &format!("ENTRYPOINT {}", go_quote_list(&ep)))
                    .await
            }
            Kind::Onbuild(t) => {
                let t = t.trim().to_string();
                st.config
                    .on_build
                    .get_or_insert_with(Vec::new)
                    .push(t.clone());
                self.metadata_step(st, &format!("ONBUILD {t}")).await
            }
            Kind::Healthcheck(h) => {
                let hc = health_config(st, h)?;
                let msg = format!(
                    "HEALTHCHECK &{{{} {} {} {} {}}}",
                    go_quote_list(hc.test.as_deref().unwrap_or(&[])),
                    go_quote(&go_duration(hc.interval.unwrap_or(0))),
                    go_quote(&go_duration(hc.timeout.unwrap_or(0))),
                    go_quote(&go_duration(hc.start_period.unwrap_or(0))),
                    go_char(hc.retries.unwrap_or(0)),
                );
                st.config.healthcheck = Some(hc);
                self.metadata_step(st, &msg).await
            }
            Kind::Workdir(w) => {
                let w = self.word(st, w)?;
                let base = st.config.working_dir.clone().unwrap_or_default();
                let abs = if w.starts_with('/') {
                    clean_abs(&w)
                } else {
                    clean_abs(&format!(
                        "{}/{w}",
                        if base.is_empty() { "/" } else { &base }
                    ))
                };
                st.config.working_dir = Some(abs.clone());
                let msg = format!("WORKDIR {abs}");
                let mut created_by = Self::shell(st);
                created_by.push("#(nop) ".to_string());
                created_by.push(msg);
                let created_by = created_by.join(" ");
                self.layer_step(st, &created_by, |_| Ok(vec![(abs.clone(), None)]))
                    .await
            }
            Kind::Copy(c) => self.copy(st, c).await,
            Kind::Run { cmd, script, .. } => self.run(st, cmd, script.as_deref()).await,
        }
    }

    /// A step that writes files into a new layer: `items` gives (dest, tar) pairs,
    /// a None tar only makes the directory.
    async fn layer_step<F>(
        &mut self,
        st: &mut State,
        created_by: &str,
        items: F,
    ) -> Result<(), BuildError>
    where
        F: FnOnce(&mut Self) -> Result<Vec<(String, Option<copy::Item>)>, BuildError>,
    {
        let cfg = config_value(&st.config);
        let key = cache::key(&st.image, created_by, &cfg);
        if let Some(id) = self.probe(&key).await {
            self.out.stream(" ---> Using cache\n").await;
            st.image = id;
            return Ok(());
        }
        let items = items(self)?;
        let layer = Scratch::new(self.engine, &st.image).await?;
        let result = async {
            for (dest, item) in items {
                match item {
                    None => {
                        let empty = self.tmp.path.join("empty.tar");
                        std::fs::write(&empty, [0u8; 1024])
                            .map_err(|e| BuildError::new(format!("writing a build file: {e}")))?;
                        layer.copy_in(&dest, false, (0, 0), empty).await?;
                    }
                    Some(item) => {
                        layer
                            .copy_in(&item.dest, item.dest_is_file, (0, 0), item.tar.clone())
                            .await?;
                        let _ = std::fs::remove_file(&item.tar);
                    }
                }
            }
            let img = runner::commit(
                self.engine,
                Some(&layer.id),
                &st.image,
                cfg,
                created_by,
                &st.maintainer,
            )
            .await?;
            Ok::<_, BuildError>(img)
        }
        .await;
        layer.remove().await;
        let img = result?;
        self.remember(&key, &st.image, &img.id, created_by);
        st.image = img.id;
        Ok(())
    }

    /// The files of an image (a stage's or `--from`'s), unpacked once per build.
    async fn image_files(&mut self, image: &str) -> Result<PathBuf, BuildError> {
        if let Some(p) = self.image_fs.get(image) {
            return Ok(p.clone());
        }
        let dir = self.tmp.path.join(format!("fs-{}", self.image_fs.len()));
        std::fs::create_dir_all(&dir).map_err(|e| BuildError::new(e.to_string()))?;
        if !image.is_empty() {
            let img = self.engine.manager.images_get(image).await?;
            if !img.top_snapshot.is_empty() {
                let mut rx = self
                    .engine
                    .manager
                    .snapshots_export(&img.top_snapshot)
                    .await?;
                let (tx, body) = mpsc::channel::<Bytes>(8);
                let d = dir.clone();
                let unpack = tokio::task::spawn_blocking(move || {
                    context::unpack(context::BodyReader::new(body), &d)
                });
                while let Some(chunk) = rx.recv().await {
                    let chunk = chunk?;
                    if tx.send(chunk).await.is_err() {
                        break;
                    }
                }
                drop(tx);
                unpack
                    .await
                    .map_err(|e| BuildError::new(e.to_string()))?
                    .map_err(|e| BuildError::new(e.to_string()))?;
            }
        }
        self.image_fs.insert(image.to_string(), dir.clone());
        Ok(dir)
    }

    async fn copy(&mut self, st: &mut State, c: &CopySpec) -> Result<(), BuildError> {
        let name = if c.add { "ADD" } else { "COPY" };
        let dest_raw = self.word(st, &c.dest)?;
        let workdir = st.config.working_dir.clone().unwrap_or_default();
        let dest_dir = dest_raw.ends_with('/') || c.srcs.len() > 1;
        let dest_abs = if dest_raw.starts_with('/') {
            clean_abs(&dest_raw)
        } else {
            clean_abs(&format!(
                "{}/{}",
                if workdir.is_empty() { "/" } else { &workdir },
                dest_raw
            ))
        };
        // --from: a stage by name or index, else an image.
        let (root, what) = match &c.from {
            None => (self.ctx.clone(), "build context".to_string()),
            Some(f) => {
                let f = self.word(st, f)?;
                let by_name = self
                    .stage_names
                    .iter()
                    .position(|n| n.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(&f)));
                let idx = by_name.or_else(|| f.parse::<usize>().ok());
                let image = match idx.and_then(|i| self.stage_images.get(i).cloned()) {
                    Some(Some(id)) => id,
                    Some(None) => {
                        return Err(BuildError::new(format!(
                            "invalid from flag value {f}: stage not built yet"
                        )))
                    }
                    None => self.base_image(&f).await?,
                };
                (self.image_files(&image).await?, format!("stage {f}"))
            }
        };
        let own = self.ownership(st, c).await?;
        // Sources, with their checksums.
        let mut resolved = vec![];
        for s in &c.srcs {
            match s {
                Source::Inline {
                    name,
                    content,
                    expand,
                } => {
                    let content = if *expand {
                        // Only variables, as a shell heredoc would: no quote removal.
                        expand_vars(content, &self.env(st))
                    } else {
                        content.clone()
                    };
                    resolved.push(Resolved::Data {
                        name: name.clone(),
                        data: content.into_bytes(),
                        mode: 0o644,
                        mtime: 0,
                    });
                }
                Source::Path(p) => {
                    let p = self.word(st, p)?;
                    if c.add && (p.starts_with("http://") || p.starts_with("https://")) {
                        let to = self.tmp.path.join(format!(
                            "download-{}",
                            DOWNLOADS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                        ));
                        let d = super::http::get(&p, &to).await.map_err(BuildError::new)?;
                        let fname = if d.file_name.is_empty() {
                            "index.html".to_string()
                        } else {
                            d.file_name.clone()
                        };
                        resolved.push(Resolved::Downloaded {
                            path: d.path,
                            name: fname,
                            mode: 0o600,
                            mtime: d.modified.unwrap_or(0),
                        });
                        continue;
                    }
                    if c.from.is_none() && (p.starts_with("http://") || p.starts_with("https://")) {
                        return Err(BuildError::new(format!(
                            "{name} failed: source can't be a URL for COPY"
                        )));
                    }
                    let hits = copy::resolve(&root, &p, &what)
                        .map_err(|e| BuildError::new(format!("{name} failed: {e}")))?;
                    for (path, fname) in hits {
                        if c.add && c.from.is_none() && path.is_file() && copy::is_archive(&path) {
                            resolved.push(Resolved::Archive { path });
                        } else {
                            resolved.push(Resolved::Path { path, name: fname });
                        }
                    }
                }
            }
        }
        if resolved.is_empty() {
            return Err(BuildError::new(format!(
                "{name} failed: no source files were specified"
            )));
        }
        if resolved.len() > 1 && !dest_raw.ends_with('/') {
            return Err(BuildError::new(format!(
                "When using {name} with more than one source file, the destination must be a directory and end with a /"
            )));
        }
        let mut sums = vec![];
        for r in &resolved {
            sums.push(
                copy::checksum(r).map_err(|e| BuildError::new(format!("{name} failed: {e}")))?,
            );
        }
        let chown_comment = c
            .chown
            .as_ref()
            .map(|o| format!("--chown={o} "))
            .unwrap_or_default();
        let comment = format!(
            "{name} {chown_comment}{} in {dest_raw} ",
            copy::combined(&sums)
        );
        let mut created_by = Self::shell(st);
        created_by.push(format!("#(nop) {comment}"));
        let created_by = created_by.join(" ");
        let tmp = self.tmp.path.clone();
        self.layer_step(st, &created_by, move |b| {
            let mut items = vec![];
            for r in &resolved {
                b.files += 1;
                let item = copy::pack(
                    r,
                    &dest_abs,
                    dest_dir || matches!(r, Resolved::Archive { .. }),
                    &own,
                    &tmp,
                    b.files,
                )
                .map_err(|e| BuildError::new(format!("{name} failed: {e}")))?;
                items.push((dest_abs.clone(), Some(item)));
            }
            Ok(items)
        })
        .await
    }

    /// `--chown` (names looked up in the image's /etc/passwd and /etc/group) and
    /// `--chmod`.
    async fn ownership(&mut self, st: &State, c: &CopySpec) -> Result<Ownership, BuildError> {
        let mode = match &c.chmod {
            Some(m) => Some(
                u32::from_str_radix(m, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| BuildError::new(format!("invalid chmod parameter: {m}")))?,
            ),
            None => None,
        };
        let Some(chown) = &c.chown else {
            return Ok(Ownership {
                uid: 0,
                gid: 0,
                mode,
            });
        };
        let chown = self.word(st, chown)?;
        let (u, g) = chown.split_once(':').unwrap_or((&chown, ""));
        let numeric = |s: &str| s.parse::<u32>().ok();
        let needs_files = numeric(u).is_none() || (!g.is_empty() && numeric(g).is_none());
        let files = if needs_files {
            Some(self.image_files(&st.image.clone()).await?)
        } else {
            None
        };
        let lookup = |file: &str, name: &str| -> Option<(u32, u32)> {
            let root = files.as_ref()?;
            // The image's files: its links stay inside it, and a huge or
            // endless "passwd" is not read.
            let text = context::read_in_scope(root, file).ok()?;
            // passwd: name:x:uid:gid:...; group: name:x:gid:members (gid twice then).
            text.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                if f.first() != Some(&name) || f.len() < 3 {
                    return None;
                }
                let id = f[2].parse().ok()?;
                let second = f.get(3).and_then(|g| g.parse().ok()).unwrap_or(id);
                Some((id, second))
            })
        };
        let (uid, primary) = match numeric(u) {
            Some(n) => (n, n),
            None => lookup("etc/passwd", u).ok_or_else(|| {
                BuildError::new(format!("unable to convert uid/gid chown string to host mapping: can't find uid for user {u}: no such user: {u}"))
            })?,
        };
        let gid = if g.is_empty() {
            if numeric(u).is_some() {
                uid
            } else {
                primary
            }
        } else {
            match numeric(g) {
                Some(n) => n,
                None => lookup("etc/group", g).map(|(gid, _)| gid).ok_or_else(|| {
                    BuildError::new(format!("unable to convert uid/gid chown string to host mapping: can't find gid for group {g}: no such group: {g}"))
                })?,
            }
        };
        Ok(Ownership { uid, gid, mode })
    }

    async fn run(
        &mut self,
        st: &mut State,
        c: &CmdForm,
        script: Option<&str>,
    ) -> Result<(), BuildError> {
        let cmd = match script {
            Some(s) => {
                let mut v = Self::shell(st);
                v.push(s.to_string());
                v
            }
            None => Self::cmdline(st, c),
        };
        let (vars, shown) = self.run_args(st);
        let mut save = cmd.clone();
        if !vars.is_empty() {
            let mut p = vec![format!("|{}", shown.len())];
            p.extend(shown);
            p.extend(save);
            save = p;
        }
        let created_by = save.join(" ");
        let cfg = config_value(&st.config);
        let key = cache::key(&st.image, &created_by, &cfg);
        if let Some(id) = self.probe(&key).await {
            self.out.stream(" ---> Using cache\n").await;
            st.image = id;
            return Ok(());
        }
        let mut run_config = st.config.clone();
        run_config.cmd = Some(cmd.clone());
        run_config.entrypoint = Some(vec![]);
        run_config.healthcheck = None;
        run_config.on_build = None;
        run_config.attach_stdout = Some(true);
        run_config.attach_stderr = Some(true);
        let mut env = run_config.env.clone().unwrap_or_default();
        env.extend(vars);
        run_config.env = Some(env);
        let id = runner::create(self.engine, &st.image, run_config, self.host_config()).await?;
        self.containers.push(id.clone());
        self.out
            .stream(&format!(" ---> Running in {}\n", short(&id)))
            .await;
        match runner::run(self.engine, &id, self.out).await? {
            RunEnd::Cancelled => return Err(BuildError::new("the build was cancelled")),
            RunEnd::Exited(0) => {}
            RunEnd::Exited(code) => {
                return Err(BuildError {
                    message: format!(
                        "The command '{}' returned a non-zero code: {code}",
                        cmd.join(" ")
                    ),
                    code: Some(code),
                })
            }
        }
        let img = runner::commit(
            self.engine,
            Some(&id),
            &st.image,
            cfg,
            &created_by,
            &st.maintainer,
        )
        .await?;
        self.remember(&key, &st.image, &img.id, &created_by);
        st.image = img.id;
        if self.opts.rm || self.opts.force_rm {
            self.remove_containers().await;
        }
        Ok(())
    }

    async fn remove_containers(&mut self) {
        for id in std::mem::take(&mut self.containers) {
            runner::remove(self.engine, &id).await;
            self.out
                .stream(&format!("Removing intermediate container {}\n", short(&id)))
                .await;
        }
    }

    fn host_config(&self) -> HostConfig {
        let o = self.opts;
        HostConfig {
            memory: o.memory,
            memory_swap: o.memswap,
            cpu_shares: o.cpu_shares,
            cpuset_cpus: o.cpuset_cpus.clone(),
            cpu_period: o.cpu_period,
            cpu_quota: o.cpu_quota,
            shm_size: o.shm_size,
            extra_hosts: (!o.extra_hosts.is_empty()).then(|| o.extra_hosts.clone()),
            network_mode: (!o.network_mode.is_empty() && o.network_mode != "default")
                .then(|| o.network_mode.clone()),
            ..HostConfig::default()
        }
    }
}

/// `$VAR` and `${VAR}` in a heredoc's body.
fn expand_vars(s: &str, env: &Env) -> String {
    let mut out = String::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '$' {
            let (name, next) = if chars.get(i + 1) == Some(&'{') {
                let end = chars[i + 2..]
                    .iter()
                    .position(|c| *c == '}')
                    .map(|p| p + i + 2);
                match end {
                    Some(e) => (chars[i + 2..e].iter().collect::<String>(), e + 1),
                    None => (String::new(), i + 1),
                }
            } else {
                let n: String = chars[i + 1..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                    .collect();
                let len = n.chars().count();
                (n, i + 1 + len)
            };
            if !name.is_empty() {
                out.push_str(env.get(&name).map(String::as_str).unwrap_or(""));
                i = next;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

fn parse_config(raw: &[u8]) -> ContainerConfig {
    serde_json::from_slice::<Value>(raw)
        .ok()
        .and_then(|v| v.get("config").cloned())
        .and_then(|c| serde_json::from_value(c).ok())
        .unwrap_or_default()
}

fn health_config(st: &State, h: &Health) -> Result<HealthConfig, BuildError> {
    let mut hc = HealthConfig::default();
    match &h.cmd {
        None => {
            hc.test = Some(vec!["NONE".to_string()]);
            return Ok(hc);
        }
        Some(CmdForm::Exec(v)) => {
            let mut t = vec!["CMD".to_string()];
            t.extend(v.iter().cloned());
            hc.test = Some(t);
        }
        Some(CmdForm::Shell(s)) => {
            hc.test = Some(vec!["CMD-SHELL".to_string(), s.clone()]);
        }
    }
    let _ = st;
    for (k, v) in &h.flags {
        let dur = |what: &str| -> Result<i64, BuildError> {
            let d = parse_duration(v).ok_or_else(|| {
                BuildError::new(format!("time: invalid duration {v:?} for --{what}"))
            })?;
            if d != 0 && d < 1_000_000 {
                return Err(BuildError::new(format!(
                    "Interval {what:?} cannot be less than 1ms"
                )));
            }
            Ok(d)
        };
        match k.as_str() {
            "interval" => hc.interval = Some(dur("interval")?),
            "timeout" => hc.timeout = Some(dur("timeout")?),
            "start-period" => hc.start_period = Some(dur("start-period")?),
            "start-interval" => hc.start_interval = Some(dur("start-interval")?),
            "retries" => {
                let r: i64 = v
                    .parse()
                    .map_err(|_| BuildError::new(format!("invalid --retries {v:?}")))?;
                if r < 0 {
                    return Err(BuildError::new("--retries cannot be negative"));
                }
                hc.retries = Some(r);
            }
            other => return Err(BuildError::new(format!("unknown flag: --{other}"))),
        }
    }
    Ok(hc)
}

fn check_platform(p: &str) -> Result<(), BuildError> {
    let os = p.split('/').next().unwrap_or("");
    if !p.is_empty() && os != "linux" {
        return Err(BuildError::new(format!(
            "\"{p}\": unknown operating system or architecture: invalid argument"
        )));
    }
    Ok(())
}

/// The stages the target needs: itself and every stage it reaches through FROM or
/// COPY --from, transitively.
fn needed_stages(df: &dockerfile::Dockerfile, target: usize) -> BTreeSet<usize> {
    let names: Vec<Option<String>> = df.stages.iter().map(|s| s.name.clone()).collect();
    let find = |r: &str| -> Option<usize> {
        names
            .iter()
            .position(|n| n.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(r)))
            .or_else(|| r.parse::<usize>().ok())
    };
    let mut need = BTreeSet::new();
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if !need.insert(i) {
            continue;
        }
        let s = &df.stages[i];
        if let Kind::From { image, .. } = &s.from.kind {
            if let Some(j) = find(image).filter(|j| *j < i) {
                todo.push(j);
            }
        }
        for ins in &s.instructions {
            if let Kind::Copy(CopySpec { from: Some(f), .. }) = &ins.kind {
                if let Some(j) = find(f).filter(|j| *j < i) {
                    todo.push(j);
                }
            }
        }
    }
    need
}

/// Removes what `.dockerignore` excludes from the unpacked context (clients do this
/// already; a raw tar may not have).
fn apply_ignore(root: &Path, rel: &str, p: &berth_context::Patterns) {
    let dir = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let r = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
        if p.excludes(&r) {
            if is_dir && p.may_reinclude_below(&r) {
                apply_ignore(root, &r, p);
            } else if is_dir {
                let _ = std::fs::remove_dir_all(e.path());
            } else {
                let _ = std::fs::remove_file(e.path());
            }
        } else if is_dir {
            apply_ignore(root, &r, p);
        }
    }
}

/// Reads the Dockerfile named by `name` in the context (falling back to
/// `dockerfile`, as dockerd does).
fn read_dockerfile(ctx: &Path, name: &str) -> Result<(String, String), BuildError> {
    let name = if name.is_empty() { "Dockerfile" } else { name };
    let rel = name.trim_start_matches("./").to_string();
    if context::inside(ctx, &rel).is_none() {
        return Err(BuildError::new(format!(
            "Forbidden path outside the build context: {name}"
        )));
    }
    let found = match context::read_in_scope(ctx, &rel) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && name == "Dockerfile" => {
            context::read_in_scope(ctx, "dockerfile").map(|t| (t, "dockerfile".to_string()))
        }
        other => other.map(|t| (t, rel)),
    };
    found.map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidData => {
            BuildError::new(format!("reading the Dockerfile {name}: {e}"))
        }
        _ => BuildError::new(format!("Cannot locate specified Dockerfile: {name}")),
    })
}

/// The ancestors of the `cachefrom` images, the images themselves included: the only
/// images a cache hit may be then, as with dockerd.
async fn cache_from_set(engine: &Engine, refs: &[String]) -> HashSet<String> {
    let mut set = HashSet::new();
    for r in refs {
        let mut next = engine.manager.images_get(r).await.ok();
        while let Some(img) = next.take() {
            if !set.insert(img.id.clone()) || img.parent.is_empty() {
                break;
            }
            next = engine.manager.images_get(&img.parent).await.ok();
        }
    }
    set
}

/// The whole build: context, Dockerfile, stages, tags.
pub async fn run_build(
    engine: &Arc<Engine>,
    opts: &BuildOptions,
    body: mpsc::Receiver<Bytes>,
    out: &Output,
) -> Result<(), BuildError> {
    let root = engine.config.data_root.join("builder").join("tmp");
    let ctx_dir = TempDir::new(&root, "context")
        .map_err(|e| BuildError::new(format!("making a build directory: {e}")))?;
    let tmp = TempDir::new(&root, "work")
        .map_err(|e| BuildError::new(format!("making a build directory: {e}")))?;
    let mut dockerfile_name = opts.dockerfile.clone();
    if !opts.remote.is_empty() {
        drop(body);
        if let Some(n) = context::fetch_remote(&opts.remote, &ctx_dir.path)
            .await
            .map_err(|e| BuildError::new(e.to_string()))?
        {
            dockerfile_name = n;
        }
    } else {
        let dest = ctx_dir.path.clone();
        tokio::task::spawn_blocking(move || context::unpack(context::BodyReader::new(body), &dest))
            .await
            .map_err(|e| BuildError::new(e.to_string()))?
            .map_err(|e| BuildError::new(e.to_string()))?;
    }
    let (text, df_rel) = read_dockerfile(&ctx_dir.path, &dockerfile_name)?;
    let ignore = match context::read_in_scope(&ctx_dir.path, ".dockerignore") {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(BuildError::new(format!("reading .dockerignore: {e}"))),
    };
    if let Some(ignore) = ignore {
        let p =
            berth_context::Patterns::parse(&ignore).map_err(|e| BuildError::new(e.to_string()))?;
        apply_ignore(&ctx_dir.path, "", &p);
        // The Dockerfile and .dockerignore stay only when not excluded.
        let _ = df_rel;
    }
    let mut df = dockerfile::parse(&text).map_err(|e| BuildError::new(e.to_string()))?;
    let target = if opts.target.is_empty() {
        df.stages.len() - 1
    } else {
        df.stages
            .iter()
            .position(|s| {
                s.name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(&opts.target))
            })
            .ok_or_else(|| {
                BuildError::new(format!(
                    "failed to reach build target {} in Dockerfile",
                    opts.target
                ))
            })?
    };
    if !opts.labels.is_empty() {
        let kv: Vec<String> = opts
            .labels
            .iter()
            .map(|(k, v)| format!("{}={}", go_quote(k), go_quote(v)))
            .collect();
        let original = format!("LABEL {}", kv.join(" "));
        df.stages[target].instructions.push(Instruction {
            kind: Kind::Label(
                opts.labels
                    .iter()
                    .map(|(k, v)| (go_quote(k), go_quote(v)))
                    .collect(),
            ),
            original,
            line: 0,
        });
    }
    let need = needed_stages(&df, target);
    let total: usize = need
        .iter()
        .map(|i| 1 + df.stages[*i].instructions.len())
        .sum();
    let mut meta_args = BTreeMap::new();
    for ins in &df.meta_args {
        if let Kind::Arg(args) = &ins.kind {
            for (k, d) in args {
                let env: Env = meta_args
                    .iter()
                    .filter_map(|(k, v): (&String, &Option<String>)| {
                        v.clone().map(|v| (k.clone(), v))
                    })
                    .collect();
                let default = match d {
                    Some(d) => Some(lex::process_word(d, &env, df.escape)?),
                    None => None,
                };
                let v = match opts.build_args.get(k) {
                    Some(Some(v)) => Some(v.clone()),
                    _ => default,
                };
                meta_args.insert(k.clone(), v);
            }
        }
    }
    let cache_allowed = if opts.cache_from.is_empty() {
        None
    } else {
        Some(cache_from_set(engine, &opts.cache_from).await)
    };
    let mut b = Builder {
        engine,
        opts,
        out,
        ctx: ctx_dir.path.clone(),
        tmp: &tmp,
        cache: super::cache(engine),
        cache_allowed,
        escape: df.escape,
        meta_args,
        used_args: HashSet::new(),
        stage_images: vec![None; df.stages.len()],
        stage_names: df.stages.iter().map(|s| s.name.clone()).collect(),
        image_fs: HashMap::new(),
        containers: vec![],
        step: 0,
        total,
        files: 0,
    };
    let result = async {
        let mut last = String::new();
        for (i, stage) in df.stages.iter().enumerate() {
            if !need.contains(&i) {
                continue;
            }
            b.step_line(&stage.from).await?;
            let mut st = b.from(&stage.from).await?;
            for ins in &stage.instructions {
                b.step_line(ins).await?;
                b.dispatch(&mut st, ins).await?;
                b.out.stream(&format!(" ---> {}\n", short(&st.image))).await;
            }
            b.stage_images[i] = Some(st.image.clone());
            last = st.image.clone();
            if i == target {
                break;
            }
        }
        Ok::<_, BuildError>(last)
    }
    .await;
    // dockerd keeps a failed step's container unless `forcerm`; berth removes it with
    // `rm` too (the default), so a failed build leaves nothing behind.
    if b.opts.force_rm || b.opts.rm {
        b.remove_containers().await;
    }
    let image = result?;
    if image.is_empty() {
        return Err(BuildError::new(
            "No image was generated. Is your Dockerfile empty?",
        ));
    }
    let unused: Vec<String> = opts
        .build_args
        .keys()
        .filter(|k| !b.used_args.contains(*k) && !PROXY_ARGS.contains(&k.as_str()))
        .cloned()
        .collect();
    if !unused.is_empty() {
        out.stream(&format!(
            "[Warning] One or more build-args [{}] were not consumed\n",
            unused.join(" ")
        ))
        .await;
    }
    out.always(serde_json::json!({"aux": {"ID": image}})).await;
    out.stream(&format!("Successfully built {}\n", short(&image)))
        .await;
    // A rebuild that changed nothing finds its names in place: no write then.
    let names: Vec<String> = if opts.tags.is_empty() {
        vec![]
    } else {
        engine
            .manager
            .images_get(&image)
            .await
            .map(|i| i.names.iter().map(|n| familiar(n)).collect())
            .unwrap_or_default()
    };
    for t in &opts.tags {
        let reference = if t.rsplit('/').next().is_some_and(|l| l.contains(':')) || t.contains('@')
        {
            t.clone()
        } else {
            format!("{t}:latest")
        };
        if !names.contains(&familiar(&reference)) {
            engine.manager.images_tag(&image, &reference).await?;
        }
        engine.event_hub.publish(
            crate::events::DockerEvent::now("image", "tag", &image)
                .attr("name", familiar(&reference)),
        );
        out.stream(&format!("Successfully tagged {}\n", familiar(&reference)))
            .await;
    }
    if opts.quiet {
        out.always(serde_json::json!({"stream": format!("{image}\n")}))
            .await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_like_go() {
        assert_eq!(parse_duration("30s"), Some(30_000_000_000));
        assert_eq!(parse_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_duration("500ms"), Some(500_000_000));
        assert_eq!(parse_duration("x"), None);
        assert_eq!(go_duration(30_000_000_000), "30s");
        assert_eq!(go_duration(90_000_000_000), "1m30s");
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_char(3), "'\\x03'");
        assert_eq!(
            go_quote_list(&["a".into(), "b c".into()]),
            "[\"a\" \"b c\"]"
        );
    }

    #[test]
    fn ports_and_paths() {
        assert_eq!(
            port_specs(&["80".into(), "90/udp".into(), "1-2".into()]).unwrap(),
            vec!["80/tcp", "90/udp", "1/tcp", "2/tcp"]
        );
        assert!(port_specs(&["x".into()]).is_err());
        assert_eq!(clean_abs("/a/./b/../c/"), "/a/c");
        assert_eq!(clean_abs("/"), "/");
    }

    #[test]
    fn stages_needed_by_the_target() {
        let df = dockerfile::parse(
            "FROM busybox AS a\nRUN x\nFROM busybox AS b\nRUN y\nFROM busybox AS c\nCOPY --from=a /x /x\n",
        )
        .unwrap();
        assert_eq!(needed_stages(&df, 2), [0, 2].into_iter().collect());
        assert_eq!(needed_stages(&df, 1), [1].into_iter().collect());
    }

    #[test]
    fn heredoc_variables() {
        let env: Env = [("A".to_string(), "1".to_string())].into_iter().collect();
        assert_eq!(expand_vars("x $A ${A}y $B $", &env), "x 1 1y  $");
    }
}
