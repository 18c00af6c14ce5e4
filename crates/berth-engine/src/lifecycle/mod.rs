//! The container state machine: the one place where a container changes state.
//!
//! ```text
//!             create           start                 exit, no restart
//!   (none) ──────────▶ created ──────▶ running ─────────────────────────▶ exited
//!                        │   start      │  ▲                                 │
//!                        │   failed     │  │ pause / unpause        start    │
//!                        ▼              ▼  │                                 ▼
//!                      exited        paused          exit, policy says     running
//!                                                    restart (back-off)
//!                                    running ──▶ restarting ──────────────▶ running
//!   created | exited | restarting ── rm ──▶ removing ──▶ (gone)
//! ```
//!
//! Every transition of one container runs under that container's lock ([`Locks`]),
//! and is written to the container's record on disk before anyone hears of it
//! (`wait` callers, the `die` event). The HTTP handlers only parse, call the
//! functions here and render what they return.
//!
//! Exits come from the engine's link to the manager ([`crate::link`]): an event, or
//! a reconcile after the link came back. [`exit::handle_exit`] applies an exit only
//! to the run it belongs to (the container is running and the pid is its init's),
//! so an exit that arrives twice, or late, is applied once.

pub mod create;
pub mod exec;
pub mod exit;
pub mod hooks;
pub mod shm;
pub mod state;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard_stubs::models::ImageConfig;
use tokio::sync::{broadcast, OwnedMutexGuard};

pub use create::{create, now_rfc3339, passwd_root, CreateRequest};
pub use exit::restore;
pub use state::Phase;

use crate::engine::{ContainerEvent, Engine};
use crate::error::EngineError;
use crate::spec::{self, SpecInput};
use crate::store::ContainerRecord;

/// How long `kill` with SIGKILL waits for the exit before it says so (dockerd's
/// first wait).
pub const KILL_WAIT: Duration = Duration::from_secs(10);
/// How long a stop or `rm -f` waits for the exit after its SIGKILL.
pub const AFTER_SIGKILL_WAIT: Duration = Duration::from_secs(30);

/// One async lock per container: every state change of a container holds it.
#[derive(Debug, Default)]
pub struct Locks {
    map: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Locks {
    fn entry(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(id.to_string()).or_default().clone()
    }

    /// Waits for the container's lock.
    pub async fn lock(&self, id: &str) -> OwnedMutexGuard<()> {
        self.entry(id).lock_owned().await
    }

    /// The container's lock if nobody holds it.
    pub fn try_lock(&self, id: &str) -> Option<OwnedMutexGuard<()>> {
        self.entry(id).try_lock_owned().ok()
    }

    /// Drops the lock of a container that is gone.
    fn forget(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

/// What a start did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    Started,
    /// It was running already (dockerd answers 304).
    AlreadyRunning,
}

/// What a stop did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    Stopped,
    /// It was not running (dockerd answers 304).
    NotRunning,
}

/// How to stop: the signal (the container's StopSignal, else SIGTERM) and the
/// seconds before SIGKILL (its StopTimeout, else 10; negative waits for ever).
#[derive(Debug, Clone, Default)]
pub struct StopOptions {
    pub signal: Option<u32>,
    pub timeout: Option<i64>,
}

/// Which change `wait` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitCondition {
    /// Until it is not running (at once when it is not). An exit that its restart
    /// policy follows with a start ends the wait too, as with dockerd (whose state
    /// wakes its waiters when it turns to restarting).
    NotRunning,
    /// Until its next exit, even one its restart policy follows with a start.
    NextExit,
    /// Until it is removed.
    Removed,
}

impl WaitCondition {
    pub fn parse(s: &str) -> Result<WaitCondition, EngineError> {
        match s {
            "" | "not-running" => Ok(WaitCondition::NotRunning),
            "next-exit" => Ok(WaitCondition::NextExit),
            "removed" => Ok(WaitCondition::Removed),
            other => Err(EngineError::BadParameter(format!(
                "invalid condition: {other:?}"
            ))),
        }
    }
}

/// Parses a signal as Docker accepts it: "9", "KILL", "SIGKILL".
pub fn parse_signal(s: &str) -> Result<u32, EngineError> {
    if let Ok(n) = s.parse::<u32>() {
        if n == 0 || n > 64 {
            return Err(EngineError::BadParameter(format!("Invalid signal: {s}")));
        }
        return Ok(n);
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|sig| sig as i32)
        .ok()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| EngineError::BadParameter(format!("Invalid signal: {s}")))
}

