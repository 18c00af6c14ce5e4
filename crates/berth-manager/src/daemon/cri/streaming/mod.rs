//! The CRI streaming server: Exec, Attach and PortForward answer with a URL on
//! it, as kubelet expects (kubelet proxies its clients there; crictl and critest
//! go there themselves). The URL holds a one-time token for the request, valid for
//! a minute; the client upgrades its HTTP/1.1 request there to SPDY/3.1 and opens
//! the streams of Kubernetes' protocols:
//!
//! - exec and attach (`v4.channel.k8s.io`, `v3.`, `v2.`): streams typed by their
//!   `streamType` header: `error`, `stdin`, `stdout`, `stderr`, `resize` (see
//!   [`exec`]);
//! - port forwarding (`portforward.k8s.io`): an `error` and a `data` stream per
//!   connection, tied by `requestID`, to `localhost:<port>` in the pod's network
//!   namespace (see [`portforward`]).
//!
//! It listens on TCP (`stream_address`:`stream_port` of the CRI config, by default
//! 127.0.0.1 and a port the kernel picks, as containerd does). Only a token that
//! the CRI socket's client was given opens anything: the socket is root's, and
//! the token is 128 random bits.
//!
//! What it must never do: reach a container but through the manager's tasks, or a
//! pod's port from the host's network namespace when the pod has its own.

mod exec;
mod portforward;
mod session;
mod spdy;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use berth_cri_api::runtime::v1 as cri;
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Status;

use super::Cri;

/// How long a URL handed out stays valid (kubelet's streaming server caches its
/// requests for a minute too).
const TOKEN_TTL: Duration = Duration::from_secs(60);
/// Requests waiting for their client at once; more is refused.
const MAX_PENDING: usize = 1000;
/// Largest HTTP request head accepted.
const MAX_HEAD: usize = 16 << 10;
/// How long a client gets to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client gets to open the streams its request needs (kubelet's
/// `streamCreationTimeout`).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// After the last frame, how long we wait for the client to close its side.
const LINGER: Duration = Duration::from_secs(10);

/// What a token stands for.
#[derive(Debug, Clone)]
pub enum Request {
    Exec(cri::ExecRequest),
    Attach(cri::AttachRequest),
    PortForward(cri::PortForwardRequest),
}

impl Request {
    fn path(&self) -> &'static str {
        match self {
            Request::Exec(_) => "exec",
            Request::Attach(_) => "attach",
            Request::PortForward(_) => "portforward",
        }
    }
}

#[derive(Debug)]
struct Pending {
    request: Request,
    until: Instant,
}

/// The streaming server's address and the requests handed out and not yet used.
#[derive(Debug)]
pub struct Streams {
    /// `http://host:port`, as URLs start.
    base: String,
    pending: Mutex<HashMap<String, Pending>>,
}

/// 128 random bits, in hex.
fn token() -> Result<String, Status> {
    use std::io::Read as _;
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| Status::internal(format!("reading /dev/urandom: {e}")))?;
    Ok(hex::encode(b))
}

