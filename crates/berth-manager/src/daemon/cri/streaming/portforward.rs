//! Port forwarding over SPDY (`portforward.k8s.io`), as kubelet's server speaks
//! it: for each connection the client opens an `error` and a `data` stream with
//! the same `requestID` and `port` headers; the data stream is joined to a TCP
//! connection to `localhost:<port>` made inside the pod's network namespace. When
//! the pod's side ends, the data stream is closed and then the error stream (empty,
//! or the reason the connection could not be made).
//!
//! The connection is made by a thread of its own that enters the pod's network
//! namespace (setns) and ends right after, so no thread of the daemon's pools ever
//! changes namespace. A pod on the host's network (`hostNetwork`) is reached on
//! the host's loopback, which is its own.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_cri_api::runtime::v1 as cri;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::session::{reset_or_gone, Session, Stream};
use super::{Cri, LINGER};

/// How long connecting to the pod's port may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Half-opened pairs (one stream of the two) kept at once.
const MAX_HALF_OPEN: usize = 128;

/// Connect to `port` on loopback inside the network namespace at `netns` (the
/// calling thread's own when `None`). Run on a thread that ends afterwards.
fn connect_in(netns: Option<&Path>, port: u16) -> io::Result<std::net::TcpStream> {
    if let Some(ns) = netns {
        use std::os::fd::AsRawFd as _;
        let f = std::fs::File::open(ns)?;
        // SAFETY: setns(2) with a descriptor we own; it changes the network
        // namespace of this thread only, which exists for this call and ends after.
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            return Err(io::Error::other(format!(
                "entering the pod's network namespace: {}",
                io::Error::last_os_error()
            )));
        }
    }
    let mut first_err = None;
    for addr in [
        SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
    ] {
        match std::net::TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => return Ok(s),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err.unwrap_or_else(|| io::Error::other("no address to connect to")))
}

/// A connection to `port` in the pod (see [`connect_in`]).
async fn connect(netns: Option<PathBuf>, port: u16) -> io::Result<TcpStream> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("berth-portfwd".to_string())
        .spawn(move || {
            let _ = tx.send(connect_in(netns.as_deref(), port));
        })?;
    let s = rx
        .await
        .map_err(|_| io::Error::other("the connecting thread died"))??;
    s.set_nonblocking(true)?;
    TcpStream::from_std(s)
}

/// Join one client connection (its `error` and `data` streams) to `port` in the
/// pod.
async fn forward(pod: String, netns: Option<PathBuf>, port: u16, error: Stream, data: Stream) {
    let Stream {
        rx: mut from_client,
        writer: to_client,
        reset,
        ..
    } = data;
    let tcp = match connect(netns, port).await {
        Ok(t) => t,
        Err(e) => {
            let msg = format!("error forwarding port {port} to pod {pod}: {e}");
            tracing::debug!("CRI port-forward: {msg}");
            let _ = error.writer.write(msg.as_bytes()).await;
            let _ = error.writer.finish().await;
            let _ = to_client.finish().await;
            return;
        }
    };
    let (mut rd, mut wr) = tcp.into_split();
    // Client to pod, until the client closes its side (or resets, or goes).
    let to_pod = tokio::spawn(async move {
        while let Some(b) = from_client.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    // Pod to client, until the pod closes its side.
    let from_pod = async {
        let mut buf = vec![0u8; 32 << 10];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    if to_client.write(&buf[..n]).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::debug!(port, "CRI port-forward: reading from the pod: {e}");
                    break;
                }
            }
        }
        let _ = to_client.finish().await;
    };
    tokio::select! {
        () = from_pod => {}
        () = reset_or_gone(reset.clone()) => {}
    }
    // The client waits for the error stream's end once the data has ended.
    let _ = error.writer.finish().await;
    tokio::select! {
        _ = to_pod => {}
        () = reset_or_gone(reset) => {}
    }
}

/// A stream's port, if it is one the request allows.
fn port_of(s: &Stream, allowed: &[i32]) -> Result<u16, String> {
    let raw = s.header("port").unwrap_or_default();
    let port: u16 = raw
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("invalid port {raw:?}"))?;
    if !allowed.is_empty() && !allowed.contains(&i32::from(port)) {
        return Err(format!("port {port} was not asked for"));
    }
    Ok(port)
}

/// Serve a port-forward request on its upgraded connection, until the client
/// closes it.
pub async fn serve(cri: &Cri, r: cri::PortForwardRequest, mut session: Session) {
    let pod = match cri.find_sandbox(&r.pod_sandbox_id).await {
        Ok(Some(p)) if p.ready => p,
        _ => {
            tracing::debug!(pod = %r.pod_sandbox_id, "CRI port-forward: the pod is gone or not ready");
            session.end(LINGER).await;
            return;
        }
    };
    let netns = pod.netns();
    // requestID -> the stream of the pair that came first.
    let mut half: HashMap<String, Stream> = HashMap::new();
    let gone = session.client_gone();
    tokio::pin!(gone);
    loop {
        let s = tokio::select! {
            s = session.streams.recv() => s,
            () = &mut gone => None,
        };
        let Some(s) = s else { break };
        let port = match port_of(&s, &r.port) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(pod = %pod.id, "CRI port-forward: {e}");
                let _ = s.writer.write(e.as_bytes()).await;
                s.writer.reset(super::spdy::RST_REFUSED_STREAM).await;
                continue;
            }
        };
        let kind = s.header("streamtype").unwrap_or_default().to_string();
        let Some(rid) = s.header("requestid").map(str::to_string) else {
            s.writer.reset(super::spdy::RST_REFUSED_STREAM).await;
            continue;
        };
        if kind != "error" && kind != "data" {
            s.writer.reset(super::spdy::RST_REFUSED_STREAM).await;
            continue;
        }
        let Some(other) = half.remove(&rid) else {
            if half.len() >= MAX_HALF_OPEN {
                s.writer.reset(super::spdy::RST_REFUSED_STREAM).await;
            } else {
                half.insert(rid, s);
            }
            continue;
        };
        let other_kind = other.header("streamtype").unwrap_or_default();
        let (error, data) = match (kind.as_str(), other_kind) {
            ("error", "data") => (s, other),
            ("data", "error") => (other, s),
            _ => {
                // Two of a kind for one request.
                s.writer.reset(super::spdy::RST_PROTOCOL_ERROR).await;
                other.writer.reset(super::spdy::RST_PROTOCOL_ERROR).await;
                continue;
            }
        };
        if port_of(&data, &r.port).ok() != Some(port) {
            error.writer.reset(super::spdy::RST_PROTOCOL_ERROR).await;
            data.writer.reset(super::spdy::RST_PROTOCOL_ERROR).await;
            continue;
        }
        tokio::spawn(forward(pod.id.clone(), netns.clone(), port, error, data));
    }
    session.end(LINGER).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_made_in_the_namespace_given() {
        // The host's (this thread's) namespace: a listener here is reached.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || connect_in(None, port).map(|_| ()));
        let (_c, _) = l.accept().unwrap();
        t.join().unwrap().unwrap();
        // A namespace path that is not one is refused, not followed.
        let dir = tempfile::tempdir().unwrap();
        let not_ns = dir.path().join("net");
        std::fs::write(&not_ns, "").unwrap();
        let e = std::thread::spawn(move || connect_in(Some(&not_ns), port).map(|_| ()))
            .join()
            .unwrap()
            .unwrap_err();
        assert!(e.to_string().contains("network namespace"), "{e}");
    }
}
