//! The gRPC service: turns `berth.shim.v1.Shim` requests into [`Task`] calls and
//! answers back. Errors become status codes only through `From<ShimError>` in
//! `error.rs`.

// Numbers here come from requests: no narrowing `as` (see the workspace lints).
#![deny(clippy::cast_possible_truncation)]

use std::sync::Arc;

use berth_api::berth::shim::v1 as pb;
use berth_api::berth::shim::v1::shim_server::Shim;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::error::ShimError;
use crate::layout::ExitRecord;
use crate::mounts::MountSpec;
use crate::stdio::{Chunk, StreamKind};
use crate::task::{ProcessStatus, Task};

/// Answers queued per attached client.
const ATTACH_QUEUE: usize = 16;

/// The service one shim serves.
#[derive(Debug, Clone)]
pub struct ShimService {
    task: Arc<Task>,
}

impl ShimService {
    pub fn new(task: Arc<Task>) -> ShimService {
        ShimService { task }
    }
}

type Res<T> = Result<Response<T>, Status>;

/// Runs a change of the task to its end even when the caller goes away: tonic drops
/// a handler whose client disconnected (a manager killed mid-call), and a change
/// cut off between the runtime's work and the shim's note of it (a `runtime
/// delete` done but not recorded) would leave the two disagreeing.
async fn detached<T, F>(f: F) -> Result<T, ShimError>
where
    T: Send + 'static,
    F: std::future::Future<Output = Result<T, ShimError>> + Send + 'static,
{
    tokio::spawn(f)
        .await
        .map_err(|e| ShimError::Aborted(e.to_string()))?
}

fn exit_status(r: ExitRecord) -> pb::ExitStatus {
    pb::ExitStatus {
        pid: r.pid,
        exit_status: r.exit_status,
        exited_at: r.exited_at,
        oom_killed: r.oom_killed,
    }
}

fn status(s: ProcessStatus) -> pb::Status {
    match s {
        ProcessStatus::Created => pb::Status::Created,
        ProcessStatus::Running => pb::Status::Running,
        ProcessStatus::Paused => pb::Status::Paused,
        ProcessStatus::Stopped => pb::Status::Stopped,
    }
}

/// An optional log path: "" for none; relative paths are refused (the shim runs in /).
fn log_path(s: String) -> Result<Option<std::path::PathBuf>, ShimError> {
    if s.is_empty() {
        return Ok(None);
    }
    let path = std::path::PathBuf::from(s);
    if path.is_relative() {
        return Err(ShimError::RelativeLogPath(path));
    }
    Ok(Some(path))
}

fn attach_response(c: Chunk) -> pb::AttachResponse {
    pb::AttachResponse {
        stream: match c.stream {
            StreamKind::Stdout => pb::Stream::Stdout,
            StreamKind::Stderr => pb::Stream::Stderr,
        } as i32,
        data: c.data.to_vec(),
    }
}