impl Streams {
    /// Listen on `address`:`port` (port 0: one the kernel picks).
    pub fn bind(address: IpAddr, port: u16) -> anyhow::Result<(Streams, std::net::TcpListener)> {
        use anyhow::Context as _;
        let l = std::net::TcpListener::bind(SocketAddr::new(address, port))
            .with_context(|| format!("listening for CRI streams on {address} port {port}"))?;
        l.set_nonblocking(true)
            .context("setting the CRI stream listener non-blocking")?;
        let mut at = l
            .local_addr()
            .context("the CRI stream listener's address")?;
        // A server on every address is reached, from this node, on loopback.
        if at.ip().is_unspecified() {
            at.set_ip(match at.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        Ok((
            Streams {
                base: format!("http://{at}"),
                pending: Mutex::new(HashMap::new()),
            },
            l,
        ))
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keep `request` for its client; the URL to give it.
    fn insert(&self, request: Request) -> Result<String, Status> {
        let token = token()?;
        let now = Instant::now();
        let path = request.path();
        let mut p = self.pending();
        p.retain(|_, v| v.until > now);
        if p.len() >= MAX_PENDING {
            return Err(Status::resource_exhausted(format!(
                "{MAX_PENDING} streaming requests are already waiting for their clients"
            )));
        }
        p.insert(
            token.clone(),
            Pending {
                request,
                until: now + TOKEN_TTL,
            },
        );
        Ok(format!("{}/{path}/{token}", self.base))
    }

    /// The request behind `path`'s token, once: a token is good for one
    /// connection.
    fn take(&self, path: &str) -> Option<Request> {
        let mut parts = path.trim_start_matches('/').splitn(2, '/');
        let (kind, token) = (parts.next()?, parts.next()?);
        let token = token.split(['?', '/']).next()?;
        let mut p = self.pending();
        let found = p.remove(token)?;
        (found.until > Instant::now() && found.request.path() == kind).then_some(found.request)
    }
}

/// Serve the streaming listener for `cri`, until the daemon stops.
pub fn spawn(cri: Cri, listener: std::net::TcpListener) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let listener =
        tokio::net::TcpListener::from_std(listener).context("serving the CRI stream listener")?;
    tracing::info!(url = %cri.streams.base, "serving CRI streams");
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((conn, peer)) => {
                    let cri = cri.clone();
                    tokio::spawn(async move {
                        if let Err(e) = serve_conn(cri, conn).await {
                            tracing::debug!(%peer, "CRI streaming connection: {e}");
                        }
                    });
                }
                Err(e) => {
                    // Out of descriptors, say: the next accept may work.
                    tracing::warn!("accepting a CRI streaming connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(())
}

/// The protocols of Kubernetes' streaming API this server speaks, best first.
const EXEC_PROTOCOLS: [&str; 3] = [
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
];
const PORT_FORWARD_PROTOCOLS: [&str; 1] = ["portforward.k8s.io"];

/// An HTTP/1.1 answer that ends the connection.
async fn refuse(conn: &mut TcpStream, code: u16, reason: &str, extra: &str, body: &str) {
    let msg = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(msg.as_bytes()).await;
    let _ = conn.shutdown().await;
}

/// The request head: method, path, headers (lowercase names), and the bytes read
/// past it.
type Head = (String, String, Vec<(String, String)>, BytesMut);

async fn read_head(conn: &mut TcpStream) -> std::io::Result<Option<Head>> {
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        if conn.read_buf(&mut buf).await? == 0 {
            return Ok(None);
        }
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(n)) => {
                let method = req.method.unwrap_or_default().to_string();
                let path = req.path.unwrap_or_default().to_string();
                let hs = req
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                let rest = buf.split_off(n);
                return Ok(Some((method, path, hs, rest)));
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            Ok(httparse::Status::Partial) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "request head too large",
                ))
            }
            Err(e) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("not HTTP/1.1: {e}"),
                ))
            }
        }
    }
}

/// Every value of header `name`, split at commas.
fn values<'a>(headers: &'a [(String, String)], name: &'a str) -> impl Iterator<Item = &'a str> {
    headers
        .iter()
        .filter(move |(n, _)| n == name)
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The client's most preferred protocol that we speak.
fn negotiate<'a>(headers: &[(String, String)], ours: &[&'a str]) -> Option<&'a str> {
    values(headers, "x-stream-protocol-version")
        .find_map(|c| ours.iter().find(|o| **o == c).copied())
}

