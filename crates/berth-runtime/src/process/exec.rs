//! `exec`: a new process inside a running container. The runtime forks
//! `berth:[1:EXEC]`, puts it in the container's cgroup, and that process joins
//! every namespace recorded in state.json (user first, mount last) and forks
//! `berth:[2:EXEC]`, which is then inside the pid namespace too. That one applies
//! the process attributes and execve's; its channel is close-on-exec, so the
//! runtime learns that execve succeeded from the end of file, and why it failed
//! from a message (127: not found, 126: not executable).

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespaceType, Process};

use super::attrs::{self, ExecPlan};
use super::channel::{self, Channel, ChildFailure, ExecEvent, IntermediateEvent};
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
    /// `--cgroup [controller[,controller]:]path`: run in these existing
    /// sub-cgroups of the container's cgroup instead of its own.
    pub cgroups: Vec<String>,
}

struct Prepared {
    state: State,
    process: Process,
    plan: ExecPlan,
    namespaces: Vec<(LinuxNamespaceType, OwnedFd)>,
    console_socket: Option<OwnedFd>,
    terminal: bool,
    preserve_fds: u32,
    /// Where the process goes when `--cgroup` named sub-cgroups: controller →
    /// directory ("" the v2 or hybrid unified one), written by the runtime.
    sub_cgroups: Option<BTreeMap<String, PathBuf>>,
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
    let cgroup = if p.state.cgroup_paths.is_empty() || p.sub_cgroups.is_some() {
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
            // The runtime keeps the overlay's mount fd (closed as it exits):
            // nothing that enters the container may hold it.
            crate::selfexe::release();
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
    drop(join_child);
    drop(proc_child);
    let joined = match (&cgroup, &p.sub_cgroups) {
        (Some(cg), _) if !cloned_into => cg.join_cgroup2(joiner.as_raw()).map_err(Into::into),
        (_, Some(dirs)) => add_to_cgroups(joiner, dirs),
        _ => Ok(()),
    };
    if let Err(e) = joined {
        let _ = nix::sys::signal::kill(joiner, nix::sys::signal::Signal::SIGKILL);
        let _ = waitpid(joiner, None);
        return Err(e);
    }

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
    let sub_cgroups = sub_cgroup_paths(&state.cgroup_paths, &opts.cgroups)?;
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
        sub_cgroups,
    })
}

/// The cgroups a `--cgroup` exec joins: the container's, with the named
/// sub-cgroups in place of the controllers they name (all of them for a bare
/// path), as runc resolves them. None when no `--cgroup` was given.
pub fn sub_cgroup_paths(
    base: &BTreeMap<String, PathBuf>,
    args: &[String],
) -> Result<Option<BTreeMap<String, PathBuf>>, ProcessError> {
    if args.is_empty() {
        return Ok(None);
    }
    let mut subs: BTreeMap<String, String> = BTreeMap::new();
    for arg in args {
        match arg.split_once(':') {
            Some((_, rest)) if rest.contains(':') => {
                return Err(ProcessError::BadSubCgroup(format!(
                    "invalid --cgroup argument: {arg}"
                )))
            }
            Some((ctrls, path)) => {
                for c in ctrls.split(',') {
                    subs.insert(c.to_string(), path.to_string());
                }
            }
            None if args.len() != 1 => {
                return Err(ProcessError::BadSubCgroup(format!(
                    "invalid --cgroup argument: {arg} (missing <controller>: prefix)"
                )))
            }
            None => {
                subs.insert(String::new(), arg.clone());
            }
        }
    }
    let mut out = base.clone();
    let join = |dir: &Path, sub: &str| {
        sub_path(dir, sub)
            .ok_or_else(|| ProcessError::BadSubCgroup(format!("{sub} is not a sub cgroup path")))
    };
    match subs.get("") {
        Some(sub) => {
            for dir in out.values_mut() {
                *dir = join(dir, sub)?;
            }
        }
        None => {
            for (ctrl, sub) in &subs {
                let Some(dir) = out.get_mut(ctrl) else {
                    return Err(ProcessError::BadSubCgroup(format!(
                        "unknown controller {ctrl} in SubCgroupPaths"
                    )));
                };
                *dir = join(dir, sub)?;
            }
        }
    }
    Ok(Some(out))
}

/// `dir` joined with `sub` lexically, or None when `sub` climbs above `dir`.
fn sub_path(dir: &Path, sub: &str) -> Option<PathBuf> {
    let mut out = dir.to_path_buf();
    let mut depth = 0usize;
    for c in Path::new(sub).components() {
        match c {
            std::path::Component::Normal(n) => {
                out.push(n);
                depth += 1;
            }
            std::path::Component::ParentDir => {
                depth = depth.checked_sub(1)?;
                out.pop();
            }
            _ => {}
        }
    }
    Some(out)
}

