//! The task: one container's init and the processes exec'd into it, and what the
//! shim does with them — the state machine behind the gRPC service.
//!
//! Lifecycle changes of the container (create, start, pause, resume, delete,
//! shutdown) are serialised by one async lock; queries (State, Wait, Attach) and
//! per-process calls never wait on it. The init's exit is written to `exit.json`
//! before State or Wait report it, and stays available to clients that connect
//! later, until the shim exits after Delete.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::sync::watch;

use crate::error::ShimError;
use crate::layout::{ExitRecord, TaskDir, INIT_PID};
use crate::mounts::{self, MountSpec};
use crate::oom::OomCounter;
use crate::reaper::{Exit, Subscription};
use crate::runtime::{Runtime, RuntimeError};
use crate::stdio::{ConsoleSocket, IoError, OutputLog, ProcessIo};

/// Where a process's output is logged and in which format.
#[derive(Debug, Clone)]
pub struct LogTarget {
    pub path: PathBuf,
    /// Kubernetes' CRI format rather than Docker's json-file.
    pub cri: bool,
}

impl LogTarget {
    fn open(&self) -> Result<OutputLog, IoError> {
        OutputLog::open(&self.path, self.cri)
    }
}

/// How long an exit waits for the process's output to reach end of file before it
/// is recorded anyway (a process outside the container's pid namespace may keep
/// the pipes open).
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// How long the pty master may take to arrive after the runtime command succeeded.
const CONSOLE_WAIT: Duration = Duration::from_secs(10);
/// How long Delete and Shutdown wait for the init killed by `runtime delete`
/// before killing it themselves.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// Largest resources JSON for Update (it is piped to the runtime in one write).
pub const MAX_RESOURCES: usize = 64 * 1024;
/// The exit status of a process that could not be started (as Docker reports it).
const NOT_STARTED: u32 = 126;

/// What a process is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessStatus {
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for ProcessStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProcessStatus::Created => "created",
            ProcessStatus::Running => "running",
            ProcessStatus::Paused => "paused",
            ProcessStatus::Stopped => "stopped",
        })
    }
}

/// The shim's fixed configuration (from its command line).
#[derive(Debug, Clone)]
pub struct TaskConfig {
    pub id: String,
    pub bundle: PathBuf,
    pub runtime: PathBuf,
    pub runtime_root: PathBuf,
}

/// A process's state, as State reports it.
#[derive(Debug, Clone)]
pub struct ProcessState {
    pub exec_id: String,
    pub pid: u32,
    pub status: ProcessStatus,
    pub terminal: bool,
    pub stdin: bool,
    pub exit: Option<ExitRecord>,
    pub log_path: Option<PathBuf>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Default)]
struct ProcInner {
    pid: u32,
    /// A runtime command to run it has been issued.
    starting: bool,
    started: bool,
    /// The kernel has reported its exit (the record may still be being written).
    reaped: bool,
}

/// The init or an exec'd process.
#[derive(Debug)]
pub struct Process {
    exec_id: String,
    io: Arc<ProcessIo>,
    inner: Mutex<ProcInner>,
    exit: watch::Sender<Option<ExitRecord>>,
}

impl Process {
    fn new(exec_id: String, io: Arc<ProcessIo>) -> Arc<Process> {
        let (exit, _) = watch::channel(None);
        Arc::new(Process {
            exec_id,
            io,
            inner: Mutex::new(ProcInner::default()),
            exit,
        })
    }

    pub fn io(&self) -> &Arc<ProcessIo> {
        &self.io
    }

    fn pid(&self) -> u32 {
        lock(&self.inner).pid
    }

    fn reaped(&self) -> bool {
        lock(&self.inner).reaped
    }

    fn exit_record(&self) -> Option<ExitRecord> {
        self.exit.borrow().clone()
    }

    fn status(&self, paused: bool) -> ProcessStatus {
        if self.exit.borrow().is_some() {
            return ProcessStatus::Stopped;
        }
        let inner = lock(&self.inner);
        if !inner.started {
            ProcessStatus::Created
        } else if paused {
            ProcessStatus::Paused
        } else {
            ProcessStatus::Running
        }
    }

    fn set_exit(&self, record: ExitRecord) {
        lock(&self.inner).reaped = true;
        self.exit.send_if_modified(|e| {
            if e.is_none() {
                *e = Some(record);
                true
            } else {
                false
            }
        });
    }

