//! The task: one container's init and the processes exec'd into it, and what the
//! shim does with them — the state machine behind the service.
//!
//! Everything runs on the shim's one thread: a call is handled to its end before
//! the next (runtime commands included), so lifecycle changes never overlap. Calls
//! that wait for an exit (Wait, Delete, Shutdown) are parked with the connection
//! that made them and answered by [`Task::settle`] once the exit is recorded. The
//! init's exit is written to `exit.json` before State or Wait report it, and stays
//! available to clients that connect later, until the shim exits after Delete.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::error::ShimError;
use crate::layout::{ExitRecord, TaskDir, INIT_PID};
use crate::mounts::{self, MountSpec};
use crate::oom::OomCounter;
use crate::reaper::{Exit, Reaper};
use crate::runtime::{Runtime, RuntimeError};
use crate::stdio::{IoError, OutputLog, ProcessIo};

/// Where a process's output is logged and in which format.
#[derive(Debug, Clone)]
pub struct LogTarget {
    pub path: PathBuf,
    /// Kubernetes' CRI format rather than Docker's json-file.
    pub cri: bool,
}

impl LogTarget {
    fn open(&self, rotation: crate::stdio::Rotation) -> Result<OutputLog, IoError> {
        OutputLog::open(&self.path, self.cri, rotation)
    }
}

/// How long an exit waits for the process's output to reach end of file before it
/// is recorded anyway (a process outside the container's pid namespace may keep
/// the pipes open).
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// How long the pty master may take to arrive after the runtime command succeeded.
const CONSOLE_WAIT: Duration = Duration::from_secs(10);
/// The longest a started init's output waits for its clients to attach: they
/// attach right after Create answers, unless their client is gone.
const ATTACH_HOLD: Duration = Duration::from_secs(2);
/// How long Delete and Shutdown wait for the init killed by `runtime delete`
/// before killing it themselves.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// Largest resources JSON for Update (it is piped to the runtime in one write).
pub const MAX_RESOURCES: usize = 64 * 1024;
/// The exit status of a process that could not be started (as Docker reports it).
const NOT_STARTED: u32 = 126;

/// A client connection, as the service numbers them.
pub type ConnId = u64;

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

/// The init or an exec'd process.
#[derive(Debug)]
pub struct Process {
    exec_id: String,
    io: ProcessIo,
    pid: u32,
    /// A runtime command to run it has been issued.
    starting: bool,
    started: bool,
    /// The kernel has reported its exit; recorded once the output is drained or
    /// the deadline passed.
    reaped: Option<(Exit, Instant)>,
    exit: Option<ExitRecord>,
}

impl Process {
    fn new(exec_id: String, io: ProcessIo) -> Process {
        Process {
            exec_id,
            io,
            pid: 0,
            starting: false,
            started: false,
            reaped: None,
            exit: None,
        }
    }

    pub fn exec_id(&self) -> &str {
        &self.exec_id
    }

    pub fn io(&self) -> &ProcessIo {
        &self.io
    }

    pub fn io_mut(&mut self) -> &mut ProcessIo {
        &mut self.io
    }

    fn reaped(&self) -> bool {
        self.reaped.is_some() || self.exit.is_some()
    }

    fn status(&self, paused: bool) -> ProcessStatus {
        if self.exit.is_some() {
            ProcessStatus::Stopped
        } else if !self.started {
            ProcessStatus::Created
        } else if paused {
            ProcessStatus::Paused
        } else {
            ProcessStatus::Running
        }
    }

    /// Record that the process will never run.
    fn never_ran(&mut self) {
        self.io.abandon();
        if self.exit.is_none() {
            self.exit = Some(ExitRecord {
                pid: 0,
                exit_status: NOT_STARTED,
                exited_at: crate::time::now_rfc3339(),
                oom_killed: false,
            });
        }
    }

    fn state(&self, paused: bool) -> ProcessState {
        ProcessState {
            exec_id: self.exec_id.clone(),
            pid: self.pid,
            status: self.status(paused),
            terminal: self.io.terminal(),
            stdin: self.io.stdin_requested(),
            exit: self.exit.clone(),
            log_path: self.io.log_path().map(Path::to_path_buf),
        }
    }
}

/// A call waiting for an exit.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Parked {
    Wait(String),
    DeleteExec(String),
    /// Delete of the init.
    Delete,
    Shutdown,
}

