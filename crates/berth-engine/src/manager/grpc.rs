//! The real [`Manager`]: berth-manager's gRPC services on its unix socket.
//!
//! Each trait method is one RPC; the conversions are field copies between the trait's
//! types and the generated messages (`berth_api::berth::manager::v1`). Errors go
//! through the engine's one mapping (`From<tonic::Status> for EngineError`), except a
//! socket nobody answers on, which becomes [`EngineError::ManagerUnavailable`] so the
//! message names the socket.
//!
//! One thing the manager does not do the way the engine uses it: `Tasks.Attach` needs
//! the task to exist, but `docker run` attaches before it starts the container (and the
//! engine creates the task only at start). An attach to a container that has no task
//! yet is therefore parked here and connected once `Tasks.Create` has answered (on a
//! task of its own: the shim holds the init's output until the attaches it was told
//! of are there, and the task's deletion waits for them), so no output is missed.

mod build;
mod images;

use std::collections::HashMap;

use async_trait::async_trait;
use berth_api::berth::manager::v1 as pb;
use berth_api::berth::manager::v1::containers_client::ContainersClient;
use berth_api::berth::manager::v1::events_client::EventsClient;
use berth_api::berth::manager::v1::images_client::ImagesClient;
use berth_api::berth::manager::v1::snapshots_client::SnapshotsClient;
use berth_api::berth::manager::v1::tasks_client::TasksClient;
use berth_api::berth::manager::v1::version_client::VersionClient;
use berth_api::MAX_MESSAGE;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{mpsc, Mutex};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status, Streaming};

use super::{
    AttachStreams, ByteStream, Change, Container, ExitStatus, Image, Manager, OutputChunk,
    SnapshotInfo, StdStream, StdinMsg, Task, VersionResponse,
};
use crate::error::EngineError;

/// A client of one of the manager's services on the shared channel. It takes
/// messages as large as the manager's server sends: tonic's own default (4 MiB)
/// refused `Containers.List` from about 400 containers on (their specs), and a
/// reconcile that kept failing on it never finished.
macro_rules! client {
    ($client:ident, $channel:expr) => {
        $client::new($channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    };
}

/// Output chunks and stdin messages in flight on one attach.
const ATTACH_QUEUE: usize = 16;

/// Export chunks in flight between the manager and the HTTP client.
const EXPORT_QUEUE: usize = 8;

/// What `Containers.Create` gets as spec when the engine sends none: the manager
/// wants a JSON object, and the engine sends the real spec at start
/// (`Containers.Update` of "spec").
const PLACEHOLDER_SPEC: &[u8] = b"{}";

/// An attach made before its task existed: the client's ends, kept until the task
/// is created.
#[derive(Debug)]
struct ParkedAttach {
    output: mpsc::Sender<OutputChunk>,
    stdin: mpsc::Receiver<StdinMsg>,
}

/// A [`Manager`] over gRPC. The connection is made on first use and made again
/// after the manager restarts (tonic's channel reconnects by itself), so berthd
/// starts and answers whether or not the manager is up yet.
#[derive(Debug)]
pub struct GrpcManager {
    socket: String,
    channel: Channel,
    /// Attaches waiting for their container's task, by container id. Attempting an
    /// attach and parking it happen under this lock, and so do taking the parked
    /// ones after a create: an attach is either connected or found by the create.
    parked: Mutex<HashMap<String, Vec<ParkedAttach>>>,
    /// Parked attaches being connected after their task's create, by container id:
    /// each held (write) until connected. A create answers without waiting for
    /// them (the shim holds the init's output until they are there), and the
    /// task's deletion waits for them (read), so none is left without its output.
    connecting: std::sync::Mutex<HashMap<String, std::sync::Arc<tokio::sync::RwLock<()>>>>,
}

/// Why a [`GrpcManager`] could not be made.
#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    /// The socket path does not make a valid endpoint URI.
    #[error("berth-manager socket {socket:?}: {source}")]
    BadSocket {
        socket: String,
        #[source]
        source: tonic::transport::Error,
    },
}

