//! The manager RPCs that only builds use, as a supertrait of
//! [`Manager`](super::Manager) kept in its own file: preparing a bare writable
//! snapshot (a `FROM scratch` step) and writing files into one (`COPY`, `ADD`,
//! `WORKDIR`).

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

use super::Unreachable;
use crate::error::EngineError;

/// `Snapshots.CopyIn`'s first message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyIn {
    pub key: String,
    /// The directory the tar's entries go under (absolute in the root).
    pub dest: String,
    /// The tar holds one file that becomes `dest` unless `dest` is a directory.
    pub dest_is_file: bool,
    /// Owner of the directories made on the way.
    pub uid: u32,
    pub gid: u32,
}

/// The build RPCs of berth-manager.
#[async_trait]
pub trait BuildManager: Send + Sync {
    /// `Snapshots.Prepare` (parent "" = an empty writable snapshot).
    async fn snapshots_prepare(&self, key: &str, parent: &str) -> Result<(), EngineError>;
    /// `Snapshots.CopyIn` of the tar that `data` brings.
    async fn snapshots_copy_in(
        &self,
        req: CopyIn,
        data: mpsc::Receiver<Bytes>,
    ) -> Result<(), EngineError>;
}

#[async_trait]
impl BuildManager for Unreachable {
    async fn snapshots_prepare(&self, _: &str, _: &str) -> Result<(), EngineError> {
        self.err()
    }
    async fn snapshots_copy_in(
        &self,
        _: CopyIn,
        _: mpsc::Receiver<Bytes>,
    ) -> Result<(), EngineError> {
        self.err()
    }
}
