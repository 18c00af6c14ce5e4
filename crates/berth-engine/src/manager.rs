//! The seam between the engine and berth-manager.
//!
//! The engine calls the [`Manager`] trait; its methods are named after the manager's
//! gRPC RPCs (proto/berth/manager/v1) and take and give the generated messages
//! (`berth_api`), so the real client, [`grpc::GrpcManager`], is a thin adapter over
//! the generated tonic clients. Streams cross the seam as channels ([`AttachStreams`],
//! [`ByteStream`]). Tests use the fake manager (`fake`, behind the `fake-manager`
//! feature); [`Unreachable`] answers every call with a clear "cannot reach
//! berth-manager" error.

pub mod build;
#[cfg(any(test, feature = "fake-manager"))]
pub mod fake;
pub mod grpc;
pub mod images;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::error::EngineError;

// The manager's messages, as generated from proto/berth/manager/v1: the seam speaks
// them as they are, so a field added to the proto reaches the engine without a copy
// to keep in step.
pub use berth_api::berth::manager::v1::{
    Change, Container, ExitStatus, Image, Layer, SnapshotInfo, StdStream, Task, TaskStatus,
    VersionResponse,
};

/// A piece of a process's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputChunk {
    pub stream: StdStream,
    pub data: Bytes,
}

/// What the client sends towards a process's stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StdinMsg {
    Data(Bytes),
    /// The client closed its side: close the process's stdin.
    Close,
}

/// A live connection to a process's stdio (the `Tasks.Attach` stream). The output
/// channel ends when the process's output does; stdin is `None` when the process
/// has no stdin open.
#[derive(Debug)]
pub struct AttachStreams {
    pub output: mpsc::Receiver<OutputChunk>,
    pub stdin: Option<mpsc::Sender<StdinMsg>>,
}

/// A stream of data from the manager (an export): chunks in order, then the end of
/// the channel; a failure part-way is the last item.
pub type ByteStream = mpsc::Receiver<Result<Bytes, EngineError>>;

/// The operations the engine needs from berth-manager, one per RPC.
#[async_trait]
pub trait Manager:
    Send + Sync + std::fmt::Debug + images::ImageManager + build::BuildManager
{
    /// `Version.Version`.
    async fn version(&self) -> Result<VersionResponse, EngineError>;
    /// `Images.List`.
    async fn images_list(&self, filters: Vec<String>) -> Result<Vec<Image>, EngineError>;
    /// `Images.Get`: by reference, id or id prefix.
    async fn images_get(&self, reference: &str) -> Result<Image, EngineError>;
    async fn containers_create(&self, container: Container) -> Result<Container, EngineError>;
    /// `Containers.Get`.
    async fn containers_get(&self, id: &str) -> Result<Container, EngineError>;
    /// `Containers.List`, with the manager's filters (`label=<k>[=<v>]`, ...),
    /// without the containers' specs.
    async fn containers_list(&self, filters: Vec<String>) -> Result<Vec<Container>, EngineError>;
    /// `Containers.Update` of the fields named in `mask` ("spec", "labels", ...).
    async fn containers_update(
        &self,
        container: Container,
        mask: Vec<String>,
    ) -> Result<Container, EngineError>;
    /// `Containers.Delete`.
    async fn containers_delete(&self, id: &str, keep_snapshot: bool) -> Result<(), EngineError>;
    /// `Tasks.Create`: returns the init's pid. With `spec`, the container's spec
    /// is replaced first, in the same request. With `start`, the init is started
    /// too (no `Tasks.Start` follows), its output held for the attaches made
    /// before, which connect as the answer comes.
    async fn tasks_create(
        &self,
        id: &str,
        stdin: bool,
        spec: Option<Vec<u8>>,
        start: bool,
    ) -> Result<u32, EngineError>;
    /// `Tasks.Start` (exec_id "" = the init).
    async fn tasks_start(&self, id: &str, exec_id: &str) -> Result<u32, EngineError>;
    /// `Tasks.Kill`.
    async fn tasks_kill(
        &self,
        id: &str,
        exec_id: &str,
        signal: u32,
        all: bool,
    ) -> Result<(), EngineError>;
    /// `Tasks.Delete`.
    async fn tasks_delete(&self, id: &str, force: bool) -> Result<ExitStatus, EngineError>;
    /// `Tasks.Wait`.
    async fn tasks_wait(&self, id: &str, exec_id: &str) -> Result<ExitStatus, EngineError>;
    /// `Tasks.DeleteProcess`: an exec'd process that has exited is forgotten by the
    /// manager and its shim (which keep every exec until then). Managers without
    /// shims have nothing to forget.
    async fn tasks_delete_process(
        &self,
        _id: &str,
        _exec_id: &str,
    ) -> Result<ExitStatus, EngineError> {
        Ok(ExitStatus::default())
    }
    /// `Tasks.Get`.
    async fn tasks_get(&self, id: &str) -> Result<Task, EngineError>;
    /// `Tasks.List`: every task the manager has, with the exit of those that
    /// stopped.
    async fn tasks_list(&self) -> Result<Vec<Task>, EngineError>;
    /// `Tasks.Exec`: `process` is the spec's process object as JSON.
    async fn tasks_exec(
        &self,
        id: &str,
        exec_id: &str,
        process: Vec<u8>,
        stdin: bool,
    ) -> Result<(), EngineError>;
    /// `Tasks.Pids`.
    async fn tasks_pids(&self, id: &str) -> Result<Vec<u32>, EngineError>;
    /// `Tasks.Pause`.
    async fn tasks_pause(&self, id: &str) -> Result<(), EngineError>;
    /// `Tasks.Resume`.
    async fn tasks_resume(&self, id: &str) -> Result<(), EngineError>;
    /// `Tasks.Update`: `resources` is the spec's `linux.resources` object as JSON.
    async fn tasks_update(&self, id: &str, resources: Vec<u8>) -> Result<(), EngineError>;
    /// `Tasks.Stats`: runc's `events --stats` data object as JSON.
    async fn tasks_stats(&self, id: &str) -> Result<Vec<u8>, EngineError>;
    /// `Snapshots.Export`: the merged view as a tar stream. An error after the
    /// first chunk arrives as the stream's last item.
    async fn snapshots_export(&self, key: &str) -> Result<ByteStream, EngineError>;
    /// `Tasks.ResizePty`.
    async fn tasks_resize_pty(
        &self,
        id: &str,
        exec_id: &str,
        width: u32,
        height: u32,
    ) -> Result<(), EngineError>;
    /// `Tasks.Attach`.
    async fn tasks_attach(&self, id: &str, exec_id: &str) -> Result<AttachStreams, EngineError>;
    /// An attach to the init of container `id`'s next task, which the caller knows
    /// is not created yet (it holds the container's lifecycle lock, and the
    /// container is not running): connected once the task is, without asking the
    /// manager now.
    async fn tasks_attach_next(&self, id: &str) -> Result<AttachStreams, EngineError> {
        self.tasks_attach(id, "").await
    }
    /// `Snapshots.Info`.
    async fn snapshots_info(&self, key: &str) -> Result<SnapshotInfo, EngineError>;
    /// `Snapshots.Changes`.
    async fn snapshots_changes(&self, key: &str) -> Result<Vec<Change>, EngineError>;
    /// The bytes of a snapshot's own layer (a container's writable one) as Docker
    /// counts them: its files' lengths.
    async fn snapshots_usage(&self, key: &str) -> Result<i64, EngineError>;
}