/// Move `pid` into each directory (runc's way for `--cgroup`; the usual exec
/// joins without a migration, see CgroupManager::self_join_files).
fn add_to_cgroups(pid: Pid, dirs: &BTreeMap<String, PathBuf>) -> Result<(), ProcessError> {
    let mut seen = std::collections::BTreeSet::new();
    for dir in dirs.values() {
        if !seen.insert(dir) {
            continue;
        }
        let file = dir.join("cgroup.procs");
        let write = std::fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .and_then(|mut f| std::io::Write::write_all(&mut f, pid.to_string().as_bytes()));
        if let Err(e) = write {
            return Err(ProcessError::AddToCgroup {
                pid: pid.as_raw(),
                file,
                reason: crate::logger::errno_text(&e),
            });
        }
    }
    Ok(())
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
            Ok(ExecEvent::ConsoleMaster(fd)) => master = Some(fd),
            Ok(ExecEvent::SeccompFd(fd)) => {
                let sent = send_seccomp_fd(opts, pid, &fd).and_then(|()| {
                    proc_parent
                        .seccomp_done()
                        .map_err(|source| ProcessError::Channel {
                            role: "exec",
                            source,
                        })
                });
                if let Err(e) = sent {
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                    if !opts.detach {
                        let _ = waitpid(pid, None);
                    }
                    return Err(e);
                }
            }
            Ok(ExecEvent::Executed) => break,
            Err(r) => {
                if !opts.detach {
                    let _ = waitpid(pid, None);
                }
                return Err(ProcessError::from_received("exec", r));
            }
        }
    }
    if let Some(pid_file) = &opts.pid_file {
        let written = state::write_atomic(
            &attrs::absolute(pid_file),
            pid.as_raw().to_string().as_bytes(),
            0o644,
        );
        if let Err(e) = written {
            // The caller cannot track a process whose pid it was not given.
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            if !opts.detach {
                let _ = waitpid(pid, None);
            }
            return Err(e.into());
        }
    }
    if opts.detach {
        return Ok(0);
    }
    wait::wait_foreground(pid, master)
}

/// Pass an exec'd process's seccomp listener to the container's agent.
fn send_seccomp_fd(opts: &ExecOptions, pid: Pid, fd: &OwnedFd) -> Result<(), ProcessError> {
    let state = State::load(&opts.root, &opts.id)?;
    let Some(profile) = state
        .config
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().clone())
    else {
        return Ok(());
    };
    let oci = state.oci_state(&opts.root);
    super::notify::send_to_agent(&profile, &oci, pid.as_raw(), fd)?;
    Ok(())
}

/// `berth:[1:EXEC]`: wait for the cgroup, join the container's namespaces, fork
/// the process that will execve.
fn join(p: &Prepared, to_parent: &Channel, proc_channel: &Channel) -> Result<(), ChildFailure> {
    crate::logger::debug("nsexec container setup: joining the container's namespaces");
    // Once in the container's namespaces, its processes could otherwise ptrace
    // us or open /proc/<pid>/{mem,fd,environ} and reach the host through what
    // the runtime still holds (CVE-2016-9962). The process we fork inherits
    // this, and execve makes the user's program dumpable again.
    nix::sys::prctl::set_dumpable(false)
        .map_err(|e| ChildFailure::setup(format!("make the exec process non-dumpable: {e}")))?;
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(|e| ChildFailure::setup(format!("set the parent death signal: {e}")))?;
    to_parent.wait_for_cgroup().map_err(received)?;
    // With --cgroup the runtime has placed us in the sub-cgroups already.
    if !p.state.cgroup_paths.is_empty() && p.sub_cgroups.is_none() {
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
    crate::logger::debug("child process in init(): setting up the exec'd process");
    nix::unistd::setsid().map_err(|e| ChildFailure::setup(format!("setsid: {e}")))?;
    if p.terminal {
        tty::hand_over(
            &p.process,
            p.console_socket.as_ref(),
            false,
            &mut |master| {
                ch.console_master(master)
                    .map_err(|e| tty::TtyError::ToRuntime(e.to_string()))
            },
        )
        .map_err(ChildFailure::setup)?;
    }
    attrs::enter_cwd(p.process.cwd())?;
    let linux = p.state.config.linux().as_ref();
    let seccomp = linux.and_then(|l| l.seccomp().as_ref());
    let personality = linux.and_then(|l| l.personality().as_ref());
    attrs::apply(&p.process, seccomp, personality, &mut |fd| {
        ch.seccomp_fd(fd.as_raw_fd()).map_err(received)?;
        drop(fd);
        Ok(())
    })?;
    let program = p.plan.find()?.to_owned();
    attrs::cloexec_from(3 + p.preserve_fds)?;
    attrs::reset_signals()?;
    crate::logger::debug(&format!("setns_init: about to exec {program:?}"));
    Ok(program)
}
