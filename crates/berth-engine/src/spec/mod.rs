//! Docker's container configuration → the OCI runtime spec the runtime executes.
//!
//! [`merge_image_config`] fills a container's `Config` from its image as dockerd does at
//! create time (env merged by key, entrypoint and cmd, working dir, user, labels...).
//! [`build_spec`] is a pure function of that config, the `HostConfig`, a few host facts
//! and the container's root filesystem (read only for `/etc/passwd` and `/etc/group`),
//! giving Docker's defaults (capabilities, masked paths, mounts, devices) and every
//! `HostConfig` field berth honours.
//!
//! Seccomp: Docker's default profile ([`seccomp`]) unless `--privileged` or
//! `seccomp=unconfined`; `seccomp=<json>` is a profile in Docker's format.

pub mod defaults;
pub mod devices;
pub mod etc;
pub mod mounts;
pub mod namespaces;
pub mod seccomp;
pub mod user;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bollard_stubs::models::{ContainerConfig, HostConfig, ImageConfig};
use oci_spec::runtime::{
    LinuxBuilder, LinuxCapabilities, LinuxCpu, LinuxDevice, LinuxMemory, LinuxNamespace,
    LinuxNamespaceType, LinuxPids, LinuxResources, PosixRlimitBuilder, PosixRlimitType, Process,
    Root, Spec, User,
};

pub use mounts::VolumeResolver;

/// Errors while building a spec.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The configuration is wrong (the client's fault).
    #[error("{0}")]
    Invalid(String),
    /// The configuration asks for something berth does not do yet.
    #[error("{0}")]
    Unsupported(String),
    /// `User` or `GroupAdd` names something the image does not have.
    #[error(transparent)]
    User(#[from] user::UserError),
    /// oci-spec refused a value.
    #[error("building the OCI spec: {0}")]
    Oci(#[from] oci_spec::OciSpecError),
}

/// What the spec needs to know about the host.
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    pub hostname: String,
    /// Whether /sys/fs/cgroup is cgroup2 (then containers get a private cgroup namespace).
    pub cgroup_v2: bool,
    /// The host's devices, for privileged containers.
    pub devices: Vec<LinuxDevice>,
    /// Whether the host's cgroups take a block I/O weight (v1 needs CFQ's or BFQ's
    /// weight files, v2 the io controller).
    pub blkio_weight: bool,
}

impl HostFacts {
    /// Reads the facts from the running host.
    pub fn probe() -> HostFacts {
        let hostname = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default();
        let cgroup_v2 = nix::sys::statfs::statfs("/sys/fs/cgroup")
            .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
            .unwrap_or(false);
        let blkio_weight = if cgroup_v2 {
            std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
                .is_ok_and(|c| c.split_whitespace().any(|c| c == "io"))
        } else {
            ["blkio.weight", "blkio.bfq.weight"]
                .iter()
                .any(|f| Path::new("/sys/fs/cgroup/blkio").join(f).exists())
        };
        HostFacts {
            hostname,
            cgroup_v2,
            devices: host_devices(Path::new("/dev")),
            blkio_weight,
        }
    }
}

/// The character and block devices directly under `dir` and its subdirectories
/// (except pts, shm, mqueue), as a privileged container gets them.
pub fn host_devices(dir: &Path) -> Vec<LinuxDevice> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(md) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if md.file_type().is_dir() {
                let name = e.file_name();
                if !matches!(
                    name.to_str(),
                    Some("pts" | "shm" | "mqueue" | ".lxc" | ".lxd-mounts")
                ) {
                    stack.push(p);
                }
                continue;
            }
            out.extend(defaults::device_node(p, &md));
        }
    }
    out.sort_by(|a, b| a.path().cmp(b.path()));
    out
}

/// `KEY=VALUE` entries of `overrides` replace those of `base` with the same key in
/// place; new keys are appended (Docker's ReplaceOrAppendEnvValues).
pub fn merge_env(base: &[String], overrides: &[String]) -> Vec<String> {
    let key = |e: &str| {
        e.split_once('=')
            .map(|(k, _)| k.to_string())
            .unwrap_or_else(|| e.to_string())
    };
    let mut out: Vec<String> = base.to_vec();
    for o in overrides {
        let k = key(o);
        match out.iter().position(|e| key(e) == k) {
            Some(i) => out[i] = o.clone(),
            None => out.push(o.clone()),
        }
    }
    out
}

