//! HEALTHCHECK as dockerd runs it: for a running container whose config (its own, or
//! its image's) has a test, a probe is exec'd in the container every interval (the
//! start interval during the start period), with a timeout; `State.Health` keeps the
//! status (`starting`, `healthy`, `unhealthy`), the failing streak and the last five
//! results, and every change of status is a `health_status: <status>` event.
//! Failures inside the start period do not count. The runner stops when the
//! container stops or starts again (a new runner comes with the new start).

use std::sync::Arc;
use std::time::Duration;

use bollard_stubs::models::{
    ContainerStateStatusEnum, ExecConfig, Health, HealthConfig, HealthStatusEnum, HealthcheckResult,
};

use crate::engine::Engine;
use crate::lifecycle::exec::ExecRecord;
use crate::lifecycle::now_rfc3339;
use crate::manager::StdStream;

const DEFAULT_INTERVAL: i64 = 30_000_000_000;
const DEFAULT_TIMEOUT: i64 = 30_000_000_000;
const DEFAULT_START_INTERVAL: i64 = 5_000_000_000;
const DEFAULT_RETRIES: i64 = 3;
/// Results kept in `State.Health.Log`.
const KEEP: usize = 5;
/// Output kept of a probe.
const MAX_OUTPUT: usize = 4096;
/// How long a finished (or killed) probe may take to be deleted.
const FORGET_LIMIT: Duration = Duration::from_secs(10);

/// The probe's command line, or None when the container has no health check.
pub fn probe_command(hc: &HealthConfig) -> Option<Vec<String>> {
    let test = hc.test.as_ref()?;
    match test.first().map(String::as_str) {
        Some("CMD") => Some(test[1..].to_vec()).filter(|c| !c.is_empty()),
        Some("CMD-SHELL") => Some(vec![
            "/bin/sh".to_string(),
            "-c".to_string(),
            test.get(1..).map(|t| t.join(" ")).unwrap_or_default(),
        ]),
        _ => None,
    }
}

fn ns(v: Option<i64>, default: i64) -> Duration {
    let n = v.filter(|n| *n > 0).unwrap_or(default);
    Duration::from_nanos(u64::try_from(n).unwrap_or(0))
}

/// The Go duration dockerd writes in its timeout message ("30s", "1.5s").
fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{}s", s as u64)
    } else {
        format!("{s}s")
    }
}

/// `(healthy)` and friends, as `docker ps` shows them after "Up ...".
pub fn status_suffix(h: Option<&Health>) -> String {
    match h.and_then(|h| h.status) {
        Some(HealthStatusEnum::HEALTHY) => " (healthy)".to_string(),
        Some(HealthStatusEnum::UNHEALTHY) => " (unhealthy)".to_string(),
        Some(HealthStatusEnum::STARTING) => " (health: starting)".to_string(),
        _ => String::new(),
    }
}

/// The `health=` filter's word for a container.
pub fn filter_word(h: Option<&Health>) -> &'static str {
    match h.and_then(|h| h.status) {
        Some(HealthStatusEnum::HEALTHY) => "healthy",
        Some(HealthStatusEnum::UNHEALTHY) => "unhealthy",
        Some(HealthStatusEnum::STARTING) => "starting",
        _ => "none",
    }
}

/// Starts the runner of a container that has just started.
pub fn spawn(engine: &Arc<Engine>, id: &str) {
    let Ok(rec) = engine.store.get(id) else {
        return;
    };
    let Some(hc) = rec.config.healthcheck.clone() else {
        return;
    };
    let Some(cmd) = probe_command(&hc) else {
        return;
    };
    let started_at = rec.state.started_at.clone();
    let _ = engine.store.update(id, |r| {
        r.state.health = Some(Health {
            status: Some(HealthStatusEnum::STARTING),
            failing_streak: Some(0),
            log: Some(vec![]),
        });
    });
    let engine = engine.clone();
    let id = id.to_string();
    tokio::spawn(async move {
        let interval = ns(hc.interval, DEFAULT_INTERVAL);
        let timeout = ns(hc.timeout, DEFAULT_TIMEOUT);
        let start_period = ns(hc.start_period, 0);
        let start_interval = ns(hc.start_interval, DEFAULT_START_INTERVAL).min(interval);
        let retries = hc.retries.filter(|r| *r > 0).unwrap_or(DEFAULT_RETRIES);
        let began = tokio::time::Instant::now();
        let mut healthy_once = false;
        loop {
            let in_start = began.elapsed() < start_period && !healthy_once;
            let wait = if in_start && hc.start_interval.is_some() {
                start_interval
            } else {
                interval
            };
            tokio::time::sleep(wait).await;
            let current = |e: &Engine| {
                e.store.get(&id).ok().filter(|r| {
                    r.state.status == Some(ContainerStateStatusEnum::RUNNING)
                        && r.state.started_at == started_at
                })
            };
            if current(&engine).is_none() {
                return;
            }
            let start = now_rfc3339();
            let (code, output) = probe(&engine, &id, &cmd, timeout).await;
            if current(&engine).is_none() {
                return;
            }
            let in_start = began.elapsed() < start_period && !healthy_once;
            let result = HealthcheckResult {
                start: Some(start),
                end: Some(now_rfc3339()),
                exit_code: Some(code),
                output: Some(output),
            };
            let mut changed = None;
            let _ = engine.store.update(&id, |r| {
                let h = r.state.health.get_or_insert_with(Health::default);
                let old = h.status;
                let log = h.log.get_or_insert_with(Vec::new);
                log.push(result.clone());
                if log.len() > KEEP {
                    let extra = log.len() - KEEP;
                    log.drain(..extra);
                }
                if code == 0 {
                    h.failing_streak = Some(0);
                    h.status = Some(HealthStatusEnum::HEALTHY);
                } else if !in_start {
                    let streak = h.failing_streak.unwrap_or(0) + 1;
                    h.failing_streak = Some(streak);
                    if streak >= retries {
                        h.status = Some(HealthStatusEnum::UNHEALTHY);
                    }
                }
                if h.status != old {
                    changed = h.status;
                }
            });
            if code == 0 {
                healthy_once = true;
            }
            if let Some(s) = changed {
                let ev = engine.container_event(&format!("health_status: {s}"), &id);
                engine.event_hub.publish(ev);
            }
        }
    });
}

