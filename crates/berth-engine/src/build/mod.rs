//! The classic builder: `POST /build` as dockerd's legacy builder serves it.
//!
//! The request's context is unpacked into a private directory ([`context`]), the
//! Dockerfile parsed ([`dockerfile`], with `parse-dockerfile`), words expanded with
//! Docker's rules ([`lex`]), and each instruction of the stages the target needs is
//! run in order ([`steps`]): config-only instructions become a new image with an
//! empty layer, COPY/ADD/WORKDIR write into a fresh layer, and RUN is an ordinary
//! container whose changes are committed ([`runner`]). Every step is looked up in
//! the on-disk cache first ([`cache`]). Progress goes back as dockerd's JSON stream
//! (`{"stream": ...}` lines, `{"aux": {"ID": ...}}`, `{"errorDetail": ...}`).

pub mod cache;
pub mod context;
mod copy;
pub mod dockerfile;
pub mod http;
pub mod lex;
mod runner;
mod steps;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde_json::json;
use tokio::sync::mpsc;

use crate::engine::Engine;

pub use steps::run_build;

/// A build's parameters (the query of `POST /build`).
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    pub tags: Vec<String>,
    pub dockerfile: String,
    pub quiet: bool,
    pub no_cache: bool,
    pub rm: bool,
    pub force_rm: bool,
    pub pull: bool,
    /// `--build-arg`: a value, or None to take it from... nowhere (declared only).
    pub build_args: BTreeMap<String, Option<String>>,
    pub labels: BTreeMap<String, String>,
    pub target: String,
    pub shm_size: Option<i64>,
    pub memory: Option<i64>,
    pub memswap: Option<i64>,
    pub cpu_shares: Option<i64>,
    pub cpuset_cpus: Option<String>,
    pub cpu_period: Option<i64>,
    pub cpu_quota: Option<i64>,
    pub extra_hosts: Vec<String>,
    pub network_mode: String,
    pub cache_from: Vec<String>,
    pub remote: String,
    pub platform: String,
}

/// Where a build writes its progress: dockerd's JSON lines on a streamed answer.
/// With `quiet`, lines are kept back and only shown if the build fails.
#[derive(Debug)]
pub struct Output {
    tx: mpsc::Sender<Bytes>,
    quiet: bool,
    held: Mutex<Vec<Bytes>>,
    /// Until the first line goes out, a failure is told here instead, so that the
    /// handler can answer with an HTTP error as dockerd does (the response has not
    /// begun); the first line drops it.
    early: Mutex<Option<tokio::sync::oneshot::Sender<BuildError>>>,
}

fn line(v: serde_json::Value) -> Bytes {
    let mut s = v.to_string().into_bytes();
    s.extend_from_slice(b"\r\n");
    Bytes::from(s)
}

impl Output {
    /// The output, and what resolves with a failure that came before any line
    /// (or is cancelled once a line went out or the build succeeded).
    pub fn new(
        tx: mpsc::Sender<Bytes>,
        quiet: bool,
    ) -> (Output, tokio::sync::oneshot::Receiver<BuildError>) {
        let (early, rx) = tokio::sync::oneshot::channel();
        let out = Output {
            tx,
            quiet,
            held: Mutex::new(vec![]),
            early: Mutex::new(Some(early)),
        };
        (out, rx)
    }

    fn take_early(&self) -> Option<tokio::sync::oneshot::Sender<BuildError>> {
        self.early.lock().ok().and_then(|mut e| e.take())
    }

    async fn send(&self, b: Bytes) {
        drop(self.take_early());
        let _ = self.tx.send(b).await;
    }

    /// A `{"stream": text}` line.
    pub async fn stream(&self, text: &str) {
        let l = line(json!({ "stream": text }));
        if self.quiet {
            if let Ok(mut h) = self.held.lock() {
                h.push(l);
            }
            return;
        }
        self.send(l).await;
    }

    /// A line that quiet builds show too.
    pub async fn always(&self, v: serde_json::Value) {
        self.send(line(v)).await;
    }

    /// The failure: what quiet held back, then `errorDetail`.
    pub async fn error(&self, message: &str, code: Option<i64>) {
        let held: Vec<Bytes> = self
            .held
            .lock()
            .map(|mut h| std::mem::take(&mut *h))
            .unwrap_or_default();
        for l in held {
            self.send(l).await;
        }
        let detail = match code {
            Some(c) => json!({ "code": c, "message": message }),
            None => json!({ "message": message }),
        };
        self.send(line(json!({ "errorDetail": detail, "error": message })))
            .await;
    }

    /// Whether the client has gone away.
    pub fn cancelled(&self) -> bool {
        self.tx.is_closed()
    }

    /// Resolves when the client goes away.
    pub async fn closed(&self) {
        self.tx.closed().await
    }
}

/// The build-cache directory.
pub fn cache(engine: &Engine) -> cache::Cache {
    cache::Cache::new(&engine.config.data_root.join("builder").join("cache"))
}

/// Runs a build, writing its progress to `out`.
pub async fn build(
    engine: Arc<Engine>,
    opts: BuildOptions,
    body: mpsc::Receiver<Bytes>,
    out: Output,
) {
    if let Err(e) = run_build(&engine, &opts, body, &out).await {
        tracing::info!(error = %e.message, "build failed");
        let held = out.held.lock().map(|h| !h.is_empty()).unwrap_or(true);
        let e = match out.take_early() {
            // Nothing written, nothing held back (quiet): an HTTP error.
            Some(early) if !held => match early.send(e) {
                Ok(()) => return,
                Err(e) => e,
            },
            _ => e,
        };
        if !out.cancelled() {
            out.error(&e.message, e.code).await;
        }
    }
}

/// Why a build failed: the message dockerd gives, and the exit code for a failed RUN.
#[derive(Debug, Clone)]
pub struct BuildError {
    pub message: String,
    pub code: Option<i64>,
}

impl BuildError {
    pub fn new(m: impl Into<String>) -> BuildError {
        BuildError {
            message: m.into(),
            code: None,
        }
    }
}

impl From<crate::error::EngineError> for BuildError {
    fn from(e: crate::error::EngineError) -> Self {
        BuildError::new(e.message())
    }
}

impl From<lex::LexError> for BuildError {
    fn from(e: lex::LexError) -> Self {
        BuildError::new(e.to_string())
    }
}
