//! Exits: applying one to the run it belongs to, exactly once; the restart policy;
//! AutoRemove; and what berthd does for its containers when it starts.

use std::sync::Arc;
use std::time::Duration;

use bollard_stubs::models::RestartPolicyNameEnum as Policy;

use super::state::{self, Ended, Phase};
use super::{already_gone, now_rfc3339, remove_locked, start_locked};
use crate::engine::{ContainerEvent, Engine};
use crate::error::EngineError;
use crate::store::ContainerRecord;

/// The first back-off of the restart policy; it doubles with each restart.
const RESTART_BACKOFF: Duration = Duration::from_millis(100);
/// The longest back-off.
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How long a restart waits for the manager to be reachable again before it tries
/// once more.
const MANAGER_RETRY: Duration = Duration::from_secs(1);

/// How a container's init ended, as the manager reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// The init's pid: the exit applies to the run with this pid (0: to whatever
    /// run is current).
    pub pid: u32,
    /// As a shell reports it: 128+n for death by signal n.
    pub code: i64,
    pub oom_killed: bool,
    /// RFC 3339; "" for now.
    pub exited_at: String,
    /// Why, when it is not the process's own doing (a dead shim, a lost task).
    pub reason: String,
}

impl From<crate::manager::ExitStatus> for Exit {
    fn from(e: crate::manager::ExitStatus) -> Exit {
        Exit {
            pid: e.pid,
            code: i64::from(e.exit_status),
            oom_killed: e.oom_killed,
            exited_at: e.exited_at,
            reason: String::new(),
        }
    }
}

/// The back-off before the restart policy starts `rec` again after it exited with
/// `code`, or None when it stays stopped: `always` and `unless-stopped` unless the
/// user stopped it, `on-failure[:N]` for a non-zero code at most N times.
pub fn restart_delay(rec: &ContainerRecord, code: i64) -> Option<Duration> {
    if rec.has_been_manually_stopped {
        return None;
    }
    let policy = rec.host_config.restart_policy.clone().unwrap_or_default();
    let max = policy.maximum_retry_count.unwrap_or(0);
    let restart = match policy.name {
        Some(Policy::ALWAYS) | Some(Policy::UNLESS_STOPPED) => true,
        Some(Policy::ON_FAILURE) => code != 0 && (max <= 0 || rec.restart_count < max),
        _ => false,
    };
    if !restart {
        return None;
    }
    let shift = u32::try_from(rec.restart_count.clamp(0, 7)).unwrap_or(7);
    Some((RESTART_BACKOFF * (1u32 << shift)).min(RESTART_BACKOFF_MAX))
}

