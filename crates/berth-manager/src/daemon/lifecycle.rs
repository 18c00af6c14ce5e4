//! Task operations: create (bundle, shim, runtime create), start, kill, delete,
//! wait, exec and the rest, each a call to the task's shim; the watchers that turn
//! a shim's exits into events; and what happens when a shim dies.
//!
//! An exit is published once, in order after the task's start, before Wait returns
//! it, and recorded in `task.json` after the event (a crash in between publishes it
//! again after the restart instead of never).

use std::sync::Arc;
use std::time::Duration;

use berth_api::berth::manager::v1 as pb;
use berth_api::berth::manager::v1::envelope::Event;
use berth_shim_contract::pb as shimpb;
use tonic::{Code, Status};

use super::config::find_program;
use super::core::{blocking, check_spec, Daemon};
use super::error::DaemonError;
use super::now_rfc3339;
use super::task::cleanup::{remove_task_dir, runtime_delete, shim_alive};
use super::task::record::{Exit, TaskRecord, TASK_JSON};
use super::task::{shim, Task};

/// A container label asking for its log in Kubernetes' CRI format rather than
/// Docker's json-file (value `cri`); the CRI server sets it on its containers.
pub const CRI_LOG_LABEL: &str = "io.berth.log-format";

/// A task create that starts the init too.
#[derive(Debug, Clone, Copy, Default)]
pub struct StartNow {
    /// Attach streams the client opens right after: the init's output waits
    /// for them.
    pub attaches: u32,
}

/// A task just created.
#[derive(Debug, Clone, Copy)]
pub struct CreatedTask {
    /// The init's pid.
    pub pid: u32,
    /// Started too: asked for, and done by a shim that knows how.
    pub started: bool,
}

/// How long a shim gets to exit after its task is deleted.
const SHIM_EXIT_WAIT: Duration = Duration::from_secs(10);
/// The exit status reported for a task whose shim died before recording one (as
/// containerd does).
pub const SHIM_DIED_STATUS: u32 = 255;

fn task_status(s: i32) -> pb::TaskStatus {
    match shimpb::Status::try_from(s) {
        Ok(shimpb::Status::Created) => pb::TaskStatus::Created,
        Ok(shimpb::Status::Running) => pb::TaskStatus::Running,
        Ok(shimpb::Status::Paused) => pb::TaskStatus::Paused,
        Ok(shimpb::Status::Stopped) => pb::TaskStatus::Stopped,
        _ => pb::TaskStatus::Unknown,
    }
}

fn exit_pb(e: shimpb::ExitStatus) -> pb::ExitStatus {
    pb::ExitStatus {
        pid: e.pid,
        exit_status: e.exit_status,
        exited_at: e.exited_at,
        oom_killed: e.oom_killed,
    }
}

fn exit_from_shim(e: &shimpb::ExitStatus) -> Exit {
    Exit {
        pid: e.pid,
        exit_status: e.exit_status,
        exited_at: e.exited_at.clone(),
        oom_killed: e.oom_killed,
        reason: String::new(),
    }
}

/// A status that means the shim could not be reached, as opposed to an answer.
fn is_transport(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled
    )
}

/// The bundle's config: the container's spec with the rootfs where the shim
/// mounts the snapshot, or (no snapshot) the spec's own absolute root.path.
fn bundle_spec(id: &str, spec: &str, snapshot: bool) -> Result<(Vec<u8>, bool), DaemonError> {
    let mut v: serde_json::Value =
        serde_json::from_str(spec).map_err(|e| DaemonError::BadSpec {
            id: id.to_string(),
            why: e.to_string(),
        })?;
    let terminal = v
        .pointer("/process/terminal")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    let obj = v.as_object_mut().ok_or_else(|| DaemonError::BadSpec {
        id: id.to_string(),
        why: "it is not an object".to_string(),
    })?;
    if snapshot {
        let root = obj.entry("root").or_insert_with(|| serde_json::json!({}));
        match root.as_object_mut() {
            Some(r) => {
                r.insert(
                    "path".to_string(),
                    berth_shim_contract::layout::ROOTFS.into(),
                );
            }
            None => *root = serde_json::json!({ "path": berth_shim_contract::layout::ROOTFS }),
        }
    } else {
        let absolute = obj
            .get("root")
            .and_then(|r| r.get("path"))
            .and_then(serde_json::Value::as_str)
            .is_some_and(|p| p.starts_with('/'));
        if !absolute {
            return Err(DaemonError::NoRootfs { id: id.to_string() });
        }
    }
    let data = serde_json::to_vec_pretty(&v).map_err(|e| DaemonError::BadSpec {
        id: id.to_string(),
        why: e.to_string(),
    })?;
    Ok((data, terminal))
}