impl GrpcManager {
    /// A manager client for the unix socket at `socket` (a path, or `unix://PATH`).
    /// Nothing is dialled until the first call.
    pub fn new(socket: &str) -> Result<GrpcManager, GrpcError> {
        let path = socket.strip_prefix("unix://").unwrap_or(socket);
        let endpoint = Endpoint::from_shared(format!("unix://{path}")).map_err(|source| {
            GrpcError::BadSocket {
                socket: socket.to_string(),
                source,
            }
        })?;
        Ok(GrpcManager {
            socket: path.to_string(),
            channel: endpoint.connect_lazy(),
            parked: Mutex::new(HashMap::new()),
            connecting: std::sync::Mutex::new(HashMap::new()),
        })
    }

    fn images(&self) -> ImagesClient<Channel> {
        client!(ImagesClient, self.channel)
    }
    fn containers(&self) -> ContainersClient<Channel> {
        client!(ContainersClient, self.channel)
    }
    fn snapshots(&self) -> SnapshotsClient<Channel> {
        client!(SnapshotsClient, self.channel)
    }
    fn tasks(&self) -> TasksClient<Channel> {
        client!(TasksClient, self.channel)
    }
    fn events(&self) -> EventsClient<Channel> {
        client!(EventsClient, self.channel)
    }

    /// The engine's error for a failed call. A status made on our side of the socket
    /// (no answer came, so it carries no headers) means the manager cannot be
    /// reached; anything else is the manager's answer.
    fn error(&self, status: Status) -> EngineError {
        if status.code() == Code::Unavailable && status.metadata().is_empty() {
            return EngineError::ManagerUnavailable {
                socket: self.socket.clone(),
                reason: status.message().to_string(),
            };
        }
        EngineError::from(status)
    }

    /// [`connect_attach`] on this manager's channel.
    async fn connect_attach(
        &self,
        id: &str,
        exec_id: &str,
        ends: ParkedAttach,
    ) -> Result<(), (Status, ParkedAttach)> {
        connect_attach(self.tasks(), id, exec_id, ends).await
    }

    /// Connects the attaches parked for container `id` (its task now exists), on a
    /// task of their own; see `connecting`. One that fails ends its client's output
    /// stream.
    async fn connect_parked(&self, id: &str) {
        let waiting = self.parked.lock().await.remove(id).unwrap_or_default();
        if waiting.is_empty() {
            return;
        }
        let gate = std::sync::Arc::new(tokio::sync::RwLock::new(()));
        let held = gate.clone().write_owned().await;
        self.connecting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string(), gate);
        let tasks = self.tasks();
        let id = id.to_string();
        tokio::spawn(async move {
            for ends in waiting {
                if ends.output.is_closed() {
                    continue;
                }
                if let Err((status, _)) = connect_attach(tasks.clone(), &id, "", ends).await {
                    tracing::warn!(container = %id, error = %status.message(), "attaching after the task was created failed");
                }
            }
            drop(held);
        });
    }

    /// Waits until the attaches of container `id`'s last create are connected.
    async fn attaches_connected(&self, id: &str) {
        let gate = self
            .connecting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned();
        if let Some(gate) = gate {
            drop(gate.read().await);
            let mut connecting = self.connecting.lock().unwrap_or_else(|e| e.into_inner());
            if connecting
                .get(id)
                .is_some_and(|g| std::sync::Arc::ptr_eq(g, &gate))
            {
                connecting.remove(id);
            }
        }
    }
}

