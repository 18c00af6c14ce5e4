//! The HTTP handlers: one file per endpoint group. [`handle`] routes a request, calls
//! the group's handler, and turns any error into Docker's `{"message": ...}` answer.

// Numbers here come from requests: a narrowing `as` would turn a bad one into a
// wrong one silently. Convert with try_from and answer 400 instead.
#![deny(clippy::cast_possible_truncation)]

pub mod archive;
mod archive_root;
pub mod build;
pub mod container_ops;
pub mod containers;
pub mod events;
pub mod exec;
pub mod hijack;
pub mod images;
pub mod list_rows;
pub mod logs;
pub mod networks;
pub mod swarm;
pub mod system;
pub mod system_df;
pub mod volumes;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::engine::Engine;
use crate::error::EngineError;
use crate::router::{self, Endpoint, Matched, API_VERSION};

/// The response body type: whole or streamed.
pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// The parsed parts of a request a handler needs besides its body.
#[derive(Debug)]
pub struct Ctx {
    pub method: Method,
    pub matched: Matched,
    pub query: Query,
    pub headers: HeaderMap,
}

impl Ctx {
    /// The `{id}`/`{name}` path parameter.
    pub fn param(&self) -> &str {
        self.matched.param.as_deref().unwrap_or("")
    }
}

/// A parsed query string.
#[derive(Debug, Default, Clone)]
pub struct Query(pub Vec<(String, String)>);

impl Query {
    /// Parses `a=1&b=x%20y`; `+` is a space.
    pub fn parse(q: Option<&str>) -> Query {
        let Some(q) = q else {
            return Query::default();
        };
        Query(
            q.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (
                        router::percent_decode(&k.replace('+', " ")),
                        router::percent_decode(&v.replace('+', " ")),
                    )
                })
                .collect(),
        )
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A boolean as dockerd reads them: "", "0", "false" (any case) and "no" are false.
    pub fn bool(&self, key: &str) -> bool {
        match self.get(key) {
            None => false,
            Some(v) => !matches!(v.to_ascii_lowercase().as_str(), "" | "0" | "false" | "no"),
        }
    }

    /// An integer, 400 when it is not one.
    pub fn int(&self, key: &str) -> Result<Option<i64>, EngineError> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| EngineError::BadParameter(format!("invalid value for {key}: {v:?}"))),
        }
    }

    /// The `filters` parameter: `{"key":["v1","v2"]}`, or the older `{"key":{"v1":true}}`.
    pub fn filters(&self) -> Result<Vec<(String, String)>, EngineError> {
        let Some(raw) = self.get("filters").filter(|s| !s.is_empty()) else {
            return Ok(vec![]);
        };
        let v: serde_json::Value = serde_json::from_str(raw)
            .map_err(|e| EngineError::BadParameter(format!("invalid filter: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| EngineError::BadParameter("invalid filter: not an object".into()))?;
        let mut out = vec![];
        for (k, vals) in obj {
            match vals {
                serde_json::Value::Array(a) => {
                    for x in a {
                        out.push((k.clone(), x.as_str().unwrap_or_default().to_string()));
                    }
                }
                serde_json::Value::Object(m) => {
                    for (x, on) in m {
                        if on.as_bool() == Some(true) {
                            out.push((k.clone(), x.clone()));
                        }
                    }
                }
                _ => {
                    return Err(EngineError::BadParameter(format!(
                        "invalid filter: values of {k} must be a list"
                    )))
                }
            }
        }
        Ok(out)
    }
}

/// An empty body.
pub fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A whole body.
pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

/// A body fed by a channel: each message is sent as it comes.
pub fn channel_body(rx: mpsc::Receiver<Bytes>) -> Body {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok(Frame::data(b)), rx))
    });
    BodyExt::boxed_unsync(StreamBody::new(stream.boxed()))
}

/// A JSON answer already encoded.
pub fn json_bytes(status: StatusCode, data: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(full(data));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// A JSON answer.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(mut data) => {
            data.push(b'\n');
            json_bytes(status, data)
        }
        Err(e) => error_response(&EngineError::io(
            "encoding the response",
            std::io::Error::other(e),
        )),
    }
}

