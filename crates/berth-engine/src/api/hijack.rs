//! Hijacked connections: `POST /containers/{id}/attach` (and the exec start in
//! `exec.rs`) answer `101 Switching Protocols` to `Upgrade: tcp`, then carry raw
//! bytes both ways through [`crate::stream::pump`]. Without the upgrade header the
//! output is sent as an ordinary streamed body (no stdin), as older clients expect.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderValue, CONNECTION, CONTENT_TYPE, UPGRADE};
use http::{HeaderMap, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;

use super::{channel_body, Body, Ctx};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::logs::{self as logfile, LogOptions};
use crate::manager::{AttachStreams, OutputChunk, StdStream};
use crate::stream::{
    encode_output, parse_detach_keys, pump_detachable, ClientEof, DEFAULT_DETACH_KEYS,
    MULTIPLEXED_STREAM, RAW_STREAM,
};

/// Whether the client asked to take the connection over (`Upgrade: tcp`).
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("tcp"))
}

fn content_type(tty: bool) -> HeaderValue {
    HeaderValue::from_static(if tty { RAW_STREAM } else { MULTIPLEXED_STREAM })
}

/// The 101 answer.
pub fn switching_protocols(tty: bool) -> Response<Body> {
    let mut r = Response::new(super::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static("tcp"));
    h.insert(CONTENT_TYPE, content_type(tty));
    r
}

/// The detach keys of an attach with stdin to a TTY (`detachKeys`, else dockerd's
/// default); dockerd watches for them only then.
pub fn detach_keys(
    given: Option<&str>,
    tty: bool,
    stdin: bool,
) -> Result<Option<Vec<u8>>, EngineError> {
    if !(tty && stdin) {
        return Ok(None);
    }
    let spec = given
        .filter(|s| !s.is_empty())
        .unwrap_or(DEFAULT_DETACH_KEYS);
    parse_detach_keys(spec)
        .map(Some)
        .map_err(EngineError::BadParameter)
}

/// Takes over the connection once hyper has sent the 101, and pumps the streams.
pub fn serve_hijacked(
    on_upgrade: OnUpgrade,
    streams: AttachStreams,
    tty: bool,
    detach: Option<Vec<u8>>,
    on_eof: ClientEof,
    what: String,
) {
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                match pump_detachable(
                    TokioIo::new(upgraded),
                    streams,
                    tty,
                    on_eof,
                    async {},
                    detach,
                )
                .await
                {
                    Ok(end) => {
                        tracing::debug!(%what, bytes = end.output_bytes, "hijacked stream ended")
                    }
                    Err(e) => tracing::debug!(%what, error = %e, "hijacked stream broke"),
                }
            }
            Err(e) => tracing::warn!(%what, error = %e, "connection upgrade failed"),
        }
    });
}

/// The output of `streams` as a streamed body (the no-upgrade case).
pub fn streamed_output(streams: AttachStreams, tty: bool) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let mut output = streams.output;
    tokio::spawn(async move {
        while let Some(chunk) = output.recv().await {
            if tx.send(encode_output(&chunk, tty)).await.is_err() {
                break;
            }
        }
    });
    let mut r = Response::new(channel_body(rx));
    r.headers_mut().insert(CONTENT_TYPE, content_type(tty));
    r
}

/// Keeps only the chosen streams, after replaying the log first when asked.
fn select(
    live: Option<AttachStreams>,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    replay: Vec<OutputChunk>,
) -> AttachStreams {
    let (tx, rx) = mpsc::channel(16);
    let (mut live_out, live_in) = match live {
        Some(s) => (Some(s.output), s.stdin),
        None => (None, None),
    };
    tokio::spawn(async move {
        for c in replay {
            if tx.send(c).await.is_err() {
                return;
            }
        }
        if let Some(out) = live_out.as_mut() {
            while let Some(c) = out.recv().await {
                let wanted = match c.stream {
                    StdStream::Stdout => stdout,
                    StdStream::Stderr => stderr,
                };
                if wanted && tx.send(c).await.is_err() {
                    return;
                }
            }
        }
    });
    AttachStreams {
        output: rx,
        stdin: if stdin { live_in } else { None },
    }
}

/// The streams of container `id`'s init. One not running and not busy (created,
/// or exited) gets them from its next task, connected when that task is created;
/// its lock, held meanwhile, keeps a start from being halfway.
async fn live_streams(engine: &Arc<Engine>, id: &str) -> Result<AttachStreams, EngineError> {
    if let Some(_lock) = engine.locks.try_lock(id) {
        let idle = engine.store.get(id).is_ok_and(|r| {
            matches!(
                crate::lifecycle::Phase::of(&r.state),
                crate::lifecycle::Phase::Created | crate::lifecycle::Phase::Exited
            )
        });
        if idle {
            return engine.manager.tasks_attach_next(id).await;
        }
    }
    engine.manager.tasks_attach(id, "").await
}

/// `POST /containers/{id}/attach?stream=&stdin=&stdout=&stderr=&logs=`.
pub async fn attach(
    engine: &Arc<Engine>,
    ctx: &Ctx,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, EngineError> {
    let rec = engine.store.get(ctx.param())?;
    let tty = rec.config.tty.unwrap_or(false);
    let q = &ctx.query;
    let (stdin, stdout, stderr) = (q.bool("stdin"), q.bool("stdout"), q.bool("stderr"));
    let detach = detach_keys(q.get("detachKeys"), tty, stdin)?;
    let mut replay = vec![];
    // Without a log (the `none` driver) there is nothing to replay.
    if q.bool("logs") && !rec.log_path.is_empty() {
        let opts = LogOptions {
            stdout,
            stderr,
            ..LogOptions::default()
        };
        let (entries, _) = logfile::read_entries(std::path::Path::new(&rec.log_path), &opts)?;
        replay = entries
            .into_iter()
            .map(|e| OutputChunk {
                stream: e.stream,
                data: e.line,
            })
            .collect();
    }
    let live = if q.bool("stream") {
        Some(live_streams(engine, &rec.id).await?)
    } else {
        None
    };
    let streams = select(live, stdin, stdout, stderr, replay);
    engine.publish_container("attach", &rec.id, &[]);
    if wants_upgrade(&ctx.headers) {
        serve_hijacked(
            hyper::upgrade::on(&mut req),
            streams,
            tty,
            detach,
            // A detach (ctrl-p ctrl-q) must leave a shell able to take input again.
            ClientEof::for_container(rec.config.stdin_once.unwrap_or(false), tty),
            format!("attach {}", rec.id),
        );
        Ok(switching_protocols(tty))
    } else {
        Ok(streamed_output(streams, tty))
    }
}
