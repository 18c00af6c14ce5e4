//! The runtime's side of `create`: validate the bundle without side effects
//! (`prepare`), then create the container (`create`): state directory, exec.fifo,
//! the intermediate and init processes, the cgroup, uid/gid maps, the create
//! hooks, state.json and the pid file. Until `create` returns successfully a
//! `Cleanup` guard undoes every side effect: it kills the processes, removes the
//! cgroup and the state directory.

use std::collections::BTreeMap;
use std::fs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Process, Spec};

use super::attrs::{self, ExecPlan};
use super::channel::{self, InitEvent, IntermediateEvent};
use super::{clone_child_in_namespaces, fork_child_into, init, intermediate, ProcessError};
use crate::cgroups::CgroupManager;
use crate::namespaces::{self, Plan};
use crate::state::{self, OciState, State, Status};
use crate::{capabilities, logger, mounts, rlimits, rootfs, seccomp, tty};

/// What `create` (and `run`) were asked for.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    pub id: String,
    /// The state root (`--root`).
    pub root: PathBuf,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    pub systemd_cgroup: bool,
    /// A foreground `run` with a terminal and no console socket: the pty master
    /// comes back to the runtime, which relays it to its own stdio.
    pub relay_console: bool,
}

/// A validated bundle, ready to be created. Holds open handles (joined
/// namespaces, the console socket) but has changed nothing yet.
#[derive(Debug)]
pub struct Prepared {
    pub opts: CreateOptions,
    /// Absolute bundle path.
    pub bundle: PathBuf,
    /// Absolute, canonical rootfs path.
    pub rootfs: PathBuf,
    pub spec: Spec,
    pub process: Process,
    pub plan: Plan,
    pub cgroup: Option<CgroupManager>,
    /// The connected `--console-socket`.
    pub console_socket: Option<OwnedFd>,
    pub exec: ExecPlan,
    pub uid_mappings: Vec<LinuxIdMapping>,
    pub gid_mappings: Vec<LinuxIdMapping>,
    /// Bind sources opened here on the host (index in the spec's mounts → fd)
    /// for a container with a new user namespace, whose init may not be
    /// allowed to reach them by path.
    pub mount_sources: BTreeMap<usize, OwnedFd>,
    /// Where each cgroup hierarchy is mounted (controller as in the cgroup
    /// paths → mount point; "" for the cgroup2 one).
    pub cgroup_mounts: BTreeMap<String, PathBuf>,
    /// Whether /sys/fs/cgroup is a pure cgroup v2 hierarchy.
    pub host_cgroup2: bool,
    /// The init is to make its mount namespace from the runtime's template:
    /// asked for, and the container fits (see `mntns`).
    pub from_template: bool,
}

/// A created container: its state (already saved) and, for a relayed terminal,
/// the pty master.
#[derive(Debug)]
pub struct Created {
    pub state: State,
    pub console_master: Option<OwnedFd>,
}

fn boxed<E: std::error::Error + Send + Sync + 'static>(e: E) -> super::BoxError {
    Box::new(e)
}

