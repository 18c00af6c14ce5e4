//! The container's init (`berth:[2:INIT]`, PID 1 of its pid namespace): builds
//! the root filesystem, becomes the container's process, waits on exec.fifo for
//! `start`, and execve's the user's program.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use oci_spec::runtime::LinuxNamespaceType;

use super::attrs;
use super::channel::{Channel, ChildFailure};
use super::intermediate::{become_root, join_v1_cgroups, received};
use super::parent::Prepared;
use crate::rootfs::{self, RootfsConfig};
use crate::state::{OciState, Status};
use crate::{hooks, mntns, mounts, namespaces, tty};

/// The init's whole life. Until "ready", failures go to the runtime over the
/// channel; after it (the runtime has exited) they go to the container's stderr,
/// and the exit code says what kind of failure it was.
///
/// The order of the steps, and why:
///  1. setsid: the init leads its own session (a terminal needs that).
///  2. umask 0: device nodes and mount points get exactly the modes asked for.
///  3. session keyring (unless --no-new-keyring): keys stay per container.
///  4. hostname and domainname, in the container's UTS namespace.
///  5. rootfs::prepare: propagation private (or the spec's), rootfs bound onto
///     itself, the spec's mounts in order, /dev (devices and symlinks) and the
///     working directory.
///  6. prestart and createRuntime hooks run by the runtime (in its namespaces),
///     then the createContainer hooks run here, all before the pivot.
///  7. pivot_root (or chroot with --no-pivot); then `/` gets the spec's
///     propagation.
///  8. sysctls through the container's /proc/sys (before it goes read-only).
///  9. the terminal: a pty from the container's devpts, its slave bound on
///     /dev/console and made our stdio and controlling terminal, the master sent
///     to the console socket (or the runtime).
/// 10. read-only paths, masked paths, then a read-only root.
/// 11. the working directory, checked to be inside the root.
/// 12. process attributes (`attrs::apply`: rlimits, oom_score_adj, seccomp
///     early, bounding set, identity, capabilities, no_new_privs, seccomp late,
///     umask).
/// 13. the executable lookup, as the final user, so that a missing program fails
///     `create` rather than `start`.
/// 14. every fd from 3 + --preserve-fds on marked close-on-exec, signals reset.
/// 15. "ready" to the runtime, which writes state.json and exits.
/// 16. open exec.fifo for writing (blocks until `start`), write one byte.
/// 17. startContainer hooks, then execve.
pub(super) fn run(
    p: &Prepared,
    ch: &Channel,
    cgroup_paths: &BTreeMap<String, PathBuf>,
    fifo: RawFd,
    in_userns: bool,
    view: &RootView,
) -> i32 {
    let (state, program) = match setup(p, ch, cgroup_paths, in_userns, view) {
        Ok(x) => x,
        Err(f) => {
            ch.failed(f);
            return 1;
        }
    };
    let f = start_and_exec(p, &state, &program, fifo);
    eprintln!("berth-runtime: container init: {f}");
    f.kind.exit_code()
}

/// Where the init builds the rootfs: in a copy of the host's mount namespace,
/// at the rootfs's host path; or in a copy of the runtime's template
/// (`mntns`), at `/rootfs`, with the host paths it binds cloned beforehand.
#[derive(Debug)]
pub(super) struct RootView {
    pub rootfs: PathBuf,
    /// The container's cgroup directories, cloned from the host.
    pub cgroup_trees: BTreeMap<PathBuf, OwnedFd>,
}

impl RootView {
    pub fn host(p: &Prepared) -> RootView {
        RootView {
            rootfs: p.rootfs.clone(),
            cgroup_trees: BTreeMap::new(),
        }
    }
}

