//! What a build step needs from the engine and the manager, as small functions over
//! their existing paths, so that the builder follows the container life cycle
//! wherever it lives: RUN is an ordinary container (create, attach, start, wait,
//! remove through the engine, manager, shim and runtime); COPY, ADD and WORKDIR write
//! into a bare manager container's snapshot; every step ends in the manager's
//! commit.

use std::sync::Arc;

use bollard_stubs::models::{ContainerConfig, HostConfig};

use super::Output;
use crate::api::containers::{self as containers, CreateBody};
use crate::engine::{ContainerEvent, Engine};
use crate::error::EngineError;
use crate::manager::build::CopyIn;
use crate::manager::images::CommitRequest;
use crate::manager::{self, StdStream};

/// How a RUN container ended.
#[derive(Debug)]
pub enum RunEnd {
    Exited(i64),
    /// The client went away: the container was killed.
    Cancelled,
}

/// Creates the RUN container on `image` (named like any other, as docker's
/// intermediate containers are).
pub async fn create(
    engine: &Arc<Engine>,
    image: &str,
    mut config: ContainerConfig,
    host_config: HostConfig,
) -> Result<String, EngineError> {
    config.image = Some(image.to_string());
    let body = CreateBody {
        config,
        host_config: Some(host_config),
        networking_config: None,
        runtime: None,
    };
    Ok(containers::create_container(engine, None, body).await?.id)
}

/// Starts the container, streams its output to `out` as it comes (stderr marked as
/// dockerd marks it), and waits for its exit. A client that goes away kills it.
pub async fn run(engine: &Arc<Engine>, id: &str, out: &Output) -> Result<RunEnd, EngineError> {
    let mut streams = engine.manager.tasks_attach(id, "").await?;
    let mut events = engine.events.subscribe();
    crate::lifecycle::start(engine, id).await?;
    let mut output_done = false;
    let mut code = None;
    loop {
        if output_done && code.is_some() {
            break;
        }
        tokio::select! {
            chunk = streams.output.recv(), if !output_done => match chunk {
                Some(c) => {
                    let text = String::from_utf8_lossy(&c.data).into_owned();
                    match c.stream {
                        StdStream::Stdout => out.stream(&text).await,
                        StdStream::Stderr => out.stream(&format!("\u{1b}[91m{text}\u{1b}[0m")).await,
                    }
                }
                None => output_done = true,
            },
            ev = events.recv(), if code.is_none() => match ev {
                Ok(ContainerEvent::Exited { id: x, code: c, .. }) if x == id => {
                    code = Some(c);
                    // Output still queued arrives before the attach ends; give it a
                    // moment and no more.
                    if !output_done {
                        let drain = async {
                            while let Some(c) = streams.output.recv().await {
                                let text = String::from_utf8_lossy(&c.data).into_owned();
                                match c.stream {
                                    StdStream::Stdout => out.stream(&text).await,
                                    StdStream::Stderr => {
                                        out.stream(&format!("\u{1b}[91m{text}\u{1b}[0m")).await
                                    }
                                }
                            }
                        };
                        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), drain).await;
                        output_done = true;
                    }
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    // A missed exit shows in the store.
                    if let Ok(r) = engine.store.get(id) {
                        if r.state.running != Some(true) && r.state.finished_at.as_deref().is_some_and(|f| !f.starts_with("0001")) {
                            code = Some(r.state.exit_code.unwrap_or(0));
                        }
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    return Err(EngineError::io("waiting for a build container", std::io::Error::other("the engine is shutting down")));
                }
            },
            _ = out.closed() => {
                // SIGKILL through the state machine answers once the exit is recorded.
                let _ = crate::lifecycle::kill(engine, id, 9).await;
                return Ok(RunEnd::Cancelled);
            }
        }
    }
    Ok(RunEnd::Exited(code.unwrap_or(0)))
}

/// Removes a build container and everything it had (record, task, snapshot).
pub async fn remove(engine: &Arc<Engine>, id: &str) {
    if let Err(e) = crate::lifecycle::remove(engine, id, true).await {
        tracing::warn!(container = id, error = %e, "removing a build container");
    }
    // A build answers with nothing of its containers left, their layers too.
    engine.removals_settled().await;
}

/// Commits a container's changes (RUN) or a config-only step (`container` None) as
/// a new image on `parent`.
pub async fn commit(
    engine: &Engine,
    container: Option<&str>,
    parent: &str,
    config: serde_json::Value,
    created_by: &str,
    author: &str,
) -> Result<manager::Image, EngineError> {
    engine
        .manager
        .images_commit(
            CommitRequest {
                container_id: container.unwrap_or("").to_string(),
                config: config.to_string().into_bytes(),
                parent: parent.to_string(),
                created_by: created_by.to_string(),
                author: author.to_string(),
                exclude: crate::api::container_ops::MOUNT_POINTS
                    .iter()
                    .map(|p| p.to_string())
                    .collect(),
                ..CommitRequest::default()
            },
            false,
        )
        .await
}

/// A manager container (no engine record, never started) whose snapshot files are
/// written into: the rw layer of COPY, ADD and WORKDIR.
pub struct Scratch<'a> {
    engine: &'a Engine,
    pub id: String,
    removed: bool,
}

impl<'a> Scratch<'a> {
    pub async fn new(engine: &'a Engine, image: &str) -> Result<Scratch<'a>, EngineError> {
        let id = format!(
            "build-{}",
            &crate::fsutil::random_id().map_err(|e| EngineError::io("reading /dev/urandom", e))?
                [..24]
        );
        let mut c = manager::Container {
            id: id.clone(),
            image: image.to_string(),
            created_at: crate::lifecycle::now_rfc3339(),
            ..manager::Container::default()
        };
        if image.is_empty() {
            // FROM scratch: an empty snapshot of its own.
            engine.manager.snapshots_prepare(&id, "").await?;
            c.snapshot_key = id.clone();
        }
        if let Err(e) = engine.manager.containers_create(c).await {
            if image.is_empty() {
                let _ = engine.manager.containers_delete(&id, false).await;
            }
            return Err(e);
        }
        Ok(Scratch {
            engine,
            id,
            removed: false,
        })
    }

    /// Writes a tar into the snapshot.
    pub async fn copy_in(
        &self,
        dest: &str,
        dest_is_file: bool,
        owner: (u32, u32),
        tar: std::path::PathBuf,
    ) -> Result<(), EngineError> {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let Ok(mut f) = std::fs::File::open(&tar) else {
                return;
            };
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                match f.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if tx
                            .blocking_send(bytes::Bytes::copy_from_slice(&buf[..n]))
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            }
        });
        self.engine
            .manager
            .snapshots_copy_in(
                CopyIn {
                    key: self.id.clone(),
                    dest: dest.to_string(),
                    dest_is_file,
                    uid: owner.0,
                    gid: owner.1,
                    ..CopyIn::default()
                },
                rx,
            )
            .await
    }

    pub async fn remove(mut self) {
        self.removed = true;
        if let Err(e) = self.engine.manager.containers_delete(&self.id, false).await {
            tracing::warn!(container = %self.id, error = %e, "removing a build layer");
        }
    }
}

impl Drop for Scratch<'_> {
    fn drop(&mut self) {
        if !self.removed {
            // A failed or cancelled step: remove it in the background.
            let manager = self.engine.manager.clone();
            let id = self.id.clone();
            tokio::spawn(async move {
                let _ = manager.containers_delete(&id, false).await;
            });
        }
    }
}
