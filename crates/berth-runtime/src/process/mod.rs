//! The creation dance: how a bundle becomes a process in its own namespaces.
//!
//! Up to four kinds of process take part. Each is named with prctl(PR_SET_NAME)
//! so that `ps` shows its role.
//!
//! 1. **runtime** (the `berth-runtime create|run|exec` process, `parent.rs`,
//!    `exec.rs`). Single-threaded, so fork is safe. It validates everything before
//!    any side effect, creates the state directory and `exec.fifo`, creates the
//!    cgroup with its limits, and clones the init with clone3 straight into its
//!    new namespaces (every CLONE_NEW* at once but the cgroup namespace, so the
//!    user namespace owns the others) and into the cgroup2 directory
//!    (CLONE_INTO_CGROUP, where there is one), as crun does. It writes the uid/gid
//!    maps of a new user namespace (only a process outside the namespace may)
//!    before it lets the init go on, runs the `prestart` and `createRuntime`
//!    hooks (they run in the runtime's namespaces), and once the init says
//!    "ready" writes state.json and the pid file and exits, leaving the init
//!    blocked on exec.fifo. Any failure after the state directory exists is
//!    undone by `parent::Cleanup`.
//!
//! 2. **intermediate** (`berth:[1:INTER]`, `intermediate.rs`), only where
//!    something must happen between creating namespaces: joining a pid
//!    namespace (it applies only to the children of the process that joins),
//!    joining a user namespace (the new ones must belong to it), joining any
//!    namespace before creating a user namespace (joining needs the host's
//!    capabilities), a new time namespace (its offsets are written before any
//!    process is in it). It waits until the runtime has placed it in the
//!    cgroup2 hierarchy, joins the v1 hierarchies itself, joins the namespaces
//!    given by path (user first), unshares a new user namespace and waits for
//!    its maps, becomes root in it, unshares the other new namespaces at once,
//!    writes the time offsets, forks the init, reports its host pid and exits.
//!
//! 3. **init** (`berth:[2:INIT]`, `init.rs`). PID 1 of the new pid namespace.
//!    Cloned by the runtime, it first takes the intermediate's steps that are
//!    left (`init::run_cloned`): it waits for the runtime's word that the maps
//!    are written, joins the v1 hierarchies itself (a process moving itself
//!    costs no RCU grace period, moving another does), joins the namespaces given
//!    by path, becomes root of its user namespace and creates its cgroup
//!    namespace, rooted where it now is. Then it builds the root filesystem and
//!    turns itself into the container's process; the order of its steps is
//!    documented on `init::run`. It reports "ready" before opening exec.fifo for
//!    writing, which blocks until `start` opens the read side; then it runs the
//!    `startContainer` hooks and execve's the user's program.
//!
//! 4. **exec** (`berth:[1:EXEC]` then `berth:[2:EXEC]`, `exec.rs`): for
//!    `berth-runtime exec` the runtime forks a process that joins every namespace
//!    of the running container (user first, mount last) after the runtime put it
//!    in the container's cgroup, then forks again so that the child is inside the
//!    pid namespace; that child applies the process attributes and execve's.
//!
//! Children talk to the runtime only through `channel::Channel` (a socketpair
//! per child, messages named for what they say). A child error travels back as a
//! message and the runtime prints it; end of file means the child died, so the
//! runtime never hangs on a dead child. Children never return into the runtime's
//! stack frames: they leave with `_exit`, so no destructor of the runtime (such as
//! its cleanup guard) runs in them.

pub mod attrs;
pub mod channel;
pub mod exec;
mod init;
mod intermediate;
pub mod notify;
pub mod parent;
pub mod wait;

use std::ffi::CStr;
use std::os::fd::RawFd;
use std::path::PathBuf;

use nix::unistd::{ForkResult, Pid};