/// Fills what the user left unset from the image, as dockerd does at create time.
pub fn merge_image_config(config: &mut ContainerConfig, image: &ImageConfig) {
    let image_env = image.env.clone().unwrap_or_default();
    let user_env = config.env.clone().unwrap_or_default();
    config.env = Some(merge_env(&image_env, &user_env));

    // `--entrypoint ""` arrives as [""] and means "no entrypoint".
    if config
        .entrypoint
        .as_ref()
        .is_some_and(|e| e.len() == 1 && e[0].is_empty())
    {
        config.entrypoint = Some(vec![]);
    }
    let entrypoint_empty = config.entrypoint.as_ref().is_none_or(|e| e.is_empty());
    if entrypoint_empty {
        if config.cmd.as_ref().is_none_or(|c| c.is_empty()) {
            config.cmd = image.cmd.clone();
        }
        if config.entrypoint.is_none() {
            config.entrypoint = image.entrypoint.clone();
        }
    }
    if config.working_dir.as_deref().unwrap_or("").is_empty() {
        config.working_dir = image.working_dir.clone();
    }
    if config.user.as_deref().unwrap_or("").is_empty() {
        config.user = image.user.clone();
    }
    if config.stop_signal.is_none() {
        config.stop_signal = image.stop_signal.clone();
    }
    if let Some(img_labels) = &image.labels {
        let mut labels = img_labels.clone();
        labels.extend(config.labels.clone().unwrap_or_default());
        config.labels = Some(labels);
    }
    if let Some(ports) = &image.exposed_ports {
        let mut p = ports.clone();
        p.extend(config.exposed_ports.clone().unwrap_or_default());
        config.exposed_ports = Some(p);
    }
    if let Some(vols) = &image.volumes {
        let mut v = vols.clone();
        v.extend(config.volumes.clone().unwrap_or_default());
        config.volumes = Some(v);
    }
    if config.healthcheck.is_none() {
        config.healthcheck = image.healthcheck.clone();
    }
    if config.shell.is_none() {
        config.shell = image.shell.clone();
    }
}

/// The process's argv from a merged config: entrypoint then cmd.
pub fn command(config: &ContainerConfig) -> Result<Vec<String>, SpecError> {
    let mut args = config.entrypoint.clone().unwrap_or_default();
    args.extend(config.cmd.clone().unwrap_or_default());
    if args.is_empty() {
        return Err(SpecError::Invalid("No command specified".to_string()));
    }
    Ok(args)
}

/// The hostname a container gets: the host's with the host's UTS namespace,
/// `Hostname` if set, the host's with host networking, else the short id.
pub fn hostname(
    id: &str,
    config: &ContainerConfig,
    host_config: &HostConfig,
    facts: &HostFacts,
) -> String {
    match config.hostname.as_deref() {
        _ if namespaces::uts_is_host(host_config) => facts.hostname.clone(),
        Some(h) if !h.is_empty() => h.to_string(),
        _ if network_mode(host_config) == NetworkMode::Host => facts.hostname.clone(),
        _ => id.get(..12).unwrap_or(id).to_string(),
    }
}

/// What the spec needs to know of a network mode: whether the container shares the
/// host's network namespace or has one of its own. Which one (its pinned path, or
/// another container's for `container:<id>`) is the network module's business
/// (`network::container::apply_to_spec`), as is checking the mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    /// The host's network namespace.
    Host,
    /// A network namespace other than the host's.
    None,
}

/// Parses `NetworkMode`: `host`, or anything else (none, bridge, a user network,
/// `container:<id>`), which gets a namespace of its own.
pub fn parse_network_mode(mode: &str) -> Result<NetworkMode, SpecError> {
    match mode {
        "host" => Ok(NetworkMode::Host),
        _ => Ok(NetworkMode::None),
    }
}

fn network_mode(hc: &HostConfig) -> NetworkMode {
    parse_network_mode(hc.network_mode.as_deref().unwrap_or("")).unwrap_or(NetworkMode::None)
}

