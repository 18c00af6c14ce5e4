//! The manager's image-moving and event RPCs, as a supertrait of [`Manager`](super::Manager)
//! kept in its own file: `Images.Pull/Push/Import/Load/Save/Tag/Delete/Commit/Prune`
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

/// Progress of one layer (`berth.manager.v1.LayerProgress`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerProgress {
    pub digest: String,
    /// "waiting", "downloading", "verifying", "extracting", "done", "exists",
    /// "pushing", "pushed", "loading".
    pub status: String,
    pub current: i64,
    pub total: i64,
}

/// One message of `Images.Pull`.
#[derive(Debug, Clone, PartialEq)]
pub enum PullUpdate {
    Layer(LayerProgress),
    /// The last message: the image pulled.
    Done(Box<Image>),
}

/// One message of `Images.Push`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushUpdate {
    Layer(LayerProgress),
    /// The last message: the manifest digest pushed.
    Done {
        digest: String,
    },
}

/// One message of `Images.Load`.
#[derive(Debug, Clone, PartialEq)]
pub enum LoadUpdate {
    Layer(LayerProgress),
    /// One per image loaded.
    Image(Box<Image>),
}

/// Registry credentials (`berth.manager.v1.Auth`); empty means anonymous.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Auth {
    pub username: String,
    pub password: String,
    pub identity_token: String,
}

/// `Images.Commit`'s request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitRequest {
    pub container_id: String,
    /// "" = untagged.
    pub reference: String,
    pub author: String,
    pub comment: String,
    /// Dockerfile-like changes ("CMD [...]", "ENV K=V", ...).
    pub changes: Vec<String>,
    /// The config to start from as JSON; empty = the image's.
    pub config: Vec<u8>,
    /// Freeze the container (`Tasks.Pause`) while its layer is read, and thaw it
    /// after; only for a running container.
    pub pause: bool,
    /// A config-only build step: with no container, the image to put it on ("" =
    /// nothing, FROM scratch).
    pub parent: String,
    /// The history entry's created_by ("" = the container's command).
    pub created_by: String,
    /// The engine's mount points, left out of the layer where they were only added.
    pub exclude: Vec<String>,
}

/// What `Images.Delete` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteResult {
    pub untagged: Vec<String>,
    pub deleted: Vec<String>,
}

/// What `Images.Prune` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneResult {
    pub deleted: Vec<String>,
    pub space_reclaimed: i64,
}

/// What an event is about (the `oneof event` of `berth.manager.v1.Envelope`), with the
/// fields the engine uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    ContainerCreate {
        id: String,
        image: String,
    },
    ContainerDelete {
        id: String,
    },
    TaskStart {
        id: String,
        pid: u32,
    },
    TaskExit {
        id: String,
        exec_id: String,
        pid: u32,
        exit_status: u32,
        oom_killed: bool,
        exited_at: String,
        reason: String,
    },
    TaskOom {
        id: String,
    },
    TaskPaused {
        id: String,
    },
    TaskResumed {
        id: String,
    },
    TaskExecAdded {
        id: String,
        exec_id: String,
    },
    TaskExecStarted {
        id: String,
        exec_id: String,
    },
    ImageCreate {
        name: String,
        id: String,
    },
    ImageUpdate {
        name: String,
        id: String,
    },
    ImageDelete {
        name: String,
        id: String,
    },
    /// Something the engine has no use for (task create/delete, container update).
    Other,
}

/// One event from `Events.Subscribe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerEvent {
    /// RFC 3339 with nanoseconds.
    pub timestamp: String,
    /// "/tasks/exit", "/images/create", ...
    pub topic: String,
    pub kind: EventKind,
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
    ) -> Result<DeleteResult, EngineError>;
    /// `Images.Commit`.
    async fn images_commit(&self, req: CommitRequest) -> Result<Image, EngineError>;
    /// `Images.Prune`.
    async fn images_prune(
        &self,
        all: bool,
        filters: Vec<String>,
    ) -> Result<PruneResult, EngineError>;
    /// `Events.Subscribe`.
    async fn events_subscribe(
        &self,
        filters: Vec<String>,
    ) -> Result<Updates<ManagerEvent>, EngineError>;
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
    async fn images_delete(&self, _: &str, _: bool, _: bool) -> Result<DeleteResult, EngineError> {
        self.err()
    }
    async fn images_commit(&self, _: CommitRequest) -> Result<Image, EngineError> {
        self.err()
    }
    async fn images_prune(&self, _: bool, _: Vec<String>) -> Result<PruneResult, EngineError> {
        self.err()
    }
    async fn events_subscribe(&self, _: Vec<String>) -> Result<Updates<ManagerEvent>, EngineError> {
        self.err()
    }
}