/// Whether a manager error says the process or task is already gone: a signal or
/// delete that lost the race with the exit.
fn already_gone(e: &EngineError) -> bool {
    matches!(
        e,
        EngineError::Manager {
            code: tonic::Code::NotFound | tonic::Code::FailedPrecondition,
            ..
        }
    )
}

/// The exit code of a start that failed, as dockerd derives it from the runtime's
/// message: 127 when the command does not exist, 126 when it cannot be run, 128
/// for anything else.
pub fn start_error_code(cmd: &str, message: &str) -> i64 {
    let m = message.to_ascii_lowercase();
    let names_cmd = cmd.is_empty() || m.contains(&cmd.to_ascii_lowercase());
    if names_cmd
        && (m.contains("executable file not found") || m.contains("no such file or directory"))
    {
        127
    } else if names_cmd && (m.contains("permission denied") || m.contains("is a directory")) {
        126
    } else if m.contains("not a directory") {
        // A file mounted onto a directory or the other way round.
        127
    } else {
        128
    }
}

/// Waits, at most `limit`, until the container is not running (or gone); true
/// when it is not. Subscribed before the state is read, so no exit slips between.
async fn wait_not_running(engine: &Engine, id: &str, limit: Duration) -> bool {
    let mut rx = engine.events.subscribe();
    let not_running = |engine: &Engine| {
        engine
            .store
            .get(id)
            .map(|r| !Phase::of(&r.state).has_live_task())
            .unwrap_or(true)
    };
    if not_running(engine) {
        return true;
    }
    let fut = async {
        loop {
            match rx.recv().await {
                Ok(ContainerEvent::Exited { id: x, .. })
                | Ok(ContainerEvent::Removed { id: x })
                    if x == id =>
                {
                    return true
                }
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    if not_running(engine) {
                        return true;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return false,
            }
        }
    };
    tokio::time::timeout(limit, fut).await.unwrap_or(false)
}

/// `POST /containers/{id}/start`.
pub async fn start(engine: &Arc<Engine>, reference: &str) -> Result<Started, EngineError> {
    let id = engine.store.resolve(reference)?;
    let _lock = engine.locks.lock(&id).await;
    let rec = engine.store.get(&id)?;
    match Phase::of(&rec.state) {
        Phase::Running | Phase::Paused => return Ok(Started::AlreadyRunning),
        Phase::Removing | Phase::Dead => {
            return Err(EngineError::Conflict(format!(
                "cannot start container {id}: it is being removed"
            )))
        }
        Phase::Created | Phase::Exited | Phase::Restarting => {}
    }
    // A start by the user re-arms the restart policy a stop disarmed.
    let rec = engine
        .store
        .update(&id, |r| r.has_been_manually_stopped = false)?;
    start_locked(engine, &rec).await?;
    Ok(Started::Started)
}

/// Builds the spec of a container that is not running, creates and starts its task
/// and records it running. The caller holds the container's lock. A failure leaves
/// it `exited` with dockerd's code (and removes it when AutoRemove says so).
pub(crate) async fn start_locked(
    engine: &Arc<Engine>,
    rec: &ContainerRecord,
) -> Result<(), EngineError> {
    let id = rec.id.clone();
    // The record says `running` on disk before the task is created, written while
    // it is (a durable write off the start's path, and off its exit's: a run as
    // short as `true` has its exit wait for the start's record). A power loss
    // after it, with or without a task, leaves a running container with no task,
    // which berthd's start ends as an exit (AutoRemove and restart policies
    // apply); the pid, known once the task is, is written without an fsync. A
    // start that fails writes its exit over it.
    let ahead = {
        let engine = engine.clone();
        let id = id.clone();
        tokio::task::spawn_blocking(move || engine.store.persist_ahead(&id, |r| running(r, 0)))
    };
    let started = async {
        let info = engine.manager.snapshots_info(&rec.snapshot_key).await?;
        let rootfs = passwd_root(&info);
        let vols = engine.volumes();
        let mut spec = spec::build_spec(&SpecInput {
            id: &id,
            config: &rec.config,
            host_config: &rec.host_config,
            image: &ImageConfig::default(),
            rootfs: &rootfs,
            container_dir: &engine.store.container_dir(&id),
            init_path: &engine.config.init_path,
            volumes: &vols,
            host: &engine.host,
        })?;
        let mut pending = hooks::before_task_create(engine, rec, &mut spec).await?;
        // The network first when the runtime needs it whole (it writes the
        // network sysctls when it creates the task, and one may name an interface
        // netavark makes: net.ipv4.conf.eth0.*), or when what is left of it is
        // quick (a namespace from the pool): then the task is created started.
        if sets_network_sysctls(&spec)
            || pending.as_ref().is_some_and(hooks::PendingSetup::is_quick)
        {
            hooks::while_task_created(engine, &id, pending.take()).await?;
        }
        let spec_json = serde_json::to_vec(&spec)
            .map_err(|e| EngineError::io("encoding the OCI spec", std::io::Error::other(e)))?;
        // With nothing left to set up alongside the task's creation (no network,
        // or one made in full before it), the task is created started: one
        // request and one run of the runtime, not a create and then a start.
        let one_step = pending.is_none();
        let create = async {
            let stdin = rec.config.open_stdin.unwrap_or(false);
            // The spec goes with the task's creation (one request, not an update
            // and a create). A stopped task left by an earlier run (its exit's
            // delete did not reach the manager) is deleted when it is in the way,
            // rather than asked for before every start.
            match engine
                .manager
                .tasks_create(&id, stdin, Some(spec_json.clone()), one_step)
                .await
            {
                Err(EngineError::Manager {
                    code: tonic::Code::AlreadyExists,
                    ..
                }) => {
                    match engine.manager.tasks_delete(&id, true).await {
                        Ok(_) => {}
                        Err(e) if already_gone(&e) => {}
                        Err(e) => return Err(e),
                    }
                    engine
                        .manager
                        .tasks_create(&id, stdin, Some(spec_json), one_step)
                        .await
                }
                created => created,
            }
        };
        // Both run to their end, whatever the other does: a setup cut off halfway
        // would leave what it made behind.
        let began = std::time::Instant::now();
        let ((networked, network_ms), (created, task_ms)) = tokio::join!(
            timed(began, hooks::while_task_created(engine, &id, pending)),
            timed(began, create)
        );
        tracing::debug!(container = %id, network_ms, task_ms, "network and task ready");
        if networked.is_ok() && matches!(created, Err(EngineError::ManagerUnavailable { .. })) {
            // A start the manager never heard of leaves the container as it was,
            // and so its network.
            hooks::after_task_gone(engine, &id).await;
        }
        networked?;
        let pid = created?;
        if one_step {
            return Ok(pid);
        }
        engine.manager.tasks_start(&id, "").await
    }
    .await;
    // Whatever the start's outcome, the write ahead is over before the record is
    // written again.
    let written_ahead = match ahead.await {
        Ok(r) => r,
        Err(e) => Err(crate::store::StoreError::Io {
            context: "writing",
            path: engine.store.container_dir(&id),
            source: std::io::Error::other(e),
        }),
    };
    let pid = match started {
        Ok(pid) => pid,
        Err(e) => {
            // The disk says `running`: it says again what berthd shows (a start
            // the manager never heard of leaves the container as it was) before
            // the failure is recorded over it, if it is.
            if written_ahead.is_ok() {
                if let Err(e) = engine.store.persist_ahead(&id, |_| {}) {
                    tracing::warn!(container = %id, error = %e, "restoring the record after a failed start");
                }
            }
            return Err(start_failed(engine, rec, e).await);
        }
    };
    match written_ahead {
        Ok(()) => engine.store.update_volatile(&id, |r| running(r, pid))?,
        Err(e) => {
            tracing::debug!(container = %id, error = %e, "the record's write ahead of the start failed: written now");
            engine.store.update(&id, |r| running(r, pid))?
        }
    };
    tracing::info!(container = %id, pid, "started");
    hooks::after_start(engine, &id);
    Ok(())
}

/// A record's change at a start: running with `pid` (0 while not known yet).
fn running(r: &mut ContainerRecord, pid: u32) {
    state::set_running(&mut r.state, pid, now_rfc3339());
    r.has_been_started_before = true;
}

/// Whether the spec sets sysctls of the network namespace.
fn sets_network_sysctls(spec: &oci_spec::runtime::Spec) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.sysctl().as_ref())
        .is_some_and(|s| s.keys().any(|k| k.starts_with("net.")))
}