/// Everything [`build_spec`] reads.
pub struct SpecInput<'a> {
    pub id: &'a str,
    pub config: &'a ContainerConfig,
    pub host_config: &'a HostConfig,
    pub image: &'a ImageConfig,
    /// The container's root filesystem, read for /etc/passwd and /etc/group.
    pub rootfs: &'a Path,
    /// `<data-root>/containers/<id>`: where hostname, hosts and resolv.conf are.
    pub container_dir: &'a Path,
    /// The host path of the berth-init binary, for `Init`.
    pub init_path: &'a Path,
    pub volumes: &'a dyn VolumeResolver,
    pub host: &'a HostFacts,
}

/// Where `--init` mounts berth-init in the container.
pub const INIT_PATH_IN_CONTAINER: &str = "/sbin/berth-init";

fn invalid(msg: impl Into<String>) -> SpecError {
    SpecError::Invalid(msg.into())
}

/// The NOFILE limit containers get by default: Docker's 1048576, unless this host
/// cannot give it. Raising a hard limit needs CAP_SYS_RESOURCE, which a daemon in a
/// restricted environment may lack (the runtime then fails with EPERM); the stack
/// below berthd runs with the same limits, so berthd's own hard limit is then used.
fn default_nofile() -> u64 {
    const DOCKER_NOFILE: u64 = 1_048_576;
    const CAP_SYS_RESOURCE: u32 = 24;
    let hard = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(_, hard)| hard)
        .unwrap_or(DOCKER_NOFILE);
    let can_raise = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|eff| eff & (1 << CAP_SYS_RESOURCE) != 0);
    if can_raise || hard >= DOCKER_NOFILE {
        DOCKER_NOFILE
    } else {
        hard
    }
}

fn rlimit_type(name: &str) -> Option<PosixRlimitType> {
    use PosixRlimitType::*;
    Some(match name {
        "core" => RlimitCore,
        "cpu" => RlimitCpu,
        "data" => RlimitData,
        "fsize" => RlimitFsize,
        "locks" => RlimitLocks,
        "memlock" => RlimitMemlock,
        "msgqueue" => RlimitMsgqueue,
        "nice" => RlimitNice,
        "nofile" => RlimitNofile,
        "nproc" => RlimitNproc,
        "rss" => RlimitRss,
        "rtprio" => RlimitRtprio,
        "rttime" => RlimitRttime,
        "sigpending" => RlimitSigpending,
        "stack" => RlimitStack,
        "as" => RlimitAs,
        _ => return None,
    })
}

/// Namespaced sysctls a container may set (Docker's rules).
fn check_sysctl(key: &str, mode: NetworkMode) -> Result<(), SpecError> {
    const IPC: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        return Ok(());
    }
    if key.starts_with("net.") {
        if mode == NetworkMode::Host {
            return Err(invalid(format!(
                "sysctl {key:?} not allowed in host network namespace"
            )));
        }
        return Ok(());
    }
    Err(invalid(format!(
        "sysctl {key:?} is not allowed in the container's namespaces"
    )))
}