/// Applies an exit to container `id`, once: only while it is running, and only to
/// the run whose init had `exit.pid`. Then the exit is on disk, `wait` callers and
/// `events` (one `die`) hear of it, the task is deleted (the next reconcile does it
/// if the manager cannot be reached now), and the restart policy or AutoRemove
/// follow.
pub async fn handle_exit(engine: &Arc<Engine>, id: &str, exit: Exit) {
    let _lock = engine.locks.lock(id).await;
    let Ok(rec) = engine.store.get(id) else {
        tracing::debug!(container = %id, "exit of a container that is gone");
        return;
    };
    if !Phase::of(&rec.state).has_live_task() {
        tracing::debug!(container = %id, code = exit.code, "exit of a run already ended");
        return;
    }
    let pid = rec.state.pid.unwrap_or(0);
    if exit.pid != 0 && pid != 0 && i64::from(exit.pid) != pid {
        tracing::debug!(container = %id, exit_pid = exit.pid, pid, "exit of an earlier run");
        return;
    }
    let delay = restart_delay(&rec, exit.code);
    // An AutoRemove container goes from running straight to removing in one change
    // (dockerd shows it `removing` too once its removal has begun), made in memory
    // only (see below); the removal below does not write the record again.
    let auto_remove = delay.is_none() && rec.host_config.auto_remove == Some(true);
    let end = Ended {
        code: exit.code,
        oom_killed: exit.oom_killed,
        finished_at: if exit.exited_at.is_empty() {
            now_rfc3339()
        } else {
            exit.exited_at.clone()
        },
        error: exit.reason.clone(),
    };
    let key = die_key(id, pid, &end.finished_at);
    // What the run held (its network, its host ports) is released before anyone
    // hears of the exit when it holds host ports: a `run` that returned, or a `wait`,
    // can be followed at once by a container that takes the same host port. Without
    // host ports nothing of it can be taken again sooner than its removal, so the
    // teardown runs alongside the rest (the exit recorded and published, the task
    // deleted, AutoRemove), each to its end: the removal waits for it (one network
    // lock) before it answers, and so does anything else of this container (its
    // lock, held until both are done). Done again harmlessly when the exit is
    // applied again after a crash.
    let ports = super::hooks::holds_host_ports(engine, id);
    if ports {
        super::hooks::after_task_gone(engine, id).await;
    }
    let released = async {
        if !ports {
            super::hooks::after_task_gone(engine, id).await;
        }
    };
    let rest = async {
        let change = |r: &mut ContainerRecord| {
            match delay {
                Some(_) => state::set_restarting(&mut r.state, &end),
                None => state::set_exited(&mut r.state, &end),
            }
            if auto_remove {
                state::set_removing(&mut r.state);
            }
            r.pending_die = Some(key.clone());
        };
        // An AutoRemove exit is not written: the removal deletes the record next,
        // and until then the record on disk says `running` (durable since its
        // start), which a crash turns into this same exit at berthd's start (a
        // running container with no task gets its exit applied again), and so
        // into its removal.
        let recorded = if auto_remove {
            engine.store.update_in_memory(id, change)
        } else {
            engine.store.update(id, change)
        };
        if let Err(e) = recorded {
            // Nothing was published: the next reconcile applies it again.
            tracing::warn!(container = %id, error = %e, "recording the exit");
            engine.want_reconcile();
            return;
        }
        tracing::info!(container = %id, code = exit.code, oom = exit.oom_killed, reason = %exit.reason, "exited");
        // The record of an AutoRemove container is deleted next: its pending mark
        // goes with it (a removal that fails leaves it `running` on disk, which
        // berthd's start ends as this exit again, and so removes).
        publish_die(engine, id, exit.code, &key, !auto_remove);
        let _ = engine.events.send(ContainerEvent::Exited {
            id: id.to_string(),
            code: exit.code,
            restarting: delay.is_some(),
        });
        if auto_remove {
            // The task goes with the rest of the manager's part, after the answer.
            if let Err(e) = remove_locked(engine, id).await {
                tracing::warn!(container = %id, error = %e, "auto-remove failed");
            }
            return;
        }
        match engine.manager.tasks_delete(id, true).await {
            Ok(_) => {}
            Err(e) if already_gone(&e) => {}
            Err(e) => {
                tracing::debug!(container = %id, error = %e, "deleting the stopped task (the next reconcile will)");
                engine.want_reconcile();
            }
        }
        if let Some(delay) = delay {
            restart_later(engine, id, delay, true);
        }
    };
    // Biased: the teardown is polled first, so it has the network lock (or is first
    // in line for it) before anyone hears of the exit, and a network request made
    // after that hearing (a `network rm`, a `disconnect`) comes after it.
    tokio::join!(biased; released, rest);
}

/// What makes a `die` once-only: the container, its run's init pid and the time
/// the run ended.
fn die_key(id: &str, pid: i64, finished_at: &str) -> String {
    format!("die:{id}:{pid}:{finished_at}")
}