    /// Wait until the exit is recorded.
    async fn wait_exit(&self) -> ExitRecord {
        let mut rx = self.exit.subscribe();
        loop {
            if let Some(r) = rx.borrow_and_update().clone() {
                return r;
            }
            if rx.changed().await.is_err() {
                // The sender lives in `self`; it cannot be dropped while we borrow it.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Record that the process will never run.
    fn never_ran(&self) {
        self.io.abandon();
        self.set_exit(ExitRecord {
            pid: 0,
            exit_status: NOT_STARTED,
            exited_at: now_rfc3339(),
            oom_killed: false,
        });
    }

    fn state(&self, paused: bool) -> ProcessState {
        ProcessState {
            exec_id: self.exec_id.clone(),
            pid: self.pid(),
            status: self.status(paused),
            terminal: self.io.terminal(),
            stdin: self.io.stdin_requested(),
            exit: self.exit_record(),
            log_path: self.io.log_path().map(Path::to_path_buf),
        }
    }
}

fn now_rfc3339() -> String {
    crate::time::now_rfc3339()
}

#[derive(Debug, Default)]
struct TaskState {
    init: Option<Arc<Process>>,
    execs: HashMap<String, Arc<Process>>,
    /// Mount points made at Create, to undo at Delete.
    mounts: Vec<PathBuf>,
    paused: bool,
    oom: Option<OomCounter>,
    /// `runtime delete` succeeded (a retried Delete skips it).
    runtime_deleted: bool,
    deleted: bool,
}

/// How a process is launched by the runtime.
enum Launch<'a> {
    Create,
    Exec { process: &'a Path },
}

/// The container this shim serves.
#[derive(Debug)]
pub struct Task {
    config: TaskConfig,
    dir: TaskDir,
    runtime: Runtime,
    state: Mutex<TaskState>,
    lifecycle: tokio::sync::Mutex<()>,
    shutdown: watch::Sender<bool>,
}

impl Task {
    pub fn new(config: TaskConfig, runtime: Runtime) -> Arc<Task> {
        let (shutdown, _) = watch::channel(false);
        Arc::new(Task {
            dir: TaskDir::new(&config.bundle),
            config,
            runtime,
            state: Mutex::new(TaskState::default()),
            lifecycle: tokio::sync::Mutex::new(()),
            shutdown,
        })
    }

    pub fn id(&self) -> &str {
        &self.config.id
    }

    pub fn bundle(&self) -> &Path {
        &self.config.bundle
    }

    /// Becomes true when the shim should stop serving and exit.
    pub fn shutdown_requested(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    fn state(&self) -> MutexGuard<'_, TaskState> {
        lock(&self.state)
    }

    fn init(&self) -> Result<Arc<Process>, ShimError> {
        self.state().init.clone().ok_or(ShimError::NoTask)
    }

    /// The init (exec_id "") or an exec'd process.
    pub fn process(&self, exec_id: &str) -> Result<Arc<Process>, ShimError> {
        let st = self.state();
        if exec_id.is_empty() {
            return st.init.clone().ok_or(ShimError::NoTask);
        }
        if st.init.is_none() {
            return Err(ShimError::NoTask);
        }
        st.execs
            .get(exec_id)
            .cloned()
            .ok_or_else(|| ShimError::NoProcess(exec_id.to_string()))
    }

    fn not_deleted(&self, action: &'static str) -> Result<(), ShimError> {
        if self.state().deleted {
            return Err(ShimError::Deleted { action });
        }
        Ok(())
    }

    /// The init's host pid (0 before Create).
    pub fn task_pid(&self) -> u32 {
        self.state().init.as_ref().map_or(0, |p| p.pid())
    }

    pub fn process_state(&self, exec_id: &str) -> Result<ProcessState, ShimError> {
        let p = self.process(exec_id)?;
        let paused = self.state().paused;
        Ok(p.state(paused))
    }

    /// Mount the rootfs, set up stdio and run `runtime create`. Returns the init's pid.
    pub async fn create(
        self: &Arc<Self>,
        rootfs: Vec<MountSpec>,
        log: Option<LogTarget>,
        stdin: bool,
    ) -> Result<u32, ShimError> {
        let _lifecycle = self.lifecycle.lock().await;
        self.not_deleted("create")?;
        if self.state().init.is_some() {
            return Err(ShimError::TaskExists);
        }
        let terminal = bundle_terminal(&self.dir.file("config.json"))?;
        let log = log.map(|l| l.open()).transpose()?;
        let io = ProcessIo::new(terminal, stdin, log);
        let mounted = if rootfs.is_empty() {
            Vec::new()
        } else {
            mounts::mount_all(&self.dir.rootfs(), &rootfs)?
        };
        let pid_file = self.dir.file(INIT_PID);
        let (pid, sub) = match self.launch(&io, Launch::Create, &pid_file).await {
            Ok(r) => r,
            Err(e) => {
                io.abandon();
                // The runtime may have left state behind (a half-made container).
                if let Err(d) = self.runtime.delete(true).await {
                    tracing::debug!("cleaning up after a failed create: {d}");
                }
                if let Err(u) = mounts::unmount_all(&mounted) {
                    tracing::warn!("unmounting after a failed create: {u}");
                }
                return Err(e);
            }
        };
        let process = Process::new(String::new(), io);
        lock(&process.inner).pid = pid;
        {
            let mut st = self.state();
            st.mounts = mounted;
            st.oom = OomCounter::for_pid(pid_i32(pid));
            st.init = Some(process.clone());
        }
        tracing::info!(pid, terminal, stdin, "created");
        tokio::spawn(self.clone().watch_exit(process, sub, pid));
        Ok(pid)
    }

    /// Start the init (`runtime start`) or an exec'd process (`runtime exec`).
    pub async fn start(self: &Arc<Self>, exec_id: &str) -> Result<u32, ShimError> {
        if exec_id.is_empty() {
            return self.start_init().await;
        }
        self.not_deleted("start")?;
        let init = self.init()?;
        let p = self.process(exec_id)?;
        let paused = self.state().paused;
        let init_status = init.status(paused);
        if init_status != ProcessStatus::Running {
            return Err(ShimError::ContainerNotRunning {
                action: "start an exec'd process",
                status: init_status,
            });
        }
        {
            let mut inner = lock(&p.inner);
            if inner.starting || p.exit.borrow().is_some() {
                drop(inner);
                return Err(ShimError::WrongState {
                    action: "start",
                    status: p.status(paused),
                });
            }
            inner.starting = true;
        }
        let spec = self.dir.exec_file(exec_id, "json");
        let pid_file = self.dir.exec_file(exec_id, "pid");
        match self
            .launch(p.io(), Launch::Exec { process: &spec }, &pid_file)
            .await
        {
            Ok((pid, sub)) => {
                {
                    let mut inner = lock(&p.inner);
                    inner.pid = pid;
                    inner.started = true;
                }
                tracing::info!(exec_id, pid, "exec started");
                tokio::spawn(self.clone().watch_exit(p, sub, pid));
                Ok(pid)
            }
            Err(e) => {
                p.never_ran();
                Err(e)
            }
        }
    }

    async fn start_init(&self) -> Result<u32, ShimError> {
        let _lifecycle = self.lifecycle.lock().await;
        self.not_deleted("start")?;
        let init = self.init()?;
        let status = init.status(self.state().paused);
        if status != ProcessStatus::Created || init.reaped() {
            return Err(ShimError::WrongState {
                action: "start",
                status,
            });
        }
        self.runtime.start().await?;
        lock(&init.inner).started = true;
        tracing::info!(pid = init.pid(), "started");
        Ok(init.pid())
    }

    /// Run the runtime command that makes `io`'s process, taking the pty master when
    /// it has a terminal. Returns the new pid and the subscription that will see
    /// its exit (made before the runtime was spawned, so the exit cannot be missed).
    async fn launch(
        &self,
        io: &Arc<ProcessIo>,
        how: Launch<'_>,
        pid_file: &Path,
    ) -> Result<(u32, Subscription), ShimError> {
        let (stdio, console) = io.prepare()?;
        let _ = std::fs::remove_file(pid_file);
        let mut sub = self.runtime.reaper().subscribe();
        let console_path = console.as_ref().map(|c| c.path().to_path_buf());
        let master = {
            let run = async {
                match how {
                    Launch::Create => {
                        self.runtime
                            .create(
                                &mut sub,
                                &self.config.bundle,
                                pid_file,
                                console_path.as_deref(),
                                stdio,
                            )
                            .await
                    }
                    Launch::Exec { process } => {
                        self.runtime
                            .exec(&mut sub, process, pid_file, console_path.as_deref(), stdio)
                            .await
                    }
                }
            };
            run_with_console(run, console).await?
        };
        if let Some(master) = master {
            io.attach_console(master)?;
        }
        let pid = read_pid_file(pid_file)?;
        Ok((pid, sub))
    }

    /// Wait for a process's exit and record it: output drained first (so a client
    /// that sees the exit finds all the output in the log), then for the init
    /// `exit.json`, then the in-memory state that State and Wait report.
    async fn watch_exit(self: Arc<Self>, p: Arc<Process>, mut sub: Subscription, pid: u32) {
        let exit: Exit = sub.wait(pid_i32(pid)).await;
        drop(sub);
        lock(&p.inner).reaped = true;
        tracing::info!(exec_id = %p.exec_id, pid, status = exit.status, "exited");
        if !p.io().wait_drained(DRAIN_GRACE).await {
            tracing::warn!(exec_id = %p.exec_id, "output still open after the exit; recording it anyway");
        }
        let is_init = p.exec_id.is_empty();
        let oom_killed = is_init && self.state().oom.as_ref().is_some_and(|c| c.count() > 0);
        let record = ExitRecord {
            pid,
            exit_status: u32::try_from(exit.status).unwrap_or(255),
            exited_at: crate::time::rfc3339(exit.at, 9),
            oom_killed,
        };
        if is_init {
            if let Err(e) = self.dir.write_exit(&record) {
                tracing::error!("recording the exit: {e}");
            }
        }
        p.set_exit(record);
    }

    /// Signal the init (`runtime kill`) or an exec'd process.
    pub async fn kill(&self, exec_id: &str, signal: u32, all: bool) -> Result<(), ShimError> {
        let sig = i32::try_from(signal)
            .ok()
            .and_then(|s| Signal::try_from(s).ok())
            .ok_or(ShimError::BadSignal(signal))?;
        let p = self.process(exec_id)?;
        let paused = self.state().paused;
        if p.reaped() || p.exit.borrow().is_some() {
            return Err(ShimError::WrongState {
                action: "kill",
                status: ProcessStatus::Stopped,
            });
        }
        if exec_id.is_empty() {
            self.runtime.kill(sig as i32, all).await?;
            return Ok(());
        }
        if all {
            return Err(ShimError::KillAllExec);
        }
        let pid = {
            let inner = lock(&p.inner);
            if !inner.started {
                drop(inner);
                return Err(ShimError::WrongState {
                    action: "kill",
                    status: p.status(paused),
                });
            }
            inner.pid
        };
        // The pid cannot have been reused: it is our child and not yet reaped
        // (the reaper runs on this thread and `reaped` was checked above).
        nix::sys::signal::kill(Pid::from_raw(pid_i32(pid)), sig)
            .map_err(|errno| ShimError::Signal { pid, errno })
    }

    /// Add a process to run in the container (Start runs it).
    pub fn exec(
        &self,
        exec_id: &str,
        process: &[u8],
        stdin: bool,
        log: Option<LogTarget>,
    ) -> Result<(), ShimError> {
        self.not_deleted("exec")?;
        check_exec_id(exec_id)?;
        let init = self.init()?;
        let init_status = init.status(self.state().paused);
        if init_status == ProcessStatus::Stopped || init.reaped() {
            return Err(ShimError::ContainerNotRunning {
                action: "exec",
                status: ProcessStatus::Stopped,
            });
        }
        let spec: serde_json::Value =
            serde_json::from_slice(process).map_err(ShimError::ProcessJson)?;
        let has_args = spec
            .get("args")
            .and_then(serde_json::Value::as_array)
            .is_some_and(|a| !a.is_empty());
        if !has_args {
            return Err(ShimError::ProcessNoArgs);
        }
        let terminal = spec
            .get("terminal")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);
        if self.state().execs.contains_key(exec_id) {
            return Err(ShimError::ProcessExists(exec_id.to_string()));
        }
        let log = log.map(|l| l.open()).transpose()?;
        let spec_path = self.dir.exec_file(exec_id, "json");
        crate::layout::write_atomic(&spec_path, process)?;
        let io = ProcessIo::new(terminal, stdin, log);
        io.pace();
        let p = Process::new(exec_id.to_string(), io);
        // No await since the check above: no other request can have added the id.
        self.state().execs.insert(exec_id.to_string(), p);
        tracing::info!(exec_id, terminal, stdin, "exec added");
        Ok(())
    }

    /// Reopen the process's log at its path (kubelet's rotation renamed it).
    pub fn reopen_log(&self, exec_id: &str) -> Result<(), ShimError> {
        self.process(exec_id)?.io().reopen_log()?;
        Ok(())
    }

    pub fn resize_pty(&self, exec_id: &str, width: u32, height: u32) -> Result<(), ShimError> {
        let (Ok(w), Ok(h)) = (u16::try_from(width), u16::try_from(height)) else {
            return Err(ShimError::BadSize { width, height });
        };
        self.process(exec_id)?.io().resize(w, h)?;
        Ok(())
    }

    pub async fn close_io(&self, exec_id: &str) -> Result<(), ShimError> {
        let p = self.process(exec_id)?;
        p.io().close_stdin().await?;
        Ok(())
    }

    /// Wait for the process's exit (returns at once if it has exited).
    pub async fn wait(&self, exec_id: &str) -> Result<ExitRecord, ShimError> {
        let p = self.process(exec_id)?;
        Ok(p.wait_exit().await)
    }

    /// Every pid in the container, with the exec id of those the shim started.
    pub async fn pids(&self) -> Result<Vec<(u32, String)>, ShimError> {
        self.running_init("list the pids of")?;
        let pids = self.runtime.ps().await?;
        let known: HashMap<u32, String> = {
            let st = self.state();
            st.execs
                .values()
                .chain(st.init.iter())
                .map(|p| (p.pid(), p.exec_id.clone()))
                .filter(|(pid, _)| *pid != 0)
                .collect()
        };
        Ok(pids
            .into_iter()
            .filter_map(|p| u32::try_from(p).ok())
            .map(|pid| (pid, known.get(&pid).cloned().unwrap_or_default()))
            .collect())
    }

    /// The init, if the container is not stopped.
    fn running_init(&self, action: &'static str) -> Result<Arc<Process>, ShimError> {
        self.not_deleted(action)?;
        let init = self.init()?;
        let status = init.status(self.state().paused);
        if status == ProcessStatus::Stopped || init.reaped() {
            return Err(ShimError::ContainerNotRunning {
                action,
                status: ProcessStatus::Stopped,
            });
        }
        Ok(init)
    }

    pub async fn pause(&self) -> Result<(), ShimError> {
        let _lifecycle = self.lifecycle.lock().await;
        let init = self.running_init("pause")?;
        let status = init.status(self.state().paused);
        if status != ProcessStatus::Running {
            return Err(ShimError::WrongState {
                action: "pause",
                status,
            });
        }
        self.runtime.pause().await?;
        self.state().paused = true;
        Ok(())
    }

    pub async fn resume(&self) -> Result<(), ShimError> {
        let _lifecycle = self.lifecycle.lock().await;
        let init = self.running_init("resume")?;
        let status = init.status(self.state().paused);
        if status != ProcessStatus::Paused {
            return Err(ShimError::WrongState {
                action: "resume",
                status,
            });
        }
        self.runtime.resume().await?;
        self.state().paused = false;
        Ok(())
    }

    pub async fn update(&self, resources: &[u8]) -> Result<(), ShimError> {
        if resources.len() > MAX_RESOURCES {
            return Err(ShimError::ResourcesTooLarge(resources.len()));
        }
        serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(resources)
            .map_err(ShimError::ResourcesJson)?;
        self.running_init("update")?;
        self.runtime.update(resources).await?;
        Ok(())
    }

    pub async fn stats(&self) -> Result<serde_json::Value, ShimError> {
        self.running_init("get the stats of")?;
        Ok(self.runtime.stats().await?)
    }

    /// Delete the init (runtime delete, unmount; the shim then exits) or forget an
    /// exec'd process. Returns its exit.
    pub async fn delete(&self, exec_id: &str, force: bool) -> Result<ExitRecord, ShimError> {
        if !exec_id.is_empty() {
            return self.delete_exec(exec_id, force).await;
        }
        let _lifecycle = self.lifecycle.lock().await;
        let init = self.init()?;
        let status = init.status(self.state().paused);
        let alive = !init.reaped() && status != ProcessStatus::Stopped;
        if alive && !force && status != ProcessStatus::Created {
            return Err(ShimError::WrongState {
                action: "delete (without force)",
                status,
            });
        }
        if let Some(exit) = self.deleted_exit(&init) {
            return Ok(exit);
        }
        if !self.state().runtime_deleted {
            match self.runtime.delete(alive).await {
                Ok(()) => {}
                // Deleted already (a delete whose answer was lost): done.
                Err(e) if e.is_not_exist() => tracing::info!("runtime delete: {e}"),
                Err(e) => return Err(e.into()),
            }
            self.state().runtime_deleted = true;
        }
        let exit = reap_init(&init).await;
        self.finish(true)?;
        Ok(exit)
    }

    /// A second Delete of a deleted task gets the same answer.
    fn deleted_exit(&self, init: &Process) -> Option<ExitRecord> {
        if self.state().deleted {
            init.exit_record()
        } else {
            None
        }
    }

    async fn delete_exec(&self, exec_id: &str, force: bool) -> Result<ExitRecord, ShimError> {
        let p = self.process(exec_id)?;
        let paused = self.state().paused;
        let (started, starting) = {
            let inner = lock(&p.inner);
            (inner.started, inner.starting)
        };
        if p.exit_record().is_none() && !p.reaped() {
            if starting && !started {
                return Err(ShimError::WrongState {
                    action: "delete",
                    status: ProcessStatus::Created,
                });
            }
            if started && !force {
                return Err(ShimError::WrongState {
                    action: "delete (without force)",
                    status: p.status(paused),
                });
            }
            if started {
                let pid = p.pid();
                if let Err(errno) =
                    nix::sys::signal::kill(Pid::from_raw(pid_i32(pid)), Signal::SIGKILL)
                {
                    tracing::debug!(exec_id, "killing pid {pid}: {errno}");
                }
            } else {
                p.never_ran();
            }
        }
        let exit = p.wait_exit().await;
        self.state().execs.remove(exec_id);
        remove_quietly(&self.dir.exec_file(exec_id, "json"));
        remove_quietly(&self.dir.exec_file(exec_id, "pid"));
        Ok(exit)
    }

    /// Unmount the rootfs, remove what the shim keeps only while it serves, mark
    /// the task deleted and ask the server to stop once the answer is sent.
    fn finish(&self, deleted: bool) -> Result<(), ShimError> {
        let mounts = std::mem::take(&mut self.state().mounts);
        if let Err(e) = mounts::unmount_all(&mounts) {
            // Keep them to retry on the next Delete or Shutdown.
            self.state().mounts = mounts;
            return Err(e.into());
        }
        let execs: Vec<String> = self.state().execs.keys().cloned().collect();
        for id in execs {
            remove_quietly(&self.dir.exec_file(&id, "json"));
            remove_quietly(&self.dir.exec_file(&id, "pid"));
        }
        remove_quietly(&self.dir.file(INIT_PID));
        self.state().deleted = deleted;
        tracing::info!("task deleted; shutting down");
        self.shutdown.send_replace(true);
        Ok(())
    }

    /// Stop the shim: refused while the init is alive unless `force`, which kills,
    /// deletes and unmounts it first.
    pub async fn shutdown(&self, force: bool) -> Result<(), ShimError> {
        let _lifecycle = self.lifecycle.lock().await;
        let Some(init) = self.state().init.clone() else {
            tracing::info!("shutdown requested with no task");
            self.shutdown.send_replace(true);
            return Ok(());
        };
        if self.state().deleted {
            self.shutdown.send_replace(true);
            return Ok(());
        }
        let status = init.status(self.state().paused);
        let alive = !init.reaped() && status != ProcessStatus::Stopped;
        if alive && !force {
            return Err(ShimError::WrongState {
                action: "shut down (without force)",
                status,
            });
        }
        if !self.state().runtime_deleted {
            match self.runtime.delete(alive).await {
                Ok(()) => self.state().runtime_deleted = true,
                Err(e) => tracing::warn!("shutdown: {e}"),
            }
        }
        reap_init(&init).await;
        self.finish(true)
    }

    /// Undo what a shim that must exit now would leave mounted.
    pub fn emergency_unmount(&self) {
        let mounts = std::mem::take(&mut self.state().mounts);
        if let Err(e) = mounts::unmount_all(&mounts) {
            tracing::error!("unmounting the rootfs: {e}");
        }
    }
}

/// Wait for the init's exit after `runtime delete` killed it; if it is still there
/// after a while (the runtime did not kill it), kill it directly.
async fn reap_init(init: &Process) -> ExitRecord {
    if let Ok(exit) = tokio::time::timeout(KILL_WAIT, init.wait_exit()).await {
        return exit;
    }
    let pid = init.pid();
    if !init.reaped() && pid != 0 {
        tracing::warn!(pid, "the init survived runtime delete; killing it");
        // Not reaped, so the pid is still our (zombie or live) child, never reused.
        let _ = nix::sys::signal::kill(Pid::from_raw(pid_i32(pid)), Signal::SIGKILL);
    }
    init.wait_exit().await
}

/// Run a runtime command; with a console socket, take the pty master while it runs
/// (the runtime may wait until it is taken), or just after it succeeded.
async fn run_with_console(
    run: impl std::future::Future<Output = Result<(), RuntimeError>>,
    console: Option<ConsoleSocket>,
) -> Result<Option<std::os::fd::OwnedFd>, ShimError> {
    let Some(console) = console else {
        run.await?;
        return Ok(None);
    };
    let receive = console.receive();
    tokio::pin!(run);
    tokio::pin!(receive);
    let mut master = None;
    let ran = loop {
        tokio::select! {
            r = &mut run => break r,
            m = &mut receive, if master.is_none() => master = Some(m),
        }
    };
    ran?;
    let master = match master {
        Some(m) => m?,
        None => tokio::time::timeout(CONSOLE_WAIT, receive)
            .await
            .map_err(|_| IoError::NoMaster)??,
    };
    Ok(Some(master))
}

/// Whether the bundle's process wants a terminal (`process.terminal`).
fn bundle_terminal(config: &Path) -> Result<bool, ShimError> {
    let data = std::fs::read(config).map_err(|source| ShimError::Bundle {
        path: config.to_path_buf(),
        source,
    })?;
    let spec: serde_json::Value =
        serde_json::from_slice(&data).map_err(|source| ShimError::BundleJson {
            path: config.to_path_buf(),
            source,
        })?;
    Ok(spec
        .pointer("/process/terminal")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false))
}

fn read_pid_file(path: &Path) -> Result<u32, ShimError> {
    let content = std::fs::read_to_string(path).map_err(|source| RuntimeError::PidFile {
        path: path.to_path_buf(),
        source,
    })?;
    content
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|p| *p > 0 && i32::try_from(*p).is_ok())
        .ok_or_else(|| {
            RuntimeError::BadPidFile {
                path: path.to_path_buf(),
                content,
            }
            .into()
        })
}