/// `f`'s output, and the milliseconds from `began` to its end.
async fn timed<T>(began: std::time::Instant, f: impl Future<Output = T>) -> (T, u64) {
    let out = f.await;
    (out, began.elapsed().as_millis() as u64)
}

/// A start failed: the task goes, the container is `exited` with dockerd's code and
/// the message as its error, `wait` callers hear of it, and AutoRemove removes it.
/// Returns the error for the client: 400 when the command is missing or cannot be
/// run (so clients exit 127 or 126 as with dockerd).
async fn start_failed(engine: &Arc<Engine>, rec: &ContainerRecord, e: EngineError) -> EngineError {
    let id = &rec.id;
    if matches!(e, EngineError::ManagerUnavailable { .. }) {
        // Nothing happened: the container stays as it was.
        return e;
    }
    let message = e.message();
    let code = start_error_code(&rec.path, &message);
    tracing::info!(container = %id, code, error = %message, "start failed");
    if let Err(e) = engine.manager.tasks_delete(id, true).await {
        if !already_gone(&e) {
            tracing::warn!(container = %id, error = %e, "deleting the task of a failed start");
        }
    }
    hooks::after_task_gone(engine, id).await;
    let end = state::Ended {
        code,
        oom_killed: false,
        finished_at: now_rfc3339(),
        error: message.clone(),
    };
    match engine
        .store
        .update(id, |r| state::set_exited(&mut r.state, &end))
    {
        Ok(_) => {
            let _ = engine.events.send(ContainerEvent::Exited {
                id: id.clone(),
                code,
                restarting: false,
            });
        }
        Err(e) => tracing::warn!(container = %id, error = %e, "recording the failed start"),
    }
    if rec.host_config.auto_remove == Some(true) {
        if let Err(e) = remove_locked(engine, id).await {
            tracing::warn!(container = %id, error = %e, "auto-remove after a failed start");
        }
    }
    match (code, e) {
        (126 | 127, _) => EngineError::StartFailed { code, message },
        (_, e) => e,
    }
}