/// Publishes a run's `die` (unless the journal has it already) and, with `clear`,
/// clears the record's pending mark.
fn publish_die(engine: &Engine, id: &str, code: i64, key: &str, clear: bool) {
    if !engine.event_hub.published(key) {
        engine.event_hub.publish(
            engine
                .container_event("die", id)
                .attr("exitCode", code.to_string())
                .with_key(key),
        );
    }
    if !clear {
        return;
    }
    if let Err(e) = engine.store.update(id, |r| r.pending_die = None) {
        tracing::debug!(container = %id, error = %e, "clearing the pending die");
    }
}

/// At berthd's start, before it serves: the `die` of an exit recorded just before
/// berthd died, if its event never made it to the journal.
pub fn publish_pending(engine: &Arc<Engine>) {
    for rec in engine.store.list() {
        if let Some(key) = &rec.pending_die {
            publish_die(engine, &rec.id, rec.state.exit_code.unwrap_or(0), key, true);
        }
    }
}

/// Starts a `restarting` container again after `delay`, unless it was stopped or
/// removed meanwhile; `count` adds the restart to its RestartCount (a start at
/// berthd's start is not one). While the manager cannot be reached it keeps trying.
pub(crate) fn restart_later(engine: &Arc<Engine>, id: &str, delay: Duration, count: bool) {
    let engine = engine.clone();
    let id = id.to_string();
    tokio::spawn(async move {
        let mut delay = delay;
        let mut counted = !count;
        loop {
            tokio::time::sleep(delay).await;
            let _lock = engine.locks.lock(&id).await;
            let Ok(rec) = engine.store.get(&id) else {
                return;
            };
            if Phase::of(&rec.state) != Phase::Restarting || rec.has_been_manually_stopped {
                return;
            }
            let rec = if counted {
                rec
            } else {
                counted = true;
                match engine.store.update(&id, |r| r.restart_count += 1) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(container = %id, error = %e, "restart policy");
                        return;
                    }
                }
            };
            tracing::info!(container = %id, count = rec.restart_count, "restarting (restart policy)");
            match start_locked(&engine, &rec).await {
                Ok(()) => return,
                Err(EngineError::ManagerUnavailable { .. }) => delay = MANAGER_RETRY,
                Err(e) => {
                    tracing::warn!(container = %id, error = %e, "restart policy: starting again failed");
                    return;
                }
            }
        }
    });
}

/// At berthd's start: containers whose restart was pending are scheduled again, a
/// remove that was interrupted is finished, and the restart policies of stopped
/// containers are applied as dockerd does at daemon start (`always`, and
/// `unless-stopped` when the user did not stop it). Running containers are left to
/// the link's first reconcile, which finds the exits they had while berthd was down.
pub fn restore(engine: &Arc<Engine>) {
    for rec in engine.store.list() {
        let id = rec.id.clone();
        match Phase::of(&rec.state) {
            Phase::Restarting => {
                let delay = restart_delay(&rec, rec.state.exit_code.unwrap_or(0))
                    .unwrap_or(RESTART_BACKOFF);
                restart_later(engine, &id, delay, true);
            }
            Phase::Removing => {
                let engine = engine.clone();
                tokio::spawn(async move {
                    let _lock = engine.locks.lock(&id).await;
                    if let Err(e) = remove_locked(&engine, &id).await {
                        tracing::warn!(container = %id, error = %e, "finishing an interrupted remove");
                    }
                });
            }
            Phase::Created | Phase::Exited | Phase::Dead => {
                let name = rec.host_config.restart_policy.as_ref().and_then(|p| p.name);
                let start = rec.has_been_started_before
                    && match name {
                        Some(Policy::ALWAYS) => true,
                        Some(Policy::UNLESS_STOPPED) => !rec.has_been_manually_stopped,
                        _ => false,
                    };
                if !start && rec.host_config.auto_remove == Some(true) {
                    remove_left_auto_remove(engine, &rec.id, &rec.created);
                } else if start {
                    // `always` comes back at engine start even after a stop, and is
                    // armed again, as with dockerd.
                    let marked = engine.store.update(&id, |r| {
                        r.has_been_manually_stopped = false;
                        let end = Ended {
                            code: r.state.exit_code.unwrap_or(0),
                            oom_killed: r.state.oom_killed.unwrap_or(false),
                            finished_at: r.state.finished_at.clone().unwrap_or_default(),
                            error: r.state.error.clone().unwrap_or_default(),
                        };
                        state::set_restarting(&mut r.state, &end);
                    });
                    match marked {
                        Ok(_) => restart_later(engine, &id, Duration::ZERO, false),
                        Err(e) => {
                            tracing::warn!(container = %id, error = %e, "restart policy at start")
                        }
                    }
                }
            }
            Phase::Running | Phase::Paused => super::hooks::after_start(engine, &id),
        }
    }
}