/// The answer to a parked call.
#[derive(Debug)]
pub enum Settled {
    Exit(ExitRecord),
    Done,
}

/// How a process is launched by the runtime.
enum Launch<'a> {
    /// The init; `start`: started too.
    Create {
        start: bool,
    },
    Exec {
        process: &'a Path,
    },
}

/// The container this shim serves.
#[derive(Debug)]
pub struct Task {
    config: TaskConfig,
    dir: TaskDir,
    runtime: Runtime,
    reaper: Reaper,
    init: Option<Process>,
    execs: HashMap<String, Process>,
    /// Mount points made at Create, to undo at Delete.
    mounts: Vec<PathBuf>,
    paused: bool,
    oom: Option<OomCounter>,
    /// `runtime delete` succeeded (a retried Delete skips it).
    runtime_deleted: bool,
    /// The cleanup at the init's exit was tried (once: a failure is the
    /// Delete's to retry, not every later turn of the loop's).
    exit_cleanup_tried: bool,
    deleted: bool,
    /// When the init, told to die by `runtime delete`, is killed directly.
    kill_at: Option<Instant>,
    parked: Vec<(Option<ConnId>, Parked)>,
    shutdown: bool,
    /// The init's output, not read until its clients have attached.
    output_hold: Option<OutputHold>,
}

/// A started init's output left unread for clients that attach right after its
/// Create (between a Create and a Start they would have seen all of it).
#[derive(Debug, Clone, Copy)]
struct OutputHold {
    /// Attaches still to come.
    attaches: u32,
    /// Read from then on anyway: a client that never comes holds nobody up long.
    until: Instant,
}

impl Task {
    pub fn new(config: TaskConfig, runtime: Runtime, reaper: Reaper) -> Task {
        Task {
            dir: TaskDir::new(&config.bundle),
            config,
            runtime,
            reaper,
            init: None,
            execs: HashMap::new(),
            mounts: Vec::new(),
            paused: false,
            oom: None,
            runtime_deleted: false,
            exit_cleanup_tried: false,
            deleted: false,
            kill_at: None,
            parked: Vec::new(),
            shutdown: false,
            output_hold: None,
        }
    }

    pub fn id(&self) -> &str {
        &self.config.id
    }

    pub fn bundle(&self) -> &Path {
        &self.config.bundle
    }

    pub fn reaper(&mut self) -> &mut Reaper {
        &mut self.reaper
    }

