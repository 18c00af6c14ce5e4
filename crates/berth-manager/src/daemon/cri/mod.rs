//! Kubernetes' Container Runtime Interface (CRI v1): `runtime.v1.RuntimeService`
//! and `runtime.v1.ImageService`, served on their own unix socket beside the
//! manager's API when enabled (`--cri` or `"cri": {"enabled": true}` in the config
//! file). They share the manager's [`Daemon`]: its store, snapshots, shims and
//! tasks, so an image pulled through either side is the other's too.
//!
//! What is served and what is not yet is listed in docs/cri.md.
//!
//! What it must never do: go through berthd or the Docker API, or keep state only
//! in memory (kubelet expects every answer to survive a restart).

// Numbers here come from requests: no narrowing `as`.
#![deny(clippy::cast_possible_truncation)]

pub mod authority;
mod cni;
mod containers;
mod images;
mod pause;
mod runtime;
mod sandbox;
mod spec;
mod streaming;

use std::path::PathBuf;
use std::sync::Arc;

use berth_cri_api::runtime::v1::image_service_server::ImageServiceServer;
use berth_cri_api::runtime::v1::runtime_service_server::RuntimeServiceServer;

use super::config::CriConfig;
use super::core::Daemon;

/// Largest CRI message accepted or sent (kubelet's own limit is 16 MiB).
const MAX_MESSAGE: usize = 16 << 20;

/// The CRI services' handle on the daemon.
#[derive(Debug, Clone)]
pub struct Cri {
    d: Arc<Daemon>,
    cfg: Arc<CriConfig>,
    /// `<state>/cri`: the pods' pinned namespaces and files.
    state: PathBuf,
    /// The streaming server's URLs and pending requests (Exec, Attach,
    /// PortForward).
    streams: Arc<streaming::Streams>,
}

impl Cri {
    /// The CRI server on `d`, keeping its run-time files under `state` (made a
    /// private mount point, so that pinned namespaces can live under it).
    pub fn new(d: Arc<Daemon>, cfg: CriConfig, state: PathBuf) -> anyhow::Result<Cri> {
        use anyhow::Context as _;
        sandbox::private_mount_point(&state.join("sandboxes"))
            .context("preparing the CRI state directory")?;
        sandbox::reconcile(&d.db).context("checking the CRI pod sandboxes")?;
        let (streams, listener) = streaming::Streams::bind(cfg.stream_address, cfg.stream_port)?;
        let cri = Cri {
            d,
            cfg: Arc::new(cfg),
            state,
            streams: Arc::new(streams),
        };
        streaming::spawn(cri.clone(), listener)?;
        Ok(cri)
    }

    /// Follow the containers that run again, and drop what a create cut short left
    /// (after the manager has found its tasks again).
    pub async fn recover(&self) {
        if let Err(e) = self.reconcile_containers().await {
            tracing::warn!("CRI: checking the containers: {}", e.message());
        }
        if let Err(e) = self.reconcile_pauses().await {
            tracing::warn!("CRI: checking the pods' pause processes: {}", e.message());
        }
    }

    /// Both CRI services, ready for a tonic router.
    pub fn services(&self) -> (RuntimeServiceServer<Cri>, ImageServiceServer<Cri>) {
        (
            RuntimeServiceServer::new(self.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            ImageServiceServer::new(self.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        )
    }
}
