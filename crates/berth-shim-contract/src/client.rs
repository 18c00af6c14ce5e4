//! Dialling a shim: one connection per call on its unix socket (see [`crate::wire`]),
//! with the calls and answers of tonic's generated clients, so that callers handle
//! the shim's errors as gRPC statuses like every other error of the manager's API.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Code as GrpcCode, Response, Status};

use crate::wire::{self, pb, FrameError, Kind, Method, RpcStatus};

/// Answers queued between the socket and an Attach's reader.
const ATTACH_QUEUE: usize = 16;

/// A client of the shim serving one socket. Cheap to clone; calls made through
/// clones run concurrently (each on its own connection).
#[derive(Debug, Clone)]
pub struct ShimClient {
    socket: Arc<PathBuf>,
}

/// A client for the shim serving `socket`, once the socket accepts a connection.
pub async fn connect(socket: &Path) -> std::io::Result<ShimClient> {
    drop(UnixStream::connect(socket).await?);
    Ok(ShimClient {
        socket: Arc::new(socket.to_path_buf()),
    })
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("shim: {what}: {e}"))
}

fn frame_error(e: FrameError) -> Status {
    match e {
        FrameError::Io(e) => unavailable("reading the answer", e),
        other => Status::internal(format!("shim: {other}")),
    }
}

fn status_of(payload: &[u8]) -> Status {
    match wire::decode::<RpcStatus>(payload) {
        Ok(s) => Status::new(
            GrpcCode::from_i32(i32::try_from(s.code).unwrap_or(2)),
            s.message,
        ),
        Err(e) => frame_error(e),
    }
}