async fn serve_conn(cri: Cri, mut conn: TcpStream) -> anyhow::Result<()> {
    let _ = conn.set_nodelay(true);
    let head = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut conn)).await {
        Err(_) => return Ok(()),
        Ok(Ok(None)) => return Ok(()),
        Ok(Ok(Some(h))) => h,
        Ok(Err(e)) => {
            refuse(&mut conn, 400, "Bad Request", "", &format!("{e}\n")).await;
            return Ok(());
        }
    };
    let (method, path, headers, rest) = head;
    let Some(request) = cri.streams.take(&path) else {
        refuse(
            &mut conn,
            404,
            "Not Found",
            "",
            "no such streaming request: the URL is unknown, used or expired\n",
        )
        .await;
        return Ok(());
    };
    if method != "GET" && method != "POST" {
        refuse(
            &mut conn,
            405,
            "Method Not Allowed",
            "",
            "use POST or GET\n",
        )
        .await;
        return Ok(());
    }
    let upgrade = values(&headers, "connection").any(|v| v.eq_ignore_ascii_case("upgrade"))
        && values(&headers, "upgrade").any(|v| v.eq_ignore_ascii_case("SPDY/3.1"));
    if !upgrade {
        refuse(
            &mut conn,
            400,
            "Bad Request",
            "",
            "this server speaks SPDY/3.1 only: Connection: Upgrade, Upgrade: SPDY/3.1\n",
        )
        .await;
        return Ok(());
    }
    let ours: &[&str] = match request {
        Request::PortForward(_) => &PORT_FORWARD_PROTOCOLS,
        _ => &EXEC_PROTOCOLS,
    };
    let Some(protocol) = negotiate(&headers, ours) else {
        let accepted: String = ours
            .iter()
            .map(|p| format!("X-Accepted-Stream-Protocol-Versions: {p}\r\n"))
            .collect();
        refuse(
            &mut conn,
            403,
            "Forbidden",
            &accepted,
            &format!("unable to negotiate a streaming protocol: this server speaks {ours:?}\n"),
        )
        .await;
        return Ok(());
    };
    conn.write_all(
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
             X-Stream-Protocol-Version: {protocol}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await?;
    let (rd, wr) = conn.into_split();
    let session = session::Session::start(rd, wr, rest)?;
    match request {
        Request::Exec(r) => exec::serve_exec(&cri, r, protocol, session).await,
        Request::Attach(r) => exec::serve_attach(&cri, r, protocol, session).await,
        Request::PortForward(r) => portforward::serve(&cri, r, session).await,
    }
    Ok(())
}

/// Kubernetes' rule for exec and attach: some stream, and stderr only without a
/// terminal (a terminal has one output).
fn check_streams(tty: bool, stdin: bool, stdout: bool, stderr: bool) -> Result<(), Status> {
    if !stdin && !stdout && !stderr {
        return Err(Status::invalid_argument(
            "one of stdin, stdout or stderr must be requested",
        ));
    }
    if tty && stderr {
        return Err(Status::invalid_argument(
            "tty and stderr cannot both be requested: a terminal has one output",
        ));
    }
    Ok(())
}

impl Cri {
    /// Whether the container asked for its stdin to be closed when the first
    /// attached client's ends (`stdin_once`).
    async fn stdin_once(&self, id: &str) -> bool {
        // A container made through the manager's own API has no CRI record, and
        // no such setting.
        match self.cri_record(id).await {
            Ok(Some(r)) => r.config().stdin_once,
            _ => false,
        }
    }

    /// The full id of the container `id` names (its id, or a prefix of one
    /// container's id, as containerd takes), whose task must be running.
    async fn running_task(&self, id: &str) -> Result<String, Status> {
        if id.is_empty() {
            return Err(Status::invalid_argument("container_id is empty"));
        }
        let id = if self.d.task_opt(id).is_some() {
            id.to_string()
        } else {
            let mut hits = self
                .d
                .all_tasks()
                .into_iter()
                .filter(|t| t.id.starts_with(id));
            match (hits.next(), hits.next()) {
                (Some(t), None) => t.id.clone(),
                (Some(_), Some(_)) => {
                    return Err(Status::invalid_argument(format!(
                        "container id prefix {id:?} names more than one container"
                    )))
                }
                _ => id.to_string(),
            }
        };
        let id = id.as_str();
        let task = self.d.get_task(id).await.map_err(|e| {
            Status::not_found(format!("container {id:?} has no running process: {e}"))
        })?;
        if task.status != berth_api::berth::manager::v1::TaskStatus::Running as i32 {
            return Err(Status::failed_precondition(format!(
                "container {id:?} is not running"
            )));
        }
        Ok(id.to_string())
    }