    /// The reaper's signalfd, to poll.
    pub fn reaper_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.reaper.fd()
    }

    /// The shim should stop serving and exit.
    pub fn shutdown_requested(&self) -> bool {
        self.shutdown
    }

    /// Every process, the init first.
    pub fn processes(&self) -> impl Iterator<Item = &Process> {
        self.init.iter().chain(self.execs.values())
    }

    /// A process by exec id, if it exists (no errors: for the loop).
    pub fn find_mut(&mut self, exec_id: &str) -> Option<&mut Process> {
        if exec_id.is_empty() {
            self.init.as_mut()
        } else {
            self.execs.get_mut(exec_id)
        }
    }

    fn init(&self) -> Result<&Process, ShimError> {
        self.init.as_ref().ok_or(ShimError::NoTask)
    }

    fn init_mut(&mut self) -> Result<&mut Process, ShimError> {
        self.init.as_mut().ok_or(ShimError::NoTask)
    }

    /// The init (exec_id "") or an exec'd process.
    pub fn process(&self, exec_id: &str) -> Result<&Process, ShimError> {
        if exec_id.is_empty() {
            return self.init();
        }
        self.init()?;
        self.execs
            .get(exec_id)
            .ok_or_else(|| ShimError::NoProcess(exec_id.to_string()))
    }

    pub fn process_mut(&mut self, exec_id: &str) -> Result<&mut Process, ShimError> {
        if exec_id.is_empty() {
            return self.init_mut();
        }
        self.init()?;
        self.execs
            .get_mut(exec_id)
            .ok_or_else(|| ShimError::NoProcess(exec_id.to_string()))
    }

    fn not_deleted(&self, action: &'static str) -> Result<(), ShimError> {
        // The runtime's part of a task whose init has exited goes at once (see
        // `clean_up_after_exit`); it is still a stopped task, not a deleted one.
        if self.deleted || (self.runtime_deleted && !self.init_exited()) {
            return Err(ShimError::Deleted { action });
        }
        Ok(())
    }

    /// Whether the init's exit is recorded.
    fn init_exited(&self) -> bool {
        self.init.as_ref().is_some_and(|p| p.exit.is_some())
    }

    /// Whether the init's output is held for clients still to attach (see
    /// [`OutputHold`]); the hold ends when they have or its time is up.
    pub fn init_output_held(&mut self) -> bool {
        match self.output_hold {
            Some(h) if h.attaches > 0 && Instant::now() < h.until => true,
            Some(_) => {
                self.output_hold = None;
                false
            }
            None => false,
        }
    }

    /// A client attached to the init: one fewer for its output to wait for.
    pub fn init_attached(&mut self) {
        if let Some(h) = &mut self.output_hold {
            h.attaches = h.attaches.saturating_sub(1);
        }
    }

    /// Once the init's exit is recorded (and answered to those waiting for it):
    /// `runtime delete` and the rootfs unmounted now, while the exit travels to
    /// the manager and on, rather than when their Delete comes, which then only
    /// answers. What the runtime held (cgroups, state, and with a shared pid
    /// namespace the processes left in the container, as containerd's shim kills
    /// them when the init exits) goes with it. The task stays, stopped, until it
    /// is deleted. A failure is left to the Delete, which tries again.
    pub fn clean_up_after_exit(&mut self) {
        if self.exit_cleanup_tried || self.deleted || self.runtime_deleted || !self.init_exited() {
            return;
        }
        self.exit_cleanup_tried = true;
        match self.runtime.delete(&mut self.reaper, false) {
            Ok(()) => {}
            Err(e) if e.is_not_exist() => tracing::info!("runtime delete: {e}"),
            Err(e) => {
                tracing::info!("runtime delete after the exit (left to the Delete): {e}");
                return;
            }
        }
        self.runtime_deleted = true;
        let mounts = std::mem::take(&mut self.mounts);
        if let Err(e) = mounts::unmount_all(&mounts) {
            tracing::info!("unmounting the rootfs after the exit (left to the Delete): {e}");
            self.mounts = mounts;
        }
    }

    /// The init's host pid (0 before Create).
    pub fn task_pid(&self) -> u32 {
        self.init.as_ref().map_or(0, |p| p.pid)
    }

    pub fn process_state(&self, exec_id: &str) -> Result<ProcessState, ShimError> {
        Ok(self.process(exec_id)?.state(self.paused))
    }

    /// Mount the rootfs, set up stdio and run `runtime create`, or with `start`
    /// `runtime run --detach`. Returns the init's pid. A started init's output is
    /// held for `attaches` clients (see [`Task::init_output_held`]).
    pub fn create(
        &mut self,
        rootfs: Vec<MountSpec>,
        log: Option<LogTarget>,
        stdin: bool,
        start: bool,
        attaches: u32,
    ) -> Result<u32, ShimError> {
        self.not_deleted("create")?;
        if self.init.is_some() {
            return Err(ShimError::TaskExists);
        }
        let spec = bundle_spec(&self.dir.file("config.json"))?;
        let terminal = spec_terminal(&spec);
        let rotation = crate::stdio::Rotation::from_annotations(&spec);
        let log = log.as_ref().map(|l| l.open(rotation)).transpose()?;
        let mut io = ProcessIo::new(terminal, stdin, log);
        let mounted = if rootfs.is_empty() {
            Vec::new()
        } else {
            mounts::mount_all(&self.dir.rootfs(), &rootfs)?
        };
        let pid_file = self.dir.file(INIT_PID);
        let pid = match self.launch(&mut io, Launch::Create { start }, &pid_file) {
            Ok(pid) => pid,
            Err(e) => {
                io.abandon();
                // The runtime may have left state behind (a half-made container).
                if let Err(d) = self.runtime.delete(&mut self.reaper, true) {
                    tracing::debug!("cleaning up after a failed create: {d}");
                }
                if let Err(u) = mounts::unmount_all(&mounted) {
                    tracing::warn!("unmounting after a failed create: {u}");
                }
                return Err(e);
            }
        };
        let mut process = Process::new(String::new(), io);
        process.pid = pid;
        process.started = start;
        self.mounts = mounted;
        self.oom = OomCounter::for_pid(pid_i32(pid));
        self.init = Some(process);
        if start && attaches > 0 {
            self.output_hold = Some(OutputHold {
                attaches,
                until: Instant::now() + ATTACH_HOLD,
            });
        }
        tracing::info!(pid, terminal, stdin, start, "created");
        Ok(pid)
    }

    /// Start the init (`runtime start`) or an exec'd process (`runtime exec`).
    pub fn start(&mut self, exec_id: &str) -> Result<u32, ShimError> {
        if exec_id.is_empty() {
            return self.start_init();
        }
        self.not_deleted("start")?;
        let paused = self.paused;
        let init_status = self.init()?.status(paused);
        if init_status != ProcessStatus::Running {
            return Err(ShimError::ContainerNotRunning {
                action: "start an exec'd process",
                status: init_status,
            });
        }
        let p = self.process_mut(exec_id)?;
        if p.starting || p.exit.is_some() {
            return Err(ShimError::WrongState {
                action: "start",
                status: p.status(paused),
            });
        }
        p.starting = true;
        // Taken out while the runtime runs: `launch` needs the task too.
        let Some(mut p) = self.execs.remove(exec_id) else {
            return Err(ShimError::NoProcess(exec_id.to_string()));
        };
        let spec = self.dir.exec_file(exec_id, "json");
        let pid_file = self.dir.exec_file(exec_id, "pid");
        let result = self.launch(&mut p.io, Launch::Exec { process: &spec }, &pid_file);
        let result = match result {
            Ok(pid) => {
                p.pid = pid;
                p.started = true;
                tracing::info!(exec_id, pid, "exec started");
                Ok(pid)
            }
            Err(e) => {
                p.never_ran();
                Err(e)
            }
        };
        self.execs.insert(exec_id.to_string(), p);
        result
    }

    fn start_init(&mut self) -> Result<u32, ShimError> {
        self.not_deleted("start")?;
        let init = self.init()?;
        let status = init.status(self.paused);
        if status != ProcessStatus::Created || init.reaped() {
            return Err(ShimError::WrongState {
                action: "start",
                status,
            });
        }
        self.runtime.start(&mut self.reaper)?;
        let init = self.init_mut()?;
        init.started = true;
        tracing::info!(pid = init.pid, "started");
        Ok(init.pid)
    }

    /// Run the runtime command that makes `io`'s process, taking the pty master when
    /// it has a terminal. Returns the new pid. Its exit, if reaped meanwhile, waits
    /// in the reaper until the loop routes it (after the pid is known).
    fn launch(
        &mut self,
        io: &mut ProcessIo,
        how: Launch<'_>,
        pid_file: &Path,
    ) -> Result<u32, ShimError> {
        let (stdio, console) = io.prepare()?;
        let _ = std::fs::remove_file(pid_file);
        let master = match how {
            Launch::Create { start } => self.runtime.create(
                &mut self.reaper,
                &self.config.bundle,
                pid_file,
                console.as_ref(),
                stdio,
                start,
            )?,
            Launch::Exec { process } => {
                self.runtime
                    .exec(&mut self.reaper, process, pid_file, console.as_ref(), stdio)?
            }
        };
        if let Some(console) = console {
            let master = match master {
                Some(m) => m?,
                None => console.receive(CONSOLE_WAIT)?,
            };
            io.attach_console(master)?;
        }
        read_pid_file(pid_file)
    }

    /// Hand reaped exits to their processes (exits of runtime commands and other
    /// strays are dropped).
    pub fn route_exits(&mut self) {
        let now = Instant::now();
        for exit in self.reaper.drain() {
            let pid = u32::try_from(exit.pid).unwrap_or(0);
            let target = self
                .init
                .iter_mut()
                .chain(self.execs.values_mut())
                .find(|p| p.pid == pid && pid != 0 && !p.reaped());
            match target {
                Some(p) => {
                    tracing::info!(exec_id = %p.exec_id, pid, status = exit.status, "exited");
                    p.reaped = Some((exit, now + DRAIN_GRACE));
                }
                None => tracing::debug!(pid, "reaped a process that is not a task's"),
            }
        }
    }

    /// The process's output is held back by a slow client: give it until
    /// [`DRAIN_GRACE`] after now to reach end of file before its exit is recorded
    /// anyway.
    pub fn postpone_drain(&mut self, exec_id: &str) {
        if let Some(p) = self.find_mut(exec_id) {
            if p.exit.is_none() {
                if let Some((_, at)) = &mut p.reaped {
                    *at = (*at).max(Instant::now() + DRAIN_GRACE);
                }
            }
        }
    }

    /// The nearest time [`Task::settle`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.processes()
            .filter(|p| p.exit.is_none())
            .filter_map(|p| p.reaped.map(|(_, at)| at))
            .chain(self.kill_at)
            .chain(self.output_hold.map(|h| h.until))
            .min()
    }

    /// Record the exits whose output is drained (or whose grace ran out): output
    /// first, so a client that sees the exit finds all the output in the log; then
    /// for the init `exit.json`; then the state State and Wait report. Then answer
    /// the parked calls that can be.
    pub fn settle(&mut self) -> Vec<(ConnId, Result<Settled, ShimError>)> {
        let now = Instant::now();
        let oom = self.oom.clone();
        let dir = self.dir.clone();
        for p in self.init.iter_mut().chain(self.execs.values_mut()) {
            let Some((exit, deadline)) = p.reaped else {
                continue;
            };
            if p.exit.is_some() || !(p.io.ended() || now >= deadline) {
                continue;
            }
            if !p.io.ended() {
                tracing::warn!(exec_id = %p.exec_id, "output still open after the exit; recording it anyway");
            }
            let is_init = p.exec_id.is_empty();
            let record = ExitRecord {
                pid: p.pid,
                exit_status: u32::try_from(exit.status).unwrap_or(255),
                exited_at: crate::time::rfc3339(exit.at, 9),
                oom_killed: is_init && oom.as_ref().is_some_and(|c| c.count() > 0),
            };
            if is_init {
                if let Err(e) = dir.write_exit(&record) {
                    tracing::error!("recording the exit: {e}");
                }
            }
            p.exit = Some(record);
        }
        if let Some(at) = self.kill_at {
            if self.init.as_ref().is_some_and(Process::reaped) {
                self.kill_at = None;
            } else if now >= at {
                self.kill_at = None;
                let pid = self.task_pid();
                if pid != 0 {
                    tracing::warn!(pid, "the init survived runtime delete; killing it");
                    // Not reaped, so the pid is still our (zombie or live) child,
                    // never reused.
                    let _ = nix::sys::signal::kill(Pid::from_raw(pid_i32(pid)), Signal::SIGKILL);
                }
            }
        }
        self.answer_parked()
    }

    fn answer_parked(&mut self) -> Vec<(ConnId, Result<Settled, ShimError>)> {
        let mut answers = Vec::new();
        let parked = std::mem::take(&mut self.parked);
        let mut finish_result: Option<Result<(), String>> = None;
        for (conn, what) in parked {
            let answer = match &what {
                Parked::Wait(id) => match self.process(id) {
                    Ok(p) => p.exit.clone().map(|e| Ok(Settled::Exit(e))),
                    Err(e) => Some(Err(e)),
                },
                Parked::DeleteExec(id) => match self.execs.get(id).map(|p| p.exit.clone()) {
                    Some(Some(exit)) => {
                        self.forget_exec(id);
                        Some(Ok(Settled::Exit(exit)))
                    }
                    Some(None) => None,
                    None => Some(Err(ShimError::NoProcess(id.clone()))),
                },
                Parked::Delete | Parked::Shutdown => {
                    match self.init.as_ref().and_then(|p| p.exit.clone()) {
                        None if self.init.is_some() => None,
                        exit => {
                            let done = finish_result
                                .get_or_insert_with(|| {
                                    if self.deleted {
                                        Ok(())
                                    } else {
                                        self.finish().map_err(|e| e.to_string())
                                    }
                                })
                                .clone();
                            Some(match (done, &what, exit) {
                                (Err(m), _, _) => Err(ShimError::Finish(m)),
                                (Ok(()), Parked::Delete, Some(exit)) => Ok(Settled::Exit(exit)),
                                (Ok(()), _, _) => Ok(Settled::Done),
                            })
                        }
                    }
                }
            };
            match (answer, conn) {
                (Some(a), Some(c)) => answers.push((c, a)),
                (Some(Err(e)), None) => tracing::warn!("{e}"),
                (Some(Ok(_)), None) => {}
                (None, _) => self.parked.push((conn, what)),
            }
        }
        answers
    }

    /// A connection went away: forget what it waited for.
    pub fn forget(&mut self, conn: ConnId) {
        self.parked.retain(|(c, _)| *c != Some(conn));
    }

    /// Signal the init (`runtime kill`) or an exec'd process.
    pub fn kill(&mut self, exec_id: &str, signal: u32, all: bool) -> Result<(), ShimError> {
        let sig = i32::try_from(signal)
            .ok()
            .and_then(|s| Signal::try_from(s).ok())
            .ok_or(ShimError::BadSignal(signal))?;
        let paused = self.paused;
        let p = self.process(exec_id)?;
        if p.reaped() {
            return Err(ShimError::WrongState {
                action: "kill",
                status: ProcessStatus::Stopped,
            });
        }
        if exec_id.is_empty() {
            self.runtime.kill(&mut self.reaper, sig as i32, all)?;
            return Ok(());
        }
        if all {
            return Err(ShimError::KillAllExec);
        }
        if !p.started {
            return Err(ShimError::WrongState {
                action: "kill",
                status: p.status(paused),
            });
        }
        let pid = p.pid;
        // The pid cannot have been reused: it is our child and not yet reaped
        // (the reaper runs on this thread and `reaped` was checked above).
        nix::sys::signal::kill(Pid::from_raw(pid_i32(pid)), sig)
            .map_err(|errno| ShimError::Signal { pid, errno })
    }

    /// Add a process to run in the container (Start runs it).
    pub fn exec(
        &mut self,
        exec_id: &str,
        process: &[u8],
        stdin: bool,
        log: Option<LogTarget>,
    ) -> Result<(), ShimError> {
        self.not_deleted("exec")?;
        check_exec_id(exec_id)?;
        let init = self.init()?;
        let init_status = init.status(self.paused);
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
        if self.execs.contains_key(exec_id) {
            return Err(ShimError::ProcessExists(exec_id.to_string()));
        }
        let log = log
            .as_ref()
            .map(|l| l.open(crate::stdio::Rotation::default()))
            .transpose()?;
        let spec_path = self.dir.exec_file(exec_id, "json");
        crate::layout::write_atomic(&spec_path, process)?;
        let mut io = ProcessIo::new(terminal, stdin, log);
        // docker exec, kubectl exec and cp expect all of an exec's output; the
        // init's goes on without slow clients.
        io.pace();
        let p = Process::new(exec_id.to_string(), io);
        self.execs.insert(exec_id.to_string(), p);
        tracing::info!(exec_id, terminal, stdin, "exec added");
        Ok(())
    }

    /// Reopen the process's log at its path (kubelet's rotation renamed it).
    pub fn reopen_log(&mut self, exec_id: &str) -> Result<(), ShimError> {
        self.process_mut(exec_id)?.io.reopen_log()?;
        Ok(())
    }

    pub fn resize_pty(&self, exec_id: &str, width: u32, height: u32) -> Result<(), ShimError> {
        let (Ok(w), Ok(h)) = (u16::try_from(width), u16::try_from(height)) else {
            return Err(ShimError::BadSize { width, height });
        };
        self.process(exec_id)?.io.resize(w, h)?;
        Ok(())
    }

    pub fn close_io(&mut self, exec_id: &str) -> Result<(), ShimError> {
        self.process_mut(exec_id)?.io.close_stdin()?;
        Ok(())
    }

    /// The process's exit if it has exited; otherwise `conn` is answered when it does.
    pub fn wait(&mut self, exec_id: &str, conn: ConnId) -> Result<Option<ExitRecord>, ShimError> {
        let p = self.process(exec_id)?;
        if let Some(exit) = &p.exit {
            return Ok(Some(exit.clone()));
        }
        self.parked
            .push((Some(conn), Parked::Wait(exec_id.to_string())));
        Ok(None)
    }

    /// Every pid in the container, with the exec id of those the shim started.
    pub fn pids(&mut self) -> Result<Vec<(u32, String)>, ShimError> {
        self.running_init("list the pids of")?;
        let pids = self.runtime.ps(&mut self.reaper)?;
        let known: HashMap<u32, String> = self
            .processes()
            .map(|p| (p.pid, p.exec_id.clone()))
            .filter(|(pid, _)| *pid != 0)
            .collect();
        Ok(pids
            .into_iter()
            .filter_map(|p| u32::try_from(p).ok())
            .map(|pid| (pid, known.get(&pid).cloned().unwrap_or_default()))
            .collect())
    }

    /// The init's status, if the container is not stopped.
    fn running_init(&self, action: &'static str) -> Result<ProcessStatus, ShimError> {
        self.not_deleted(action)?;
        let init = self.init()?;
        let status = init.status(self.paused);
        if status == ProcessStatus::Stopped || init.reaped() {
            return Err(ShimError::ContainerNotRunning {
                action,
                status: ProcessStatus::Stopped,
            });
        }
        Ok(status)
    }

    pub fn pause(&mut self) -> Result<(), ShimError> {
        let status = self.running_init("pause")?;
        if status != ProcessStatus::Running {
            return Err(ShimError::WrongState {
                action: "pause",
                status,
            });
        }
        self.runtime.pause(&mut self.reaper)?;
        self.paused = true;
        Ok(())
    }

    pub fn resume(&mut self) -> Result<(), ShimError> {
        let status = self.running_init("resume")?;
        if status != ProcessStatus::Paused {
            return Err(ShimError::WrongState {
                action: "resume",
                status,
            });
        }
        self.runtime.resume(&mut self.reaper)?;
        self.paused = false;
        Ok(())
    }

    pub fn update(&mut self, resources: &[u8]) -> Result<(), ShimError> {
        if resources.len() > MAX_RESOURCES {
            return Err(ShimError::ResourcesTooLarge(resources.len()));
        }
        serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(resources)
            .map_err(ShimError::ResourcesJson)?;
        self.running_init("update")?;
        self.runtime.update(&mut self.reaper, resources)?;
        Ok(())
    }

    pub fn stats(&mut self) -> Result<serde_json::Value, ShimError> {
        self.running_init("get the stats of")?;
        Ok(self.runtime.stats(&mut self.reaper)?)
    }

    /// Delete the init (runtime delete, unmount; the shim then exits) or forget an
    /// exec'd process. Returns its exit, or None when `conn` is answered later (once
    /// the process killed for it has exited).
    pub fn delete(
        &mut self,
        exec_id: &str,
        force: bool,
        conn: ConnId,
    ) -> Result<Option<ExitRecord>, ShimError> {
        if !exec_id.is_empty() {
            return self.delete_exec(exec_id, force, conn);
        }
        let init = self.init()?;
        let status = init.status(self.paused);
        let alive = !init.reaped() && status != ProcessStatus::Stopped;
        if alive && !force && status != ProcessStatus::Created {
            return Err(ShimError::WrongState {
                action: "delete (without force)",
                status,
            });
        }
        if self.deleted {
            // A second Delete of a deleted task gets the same answer.
            return Ok(init.exit.clone());
        }
        // Nobody is to attach to a task being deleted.
        self.output_hold = None;
        if !self.runtime_deleted {
            match self.runtime.delete(&mut self.reaper, alive) {
                Ok(()) => {}
                // Deleted already (a delete whose answer was lost): done.
                Err(e) if e.is_not_exist() => tracing::info!("runtime delete: {e}"),
                Err(e) => return Err(e.into()),
            }
            self.runtime_deleted = true;
        }
        self.park_for_init(Some(conn), Parked::Delete);
        Ok(None)
    }

    /// Park a Delete or Shutdown until the init's exit is recorded, killing the
    /// init directly if `runtime delete` did not.
    fn park_for_init(&mut self, conn: Option<ConnId>, what: Parked) {
        if !self.init.as_ref().is_some_and(Process::reaped) && self.kill_at.is_none() {
            self.kill_at = Some(Instant::now() + KILL_WAIT);
        }
        self.parked.push((conn, what));
    }

    fn delete_exec(
        &mut self,
        exec_id: &str,
        force: bool,
        conn: ConnId,
    ) -> Result<Option<ExitRecord>, ShimError> {
        let paused = self.paused;
        let p = self.process_mut(exec_id)?;
        if !p.reaped() {
            if p.starting && !p.started {
                return Err(ShimError::WrongState {
                    action: "delete",
                    status: ProcessStatus::Created,
                });
            }
            if p.started && !force {
                return Err(ShimError::WrongState {
                    action: "delete (without force)",
                    status: p.status(paused),
                });
            }
            if p.started {
                let pid = p.pid;
                if let Err(errno) =
                    nix::sys::signal::kill(Pid::from_raw(pid_i32(pid)), Signal::SIGKILL)
                {
                    tracing::debug!(exec_id, "killing pid {pid}: {errno}");
                }
            } else {
                p.never_ran();
            }
        }
        if let Some(exit) = p.exit.clone() {
            self.forget_exec(exec_id);
            return Ok(Some(exit));
        }
        self.parked
            .push((Some(conn), Parked::DeleteExec(exec_id.to_string())));
        Ok(None)
    }

    fn forget_exec(&mut self, exec_id: &str) {
        self.execs.remove(exec_id);
        remove_quietly(&self.dir.exec_file(exec_id, "json"));
        remove_quietly(&self.dir.exec_file(exec_id, "pid"));
    }

    /// Unmount the rootfs, remove what the shim keeps only while it serves, mark
    /// the task deleted and ask the loop to stop once the answers are sent.
    fn finish(&mut self) -> Result<(), ShimError> {
        let mounts = std::mem::take(&mut self.mounts);
        if let Err(e) = mounts::unmount_all(&mounts) {
            // Keep them to retry on the next Delete or Shutdown.
            self.mounts = mounts;
            return Err(e.into());
        }
        for id in self.execs.keys() {
            remove_quietly(&self.dir.exec_file(id, "json"));
            remove_quietly(&self.dir.exec_file(id, "pid"));
        }
        remove_quietly(&self.dir.file(INIT_PID));
        self.deleted = true;
        tracing::info!("task deleted; shutting down");
        self.shutdown = true;
        Ok(())
    }

    /// Stop the shim: refused while the init is alive unless `force`, which kills,
    /// deletes and unmounts it first. Ok(false): `conn` (if any) is answered later.
    pub fn shutdown(&mut self, force: bool, conn: Option<ConnId>) -> Result<bool, ShimError> {
        let Some(init) = self.init.as_ref() else {
            tracing::info!("shutdown requested with no task");
            self.shutdown = true;
            return Ok(true);
        };
        if self.deleted {
            self.shutdown = true;
            return Ok(true);
        }
        let status = init.status(self.paused);
        let alive = !init.reaped() && status != ProcessStatus::Stopped;
        if alive && !force {
            return Err(ShimError::WrongState {
                action: "shut down (without force)",
                status,
            });
        }
        self.output_hold = None;
        if !self.runtime_deleted {
            match self.runtime.delete(&mut self.reaper, alive) {
                Ok(()) => self.runtime_deleted = true,
                Err(e) => tracing::warn!("shutdown: {e}"),
            }
        }
        self.park_for_init(conn, Parked::Shutdown);
        Ok(false)
    }

    /// Undo what a shim that must exit now would leave mounted.
    pub fn emergency_unmount(&mut self) {
        let mounts = std::mem::take(&mut self.mounts);
        if let Err(e) = mounts::unmount_all(&mounts) {
            tracing::error!("unmounting the rootfs: {e}");
        }
    }
}

