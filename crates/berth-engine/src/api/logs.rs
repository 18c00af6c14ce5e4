//! `GET /containers/{id}/logs`: the json-file log the shim writes, selected, framed and
//! optionally followed (see [`crate::logs`]).

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::Response;
use tokio::sync::mpsc;

use super::{channel_body, Body, Ctx};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::logs::{parse_tail, parse_timestamp, stream_logs, LogOptions};
use crate::stream::{MULTIPLEXED_STREAM, RAW_STREAM};

/// Reads the query into log options; at least one stream must be chosen.
pub fn options(ctx: &Ctx) -> Result<LogOptions, EngineError> {
    let q = &ctx.query;
    let opts = LogOptions {
        stdout: q.bool("stdout"),
        stderr: q.bool("stderr"),
        follow: q.bool("follow"),
        tail: parse_tail(q.get("tail").unwrap_or("all"))?,
        since: parse_timestamp("since", q.get("since").unwrap_or(""))?,
        until: parse_timestamp("until", q.get("until").unwrap_or(""))?,
        timestamps: q.bool("timestamps"),
    };
    if !opts.stdout && !opts.stderr {
        return Err(EngineError::BadParameter(
            "Bad parameters: you must choose at least one stream".to_string(),
        ));
    }
    Ok(opts)
}

/// `GET /containers/{id}/logs`.
pub async fn logs(engine: &Arc<Engine>, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    let rec = engine.store.get(ctx.param())?;
    if rec.log_path.is_empty() {
        // The `none` driver: dockerd's 501.
        return Err(EngineError::NotImplemented(
            "configured logging driver does not support reading".to_string(),
        ));
    }
    let opts = options(ctx)?;
    let tty = rec.config.tty.unwrap_or(false);
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let path = PathBuf::from(&rec.log_path);
    let id = rec.id.clone();
    let eng = engine.clone();
    let still_running = move || {
        eng.store
            .get(&id)
            .map(|r| r.state.running == Some(true))
            .unwrap_or(false)
    };
    tokio::spawn(async move {
        if let Err(e) = stream_logs(path, opts, tty, tx, still_running).await {
            tracing::warn!(error = %e, "reading logs failed");
        }
    });
    let mut r = Response::new(channel_body(rx));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(if tty { RAW_STREAM } else { MULTIPLEXED_STREAM }),
    );
    Ok(r)
}
