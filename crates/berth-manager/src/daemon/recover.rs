//! Finding the tasks again after a start: every directory under `<state>/tasks/`
//! is a task this manager (or its previous life) made. For each one:
//!
//! - the shim is alive: reconnect, and follow it again (an exit that happened
//!   while the manager was down is waiting in the shim and is published now);
//! - the shim is dead: read the exit it left (exit.json), clean up after it, and
//!   publish the exit with the reason;
//! - the shim was already found dead and cleaned up (task.json says so): keep the
//!   stopped task until it is deleted, publishing its exit if that never happened;
//! - there is no task.json, or the shim never got to create the container: a
//!   create was interrupted; undo it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_shim_contract::pb as shimpb;
use tonic::Code;

use super::core::{blocking, check_id, Daemon};
use super::error::DaemonError;
use super::task::cleanup::{remove_task_dir, runtime_delete, shim_alive};
use super::task::record::TaskRecord;
use super::task::{shim, Task};

/// How long a live shim gets to answer after a restart before it is followed in
/// the background instead.
const RECONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Daemon {
    /// Recover every task directory. Errors are logged per task: one broken
    /// directory does not keep the others (or the daemon) from coming back.
    pub async fn recover(self: &Arc<Self>) -> Result<(), DaemonError> {
        let tasks_dir = self.settings.tasks_dir.clone();
        let dirs = blocking(move || list_dirs(&tasks_dir)).await?;
        let mut jobs = Vec::new();
        for (id, dir) in dirs {
            let this = Arc::clone(self);
            jobs.push(tokio::spawn(async move {
                if let Err(e) = this.recover_task(&id, &dir).await {
                    tracing::error!(id, "recovering the task: {e}");
                }
            }));
        }
        let n = jobs.len();
        for j in jobs {
            j.await?;
        }
        if n > 0 {
            tracing::info!(
                tasks = n,
                live = self.all_tasks().iter().filter(|t| !t.is_gone()).count(),
                "recovered tasks"
            );
        }
        Ok(())
    }

    async fn recover_task(self: &Arc<Self>, id: &str, dir: &Path) -> Result<(), DaemonError> {
        let socket = shim::socket_path(dir)?;
        let Some(record) = TaskRecord::read(dir)? else {
            tracing::info!(id, "undoing a create that was interrupted");
            return self.undo_create(id, dir, None).await;
        };
        if record.cleaned {
            let task = Task::new(id.to_string(), dir.to_path_buf(), socket, record, None);
            self.insert_task(Arc::clone(&task));
            if task.exit().is_none() {
                // Cleaned up, but the manager died before it recorded the exit as
                // published: publish it now, with the status the shim left if any.
                let rec = task.record();
                let left = berth_shim_contract::TaskDir::new(dir)
                    .read_exit()
                    .ok()
                    .flatten();
                let reason = format!("berth-shim (pid {}) died", rec.shim_pid);
                let exit = match left {
                    Some(l) => super::task::record::Exit {
                        pid: l.pid,
                        exit_status: l.exit_status,
                        exited_at: l.exited_at,
                        oom_killed: l.oom_killed,
                        reason,
                    },
                    None => super::task::record::Exit {
                        pid: rec.pid,
                        exit_status: super::lifecycle::SHIM_DIED_STATUS,
                        exited_at: super::now_rfc3339(),
                        oom_killed: false,
                        reason,
                    },
                };
                self.task_exited(&task, exit).await;
            }
            return Ok(());
        }
        let shim_pid = berth_shim_contract::TaskDir::new(dir)
            .read_shim_pid()
            .ok()
            .flatten()
            .and_then(|p| u32::try_from(p).ok())
            .unwrap_or(record.shim_pid);
        let alive = shim_alive(shim_pid, dir);
        if record.pid == 0 {
            // The shim never reported the container created.
            tracing::info!(id, "undoing a create that was interrupted");
            return self
                .undo_create(id, dir, alive.then_some((shim_pid, record.runtime.clone())))
                .await;
        }
        let mut record = record;
        record.shim_pid = shim_pid;
        if !alive {
            let task = Task::new(id.to_string(), dir.to_path_buf(), socket, record, None);
            self.insert_task(Arc::clone(&task));
            self.shim_died(&task, true).await;
            return Ok(());
        }
        let client = match tokio::time::timeout(RECONNECT_TIMEOUT, self.reconnect(id, &socket))
            .await
        {
            Ok(Ok(Some(c))) => Some(c),
            Ok(Ok(None)) => {
                tracing::info!(
                    id,
                    "the shim has no task: undoing a create that was interrupted"
                );
                return self
                    .undo_create(id, dir, Some((shim_pid, record.runtime.clone())))
                    .await;
            }
            Ok(Err(e)) => {
                tracing::warn!(
                    id,
                    "reconnecting to the shim: {e}; following it in the background"
                );
                None
            }
            Err(_) => {
                tracing::warn!(id, "the shim did not answer in {RECONNECT_TIMEOUT:?}; following it in the background");
                None
            }
        };
        let task = Task::new(id.to_string(), dir.to_path_buf(), socket, record, client);
        self.insert_task(Arc::clone(&task));
        tracing::debug!(id, shim_pid, "reconnected to the shim");
        tokio::spawn(Arc::clone(self).watch_init(task));
        Ok(())
    }

    /// Dial a live shim and check it serves container `id` and has a task (None
    /// when it has none).
    async fn reconnect(
        &self,
        id: &str,
        socket: &Path,
    ) -> Result<Option<berth_shim_contract::ShimClient>, DaemonError> {
        let mut client = shim::connect(id, socket).await?;
        let shim_err = |status| DaemonError::Shim {
            id: id.to_string(),
            status,
        };
        let who = client
            .connect(shimpb::ConnectRequest {})
            .await
            .map_err(shim_err)?
            .into_inner();
        if who.id != id {
            return Err(DaemonError::ShimAnswer {
                id: id.to_string(),
                why: format!("it serves container {:?}", who.id),
            });
        }
        match client
            .state(shimpb::StateRequest {
                exec_id: String::new(),
            })
            .await
        {
            Ok(_) => Ok(Some(client)),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(shim_err(s)),
        }
    }

    /// Undo an interrupted create: stop a live shim, delete what the runtime may
    /// have made, remove the task directory.
    async fn undo_create(
        &self,
        id: &str,
        dir: &Path,
        live_shim: Option<(u32, PathBuf)>,
    ) -> Result<(), DaemonError> {
        let mut runtime = super::config::find_program(&self.settings.default_runtime);
        if let Some((pid, rt)) = live_shim {
            runtime = Some(rt);
            if let Ok(mut c) =
                shim::connect(id, &dir.join(berth_shim_contract::layout::SHIM_SOCK)).await
            {
                let _ = c.shutdown(shimpb::ShutdownRequest { force: true }).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            if shim_alive(pid, dir) {
                if let Ok(p) = i32::try_from(pid) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(p),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        if let Some(rt) = runtime {
            if let Err(e) = runtime_delete(&rt, &self.settings.runtime_root, id).await {
                tracing::warn!(id, "{e}");
            }
        }
        let d = dir.to_path_buf();
        blocking(move || remove_task_dir(&d, &[])).await
    }
}

/// The task directories (named by a valid container id).
fn list_dirs(tasks_dir: &Path) -> Result<Vec<(String, PathBuf)>, DaemonError> {
    let entries = match std::fs::read_dir(tasks_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(DaemonError::io("listing", tasks_dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if check_id(&name).is_err() || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            tracing::warn!(path = %entry.path().display(), "ignoring an unexpected entry in the tasks directory");
            continue;
        }
        out.push((name, entry.path()));
    }
    Ok(out)
}