/// Resource limits from HostConfig, validated as dockerd validates them.
pub fn resources(hc: &HostConfig, privileged: bool) -> Result<LinuxResources, SpecError> {
    let mut mem = LinuxMemory::default();
    let memory = hc.memory.unwrap_or(0);
    if memory != 0 {
        if memory < 6 * 1024 * 1024 {
            return Err(invalid("Minimum memory limit allowed is 6MB"));
        }
        mem.set_limit(Some(memory));
    }
    let swap = hc.memory_swap.unwrap_or(0);
    if swap > 0 && memory == 0 {
        return Err(invalid(
            "You should always set the Memory limit when using Memoryswap limit, see usage",
        ));
    }
    if swap > 0 && swap < memory {
        return Err(invalid(
            "Minimum memoryswap limit should be larger than memory limit, see usage",
        ));
    }
    match swap {
        -1 => {
            mem.set_swap(Some(-1));
        }
        0 if memory > 0 => {
            // Docker's default: as much swap as memory. Checked: a client may send
            // any i64.
            let doubled = memory
                .checked_mul(2)
                .ok_or_else(|| invalid(format!("Invalid memory limit {memory}: too large")))?;
            mem.set_swap(Some(doubled));
        }
        0 => {}
        s => {
            mem.set_swap(Some(s));
        }
    }
    if let Some(r) = hc.memory_reservation.filter(|r| *r != 0) {
        if memory > 0 && r > memory {
            return Err(invalid(
                "Minimum memory limit can not be less than memory reservation limit, see usage",
            ));
        }
        mem.set_reservation(Some(r));
    }
    if let Some(s) = hc.memory_swappiness.filter(|s| *s >= 0) {
        if s > 100 {
            return Err(invalid(format!(
                "Invalid value: {s}, valid memory swappiness range is 0-100"
            )));
        }
        mem.set_swappiness(Some(s as u64));
    }
    if hc.oom_kill_disable == Some(true) {
        mem.set_disable_oom_killer(Some(true));
    }

    let mut cpu = LinuxCpu::default();
    let nano = hc.nano_cpus.unwrap_or(0);
    let quota = hc.cpu_quota.unwrap_or(0);
    let period = hc.cpu_period.unwrap_or(0);
    if nano != 0 {
        if period != 0 {
            return Err(invalid(
                "Conflicting options: Nano CPUs and CPU Period cannot both be set",
            ));
        }
        if quota != 0 {
            return Err(invalid(
                "Conflicting options: Nano CPUs and CPU Quota cannot both be set",
            ));
        }
        let ncpu = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let max = i64::try_from(ncpu)
            .unwrap_or(i64::MAX / 1_000_000_000)
            .saturating_mul(1_000_000_000);
        if !(10_000_000..=max).contains(&nano) {
            return Err(invalid(format!(
                "Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available"
            )));
        }
        // nano × period (100 ms) / 1 s, without the overflow of the product.
        cpu.set_period(Some(100_000));
        cpu.set_quota(Some(nano / 10_000));
    }
    if period != 0 {
        if !(1000..=1_000_000).contains(&period) {
            return Err(invalid("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"));
        }
        cpu.set_period(Some(period as u64));
    }
    if quota != 0 {
        if quota > 0 && quota < 1000 {
            return Err(invalid(
                "CPU cfs quota can not be less than 1ms (i.e. 1000)",
            ));
        }
        cpu.set_quota(Some(quota));
    }
    if let Some(s) = hc.cpu_shares.filter(|s| *s > 0) {
        cpu.set_shares(Some(s as u64));
    }
    if let Some(c) = hc.cpuset_cpus.as_ref().filter(|c| !c.is_empty()) {
        cpu.set_cpus(Some(c.clone()));
    }
    if let Some(m) = hc.cpuset_mems.as_ref().filter(|c| !c.is_empty()) {
        cpu.set_mems(Some(m.clone()));
    }

    let mut res = LinuxResources::default();
    res.set_devices(Some(defaults::device_rules(privileged)));
    if mem != LinuxMemory::default() {
        res.set_memory(Some(mem));
    }
    if cpu != LinuxCpu::default() {
        res.set_cpu(Some(cpu));
    }
    if let Some(p) = hc.pids_limit.filter(|p| *p > 0) {
        let mut pids = LinuxPids::default();
        pids.set_limit(p);
        res.set_pids(Some(pids));
    }
    Ok(res)
}

/// Fields berth cannot honour on this host, refused with dockerd's words rather
/// than ignored: a container that silently lacks what it asked for looks fine
/// until it matters.
pub fn refuse_unsupported(hc: &HostConfig) -> Result<(), SpecError> {
    if let Some(r) = hc.device_requests.as_ref().and_then(|r| r.first()) {
        return Err(invalid(format!(
            "could not select device driver {:?} with capabilities: {:?}",
            r.driver.as_deref().unwrap_or(""),
            r.capabilities.clone().unwrap_or_default()
        )));
    }
    if hc.storage_opt.as_ref().is_some_and(|o| !o.is_empty()) {
        return Err(invalid(
            "--storage-opt is supported only for overlay over xfs with 'pquota' mount option",
        ));
    }
    if let Some(i) = hc
        .isolation
        .map(|i| i.to_string())
        .filter(|i| !i.is_empty() && i != "default")
    {
        return Err(invalid(format!(
            "Invalid isolation: {i:?} - linux only supports 'default'"
        )));
    }
    if hc.cpu_realtime_period.unwrap_or(0) != 0 || hc.cpu_realtime_runtime.unwrap_or(0) != 0 {
        return Err(invalid(
            "Your kernel does not support CPU real-time scheduler (berth sets no real-time budget)",
        ));
    }
    Ok(())
}