macro_rules! unary {
    ($($(#[$doc:meta])* $fn:ident($method:ident, $req:ty) -> $resp:ty;)*) => {
        $(
            $(#[$doc])*
            pub async fn $fn(&mut self, request: $req) -> Result<Response<$resp>, Status> {
                self.call(Method::$method, &request).await.map(Response::new)
            }
        )*
    };
}

impl ShimClient {
    async fn dial(&self) -> Result<UnixStream, Status> {
        UnixStream::connect(self.socket.as_path())
            .await
            .map_err(|e| unavailable(&format!("dialling {}", self.socket.display()), e))
    }

    async fn call<Req, Resp>(&self, method: Method, request: &Req) -> Result<Resp, Status>
    where
        Req: prost::Message,
        Resp: prost::Message + Default,
    {
        let mut conn = self.dial().await?;
        wire::write_frame(&mut conn, method as u8, request)
            .await
            .map_err(|e| unavailable("sending the request", e))?;
        match wire::read_frame(&mut conn).await.map_err(frame_error)? {
            Some((k, payload)) if k == Kind::Reply as u8 => {
                wire::decode(&payload).map_err(frame_error)
            }
            Some((k, payload)) if k == Kind::Status as u8 => Err(status_of(&payload)),
            Some((k, _)) => Err(Status::internal(format!("shim: unexpected frame kind {k}"))),
            None => Err(Status::unavailable(
                "shim: the connection closed before the answer",
            )),
        }
    }

    unary! {
        connect(Connect, pb::ConnectRequest) -> pb::ConnectResponse;
        state(State, pb::StateRequest) -> pb::StateResponse;
        create(Create, pb::CreateRequest) -> pb::CreateResponse;
        start(Start, pb::StartRequest) -> pb::StartResponse;
        kill(Kill, pb::KillRequest) -> pb::Empty;
        delete(Delete, pb::DeleteRequest) -> pb::ExitStatus;
        exec(Exec, pb::ExecRequest) -> pb::Empty;
        resize_pty(ResizePty, pb::ResizePtyRequest) -> pb::Empty;
        close_io(CloseIo, pb::CloseIoRequest) -> pb::Empty;
        wait(Wait, pb::WaitRequest) -> pb::ExitStatus;
        pids(Pids, pb::PidsRequest) -> pb::PidsResponse;
        pause(Pause, pb::PauseRequest) -> pb::Empty;
        resume(Resume, pb::ResumeRequest) -> pb::Empty;
        update(Update, pb::UpdateRequest) -> pb::Empty;
        stats(Stats, pb::StatsRequest) -> pb::StatsResponse;
        reopen_log(ReopenLog, pb::ReopenLogRequest) -> pb::Empty;
        shutdown(Shutdown, pb::ShutdownRequest) -> pb::Empty;
    }

    /// Live stdio: `input`'s first request names the process; the answer is the
    /// process's output until it ends. The input is sent until it ends or the
    /// output does.
    pub async fn attach<S>(&mut self, input: S) -> Result<Response<AttachStream>, Status>
    where
        S: Stream<Item = pb::AttachRequest> + Send + 'static,
    {
        let conn = self.dial().await?;
        let (mut rd, mut wr) = conn.into_split();
        let writer = tokio::spawn(async move {
            let mut input = std::pin::pin!(input);
            let mut kind = Method::Attach as u8;
            while let Some(m) = input.next().await {
                if wire::write_frame(&mut wr, kind, &m).await.is_err() {
                    return;
                }
                kind = Kind::Message as u8;
            }
            let _ = wr.shutdown().await;
        });
        let (tx, rx) = tokio::sync::mpsc::channel(ATTACH_QUEUE);
        // The shim's first frame says the client is subscribed: only then may the
        // caller start the process (on another connection) without losing output.
        match wire::read_frame(&mut rd).await {
            Ok(Some((k, _))) if k == Kind::Reply as u8 => {}
            Ok(Some((k, payload))) if k == Kind::Status as u8 => {
                writer.abort();
                let s = status_of(&payload);
                if s.code() != GrpcCode::Ok {
                    return Err(s);
                }
                // The output had already ended: an empty stream.
                return Ok(Response::new(AttachStream { rx }));
            }
            Ok(Some((k, _))) => {
                writer.abort();
                return Err(Status::internal(format!(
                    "shim: unexpected first attach frame kind {k}"
                )));
            }
            Ok(None) => {
                writer.abort();
                return Err(Status::unavailable(
                    "shim: the connection closed before the attach was answered",
                ));
            }
            Err(e) => {
                writer.abort();
                return Err(frame_error(e));
            }
        }
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    f = wire::read_frame(&mut rd) => f,
                    () = tx.closed() => break,
                };
                let item = match next {
                    Ok(Some((k, payload))) if k == Kind::Message as u8 => {
                        wire::decode::<pb::AttachResponse>(&payload).map_err(frame_error)
                    }
                    Ok(Some((k, payload))) if k == Kind::Status as u8 => {
                        let s = status_of(&payload);
                        if s.code() == GrpcCode::Ok {
                            break;
                        }
                        Err(s)
                    }
                    Ok(Some((k, _))) => {
                        Err(Status::internal(format!("shim: unexpected frame kind {k}")))
                    }
                    Ok(None) => Err(Status::unavailable(
                        "shim: the connection closed before the end of the output",
                    )),
                    Err(e) => Err(frame_error(e)),
                };
                let last = item.is_err();
                if tx.send(item).await.is_err() || last {
                    break;
                }
            }
            // The output ended: stop sending input (the shim no longer reads it).
            writer.abort();
        });
        Ok(Response::new(AttachStream { rx }))
    }
}

/// The output of an Attach: `AttachResponse`s until the process's output ends
/// (`None`), or an error.
#[derive(Debug)]
pub struct AttachStream {
    rx: tokio::sync::mpsc::Receiver<Result<pb::AttachResponse, Status>>,
}

impl AttachStream {
    /// The next answer; `None` once the output has ended.
    pub async fn message(&mut self) -> Result<Option<pb::AttachResponse>, Status> {
        self.rx.recv().await.transpose()
    }
}

impl Stream for AttachStream {
    type Item = Result<pb::AttachResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}