/// Opens `Tasks.Attach` for a process and bridges it to the client's ends. Fails
/// (handing the ends back) when the manager refuses it.
async fn connect_attach(
    mut tasks: TasksClient<Channel>,
    id: &str,
    exec_id: &str,
    ends: ParkedAttach,
) -> Result<(), (Status, ParkedAttach)> {
    let (req_tx, req_rx) = mpsc::channel::<pb::AttachRequest>(ATTACH_QUEUE);
    // The first message names the process; the manager (and the shim behind it)
    // wait for it before answering.
    let first = pb::AttachRequest {
        container_id: id.to_string(),
        exec_id: exec_id.to_string(),
        stdin: Vec::new(),
        close_stdin: false,
    };
    if req_tx.try_send(first).is_err() {
        return Err((Status::internal("queueing the attach request"), ends));
    }
    let requests =
        futures_util::stream::unfold(
            req_rx,
            |mut rx| async move { rx.recv().await.map(|m| (m, rx)) },
        );
    let response = match tasks.attach(requests).await {
        Ok(r) => r.into_inner(),
        Err(status) => return Err((status, ends)),
    };
    tokio::spawn(bridge(
        id.to_string(),
        exec_id.to_string(),
        response,
        req_tx,
        ends,
    ));
    Ok(())
}

/// Copies the attach's output to the client and the client's stdin to the attach,
/// until the output ends or the client goes away.
async fn bridge(
    id: String,
    exec_id: String,
    mut response: Streaming<pb::AttachResponse>,
    requests: mpsc::Sender<pb::AttachRequest>,
    ends: ParkedAttach,
) {
    let ParkedAttach { output, mut stdin } = ends;
    let stdin_task = {
        let (id, exec_id) = (id.clone(), exec_id.clone());
        tokio::spawn(async move {
            while let Some(msg) = stdin.recv().await {
                let (data, close) = match msg {
                    StdinMsg::Data(d) => (d.to_vec(), false),
                    StdinMsg::Close => (Vec::new(), true),
                };
                let req = pb::AttachRequest {
                    container_id: id.clone(),
                    exec_id: exec_id.clone(),
                    stdin: data,
                    close_stdin: close,
                };
                if requests.send(req).await.is_err() || close {
                    break;
                }
            }
            // Our request stream stays open until the output ends: closing it is not
            // a close of the process's stdin, but keeping it costs nothing.
            requests.closed().await;
        })
    };
    loop {
        tokio::select! {
            msg = response.next() => match msg {
                Some(Ok(m)) => {
                    let stream = StdStream::try_from(m.stream).unwrap_or(StdStream::Stdout);
                    let chunk = OutputChunk { stream, data: Bytes::from(m.data) };
                    if output.send(chunk).await.is_err() {
                        break;
                    }
                }
                Some(Err(status)) => {
                    tracing::debug!(container = %id, exec_id = %exec_id, error = %status.message(), "attach stream failed");
                    break;
                }
                None => break,
            },
            _ = output.closed() => break,
        }
    }
    stdin_task.abort();
}

#[async_trait]
impl Manager for GrpcManager {
    async fn version(&self) -> Result<VersionResponse, EngineError> {
        Ok(client!(VersionClient, self.channel)
            .version(pb::Empty {})
            .await
            .map_err(|s| self.error(s))?
            .into_inner())
    }

    async fn images_list(&self, filters: Vec<String>) -> Result<Vec<Image>, EngineError> {
        let r = self
            .images()
            .list(pb::ListImagesRequest { filters })
            .await
            .map_err(|s| self.error(s))?
            .into_inner();
        Ok(r.images)
    }

    async fn images_get(&self, reference: &str) -> Result<Image, EngineError> {
        Ok(self
            .images()
            .get(pb::GetImageRequest {
                reference: reference.to_string(),
            })
            .await
            .map_err(|s| self.error(s))?
            .into_inner())
    }

    async fn containers_create(&self, container: Container) -> Result<Container, EngineError> {
        let mut c = container;
        if c.spec.is_empty() {
            c.spec = PLACEHOLDER_SPEC.to_vec();
        }
        Ok(self
            .containers()
            .create(pb::CreateContainerRequest { container: Some(c) })
            .await
            .map_err(|s| self.error(s))?
            .into_inner())
    }