/// Validate everything about the bundle and the options. No side effect: nothing
/// is created, no process forked.
pub fn prepare(opts: CreateOptions) -> Result<Prepared, ProcessError> {
    // An existing id is refused before anything else is looked at (create
    // checks again when it makes the directory, against a race).
    if state::container_dir(&opts.root, &opts.id)?.exists() {
        return Err(state::StateError::AlreadyExists(opts.id.clone()).into());
    }
    let bundle = fs::canonicalize(&opts.bundle).map_err(|source| ProcessError::Bundle {
        path: opts.bundle.clone(),
        source,
    })?;
    let config_path = bundle.join("config.json");
    let data = fs::read(&config_path).map_err(|source| ProcessError::ReadConfig {
        path: config_path.clone(),
        source,
    })?;
    let raw: serde_json::Value =
        serde_json::from_slice(&data).map_err(|source| ProcessError::ConfigJson {
            path: config_path.clone(),
            source,
        })?;
    namespaces::check_raw_types(&raw)?;
    rlimits::check_raw_types(&raw).map_err(|e| ProcessError::Rlimits(boxed(e)))?;
    let mut raw = raw;
    // runc skips capability names it does not know (a newer kernel's) instead of
    // refusing the whole config.
    for name in capabilities::strip_unknown_raw(&mut raw) {
        logger::warn(&format!(
            "unknown capability {name} in config.json is ignored"
        ));
    }
    let spec: Spec = serde_json::from_value(raw).map_err(|source| ProcessError::ConfigJson {
        path: config_path.clone(),
        source,
    })?;

    let root = spec.root().as_ref().ok_or(ProcessError::NoRoot)?;
    let root_path = if root.path().is_absolute() {
        root.path().clone()
    } else {
        bundle.join(root.path())
    };
    let rootfs = fs::canonicalize(&root_path).map_err(|source| ProcessError::Rootfs {
        path: root_path.clone(),
        source,
    })?;
    if !rootfs.is_dir() {
        return Err(ProcessError::RootfsNotDir(rootfs));
    }

    let process = spec.process().clone().ok_or(ProcessError::NoProcess)?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(ProcessError::NoArgs);
    }
    if !process.cwd().is_absolute() {
        return Err(ProcessError::RelativeCwd(process.cwd().clone()));
    }

    let linux = spec.linux().clone().unwrap_or_default();
    let plan = Plan::from_spec(linux.namespaces().as_deref().unwrap_or(&[]))?;
    if let Some(j) = plan
        .joined
        .iter()
        .find(|j| j.typ == LinuxNamespaceType::Mount)
    {
        return Err(ProcessError::JoinedMountNamespace(j.path.clone()));
    }
    if !plan.is_new(LinuxNamespaceType::Mount) {
        return Err(ProcessError::NoMountNamespace);
    }
    let uid_mappings = linux.uid_mappings().clone().unwrap_or_default();
    let gid_mappings = linux.gid_mappings().clone().unwrap_or_default();
    if plan.is_new(LinuxNamespaceType::User) {
        if uid_mappings.is_empty() || gid_mappings.is_empty() {
            return Err(ProcessError::NoMappings);
        }
        let maps_root =
            |m: &[LinuxIdMapping]| m.iter().any(|x| x.container_id() == 0 && x.size() > 0);
        if !maps_root(&uid_mappings) || !maps_root(&gid_mappings) {
            return Err(ProcessError::RootNotMapped);
        }
    } else if !plan.has(LinuxNamespaceType::User)
        && (!uid_mappings.is_empty() || !gid_mappings.is_empty())
    {
        return Err(ProcessError::MappingsWithoutUserNs);
    }
    if (spec.hostname().as_ref().is_some_and(|h| !h.is_empty())
        || spec.domainname().as_ref().is_some_and(|h| !h.is_empty()))
        && !plan.has(LinuxNamespaceType::Uts)
    {
        return Err(ProcessError::HostnameWithoutUts);
    }
    if let Some(sysctls) = linux.sysctl() {
        for key in sysctls.keys() {
            rootfs::sysctl_path(key)?;
            if key.starts_with("net.") && !plan.has(LinuxNamespaceType::Network) {
                return Err(ProcessError::SysctlWithoutNetNs(key.clone()));
            }
        }
    }
    if linux.time_offsets().as_ref().is_some_and(|t| !t.is_empty())
        && !plan.is_new(LinuxNamespaceType::Time)
    {
        return Err(ProcessError::TimeOffsetsWithoutTimeNs);
    }
    for m in spec.mounts().as_deref().unwrap_or(&[]) {
        if !m.destination().is_absolute() {
            return Err(mounts::MountError::RelativeDestination(m.destination().clone()).into());
        }
        mounts::parse_options(m.options().as_deref().unwrap_or(&[]), m.destination())?;
    }
    rootfs::propagation(&spec)?;
    if let Some(limits) = process.rlimits() {
        rlimits::validate(limits).map_err(|e| ProcessError::Rlimits(boxed(e)))?;
    }
    attrs::check_supported(&process)?;
    if linux
        .personality()
        .as_ref()
        .is_some_and(|p| p.flags().as_ref().is_some_and(|f| !f.is_empty()))
    {
        return Err(ProcessError::PersonalityFlags);
    }
    if linux.intel_rdt().is_some() {
        return Err(ProcessError::Unsupported("linux.intelRdt"));
    }
    if linux.memory_policy().is_some() {
        return Err(ProcessError::Unsupported("linux.memoryPolicy"));
    }
    if linux.net_devices().as_ref().is_some_and(|d| !d.is_empty()) {
        return Err(ProcessError::Unsupported("linux.netDevices"));
    }
    if spec
        .mounts()
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .any(|m| m.uid_mappings().is_some() || m.gid_mappings().is_some())
    {
        return Err(ProcessError::Unsupported(
            "id-mapped mounts (mounts[].uidMappings)",
        ));
    }
    if let Some(filter) = linux.seccomp() {
        // Compiled once per distinct profile (see seccomp::validate_in); the
        // init, forked from us, loads what this compiled.
        seccomp::validate_in(filter, Some(&opts.root.join(seccomp::CACHE_DIR)))
            .map_err(|e| ProcessError::Seccomp(boxed(e)))?;
    }

    // Accepted like runc does without the LSM: Docker sets a profile whenever
    // the host has AppArmor.
    if let Some(profile) = process
        .apparmor_profile()
        .as_ref()
        .filter(|p| !p.is_empty())
    {
        logger::debug(&format!(
            "process.apparmorProfile {profile:?} ignored (no AppArmor support)"
        ));
    }
    if process
        .selinux_label()
        .as_ref()
        .is_some_and(|l| !l.is_empty())
        || linux.mount_label().as_ref().is_some_and(|l| !l.is_empty())
    {
        logger::debug("SELinux labels ignored (no SELinux support)");
    }

    let terminal = process.terminal().unwrap_or(false);
    let console_socket = match (&opts.console_socket, terminal) {
        (Some(_), false) => return Err(ProcessError::ConsoleSocketWithoutTerminal),
        (None, true) if !opts.relay_console => return Err(ProcessError::ConsoleSocketRequired),
        (Some(path), true) => Some(tty::connect_console_socket(&attrs::absolute(path))?),
        (None, _) => None,
    };

    // The layout is read once here; the init mounts the container's cgroups
    // from where it says each hierarchy is, without reading mountinfo again.
    let layout = crate::cgroups::Layout::detect().map_err(crate::cgroups::CgroupError::from)?;
    let cgroup = CgroupManager::with_layout(
        &layout,
        linux.cgroups_path().as_deref(),
        &opts.id,
        opts.systemd_cgroup,
    )?;
    // Detected from /sys/fs/cgroup being a cgroup2 mount, which is what the
    // init's cgroup mount asks.
    let host_cgroup2 = matches!(layout, crate::cgroups::Layout::V2 { .. });
    let cgroup_mounts = match layout {
        crate::cgroups::Layout::V1 {
            mut hierarchies,
            unified,
        } => {
            if let Some(u) = unified {
                hierarchies.insert(String::new(), u);
            }
            hierarchies
        }
        crate::cgroups::Layout::V2 { root } => BTreeMap::from([(String::new(), root)]),
    };
    let unified = linux
        .resources()
        .as_ref()
        .and_then(|r| r.unified().as_ref())
        .is_some_and(|u| !u.is_empty());
    if unified && cgroup.version() == crate::cgroups::CgroupVersion::V1 {
        return Err(ProcessError::InvalidConfig(
            "linux.resources.unified needs cgroup v2, and this host uses cgroup v1".into(),
        ));
    }
    // A cgroup that exists already is shared (runc allows it, with a warning);
    // a frozen one would freeze the init halfway through its setup.
    if cgroup.exists() {
        let pids = cgroup.pids().unwrap_or_default();
        if !pids.is_empty() {
            logger::warn(&format!(
                "container's cgroup is not empty: {} process(es) found",
                pids.len()
            ));
        }
        if cgroup.is_frozen().unwrap_or(false) {
            return Err(ProcessError::FrozenCgroup);
        }
    }
    let cgroup = Some(cgroup);
    let exec = ExecPlan::new(&process, &rootfs)?;
    let from_template = crate::mntns::wanted() && crate::mntns::fits(&spec, &plan);
    let mut mount_sources = if plan.is_new(LinuxNamespaceType::User) || from_template {
        open_bind_sources(&spec, &bundle)
    } else {
        BTreeMap::new()
    };
    // A bind source that cannot be cloned is reported by the usual way.
    let from_template = from_template
        && spec
            .mounts()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter(|m| crate::mntns::is_bind(m))
            .count()
            == mount_sources.len();
    if !from_template && !plan.is_new(LinuxNamespaceType::User) {
        mount_sources.clear();
    }
    Ok(Prepared {
        opts,
        bundle,
        rootfs,
        spec,
        process,
        plan,
        cgroup,
        console_socket,
        exec,
        uid_mappings,
        gid_mappings,
        mount_sources,
        cgroup_mounts,
        host_cgroup2,
        from_template,
    })
}