/// A manager that is never there: every call fails with "cannot reach berth-manager
/// at <socket>", so the endpoints that need no manager still work and the others say
/// why they do not.
#[derive(Debug, Clone)]
pub struct Unreachable {
    pub socket: String,
}

impl Unreachable {
    pub(crate) fn err<T>(&self) -> Result<T, EngineError> {
        Err(EngineError::ManagerUnavailable {
            socket: self.socket.clone(),
            reason: "no manager is configured".to_string(),
        })
    }
}

#[async_trait]
impl Manager for Unreachable {
    async fn version(&self) -> Result<VersionResponse, EngineError> {
        self.err()
    }
    async fn images_list(&self, _: Vec<String>) -> Result<Vec<Image>, EngineError> {
        self.err()
    }
    async fn images_get(&self, _: &str) -> Result<Image, EngineError> {
        self.err()
    }
    async fn containers_create(&self, _: Container) -> Result<Container, EngineError> {
        self.err()
    }
    async fn containers_get(&self, _: &str) -> Result<Container, EngineError> {
        self.err()
    }
    async fn containers_list(&self, _: Vec<String>) -> Result<Vec<Container>, EngineError> {
        self.err()
    }
    async fn containers_update(
        &self,
        _: Container,
        _: Vec<String>,
    ) -> Result<Container, EngineError> {
        self.err()
    }
    async fn containers_delete(&self, _: &str, _: bool) -> Result<(), EngineError> {
        self.err()
    }
    async fn tasks_create(
        &self,
        _: &str,
        _: bool,
        _: Option<Vec<u8>>,
        _: bool,
    ) -> Result<u32, EngineError> {
        self.err()
    }
    async fn tasks_start(&self, _: &str, _: &str) -> Result<u32, EngineError> {
        self.err()
    }
    async fn tasks_kill(&self, _: &str, _: &str, _: u32, _: bool) -> Result<(), EngineError> {
        self.err()
    }
    async fn tasks_delete(&self, _: &str, _: bool) -> Result<ExitStatus, EngineError> {
        self.err()
    }
    async fn tasks_wait(&self, _: &str, _: &str) -> Result<ExitStatus, EngineError> {
        self.err()
    }
    async fn tasks_get(&self, _: &str) -> Result<Task, EngineError> {
        self.err()
    }
    async fn tasks_list(&self) -> Result<Vec<Task>, EngineError> {
        self.err()
    }
    async fn tasks_exec(&self, _: &str, _: &str, _: Vec<u8>, _: bool) -> Result<(), EngineError> {
        self.err()
    }
    async fn tasks_pids(&self, _: &str) -> Result<Vec<u32>, EngineError> {
        self.err()
    }
    async fn tasks_pause(&self, _: &str) -> Result<(), EngineError> {
        self.err()
    }
    async fn tasks_resume(&self, _: &str) -> Result<(), EngineError> {
        self.err()
    }
    async fn tasks_update(&self, _: &str, _: Vec<u8>) -> Result<(), EngineError> {
        self.err()
    }
    async fn tasks_stats(&self, _: &str) -> Result<Vec<u8>, EngineError> {
        self.err()
    }
    async fn snapshots_export(&self, _: &str) -> Result<ByteStream, EngineError> {
        self.err()
    }
    async fn tasks_resize_pty(&self, _: &str, _: &str, _: u32, _: u32) -> Result<(), EngineError> {
        self.err()
    }
    async fn tasks_attach(&self, _: &str, _: &str) -> Result<AttachStreams, EngineError> {
        self.err()
    }
    async fn snapshots_info(&self, _: &str) -> Result<SnapshotInfo, EngineError> {
        self.err()
    }
    async fn snapshots_changes(&self, _: &str) -> Result<Vec<Change>, EngineError> {
        self.err()
    }
    async fn snapshots_usage(&self, _: &str) -> Result<i64, EngineError> {
        self.err()
    }
}