fn mount_pb(m: berth_manager::snapshots::Mount) -> shimpb::Mount {
    shimpb::Mount {
        r#type: m.kind,
        source: m.source,
        target: m.target,
        options: m.options,
    }
}

/// Wait (bounded) until the shim process is gone.
async fn wait_shim_gone(pid: u32, dir: &std::path::Path) -> bool {
    let deadline = tokio::time::Instant::now() + SHIM_EXIT_WAIT;
    // The shim answers a delete just before it exits: a pidfd (readable once the
    // process has exited) hears the exit at once, where polling slept a few ms
    // on every `rm`.
    if let Some(fd) = pidfd_open(pid) {
        if !shim_alive(pid, dir) {
            // Gone, or the pid was reused before the pidfd held it.
            return true;
        }
        // SAFETY: the AsyncFd owns the pidfd, which nothing else uses or closes.
        let registered = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
        };
        if let Ok(afd) = registered {
            return tokio::time::timeout_at(deadline, afd.readable())
                .await
                .is_ok_and(|r| r.is_ok());
        }
    }
    let mut delay = Duration::from_millis(1);
    while shim_alive(pid, dir) {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(50));
    }
    true
}

/// A pidfd of `pid` (Linux 5.3); None if it is gone or the kernel cannot.
fn pidfd_open(pid: u32) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let pid = libc::pid_t::try_from(pid).ok().filter(|p| *p > 0)?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, libc::O_NONBLOCK) };
    let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: `fd` is the new descriptor pidfd_open returned, owned by nobody else.
    Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// SIGKILL a shim (checked to be ours first).
