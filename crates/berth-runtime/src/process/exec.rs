//! `exec`: a new process inside a running container. The runtime forks
//! `berth:[1:EXEC]`, puts it in the container's cgroup, and that process joins
//! every namespace recorded in state.json (user first, mount last) and forks
//! `berth:[2:EXEC]`, which is then inside the pid namespace too. That one applies
//! the process attributes and execve's; its channel is close-on-exec, so the
//! runtime learns that execve succeeded from the end of file, and why it failed
//! from a message (127: not found, 126: not executable).

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespaceType, Process};

use super::attrs::{self, ExecPlan};
use super::channel::{self, Channel, ChildFailure, IntermediateEvent};
use super::intermediate::{become_root, received};
use super::parent::describe_status;
use super::{fork_child, fork_child_into, wait, ProcessError};
use crate::cgroups::CgroupManager;
use crate::namespaces;
use crate::state::{self, State, Status};
use crate::{logger, rlimits, tty};

/// What `exec` was asked for.
#[derive(Debug)]
pub struct ExecOptions {
    pub root: PathBuf,
    pub id: String,
    pub process: Process,
    pub console_socket: Option<PathBuf>,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: u32,
    pub ignore_paused: bool,
}

struct Prepared {
    state: State,
    process: Process,
    plan: ExecPlan,
    namespaces: Vec<(LinuxNamespaceType, OwnedFd)>,
    console_socket: Option<OwnedFd>,
    terminal: bool,
    preserve_fds: u32,
}