    async fn containers_get(&self, id: &str) -> Result<Container, EngineError> {
        Ok(self
            .containers()
            .get(pb::GetContainerRequest { id: id.to_string() })
            .await
            .map_err(|s| self.error(s))?
            .into_inner())
    }

    async fn containers_list(&self, filters: Vec<String>) -> Result<Vec<Container>, EngineError> {
        Ok(self
            .containers()
            .list(pb::ListContainersRequest {
                filters,
                omit_spec: true,
            })
            .await
            .map_err(|s| self.error(s))?
            .into_inner()
            .containers)
    }

    async fn containers_update(
        &self,
        container: Container,
        mask: Vec<String>,
    ) -> Result<Container, EngineError> {
        Ok(self
            .containers()
            .update(pb::UpdateContainerRequest {
                container: Some(container),
                update_mask: mask,
            })
            .await
            .map_err(|s| self.error(s))?
            .into_inner())
    }

    async fn containers_delete(&self, id: &str, keep_snapshot: bool) -> Result<(), EngineError> {
        // Attaches still parked for it will never connect: end their streams.
        self.parked.lock().await.remove(id);
        self.containers()
            .delete(pb::DeleteContainerRequest {
                id: id.to_string(),
                keep_snapshot,
            })
            .await
            .map_err(|s| self.error(s))?;
        Ok(())
    }

    async fn tasks_create(
        &self,
        id: &str,
        stdin: bool,
        spec: Option<Vec<u8>>,
        start: bool,
    ) -> Result<u32, EngineError> {
        // A started init's output waits for the attaches parked for it, which
        // connect as soon as the answer comes (below).
        let attaches = if start {
            let parked = self.parked.lock().await;
            parked
                .get(id)
                .map_or(0, |w| w.iter().filter(|p| !p.output.is_closed()).count())
        } else {
            0
        };
        let created = self
            .tasks()
            .create(pb::CreateTaskRequest {
                container_id: id.to_string(),
                stdin,
                spec: spec.unwrap_or_default(),
                start,
                attaches: u32::try_from(attaches).unwrap_or(u32::MAX),
            })
            .await
            .map_err(|s| self.error(s))?
            .into_inner();
        self.connect_parked(id).await;
        if start && !created.started {
            // A manager older than the one-step create made the task only.
            return self.tasks_start(id, "").await;
        }
        Ok(created.pid)
    }