#[tonic::async_trait]
impl Shim for ShimService {
    async fn connect(&self, _: Request<pb::ConnectRequest>) -> Res<pb::ConnectResponse> {
        Ok(Response::new(pb::ConnectResponse {
            id: self.task.id().to_string(),
            shim_pid: std::process::id(),
            task_pid: self.task.task_pid(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }))
    }

    async fn state(&self, req: Request<pb::StateRequest>) -> Res<pb::StateResponse> {
        let s = self.task.process_state(&req.get_ref().exec_id)?;
        Ok(Response::new(pb::StateResponse {
            id: self.task.id().to_string(),
            exec_id: s.exec_id,
            bundle: self.task.bundle().to_string_lossy().into_owned(),
            pid: s.pid,
            status: status(s.status) as i32,
            terminal: s.terminal,
            stdin: s.stdin,
            exit: s.exit.map(exit_status),
            shim_pid: std::process::id(),
            log_path: s
                .log_path
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }))
    }

    async fn create(&self, req: Request<pb::CreateRequest>) -> Res<pb::CreateResponse> {
        let req = req.into_inner();
        let mounts = req
            .rootfs
            .into_iter()
            .map(|m| MountSpec {
                typ: m.r#type,
                source: m.source,
                target: m.target,
                options: m.options,
            })
            .collect();
        let task = self.task.clone();
        let log = log_path(req.log_path)?;
        let stdin = req.stdin;
        let pid = detached(async move { task.create(mounts, log, stdin).await }).await?;
        Ok(Response::new(pb::CreateResponse { pid }))
    }

    async fn start(&self, req: Request<pb::StartRequest>) -> Res<pb::StartResponse> {
        let (task, exec_id) = (self.task.clone(), req.into_inner().exec_id);
        let pid = detached(async move { task.start(&exec_id).await }).await?;
        Ok(Response::new(pb::StartResponse { pid }))
    }

    async fn kill(&self, req: Request<pb::KillRequest>) -> Res<pb::Empty> {
        let r = req.get_ref();
        self.task.kill(&r.exec_id, r.signal, r.all).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn delete(&self, req: Request<pb::DeleteRequest>) -> Res<pb::ExitStatus> {
        let r = req.into_inner();
        let task = self.task.clone();
        let exit = detached(async move { task.delete(&r.exec_id, r.force).await }).await?;
        Ok(Response::new(exit_status(exit)))
    }

    async fn exec(&self, req: Request<pb::ExecRequest>) -> Res<pb::Empty> {
        let r = req.into_inner();
        self.task
            .exec(&r.exec_id, &r.process, r.stdin, log_path(r.log_path)?)?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn resize_pty(&self, req: Request<pb::ResizePtyRequest>) -> Res<pb::Empty> {
        let r = req.get_ref();
        self.task.resize_pty(&r.exec_id, r.width, r.height)?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn close_io(&self, req: Request<pb::CloseIoRequest>) -> Res<pb::Empty> {
        self.task.close_io(&req.get_ref().exec_id).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn wait(&self, req: Request<pb::WaitRequest>) -> Res<pb::ExitStatus> {
        let exit = self.task.wait(&req.get_ref().exec_id).await?;
        Ok(Response::new(exit_status(exit)))
    }

    async fn pids(&self, _: Request<pb::PidsRequest>) -> Res<pb::PidsResponse> {
        let processes = self
            .task
            .pids()
            .await?
            .into_iter()
            .map(|(pid, exec_id)| pb::ProcessInfo { pid, exec_id })
            .collect();
        Ok(Response::new(pb::PidsResponse { processes }))
    }

    async fn pause(&self, _: Request<pb::PauseRequest>) -> Res<pb::Empty> {
        let task = self.task.clone();
        detached(async move { task.pause().await }).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn resume(&self, _: Request<pb::ResumeRequest>) -> Res<pb::Empty> {
        let task = self.task.clone();
        detached(async move { task.resume().await }).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn update(&self, req: Request<pb::UpdateRequest>) -> Res<pb::Empty> {
        self.task.update(&req.get_ref().resources).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn stats(&self, _: Request<pb::StatsRequest>) -> Res<pb::StatsResponse> {
        let stats = self.task.stats().await?;
        Ok(Response::new(pb::StatsResponse {
            stats: stats.to_string().into_bytes(),
        }))
    }

    type AttachStream = ReceiverStream<Result<pb::AttachResponse, Status>>;

    async fn attach(&self, req: Request<Streaming<pb::AttachRequest>>) -> Res<Self::AttachStream> {
        let mut inbound = req.into_inner();
        let first = inbound.message().await?.ok_or(ShimError::AttachNoProcess)?;
        let process = self.task.process(&first.exec_id)?;
        let (tx, rx) = mpsc::channel(ATTACH_QUEUE);
        // Dropped when the output has ended: the request side is then released too,
        // so the call ends even if the client keeps its side open.
        let (output_done, mut output_ended) = oneshot::channel::<()>();

        // Output: the answer stream ends when the output does (the sender below is
        // the only strong one).
        if let Some(mut output) = process.io().subscribe() {
            let tx = tx.clone();
            tokio::spawn(async move {
                let _done = output_done;
                loop {
                    match output.recv().await {
                        Ok(chunk) => {
                            if tx.send(Ok(attach_response(chunk))).await.is_err() {
                                return;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            tracing::debug!("attached client too slow: {n} chunks skipped");
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            });
        } else {
            drop(output_done);
        }

        // Input: stdin and close requests until the client stops sending or the
        // output ends.
        let errors = tx.downgrade();
        drop(tx);
        tokio::spawn(async move {
            let mut next = Some(first);
            loop {
                let msg = match next.take() {
                    Some(m) => m,
                    None => tokio::select! {
                        m = inbound.message() => match m {
                            Ok(Some(m)) => m,
                            Ok(None) | Err(_) => return,
                        },
                        _ = &mut output_ended => return,
                    },
                };
                let mut result = Ok(());
                if !msg.stdin.is_empty() {
                    result = process.io().write_stdin(msg.stdin).await;
                }
                if result.is_ok() && msg.close_stdin {
                    result = process.io().close_stdin().await;
                }
                if let Err(e) = result {
                    if let Some(tx) = errors.upgrade() {
                        let _ = tx.send(Err(ShimError::from(e).into())).await;
                    }
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn shutdown(&self, req: Request<pb::ShutdownRequest>) -> Res<pb::Empty> {
        let (task, force) = (self.task.clone(), req.get_ref().force);
        detached(async move { task.shutdown(force).await }).await?;
        Ok(Response::new(pb::Empty {}))
    }
}