pub use channel::{ChildFailure, FailureKind};

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can stop `create`, `run` or `exec`.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error("bundle {path}: {source}")]
    Bundle {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("read {path}: {source}")]
    ReadConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid runtime spec: {source}")]
    ConfigJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("config.json has no root (root.path is required)")]
    NoRoot,
    #[error("root.path {path}: {source}")]
    Rootfs {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("root.path {0} is not a directory")]
    RootfsNotDir(PathBuf),
    #[error("config.json has no process")]
    NoProcess,
    #[error("process.args must name a program")]
    NoArgs,
    #[error("process.cwd {0:?} must be an absolute path")]
    RelativeCwd(PathBuf),
    #[error("{what} contains a NUL byte")]
    Nul { what: &'static str },
    #[error(transparent)]
    Namespace(#[from] crate::namespaces::NamespaceError),
    #[error("the container needs a new mount namespace (add {{\"type\": \"mount\"}} to linux.namespaces)")]
    NoMountNamespace,
    #[error("joining a mount namespace by path ({0}) is not supported")]
    JoinedMountNamespace(PathBuf),
    #[error("a new user namespace needs linux.uidMappings and linux.gidMappings")]
    NoMappings,
    #[error("linux.uidMappings/gidMappings are set but the container has no user namespace")]
    MappingsWithoutUserNs,
    #[error("the user namespace mappings must map container uid and gid 0")]
    RootNotMapped,
    #[error("write {path}: {source}")]
    WriteMap {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("hostname or domainname is set but the container has no UTS namespace")]
    HostnameWithoutUts,
    #[error("sysctl {0} needs a network namespace")]
    SysctlWithoutNetNs(String),
    #[error("linux.timeOffsets needs a new time namespace")]
    TimeOffsetsWithoutTimeNs,
    #[error(transparent)]
    Mount(#[from] crate::mounts::MountError),
    #[error(transparent)]
    RootfsSetup(#[from] crate::rootfs::RootfsError),
    #[error("process.rlimits: {0}")]
    Rlimits(#[source] BoxError),
    #[error("linux.seccomp: {0}")]
    Seccomp(#[source] BoxError),
    #[error("process.capabilities: {0}")]
    Capabilities(#[source] BoxError),
    #[error("user: {0}")]
    User(#[source] BoxError),
    #[error("process.terminal is true: --console-socket is required")]
    ConsoleSocketRequired,
    #[error("--console-socket is given but process.terminal is false")]
    ConsoleSocketWithoutTerminal,
    #[error(transparent)]
    Tty(#[from] crate::tty::TtyError),
    #[error("cgroup: {0}")]
    Cgroup(#[from] crate::cgroups::CgroupError),
    #[error("create {path}: {source}")]
    Fifo {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("open {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("channel to the {role}: {source}")]
    Channel {
        role: &'static str,
        #[source]
        source: channel::ChannelError,
    },
    #[error("fork: {0}")]
    Fork(#[source] nix::Error),
    #[error("{0}")]
    Child(ChildFailure),
    #[error("the {role} process {how} before it was ready")]
    ChildDied { role: &'static str, how: String },
    #[error("{stage} hook: {source}")]
    Hook {
        stage: &'static str,
        #[source]
        source: BoxError,
    },
    #[error("cannot exec in a {status} container")]
    NotRunning { id: String, status: String },
    #[error("cannot exec in a paused container (use --ignore-paused to override)")]
    Paused(String),
    #[error("{0}")]
    BadSubCgroup(String),
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    #[error(transparent)]
    SeccompAgent(#[from] notify::NotifyError),
    #[error("container's cgroup unexpectedly frozen")]
    FrozenCgroup,
    #[error("adding pid {pid} to cgroups: write {}: {reason}", file.display())]
    AddToCgroup {
        pid: i32,
        file: PathBuf,
        reason: String,
    },
    #[error("open namespace {path} of the container: {source}")]
    ContainerNamespace {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("read {path}: {source}")]
    ProcessJson {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid process object: {source}")]
    ProcessJsonParse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("environment variable {0:?} must look like KEY=VALUE")]
    BadEnv(String),
    #[error("{0} is not supported by berth-runtime")]
    Unsupported(&'static str),
    #[error("process.ioPriority.priority {0} must be between 0 and 7")]
    IoPriority(i64),
    #[error("linux.personality.flags are not supported (only the domain is)")]
    PersonalityFlags,
    #[error("{what}: {source}")]
    Sys {
        what: &'static str,
        #[source]
        source: nix::Error,
    },
}

impl ProcessError {
    /// The exit code `run` and `exec` give this error: 127 and 126 when the
    /// program is missing or not executable (as a shell and Docker do), else 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            ProcessError::Child(f) => f.kind.exit_code(),
            _ => 1,
        }
    }

    pub(crate) fn from_received(role: &'static str, r: channel::Received) -> ProcessError {
        match r {
            channel::Received::Failure(f) => ProcessError::Child(f),
            channel::Received::Channel(channel::ChannelError::Closed) => ProcessError::ChildDied {
                role,
                how: "exited".into(),
            },
            channel::Received::Channel(source) => ProcessError::Channel { role, source },
        }
    }
}

/// Fork a child that runs `body` and leaves with its return value as exit code,
/// never returning into the caller's frames.
pub(crate) fn fork_child(name: &CStr, body: impl FnOnce() -> i32) -> Result<Pid, ProcessError> {
    // SAFETY: the runtime never starts a thread, so the child is an exact,
    // consistent copy (no lock held by a thread that does not exist there), and
    // the child leaves only through child_main's _exit.
    match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Parent { child }) => Ok(child),
        Ok(ForkResult::Child) => child_main(name, body),
        Err(e) => Err(ProcessError::Fork(e)),
    }
}

/// clone3's CLONE_INTO_CGROUP (libc's constant is an overflowing c_int).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Which side of a clone3 this process is on.
enum Cloned {
    Parent(Pid),
    Child,
}

/// clone3 without CLONE_VM and without a stack, i.e. a fork that can also
/// create namespaces (`flags`) and start in the cgroup2 directory open as
/// `cgroup`. The kernel's refusal comes back as its errno; nothing was made.
fn raw_clone3(flags: u64, cgroup: Option<RawFd>) -> Result<Cloned, nix::errno::Errno> {
    let mut args = libc::clone_args {
        flags: flags
            | if cgroup.is_some() {
                CLONE_INTO_CGROUP
            } else {
                0
            },
        pidfd: 0,
        child_tid: 0,
        parent_tid: 0,
        exit_signal: libc::SIGCHLD as u64,
        stack: 0,
        stack_size: 0,
        tls: 0,
        set_tid: 0,
        set_tid_size: 0,
        cgroup: cgroup.map_or(0, |fd| fd as u64),
    };
    // SAFETY: clone3 without CLONE_VM and without a stack behaves like fork: the
    // child gets a copy of this single-threaded process (see fork_child), and
    // `args` is a valid clone_args of the size passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut libc::clone_args,
            std::mem::size_of::<libc::clone_args>(),
        )
    };
    match ret {
        0 => Ok(Cloned::Child),
        pid if pid > 0 => Ok(Cloned::Parent(Pid::from_raw(pid as i32))),
        _ => Err(nix::errno::Errno::last()),
    }
}

/// The child's side of a clone: run `body` and leave with its return value as
/// exit code, never returning into the caller's frames.
fn child_main(name: &CStr, body: impl FnOnce() -> i32) -> ! {
    let _ = nix::sys::prctl::set_name(name);
    let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or(1);
    // SAFETY: _exit ends the process without running the parent's destructors
    // or atexit handlers, which belong to the runtime.
    unsafe { libc::_exit(code) }
}

/// Like `fork_child`, but the child starts inside the cgroup2 directory open as
/// `cgroup` (clone3 with CLONE_INTO_CGROUP), so it never has to be migrated
/// there. Returns whether that worked; on kernels or layouts that refuse it the
/// child is forked normally and the caller must move it.
pub(crate) fn fork_child_into(
    name: &CStr,
    cgroup: Option<std::os::fd::BorrowedFd<'_>>,
    body: impl FnOnce() -> i32,
) -> Result<(Pid, bool), ProcessError> {
    use std::os::fd::AsRawFd;
    let Some(cgroup) = cgroup else {
        return fork_child(name, body).map(|p| (p, false));
    };
    match raw_clone3(0, Some(cgroup.as_raw_fd())) {
        Ok(Cloned::Child) => child_main(name, body),
        Ok(Cloned::Parent(pid)) => Ok((pid, true)),
        Err(_) => fork_child(name, body).map(|p| (p, false)),
    }
}

/// Clone a child straight into new namespaces (`ns_flags`, CLONE_NEW*) and,
/// where `cgroup` is given and the kernel allows it, into that cgroup2
/// directory. Returns the child's pid and whether it started in the cgroup, or
/// None when the kernel refuses the namespaces this way (no clone3, a limit,
/// no permission): the caller then takes the path that reports why.
pub(crate) fn clone_child_in_namespaces(
    name: &CStr,
    ns_flags: u64,
    cgroup: Option<std::os::fd::BorrowedFd<'_>>,
    body: impl FnOnce() -> i32,
) -> Option<(Pid, bool)> {
    use std::os::fd::AsRawFd;
    if let Some(cg) = cgroup {
        match raw_clone3(ns_flags, Some(cg.as_raw_fd())) {
            Ok(Cloned::Child) => child_main(name, body),
            Ok(Cloned::Parent(pid)) => return Some((pid, true)),
            Err(_) => {}
        }
    }
    match raw_clone3(ns_flags, None) {
        Ok(Cloned::Child) => child_main(name, body),
        Ok(Cloned::Parent(pid)) => Some((pid, false)),
        Err(_) => None,
    }
}

/// Close one inherited copy of a file descriptor in a forked child, where the
/// owning value lives in a frame the child will never return to.
pub(crate) fn close_inherited(fd: std::os::fd::RawFd) {
    // SAFETY: the child never uses or drops the owner of this fd (it leaves with
    // _exit), so closing the number cannot invalidate a live handle.
    unsafe { libc::close(fd) };
}

/// Exit code of a wait status: the code, or 128 + signal like a shell.
pub fn exit_code_of(status: nix::sys::wait::WaitStatus) -> Option<i32> {
    use nix::sys::wait::WaitStatus;
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}
