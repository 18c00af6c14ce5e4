//! The engine's link to berth-manager: how exits reach the state machine whatever
//! fails.
//!
//! One task for the life of berthd subscribes to the manager's event stream. Every
//! time the subscription is made (at start, and again whenever the manager was
//! unreachable or the stream ended: a manager restart, a broken connection, a
//! subscriber cut off for falling behind), it first reconciles: each container
//! the engine believes running is compared with the manager's task list, which
//! carries the exit the shim recorded on disk (`exit.json`) for a task that ended
//! while nobody listened, and every exit found there is applied. Then it follows the
//! stream: a `/tasks/exit` becomes [`lifecycle::exit::handle_exit`], everything else
//! Docker's event stream. Because [`handle_exit`] applies an exit only to the run it
//! belongs to, an exit seen both in a reconcile and on the stream is applied once.
//!
//! The subscription is made before the reconcile reads the task list, so an exit
//! that happens in between is in one or the other. While connected, the link
//! reconciles again at its next tick (every [`TICK`]) when the engine asked for it
//! (an exit it could not record, a stopped task it could not delete), and every
//! [`FULL_EVERY`] ticks anyway, as a slow net under the stream. A reconcile asks
//! every shim for its task's state, so it is never a poll: an idle engine with
//! many containers must cost nothing.
//!
//! [`handle_exit`]: lifecycle::exit::handle_exit

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::engine::Engine;
use crate::lifecycle::{self, exit::Exit, Phase};
use crate::manager::images::Envelope;
use crate::manager::{Task, TaskStatus};
use berth_api::berth::manager::v1::envelope::Event;

/// The first wait before dialling the manager again; it doubles up to the max.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How often a connected link looks whether a reconcile was asked for.
const TICK: Duration = Duration::from_secs(60);
/// Every how many ticks a connected link reconciles anyway (ten minutes).
const FULL_EVERY: u32 = 10;
/// The code of a run whose task the manager has no record of (containerd's
/// "unknown" status, as dockerd reports it).
pub const LOST_TASK_CODE: i64 = 255;