/// The init's life when the runtime cloned it straight into its new
/// namespaces (see `process/mod.rs`): first the steps the intermediate takes
/// otherwise, then `run`. With `template`, the runtime left the mount
/// namespace out of the clone, for the init to make it from the template.
pub(super) fn run_cloned(
    p: &Prepared,
    ch: &Channel,
    fifo: RawFd,
    template: Option<&OwnedFd>,
) -> i32 {
    let entered = enter(p, ch).and_then(|cgroup_paths| {
        let view = match template {
            Some(t) => leave_host(p, t, &cgroup_paths)?,
            None => RootView::host(p),
        };
        Ok((cgroup_paths, view))
    });
    match entered {
        Ok((cgroup_paths, view)) => run(
            p,
            ch,
            &cgroup_paths,
            fifo,
            p.plan.is_new(LinuxNamespaceType::User),
            &view,
        ),
        Err(f) => {
            ch.failed(f);
            1
        }
    }
}

/// The mount namespace for an init cloned without one: a copy of the
/// template, with the rootfs and the cgroup directories it binds cloned from
/// the host first. Whatever keeps it from the template while it is still in
/// the host's namespace sends it the usual way (a copy of the host's), which
/// reports any real problem with those paths as before.
fn leave_host(
    p: &Prepared,
    template: &OwnedFd,
    cgroup_paths: &BTreeMap<String, PathBuf>,
) -> Result<RootView, ChildFailure> {
    let usual = || {
        namespaces::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
            .map_err(ChildFailure::setup)
            .map(|()| RootView::host(p))
    };
    let cloned = mounts::clone_tree(&p.rootfs, true).and_then(|rootfs| {
        let mut trees = BTreeMap::new();
        for path in cgroup_bind_sources(p, cgroup_paths) {
            trees.insert(path.clone(), mounts::clone_tree(path, false)?);
        }
        Ok((rootfs, trees))
    });
    let (rootfs, cgroup_trees) = match cloned {
        Ok(x) => x,
        Err(e) => {
            crate::logger::debug(&format!("mount namespace: not from the template: {e}"));
            return usual();
        }
    };
    match mntns::enter(template, &rootfs) {
        Ok(()) => {
            crate::logger::debug("mount namespace: made from the template");
            Ok(RootView {
                rootfs: PathBuf::from(mntns::ROOTFS),
                cgroup_trees,
            })
        }
        Err(e) if e.still_on_host() => {
            crate::logger::debug(&format!("mount namespace: not from the template: {e}"));
            usual()
        }
        Err(e) => Err(ChildFailure::setup(e)),
    }
}

/// The host cgroup directories the spec's cgroup mount binds: none with a
/// cgroup namespace on a cgroup v2 host (a fresh cgroup2 mount), the one
/// cgroup2 directory without it, each v1 hierarchy's otherwise.
fn cgroup_bind_sources<'a>(
    p: &Prepared,
    cgroup_paths: &'a BTreeMap<String, PathBuf>,
) -> Vec<&'a PathBuf> {
    let has_cgroup_mount = p
        .spec
        .mounts()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|m| matches!(m.typ().as_deref(), Some("cgroup" | "cgroup2")));
    if !has_cgroup_mount {
        return Vec::new();
    }
    if p.host_cgroup2 {
        if p.plan.is_new(LinuxNamespaceType::Cgroup) {
            return Vec::new();
        }
        return cgroup_paths.values().take(1).collect();
    }
    let mut paths: Vec<&PathBuf> = cgroup_paths.values().collect();
    paths.sort();
    paths.dedup();
    paths
}

