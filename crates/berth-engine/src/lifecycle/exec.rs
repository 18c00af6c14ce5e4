//! Exec instances (`docker exec`): made, started once, and ended with an exit code
//! that is recorded before the client's stream is closed, so `exec inspect` right
//! after the output always carries it.

use std::sync::Arc;
use std::time::Duration;

use bollard_stubs::models::ExecConfig;
use oci_spec::runtime::{Process, Spec};
use tokio::sync::watch;

use super::{passwd_root, start_error_code, Phase};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::manager::AttachStreams;
use crate::spec::{self, defaults, user};

/// The exit code of an exec whose process could not be started, unless its message
/// says more (dockerd's default).
const EXEC_FAILED: i64 = 126;
/// Waiting on an exec's exit again after the manager could not be reached.
const WAIT_RETRY_MIN: Duration = Duration::from_millis(50);
const WAIT_RETRY_MAX: Duration = Duration::from_secs(2);
/// How long deleting an exited exec's process from its shim may take.
const FORGET_LIMIT: Duration = Duration::from_secs(10);

/// An exec instance.
#[derive(Debug, Clone)]
pub struct ExecRecord {
    pub id: String,
    pub container_id: String,
    pub config: ExecConfig,
    pub running: bool,
    /// Set once, when the process has ended (or failed to start).
    pub exit_code: Option<i64>,
    pub pid: u32,
    /// Whether start was called (an exec starts once).
    pub started: bool,
    /// Follows `exit_code`, for those who wait on it.
    pub done: Arc<watch::Sender<Option<i64>>>,
}

impl ExecRecord {
    pub(crate) fn new(id: String, container_id: String, config: ExecConfig) -> ExecRecord {
        ExecRecord {
            id,
            container_id,
            config,
            running: false,
            exit_code: None,
            pid: 0,
            started: false,
            done: Arc::new(watch::channel(None).0),
        }
    }
}

/// `POST /containers/{id}/exec`: a new exec instance in a running container.
pub fn create(engine: &Engine, reference: &str, config: ExecConfig) -> Result<String, EngineError> {
    let rec = engine.store.get(reference)?;
    if !Phase::of(&rec.state).has_live_task() {
        return Err(EngineError::NotRunning(rec.id));
    }
    if config.cmd.as_ref().is_none_or(|c| c.is_empty()) {
        return Err(EngineError::BadParameter(
            "No exec command specified".to_string(),
        ));
    }
    let id = crate::fsutil::random_id().map_err(|e| EngineError::io("reading /dev/urandom", e))?;
    let action = crate::events::exec_action("exec_create", config.cmd.as_deref().unwrap_or(&[]));
    engine.execs().insert(
        id.clone(),
        ExecRecord::new(id.clone(), rec.id.clone(), config),
    );
    engine
        .store
        .update(&rec.id, |r| r.exec_ids.push(id.clone()))?;
    engine.publish_container(&action, &rec.id, &[("execID", id.clone())]);
    Ok(id)
}

/// The exec instance `id`.
pub fn get(engine: &Engine, id: &str) -> Result<ExecRecord, EngineError> {
    engine
        .execs()
        .get(id)
        .cloned()
        .ok_or_else(|| EngineError::NoSuchExec(id.to_string()))
}

/// Claims an exec for its one start: a second start is a conflict.
pub fn claim(engine: &Engine, id: &str) -> Result<ExecRecord, EngineError> {
    let mut execs = engine.execs();
    let e = execs
        .get_mut(id)
        .ok_or_else(|| EngineError::NoSuchExec(id.to_string()))?;
    if e.started {
        return Err(EngineError::Conflict(format!(
            "Error: Exec command {id} is already running"
        )));
    }
    e.started = true;
    Ok(e.clone())
}

/// Records how an exec ended, once.
fn finish(engine: &Engine, id: &str, code: i64) {
    let mut execs = engine.execs();
    if let Some(e) = execs.get_mut(id) {
        if e.exit_code.is_none() {
            e.running = false;
            e.exit_code = Some(code);
            e.done.send_replace(Some(code));
        }
    }
}

/// An exit the manager reported for an exec (its `/tasks/exit` event).
pub fn exited(engine: &Engine, id: &str, code: i64) {
    finish(engine, id, code);
}