/// Runs one probe: its exit code (-1 on timeout or failure to run) and output.
async fn probe(engine: &Arc<Engine>, id: &str, cmd: &[String], timeout: Duration) -> (i64, String) {
    let Ok(eid) = crate::fsutil::random_id() else {
        return (-1, "cannot make an exec id".to_string());
    };
    let exec = ExecRecord::new(
        eid.clone(),
        id.to_string(),
        ExecConfig {
            cmd: Some(cmd.to_vec()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..ExecConfig::default()
        },
    );
    // dockerd's probes are execs, with their events.
    for kind in ["exec_create", "exec_start"] {
        engine.publish_container(
            &crate::events::exec_action(kind, cmd),
            id,
            &[("execID", eid.clone())],
        );
    }
    let run = async {
        let process = crate::lifecycle::exec::process(engine, &exec, false).await?;
        let json = serde_json::to_vec(&process).map_err(|e| {
            crate::error::EngineError::io("encoding a probe", std::io::Error::other(e))
        })?;
        engine.manager.tasks_exec(id, &eid, json, false).await?;
        let mut streams = engine.manager.tasks_attach(id, &eid).await?;
        engine.manager.tasks_start(id, &eid).await?;
        let mut out = Vec::new();
        while let Some(c) = streams.output.recv().await {
            if out.len() < MAX_OUTPUT && matches!(c.stream, StdStream::Stdout | StdStream::Stderr) {
                out.extend_from_slice(&c.data);
            }
        }
        let exit = engine.manager.tasks_wait(id, &eid).await?;
        out.truncate(MAX_OUTPUT);
        Ok::<_, crate::error::EngineError>((
            i64::from(exit.exit_status),
            String::from_utf8_lossy(&out).into_owned(),
        ))
    };
    let (result, timed_out) = match tokio::time::timeout(timeout, run).await {
        Ok(Ok(r)) => (r, false),
        Ok(Err(e)) => ((-1, e.message()), false),
        Err(_) => {
            let _ = engine.manager.tasks_kill(id, &eid, 9, false).await;
            (
                (
                    -1,
                    format!("Health check exceeded timeout ({})", secs(timeout)),
                ),
                true,
            )
        }
    };
    // The shim keeps every exec until it is deleted: a probe every second would
    // pile up for as long as the container runs.
    let forget = async {
        if timed_out {
            let _ = engine.manager.tasks_wait(id, &eid).await;
        }
        engine.manager.tasks_delete_process(id, &eid).await
    };
    match tokio::time::timeout(FORGET_LIMIT, forget).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::debug!(container = id, exec = %eid, error = %e, "deleting a probe")
        }
        Err(_) => tracing::debug!(container = id, exec = %eid, "deleting a probe timed out"),
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_commands() {
        let hc = |t: &[&str]| HealthConfig {
            test: Some(t.iter().map(|s| s.to_string()).collect()),
            ..HealthConfig::default()
        };
        assert_eq!(probe_command(&hc(&["NONE"])), None);
        assert_eq!(probe_command(&hc(&[])), None);
        assert_eq!(
            probe_command(&hc(&["CMD", "true"])),
            Some(vec!["true".to_string()])
        );
        assert_eq!(
            probe_command(&hc(&["CMD-SHELL", "echo hi"])),
            Some(vec!["/bin/sh".into(), "-c".into(), "echo hi".into()])
        );
        assert_eq!(secs(Duration::from_secs(30)), "30s");
        assert_eq!(status_suffix(None), "");
    }
}