/// The cgroup the container's goes under: `CgroupParent` (relative to the
/// hierarchy's root, as dockerd's cgroupfs driver takes it), else `/berth`.
fn cgroup_parent(hc: &HostConfig) -> Result<PathBuf, SpecError> {
    let parent = hc
        .cgroup_parent
        .as_deref()
        .unwrap_or("")
        .trim_end_matches('/');
    if parent.is_empty() {
        return Ok(PathBuf::from("/berth"));
    }
    let path = Path::new("/").join(parent);
    let plain = path.components().all(|c| {
        matches!(
            c,
            std::path::Component::RootDir | std::path::Component::Normal(_)
        )
    });
    if !plain || parent.contains('\0') {
        return Err(invalid(format!(
            "invalid cgroup parent {parent:?}: a path below the cgroup root, without . or .."
        )));
    }
    Ok(path)
}

/// Where a shareable container's /dev/shm is made on the host.
pub fn shm_dir(container_dir: &Path) -> PathBuf {
    container_dir.join("mounts").join("shm")
}

/// json-file's `max-size` and `max-file`, as the spec annotations the shim rotates
/// its log by (the shim reads the bundle's config.json; the manager passes the
/// annotations through). Sizes as dockerd reads them (`10m` is 10 000 000 bytes).
fn log_rotation(hc: &HostConfig) -> Result<Option<HashMap<String, String>>, SpecError> {
    let Some(opts) = hc.log_config.as_ref().and_then(|l| l.config.as_ref()) else {
        return Ok(None);
    };
    let mut out = HashMap::new();
    if let Some(size) = opts.get("max-size") {
        let bytes = human_size(size).filter(|b| *b > 0).ok_or_else(|| {
            invalid(format!(
                "invalid max-size {size:?}: a positive size like 10m"
            ))
        })?;
        out.insert(LOG_MAX_SIZE.to_string(), bytes.to_string());
    }
    if let Some(files) = opts.get("max-file") {
        match files.parse::<u32>() {
            Ok(n) if n >= 1 => {
                out.insert(LOG_MAX_FILE.to_string(), n.to_string());
            }
            _ => return Err(invalid("max-file cannot be less than 1")),
        }
    }
    Ok((!out.is_empty()).then_some(out))
}

/// The annotations of json-file's rotation (berth-shim's `Rotation` reads them).
pub const LOG_MAX_SIZE: &str = "berth.log.max-size";
pub const LOG_MAX_FILE: &str = "berth.log.max-file";

/// A size as docker's `FromHumanSize` reads it: decimal units (`1k` = 1000, `10MB`).
fn human_size(s: &str) -> Option<u64> {
    let t = s.trim();
    let digits = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let value: f64 = num.parse().ok()?;
    let unit = unit.trim_start().to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1e3,
        "m" => 1e6,
        "g" => 1e9,
        "t" => 1e12,
        "p" => 1e15,
        _ => return None,
    };
    let bytes = value * mult;
    (bytes.is_finite() && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// What `--security-opt seccomp=` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeccompChoice {
    /// Docker's default profile (nothing said, or `builtin`).
    Default,
    Unconfined,
    /// A profile in Docker's JSON format (the docker CLI sends the file's text).
    Custom(String),
}

/// The security options berth honours: no-new-privileges and seccomp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityOpts {
    pub no_new_privs: bool,
    pub seccomp: SeccompChoice,
}

pub fn parse_security_opts(opts: &[String]) -> Result<SecurityOpts, SpecError> {
    let mut out = SecurityOpts {
        no_new_privs: false,
        seccomp: SeccompChoice::Default,
    };
    for o in opts {
        // `seccomp=` takes a whole JSON document: split at the first '=' only,
        // before any ':' inside it.
        let (k, v) = match (o.find('='), o.find(':')) {
            (Some(e), Some(c)) if c < e => o.split_at(c),
            (Some(e), _) => o.split_at(e),
            (None, Some(c)) => o.split_at(c),
            (None, None) => (o.as_str(), ""),
        };
        let v = v.get(1..).unwrap_or("");
        match k {
            "no-new-privileges" => {
                out.no_new_privs = match v {
                    "" | "true" => true,
                    "false" => false,
                    _ => return Err(invalid(format!("invalid --security-opt 2: {o:?}"))),
                }
            }
            "seccomp" => {
                out.seccomp = match v {
                    "unconfined" => SeccompChoice::Unconfined,
                    "" | "builtin" => SeccompChoice::Default,
                    json => {
                        seccomp::parse(json)?;
                        SeccompChoice::Custom(json.to_string())
                    }
                }
            }
            // No AppArmor or SELinux here: accepted and without effect, as on a host
            // where neither is enabled.
            "apparmor" | "label" => {}
            _ => return Err(invalid(format!("invalid --security-opt 1: {o:?}"))),
        }
    }
    Ok(out)
}

