//! The states of a container and the fields of Docker's `State` object that each one
//! sets. Every change of a container's state goes through one of the setters here,
//! so `Status`, `Running`, `Paused`, `Restarting`, `Pid` and `ExitCode` never
//! disagree.

use bollard_stubs::models::{ContainerState, ContainerStateStatusEnum as S};

/// Go's zero time, which dockerd writes for a time that never happened.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Made, never started.
    Created,
    /// Its task runs.
    Running,
    /// Its task is frozen.
    Paused,
    /// It exited and its restart policy starts it again after a back-off.
    Restarting,
    /// It ran and ended (or failed to start).
    Exited,
    /// `rm` is taking it apart.
    Removing,
    /// Something went wrong that the engine cannot undo.
    Dead,
}

impl Phase {
    /// The phase a stored state describes.
    pub fn of(st: &ContainerState) -> Phase {
        match st.status {
            Some(S::RUNNING) => Phase::Running,
            Some(S::PAUSED) => Phase::Paused,
            Some(S::RESTARTING) => Phase::Restarting,
            Some(S::EXITED) => Phase::Exited,
            Some(S::REMOVING) => Phase::Removing,
            Some(S::DEAD) => Phase::Dead,
            Some(S::CREATED) | Some(S::EMPTY) | None => Phase::Created,
        }
    }

    /// A task exists and runs (or is frozen): its exit is still to come.
    pub fn has_live_task(self) -> bool {
        matches!(self, Phase::Running | Phase::Paused)
    }

    /// Docker's "running" for `wait` and `rm`: a live task, or one about to be
    /// started again by the restart policy.
    pub fn is_running(self) -> bool {
        matches!(self, Phase::Running | Phase::Paused | Phase::Restarting)
    }
}

/// The state of a container just made.
pub fn created() -> ContainerState {
    ContainerState {
        status: Some(S::CREATED),
        running: Some(false),
        paused: Some(false),
        restarting: Some(false),
        oom_killed: Some(false),
        dead: Some(false),
        pid: Some(0),
        exit_code: Some(0),
        error: Some(String::new()),
        started_at: Some(ZERO_TIME.to_string()),
        finished_at: Some(ZERO_TIME.to_string()),
        health: None,
    }
}

/// Its task was started with init pid `pid`.
pub fn set_running(st: &mut ContainerState, pid: u32, started_at: String) {
    st.status = Some(S::RUNNING);
    st.running = Some(true);
    st.paused = Some(false);
    st.restarting = Some(false);
    st.pid = Some(i64::from(pid));
    st.exit_code = Some(0);
    st.error = Some(String::new());
    st.oom_killed = Some(false);
    st.started_at = Some(started_at);
    st.finished_at = Some(ZERO_TIME.to_string());
}

/// Frozen or thawed.
pub fn set_paused(st: &mut ContainerState, paused: bool) {
    st.paused = Some(paused);
    if st.running == Some(true) && st.restarting != Some(true) {
        st.status = Some(if paused { S::PAUSED } else { S::RUNNING });
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub code: i64,
    pub oom_killed: bool,
    pub finished_at: String,
    /// Why, when it is not the process's own doing ("" otherwise).
    pub error: String,
}

/// The run ended and nothing starts it again.
pub fn set_exited(st: &mut ContainerState, end: &Ended) {
    st.status = Some(S::EXITED);
    st.running = Some(false);
    st.paused = Some(false);
    st.restarting = Some(false);
    st.pid = Some(0);
    st.exit_code = Some(end.code);
    st.oom_killed = Some(end.oom_killed);
    st.error = Some(end.error.clone());
    st.finished_at = Some(end.finished_at.clone());
}

/// The run ended and the restart policy starts it again after a back-off. dockerd
/// counts such a container as running (`Running` and `Restarting` both true).
pub fn set_restarting(st: &mut ContainerState, end: &Ended) {
    set_exited(st, end);
    st.status = Some(S::RESTARTING);
    st.running = Some(true);
    st.restarting = Some(true);
}

/// `stop` between two runs of the restart policy: no next run.
pub fn cancel_restart(st: &mut ContainerState) {
    st.status = Some(S::EXITED);
    st.running = Some(false);
    st.restarting = Some(false);
}

/// `rm` has begun.
pub fn set_removing(st: &mut ContainerState) {
    st.status = Some(S::REMOVING);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setters_keep_the_fields_in_step() {
        let mut st = created();
        assert_eq!(Phase::of(&st), Phase::Created);
        set_running(&mut st, 42, "t0".into());
        assert_eq!(Phase::of(&st), Phase::Running);
        assert_eq!(st.pid, Some(42));
        set_paused(&mut st, true);
        assert_eq!(Phase::of(&st), Phase::Paused);
        assert!(Phase::of(&st).has_live_task());
        let end = Ended {
            code: 137,
            oom_killed: true,
            finished_at: "t1".into(),
            error: String::new(),
        };
        set_restarting(&mut st, &end);
        assert_eq!(Phase::of(&st), Phase::Restarting);
        assert_eq!(st.running, Some(true));
        assert_eq!(st.paused, Some(false));
        assert!(!Phase::of(&st).has_live_task() && Phase::of(&st).is_running());
        set_exited(&mut st, &end);
        assert_eq!(Phase::of(&st), Phase::Exited);
        assert_eq!(
            (
                st.running,
                st.restarting,
                st.pid,
                st.exit_code,
                st.oom_killed
            ),
            (Some(false), Some(false), Some(0), Some(137), Some(true))
        );
        assert!(!Phase::of(&st).is_running());
    }
}