/// What the cloned init does before building the rootfs: give up the
/// overlay's mount fd, wait until the runtime has written our uid/gid maps
/// and placed us in the cgroup2 hierarchy, join the v1 hierarchies, enter the
/// namespaces given by path, become root of a new user namespace, and only
/// then create the cgroup namespace (rooted where we now are).
fn enter(p: &Prepared, ch: &Channel) -> Result<BTreeMap<String, PathBuf>, ChildFailure> {
    // Not the last copy (the runtime holds one until we are past this point;
    // see selfexe::release), so closing it costs us nothing.
    crate::selfexe::release();
    crate::logger::debug("nsexec container setup: the init enters the namespaces");
    let cgroup_paths = ch.wait_for_cgroup().map_err(received)?;
    join_v1_cgroups(p)?;
    for j in &p.plan.joined {
        namespaces::join(j.typ, &j.fd).map_err(ChildFailure::setup)?;
    }
    if p.plan.is_new(LinuxNamespaceType::User) {
        become_root()?;
    }
    if p.plan.is_new(LinuxNamespaceType::Cgroup) {
        namespaces::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
            .map_err(ChildFailure::setup)?;
    }
    Ok(cgroup_paths)
}

fn fail<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> ChildFailure {
    move |e| ChildFailure::setup(format!("{what}: {e}"))
}

fn setup(
    p: &Prepared,
    ch: &Channel,
    cgroup_paths: &BTreeMap<String, PathBuf>,
    in_userns: bool,
    view: &RootView,
) -> Result<(OciState, CString), ChildFailure> {
    crate::logger::debug("child process in init(): the container's init builds its root");
    nix::unistd::setsid().map_err(fail("setsid"))?;
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    if !p.opts.no_new_keyring {
        join_session_keyring(&p.opts.id)?;
    }
    if p.plan.has(LinuxNamespaceType::Uts) {
        if let Some(h) = p.spec.hostname().as_ref().filter(|h| !h.is_empty()) {
            nix::unistd::sethostname(h).map_err(fail("sethostname"))?;
        }
        if let Some(d) = p.spec.domainname().as_ref().filter(|d| !d.is_empty()) {
            set_domainname(d)?;
        }
    }

    let terminal = p.process.terminal().unwrap_or(false);
    let mount_sources: BTreeMap<usize, RawFd> = p
        .mount_sources
        .iter()
        .map(|(i, fd)| (*i, fd.as_raw_fd()))
        .collect();
    let cgroup_trees: BTreeMap<PathBuf, RawFd> = view
        .cgroup_trees
        .iter()
        .map(|(path, fd)| (path.clone(), fd.as_raw_fd()))
        .collect();
    let cfg = RootfsConfig {
        mount_sources: &mount_sources,
        host_cgroup2: p.host_cgroup2,
        cgroup_trees: &cgroup_trees,
        spec: &p.spec,
        rootfs: &view.rootfs,
        bundle: &p.bundle,
        in_userns,
        cgroup_paths,
        cgroup_mounts: &p.cgroup_mounts,
        new_cgroupns: p.plan.is_new(LinuxNamespaceType::Cgroup),
        terminal,
    };
    rootfs::prepare(&cfg).map_err(ChildFailure::setup)?;

    let state = ch.run_create_hooks().map_err(received)?;
    if let Some(list) = p
        .spec
        .hooks()
        .as_ref()
        .and_then(|h| h.create_container().clone())
    {
        // createContainer hooks run in the rootfs (runc's working directory
        // for them), so relative paths in them name files of the container.
        nix::unistd::chdir(&view.rootfs).map_err(fail("chdir to the rootfs"))?;
        hooks::run(&list, &state).map_err(fail("createContainer hook"))?;
    }

    rootfs::pivot(&view.rootfs, p.opts.no_pivot).map_err(ChildFailure::setup)?;
    rootfs::final_propagation(&p.spec).map_err(ChildFailure::setup)?;
    let linux = p.spec.linux().clone().unwrap_or_default();
    if let Some(sysctls) = linux.sysctl() {
        rootfs::write_sysctls(sysctls).map_err(ChildFailure::setup)?;
    }

    if terminal {
        setup_terminal(p, ch)?;
    }

    rootfs::finalize_dev(&p.spec).map_err(ChildFailure::setup)?;
    rootfs::readonly_paths(linux.readonly_paths().as_deref().unwrap_or(&[]))
        .map_err(ChildFailure::setup)?;
    rootfs::masked_paths(linux.masked_paths().as_deref().unwrap_or(&[]))
        .map_err(ChildFailure::setup)?;
    if p.spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        rootfs::readonly_root().map_err(ChildFailure::setup)?;
    }

    attrs::enter_cwd(p.process.cwd())?;
    attrs::apply(
        &p.process,
        linux.seccomp().as_ref(),
        linux.personality().as_ref(),
        &mut |fd| {
            ch.seccomp_fd(fd.as_raw_fd()).map_err(received)?;
            // The agent holds the listener now; our copy must not keep a dead
            // agent's notified syscalls waiting.
            drop(fd);
            Ok(())
        },
    )?;
    let program = p.exec.find()?.to_owned();
    attrs::cloexec_from(3 + p.opts.preserve_fds)?;
    attrs::reset_signals()?;
    crate::logger::debug("init: closing the pipe to signal completion (ready, waiting for start)");
    ch.init_ready().map_err(fail("report ready"))?;
    Ok((state, program))
}