/// As dockerd at its start: an AutoRemove container that is not running is
/// removed (a `run --rm` that a crash cut short between its create and its start,
/// a `create --rm` never started). Only containers made before this berthd
/// started: one a client creates now is on its way to its start.
fn remove_left_auto_remove(engine: &Arc<Engine>, id: &str, created: &str) {
    let before_us =
        chrono::DateTime::parse_from_rfc3339(created).is_ok_and(|t| t < engine.started_at);
    if !before_us {
        return;
    }
    let engine = engine.clone();
    let id = id.to_string();
    tokio::spawn(async move {
        let _lock = engine.locks.lock(&id).await;
        // A start that got the lock first runs it; its exit removes it.
        let idle = engine
            .store
            .get(&id)
            .is_ok_and(|r| !Phase::of(&r.state).has_live_task());
        if !idle {
            return;
        }
        tracing::info!(container = %id, "removing an AutoRemove container left from before berthd's start");
        if let Err(e) = remove_locked(&engine, &id).await {
            tracing::warn!(container = %id, error = %e, "removing an AutoRemove container at start");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard_stubs::models::{HostConfig, RestartPolicy};

    fn with_policy(name: Policy, max: i64, count: i64) -> ContainerRecord {
        ContainerRecord {
            host_config: HostConfig {
                restart_policy: Some(RestartPolicy {
                    name: Some(name),
                    maximum_retry_count: Some(max),
                }),
                ..HostConfig::default()
            },
            restart_count: count,
            ..ContainerRecord::default()
        }
    }

    #[test]
    fn on_failure_counts_as_docker_does() {
        // on-failure:2 with a command that exits 1: two restarts, then it stays
        // exited with RestartCount=2.
        assert!(restart_delay(&with_policy(Policy::ON_FAILURE, 2, 0), 1).is_some());
        assert!(restart_delay(&with_policy(Policy::ON_FAILURE, 2, 1), 1).is_some());
        assert!(restart_delay(&with_policy(Policy::ON_FAILURE, 2, 2), 1).is_none());
        assert!(restart_delay(&with_policy(Policy::ON_FAILURE, 2, 0), 0).is_none());
        assert!(restart_delay(&with_policy(Policy::ON_FAILURE, 0, 50), 3).is_some());
        assert!(restart_delay(&with_policy(Policy::NO, 0, 0), 1).is_none());
        assert!(restart_delay(&ContainerRecord::default(), 1).is_none());
    }

    #[test]
    fn always_unless_the_user_stopped_it_and_backing_off() {
        let mut rec = with_policy(Policy::ALWAYS, 0, 0);
        assert_eq!(restart_delay(&rec, 0), Some(RESTART_BACKOFF));
        rec.restart_count = 3;
        assert_eq!(restart_delay(&rec, 0), Some(RESTART_BACKOFF * 8));
        rec.restart_count = 100;
        assert_eq!(restart_delay(&rec, 0), Some(RESTART_BACKOFF_MAX));
        rec.has_been_manually_stopped = true;
        assert_eq!(restart_delay(&rec, 0), None);
        let rec = with_policy(Policy::UNLESS_STOPPED, 0, 0);
        assert!(restart_delay(&rec, 9).is_some());
    }
}
