//! Exec endpoints: `POST /containers/{id}/exec`, `POST /exec/{id}/start` (hijacked
//! unless detached), `GET /exec/{id}/json`, `POST /exec/{id}/resize`.
//!
//! A hijacked start answers `101` first and only then starts the process, as dockerd
//! does: a client that reads the response head through a buffered reader and then
//! takes the raw socket (docker-py) would otherwise lose output that arrived with the
//! head. The stream closes once the output has ended and the exit code is recorded,
//! so the `GET /exec/{id}/json` that follows always has it. When the process cannot
//! be started, the error goes down the stream and the exit code is 126 or 127.

use std::sync::Arc;

use bollard_stubs::models::{ExecConfig, ExecStartConfig};
use bytes::{Bytes, BytesMut};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::hijack::{streamed_output, switching_protocols, wants_upgrade};
use super::{json as json_response, read_json, status_only, Body, Ctx};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::lifecycle::exec;
use crate::manager::StdStream;
use crate::stream::{encode_frame, pump_detachable, ClientEof};

/// `POST /containers/{id}/exec`.
pub async fn create(
    engine: &Engine,
    ctx: &Ctx,
    req: Request<Incoming>,
) -> Result<Response<Body>, EngineError> {
    // 404 for an unknown container before the body is looked at, as dockerd.
    engine.store.get(ctx.param())?;
    let mut raw: serde_json::Value = read_json(req.into_body()).await?;
    // dockerd decodes JSON keys case-insensitively; docker-py sends `detachKeys`.
    if let Some(obj) = raw.as_object_mut() {
        if !obj.contains_key("DetachKeys") {
            if let Some(v) = obj.remove("detachKeys") {
                obj.insert("DetachKeys".to_string(), v);
            }
        }
    }
    let config: ExecConfig = serde_json::from_value(raw)
        .map_err(|e| EngineError::BadParameter(format!("invalid JSON: {e}")))?;
    let id = exec::create(engine, ctx.param(), config)?;
    Ok(json_response(StatusCode::CREATED, &json!({ "Id": id })))
}

/// The error of an exec that could not be started, as dockerd writes it into the
/// hijacked stream: a line on stdout.
fn error_bytes(e: &EngineError, tty: bool) -> Bytes {
    let line = format!("{}\r\n", e.message());
    if tty {
        return Bytes::from(line);
    }
    let mut out = BytesMut::new();
    encode_frame(StdStream::Stdout, line.as_bytes(), &mut out);
    out.freeze()
}

/// `POST /exec/{id}/start`.
pub async fn start(
    engine: &Arc<Engine>,
    ctx: &Ctx,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, EngineError> {
    let eid = ctx.param().to_string();
    exec::get(engine, &eid)?;
    // The upgrade handle must be taken before the body is consumed.
    let on_upgrade = hyper::upgrade::on(&mut req);
    let body: ExecStartConfig = read_json(req.into_body()).await?;
    let rec = exec::claim(engine, &eid)?;
    // The process gets a terminal when the exec was created with one; the start's
    // `Tty` only says how the output is framed (raw or multiplexed), as in dockerd:
    // docker-py creates with `tty=True` and starts with `Tty: false`.
    let proc_tty = rec.config.tty.unwrap_or(false);
    let tty = body.tty.unwrap_or(proc_tty);
    let detach = body.detach.unwrap_or(false);
    let stdin = rec.config.attach_stdin.unwrap_or(false) && !detach;
    let detach_keys =
        super::hijack::detach_keys(rec.config.detach_keys.as_deref(), proc_tty, stdin)?;
    if detach {
        exec::start(engine, &rec, proc_tty, false, false).await?;
        return Ok(status_only(StatusCode::OK));
    }
    if !wants_upgrade(&ctx.headers) {
        let streams = exec::start(engine, &rec, proc_tty, true, false).await?;
        let Some(mut streams) = streams else {
            return Ok(status_only(StatusCode::OK));
        };
        streams.stdin = None;
        return Ok(streamed_output(streams, tty));
    }
    let engine = engine.clone();
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => TokioIo::new(u),
            Err(e) => {
                tracing::warn!(exec = %eid, error = %e, "connection upgrade failed");
                return;
            }
        };
        match exec::start(&engine, &rec, proc_tty, true, stdin).await {
            Ok(Some(mut streams)) => {
                if !stdin {
                    streams.stdin = None;
                }
                let exited = {
                    let engine = engine.clone();
                    let eid = eid.clone();
                    async move {
                        exec::wait(&engine, &eid).await;
                    }
                };
                match pump_detachable(
                    upgraded,
                    streams,
                    tty,
                    ClientEof::for_exec(tty),
                    exited,
                    detach_keys,
                )
                .await
                {
                    Ok(end) => {
                        tracing::debug!(exec = %eid, bytes = end.output_bytes, "exec stream ended")
                    }
                    Err(e) => tracing::debug!(exec = %eid, error = %e, "exec stream broke"),
                }
            }
            Ok(None) => {}
            Err(e) => {
                let mut io = upgraded;
                let _ = io.write_all(&error_bytes(&e, tty)).await;
                let _ = io.shutdown().await;
            }
        }
    });
    Ok(switching_protocols(tty))
}

/// `GET /exec/{id}/json`. `ExitCode` is null while the process runs, as dockerd's.
pub fn inspect(engine: &Engine, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    let e = exec::get(engine, ctx.param())?;
    let cmd = e.config.cmd.clone().unwrap_or_default();
    let resp = json!({
        "CanRemove": false,
        "DetachKeys": "",
        "ID": e.id,
        "Running": e.running,
        "ExitCode": e.exit_code,
        "ProcessConfig": {
            "privileged": e.config.privileged.unwrap_or(false),
            "user": e.config.user.clone().unwrap_or_default(),
            "tty": e.config.tty.unwrap_or(false),
            "entrypoint": cmd.first().cloned().unwrap_or_default(),
            "arguments": cmd.iter().skip(1).cloned().collect::<Vec<_>>(),
        },
        "OpenStdin": e.config.attach_stdin.unwrap_or(false),
        "OpenStderr": e.config.attach_stderr.unwrap_or(false),
        "OpenStdout": e.config.attach_stdout.unwrap_or(false),
        "ContainerID": e.container_id,
        "Pid": e.pid,
    });
    Ok(json_response(StatusCode::OK, &resp))
}

/// `POST /exec/{id}/resize?h=&w=`.
pub async fn resize(engine: &Engine, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    let e = exec::get(engine, ctx.param())?;
    let dim = |key: &str| -> Result<u32, EngineError> {
        let v = ctx.query.int(key)?.unwrap_or(0);
        u32::try_from(v).map_err(|_| EngineError::BadParameter(format!("invalid {key}: {v}")))
    };
    let (h, w) = (dim("h")?, dim("w")?);
    engine
        .manager
        .tasks_resize_pty(&e.container_id, &e.id, w, h)
        .await?;
    Ok(status_only(StatusCode::CREATED))
}