/// Starts the link for as long as the engine lives.
pub fn spawn(engine: &Arc<Engine>) {
    let weak = Arc::downgrade(engine);
    tokio::spawn(async move {
        let mut backoff = BACKOFF_MIN;
        let mut connected_before = false;
        let mut warned = false;
        loop {
            let Some(engine) = weak.upgrade() else { return };
            let mut rx = match engine.manager.events_subscribe(Vec::new()).await {
                Ok(rx) => rx,
                Err(e) => {
                    if !warned {
                        tracing::warn!(error = %e, "berth-manager is unreachable; trying again");
                        warned = true;
                    } else {
                        tracing::debug!(error = %e, "berth-manager is still unreachable");
                    }
                    drop(engine);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            };
            if connected_before || warned {
                tracing::info!("linked to berth-manager again; reconciling");
            }
            warned = false;
            if let Err(e) = reconcile(&engine).await {
                tracing::warn!(error = %e, "reconciling with berth-manager failed; linking again");
                drop(engine);
                // Backs off as an unreachable manager does: a reconcile that fails
                // every time must not become a loop of full task listings.
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
            backoff = BACKOFF_MIN;
            if !connected_before {
                connected_before = true;
                // Restart policies at berthd's start need the manager: only now.
                lifecycle::restore(&engine);
            }
            let mut tick = tokio::time::interval(TICK);
            tick.reset();
            let mut ticks: u32 = 0;
            drop(engine);
            loop {
                tokio::select! {
                    item = rx.recv() => {
                        let Some(engine) = weak.upgrade() else { return };
                        match item {
                            Some(Ok(ev)) => dispatch(&engine, ev),
                            Some(Err(e)) => {
                                tracing::info!(error = %e, "the manager's event stream broke; linking again");
                                break;
                            }
                            None => {
                                tracing::info!("the manager's event stream ended; linking again");
                                break;
                            }
                        }
                    }
                    _ = tick.tick() => {
                        let Some(engine) = weak.upgrade() else { return };
                        ticks = ticks.wrapping_add(1);
                        let wanted = engine
                            .reconcile_wanted
                            .swap(false, std::sync::atomic::Ordering::Relaxed);
                        if wanted || ticks % FULL_EVERY == 0 {
                            if let Err(e) = reconcile(&engine).await {
                                tracing::debug!(error = %e, "periodic reconcile failed");
                                engine.want_reconcile();
                            }
                        }
                    }
                }
            }
        }
    });
}

/// One event from the manager: exits to the state machine, the rest to Docker's
/// event stream.
fn dispatch(engine: &Arc<Engine>, ev: Envelope) {
    if let Some(Event::TaskExit(t)) = &ev.event {
        if t.exec_id.is_empty() {
            let exit = Exit {
                pid: t.pid,
                code: i64::from(t.exit_status),
                oom_killed: t.oom_killed,
                exited_at: t.exited_at.clone(),
                reason: t.reason.clone(),
            };
            let engine = engine.clone();
            let id = t.container_id.clone();
            // Its own task: an exit waits for its container's lock, and must not
            // hold up the stream (and every other container's exit) meanwhile.
            tokio::spawn(async move { lifecycle::exit::handle_exit(&engine, &id, exit).await });
            return;
        }
        lifecycle::exec::exited(engine, &t.exec_id, i64::from(t.exit_status));
    }
    if let Some(docker) = engine.translate(ev) {
        engine.event_hub.publish(docker);
    }
}

/// The exit given to a run that has no task to report one (code 255).
fn lost(pid: u32, reason: &str) -> Exit {
    Exit {
        pid,
        code: LOST_TASK_CODE,
        oom_killed: false,
        exited_at: String::new(),
        reason: reason.to_string(),
    }
}

/// Compares what the engine believes with the manager's tasks and applies what it
/// missed: the exits of tasks that stopped, a lost exit for a run whose task is
/// gone, and the deletion of tasks no container of the engine's is running.
pub async fn reconcile(engine: &Arc<Engine>) -> Result<(), crate::error::EngineError> {
    // Read before the task list: a run started after this read has a pid the list's
    // absence of a task cannot be mistaken for.
    let records = engine.store.list();
    let tasks: HashMap<String, Task> = engine
        .manager
        .tasks_list()
        .await?
        .into_iter()
        .map(|t| (t.container_id.clone(), t))
        .collect();
    let mut applied = 0;
    for rec in &records {
        if !Phase::of(&rec.state).has_live_task() {
            continue;
        }
        let pid = u32::try_from(rec.state.pid.unwrap_or(0)).unwrap_or(0);
        let exit = match tasks.get(&rec.id) {
            Some(t) if t.status() == TaskStatus::Stopped => t.exit.clone().map(Exit::from),
            // A start cut short by berthd's end after its record was written ahead
            // (no pid yet): a task never started is no run; one running is, and
            // its pid is recorded now.
            Some(t) if pid == 0 && t.status() == TaskStatus::Created => {
                Some(lost(0, "berthd stopped while it started this container"))
            }
            Some(t) if pid == 0 && t.pid != 0 => {
                // A container busy meanwhile is left to the next reconcile.
                let Some(_lock) = engine.locks.try_lock(&rec.id) else {
                    continue;
                };
                let task_pid = i64::from(t.pid);
                if let Err(e) = engine.store.update_volatile(&rec.id, |r| {
                    if r.state.running == Some(true) && r.state.pid.unwrap_or(0) == 0 {
                        r.state.pid = Some(task_pid);
                    }
                }) {
                    tracing::debug!(container = %rec.id, error = %e, "recording the pid of a start cut short");
                }
                None
            }
            // Its shim could not be asked: the manager settles that, then tells us.
            Some(_) => None,
            None => Some(lost(
                pid,
                "berth-manager has no task for this container: it was lost",
            )),
        };
        if let Some(exit) = exit {
            applied += 1;
            let engine = engine.clone();
            let id = rec.id.clone();
            tokio::spawn(async move { lifecycle::exit::handle_exit(&engine, &id, exit).await });
        }
    }
    // Tasks of the engine's containers that are not running (an exit applied while
    // the manager was down, a start cut short by a manager crash): nothing will
    // delete them otherwise. Skipped while the container is busy (a start in
    // progress). Tasks of containers the engine does not know (made by someone
    // else through the manager) are not ours to touch.
    for (id, task) in &tasks {
        if !records.iter().any(|r| &r.id == id) {
            continue;
        }
        let Some(_lock) = engine.locks.try_lock(id) else {
            continue;
        };
        let idle = engine
            .store
            .get(id)
            .is_ok_and(|r| !Phase::of(&r.state).has_live_task());
        if !idle {
            continue;
        }
        tracing::info!(container = %id, status = ?task.status(), "deleting a task no running container owns");
        if let Err(e) = engine.manager.tasks_delete(id, true).await {
            tracing::debug!(container = %id, error = %e, "deleting a leftover task");
        }
    }
    if applied > 0 {
        tracing::info!(exits = applied, "reconcile found exits that were missed");
    }
    let failed: Vec<String> = engine
        .manager_deletes_failed
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .cloned()
        .collect();
    for id in failed {
        let _pending = engine.manager_deletes.read().await;
        lifecycle::delete_in_manager(engine, &id).await;
    }
    // Once per berthd: only an earlier one can have left such containers, and the
    // list carries every container's spec.
    use std::sync::atomic::Ordering;
    if !engine.unrecorded_dropped.load(Ordering::Relaxed) {
        drop_unrecorded(engine).await?;
        engine.unrecorded_dropped.store(true, Ordering::Relaxed);
    }
    Ok(())
}

/// The manager's containers that an earlier berthd made (marked with
/// [`ENGINE_LABEL`](crate::lifecycle::create::ENGINE_LABEL)) and never recorded: a
/// create writes both at once, and a crash between the two commits leaves one
/// without the other. Deleted with their snapshots. A create of this berthd may be
/// between its two commits now, so only containers made before it began count.
async fn drop_unrecorded(engine: &Engine) -> Result<(), crate::error::EngineError> {
    let marked = engine
        .manager
        .containers_list(vec![format!(
            "label={}",
            crate::lifecycle::create::ENGINE_LABEL
        )])
        .await?;
    for c in marked {
        let before_us = chrono::DateTime::parse_from_rfc3339(&c.created_at)
            .is_ok_and(|t| t < engine.started_at);
        if !before_us || engine.store.has_id(&c.id) {
            continue;
        }
        tracing::info!(container = %c.id, "deleting a manager container no record owns (a create cut short)");
        if let Err(e) = engine.manager.tasks_delete(&c.id, true).await {
            tracing::debug!(container = %c.id, error = %e, "deleting its task");
        }
        if let Err(e) = engine.manager.containers_delete(&c.id, false).await {
            tracing::warn!(container = %c.id, error = %e, "deleting a manager container no record owns");
        }
    }
    Ok(())
}