/// Run the process; returns the exit code for the runtime (the process's own
/// code in the foreground, 0 once it runs with `detach`).
pub fn exec(opts: ExecOptions) -> Result<i32, ProcessError> {
    let p = prepare(&opts)?;
    if !opts.detach {
        // The exec'd process is a grandchild: become its reaper before forking.
        nix::sys::prctl::set_child_subreaper(true).map_err(|source| ProcessError::Sys {
            what: "become a child subreaper",
            source,
        })?;
    }
    attrs::cloexec_from(3 + opts.preserve_fds).map_err(ProcessError::Child)?;

    let (join_parent, join_child) = channel::pair().map_err(|source| ProcessError::Channel {
        role: "exec",
        source,
    })?;
    let (proc_parent, proc_child) = channel::pair().map_err(|source| ProcessError::Channel {
        role: "exec",
        source,
    })?;
    let parent_fds = [join_parent.raw_fd(), proc_parent.raw_fd()];
    // Where cgroup2 allows, the joiner is cloned straight into the container's
    // cgroup; it joins the v1 hierarchies itself (see self_join_files).
    let cgroup = if p.state.cgroup_paths.is_empty() {
        None
    } else {
        Some(CgroupManager::from_paths(&p.state.cgroup_paths)?)
    };
    let clone_into = cgroup
        .as_ref()
        .and_then(|cg| cg.clone_into_dir())
        .and_then(|d| {
            nix::fcntl::open(
                d,
                nix::fcntl::OFlag::O_PATH
                    | nix::fcntl::OFlag::O_DIRECTORY
                    | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .ok()
        });
    let (joiner, cloned_into) = fork_child_into(
        c"berth:[1:EXEC]",
        clone_into.as_ref().map(|fd| std::os::fd::AsFd::as_fd(fd)),
        || {
            for fd in parent_fds {
                super::close_inherited(fd);
            }
            match join(&p, &join_child, &proc_child) {
                Ok(()) => 0,
                Err(f) => {
                    join_child.failed(f);
                    1
                }
            }
        },
    )?;
    drop(clone_into);
    if let Some(cg) = &cgroup {
        if !cloned_into {
            cg.join_cgroup2(joiner.as_raw())?;
        }
    }
    drop(join_child);
    drop(proc_child);

    let result = drive(&opts, joiner, &join_parent, &proc_parent);
    if result.is_err() {
        // The joiner may still be waiting for us: it must not linger.
        let _ = nix::sys::signal::kill(joiner, nix::sys::signal::Signal::SIGKILL);
        let _ = waitpid(joiner, None);
    }
    result
}

fn prepare(opts: &ExecOptions) -> Result<Prepared, ProcessError> {
    let state = State::load(&opts.root, &opts.id)?;
    let status = state.status(&opts.root);
    match status {
        Status::Running | Status::Created => {}
        Status::Paused if opts.ignore_paused => {}
        Status::Paused => return Err(ProcessError::Paused(opts.id.clone())),
        other => {
            return Err(ProcessError::NotRunning {
                id: opts.id.clone(),
                status: other.to_string(),
            })
        }
    }
    let process = opts.process.clone();
    if !process.cwd().is_absolute() {
        return Err(ProcessError::RelativeCwd(process.cwd().clone()));
    }
    if let Some(limits) = process.rlimits() {
        rlimits::validate(limits).map_err(|e| ProcessError::Rlimits(Box::new(e)))?;
    }
    attrs::check_supported(&process)?;
    let terminal = process.terminal().unwrap_or(false);
    let console_socket = match (&opts.console_socket, terminal) {
        (Some(_), false) => return Err(ProcessError::ConsoleSocketWithoutTerminal),
        (None, true) if opts.detach => return Err(ProcessError::ConsoleSocketRequired),
        (Some(path), true) => Some(tty::connect_console_socket(&attrs::absolute(path))?),
        (None, _) => None,
    };
    let plan = ExecPlan::new(&process, &state.rootfs)?;
    // The container's filter, compiled when it was created: read back from the
    // cache rather than compiled again in the process that execs.
    if let Some(f) = state
        .config
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
    {
        crate::seccomp::validate_in(f, Some(&opts.root.join(crate::seccomp::CACHE_DIR)))
            .map_err(|e| ProcessError::Seccomp(Box::new(e)))?;
    }

    let mut ns = Vec::new();
    for (key, path) in &state.namespace_paths {
        let Some(typ) = namespaces::from_state_key(key) else {
            logger::warn(&format!(
                "state.json: unknown namespace key {key}, not joined"
            ));
            continue;
        };
        let f = File::open(path).map_err(|source| ProcessError::ContainerNamespace {
            path: path.clone(),
            source,
        })?;
        ns.push((typ, OwnedFd::from(f)));
    }
    // The handles are of the init we checked, not of a process that reused its
    // pid, if the init is still the same process after they were opened.
    if !state.init_alive() {
        return Err(ProcessError::NotRunning {
            id: opts.id.clone(),
            status: Status::Stopped.to_string(),
        });
    }
    ns.sort_by_key(|(t, _)| namespaces::ENTER_ORDER.iter().position(|o| o == t));
    Ok(Prepared {
        state,
        process,
        plan,
        namespaces: ns,
        console_socket,
        terminal,
        preserve_fds: opts.preserve_fds,
    })
}

/// The runtime's side once the joiner is forked.
fn drive(
    opts: &ExecOptions,
    joiner: Pid,
    join_parent: &Channel,
    proc_parent: &Channel,
) -> Result<i32, ProcessError> {
    join_parent
        .cgroup_joined(&Default::default())
        .map_err(|source| ProcessError::Channel {
            role: "exec",
            source,
        })?;
    let pid = match join_parent.wait_for_intermediate() {
        Ok(IntermediateEvent::ChildPid(pid)) => Pid::from_raw(pid),
        Ok(IntermediateEvent::UserNsCreated) => {
            return Err(ProcessError::Channel {
                role: "exec",
                source: channel::ChannelError::Unexpected {
                    expected: "child-pid",
                    got: "user-namespace-created",
                },
            })
        }
        Err(r) => return Err(ProcessError::from_received("exec", r)),
    };
    match waitpid(joiner, None) {
        Ok(WaitStatus::Exited(_, 0)) => {}
        Ok(other) => {
            return Err(ProcessError::ChildDied {
                role: "exec",
                how: describe_status(other),
            })
        }
        Err(source) => {
            return Err(ProcessError::Sys {
                what: "wait for the exec process",
                source,
            })
        }
    }

    let mut master = None;
    loop {
        match proc_parent.wait_for_exec() {
            Ok(Some(fd)) => master = Some(fd),
            Ok(None) => break,
            Err(r) => {
                if !opts.detach {
                    let _ = waitpid(pid, None);
                }
                return Err(ProcessError::from_received("exec", r));
            }
        }
    }
    if opts.detach {
        if let Some(pid_file) = &opts.pid_file {
            state::write_atomic(
                &attrs::absolute(pid_file),
                pid.as_raw().to_string().as_bytes(),
                0o644,
            )?;
        }
        return Ok(0);
    }
    wait::wait_foreground(pid, master)
}

/// `berth:[1:EXEC]`: wait for the cgroup, join the container's namespaces, fork
/// the process that will execve.
fn join(p: &Prepared, to_parent: &Channel, proc_channel: &Channel) -> Result<(), ChildFailure> {
    // Once in the container's namespaces, its processes could otherwise ptrace
    // us or open /proc/<pid>/{mem,fd,environ} and reach the host through what
    // the runtime still holds (CVE-2016-9962). The process we fork inherits
    // this, and execve makes the user's program dumpable again.
    nix::sys::prctl::set_dumpable(false)
        .map_err(|e| ChildFailure::setup(format!("make the exec process non-dumpable: {e}")))?;
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(|e| ChildFailure::setup(format!("set the parent death signal: {e}")))?;
    to_parent.wait_for_cgroup().map_err(received)?;
    if !p.state.cgroup_paths.is_empty() {
        let cg = CgroupManager::from_paths(&p.state.cgroup_paths)
            .map_err(|e| ChildFailure::setup(format!("the container's cgroup: {e}")))?;
        for tasks in cg.self_join_files() {
            std::fs::write(&tasks, b"0").map_err(|e| {
                ChildFailure::setup(format!("join cgroup {}: {e}", tasks.display()))
            })?;
        }
    }
    for (typ, fd) in &p.namespaces {
        namespaces::join(*typ, fd).map_err(ChildFailure::setup)?;
    }
    if p.namespaces
        .iter()
        .any(|(t, _)| *t == LinuxNamespaceType::User)
    {
        become_root()?;
    }
    let pid = fork_child(c"berth:[2:EXEC]", || {
        super::close_inherited(to_parent.raw_fd());
        let f = run_process(p, proc_channel);
        proc_channel.failed(f.clone());
        f.kind.exit_code()
    })
    .map_err(|e| ChildFailure::setup(format!("fork: {e}")))?;
    to_parent
        .child_pid(pid.as_raw())
        .map_err(|e| ChildFailure::setup(format!("report the pid: {e}")))?;
    Ok(())
}

/// `berth:[2:EXEC]`: become the process and execve; returns only on failure.
fn run_process(p: &Prepared, ch: &Channel) -> ChildFailure {
    match setup_process(p, ch) {
        Ok(program) => p.plan.exec(&program),
        Err(f) => f,
    }
}

fn setup_process(p: &Prepared, ch: &Channel) -> Result<std::ffi::CString, ChildFailure> {
    nix::unistd::setsid().map_err(|e| ChildFailure::setup(format!("setsid: {e}")))?;
    if p.terminal {
        let pty = tty::open_pty().map_err(ChildFailure::setup)?;
        if let Some(size) = p.process.console_size() {
            let rows = u16::try_from(size.height()).unwrap_or(u16::MAX);
            let cols = u16::try_from(size.width()).unwrap_or(u16::MAX);
            tty::set_size(pty.master.as_raw_fd(), rows, cols).map_err(ChildFailure::setup)?;
        }
        match &p.console_socket {
            Some(sock) => tty::send_fd(sock.as_raw_fd(), pty.master.as_raw_fd(), &pty.slave_path)
                .map_err(ChildFailure::setup)?,
            None => ch
                .console_master(pty.master.as_raw_fd())
                .map_err(|e| ChildFailure::setup(format!("send the pty master: {e}")))?,
        }
        drop(pty.master);
        tty::become_stdio(&pty.slave).map_err(ChildFailure::setup)?;
        nix::unistd::fchown(
            &pty.slave,
            Some(nix::unistd::Uid::from_raw(p.process.user().uid())),
            None,
        )
        .map_err(|e| ChildFailure::setup(format!("chown the pty: {e}")))?;
    }
    attrs::enter_cwd(p.process.cwd())?;
    let linux = p.state.config.linux().as_ref();
    let seccomp = linux.and_then(|l| l.seccomp().as_ref());
    let personality = linux.and_then(|l| l.personality().as_ref());
    attrs::apply(&p.process, seccomp, personality)?;
    let program = p.plan.find()?.to_owned();
    attrs::cloexec_from(3 + p.preserve_fds)?;
    attrs::reset_signals()?;
    Ok(program)
}