/// Clone every bind mount's source into a detached mount tree (open_tree
/// with OPEN_TREE_CLONE) with the runtime's own access, for a container with
/// a user namespace: a source under a directory only the host's root may
/// enter is then still reachable by an init whose root is an unprivileged
/// host uid, which attaches the tree with move_mount (runc opens such sources
/// on the host for the same reason). A source that cannot be cloned is left to
/// the init, which reports it.
fn open_bind_sources(spec: &Spec, bundle: &Path) -> BTreeMap<usize, OwnedFd> {
    let mut out = BTreeMap::new();
    for (i, m) in spec
        .mounts()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let Some(source) = m.source().as_ref().filter(|_| crate::mntns::is_bind(m)) else {
            continue;
        };
        let source = if source.is_absolute() {
            source.clone()
        } else {
            bundle.join(source)
        };
        let recursive = m
            .options()
            .as_ref()
            .is_some_and(|o| o.iter().any(|x| x == "rbind"));
        if let Ok(fd) = mounts::clone_tree(&source, recursive) {
            out.insert(i, fd);
        }
    }
    out
}

/// Undoes a half-made container unless disarmed: kills its processes (and reaps
/// those that are ours), removes its cgroup and its state directory.
#[derive(Debug)]
pub struct Cleanup {
    dir: Option<PathBuf>,
    cgroup: Option<CgroupManager>,
    cgroup_created: bool,
    pids: Vec<Pid>,
}