/// Sends `signal` to the container's init (`all`: to every process of it) and,
/// once sent, publishes dockerd's `kill` event with the signal.
async fn signal_task(engine: &Engine, id: &str, signal: u32, all: bool) -> Result<(), EngineError> {
    engine.manager.tasks_kill(id, "", signal, all).await?;
    engine.publish_container("kill", id, &[("signal", signal.to_string())]);
    Ok(())
}

/// `POST /containers/{id}/stop`: the stop signal, then SIGKILL to every process
/// after the timeout. Disarms the restart policy.
pub async fn stop(
    engine: &Arc<Engine>,
    reference: &str,
    opts: &StopOptions,
) -> Result<Stopped, EngineError> {
    let id = engine.store.resolve(reference)?;
    let (signal, timeout) = {
        let _lock = engine.locks.lock(&id).await;
        let rec = engine.store.get(&id)?;
        let phase = Phase::of(&rec.state);
        let rec = engine
            .store
            .update(&id, |r| r.has_been_manually_stopped = true)?;
        if phase == Phase::Restarting {
            // Between two runs: the stop cancels the next one.
            engine
                .store
                .update(&id, |r| state::cancel_restart(&mut r.state))?;
            let _ = engine.events.send(ContainerEvent::Exited {
                id: id.clone(),
                code: rec.state.exit_code.unwrap_or(0),
                restarting: false,
            });
            return Ok(Stopped::Stopped);
        }
        if !phase.has_live_task() {
            return Ok(Stopped::NotRunning);
        }
        let signal = match opts.signal {
            Some(s) => s,
            None => parse_signal(rec.config.stop_signal.as_deref().unwrap_or("SIGTERM"))?,
        };
        let timeout = opts.timeout.or(rec.config.stop_timeout).unwrap_or(10);
        // A frozen container cannot act on its stop signal: thaw it first.
        if phase == Phase::Paused {
            engine.manager.tasks_resume(&id).await?;
            engine
                .store
                .update(&id, |r| state::set_paused(&mut r.state, false))?;
        }
        match signal_task(engine, &id, signal, false).await {
            Ok(()) => {}
            Err(e) if already_gone(&e) => {}
            Err(e) => return Err(e),
        }
        (signal, timeout)
    };
    let graceful = match u64::try_from(timeout) {
        Ok(secs) => wait_not_running(engine, &id, Duration::from_secs(secs)).await,
        // Negative: wait for as long as it takes.
        Err(_) => wait_not_running(engine, &id, Duration::MAX / 4).await,
    };
    if !graceful {
        tracing::info!(container = %id, signal, timeout, "did not stop in time; SIGKILL");
        match signal_task(engine, &id, 9, true).await {
            Ok(()) => {}
            Err(e) if already_gone(&e) => {}
            Err(e) => return Err(e),
        }
        if !wait_not_running(engine, &id, AFTER_SIGKILL_WAIT).await {
            return Err(EngineError::Conflict(format!(
                "cannot stop container {id}: tried to kill it, but did not receive an exit event"
            )));
        }
    }
    engine.publish_container("stop", &id, &[]);
    Ok(Stopped::Stopped)
}

