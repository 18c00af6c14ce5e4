//! The manager's image-moving and event RPCs, as a supertrait of [`Manager`](super::Manager)
//! kept in its own file: `Images.Pull/Push/Import/Load/Save/Tag/Delete/Commit/Prune/Login`
//! and `Events.Subscribe`.
//!
//! Streams cross the seam as channels: what the manager streams back arrives on an
//! `mpsc::Receiver` that ends after the last message (an `Err` item is the stream's
//! failure); what the engine streams to the manager (a tar being imported or loaded)
//! is handed over as a receiver of chunks that ends with the body.

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

use super::{Image, Unreachable};
use crate::error::EngineError;

/// A stream the manager sends back.
pub type Updates<T> = mpsc::Receiver<Result<T, EngineError>>;

pub use berth_api::berth::manager::v1::{
    Auth, CommitRequest, DeleteImageResponse, Envelope, LayerProgress, PruneImagesResponse,
};

/// One message of `Images.Pull`, as the stream uses them: layer progress, then the
/// image last.
#[derive(Debug, Clone, PartialEq)]
pub enum PullUpdate {
    Layer(LayerProgress),
    /// The last message: the image pulled.
    Done(Box<Image>),
}

/// One message of `Images.Push`: layer progress, then the manifest digest last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushUpdate {
    Layer(LayerProgress),
    /// The last message: the manifest digest pushed.
    Done {
        digest: String,
    },
}

/// One message of `Images.Load`: layer progress, and each image loaded.
#[derive(Debug, Clone, PartialEq)]
pub enum LoadUpdate {
    Layer(LayerProgress),
    /// One per image loaded, with the names the archive gave it (normalized).
    Image {
        image: Box<Image>,
        archive_names: Vec<String>,
    },
}

/// The image and event RPCs of berth-manager.
#[async_trait]
pub trait ImageManager: Send + Sync {
    /// `Images.Pull`.
    async fn images_pull(
        &self,
        reference: &str,
        auth: Auth,
    ) -> Result<Updates<PullUpdate>, EngineError>;
    /// `Images.Push`.
    async fn images_push(
        &self,
        reference: &str,
        auth: Auth,
    ) -> Result<Updates<PushUpdate>, EngineError>;
    /// `Images.Import` of the tar that `data` brings.
    async fn images_import(
        &self,
        reference: &str,
        changes: Vec<String>,
        message: &str,
        data: mpsc::Receiver<Bytes>,
    ) -> Result<Image, EngineError>;
    /// `Images.Load` of the archive that `data` brings.
    async fn images_load(
        &self,
        data: mpsc::Receiver<Bytes>,
    ) -> Result<Updates<LoadUpdate>, EngineError>;
    /// `Images.Save` (format "docker").
    async fn images_save(&self, references: Vec<String>) -> Result<Updates<Bytes>, EngineError>;
    /// `Images.Tag`.
    async fn images_tag(&self, source: &str, target: &str) -> Result<Image, EngineError>;
    /// `Images.Delete`.
    async fn images_delete(
        &self,
        reference: &str,
        force: bool,
        no_prune: bool,
    ) -> Result<DeleteImageResponse, EngineError>;
    /// `Images.Commit`; with `pause`, the container is frozen (`Tasks.Pause`) while
    /// its layer is read and thawed after (only for a running container).
    async fn images_commit(&self, req: CommitRequest, pause: bool) -> Result<Image, EngineError>;
    /// `Images.Prune`.
    async fn images_prune(
        &self,
        all: bool,
        filters: Vec<String>,
    ) -> Result<PruneImagesResponse, EngineError>;
    /// `Images.Login`: check credentials against `server` (docker login); the
    /// identity token the registry gave, or "".
    async fn images_login(&self, server: &str, auth: Auth) -> Result<String, EngineError>;
    /// `Events.Subscribe`.
    async fn events_subscribe(
        &self,
        filters: Vec<String>,
    ) -> Result<Updates<Envelope>, EngineError>;
}

#[async_trait]
impl ImageManager for Unreachable {
    async fn images_pull(&self, _: &str, _: Auth) -> Result<Updates<PullUpdate>, EngineError> {
        self.err()
    }
    async fn images_push(&self, _: &str, _: Auth) -> Result<Updates<PushUpdate>, EngineError> {
        self.err()
    }
    async fn images_import(
        &self,
        _: &str,
        _: Vec<String>,
        _: &str,
        _: mpsc::Receiver<Bytes>,
    ) -> Result<Image, EngineError> {
        self.err()
    }
    async fn images_load(
        &self,
        _: mpsc::Receiver<Bytes>,
    ) -> Result<Updates<LoadUpdate>, EngineError> {
        self.err()
    }
    async fn images_save(&self, _: Vec<String>) -> Result<Updates<Bytes>, EngineError> {
        self.err()
    }
    async fn images_tag(&self, _: &str, _: &str) -> Result<Image, EngineError> {
        self.err()
    }
    async fn images_delete(
        &self,
        _: &str,
        _: bool,
        _: bool,
    ) -> Result<DeleteImageResponse, EngineError> {
        self.err()
    }
    async fn images_commit(&self, _: CommitRequest, _: bool) -> Result<Image, EngineError> {
        self.err()
    }
    async fn images_prune(
        &self,
        _: bool,
        _: Vec<String>,
    ) -> Result<PruneImagesResponse, EngineError> {
        self.err()
    }
    async fn images_login(&self, _: &str, _: Auth) -> Result<String, EngineError> {
        self.err()
    }
    async fn events_subscribe(&self, _: Vec<String>) -> Result<Updates<Envelope>, EngineError> {
        self.err()
    }
}
