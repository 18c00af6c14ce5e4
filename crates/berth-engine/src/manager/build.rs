//! The manager RPCs that only builds use, as a supertrait of
//! [`Manager`](super::Manager) kept in its own file: preparing a bare writable
//! snapshot (a `FROM scratch` step) and writing files into one (`COPY`, `ADD`,
//! `WORKDIR`).

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

use super::Unreachable;
use crate::error::EngineError;

/// `Snapshots.CopyIn`'s first message (its `data` is left empty: the tar follows as
/// the channel `snapshots_copy_in` takes).
pub use berth_api::berth::manager::v1::CopyInRequest as CopyIn;

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