/// `POST /containers/{id}/restart`: stop (when running), then start.
pub async fn restart(
    engine: &Arc<Engine>,
    reference: &str,
    opts: &StopOptions,
) -> Result<(), EngineError> {
    let id = engine.store.resolve(reference)?;
    stop(engine, &id, opts).await?;
    let _lock = engine.locks.lock(&id).await;
    let rec = engine.store.get(&id)?;
    if Phase::of(&rec.state).has_live_task() {
        return Err(EngineError::Conflict(format!(
            "cannot restart container {id}: it did not stop"
        )));
    }
    let rec = engine
        .store
        .update(&id, |r| r.has_been_manually_stopped = false)?;
    start_locked(engine, &rec).await?;
    engine.publish_container("restart", &id, &[]);
    Ok(())
}

/// `POST /containers/{id}/kill`. With SIGKILL it returns once the exit is recorded
/// (at most [`KILL_WAIT`]), as dockerd does, so an inspect right after sees it.
pub async fn kill(engine: &Arc<Engine>, reference: &str, signal: u32) -> Result<(), EngineError> {
    let id = engine.store.resolve(reference)?;
    {
        let _lock = engine.locks.lock(&id).await;
        let rec = engine.store.get(&id)?;
        let phase = Phase::of(&rec.state);
        let not_running = || {
            EngineError::Conflict(format!(
                "cannot kill container: {reference}: container {id} is not running"
            ))
        };
        if phase == Phase::Restarting && (signal == 9 || signal == 15) {
            // Nothing runs: disarming the policy is the whole kill.
            drop(_lock);
            stop(engine, &id, &StopOptions::default()).await?;
            return Ok(());
        }
        if !phase.has_live_task() {
            return Err(not_running());
        }
        if signal == 9 || signal == 15 {
            engine
                .store
                .update(&id, |r| r.has_been_manually_stopped = true)?;
        }
        match signal_task(engine, &id, signal, false).await {
            Ok(()) => {}
            // It exited before the signal came: what it was asked for has happened.
            Err(e) if already_gone(&e) && signal == 9 => {}
            Err(e) if already_gone(&e) => return Err(not_running()),
            Err(e) => return Err(e),
        }
        // A frozen process gets its signal only once thawed.
        if phase == Phase::Paused {
            thaw(engine, &id).await;
        }
    }
    if signal == 9 && !wait_not_running(engine, &id, KILL_WAIT).await {
        return Err(EngineError::Conflict(format!(
            "cannot kill container {id}: tried to kill it, but did not receive an exit event"
        )));
    }
    Ok(())
}

async fn thaw(engine: &Engine, id: &str) {
    match engine.manager.tasks_resume(id).await {
        Ok(()) => {
            let _ = engine
                .store
                .update(id, |r| state::set_paused(&mut r.state, false));
        }
        Err(e) => tracing::warn!(container = %id, error = %e, "cannot unpause after kill"),
    }
}

/// `POST /containers/{id}/pause`.
pub async fn pause(engine: &Arc<Engine>, reference: &str) -> Result<(), EngineError> {
    let id = engine.store.resolve(reference)?;
    let _lock = engine.locks.lock(&id).await;
    let rec = engine.store.get(&id)?;
    match Phase::of(&rec.state) {
        Phase::Running => {}
        Phase::Paused => {
            return Err(EngineError::Conflict(format!(
                "Container {id} is already paused"
            )))
        }
        _ => {
            return Err(EngineError::Conflict(format!(
                "Container {id} is not running"
            )))
        }
    }
    engine.manager.tasks_pause(&id).await?;
    engine
        .store
        .update(&id, |r| state::set_paused(&mut r.state, true))?;
    Ok(())
}