impl Cleanup {
    pub fn new() -> Cleanup {
        Cleanup {
            dir: None,
            cgroup: None,
            cgroup_created: false,
            pids: Vec::new(),
        }
    }

    pub fn disarm(mut self) {
        self.dir = None;
        self.cgroup = None;
        self.pids.clear();
    }
}

impl Default for Cleanup {
    fn default() -> Self {
        Cleanup::new()
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for pid in &self.pids {
            let _ = kill(*pid, Signal::SIGKILL);
        }
        if let Some(cg) = &self.cgroup {
            if self.cgroup_created {
                for pid in cg.pids().unwrap_or_default() {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        }
        // Wait (bounded) for them to be gone, reaping those that are our
        // children (the intermediate; the init too when we are a subreaper).
        let deadline = Instant::now() + Duration::from_secs(10);
        for pid in &self.pids {
            loop {
                match waitpid(*pid, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) => {}
                    Ok(_) => break,
                    // Not our child: wait until it is gone or a zombie.
                    Err(_) => {
                        if !Path::new(&format!("/proc/{pid}")).exists()
                            || state::is_zombie(pid.as_raw())
                        {
                            break;
                        }
                    }
                }
                if Instant::now() >= deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        if let Some(cg) = &self.cgroup {
            if self.cgroup_created {
                if let Err(e) = cg.remove() {
                    logger::warn(&format!("cleanup: remove the cgroup: {e}"));
                }
            }
        }
        if let Some(dir) = &self.dir {
            if let Err(e) = fs::remove_dir_all(dir) {
                logger::warn(&format!("cleanup: remove {}: {e}", dir.display()));
            }
        }
    }
}

/// Create the container described by `p`: on success state.json and the pid file
/// are written and the init is blocked on exec.fifo.
pub fn create(p: Prepared) -> Result<Created, ProcessError> {
    let mut cleanup = Cleanup::new();
    // Nothing the caller passed us beyond stdio and the preserved fds may reach
    // the hooks or the container (CVE-2024-21626).
    attrs::cloexec_from(3 + p.opts.preserve_fds).map_err(ProcessError::Child)?;

    let dir = state::create_container_dir(&p.opts.root, &p.opts.id)?;
    cleanup.dir = Some(dir.clone());

    let fifo_path = dir.join(state::EXEC_FIFO);
    nix::unistd::mkfifo(&fifo_path, Mode::from_bits_truncate(0o622)).map_err(|source| {
        ProcessError::Fifo {
            path: fifo_path.clone(),
            source,
        }
    })?;
    // mkfifo applies the umask; the init may run as any uid and must be able to
    // open it for writing.
    nix::sys::stat::fchmodat(
        nix::fcntl::AT_FDCWD,
        &fifo_path,
        Mode::from_bits_truncate(0o622),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .map_err(|source| ProcessError::Fifo {
        path: fifo_path.clone(),
        source,
    })?;
    // O_PATH: a handle the init can reopen through /proc/self/fd after the
    // pivot, without having to reach our state directory.
    let fifo = nix::fcntl::open(
        &fifo_path,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|source| ProcessError::Fifo {
        path: fifo_path.clone(),
        source,
    })?;

    let (init_parent, init_child) = channel::pair().map_err(|source| ProcessError::Channel {
        role: "init",
        source,
    })?;

    // The cgroup exists, with its limits, before the first child does: then the
    // child can be cloned straight into it where cgroup2 allows. The device
    // rules wait until the init has made the container's device nodes (runc's
    // order too: mknod is itself subject to them).
    let linux = p.spec.linux().as_ref();
    let mut limits = crate::devices::cgroup_rules(linux.and_then(|l| l.resources().as_ref()));
    let mut device_rules = oci_spec::runtime::LinuxResources::default();
    device_rules.set_devices(limits.devices().clone());
    limits.set_devices(None);
    let clone_into = match &p.cgroup {
        Some(cg) => {
            cleanup.cgroup = Some(cg.clone());
            cleanup.cgroup_created = true;
            cg.create()?;
            cg.apply(&limits)?;
            cg.clone_into_dir().and_then(|d| {
                nix::fcntl::open(
                    d,
                    nix::fcntl::OFlag::O_PATH
                        | nix::fcntl::OFlag::O_DIRECTORY
                        | nix::fcntl::OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .ok()
            })
        }
        None => None,
    };
    let cgroup_paths = p.cgroup.as_ref().map(|cg| cg.paths()).unwrap_or_default();

    // The init is cloned straight into its namespaces where nothing has to
    // happen between creating them (see process/mod.rs); else the
    // intermediate makes them and forks it.
    let init_parent_fd = init_parent.raw_fd();
    // With a template the init makes its mount namespace itself, from it. A
    // template that cannot be made costs the container nothing but the
    // usual way.
    let template = if p.from_template {
        crate::mntns::open_template(&p.opts.root)
            .map_err(|e| logger::warn(&format!("mount namespace template: {e}")))
            .ok()
    } else {
        None
    };
    let cloned = direct_clone_flags(&p.plan).and_then(|mut flags| {
        if template.is_some() {
            flags &= !u64::from(nix::sched::CloneFlags::CLONE_NEWNS.bits() as u32);
        }
        clone_child_in_namespaces(
            c"berth:[2:INIT]",
            flags,
            clone_into.as_ref().map(|fd| fd.as_fd()),
            || {
                super::close_inherited(init_parent_fd);
                init::run_cloned(&p, &init_child, fifo.as_raw_fd(), template.as_ref())
            },
        )
    });
    drop(template);
    let (init_pid, intermediate) = match cloned {
        Some((init_pid, cloned_into)) => {
            drop(clone_into);
            drop(init_child);
            cleanup.pids.push(init_pid);
            if let Some(cg) = &p.cgroup {
                // The init joins the v1 hierarchies itself (see
                // CgroupManager::self_join_files); cgroup2 needs us only when
                // the clone could not place it there.
                if !cloned_into {
                    cg.join_cgroup2(init_pid.as_raw())?;
                }
            }
            if p.plan.is_new(LinuxNamespaceType::User) {
                write_id_maps(init_pid, &p.uid_mappings, &p.gid_mappings)?;
            }
            init_parent
                .cgroup_joined(&cgroup_paths)
                .map_err(|source| ProcessError::Channel {
                    role: "init",
                    source,
                })?;
            (init_pid, None)
        }
        None => {
            let (init_pid, inter_pid) = spawn_through_intermediate(
                &p,
                &mut cleanup,
                &init_parent,
                init_child,
                clone_into,
                &cgroup_paths,
                fifo.as_raw_fd(),
            )?;
            (init_pid, Some(inter_pid))
        }
    };

    let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let hooks = p.spec.hooks().clone().unwrap_or_default();
    let mut console_master = None;
    loop {
        match init_parent.wait_for_init() {
            Ok(InitEvent::RunCreateHooks) => {
                let mut oci = oci_state(&p, init_pid.as_raw(), &created);
                oci.status = Status::Creating;
                for (stage, list) in [
                    ("prestart", hooks.prestart()),
                    ("createRuntime", hooks.create_runtime()),
                ] {
                    if let Some(list) = list {
                        crate::hooks::run(list, &oci).map_err(|e| ProcessError::Hook {
                            stage,
                            source: boxed(e),
                        })?;
                    }
                }
                init_parent
                    .hooks_done(&oci)
                    .map_err(|source| ProcessError::Channel {
                        role: "init",
                        source,
                    })?;
                if intermediate.is_none() {
                    // The overlay's mount fd (see selfexe::release): the init
                    // closed its copy before it asked for the hooks, so ours is
                    // the last, and the grace period that closing it waits for
                    // passes here while the init pivots and drops privileges.
                    crate::selfexe::release();
                }
            }
            Ok(InitEvent::ConsoleMaster(fd)) => console_master = Some(fd),
            Ok(InitEvent::SeccompFd(fd)) => {
                if let Some(profile) = p.spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
                    let oci = oci_state(&p, init_pid.as_raw(), &created);
                    super::notify::send_to_agent(profile, &oci, init_pid.as_raw(), &fd)?;
                }
                drop(fd);
                init_parent
                    .seccomp_done()
                    .map_err(|source| ProcessError::Channel {
                        role: "init",
                        source,
                    })?;
            }
            Ok(InitEvent::Ready) => {
                if let Some(cg) = &p.cgroup {
                    cg.apply(&device_rules)?;
                }
                break;
            }
            Err(r) => return Err(ProcessError::from_received("init", r)),
        }
    }
    // Reaped only now: it may still be closing the overlay's mount fd.
    if let Some(inter_pid) = intermediate {
        match waitpid(inter_pid, None) {
            Ok(WaitStatus::Exited(_, 0)) => {}
            Ok(other) => {
                return Err(ProcessError::ChildDied {
                    role: "intermediate",
                    how: describe_status(other),
                })
            }
            Err(source) => {
                return Err(ProcessError::Sys {
                    what: "wait for the intermediate process",
                    source,
                })
            }
        }
    }

    let start = state::process_start_time(init_pid.as_raw()).ok_or(ProcessError::ChildDied {
        role: "init",
        how: "exited".into(),
    })?;
    let st = State {
        id: p.opts.id.clone(),
        init_process_pid: init_pid.as_raw(),
        init_process_start: start,
        created,
        bundle: p.bundle.clone(),
        rootfs: p.rootfs.clone(),
        namespace_paths: p.plan.state_paths(init_pid.as_raw()),
        cgroup_paths,
        systemd_cgroup: p.opts.systemd_cgroup,
        owner: "root".to_string(),
        config: p.spec.clone(),
    };
    st.save(&p.opts.root)?;
    if let Some(pid_file) = &p.opts.pid_file {
        state::write_atomic(
            &attrs::absolute(pid_file),
            init_pid.as_raw().to_string().as_bytes(),
            0o644,
        )?;
    }
    cleanup.disarm();
    Ok(Created {
        state: st,
        console_master,
    })
}

/// The clone flags of the new namespaces when the init can be cloned straight
/// into them from the runtime; None when something must happen between
/// creating them, which the intermediate process does: joining a user
/// namespace (the new ones must belong to it) or joining namespaces before
/// creating a user namespace (joining needs the host's capabilities), joining
/// a pid namespace (only children enter it), a new time namespace (its
/// offsets are written before any process is in it). The cgroup namespace is
/// left out: the init creates it once it is in its cgroups.
fn direct_clone_flags(plan: &Plan) -> Option<u64> {
    use LinuxNamespaceType::{Cgroup, Pid as PidNs, Time, User};
    if plan.joined.iter().any(|j| matches!(j.typ, User | PidNs))
        || (plan.is_new(User) && !plan.joined.is_empty())
        || plan.is_new(Time)
    {
        return None;
    }
    Some(
        plan.new
            .iter()
            .filter(|t| **t != Cgroup)
            .fold(0u64, |acc, t| {
                acc | u64::from(namespaces::clone_flag(*t).bits() as u32)
            }),
    )
}

/// Create the intermediate process, which creates the namespaces and forks
/// the init (see process/mod.rs); returns the init's and the intermediate's
/// pids, both already in `cleanup`.
fn spawn_through_intermediate(
    p: &Prepared,
    cleanup: &mut Cleanup,
    init_parent: &channel::Channel,
    init_child: channel::Channel,
    clone_into: Option<OwnedFd>,
    cgroup_paths: &BTreeMap<String, PathBuf>,
    fifo: std::os::fd::RawFd,
) -> Result<(Pid, Pid), ProcessError> {
    let (inter_parent, inter_child) = channel::pair().map_err(|source| ProcessError::Channel {
        role: "intermediate",
        source,
    })?;
    let parent_fds = [inter_parent.raw_fd(), init_parent.raw_fd()];
    let (inter_pid, cloned_into) = fork_child_into(
        c"berth:[1:INTER]",
        clone_into.as_ref().map(|fd| fd.as_fd()),
        || {
            for fd in parent_fds {
                super::close_inherited(fd);
            }
            intermediate::run(p, &inter_child, &init_child, fifo)
        },
    )?;
    drop(clone_into);
    cleanup.pids.push(inter_pid);
    drop(inter_child);
    drop(init_child);

    if let Some(cg) = &p.cgroup {
        // The intermediate joins the v1 hierarchies itself (see
        // CgroupManager::self_join_files); cgroup2 needs us only when the
        // clone could not place it there.
        if !cloned_into {
            cg.join_cgroup2(inter_pid.as_raw())?;
        }
    }
    // The overlay's mount fd (see selfexe::release): from here on the
    // intermediate holds the last copy, and the grace period that the last
    // close waits for passes in its exit, while the init builds the rootfs;
    // nobody waits for it until the init is ready.
    crate::selfexe::release();
    inter_parent
        .cgroup_joined(cgroup_paths)
        .map_err(|source| ProcessError::Channel {
            role: "intermediate",
            source,
        })?;

    let init_pid = loop {
        match inter_parent.wait_for_intermediate() {
            Ok(IntermediateEvent::UserNsCreated) => {
                write_id_maps(inter_pid, &p.uid_mappings, &p.gid_mappings)?;
                inter_parent
                    .mappings_written()
                    .map_err(|source| ProcessError::Channel {
                        role: "intermediate",
                        source,
                    })?;
            }
            Ok(IntermediateEvent::ChildPid(pid)) => break Pid::from_raw(pid),
            Err(r) => return Err(died("intermediate", inter_pid, r)),
        }
    };
    cleanup.pids.push(init_pid);
    Ok((init_pid, inter_pid))
}

/// The state the hooks receive on stdin.
fn oci_state(p: &Prepared, pid: i32, created: &str) -> OciState {
    OciState {
        oci_version: p.spec.version().clone(),
        id: p.opts.id.clone(),
        status: Status::Creating,
        pid,
        bundle: p.bundle.clone(),
        rootfs: p.rootfs.clone(),
        created: created.to_string(),
        owner: "root".to_string(),
        annotations: p.spec.annotations().clone().unwrap_or_default(),
    }
}

/// Write the uid and gid maps of the new user namespace `pid` is in. Writing
/// `deny` to setgroups is only needed (and only done) when we lack CAP_SETGID
/// over the parent namespace, i.e. when not running as root.
fn write_id_maps(
    pid: Pid,
    uids: &[LinuxIdMapping],
    gids: &[LinuxIdMapping],
) -> Result<(), ProcessError> {
    let format = |m: &[LinuxIdMapping]| {
        m.iter()
            .map(|x| format!("{} {} {}\n", x.container_id(), x.host_id(), x.size()))
            .collect::<String>()
    };
    let write = |name: &str, data: &str| {
        let path = PathBuf::from(format!("/proc/{pid}/{name}"));
        fs::write(&path, data.as_bytes()).map_err(|source| ProcessError::WriteMap { path, source })
    };
    write("uid_map", &format(uids))?;
    if !nix::unistd::geteuid().is_root() {
        write("setgroups", "deny")?;
    }
    write("gid_map", &format(gids))
}

/// The error for a child that stopped talking: its failure message, or how it
/// died (we can wait for it: it is our child).
fn died(role: &'static str, pid: Pid, r: channel::Received) -> ProcessError {
    match r {
        channel::Received::Channel(channel::ChannelError::Closed) => {
            let how = match waitpid(pid, None) {
                Ok(st) => describe_status(st),
                Err(_) => "exited".into(),
            };
            ProcessError::ChildDied { role, how }
        }
        other => ProcessError::from_received(role, other),
    }
}

pub(crate) fn describe_status(st: WaitStatus) -> String {
    match st {
        WaitStatus::Exited(_, code) => format!("exited with status {code}"),
        WaitStatus::Signaled(_, sig, _) => format!("was killed by {sig}"),
        other => format!("stopped ({other:?})"),
    }
}
