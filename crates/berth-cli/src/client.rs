//! A small HTTP/1.1 client for berthd's unix socket: one connection per request (as the
//! docker CLI mostly does), Docker's error bodies turned into [`CliError::Api`], and
//! hijacked connections for attach and exec.
//!
//! The API version: requests go out with ours, and an engine that refuses it as too
//! new gets the request again with the version it named (dockerd and berthd both say
//! "Maximum supported API version is X"). That spares every command the `HEAD /_ping`
//! round trip the docker CLI makes first, which against a berthd of the same release
//! only ever confirms our version. `version` still pings ([`Client::connect`]): it
//! shows what was negotiated.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

/// The connection's read buffer (see `Client::conn`).
const READ_BUF: usize = 1 << 20;

/// The socket used when neither `-H`, `BERTH_HOST` nor `DOCKER_HOST` says otherwise.
pub const DEFAULT_HOST: &str = "unix:///run/berth/berth.sock";
/// The newest API version this CLI speaks.
pub const CLIENT_API_VERSION: &str = "1.47";

/// Errors talking to berthd.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The socket cannot be reached.
    #[error("cannot reach berthd at {0}: is it running? (sudo systemctl start berthd)")]
    Unreachable(String),
    /// The host is not a unix socket.
    #[error("unsupported host {0:?}: only unix://PATH is supported")]
    BadHost(String),
    /// berthd answered with an error.
    #[error("Error response from daemon: {message}")]
    Api { status: StatusCode, message: String },
    /// The connection broke or the answer was not HTTP.
    #[error("talking to berthd: {0}")]
    Http(#[from] hyper::Error),
    /// A request could not be built.
    #[error("building a request: {0}")]
    Request(#[from] http::Error),
    /// The answer was not the JSON expected.
    #[error("reading berthd's answer: {0}")]
    Json(#[from] serde_json::Error),
}

/// Which host to use: the flag, then BERTH_HOST, then DOCKER_HOST, then the default.
pub fn pick_host(flag: Option<&str>) -> String {
    flag.map(str::to_string)
        .or_else(|| std::env::var("BERTH_HOST").ok().filter(|s| !s.is_empty()))
        .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| DEFAULT_HOST.to_string())
}

/// A client for one berthd.
#[derive(Debug, Clone)]
pub struct Client {
    host: String,
    socket: PathBuf,
    /// The API version in use: ours until the engine names a lower one. Shared by
    /// clones (a `run`'s waiter), so one refusal settles it for all.
    version: Arc<RwLock<String>>,
}

/// Picks the lower of two `1.NN` versions.
pub fn negotiate(server: &str) -> String {
    let parse = |v: &str| {
        v.split_once('.')
            .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)))
    };
    match (parse(server), parse(CLIENT_API_VERSION)) {
        (Some(s), Some(c)) if s < c => server.to_string(),
        _ => CLIENT_API_VERSION.to_string(),
    }
}