/// Builds the OCI runtime spec.
pub fn build_spec(input: &SpecInput<'_>) -> Result<Spec, SpecError> {
    let mut config = input.config.clone();
    merge_image_config(&mut config, input.image);
    let hc = input.host_config;
    refuse_unsupported(hc)?;
    let privileged = hc.privileged.unwrap_or(false);
    let net = parse_network_mode(hc.network_mode.as_deref().unwrap_or(""))?;
    let modes = namespaces::modes(hc)?;
    let tty = config.tty.unwrap_or(false);
    let hostname = hostname(input.id, &config, hc, input.host);

    // process
    let mut args = command(&config)?;
    let mut mounts = mounts::default_mounts(
        hc.shm_size
            .filter(|s| *s > 0)
            .unwrap_or(defaults::DEFAULT_SHM_SIZE),
        privileged,
    );
    // The host's IPC namespace comes with the host's /dev/shm (as with dockerd);
    // `none` has no /dev/shm; a shareable one is made on the host (the start
    // mounts it); another container's is bound by the start.
    match &modes.ipc {
        namespaces::Share::Host => mounts::set_shm(&mut mounts, Some(Path::new("/dev/shm"))),
        _ if modes.ipc_shareable => {
            mounts::set_shm(&mut mounts, Some(&shm_dir(input.container_dir)))
        }
        _ if modes.ipc_none => mounts::set_shm(&mut mounts, None),
        _ => {}
    }
    if hc.init == Some(true) {
        let mut init_args = vec![INIT_PATH_IN_CONTAINER.to_string(), "--".to_string()];
        init_args.append(&mut args);
        args = init_args;
        mounts.push(mounts::mount(
            INIT_PATH_IN_CONTAINER,
            "bind",
            &input.init_path.to_string_lossy(),
            &["bind", "ro"],
        ));
    }
    let user = user::resolve(
        input.rootfs,
        config.user.as_deref().unwrap_or(""),
        hc.group_add.as_deref().unwrap_or(&[]),
    )?;
    let mut env = vec![
        defaults::DEFAULT_PATH.to_string(),
        format!("HOSTNAME={hostname}"),
    ];
    if tty {
        env.push("TERM=xterm".to_string());
    }
    let mut env = merge_env(&env, config.env.as_deref().unwrap_or(&[]));
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!(
            "HOME={}",
            user.home.clone().unwrap_or_else(|| "/".to_string())
        ));
    }

    let caps: Vec<String> = if privileged {
        defaults::all_caps()
    } else {
        defaults::effective_caps(
            hc.cap_add.as_deref().unwrap_or(&[]),
            hc.cap_drop.as_deref().unwrap_or(&[]),
        )
        .map_err(|c| invalid(format!("unknown capability: {c:?}")))?
    };
    let cap_set: oci_spec::runtime::Capabilities =
        caps.iter().filter_map(|c| defaults::parse_cap(c)).collect();
    let mut capabilities = LinuxCapabilities::default();
    capabilities.set_bounding(Some(cap_set.clone()));
    // A non-root user starts without effective or permitted capabilities, so it
    // cannot use them unless it execs a file that grants them (Docker 23+).
    let user_caps = if user.uid == 0 {
        cap_set.clone()
    } else {
        Default::default()
    };
    capabilities.set_effective(Some(user_caps.clone()));
    capabilities.set_permitted(Some(user_caps));
    capabilities.set_inheritable(Some(Default::default()));
    capabilities.set_ambient(Some(Default::default()));

    let security = parse_security_opts(hc.security_opt.as_deref().unwrap_or(&[]))?;
    let no_new_privs = security.no_new_privs;
    // As dockerd: privileged containers run without a filter, whatever was asked.
    let seccomp_filter = match (&security.seccomp, privileged) {
        (_, true) | (SeccompChoice::Unconfined, _) => None,
        (SeccompChoice::Default, _) => {
            Some(seccomp::cache().default_for(&seccomp::Target::host(&caps))?)
        }
        (SeccompChoice::Custom(json), _) => {
            Some(seccomp::cache().custom_for(json, &seccomp::Target::host(&caps))?)
        }
    };

    let mut rlimits = vec![];
    let mut have_nofile = false;
    for u in hc.ulimits.as_deref().unwrap_or(&[]) {
        let name = u.name.clone().unwrap_or_default();
        let typ =
            rlimit_type(&name).ok_or_else(|| invalid(format!("invalid ulimit type: {name}")))?;
        let soft = u.soft.unwrap_or(0);
        let hard = u.hard.unwrap_or(0);
        if soft > hard {
            return Err(invalid(format!(
                "invalid ulimit argument: {name}={soft}:{hard}: soft limit must be less than or equal to hard limit"
            )));
        }
        have_nofile |= name == "nofile";
        rlimits.push(
            PosixRlimitBuilder::default()
                .typ(typ)
                .soft(soft.max(0) as u64)
                .hard(hard.max(0) as u64)
                .build()?,
        );
    }
    if !have_nofile {
        // Without a daemon-wide default, the limit containerd's and Docker's
        // packaged units give containers.
        let nofile = default_nofile();
        rlimits.push(
            PosixRlimitBuilder::default()
                .typ(PosixRlimitType::RlimitNofile)
                .soft(nofile)
                .hard(nofile)
                .build()?,
        );
    }

    let mut spec_user = User::default();
    spec_user.set_uid(user.uid);
    spec_user.set_gid(user.gid);
    if !user.additional_gids.is_empty() {
        spec_user.set_additional_gids(Some(user.additional_gids.clone()));
    }

    let cwd = config
        .working_dir
        .as_deref()
        .filter(|w| !w.is_empty())
        .unwrap_or("/");
    if !cwd.starts_with('/') {
        return Err(invalid(format!(
            "the working directory '{cwd}' is invalid, it needs to be an absolute path"
        )));
    }

    let mut process = Process::default();
    process.set_terminal(Some(tty));
    process.set_user(spec_user);
    process.set_args(Some(args));
    process.set_env(Some(env));
    process.set_cwd(PathBuf::from(cwd));
    process.set_capabilities(Some(capabilities));
    process.set_rlimits(Some(rlimits));
    process.set_no_new_privileges(Some(no_new_privs));
    process.set_apparmor_profile(None);
    if let Some(adj) = hc.oom_score_adj.filter(|a| *a != 0) {
        if !(-1000..=1000).contains(&adj) {
            return Err(invalid(format!(
                "Invalid value {adj}, range for oom score adj is [-1000, 1000]"
            )));
        }
        process.set_oom_score_adj(Some(adj as i32));
    }
    if tty {
        if let Some(size) = hc
            .console_size
            .as_ref()
            .filter(|s| s.len() == 2 && s[0] > 0 && s[1] > 0)
        {
            let b = oci_spec::runtime::BoxBuilder::default()
                .height(size[0] as u64)
                .width(size[1] as u64)
                .build()?;
            process.set_console_size(Some(b));
        }
    }

    // mounts: defaults, etc files, user mounts (later ones win on the same destination)
    let etc = etc::EtcFiles::in_dir(input.container_dir);
    for (dest, src) in [
        ("/etc/resolv.conf", &etc.resolv_conf),
        ("/etc/hostname", &etc.hostname),
        ("/etc/hosts", &etc.hosts),
    ] {
        mounts.push(mounts::mount(
            dest,
            "bind",
            &src.to_string_lossy(),
            &["rbind", "rprivate"],
        ));
    }
    let mut user_mounts = vec![];
    for b in hc.binds.as_deref().unwrap_or(&[]) {
        user_mounts.push(mounts::parse_bind(b, input.volumes)?);
    }
    for m in hc.mounts.as_deref().unwrap_or(&[]) {
        user_mounts.push(mounts::parse_mount(m, input.volumes)?);
    }
    user_mounts.extend(mounts::tmpfs_mounts(&hc.tmpfs.clone().unwrap_or_default())?);
    let mut seen = std::collections::HashSet::new();
    for m in &user_mounts {
        if !seen.insert(m.destination.clone()) {
            return Err(invalid(format!("Duplicate mount point: {}", m.destination)));
        }
    }
    for m in &user_mounts {
        mounts.retain(|d| d.destination() != Path::new(&m.destination));
        mounts.push(m.to_oci());
    }

    // namespaces
    let mut namespaces = vec![];
    // A namespace joined from another container is in the list without a path
    // here: the start gives it one (`lifecycle::hooks`).
    let mut types = vec![];
    if modes.pid != namespaces::Share::Host {
        types.push(LinuxNamespaceType::Pid);
    }
    if modes.ipc != namespaces::Share::Host {
        types.push(LinuxNamespaceType::Ipc);
    }
    if !modes.uts_host {
        types.push(LinuxNamespaceType::Uts);
    }
    types.push(LinuxNamespaceType::Mount);
    if net == NetworkMode::None {
        types.push(LinuxNamespaceType::Network);
    }
    let cgroupns = match hc.cgroupns_mode.map(|m| m.to_string()).as_deref() {
        Some("private") => true,
        Some("host") => false,
        _ => input.host.cgroup_v2,
    };
    if cgroupns {
        types.push(LinuxNamespaceType::Cgroup);
    }
    for t in types {
        let mut ns = LinuxNamespace::default();
        ns.set_typ(t);
        namespaces.push(ns);
    }

    let mut sysctl = HashMap::new();
    for (k, v) in hc.sysctls.clone().unwrap_or_default() {
        check_sysctl(&k, net)?;
        sysctl.insert(k, v);
    }

    let (device_nodes, device_rules) = devices::mapped(hc, privileged)?;
    let mut res = resources(hc, privileged)?;
    res.set_block_io(devices::block_io(hc, input.host.blkio_weight)?);
    // After Docker's defaults; both are checked either way, and a privileged
    // container is allowed everything already.
    let cgroup_rules = devices::cgroup_rules(hc)?;
    if !privileged {
        let mut rules = res.devices().clone().unwrap_or_default();
        rules.extend(device_rules);
        rules.extend(cgroup_rules);
        res.set_devices(Some(rules));
    }
    let mut linux = LinuxBuilder::default()
        .cgroups_path(cgroup_parent(hc)?.join(input.id))
        .resources(res)
        .namespaces(namespaces)
        .build()?;
    if !sysctl.is_empty() {
        linux.set_sysctl(Some(sysctl));
    }
    if let Some(filter) = seccomp_filter {
        linux.set_seccomp(Some((*filter).clone()));
    }
    if privileged {
        linux.set_masked_paths(Some(vec![]));
        linux.set_readonly_paths(Some(vec![]));
        let mut all = input.host.devices.clone();
        all.extend(device_nodes);
        linux.set_devices(Some(all));
    } else {
        if !device_nodes.is_empty() {
            linux.set_devices(Some(device_nodes));
        }
        let masked = hc.masked_paths.clone().unwrap_or_else(|| {
            defaults::MASKED_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect()
        });
        let ro = hc.readonly_paths.clone().unwrap_or_else(|| {
            defaults::READONLY_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect()
        });
        linux.set_masked_paths(Some(masked));
        linux.set_readonly_paths(Some(ro));
    }

    let mut root = Root::default();
    root.set_path(PathBuf::from("rootfs"));
    root.set_readonly(Some(hc.readonly_rootfs.unwrap_or(false)));

    let mut spec = Spec::default();
    spec.set_version("1.0.2".to_string());
    // Without a UTS namespace of its own the container has the host's name (and
    // the default spec's placeholder must go).
    spec.set_hostname((!modes.uts_host).then_some(hostname));
    // `--domainname`: the UTS namespace's NIS domain name, as dockerd sets it.
    spec.set_domainname(
        config
            .domainname
            .clone()
            .filter(|d| !d.is_empty() && !modes.uts_host),
    );
    spec.set_process(Some(process));
    spec.set_root(Some(root));
    spec.set_mounts(Some(mounts));
    spec.set_linux(Some(linux));
    spec.set_annotations(log_rotation(hc)?);
    Ok(spec)
}

#[cfg(test)]
mod tests;