/// `POST /containers/{id}/unpause`.
pub async fn unpause(engine: &Arc<Engine>, reference: &str) -> Result<(), EngineError> {
    let id = engine.store.resolve(reference)?;
    let _lock = engine.locks.lock(&id).await;
    let rec = engine.store.get(&id)?;
    if Phase::of(&rec.state) != Phase::Paused {
        return Err(EngineError::Conflict(format!(
            "Container {id} is not paused"
        )));
    }
    engine.manager.tasks_resume(&id).await?;
    engine
        .store
        .update(&id, |r| state::set_paused(&mut r.state, false))?;
    Ok(())
}

/// `DELETE /containers/{id}`: a running container needs `force`, which kills it
/// (SIGKILL to all its processes) and waits for its exit first.
pub async fn remove(engine: &Arc<Engine>, reference: &str, force: bool) -> Result<(), EngineError> {
    let id = engine.store.resolve(reference)?;
    let lock = engine.locks.lock(&id).await;
    let rec = engine.store.get(&id)?;
    let phase = Phase::of(&rec.state);
    if phase.is_running() {
        if !force {
            return Err(EngineError::Conflict(format!(
                "cannot remove container \"{}\": container is running: stop the container before removing or force remove",
                rec.name
            )));
        }
        // No restart policy may bring it back while it is being removed.
        engine
            .store
            .update(&id, |r| r.has_been_manually_stopped = true)?;
        if phase.has_live_task() {
            match signal_task(engine, &id, 9, true).await {
                Ok(()) => {}
                Err(e) if already_gone(&e) => {}
                Err(e) => return Err(e),
            }
            if phase == Phase::Paused {
                thaw(engine, &id).await;
            }
            // The exit is recorded under the lock: let it in.
            drop(lock);
            if !wait_not_running(engine, &id, AFTER_SIGKILL_WAIT).await {
                return Err(EngineError::Conflict(format!(
                    "cannot remove container {id}: killed it, but did not receive an exit event"
                )));
            }
            let _lock = engine.locks.lock(&id).await;
            if engine.store.get(&id).is_err() {
                // Removed meanwhile (AutoRemove after the exit).
                return Ok(());
            }
            return remove_locked(engine, &id).await;
        }
    }
    remove_locked(engine, &id).await
}

/// Takes a container that has no live task apart: its network, its engine record
/// and files, then (after the answer) its task and the manager's record and
/// snapshot. The caller holds its lock.
pub(crate) async fn remove_locked(engine: &Arc<Engine>, id: &str) -> Result<(), EngineError> {
    // Already `removing` (an AutoRemove exit, an interrupted removal): not
    // written again.
    let rec = match engine.store.get(id)? {
        r if Phase::of(&r.state) == Phase::Removing => r,
        _ => engine
            .store
            .update(id, |r| state::set_removing(&mut r.state))?,
    };
    hooks::after_remove(engine, &rec).await;
    // The manager's part goes after the answer: the stopped task (the shim has
    // already run the runtime's `delete` and unmounted the rootfs on its own
    // once the init exited; deleting the task waits for that and lets the shim
    // go) and the manager's container (its record and layer: files and two
    // durable commits). Waiting for them was most of what a `run --rm` spent
    // between the exit and its answer. Nothing a client sees depends on them
    // but which containers use an image, and image removal and prune wait for
    // these deletions first (`removals_settled`). A crash before they are done
    // leaves a manager container no record owns, which the next berthd deletes
    // with its task (`link::drop_unrecorded`).
    let pending = engine.manager_deletes.clone().read_owned().await;
    engine.store.remove(id)?;
    engine.locks.forget(id);
    let _ = engine
        .events
        .send(ContainerEvent::Removed { id: id.to_string() });
    tracing::info!(container = %id, "removed");
    let engine = engine.clone();
    let id = id.to_string();
    tokio::spawn(async move {
        delete_in_manager(&engine, &id).await;
        drop(pending);
    });
    Ok(())
}