/// Steps 16 and 17: wait for `start`, run the startContainer hooks, execve.
/// Returns only on failure.
fn start_and_exec(p: &Prepared, state: &OciState, program: &CString, fifo: RawFd) -> ChildFailure {
    // The runtime's state directory is out of reach now; the O_PATH handle it
    // gave us is reopened through our own fd table.
    let path = format!("/proc/self/fd/{fifo}");
    let f = match std::fs::OpenOptions::new()
        .write(true)
        .custom_flags_cloexec()
        .open(&path)
    {
        Ok(f) => f,
        Err(e) => return ChildFailure::setup(format!("open exec.fifo: {e}")),
    };
    if let Err(e) = nix::unistd::write(&f, b"0") {
        return ChildFailure::setup(format!("write exec.fifo: {e}"));
    }
    drop(f);
    if let Some(list) = p
        .spec
        .hooks()
        .as_ref()
        .and_then(|h| h.start_container().clone())
    {
        let mut st = state.clone();
        st.status = Status::Created;
        if let Err(e) = hooks::run(&list, &st) {
            return ChildFailure::setup(format!("startContainer hook: {e}"));
        }
    }
    p.exec.exec(program)
}

/// `OpenOptions::custom_flags(O_CLOEXEC)` under a readable name.
trait CloexecExt {
    fn custom_flags_cloexec(&mut self) -> &mut Self;
}

impl CloexecExt for std::fs::OpenOptions {
    fn custom_flags_cloexec(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::custom_flags(self, libc::O_CLOEXEC)
    }
}

fn setup_terminal(p: &Prepared, ch: &Channel) -> Result<(), ChildFailure> {
    tty::hand_over(&p.process, p.console_socket.as_ref(), true, &mut |master| {
        ch.console_master(master)
            .map_err(|e| tty::TtyError::ToRuntime(e.to_string()))
    })
    .map_err(ChildFailure::setup)
}

/// Join a new session keyring named after the container, so that keys do not
/// leak between containers (kernels without keyrings are fine).
fn join_session_keyring(id: &str) -> Result<(), ChildFailure> {
    let name = CString::new(id).map_err(fail("keyring name"))?;
    // SAFETY: KEYCTL_JOIN_SESSION_KEYRING reads a NUL-terminated name, which
    // `name` is, for the duration of the call.
    let r = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    if r < 0 {
        let e = nix::errno::Errno::last();
        if e != nix::errno::Errno::ENOSYS {
            return Err(ChildFailure::setup(format!("join a session keyring: {e}")));
        }
    }
    Ok(())
}

/// keyctl(2) operation number (linux/keyctl.h).
const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;

fn set_domainname(name: &str) -> Result<(), ChildFailure> {
    // SAFETY: setdomainname reads `len` bytes from the pointer, which come from
    // a live &str.
    let r = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    nix::errno::Errno::result(r)
        .map(drop)
        .map_err(fail("setdomainname"))
}