/// A status with no body.
pub fn status_only(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = status;
    r
}

/// Docker's error answer: the status from [`EngineError::status`] and `{"message": ...}`.
pub fn error_response(e: &EngineError) -> Response<Body> {
    let body = serde_json::json!({ "message": e.message() });
    let mut r = Response::new(full(format!("{body}\n")));
    *r.status_mut() = e.status();
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// The largest JSON request body berthd reads: 16 MiB (tarballs are streamed,
/// never collected).
pub const MAX_JSON_BODY: usize = 16 << 20;
/// How long a client may take to send a JSON body.
const JSON_BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Reads a whole JSON body; an empty body is `T::default()`, as dockerd allows for
/// optional bodies. Larger than [`MAX_JSON_BODY`] is refused with 413, at once
/// when the Content-Length says so, else when the body gets there.
pub async fn read_json<T: DeserializeOwned + Default>(body: Incoming) -> Result<T, EngineError> {
    use hyper::body::Body as _;
    let too_large = || {
        EngineError::TooLarge(format!(
            "the request body is larger than {} MiB",
            MAX_JSON_BODY >> 20
        ))
    };
    if body.size_hint().lower() > MAX_JSON_BODY as u64 {
        return Err(too_large());
    }
    let limited = http_body_util::Limited::new(body, MAX_JSON_BODY);
    let collected = tokio::time::timeout(JSON_BODY_TIMEOUT, limited.collect())
        .await
        .map_err(|_| {
            EngineError::BadParameter(format!(
                "reading the request body: not sent within {} s",
                JSON_BODY_TIMEOUT.as_secs()
            ))
        })?;
    let bytes = match collected {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
        Err(e) => {
            return Err(EngineError::BadParameter(format!(
                "reading the request body: {e}"
            )))
        }
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes).map_err(EngineError::InvalidJson)
}

/// Answers one request. Never fails: errors become Docker's error answers.
pub async fn handle(
    engine: Arc<Engine>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let mut resp = match dispatch(engine, req).await {
        Ok(r) => r,
        Err(e) => {
            if e.status().is_server_error() {
                tracing::error!(%method, %path, error = %e, "request failed");
            } else {
                tracing::debug!(%method, %path, error = %e, "request refused");
            }
            error_response(&e)
        }
    };
    tracing::debug!(%method, %path, status = resp.status().as_u16(), "request");
    let h = resp.headers_mut();
    h.insert(
        "Server",
        HeaderValue::from_static(concat!("berth/", env!("CARGO_PKG_VERSION"), " (linux)")),
    );
    h.insert("Api-Version", HeaderValue::from_static(API_VERSION));
    h.insert("Ostype", HeaderValue::from_static("linux"));
    Ok(resp)
}

async fn dispatch(
    engine: Arc<Engine>,
    req: Request<Incoming>,
) -> Result<Response<Body>, EngineError> {
    let matched = router::route(req.method(), req.uri().path())?;
    let ctx = Ctx {
        method: req.method().clone(),
        query: Query::parse(req.uri().query()),
        headers: req.headers().clone(),
        matched,
    };
    use Endpoint::*;
    match ctx.matched.endpoint {
        Ping => Ok(system::ping(&ctx)),
        Version => system::version(&engine).await,
        Info => system::info(&engine).await,
        Auth => images::auth(&engine, req).await,
        SwarmLeave => swarm::leave(),
        ContainerCreate => containers::create(&engine, &ctx, req).await,
        ContainerList => containers::list(&engine, &ctx).await,
        ContainerInspect => containers::inspect(&engine, &ctx).await,
        ContainerStart => containers::start(&engine, &ctx).await,
        ContainerStop => containers::stop(&engine, &ctx).await,
        ContainerKill => containers::kill(&engine, &ctx).await,
        ContainerWait => containers::wait(&engine, &ctx).await,
        ContainerDelete => containers::delete(&engine, &ctx).await,
        ContainerRename => containers::rename(&engine, &ctx),
        ContainerResize => containers::resize(&engine, &ctx).await,
        ContainerAttach => hijack::attach(&engine, &ctx, req).await,
        ContainerRestart => container_ops::restart(&engine, &ctx).await,
        ContainerPause => container_ops::pause(&engine, &ctx).await,
        ContainerUnpause => container_ops::unpause(&engine, &ctx).await,
        ContainerUpdate => container_ops::update(&engine, &ctx, req).await,
        ContainerTop => container_ops::top(&engine, &ctx).await,
        ContainerChanges => container_ops::changes(&engine, &ctx).await,
        ContainerExport => container_ops::export(&engine, &ctx).await,
        ContainerStats => container_ops::stats(&engine, &ctx).await,
        ContainerPrune => container_ops::prune(&engine, &ctx).await,
        ContainerArchive => archive::archive(&engine, &ctx, req).await,
        ContainerLogs => logs::logs(&engine, &ctx).await,
        ExecCreate => exec::create(&engine, &ctx, req).await,
        ExecStart => exec::start(&engine, &ctx, req).await,
        ExecInspect => exec::inspect(&engine, &ctx),
        ExecResize => exec::resize(&engine, &ctx).await,
        ImageList => images::list(&engine, &ctx).await,
        ImageInspect => images::inspect(&engine, &ctx).await,
        ImageHistory => images::history(&engine, &ctx).await,
        ImageTag => images::tag(&engine, &ctx).await,
        ImageDelete => images::delete(&engine, &ctx).await,
        ImageCreate => images::create(&engine, &ctx, req).await,
        ImagePush => images::push(&engine, &ctx).await,
        ImageLoad => images::load(&engine, &ctx, req).await,
        ImageGet | ImageGetMany => images::save(&engine, &ctx).await,
        ImagePrune => images::prune(&engine, &ctx).await,
        Commit => images::commit(&engine, &ctx, req).await,
        Build => build::build(&engine, &ctx, req).await,
        BuildPrune => build::prune(&engine, &ctx).await,
        VolumeList => volumes::list(&engine, &ctx),
        VolumeInspect => volumes::inspect(&engine, &ctx),
        VolumeCreate => volumes::create(&engine, &ctx, req).await,
        VolumeDelete => volumes::delete(&engine, &ctx),
        VolumePrune => volumes::prune(&engine, &ctx).await,
        Events => events::events(&engine, &ctx),
        SystemDf => system_df::df(&engine).await,
        NetworkList => networks::list(&engine, &ctx),
        NetworkInspect => networks::inspect(&engine, &ctx),
        NetworkCreate => networks::create(&engine, req).await,
        NetworkDelete => networks::delete(&engine, &ctx).await,
        NetworkPrune => networks::prune(&engine, &ctx).await,
        NetworkConnect => networks::connect(&engine, &ctx, req).await,
        NetworkDisconnect => networks::disconnect(&engine, &ctx, req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        let q = Query::parse(Some("a=1&b=x%20y&c=&d&e=false&f=True&g=a+b"));
        assert_eq!(q.get("b"), Some("x y"));
        assert!(q.bool("a") && q.bool("f"));
        assert!(!q.bool("c") && !q.bool("d") && !q.bool("e") && !q.bool("zz"));
        assert_eq!(q.get("g"), Some("a b"));
        assert_eq!(q.int("a").unwrap(), Some(1));
        assert!(q.int("b").is_err());
    }

    #[test]
    fn filters_in_both_forms() {
        let q = Query::parse(Some(
            "filters=%7B%22status%22%3A%5B%22running%22%2C%22exited%22%5D%7D",
        ));
        assert_eq!(
            q.filters().unwrap(),
            vec![
                ("status".to_string(), "running".to_string()),
                ("status".to_string(), "exited".to_string())
            ]
        );
        let q = Query::parse(Some("filters=%7B%22name%22%3A%7B%22web%22%3Atrue%7D%7D"));
        assert_eq!(q.filters().unwrap(), vec![("name".into(), "web".into())]);
        assert!(Query::parse(Some("filters=nope")).filters().is_err());
    }
}
