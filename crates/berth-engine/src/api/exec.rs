//! Exec endpoints: `POST /containers/{id}/exec`, `POST /exec/{id}/start` (hijacked
//! unless detached), `GET /exec/{id}/json`, `POST /exec/{id}/resize`.

use std::sync::Arc;

use bollard_stubs::models::{ExecConfig, ExecInspectResponse, ExecStartConfig, ProcessConfig};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use oci_spec::runtime::{Process, Spec};
use serde_json::json;

use super::hijack::{serve_hijacked, streamed_output, switching_protocols, wants_upgrade};
use super::{json as json_response, read_json, status_only, Body, Ctx};
use crate::api::containers::passwd_root;
use crate::engine::{Engine, ExecRecord};
use crate::error::EngineError;
use crate::spec::{self, defaults, user};

/// `POST /containers/{id}/exec`.
pub async fn create(
    engine: &Engine,
    ctx: &Ctx,
    req: Request<Incoming>,
) -> Result<Response<Body>, EngineError> {
    let rec = engine.store.get(ctx.param())?;
    let config: ExecConfig = read_json(req.into_body()).await?;
    if rec.state.running != Some(true) {
        return Err(EngineError::NotRunning(rec.id));
    }
    if config.cmd.as_ref().is_none_or(|c| c.is_empty()) {
        return Err(EngineError::BadParameter(
            "No exec command specified".to_string(),
        ));
    }
    let id = crate::fsutil::random_id().map_err(|e| EngineError::io("reading /dev/urandom", e))?;
    engine.execs().insert(
        id.clone(),
        ExecRecord {
            id: id.clone(),
            container_id: rec.id.clone(),
            config,
            ..ExecRecord::default()
        },
    );
    engine
        .store
        .update(&rec.id, |r| r.exec_ids.push(id.clone()))?;
    Ok(json_response(StatusCode::CREATED, &json!({ "Id": id })))
}

/// The exec'd process: the container's process with the exec's command, env, user,
/// working directory and terminal.
pub(crate) async fn exec_process(
    engine: &Engine,
    exec: &ExecRecord,
    tty: bool,
) -> Result<Process, EngineError> {
    let c = engine.manager.containers_get(&exec.container_id).await?;
    let spec: Spec = serde_json::from_slice(&c.spec).map_err(|e| {
        EngineError::io("reading the container's OCI spec", std::io::Error::other(e))
    })?;
    let mut p = spec.process().clone().unwrap_or_default();
    let cfg = &exec.config;
    p.set_args(cfg.cmd.clone());
    let env = spec::merge_env(
        p.env().as_deref().unwrap_or(&[]),
        cfg.env.as_deref().unwrap_or(&[]),
    );
    p.set_env(Some(env));
    if let Some(w) = cfg.working_dir.as_ref().filter(|w| !w.is_empty()) {
        p.set_cwd(w.into());
    }
    p.set_terminal(Some(tty));
    p.set_console_size(None);
    if let Some(u) = cfg.user.as_ref().filter(|u| !u.is_empty()) {
        let rec = engine.store.get(&exec.container_id)?;
        let info = engine.manager.snapshots_info(&rec.snapshot_key).await?;
        let resolved = user::resolve(&passwd_root(&info), u, &[]).map_err(spec::SpecError::from)?;
        let mut su = p.user().clone();
        su.set_uid(resolved.uid);
        su.set_gid(resolved.gid);
        su.set_additional_gids(Some(resolved.additional_gids));
        p.set_user(su);
    }
    if cfg.privileged == Some(true) {
        let all: oci_spec::runtime::Capabilities = defaults::ALL_CAPS
            .iter()
            .filter_map(|c| defaults::parse_cap(c))
            .collect();
        let mut caps = p.capabilities().clone().unwrap_or_default();
        caps.set_bounding(Some(all.clone()));
        caps.set_effective(Some(all.clone()));
        caps.set_permitted(Some(all));
        p.set_capabilities(Some(caps));
    }
    Ok(p)
}

fn spawn_exec_monitor(engine: &Arc<Engine>, cid: String, eid: String) {
    let engine = engine.clone();
    tokio::spawn(async move {
        let result = engine.manager.tasks_wait(&cid, &eid).await;
        let mut execs = engine.execs();
        if let Some(e) = execs.get_mut(&eid) {
            e.running = false;
            e.exit_code = Some(match &result {
                Ok(x) => i64::from(x.exit_status),
                Err(_) => 126,
            });
        }
    });
}