/// Exec ids name files in the task directory: keep them plain.
fn check_exec_id(id: &str) -> Result<(), ShimError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(ShimError::BadExecId(id.to_string()))
    }
}

fn pid_i32(pid: u32) -> i32 {
    i32::try_from(pid).unwrap_or(i32::MAX)
}

fn remove_quietly(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), "removing: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_ids_are_file_name_safe() {
        for ok in ["a", "exec-1", "A_b.c", &"x".repeat(64)] {
            assert!(check_exec_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".hidden", "a/b", "..", "a b", &"x".repeat(65)] {
            assert!(check_exec_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn terminal_comes_from_the_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config.json");
        std::fs::write(&cfg, r#"{"process":{"terminal":true,"args":["sh"]}}"#).unwrap();
        assert!(bundle_terminal(&cfg).unwrap());
        std::fs::write(&cfg, r#"{"process":{"args":["sh"]}}"#).unwrap();
        assert!(!bundle_terminal(&cfg).unwrap());
        std::fs::write(&cfg, "{").unwrap();
        assert!(matches!(
            bundle_terminal(&cfg),
            Err(ShimError::BundleJson { .. })
        ));
    }

    #[test]
    fn pid_files_hold_one_positive_pid() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p");
        std::fs::write(&f, "1234").unwrap();
        assert_eq!(read_pid_file(&f).unwrap(), 1234);
        std::fs::write(&f, "0").unwrap();
        assert!(read_pid_file(&f).is_err());
        std::fs::write(&f, "x").unwrap();
        assert!(read_pid_file(&f).is_err());
    }
}