    pub async fn stream_exec(&self, r: cri::ExecRequest) -> Result<cri::ExecResponse, Status> {
        if r.cmd.is_empty() || r.cmd[0].is_empty() {
            return Err(Status::invalid_argument("cmd is empty"));
        }
        check_streams(r.tty, r.stdin, r.stdout, r.stderr)?;
        let container_id = self.running_task(&r.container_id).await?;
        let url = self
            .streams
            .insert(Request::Exec(cri::ExecRequest { container_id, ..r }))?;
        Ok(cri::ExecResponse { url })
    }

    pub async fn stream_attach(
        &self,
        r: cri::AttachRequest,
    ) -> Result<cri::AttachResponse, Status> {
        check_streams(r.tty, r.stdin, r.stdout, r.stderr)?;
        let container_id = self.running_task(&r.container_id).await?;
        let url = self
            .streams
            .insert(Request::Attach(cri::AttachRequest { container_id, ..r }))?;
        Ok(cri::AttachResponse { url })
    }

    pub async fn stream_port_forward(
        &self,
        r: cri::PortForwardRequest,
    ) -> Result<cri::PortForwardResponse, Status> {
        if let Some(p) = r.port.iter().find(|p| !(1..=65535).contains(*p)) {
            return Err(Status::invalid_argument(format!("invalid port {p}")));
        }
        let pod = self.find_sandbox(&r.pod_sandbox_id).await?.ok_or_else(|| {
            Status::not_found(format!("pod sandbox {:?} not found", r.pod_sandbox_id))
        })?;
        if !pod.ready {
            return Err(Status::failed_precondition(format!(
                "pod sandbox {:?} is not ready",
                pod.id
            )));
        }
        // The full id: the stream finds the pod again by it.
        let url = self
            .streams
            .insert(Request::PortForward(cri::PortForwardRequest {
                pod_sandbox_id: pod.id,
                port: r.port,
            }))?;
        Ok(cri::PortForwardResponse { url })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_one_time_and_typed() {
        let (s, _l) = Streams::bind(IpAddr::V4(Ipv4Addr::LOCALHOST), 0).unwrap();
        let url = s
            .insert(Request::Exec(cri::ExecRequest::default()))
            .unwrap();
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        let path = url.trim_start_matches(&s.base).to_string();
        assert!(path.starts_with("/exec/"));
        // The wrong kind of request does not open it, and uses it up.
        assert!(s.take(&path.replace("/exec/", "/attach/")).is_none());
        assert!(s.take(&path).is_none());

        let url = s
            .insert(Request::PortForward(cri::PortForwardRequest::default()))
            .unwrap();
        let path = url.trim_start_matches(&s.base).to_string();
        assert!(matches!(s.take(&path), Some(Request::PortForward(_))));
        assert!(s.take(&path).is_none(), "a token opens one connection");
        assert!(s.take("/exec/").is_none());
        assert!(s.take("/").is_none());
        assert!(s.take("").is_none());
    }

    #[test]
    fn an_unspecified_address_is_reached_on_loopback() {
        let (s, _l) = Streams::bind(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0).unwrap();
        assert!(s.base.starts_with("http://127.0.0.1:"), "{}", s.base);
    }

    #[test]
    fn the_clients_preferred_protocol_wins() {
        let h = |v: &[&str]| -> Vec<(String, String)> {
            v.iter()
                .map(|v| ("x-stream-protocol-version".to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            negotiate(
                &h(&["v4.channel.k8s.io", "v3.channel.k8s.io"]),
                &EXEC_PROTOCOLS
            ),
            Some("v4.channel.k8s.io")
        );
        assert_eq!(
            negotiate(&h(&["channel.k8s.io, v2.channel.k8s.io"]), &EXEC_PROTOCOLS),
            Some("v2.channel.k8s.io")
        );
        assert_eq!(negotiate(&h(&["channel.k8s.io"]), &EXEC_PROTOCOLS), None);
        assert_eq!(negotiate(&[], &PORT_FORWARD_PROTOCOLS), None);
    }

    #[test]
    fn exec_streams_follow_kubernetes_rules() {
        assert!(check_streams(false, false, true, true).is_ok());
        assert!(check_streams(true, true, true, false).is_ok());
        assert!(check_streams(false, false, false, false).is_err());
        assert!(check_streams(true, false, true, true).is_err());
    }
}