impl Client {
    /// A client for `host` (`unix://PATH`); nothing is sent yet.
    pub fn new(host: &str) -> Result<Client, CliError> {
        let socket = match host.strip_prefix("unix://") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => return Err(CliError::BadHost(host.to_string())),
        };
        Ok(Client {
            host: host.to_string(),
            socket,
            version: Arc::new(RwLock::new(CLIENT_API_VERSION.to_string())),
        })
    }

    /// Pings berthd and adopts the lower of its API version and ours.
    pub async fn connect(host: &str) -> Result<Client, CliError> {
        let c = Client::new(host)?;
        let resp = c.send(Method::HEAD, "/_ping", None, false).await?;
        if let Some(v) = resp
            .headers()
            .get("api-version")
            .and_then(|v| v.to_str().ok())
        {
            c.set_version(negotiate(v));
        }
        Ok(c)
    }

    /// The API version in use.
    pub fn version(&self) -> String {
        self.version
            .read()
            .map(|v| v.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    fn set_version(&self, v: String) {
        match self.version.write() {
            Ok(mut g) => *g = v,
            Err(e) => *e.into_inner() = v,
        }
    }

    async fn conn(
        &self,
        upgrades: bool,
    ) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, CliError> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|_| CliError::Unreachable(self.host.clone()))?;
        // One read buffer of a fixed size, large enough that a list of hundreds of
        // containers, which the engine writes at once, is read at once and kept as
        // it was read (see `body`). Its pages are touched only as far as data
        // comes: hyper reads into it uninitialized, and the adaptive buffer it
        // would use instead doubles its way up in copies.
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .read_buf_exact_size(Some(READ_BUF))
            .handshake(TokioIo::new(stream))
            .await?;
        tokio::spawn(async move {
            let _ = if upgrades {
                conn.with_upgrades().await
            } else {
                conn.await
            };
        });
        Ok(sender)
    }

    fn uri(&self, path: &str) -> String {
        if path == "/_ping" {
            path.to_string()
        } else {
            format!("/v{}{}", self.version(), path)
        }
    }

    /// Sends a request built by `build` (given the URI); an engine that refuses our
    /// API version as too new gets it once more with the version it names. Error
    /// statuses become [`CliError::Api`].
    async fn exchange(
        &self,
        path: &str,
        upgrades: bool,
        build: impl Fn(String) -> Result<Request<Full<Bytes>>, http::Error>,
    ) -> Result<http::Response<Incoming>, CliError> {
        let mut retried = false;
        loop {
            let mut sender = self.conn(upgrades).await?;
            let resp = sender.send_request(build(self.uri(path))?).await?;
            let status = resp.status();
            if !(status.is_client_error() || status.is_server_error()) {
                return Ok(resp);
            }
            let bytes = resp.into_body().collect().await?.to_bytes();
            let message = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_string());
            match supported_version(status, &message) {
                Some(v) if !retried && v != self.version() => {
                    self.set_version(v);
                    retried = true;
                }
                _ => return Err(CliError::Api { status, message }),
            }
        }
    }

    /// Sends a request; error statuses become [`CliError::Api`].
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
        hijack: bool,
    ) -> Result<http::Response<Incoming>, CliError> {
        let data = body.map(|b| b.to_string()).unwrap_or_default();
        self.send_typed(method, path, Bytes::from(data), "application/json", hijack)
            .await
    }

    /// [`Client::send`] with a body that is not JSON (an archive for `cp`).
    pub async fn send_typed(
        &self,
        method: Method,
        path: &str,
        data: Bytes,
        content_type: &str,
        hijack: bool,
    ) -> Result<http::Response<Incoming>, CliError> {
        self.exchange(path, hijack, |uri| {
            let mut req = request(&method, uri).header("Content-Type", content_type);
            if hijack {
                req = req.header("Connection", "Upgrade").header("Upgrade", "tcp");
            }
            req.body(Full::new(data.clone()))
        })
        .await
    }

    /// A request whose answer is JSON (or empty: `Value::Null`).
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, CliError> {
        Ok(self
            .answer(method, path, body)
            .await?
            .unwrap_or(serde_json::Value::Null))
    }

    /// A request's answer whole, for a caller that decodes it borrowing from it (a
    /// container list of hundreds of entries). An answer that came in one read is
    /// kept where it was read; one in pieces is gathered into one buffer of the
    /// announced length.
    pub async fn body(&self, method: Method, path: &str) -> Result<Bytes, CliError> {
        let resp = self.send(method, path, None, false).await?;
        let announced = resp
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = resp.into_body();
        // The first piece, kept as it is until a second one comes.
        let mut first: Option<Bytes> = None;
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame?.into_data() else {
                continue;
            };
            if let Some(f) = first.take() {
                // The length is the engine's word: a bound keeps a wrong one from
                // reserving more than a list could hold.
                out.reserve_exact(announced.min(64 << 20).max(f.len() + data.len()));
                out.extend_from_slice(&f);
                out.extend_from_slice(&data);
            } else if out.is_empty() {
                first = Some(data);
            } else {
                out.extend_from_slice(&data);
            }
        }
        Ok(first.unwrap_or_else(|| Bytes::from(out)))
    }

    /// A request whose JSON answer is decoded straight into `T` (`None`
    /// when the answer is empty), for answers too large to build as a tree first.
    pub async fn decode<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
    ) -> Result<Option<T>, CliError> {
        self.answer(method, path, None).await
    }

    async fn answer<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Option<T>, CliError> {
        let resp = self.send(method, path, body, false).await?;
        let bytes = resp.into_body().collect().await?.to_bytes();
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        Ok(Some(serde_json::from_slice(&bytes)?))
    }

    /// Sends a request with a raw body (a tar for load and import) and extra headers;
    /// error statuses become [`CliError::Api`]. The answer's body is left to read.
    pub async fn send_bytes(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        headers: &[(&str, &str)],
    ) -> Result<http::Response<Incoming>, CliError> {
        self.exchange(path, false, |uri| {
            let mut req = request(&method, uri);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            req.body(Full::new(body.clone()))
        })
        .await
    }

    /// A request whose answer is JSON, parsed keeping the engine's key order (for
    /// `inspect`, whose output shows the keys as dockerd orders them).
    pub async fn json_ordered(
        &self,
        method: Method,
        path: &str,
    ) -> Result<crate::template::Value, CliError> {
        let resp = self.send(method, path, None, false).await?;
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok(crate::template::Value::from_json(&bytes)?)
    }

    /// Takes over the connection (attach, exec start): returns the raw stream after 101.
    pub async fn hijack(
        &self,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<TokioIo<Upgraded>, CliError> {
        let resp = self.send(Method::POST, path, body, true).await?;
        let upgraded = hyper::upgrade::on(resp).await?;
        Ok(TokioIo::new(upgraded))
    }
}

/// A request to berthd with the headers every one carries.
fn request(method: &Method, uri: String) -> http::request::Builder {
    Request::builder()
        .method(method.clone())
        .uri(uri)
        .header("Host", "berth")
        .header(
            "User-Agent",
            concat!("berth-cli/", env!("CARGO_PKG_VERSION")),
        )
}