    async fn tasks_start(&self, id: &str, exec_id: &str) -> Result<u32, EngineError> {
        let r = self
            .tasks()
            .start(pb::StartRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
            })
            .await
            .map_err(|s| self.error(s))?
            .into_inner();
        Ok(r.pid)
    }

    async fn tasks_kill(
        &self,
        id: &str,
        exec_id: &str,
        signal: u32,
        all: bool,
    ) -> Result<(), EngineError> {
        self.tasks()
            .kill(pb::KillRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
                signal,
                all,
            })
            .await
            .map_err(|s| self.error(s))?;
        Ok(())
    }

    async fn tasks_delete(&self, id: &str, force: bool) -> Result<ExitStatus, EngineError> {
        // Its output must reach the attaches its create was answered without.
        self.attaches_connected(id).await;
        Ok(self
            .tasks()
            .delete(pb::DeleteTaskRequest {
                container_id: id.to_string(),
                force,
            })
            .await
            .map_err(|s| self.error(s))?
            .into_inner())
    }

    async fn tasks_wait(&self, id: &str, exec_id: &str) -> Result<ExitStatus, EngineError> {
        Ok(self
            .tasks()
            .wait(pb::WaitRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
            })
            .await
            .map_err(|s| self.error(s))?
            .into_inner())
    }

    async fn tasks_delete_process(
        &self,
        id: &str,
        exec_id: &str,
    ) -> Result<ExitStatus, EngineError> {
        Ok(self
            .tasks()
            .delete_process(pb::DeleteProcessRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
            })
            .await
            .map_err(|s| self.error(s))?
            .into_inner())
    }

    async fn tasks_get(&self, id: &str) -> Result<Task, EngineError> {
        Ok(self
            .tasks()
            .get(pb::GetTaskRequest {
                container_id: id.to_string(),
            })
            .await
            .map_err(|s| self.error(s))?
            .into_inner())
    }

    async fn tasks_list(&self) -> Result<Vec<Task>, EngineError> {
        let r = self
            .tasks()
            .list(pb::ListTasksRequest {})
            .await
            .map_err(|s| self.error(s))?
            .into_inner();
        Ok(r.tasks)
    }

    async fn tasks_exec(
        &self,
        id: &str,
        exec_id: &str,
        process: Vec<u8>,
        stdin: bool,
    ) -> Result<(), EngineError> {
        self.tasks()
            .exec(pb::ExecProcessRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
                process,
                stdin,
            })
            .await
            .map_err(|s| self.error(s))?;
        Ok(())
    }

    async fn tasks_pids(&self, id: &str) -> Result<Vec<u32>, EngineError> {
        let r = self
            .tasks()
            .pids(pb::PidsRequest {
                container_id: id.to_string(),
            })
            .await
            .map_err(|s| self.error(s))?
            .into_inner();
        Ok(r.pids)
    }

    async fn tasks_pause(&self, id: &str) -> Result<(), EngineError> {
        self.tasks()
            .pause(pb::TaskId {
                container_id: id.to_string(),
            })
            .await
            .map_err(|s| self.error(s))?;
        Ok(())
    }

    async fn tasks_resume(&self, id: &str) -> Result<(), EngineError> {
        self.tasks()
            .resume(pb::TaskId {
                container_id: id.to_string(),
            })
            .await
            .map_err(|s| self.error(s))?;
        Ok(())
    }

    async fn tasks_update(&self, id: &str, resources: Vec<u8>) -> Result<(), EngineError> {
        self.tasks()
            .update(pb::UpdateTaskRequest {
                container_id: id.to_string(),
                resources,
            })
            .await
            .map_err(|s| self.error(s))?;
        Ok(())
    }

    async fn tasks_stats(&self, id: &str) -> Result<Vec<u8>, EngineError> {
        let r = self
            .tasks()
            .stats(pb::TaskId {
                container_id: id.to_string(),
            })
            .await
            .map_err(|s| self.error(s))?
            .into_inner();
        Ok(r.stats)
    }

    async fn snapshots_export(&self, key: &str) -> Result<ByteStream, EngineError> {
        let mut stream = self
            .snapshots()
            .export(pb::SnapshotKey {
                key: key.to_string(),
            })
            .await
            .map_err(|s| self.error(s))?
            .into_inner();
        let (tx, rx) = mpsc::channel(EXPORT_QUEUE);
        tokio::spawn(async move {
            loop {
                let item = match stream.message().await {
                    Ok(Some(chunk)) => Ok(Bytes::from(chunk.data)),
                    Ok(None) => return,
                    Err(status) => Err(EngineError::from(status)),
                };
                let failed = item.is_err();
                // The reader went away (client hung up): stop pulling from the manager.
                if tx.send(item).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(rx)
    }

    async fn tasks_resize_pty(
        &self,
        id: &str,
        exec_id: &str,
        width: u32,
        height: u32,
    ) -> Result<(), EngineError> {
        self.tasks()
            .resize_pty(pb::ResizePtyRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
                width,
                height,
            })
            .await
            .map_err(|s| self.error(s))?;
        Ok(())
    }

    async fn tasks_attach(&self, id: &str, exec_id: &str) -> Result<AttachStreams, EngineError> {
        let (out_tx, out_rx) = mpsc::channel(ATTACH_QUEUE);
        let (in_tx, in_rx) = mpsc::channel(ATTACH_QUEUE);
        let ends = ParkedAttach {
            output: out_tx,
            stdin: in_rx,
        };
        let streams = AttachStreams {
            output: out_rx,
            stdin: Some(in_tx),
        };
        let mut parked = self.parked.lock().await;
        let ends = match self.connect_attach(id, exec_id, ends).await {
            Ok(()) => return Ok(streams),
            // Only the init can be waited for: an exec'd process exists once
            // Tasks.Exec has answered, which the engine does before attaching.
            Err((status, ends)) if status.code() == Code::NotFound && exec_id.is_empty() => ends,
            Err((status, _)) => return Err(self.error(status)),
        };
        // "No task" or "no container": only a container the manager knows will get one.
        self.containers_get(id).await?;
        let waiting = parked.entry(id.to_string()).or_default();
        waiting.retain(|p| !p.output.is_closed());
        waiting.push(ends);
        tracing::debug!(container = id, "attach parked until the task is created");
        Ok(streams)
    }

    async fn tasks_attach_next(&self, id: &str) -> Result<AttachStreams, EngineError> {
        // `docker run` attaches before it starts: parked at once, rather than after
        // a `Tasks.Attach` that can only fail and a `Containers.Get` (two round
        // trips the client waits for before it sends the start).
        let (out_tx, out_rx) = mpsc::channel(ATTACH_QUEUE);
        let (in_tx, in_rx) = mpsc::channel(ATTACH_QUEUE);
        let mut parked = self.parked.lock().await;
        let waiting = parked.entry(id.to_string()).or_default();
        waiting.retain(|p| !p.output.is_closed());
        waiting.push(ParkedAttach {
            output: out_tx,
            stdin: in_rx,
        });
        tracing::debug!(container = id, "attach parked until the task is created");
        Ok(AttachStreams {
            output: out_rx,
            stdin: Some(in_tx),
        })
    }

    async fn snapshots_info(&self, key: &str) -> Result<SnapshotInfo, EngineError> {
        Ok(self
            .snapshots()
            .info(pb::SnapshotKey {
                key: key.to_string(),
            })
            .await
            .map_err(|s| self.error(s))?
            .into_inner())
    }

    async fn snapshots_usage(&self, key: &str) -> Result<i64, EngineError> {
        Ok(self
            .snapshots()
            .usage(pb::SnapshotKey {
                key: key.to_string(),
            })
            .await
            .map_err(|s| self.error(s))?
            .into_inner()
            .apparent_size)
    }

    async fn snapshots_changes(&self, key: &str) -> Result<Vec<Change>, EngineError> {
        let r = self
            .snapshots()
            .changes(pb::SnapshotKey {
                key: key.to_string(),
            })
            .await
            .map_err(|s| self.error(s))?
            .into_inner();
        Ok(r.changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_paths_with_or_without_scheme() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let a = GrpcManager::new("/run/x/manager.sock").unwrap();
            let b = GrpcManager::new("unix:///run/x/manager.sock").unwrap();
            assert_eq!(a.socket, "/run/x/manager.sock");
            assert_eq!(b.socket, a.socket);
        });
    }

    #[tokio::test]
    async fn a_socket_nobody_serves_is_manager_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("none.sock");
        let m = GrpcManager::new(&sock.to_string_lossy()).unwrap();
        let e = m.images_get("busybox").await.unwrap_err();
        match &e {
            EngineError::ManagerUnavailable { socket, .. } => {
                assert_eq!(socket, &sock.to_string_lossy())
            }
            other => panic!("expected ManagerUnavailable, got {other:?}"),
        }
        assert_eq!(e.status().as_u16(), 500);
        assert!(e.message().contains("cannot reach berth-manager at"));
    }
}