/// `POST /exec/{id}/start`.
pub async fn start(
    engine: &Arc<Engine>,
    ctx: &Ctx,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, EngineError> {
    let eid = ctx.param().to_string();
    let exec = engine
        .execs()
        .get(&eid)
        .cloned()
        .ok_or_else(|| EngineError::NoSuchExec(eid.clone()))?;
    // The upgrade handle must be taken before the body is consumed.
    let on_upgrade = hyper::upgrade::on(&mut req);
    let body: ExecStartConfig = read_json(req.into_body()).await?;
    if exec.running || exec.exit_code.is_some() {
        return Err(EngineError::Conflict(format!(
            "Error: Exec command {eid} is already running"
        )));
    }
    let tty = body.tty.or(exec.config.tty).unwrap_or(false);
    let detach = body.detach.unwrap_or(false);
    let attach_stdin = exec.config.attach_stdin.unwrap_or(false) && !detach;
    let process = exec_process(engine, &exec, tty).await?;
    let process_json = serde_json::to_vec(&process)
        .map_err(|e| EngineError::io("encoding the exec process", std::io::Error::other(e)))?;
    let cid = exec.container_id.clone();
    engine
        .manager
        .tasks_exec(&cid, &eid, process_json, attach_stdin)
        .await?;
    let streams = if detach {
        None
    } else {
        Some(engine.manager.tasks_attach(&cid, &eid).await?)
    };
    let pid = engine.manager.tasks_start(&cid, &eid).await?;
    if let Some(e) = engine.execs().get_mut(&eid) {
        e.running = true;
        e.pid = pid;
    }
    spawn_exec_monitor(engine, cid, eid.clone());
    let Some(mut streams) = streams else {
        return Ok(status_only(StatusCode::OK));
    };
    if !attach_stdin {
        streams.stdin = None;
    }
    if wants_upgrade(&ctx.headers) {
        serve_hijacked(on_upgrade, streams, tty, format!("exec {eid}"));
        Ok(switching_protocols(tty))
    } else {
        Ok(streamed_output(streams, tty))
    }
}

/// `GET /exec/{id}/json`.
pub fn inspect(engine: &Engine, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    let exec = engine
        .execs()
        .get(ctx.param())
        .cloned()
        .ok_or_else(|| EngineError::NoSuchExec(ctx.param().to_string()))?;
    let cmd = exec.config.cmd.clone().unwrap_or_default();
    let resp = ExecInspectResponse {
        can_remove: Some(false),
        detach_keys: Some(String::new()),
        id: Some(exec.id.clone()),
        running: Some(exec.running),
        exit_code: exec.exit_code,
        process_config: Some(ProcessConfig {
            privileged: exec.config.privileged,
            user: exec.config.user.clone(),
            tty: exec.config.tty,
            entrypoint: cmd.first().cloned(),
            arguments: Some(cmd.iter().skip(1).cloned().collect()),
        }),
        open_stdin: exec.config.attach_stdin,
        open_stderr: exec.config.attach_stderr,
        open_stdout: exec.config.attach_stdout,
        container_id: Some(exec.container_id.clone()),
        pid: Some(i64::from(exec.pid)),
    };
    Ok(json_response(StatusCode::OK, &resp))
}

/// `POST /exec/{id}/resize?h=&w=`.
pub async fn resize(engine: &Engine, ctx: &Ctx) -> Result<Response<Body>, EngineError> {
    let exec = engine
        .execs()
        .get(ctx.param())
        .cloned()
        .ok_or_else(|| EngineError::NoSuchExec(ctx.param().to_string()))?;
    let h = ctx
        .query
        .int("h")?
        .unwrap_or(0)
        .clamp(0, i64::from(u32::MAX)) as u32;
    let w = ctx
        .query
        .int("w")?
        .unwrap_or(0)
        .clamp(0, i64::from(u32::MAX)) as u32;
    engine
        .manager
        .tasks_resize_pty(&exec.container_id, &exec.id, w, h)
        .await?;
    Ok(status_only(StatusCode::CREATED))
}
