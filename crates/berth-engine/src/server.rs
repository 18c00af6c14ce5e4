//! The listening socket and the connection loop: HTTP/1.1 over a unix socket with
//! hyper, upgrades enabled for attach and exec.
//!
//! The socket is either bound from `-H unix://PATH` (mode 0660, group `berth` when that
//! group exists) or inherited from systemd socket activation (`LISTEN_FDS`/`LISTEN_PID`).
//!
//! Every client is bounded ([`Limits`]): a connection must send a request's
//! headers within 30 s of the previous answer (or of connecting), headers and
//! the read buffer are capped, and past [`Limits::max_connections`] a new
//! connection is answered `503` at once and closed. Request bodies are bounded
//! where they are read (`api::read_json`: 16 MiB).

use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixListener;

use crate::api;
use crate::engine::Engine;

/// Errors while setting up the listener.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// `-H` names something other than `unix://PATH`.
    #[error("unsupported host {0:?}: berthd listens only on unix://PATH sockets")]
    UnsupportedHost(String),
    /// Binding or preparing the socket failed.
    #[error("{what} {path}: {source}")]
    Socket {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The socket systemd passed is unusable.
    #[error("using the socket from systemd (fd 3): {0}")]
    Systemd(#[source] std::io::Error),
}

/// The path in `unix:///run/berth/berth.sock`.
pub fn parse_host(host: &str) -> Result<PathBuf, ListenError> {
    match host.strip_prefix("unix://") {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ if host.starts_with('/') => Ok(PathBuf::from(host)),
        _ => Err(ListenError::UnsupportedHost(host.to_string())),
    }
}

/// The first socket systemd passed, when `LISTEN_PID` is this process and
/// `LISTEN_FDS` is at least 1, ready for tokio.
pub fn systemd_listener() -> Result<Option<UnixListener>, ListenError> {
    match systemd_listener_std()? {
        Some(l) => UnixListener::from_std(l)
            .map(Some)
            .map_err(ListenError::Systemd),
        None => Ok(None),
    }
}

/// [`systemd_listener`] before tokio exists. It clears `LISTEN_*` from the
/// environment, so call it while the process has a single thread.
pub fn systemd_listener_std() -> Result<Option<std::os::unix::net::UnixListener>, ListenError> {
    let pid_ok = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    let fds = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(0);
    if !pid_ok || fds == 0 {
        return Ok(None);
    }
    const SD_LISTEN_FDS_START: RawFd = 3;
    // Do not pass the activation on to anything this process starts.
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_FDNAMES");
    // SAFETY: systemd's protocol hands fd 3 to this process (LISTEN_PID matched) as an
    // open listening socket that nothing else in the process owns; it is taken once.
    let std_listener =
        unsafe { std::os::unix::net::UnixListener::from_raw_fd(SD_LISTEN_FDS_START) };
    std_listener
        .set_nonblocking(true)
        .map_err(ListenError::Systemd)?;
    Ok(Some(std_listener))
}

/// Binds `path`: removes a stale socket, creates the parent directory, sets mode 0660
/// and the `berth` group when it exists.
pub fn bind(path: &Path) -> Result<UnixListener, ListenError> {
    let err = |what, source| ListenError::Socket {
        what,
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| err("creating the directory of", e))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err("removing the old socket", e)),
    }
    let listener = UnixListener::bind(path).map_err(|e| err("binding", e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| err("setting the mode of", e))?;
    if let Ok(Some(group)) = nix::unistd::Group::from_name("berth") {
        nix::unistd::chown(path, None, Some(group.gid))
            .map_err(|e| err("giving group berth", std::io::Error::from(e)))?;
    }
    Ok(listener)
}

/// What one daemon accepts from its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once (attach and event streams count too).
    pub max_connections: usize,
    /// Time to send a request's headers, and longest idle wait between requests.
    pub header_timeout: Duration,
    /// Largest request head (request line and headers), in bytes.
    pub max_header_size: usize,
}

/// The default number of connections served at once.
pub const MAX_CONNECTIONS: usize = 512;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: MAX_CONNECTIONS,
            header_timeout: Duration::from_secs(30),
            max_header_size: 64 * 1024,
        }
    }
}

/// Serves connections until `shutdown` resolves, with the default [`Limits`].
pub async fn serve<F>(listener: UnixListener, engine: Arc<Engine>, shutdown: F)
where
    F: std::future::Future<Output = ()>,
{
    serve_with(listener, engine, Limits::default(), shutdown).await
}

/// The answer to a connection over the limit: written without reading the
/// request, then the connection is closed.
fn busy_answer(limit: usize) -> Vec<u8> {
    let body = format!(
        "{}\n",
        serde_json::json!({
            "message": format!("berthd is serving its maximum of {limit} connections: try again later")
        })
    );
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// What a connection may have queued unread: a container list of a thousand
/// rows (about 600 KiB) fits. A limit, not an allocation.
const SEND_BUFFER: usize = 1 << 20;

/// Lets a large answer (`ps` of hundreds of containers) go out in one write. With
/// the kernel's default of about 200 KiB, a 311 KB list stopped halfway until the
/// client had read, so the client got it in pieces to gather. The forced option
/// passes the system's maximum (the engine runs as root); the plain one, capped at
/// that maximum, is the fallback.
fn room_for_whole_answers(stream: &tokio::net::UnixStream) {
    use nix::sys::socket::{setsockopt, sockopt};
    if setsockopt(stream, sockopt::SndBufForce, &SEND_BUFFER).is_err() {
        if let Err(e) = setsockopt(stream, sockopt::SndBuf, &SEND_BUFFER) {
            tracing::debug!(error = %e, "send buffer left at the system's default");
        }
    }
}

/// Serves connections until `shutdown` resolves.
pub async fn serve_with<F>(listener: UnixListener, engine: Arc<Engine>, limits: Limits, shutdown: F)
where
    F: std::future::Future<Output = ()>,
{
    tokio::pin!(shutdown);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::warn!(
                limit = limits.max_connections,
                "connection refused: too many connections"
            );
            tokio::spawn(async move {
                let mut stream = stream;
                let answer = busy_answer(limits.max_connections);
                let _ = tokio::time::timeout(Duration::from_secs(5), async {
                    let _ = stream.write_all(&answer).await;
                    let _ = stream.shutdown().await;
                })
                .await;
            });
            continue;
        };
        room_for_whole_answers(&stream);
        let engine = engine.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = service_fn(move |req| api::handle(engine.clone(), req));
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(limits.max_header_size.max(8192))
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn hosts() {
        assert_eq!(
            parse_host("unix:///run/berth/berth.sock").unwrap(),
            PathBuf::from("/run/berth/berth.sock")
        );
        assert!(parse_host("tcp://0.0.0.0:2375").is_err());
        assert!(parse_host("unix://").is_err());
    }

    #[tokio::test]
    async fn bind_sets_mode_0660_and_replaces_stale_sockets() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/berth.sock");
        let l = bind(&p).unwrap();
        drop(l);
        // the file stays behind; a second bind must replace it
        let _l = bind(&p).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o660);
    }

    #[test]
    fn no_systemd_socket_without_listen_pid() {
        // LISTEN_PID is not this process in tests.
        assert!(systemd_listener().unwrap().is_none());
    }
}