fn kill_shim(pid: u32, dir: &std::path::Path) {
    if shim_alive(pid, dir) {
        if let Ok(p) = i32::try_from(pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

impl Daemon {
    fn shim_error(&self, task: &Task, status: Status) -> DaemonError {
        if is_transport(&status) && !task.shim_alive() {
            return DaemonError::TaskGone {
                id: task.id.clone(),
                reason: format!(
                    "its berth-shim (pid {}) has died; the task is being cleaned up",
                    task.shim_pid()
                ),
            };
        }
        DaemonError::Shim {
            id: task.id.clone(),
            status,
        }
    }

    /// Create the task of container `id`: bundle, shim, `runtime create`. With
    /// `spec`, the container's spec is replaced first (under the same lock), as
    /// an update of its spec would. With `start`, the init is started too (the
    /// shim's `runtime run --detach`), as a Start right after would, and its
    /// output waits for `start.attaches` clients.
    pub async fn create_task(
        self: &Arc<Self>,
        id: &str,
        stdin: bool,
        spec: Option<&[u8]>,
        start: Option<StartNow>,
    ) -> Result<CreatedTask, DaemonError> {
        let _lock = self.locks.lock(id).await;
        let mut rec = self.container(id).await?;
        if self.task_opt(id).is_some() {
            return Err(DaemonError::TaskExists(id.to_string()));
        }
        // The new spec is committed while the shim creates the task (from the
        // bundle's copy, written first), not before: a create fails whole if either
        // fails. The same spec again (a start of a stopped container whose spec did
        // not change) costs no commit.
        let mut save = None;
        if let Some(spec) = spec {
            let spec = check_spec(id, spec)?;
            if spec != rec.spec {
                rec.spec = spec;
                save = Some(rec.clone());
            }
        }
        let dir = self.task_dir(id);
        if dir.exists() {
            // Left by a create that failed and could not be cleaned up then.
            let d = dir.clone();
            blocking(move || remove_task_dir(&d, &[])).await?;
        }
        let runtime_name = if rec.runtime.is_empty() {
            self.settings.default_runtime.clone()
        } else {
            rec.runtime.clone().into()
        };
        let runtime = find_program(&runtime_name).ok_or_else(|| {
            DaemonError::RuntimeNotFound(runtime_name.to_string_lossy().into_owned())
        })?;
        if !self.settings.shim.is_file() {
            return Err(DaemonError::ShimNotFound(self.settings.shim.clone()));
        }
        let socket = shim::socket_path(&dir)?;
        let (config, terminal) = bundle_spec(id, &rec.spec, !rec.snapshot_key.is_empty())?;
        let mounts = if rec.snapshot_key.is_empty() {
            Vec::new()
        } else {
            let this = Arc::clone(self);
            let key = rec.snapshot_key.clone();
            blocking(move || {
                this.store
                    .snapshotter()
                    .mounts(&key)
                    .map_err(|e| DaemonError::Store(e.into()))
            })
            .await?
        };

        let record = TaskRecord {
            id: id.to_string(),
            runtime: runtime.clone(),
            pid: 0,
            shim_pid: 0,
            terminal,
            stdin,
            created_at: now_rfc3339(),
            started_at: String::new(),
            exit: None,
            cleaned: false,
        };
        {
            let dir = dir.clone();
            let tasks_dir = self.settings.tasks_dir.clone();
            let record = record.clone();
            blocking(move || write_bundle(&tasks_dir, &dir, &config, &record)).await?;
        }

        let launch = shim::Launch {
            shim: &self.settings.shim,
            id,
            dir: &dir,
            socket: &socket,
            runtime: &runtime,
            runtime_root: &self.settings.runtime_root,
            log_level: self.settings.log_level.to_shim(),
        };
        let mut client_slot = None;
        let created = async {
            shim::start(&launch).await?;
            let mut client = shim::connect(id, &socket).await?;
            client_slot = Some(client.clone());
            let who = client
                .connect(shimpb::ConnectRequest {})
                .await
                .map_err(|status| DaemonError::Shim {
                    id: id.to_string(),
                    status,
                })?
                .into_inner();
            if who.id != id {
                return Err(DaemonError::ShimAnswer {
                    id: id.to_string(),
                    why: format!("it serves container {:?}", who.id),
                });
            }
            let resp = client
                .create(shimpb::CreateRequest {
                    rootfs: mounts.into_iter().map(mount_pb).collect(),
                    log_path: rec.log_path.clone(),
                    stdin,
                    log_format: if rec.labels.get(CRI_LOG_LABEL).map(String::as_str) == Some("cri")
                    {
                        shimpb::LogFormat::Cri as i32
                    } else {
                        shimpb::LogFormat::JsonFile as i32
                    },
                    start: start.is_some(),
                    attaches: start.map_or(0, |s| s.attaches),
                })
                .await
                .map_err(|status| DaemonError::Shim {
                    id: id.to_string(),
                    status,
                })?
                .into_inner();
            Ok((client, who.shim_pid, resp.pid, resp.started))
        };
        let saved = async {
            match save {
                Some(r) => self.save_updated(r).await.map(drop),
                None => Ok(()),
            }
        };
        let (created, saved) = tokio::join!(created, saved);
        let created = created.and_then(|c| saved.map(|()| c));
        // A shim older than the one-step create made the task only: it is then
        // left created, for the client's Start.
        let (client, shim_pid, pid, started) = match created {
            Ok(r) => r,
            Err(e) => {
                tracing::info!(id, "task create failed: {e}");
                self.abort_create(id, &dir, client_slot.take(), &runtime)
                    .await;
                return Err(e);
            }
        };

        let mut record = record;
        record.pid = pid;
        record.shim_pid = shim_pid;
        if started {
            record.started_at = now_rfc3339();
        }
        if let Err(e) = record.write(&dir) {
            // The shim has the container; without a record we could not find the
            // runtime after a restart: undo rather than keep a task we cannot manage.
            self.abort_create(id, &dir, Some(client), &runtime).await;
            return Err(e);
        }
        let task = Task::new(id.to_string(), dir, socket, record, Some(client));
        self.insert_task(Arc::clone(&task));
        tracing::info!(id, pid, shim_pid, started, "task created");
        self.events.publish(Event::TaskCreate(pb::TaskCreate {
            container_id: id.to_string(),
            pid,
        }));
        if started {
            // Before the watcher exists, so before any exit event.
            self.events.publish(Event::TaskStart(pb::TaskStart {
                container_id: id.to_string(),
                pid,
            }));
        }
        tokio::spawn(Arc::clone(self).watch_init(task));
        Ok(CreatedTask { pid, started })
    }

    /// Create the task of container `id` and start it, in one run of the runtime
    /// where its shim can (a shim older than that gets the Start after).
    pub async fn create_and_start_task(
        self: &Arc<Self>,
        id: &str,
        stdin: bool,
    ) -> Result<u32, DaemonError> {
        let created = self
            .create_task(id, stdin, None, Some(StartNow::default()))
            .await?;
        if created.started {
            return Ok(created.pid);
        }
        self.start_task(id, "").await
    }

    /// Undo a failed create: stop the shim (it has already undone the runtime's
    /// part), make sure nothing is left, remove the task directory.
    async fn abort_create(
        &self,
        id: &str,
        dir: &std::path::Path,
        client: Option<berth_shim_contract::ShimClient>,
        runtime: &std::path::Path,
    ) {
        let shim_pid = berth_shim_contract::TaskDir::new(dir)
            .read_shim_pid()
            .ok()
            .flatten()
            .and_then(|p| u32::try_from(p).ok())
            .unwrap_or(0);
        if let Some(mut c) = client {
            if let Err(e) = c.shutdown(shimpb::ShutdownRequest { force: true }).await {
                tracing::debug!(id, "shutting the shim down: {e}");
            }
        }
        if shim_pid != 0 && !wait_shim_gone(shim_pid, dir).await {
            tracing::warn!(id, shim_pid, "the shim did not exit; killing it");
            kill_shim(shim_pid, dir);
        }
        if let Err(e) = runtime_delete(runtime, &self.settings.runtime_root, id).await {
            tracing::warn!(id, "cleaning up after a failed create: {e}");
        }
        let d = dir.to_path_buf();
        match blocking(move || remove_task_dir(&d, &[])).await {
            Ok(()) => {}
            Err(e) => tracing::warn!(id, "removing the task directory: {e}"),
        }
    }

    /// Start the init (exec_id "") or an exec'd process.
    pub async fn start_task(self: &Arc<Self>, id: &str, exec_id: &str) -> Result<u32, DaemonError> {
        let _lock = if exec_id.is_empty() {
            Some(self.locks.lock(id).await)
        } else {
            None
        };
        let task = self.task(id)?;
        let mut client = task.client().await?;
        let _order = task.order.lock().await;
        let pid = client
            .start(shimpb::StartRequest {
                exec_id: exec_id.to_string(),
            })
            .await
            .map_err(|s| self.shim_error(&task, s))?
            .into_inner()
            .pid;
        if exec_id.is_empty() {
            if let Err(e) = task.update_record(|r| r.started_at = now_rfc3339()) {
                tracing::warn!(id, "recording the start: {e}");
            }
            tracing::info!(id, pid, "task started");
            self.events.publish(Event::TaskStart(pb::TaskStart {
                container_id: id.to_string(),
                pid,
            }));
        } else {
            self.events
                .publish(Event::TaskExecStarted(pb::TaskExecStarted {
                    container_id: id.to_string(),
                    exec_id: exec_id.to_string(),
                    pid,
                }));
            tokio::spawn(Arc::clone(self).watch_exec(task.clone(), exec_id.to_string()));
        }
        Ok(pid)
    }

    pub async fn kill_task(
        &self,
        id: &str,
        exec_id: &str,
        signal: u32,
        all: bool,
    ) -> Result<(), DaemonError> {
        let task = self.task(id)?;
        let mut client = task.client().await?;
        client
            .kill(shimpb::KillRequest {
                exec_id: exec_id.to_string(),
                signal,
                all,
            })
            .await
            .map_err(|s| self.shim_error(&task, s))?;
        Ok(())
    }

    /// Delete a stopped task (or kill it first with `force`) and return its exit.
    pub async fn delete_task(self: &Arc<Self>, id: &str, force: bool) -> Result<Exit, DaemonError> {
        let _lock = self.locks.lock(id).await;
        let task = self.task(id)?;
        if !task.is_gone() {
            task.set_deleting(true);
            let answer = match task.client().await {
                Ok(mut c) => c
                    .delete(shimpb::DeleteRequest {
                        exec_id: String::new(),
                        force,
                    })
                    .await
                    .map(|r| r.into_inner()),
                Err(e) => Err(Status::unavailable(e.to_string())),
            };
            match answer {
                Ok(exit) => {
                    self.task_exited(&task, exit_from_shim(&exit)).await;
                    task.drop_client();
                    let shim_pid = task.shim_pid();
                    if !wait_shim_gone(shim_pid, &task.dir).await {
                        tracing::warn!(
                            id,
                            shim_pid,
                            "the shim did not exit after delete; killing it"
                        );
                        kill_shim(shim_pid, &task.dir);
                    }
                }
                Err(status) if is_transport(&status) && !task.shim_alive() => {
                    self.shim_died(&task, false).await;
                }
                Err(status) => {
                    task.set_deleting(false);
                    return Err(DaemonError::Shim {
                        id: id.to_string(),
                        status,
                    });
                }
            }
        }
        let exit = task.wait_exit().await;
        let dir = task.dir.clone();
        blocking(move || remove_task_dir(&dir, &[])).await?;
        self.remove_task(id);
        tracing::info!(id, status = exit.exit_status, "task deleted");
        self.events.publish(Event::TaskDelete(pb::TaskDelete {
            container_id: id.to_string(),
            pid: exit.pid,
            exit_status: exit.exit_status,
        }));
        Ok(exit)
    }

    /// Wait for the init's (or an exec'd process's) exit.
    pub async fn wait_task(&self, id: &str, exec_id: &str) -> Result<pb::ExitStatus, DaemonError> {
        let task = self.task(id)?;
        if exec_id.is_empty() {
            return Ok(task.wait_exit().await.to_pb());
        }
        let mut client = task.client().await?;
        let exit = client
            .wait(shimpb::WaitRequest {
                exec_id: exec_id.to_string(),
            })
            .await
            .map_err(|s| self.shim_error(&task, s))?
            .into_inner();
        Ok(exit_pb(exit))
    }

    pub async fn get_task(&self, id: &str) -> Result<pb::Task, DaemonError> {
        let task = self.task(id)?;
        self.describe(&task).await
    }

    async fn describe(&self, task: &Task) -> Result<pb::Task, DaemonError> {
        let rec = task.record();
        let mut out = pb::Task {
            container_id: task.id.clone(),
            pid: rec.pid,
            status: pb::TaskStatus::Stopped as i32,
            exit: None,
            shim_pid: rec.shim_pid,
            terminal: rec.terminal,
            started_at: rec.started_at.clone(),
        };
        if let Some(exit) = task.exit() {
            out.exit = Some(exit.to_pb());
            return Ok(out);
        }
        let mut client = task.client().await?;
        let state = client
            .state(shimpb::StateRequest {
                exec_id: String::new(),
            })
            .await
            .map_err(|s| self.shim_error(task, s))?
            .into_inner();
        out.pid = state.pid;
        out.status = task_status(state.status) as i32;
        out.exit = state.exit.map(exit_pb);
        Ok(out)
    }

    pub async fn list_tasks(&self) -> Vec<pb::Task> {
        let tasks = self.all_tasks();
        let described =
            futures_util::future::join_all(tasks.iter().map(|t| self.describe(t))).await;
        tasks
            .iter()
            .zip(described)
            .map(|(t, d)| {
                d.unwrap_or_else(|e| {
                    tracing::debug!(id = %t.id, "describing the task: {e}");
                    let rec = t.record();
                    pb::Task {
                        container_id: t.id.clone(),
                        pid: rec.pid,
                        status: pb::TaskStatus::Unknown as i32,
                        exit: None,
                        shim_pid: rec.shim_pid,
                        terminal: rec.terminal,
                        started_at: rec.started_at,
                    }
                })
            })
            .collect()
    }

    pub async fn exec(
        &self,
        id: &str,
        exec_id: &str,
        process: Vec<u8>,
        stdin: bool,
    ) -> Result<(), DaemonError> {
        let task = self.task(id)?;
        let mut client = task.client().await?;
        client
            .exec(shimpb::ExecRequest {
                exec_id: exec_id.to_string(),
                process,
                stdin,
                log_path: String::new(),
                log_format: 0,
            })
            .await
            .map_err(|s| self.shim_error(&task, s))?;
        self.events.publish(Event::TaskExecAdded(pb::TaskExecAdded {
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
        }));
        Ok(())
    }

    pub async fn delete_process(
        &self,
        id: &str,
        exec_id: &str,
    ) -> Result<pb::ExitStatus, DaemonError> {
        if exec_id.is_empty() {
            return Err(DaemonError::Missing(
                "exec_id (Tasks.Delete deletes the init)",
            ));
        }
        let task = self.task(id)?;
        let mut client = task.client().await?;
        let exit = client
            .delete(shimpb::DeleteRequest {
                exec_id: exec_id.to_string(),
                force: false,
            })
            .await
            .map_err(|s| self.shim_error(&task, s))?
            .into_inner();
        Ok(exit_pb(exit))
    }

    pub async fn pids(&self, id: &str) -> Result<Vec<u32>, DaemonError> {
        let task = self.task(id)?;
        let mut client = task.client().await?;
        let r = client
            .pids(shimpb::PidsRequest {})
            .await
            .map_err(|s| self.shim_error(&task, s))?
            .into_inner();
        Ok(r.processes.into_iter().map(|p| p.pid).collect())
    }

    pub async fn pause(&self, id: &str, pause: bool) -> Result<(), DaemonError> {
        let _lock = self.locks.lock(id).await;
        let task = self.task(id)?;
        let mut client = task.client().await?;
        if pause {
            client.pause(shimpb::PauseRequest {}).await
        } else {
            client.resume(shimpb::ResumeRequest {}).await
        }
        .map_err(|s| self.shim_error(&task, s))?;
        let container_id = id.to_string();
        self.events.publish(if pause {
            Event::TaskPaused(pb::TaskPaused { container_id })
        } else {
            Event::TaskResumed(pb::TaskResumed { container_id })
        });
        Ok(())
    }

    pub async fn resize_pty(
        &self,
        id: &str,
        exec_id: &str,
        width: u32,
        height: u32,
    ) -> Result<(), DaemonError> {
        let task = self.task(id)?;
        let mut client = task.client().await?;
        client
            .resize_pty(shimpb::ResizePtyRequest {
                exec_id: exec_id.to_string(),
                width,
                height,
            })
            .await
            .map_err(|s| self.shim_error(&task, s))?;
        Ok(())
    }

    pub async fn close_io(&self, id: &str, exec_id: &str) -> Result<(), DaemonError> {
        let task = self.task(id)?;
        let mut client = task.client().await?;
        client
            .close_io(shimpb::CloseIoRequest {
                exec_id: exec_id.to_string(),
            })
            .await
            .map_err(|s| self.shim_error(&task, s))?;
        Ok(())
    }

    pub async fn stats(&self, id: &str) -> Result<Vec<u8>, DaemonError> {
        let task = self.task(id)?;
        let mut client = task.client().await?;
        let r = client
            .stats(shimpb::StatsRequest {})
            .await
            .map_err(|s| self.shim_error(&task, s))?
            .into_inner();
        Ok(r.stats)
    }

    pub async fn update_task(&self, id: &str, resources: Vec<u8>) -> Result<(), DaemonError> {
        let task = self.task(id)?;
        let mut client = task.client().await?;
        client
            .update(shimpb::UpdateRequest { resources })
            .await
            .map_err(|s| self.shim_error(&task, s))?;
        Ok(())
    }

    /// Publish the init's exit once (after its start), record it, wake waiters.
    pub async fn task_exited(&self, task: &Task, exit: Exit) {
        let _order = task.order.lock().await;
        if task.exit().is_some() {
            return;
        }
        if exit.oom_killed {
            self.events.publish(Event::TaskOom(pb::TaskOom {
                container_id: task.id.clone(),
            }));
        }
        tracing::info!(id = %task.id, status = exit.exit_status, reason = %exit.reason, "task exited");
        self.events.publish(Event::TaskExit(pb::TaskExit {
            container_id: task.id.clone(),
            exec_id: String::new(),
            pid: exit.pid,
            exit_status: exit.exit_status,
            exited_at: exit.exited_at.clone(),
            oom_killed: exit.oom_killed,
            reason: exit.reason.clone(),
        }));
        let recorded = exit.clone();
        if let Err(e) = task.update_record(move |r| r.exit = Some(recorded)) {
            tracing::warn!(id = %task.id, "recording the exit: {e}");
        }
        task.set_exit(exit);
    }

    /// The shim of `task` is dead: clean up what it leaves (the container, its
    /// cgroup and runtime state, the rootfs mount, the task directory but for
    /// task.json) and publish the task's exit with the reason.
    pub async fn shim_died(&self, task: &Task, while_down: bool) {
        if !task.mark_gone() {
            return;
        }
        task.drop_client();
        let rec = task.record();
        let left = berth_shim_contract::TaskDir::new(&task.dir)
            .read_exit()
            .ok()
            .flatten();
        let when = if while_down {
            " while the manager was down"
        } else {
            ""
        };
        let reason = match &left {
            Some(_) => format!(
                "berth-shim (pid {}) died{when} after the task exited",
                rec.shim_pid
            ),
            None => format!(
                "berth-shim (pid {}) died{when}; the task was killed and cleaned up",
                rec.shim_pid
            ),
        };
        tracing::warn!(id = %task.id, "{reason}");
        if let Err(e) = runtime_delete(&rec.runtime, &self.settings.runtime_root, &task.id).await {
            tracing::warn!(id = %task.id, "cleaning up after the dead shim: {e}");
        }
        let dir = task.dir.clone();
        if let Err(e) = blocking(move || {
            remove_task_dir(&dir, &[TASK_JSON, berth_shim_contract::layout::EXIT_JSON])
        })
        .await
        {
            tracing::warn!(id = %task.id, "cleaning the task directory: {e}");
        }
        if let Err(e) = task.update_record(|r| r.cleaned = true) {
            tracing::warn!(id = %task.id, "recording the cleanup: {e}");
        }
        let exit = match left {
            Some(l) => Exit {
                pid: l.pid,
                exit_status: l.exit_status,
                exited_at: l.exited_at,
                oom_killed: l.oom_killed,
                reason,
            },
            None => Exit {
                pid: rec.pid,
                exit_status: SHIM_DIED_STATUS,
                exited_at: now_rfc3339(),
                oom_killed: false,
                reason,
            },
        };
        self.task_exited(task, exit).await;
    }

    /// Follow the init until it exits (or its shim dies) and publish that.
    pub async fn watch_init(self: Arc<Self>, task: Arc<Task>) {
        let mut delay = Duration::from_millis(50);
        loop {
            if task.is_gone() || task.exit().is_some() {
                return;
            }
            let answer = match task.client().await {
                Ok(mut c) => c
                    .wait(shimpb::WaitRequest {
                        exec_id: String::new(),
                    })
                    .await
                    .map(|r| r.into_inner())
                    .map_err(|s| s.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match answer {
                Ok(exit) => {
                    self.task_exited(&task, exit_from_shim(&exit)).await;
                    return;
                }
                Err(e) => {
                    if task.is_deleting() {
                        return;
                    }
                    if !task.shim_alive() {
                        self.shim_died(&task, false).await;
                        return;
                    }
                    tracing::debug!(id = %task.id, "waiting on the shim: {e}; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Publish the exit of an exec'd process.
    async fn watch_exec(self: Arc<Self>, task: Arc<Task>, exec_id: String) {
        let Ok(mut client) = task.client().await else {
            return;
        };
        match client
            .wait(shimpb::WaitRequest {
                exec_id: exec_id.clone(),
            })
            .await
        {
            Ok(r) => {
                let e = r.into_inner();
                self.events.publish(Event::TaskExit(pb::TaskExit {
                    container_id: task.id.clone(),
                    exec_id,
                    pid: e.pid,
                    exit_status: e.exit_status,
                    exited_at: e.exited_at,
                    oom_killed: e.oom_killed,
                    reason: String::new(),
                }));
            }
            Err(s) => tracing::debug!(id = %task.id, exec_id, "waiting on an exec: {s}"),
        }
    }
}

/// Make the task directory: the bundle's config.json, an empty rootfs/ for the
/// shim to mount on, and the manager's task.json.
fn write_bundle(
    tasks_dir: &std::path::Path,
    dir: &std::path::Path,
    config: &[u8],
    record: &TaskRecord,
) -> Result<(), DaemonError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(tasks_dir)
        .map_err(|e| DaemonError::io("creating", tasks_dir, e))?;
    // Only root may enter a task directory: below it are the container's
    // rootfs (setuid programs of the image) and config.json (its environment).
    // A container with a user namespace needs its mapped root to reach the
    // rootfs: then the directory can be traversed, still not listed.
    let userns = serde_json::from_slice::<serde_json::Value>(config)
        .ok()
        .and_then(|v| v.pointer("/linux/uidMappings").cloned())
        .and_then(|m| m.as_array().map(|a| !a.is_empty()))
        .unwrap_or(false);
    let mode = if userns { 0o711 } else { 0o700 };
    let result = (|| {
        std::fs::DirBuilder::new()
            .mode(mode)
            .create(dir)
            .map_err(|e| DaemonError::io("creating", dir, e))?;
        let rootfs = dir.join(berth_shim_contract::layout::ROOTFS);
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(&rootfs)
            .map_err(|e| DaemonError::io("creating", &rootfs, e))?;
        berth_shim_contract::layout::write_atomic(&dir.join("config.json"), config)?;
        record.write(dir)
    })();
    if result.is_err() {
        let _ = remove_task_dir(dir, &[]);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundle_points_at_the_snapshot_rootfs() {
        let (data, terminal) = bundle_spec(
            "c",
            r#"{"process":{"terminal":true},"root":{"path":"/x","readonly":true}}"#,
            true,
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&data).unwrap();
        assert_eq!(v["root"]["path"], "rootfs");
        assert_eq!(v["root"]["readonly"], true);
        assert!(terminal);
        let (data, terminal) = bundle_spec("c", r#"{"root":"odd"}"#, true).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&data).unwrap();
        assert_eq!(v["root"]["path"], "rootfs");
        assert!(!terminal);
    }

    #[test]
    fn without_a_snapshot_the_root_must_be_absolute() {
        assert!(bundle_spec("c", r#"{"root":{"path":"/srv/rootfs"}}"#, false).is_ok());
        assert!(matches!(
            bundle_spec("c", r#"{"root":{"path":"rootfs"}}"#, false),
            Err(DaemonError::NoRootfs { .. })
        ));
        assert!(matches!(
            bundle_spec("c", "{}", false),
            Err(DaemonError::NoRootfs { .. })
        ));
    }
}
