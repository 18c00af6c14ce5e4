//! The shim's service: reads a call from a connection (the contract's `wire`
//! protocol), turns it into [`Task`] calls and answers back. Errors become status
//! codes only through `From<ShimError>` in `error.rs`.

// Numbers here come from requests: no narrowing `as` (see the workspace lints).
#![deny(clippy::cast_possible_truncation)]

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::broadcast;

use crate::error::ShimError;
use crate::layout::ExitRecord;
use crate::mounts::MountSpec;
use crate::stdio::{Chunk, StreamKind};
use crate::task::{LogTarget, ProcessStatus, Task};
use crate::wire::{self, pb, Code, Kind, Method, RpcStatus};

/// The service one shim serves.
#[derive(Debug, Clone)]
pub struct ShimService {
    task: Arc<Task>,
}

/// Runs a change of the task to its end even when the caller goes away: a call
/// whose client hung up (a manager killed mid-call) is dropped, and a change cut
/// off between the runtime's work and the shim's note of it (a `runtime delete`
/// done but not recorded) would leave the two disagreeing.
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

/// An optional log: "" for none; relative paths are refused (the shim runs in /).
fn log_path(s: String, format: i32) -> Result<Option<LogTarget>, ShimError> {
    if s.is_empty() {
        return Ok(None);
    }
    let path = std::path::PathBuf::from(s);
    if path.is_relative() {
        return Err(ShimError::RelativeLogPath(path));
    }
    let cri = match pb::LogFormat::try_from(format) {
        Ok(pb::LogFormat::JsonFile) => false,
        Ok(pb::LogFormat::Cri) => true,
        Err(_) => {
            return Err(ShimError::BadRequest(format!(
                "unknown log format {format}"
            )))
        }
    };
    Ok(Some(LogTarget { path, cri }))
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

fn decode<M: prost::Message + Default>(payload: &[u8]) -> Result<M, ShimError> {
    wire::decode(payload).map_err(|e| ShimError::BadRequest(e.to_string()))
}

fn reply(msg: &impl prost::Message) -> Vec<u8> {
    wire::frame(Kind::Reply as u8, msg)
}

fn status_frame(s: &RpcStatus) -> Vec<u8> {
    wire::frame(Kind::Status as u8, s)
}

fn error_frame(e: ShimError) -> Vec<u8> {
    tracing::debug!("answering with an error: {e}");
    status_frame(&RpcStatus::from(e))
}

/// Resolves when the client of a unary call hangs up (or, against the protocol,
/// sends more).
async fn hangup(rd: &mut OwnedReadHalf) {
    let mut buf = [0u8; 64];
    let _ = rd.read(&mut buf).await;
}

impl ShimService {
    pub fn new(task: Arc<Task>) -> ShimService {
        ShimService { task }
    }

    /// Serve the one call a connection carries.
    pub async fn serve(&self, conn: UnixStream) {
        let (mut rd, mut wr) = conn.into_split();
        let (kind, payload) = match wire::read_frame(&mut rd).await {
            Ok(Some(f)) => f,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!("reading a call: {e}");
                let _ = wr
                    .write_all(&error_frame(ShimError::BadRequest(e.to_string())))
                    .await;
                return;
            }
        };
        let Some(method) = Method::from_kind(kind) else {
            let e = ShimError::BadRequest(format!("unknown method {kind}"));
            let _ = wr.write_all(&error_frame(e)).await;
            return;
        };
        if method == Method::Attach {
            return self.attach(&payload, rd, wr).await;
        }
        // A client that hangs up cancels its call, as with gRPC; the calls that
        // change the task run detached and finish anyway.
        let answer = tokio::select! {
            a = self.unary(method, &payload) => a,
            () = hangup(&mut rd) => return,
        };
        let frame = answer.unwrap_or_else(error_frame);
        if let Err(e) = wr.write_all(&frame).await {
            tracing::debug!("answering {method:?}: {e}");
        }
    }

    /// A unary call's answer, framed.
    async fn unary(&self, method: Method, payload: &[u8]) -> Result<Vec<u8>, ShimError> {
        let task = &self.task;
        Ok(match method {
            Method::Connect => {
                decode::<pb::ConnectRequest>(payload)?;
                reply(&pb::ConnectResponse {
                    id: task.id().to_string(),
                    shim_pid: std::process::id(),
                    task_pid: task.task_pid(),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                })
            }
            Method::State => {
                let req: pb::StateRequest = decode(payload)?;
                let s = task.process_state(&req.exec_id)?;
                reply(&pb::StateResponse {
                    id: task.id().to_string(),
                    exec_id: s.exec_id,
                    bundle: task.bundle().to_string_lossy().into_owned(),
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
                })
            }
            Method::Create => {
                let req: pb::CreateRequest = decode(payload)?;
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
                let log = log_path(req.log_path, req.log_format)?;
                let (task, stdin) = (task.clone(), req.stdin);
                let pid = detached(async move { task.create(mounts, log, stdin).await }).await?;
                reply(&pb::CreateResponse { pid })
            }
            Method::Start => {
                let req: pb::StartRequest = decode(payload)?;
                let task = task.clone();
                let pid = detached(async move { task.start(&req.exec_id).await }).await?;
                reply(&pb::StartResponse { pid })
            }
            Method::Kill => {
                let r: pb::KillRequest = decode(payload)?;
                task.kill(&r.exec_id, r.signal, r.all).await?;
                reply(&pb::Empty {})
            }
            Method::Delete => {
                let r: pb::DeleteRequest = decode(payload)?;
                let task = task.clone();
                let exit = detached(async move { task.delete(&r.exec_id, r.force).await }).await?;
                reply(&exit_status(exit))
            }
            Method::Exec => {
                let r: pb::ExecRequest = decode(payload)?;
                task.exec(
                    &r.exec_id,
                    &r.process,
                    r.stdin,
                    log_path(r.log_path, r.log_format)?,
                )?;
                reply(&pb::Empty {})
            }
            Method::ResizePty => {
                let r: pb::ResizePtyRequest = decode(payload)?;
                task.resize_pty(&r.exec_id, r.width, r.height)?;
                reply(&pb::Empty {})
            }
            Method::CloseIo => {
                let r: pb::CloseIoRequest = decode(payload)?;
                task.close_io(&r.exec_id).await?;
                reply(&pb::Empty {})
            }
            Method::Wait => {
                let r: pb::WaitRequest = decode(payload)?;
                reply(&exit_status(task.wait(&r.exec_id).await?))
            }
            Method::Pids => {
                decode::<pb::PidsRequest>(payload)?;
                let processes = task
                    .pids()
                    .await?
                    .into_iter()
                    .map(|(pid, exec_id)| pb::ProcessInfo { pid, exec_id })
                    .collect();
                reply(&pb::PidsResponse { processes })
            }
            Method::Pause => {
                decode::<pb::PauseRequest>(payload)?;
                let task = task.clone();
                detached(async move { task.pause().await }).await?;
                reply(&pb::Empty {})
            }
            Method::Resume => {
                decode::<pb::ResumeRequest>(payload)?;
                let task = task.clone();
                detached(async move { task.resume().await }).await?;
                reply(&pb::Empty {})
            }
            Method::Update => {
                let r: pb::UpdateRequest = decode(payload)?;
                task.update(&r.resources).await?;
                reply(&pb::Empty {})
            }
            Method::Stats => {
                decode::<pb::StatsRequest>(payload)?;
                let stats = task.stats().await?;
                reply(&pb::StatsResponse {
                    stats: stats.to_string().into_bytes(),
                })
            }
            Method::ReopenLog => {
                let r: pb::ReopenLogRequest = decode(payload)?;
                task.reopen_log(&r.exec_id)?;
                reply(&pb::Empty {})
            }
            Method::Shutdown => {
                let r: pb::ShutdownRequest = decode(payload)?;
                let task = task.clone();
                detached(async move { task.shutdown(r.force).await }).await?;
                reply(&pb::Empty {})
            }
            Method::Attach => return Err(ShimError::BadRequest("attach is a stream".into())),
        })
    }

    /// Live stdio: stdin and close requests from the client until it stops sending
    /// or the output ends; the output, as it comes, until it ends. A client too
    /// slow to keep up misses chunks (the broadcast lags) rather than slowing the
    /// container down.
    async fn attach(&self, first: &[u8], mut rd: OwnedReadHalf, mut wr: OwnedWriteHalf) {
        let end = match self.attach_inner(first, &mut rd, &mut wr).await {
            Ok(()) => status_frame(&RpcStatus::new(Code::Ok, "")),
            Err(e) => error_frame(e),
        };
        let _ = wr.write_all(&end).await;
    }

    async fn attach_inner(
        &self,
        first: &[u8],
        rd: &mut OwnedReadHalf,
        wr: &mut OwnedWriteHalf,
    ) -> Result<(), ShimError> {
        let first: pb::AttachRequest = decode(first)?;
        let process = self.task.process(&first.exec_id)?;
        // Subscribed before any input is fed, so the answer to it is seen.
        let Some(mut output) = process.io().subscribe() else {
            feed(&process, first).await?;
            return Ok(());
        };
        feed(&process, first).await?;
        let mut input_open = true;
        loop {
            tokio::select! {
                chunk = output.recv() => match chunk {
                    Ok(chunk) => {
                        let frame = wire::frame(Kind::Message as u8, &attach_response(chunk));
                        if wr.write_all(&frame).await.is_err() {
                            return Ok(());
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!("attached client too slow: {n} chunks skipped");
                    }
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                },
                f = wire::read_frame(rd), if input_open => match f {
                    Ok(Some((k, payload))) if k == Kind::Message as u8 => {
                        feed(&process, decode(&payload)?).await?;
                    }
                    // End of input (or a client that breaks the protocol): only
                    // the output is left to send.
                    _ => input_open = false,
                },
            }
        }
    }
}

/// Hand one attach request's stdin (and close) to the process.
async fn feed(process: &crate::task::Process, msg: pb::AttachRequest) -> Result<(), ShimError> {
    if !msg.stdin.is_empty() {
        process.io().write_stdin(msg.stdin).await?;
    }
    if msg.close_stdin {
        process.io().close_stdin().await?;
    }
    Ok(())
}