/// Whether the bundle's process wants a terminal (`process.terminal`).
fn spec_terminal(spec: &serde_json::Value) -> bool {
    spec.pointer("/process/terminal")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false)
}

/// The bundle's config.json, for what the shim reads of it: the terminal and the
/// log's rotation.
fn bundle_spec(config: &Path) -> Result<serde_json::Value, ShimError> {
    let data = std::fs::read(config).map_err(|source| ShimError::Bundle {
        path: config.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&data).map_err(|source| ShimError::BundleJson {
        path: config.to_path_buf(),
        source,
    })
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
    fn terminal_and_rotation_come_from_the_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config.json");
        std::fs::write(
            &cfg,
            r#"{"process":{"terminal":true,"args":["sh"]},
                "annotations":{"berth.log.max-size":"1024","berth.log.max-file":"3"}}"#,
        )
        .unwrap();
        let spec = bundle_spec(&cfg).unwrap();
        assert!(spec_terminal(&spec));
        assert_eq!(
            crate::stdio::Rotation::from_annotations(&spec),
            crate::stdio::Rotation {
                max_size: 1024,
                max_files: 3
            }
        );
        std::fs::write(&cfg, r#"{"process":{"args":["sh"]}}"#).unwrap();
        let spec = bundle_spec(&cfg).unwrap();
        assert!(!spec_terminal(&spec));
        assert_eq!(
            crate::stdio::Rotation::from_annotations(&spec),
            crate::stdio::Rotation {
                max_size: 0,
                max_files: 1
            }
        );
        std::fs::write(&cfg, "{").unwrap();
        assert!(matches!(
            bundle_spec(&cfg),
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