/// The version an engine names when it refuses ours as too new (a 400 with dockerd's
/// "client version X is too new. Maximum supported API version is Y").
fn supported_version(status: StatusCode, message: &str) -> Option<String> {
    if status != StatusCode::BAD_REQUEST {
        return None;
    }
    let (_, v) = message.split_once("Maximum supported API version is ")?;
    let v = v.trim().trim_end_matches('.');
    let (major, minor) = v.split_once('.')?;
    (major.parse::<u32>().is_ok() && minor.parse::<u32>().is_ok()).then(|| negotiate(v))
}

/// `key=value` filter flags as the API's `filters` JSON, url-encoded; empty when
/// there are none.
pub fn filters_query(filters: &[String]) -> Result<String, FilterError> {
    let mut m: serde_json::Map<String, serde_json::Value> = serde_json::Map::new();
    for f in filters {
        let (k, v) = f.split_once('=').ok_or_else(|| FilterError(f.clone()))?;
        let e = m
            .entry(k.trim().to_ascii_lowercase())
            .or_insert_with(|| serde_json::json!({}));
        if let Some(o) = e.as_object_mut() {
            o.insert(v.to_string(), serde_json::Value::Bool(true));
        }
    }
    if m.is_empty() {
        return Ok(String::new());
    }
    Ok(enc(&serde_json::Value::Object(m).to_string()))
}

/// A `--filter` that is not `key=value`.
#[derive(Debug, thiserror::Error)]
#[error("bad format of filter (expected name=value)")]
pub struct FilterError(pub String);

/// Percent-encodes a query value.
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_negotiate_down_only() {
        assert_eq!(negotiate("1.41"), "1.41");
        assert_eq!(negotiate("1.47"), "1.47");
        assert_eq!(negotiate("1.50"), "1.47");
        assert_eq!(negotiate("junk"), "1.47");
    }

    #[test]
    fn a_refused_version_names_the_one_to_use() {
        let too_new = "client version 1.47 is too new. Maximum supported API version is 1.41";
        assert_eq!(
            supported_version(StatusCode::BAD_REQUEST, too_new).as_deref(),
            Some("1.41")
        );
        assert_eq!(supported_version(StatusCode::NOT_FOUND, too_new), None);
        assert_eq!(
            supported_version(StatusCode::BAD_REQUEST, "No such container: x"),
            None
        );
        assert_eq!(
            supported_version(
                StatusCode::BAD_REQUEST,
                "Maximum supported API version is junk"
            ),
            None
        );
    }

    #[test]
    fn hosts_and_escapes() {
        assert!(Client::new("tcp://x:1").is_err());
        assert!(Client::new("unix:///tmp/s.sock").is_ok());
        assert_eq!(enc("a b/c"), "a%20b%2Fc");
        assert_eq!(pick_host(Some("unix:///x")), "unix:///x");
    }

    #[test]
    fn filters_as_docker_sends_them() {
        assert_eq!(filters_query(&[]).unwrap(), "");
        let q = filters_query(&["label=a=b".into(), "status=exited".into()]).unwrap();
        assert_eq!(q, enc(r#"{"label":{"a=b":true},"status":{"exited":true}}"#));
        assert!(filters_query(&["nope".into()]).is_err());
    }

    /// Serves every request on `sock` with `body`, written in `pieces` with a pause
    /// between them, so that the client reads it in as many goes.
    async fn serve_in_pieces(sock: &std::path::Path, body: &'static [u8], pieces: usize) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::UnixListener::bind(sock).unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut head = Vec::new();
                let mut b = [0u8; 1024];
                while !head.ends_with(b"\r\n\r\n") {
                    let n = s.read(&mut b).await.unwrap();
                    assert!(n > 0);
                    head.extend_from_slice(&b[..n]);
                }
                let start = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                s.write_all(start.as_bytes()).await.unwrap();
                for part in body.chunks(body.len().div_ceil(pieces)) {
                    s.write_all(part).await.unwrap();
                    s.flush().await.unwrap();
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            }
        });
    }

    #[tokio::test]
    async fn an_answer_is_whole_in_one_piece_or_in_several() {
        static BODY: &[u8] = br#"[{"Id":"a"},{"Id":"b"},{"Id":"c"},{"Id":"d"},{"Id":"e"}]"#;
        let d = tempfile::tempdir().unwrap();
        for pieces in [1, 2, 5] {
            let sock = d.path().join(format!("{pieces}.sock"));
            serve_in_pieces(&sock, BODY, pieces).await;
            let c = Client::new(&format!("unix://{}", sock.display())).unwrap();
            let got = c.body(Method::GET, "/containers/json").await.unwrap();
            assert_eq!(&got[..], BODY, "{pieces} pieces");
        }
    }

    #[tokio::test]
    async fn unreachable_is_worded_for_humans() {
        let e = Client::connect("unix:///nonexistent/berth.sock")
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot reach berthd at unix:///nonexistent/berth.sock: is it running? (sudo systemctl start berthd)"
        );
    }
}