/// The exec's exit code once it has ended.
pub async fn wait(engine: &Engine, id: &str) -> Option<i64> {
    let mut rx = engine.execs().get(id)?.done.subscribe();
    rx.wait_for(Option::is_some).await.ok().and_then(|c| *c)
}

/// The exec'd process: the container's process with the exec's command, env, user,
/// working directory and terminal.
pub(crate) async fn process(
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
        let all: oci_spec::runtime::Capabilities = defaults::all_caps()
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

/// Starts a claimed exec: adds the process to the container's task, attaches to it
/// (unless detached) and starts it. When that fails the exec ends at once with
/// dockerd's code (127 not found, 126 not executable or anything else) and the
/// error is returned for the client.
pub async fn start(
    engine: &Arc<Engine>,
    exec: &ExecRecord,
    tty: bool,
    attach: bool,
    stdin: bool,
) -> Result<Option<AttachStreams>, EngineError> {
    let (cid, eid) = (exec.container_id.clone(), exec.id.clone());
    engine.publish_container(
        &crate::events::exec_action("exec_start", exec.config.cmd.as_deref().unwrap_or(&[])),
        &cid,
        &[("execID", eid.clone())],
    );
    let started = async {
        let process = process(engine, exec, tty).await?;
        let process_json = serde_json::to_vec(&process)
            .map_err(|e| EngineError::io("encoding the exec process", std::io::Error::other(e)))?;
        engine
            .manager
            .tasks_exec(&cid, &eid, process_json, stdin)
            .await?;
        let streams = if attach {
            Some(engine.manager.tasks_attach(&cid, &eid).await?)
        } else {
            None
        };
        let pid = engine.manager.tasks_start(&cid, &eid).await?;
        Ok::<_, EngineError>((streams, pid))
    }
    .await;
    match started {
        Ok((streams, pid)) => {
            if let Some(e) = engine.execs().get_mut(&eid) {
                // A process that exits at once can have its exit event handled
                // (finish) before the start answers: it must not run again.
                if e.exit_code.is_none() {
                    e.running = true;
                }
                e.pid = pid;
            }
            watch_exit(engine, cid, eid);
            Ok(streams)
        }
        Err(e) => {
            let cmd = exec
                .config
                .cmd
                .as_ref()
                .and_then(|c| c.first())
                .cloned()
                .unwrap_or_default();
            let code = match start_error_code(&cmd, &e.message()) {
                128 => EXEC_FAILED,
                c => c,
            };
            tracing::info!(container = %cid, exec = %eid, code, error = %e, "exec failed to start");
            finish(engine, &eid, code);
            Err(e)
        }
    }
}

/// Follows an exec until its exit is known, through manager restarts: its shim
/// keeps the exit, so waiting again after the manager is back still gets it. Once
/// the exit is recorded here the shim's record of the process is deleted, as
/// dockerd has containerd delete an exec's process when it exits: the exec stays
/// inspectable (`ExitCode`) from the engine's own record until its container goes,
/// and a long-running container exec'd into every few seconds does not pile up
/// processes in its shim.
fn watch_exit(engine: &Arc<Engine>, cid: String, eid: String) {
    let engine = engine.clone();
    tokio::spawn(async move {
        let mut delay = WAIT_RETRY_MIN;
        loop {
            if engine
                .execs()
                .get(&eid)
                .is_none_or(|e| e.exit_code.is_some())
            {
                break;
            }
            match engine.manager.tasks_wait(&cid, &eid).await {
                Ok(exit) => {
                    finish(&engine, &eid, i64::from(exit.exit_status));
                    break;
                }
                Err(EngineError::Manager {
                    code: tonic::Code::NotFound | tonic::Code::FailedPrecondition,
                    ..
                }) => {
                    // The task (and every process in it) is gone with its container.
                    return finish(&engine, &eid, 137);
                }
                Err(e) => {
                    tracing::debug!(container = %cid, exec = %eid, error = %e, "waiting for an exec; trying again");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(WAIT_RETRY_MAX);
                }
            }
        }
        // The shim records the exit only after the output is drained to whoever is
        // attached, so nothing is cut short here.
        let forget = engine.manager.tasks_delete_process(&cid, &eid);
        match tokio::time::timeout(FORGET_LIMIT, forget).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::debug!(container = %cid, exec = %eid, error = %e, "deleting an exited exec")
            }
            Err(_) => {
                tracing::debug!(container = %cid, exec = %eid, "deleting an exited exec timed out")
            }
        }
    });
}