/// Deletes the task and the manager's container of a container removed here, or
/// leaves them to the next reconcile's try when the manager cannot do it now.
pub(crate) async fn delete_in_manager(engine: &Engine, id: &str) {
    let r = async {
        match engine.manager.tasks_delete(id, true).await {
            Err(e) if !already_gone(&e) => return Err(e),
            _ => {}
        }
        match engine.manager.containers_delete(id, false).await {
            // Only NotFound: FailedPrecondition is a task still there.
            Err(EngineError::Manager {
                code: tonic::Code::NotFound,
                ..
            }) => Ok(()),
            other => other,
        }
    }
    .await;
    let mut failed = engine
        .manager_deletes_failed
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    match r {
        Ok(()) => {
            failed.remove(id);
        }
        Err(e) => {
            tracing::warn!(container = %id, error = %e, "deleting the manager's container of a removed container (tried again at the next reconcile)");
            failed.insert(id.to_string());
            engine.want_reconcile();
        }
    }
}

/// `POST /containers/{id}/wait`: resolves the container now (404 at once for an
/// unknown one) and returns what to wait on: its exit code when the condition is
/// met, `None` if berthd goes away first.
pub fn wait(
    engine: &Arc<Engine>,
    reference: &str,
    condition: WaitCondition,
) -> Result<impl Future<Output = Option<i64>> + Send + 'static, EngineError> {
    // Subscribed before the state is read: an exit recorded after the read is heard.
    let mut rx = engine.events.subscribe();
    let rec = engine.store.get(reference)?;
    let engine = engine.clone();
    Ok(async move {
        let id = rec.id.clone();
        let phase = Phase::of(&rec.state);
        let mut code = rec.state.exit_code.unwrap_or(0);
        if condition == WaitCondition::NotRunning && !phase.is_running() {
            return Some(code);
        }
        let finished_then = rec.state.finished_at.clone();
        loop {
            match rx.recv().await {
                Ok(ContainerEvent::Exited { id: x, code: c, .. }) if x == id => {
                    code = c;
                    // dockerd's waiters for not-running fire on every stop, also
                    // one its restart policy follows with a start (SetRestarting):
                    // a `wait` on a `--restart always` container returns.
                    match condition {
                        WaitCondition::NextExit | WaitCondition::NotRunning => return Some(c),
                        WaitCondition::Removed => {}
                    }
                }
                Ok(ContainerEvent::Removed { id: x }) if x == id => return Some(code),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Events were missed: the record says what happened.
                    let Ok(now) = engine.store.get(&id) else {
                        return Some(code);
                    };
                    let c = now.state.exit_code.unwrap_or(0);
                    let p = Phase::of(&now.state);
                    match condition {
                        WaitCondition::NotRunning
                            if !p.is_running() || now.state.finished_at != finished_then =>
                        {
                            return Some(c)
                        }
                        WaitCondition::NextExit if now.state.finished_at != finished_then => {
                            return Some(c)
                        }
                        _ => code = c,
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_sysctls_set_the_network_up_before_the_task() {
        let mut spec = oci_spec::runtime::Spec::default();
        assert!(!sets_network_sysctls(&spec));
        let with = |k: &str| {
            let mut linux = oci_spec::runtime::Linux::default();
            linux.set_sysctl(Some(std::collections::HashMap::from([(
                k.to_string(),
                "1".to_string(),
            )])));
            Some(linux)
        };
        spec.set_linux(with("kernel.msgmax"));
        assert!(!sets_network_sysctls(&spec));
        spec.set_linux(with("net.ipv4.conf.eth0.rp_filter"));
        assert!(sets_network_sysctls(&spec));
    }

    #[test]
    fn signals() {
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert_eq!(parse_signal("KILL").unwrap(), 9);
        assert_eq!(parse_signal("sigterm").unwrap(), 15);
        assert_eq!(parse_signal("SIGUSR1").unwrap(), 10);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("0").is_err());
    }

    #[test]
    fn start_errors_get_dockerds_exit_codes() {
        let nf = "container \"x\": runtime create failed: exec: \"nosuchcmd\": executable file not found in $PATH";
        assert_eq!(start_error_code("nosuchcmd", nf), 127);
        let nf = "runtime exec failed: exec: \"/bin/nope\": no such file or directory";
        assert_eq!(start_error_code("/bin/nope", nf), 127);
        let pd = "runtime exec failed: exec: \"/etc/passwd\": permission denied";
        assert_eq!(start_error_code("/etc/passwd", pd), 126);
        assert_eq!(
            start_error_code("/etc", "exec: \"/etc\": is a directory"),
            126
        );
        assert_eq!(
            start_error_code("sh", "cgroup: no space left on device"),
            128
        );
        assert_eq!(
            WaitCondition::parse("removed").unwrap(),
            WaitCondition::Removed
        );
        assert!(WaitCondition::parse("never").is_err());
    }
}
