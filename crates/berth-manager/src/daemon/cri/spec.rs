//! A CRI container's OCI runtime spec: its process from the image config and the
//! CRI `ContainerConfig` (command, env, user, capabilities, seccomp), the pod's
//! pinned namespaces, its mounts (the defaults, the pod's /etc files, the CRI
//! mounts with their propagation), cgroup and resources. Docker's defaults
//! (capabilities, masked paths, device rules, the default seccomp profile) are the
//! same as berthd's ([`crate::daemon::ocispec`]), as containerd's CRI plugin
//! shares its defaults with `ctr`.

use std::path::{Path, PathBuf};

use berth_cri_api::runtime::v1 as cri;
use serde_json::{json, Value};
use tonic::Status;

use super::sandbox::SandboxRecord;
use crate::daemon::ocispec::{defaults, seccomp, user};

const NODE: i32 = cri::NamespaceMode::Node as i32;
const POD: i32 = cri::NamespaceMode::Pod as i32;
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What a container's spec is made from.
#[derive(Debug)]
pub struct SpecInput<'a> {
    pub id: &'a str,
    pub config: &'a cri::ContainerConfig,
    pub sandbox: &'a SandboxRecord,
    pub pod: &'a cri::PodSandboxConfig,
    /// The image config's `config` object (Env, Entrypoint, Cmd, WorkingDir, User).
    pub image: &'a Value,
    /// Where the image's /etc/passwd and /etc/group are read from.
    pub passwd_root: &'a Path,
    /// The pod's PID namespace holder, when the pod shares one.
    pub pod_pid_ns: Option<PathBuf>,
}

fn invalid(msg: impl Into<String>) -> Status {
    Status::invalid_argument(msg.into())
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The process's argv, as containerd makes it: the CRI command replaces the
/// image's entrypoint, the CRI args its cmd (the image cmd only when neither is
/// given).
fn argv(config: &cri::ContainerConfig, image: &Value) -> Result<Vec<String>, Status> {
    let mut command = config.command.clone();
    let mut args = config.args.clone();
    if command.is_empty() {
        if args.is_empty() {
            args = strings(image.get("Cmd"));
        }
        let entrypoint = strings(image.get("Entrypoint"));
        if !(entrypoint.len() == 1 && entrypoint[0].is_empty()) {
            command = entrypoint;
        }
    }
    command.extend(args);
    if command.is_empty() {
        return Err(invalid("no command specified"));
    }
    Ok(command)
}

/// Image env, then the CRI envs (a key given again replaces the earlier value).
fn env(config: &cri::ContainerConfig, image: &Value, hostname: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut set = |kv: String| {
        let key = kv.split('=').next().unwrap_or_default().to_string();
        if let Some(slot) = out
            .iter_mut()
            .find(|e| e.split('=').next() == Some(key.as_str()))
        {
            *slot = kv;
        } else {
            out.push(kv);
        }
    };
    let image_env = strings(image.get("Env"));
    if !image_env.iter().any(|e| e.starts_with("PATH=")) {
        set(format!("PATH={DEFAULT_PATH}"));
    }
    for e in image_env {
        set(e);
    }
    if !hostname.is_empty() {
        set(format!("HOSTNAME={hostname}"));
    }
    for kv in &config.envs {
        set(format!("{}={}", kv.key, kv.value));
    }
    out
}

/// The user to run as, as Docker's `User` string: the CRI uid or username, else
/// the image's; the CRI group when given.
fn user_string(sc: &cri::LinuxContainerSecurityContext, image: &Value) -> Result<String, Status> {
    let user = if let Some(u) = &sc.run_as_user {
        if u.value < 0 {
            return Err(invalid(format!("run_as_user {} is negative", u.value)));
        }
        u.value.to_string()
    } else if !sc.run_as_username.is_empty() {
        sc.run_as_username.clone()
    } else {
        image
            .get("User")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    match &sc.run_as_group {
        Some(g) if sc.run_as_user.is_none() && sc.run_as_username.is_empty() => {
            Err(invalid(format!(
                "run_as_group {} is set without run_as_user or run_as_username",
                g.value
            )))
        }
        Some(g) if g.value < 0 => Err(invalid(format!("run_as_group {} is negative", g.value))),
        Some(g) => {
            let name = user.split(':').next().unwrap_or_default();
            Ok(format!("{name}:{}", g.value))
        }
        None => Ok(user),
    }
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Value {
    json!({"destination": dest, "type": typ, "source": source, "options": options})
}

fn default_mounts(privileged: bool, host_ipc: bool) -> Vec<Value> {
    let ro_or_rw = if privileged { "rw" } else { "ro" };
    let mut m = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", ro_or_rw],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", ro_or_rw],
        ),
    ];
    if host_ipc {
        m.push(mount(
            "/dev/shm",
            "bind",
            "/dev/shm",
            &["rbind", "rprivate", "rw"],
        ));
    } else {
        m.push(mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ));
    }
    m
}

/// The propagation of the mount `path` is on, from /proc/self/mountinfo: the
/// optional fields say `shared:N` and/or `master:N`.
fn propagation_of(path: &Path) -> (bool, bool) {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut best: Option<(usize, bool, bool)> = None;
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(point) = fields.get(4) else { continue };
        let p = Path::new(point);
        if !path.starts_with(p) {
            continue;
        }
        let len = point.len();
        let optional: Vec<&str> = fields
            .iter()
            .skip(6)
            .take_while(|f| **f != "-")
            .copied()
            .collect();
        let shared = optional.iter().any(|f| f.starts_with("shared:"));
        let slave = optional.iter().any(|f| f.starts_with("master:"));
        if best.is_none_or(|(l, _, _)| len >= l) {
            best = Some((len, shared, slave));
        }
    }
    best.map(|(_, s, m)| (s, m)).unwrap_or((false, false))
}

/// A CRI mount as an OCI bind mount: the host path made if missing (as containerd
/// does) and its symlinks resolved; relabelling ignored (no SELinux). Returns the
/// mount and the rootfs propagation it needs.
fn cri_mount(m: &cri::Mount) -> Result<(Value, Option<&'static str>), Status> {
    if m.container_path.is_empty() || !m.container_path.starts_with('/') {
        return Err(invalid(format!(
            "mount container path {:?} is not absolute",
            m.container_path
        )));
    }
    if m.host_path.is_empty() || !m.host_path.starts_with('/') {
        return Err(invalid(format!(
            "mount host path {:?} is not absolute",
            m.host_path
        )));
    }
    let host = Path::new(&m.host_path);
    if std::fs::symlink_metadata(host).is_err() {
        std::fs::create_dir_all(host).map_err(|e| {
            Status::internal(format!("creating the mount source {}: {e}", host.display()))
        })?;
    }
    let src = std::fs::canonicalize(host).map_err(|e| {
        Status::internal(format!(
            "resolving the mount source {}: {e}",
            host.display()
        ))
    })?;
    let (shared, slave) = propagation_of(&src);
    let (prop, rootfs) = match cri::MountPropagation::try_from(m.propagation) {
        Ok(cri::MountPropagation::PropagationBidirectional) => {
            if !shared {
                return Err(invalid(format!(
                    "path {:?} is mounted on a mount that is not shared (bidirectional propagation needs it)",
                    m.host_path
                )));
            }
            ("rshared", Some("rshared"))
        }
        Ok(cri::MountPropagation::PropagationHostToContainer) => {
            if !shared && !slave {
                return Err(invalid(format!(
                    "path {:?} is mounted on a mount that is neither shared nor slave (host-to-container propagation needs one)",
                    m.host_path
                )));
            }
            ("rslave", Some("rslave"))
        }
        _ => ("rprivate", None),
    };
    let rw = if m.readonly { "ro" } else { "rw" };
    Ok((
        mount(
            &m.container_path,
            "bind",
            &src.to_string_lossy(),
            &["rbind", prop, rw],
        ),
        rootfs,
    ))
}

/// The seccomp filter for the container (None: unconfined).
// kubelet 1.26 and critest still send the deprecated path string.
#[allow(deprecated)]
fn seccomp_filter(
    sc: &cri::LinuxContainerSecurityContext,
    caps: &[String],
) -> Result<Option<Value>, Status> {
    if sc.privileged {
        return Ok(None);
    }
    // The structured field wins over the deprecated path string.
    let profile: String = match &sc.seccomp {
        Some(p) => match cri::security_profile::ProfileType::try_from(p.profile_type) {
            Ok(cri::security_profile::ProfileType::RuntimeDefault) => "runtime/default".into(),
            Ok(cri::security_profile::ProfileType::Unconfined) => "unconfined".into(),
            Ok(cri::security_profile::ProfileType::Localhost) => {
                format!(
                    "localhost/{}",
                    p.localhost_ref.trim_start_matches("localhost/")
                )
            }
            Err(_) => {
                return Err(invalid(format!(
                    "unknown seccomp profile type {}",
                    p.profile_type
                )))
            }
        },
        None => sc.seccomp_profile_path.clone(),
    };
    let target = seccomp::Target::host(caps);
    let bad = |e: crate::daemon::ocispec::SpecError| invalid(format!("seccomp profile: {e}"));
    match profile.as_str() {
        "" | "unconfined" => Ok(None),
        "runtime/default" | "docker/default" => {
            let f = seccomp::cache().default_for(&target).map_err(bad)?;
            Ok(Some(serde_json::to_value(&*f).map_err(|e| Status::internal(e.to_string()))?))
        }
        p => match p.strip_prefix("localhost/") {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    invalid(format!("reading the seccomp profile {path:?}: {e}"))
                })?;
                let f = seccomp::cache().custom_for(&text, &target).map_err(bad)?;
                Ok(Some(serde_json::to_value(&*f).map_err(|e| Status::internal(e.to_string()))?))
            }
            None => Err(invalid(format!(
                "seccomp profile {p:?} is not one of runtime/default, docker/default, unconfined or localhost/<path>"
            ))),
        },
    }
}

/// The CRI devices as OCI `linux.devices` and the cgroup rules that allow them.
fn devices(config: &cri::ContainerConfig) -> Result<(Vec<Value>, Vec<Value>), Status> {
    let (mut nodes, mut rules) = (Vec::new(), Vec::new());
    for d in &config.devices {
        if !d.container_path.starts_with('/') {
            return Err(invalid(format!(
                "device path {:?} in the container is not absolute",
                d.container_path
            )));
        }
        let meta = std::fs::metadata(&d.host_path)
            .map_err(|e| invalid(format!("device {:?}: {e}", d.host_path)))?;
        let node = defaults::device_node(PathBuf::from(&d.container_path), &meta)
            .ok_or_else(|| invalid(format!("{:?} is not a device", d.host_path)))?;
        let access = if d.permissions.is_empty() {
            "rwm"
        } else {
            d.permissions.as_str()
        };
        if !access.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
            return Err(invalid(format!(
                "device permissions {access:?} are not made of r, w and m"
            )));
        }
        let rule = defaults::dev_rule(
            true,
            node.typ(),
            Some(node.major()),
            Some(node.minor()),
            access,
        );
        let json = |v: Result<Value, serde_json::Error>| {
            v.map_err(|e| Status::internal(format!("encoding a device: {e}")))
        };
        nodes.push(json(serde_json::to_value(&node))?);
        rules.push(json(serde_json::to_value(&rule))?);
    }
    Ok((nodes, rules))
}

/// The container's own oom_score_adj may not go below the manager's (a process
/// without CAP_SYS_RESOURCE cannot lower it), as containerd's
/// `restrict_oom_score_adj` keeps it.
fn oom_score_adj(wanted: i64) -> i64 {
    let ours = std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or(0);
    wanted.max(ours).min(1000)
}

/// `linux.resources` from the CRI's (only what is set).
pub fn resources(r: &cri::LinuxContainerResources) -> Value {
    let mut cpu = serde_json::Map::new();
    if r.cpu_shares > 0 {
        cpu.insert("shares".into(), json!(r.cpu_shares));
    }
    if r.cpu_quota != 0 {
        cpu.insert("quota".into(), json!(r.cpu_quota));
    }
    if r.cpu_period > 0 {
        cpu.insert("period".into(), json!(r.cpu_period));
    }
    if !r.cpuset_cpus.is_empty() {
        cpu.insert("cpus".into(), json!(r.cpuset_cpus));
    }
    if !r.cpuset_mems.is_empty() {
        cpu.insert("mems".into(), json!(r.cpuset_mems));
    }
    let mut out = serde_json::Map::new();
    if !cpu.is_empty() {
        out.insert("cpu".into(), Value::Object(cpu));
    }
    let mut memory = serde_json::Map::new();
    if r.memory_limit_in_bytes > 0 {
        memory.insert("limit".into(), json!(r.memory_limit_in_bytes));
    }
    if r.memory_swap_limit_in_bytes > 0 {
        memory.insert("swap".into(), json!(r.memory_swap_limit_in_bytes));
    }
    if !memory.is_empty() {
        out.insert("memory".into(), Value::Object(memory));
    }
    if !r.hugepage_limits.is_empty() {
        let h: Vec<Value> = r
            .hugepage_limits
            .iter()
            .map(|h| json!({"pageSize": h.page_size, "limit": h.limit}))
            .collect();
        out.insert("hugepageLimits".into(), Value::Array(h));
    }
    if !r.unified.is_empty() {
        out.insert("unified".into(), json!(r.unified));
    }
    Value::Object(out)
}

/// The spec, as JSON, and the rootfs propagation its mounts need.
pub fn build(input: &SpecInput<'_>) -> Result<Value, Status> {
    let config = input.config;
    let sc = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.clone())
        .unwrap_or_default();
    let pod_sc = input
        .pod
        .linux
        .as_ref()
        .and_then(|l| l.security_context.clone())
        .unwrap_or_default();
    let privileged = sc.privileged;
    if privileged && !pod_sc.privileged {
        return Err(invalid(
            "a privileged container needs a privileged pod sandbox",
        ));
    }
    let pod_ns = pod_sc.namespace_options.clone().unwrap_or_default();
    let ns = sc.namespace_options.clone().unwrap_or(pod_ns.clone());

    // process
    let args = argv(config, input.image)?;
    let own_uts = input.sandbox.own_net;
    let hostname = if own_uts {
        input.pod.hostname.clone()
    } else {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default()
    };
    let mut env = env(config, input.image, &hostname);
    let user_str = user_string(&sc, input.image)?;
    let groups: Vec<String> = sc
        .supplemental_groups
        .iter()
        .map(|g| g.to_string())
        .collect();
    let resolved =
        user::resolve(input.passwd_root, &user_str, &groups).map_err(|e| invalid(e.to_string()))?;
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!(
            "HOME={}",
            resolved
                .home
                .clone()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "/".into())
        ));
    }
    let cwd = if !config.working_dir.is_empty() {
        config.working_dir.clone()
    } else {
        input
            .image
            .get("WorkingDir")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("/")
            .to_string()
    };
    if !cwd.starts_with('/') {
        return Err(invalid(format!(
            "working directory {cwd:?} is not absolute"
        )));
    }
    let caps: Vec<String> = defaults::held_caps(if privileged {
        defaults::all_caps()
    } else {
        let c = sc.capabilities.clone().unwrap_or_default();
        defaults::effective_caps(&c.add_capabilities, &c.drop_capabilities)
            .map_err(|bad| invalid(format!("unknown capability {bad:?}")))?
    });
    let resources_in = config
        .linux
        .as_ref()
        .and_then(|l| l.resources.clone())
        .unwrap_or_default();
    let mut process = json!({
        "terminal": config.tty,
        "user": {
            "uid": resolved.uid,
            "gid": resolved.gid,
            "additionalGids": resolved.additional_gids,
        },
        "args": args,
        "env": env,
        "cwd": cwd,
        "capabilities": {
            "bounding": caps,
            "effective": caps,
            "permitted": caps,
        },
        "noNewPrivileges": sc.no_new_privs,
    });
    if resources_in.oom_score_adj != 0 {
        process["oomScoreAdj"] = json!(oom_score_adj(resources_in.oom_score_adj));
    }

    // mounts: defaults, the pod's /etc files, then the CRI mounts (a CRI mount on
    // the same destination replaces the earlier one).
    let host_ipc = !input.sandbox.own_ipc;
    let mut mounts = default_mounts(privileged, host_ipc);
    let dir = &input.sandbox.dir;
    let hosts = if input.sandbox.own_net {
        dir.join("hosts")
    } else {
        PathBuf::from("/etc/hosts")
    };
    let etc_rw = if sc.readonly_rootfs { "ro" } else { "rw" };
    for (dest, src) in [
        ("/etc/hosts", hosts),
        ("/etc/resolv.conf", dir.join("resolv.conf")),
        ("/etc/hostname", dir.join("hostname")),
    ] {
        if src.exists() {
            mounts.push(mount(
                dest,
                "bind",
                &src.to_string_lossy(),
                &["rbind", "rprivate", etc_rw],
            ));
        }
    }
    let mut rootfs_propagation: Option<&str> = None;
    let mut cri_mounts = Vec::new();
    for m in &config.mounts {
        let (om, prop) = cri_mount(m)?;
        match (rootfs_propagation, prop) {
            (_, Some("rshared")) => rootfs_propagation = Some("rshared"),
            (None, Some(p)) => rootfs_propagation = Some(p),
            _ => {}
        }
        cri_mounts.push(om);
    }
    // Shorter destinations first, so a mount inside another lands on top of it.
    cri_mounts.sort_by_key(|m| {
        m["destination"]
            .as_str()
            .map(|d| d.split('/').filter(|s| !s.is_empty()).count())
            .unwrap_or(0)
    });
    for m in cri_mounts {
        mounts.retain(|d| d["destination"] != m["destination"]);
        mounts.push(m);
    }

    // namespaces: the pod's pinned ones, a new mount namespace, the pid one as asked.
    let mut namespaces = vec![json!({"type": "mount"})];
    if let Some(p) = input.sandbox.netns() {
        namespaces.push(json!({"type": "network", "path": p}));
    }
    if input.sandbox.own_ipc {
        namespaces.push(json!({"type": "ipc", "path": dir.join("ipc")}));
    }
    if own_uts {
        namespaces.push(json!({"type": "uts", "path": dir.join("uts")}));
    }
    match ns.pid {
        NODE => {}
        POD => match &input.pod_pid_ns {
            Some(p) => namespaces.push(json!({"type": "pid", "path": p})),
            None => namespaces.push(json!({"type": "pid"})),
        },
        _ => namespaces.push(json!({"type": "pid"})),
    }

    let parent = input
        .pod
        .linux
        .as_ref()
        .map(|l| l.cgroup_parent.trim_end_matches('/').to_string())
        .unwrap_or_default();
    let cgroups_path = if parent.is_empty() {
        format!("/berth/{}", input.id)
    } else if parent.starts_with('/') {
        format!("{parent}/{}", input.id)
    } else {
        format!("/{parent}/{}", input.id)
    };
    let mut resources = resources(&resources_in);
    let (device_nodes, device_rules) = devices(config)?;
    let mut rules: Vec<Value> = defaults::device_rules(privileged)
        .iter()
        .filter_map(|d| serde_json::to_value(d).ok())
        .collect();
    rules.extend(device_rules);
    resources["devices"] = Value::Array(rules);

    let mut linux = json!({
        "cgroupsPath": cgroups_path,
        "resources": resources,
        "namespaces": namespaces,
    });
    if let Some(p) = rootfs_propagation {
        linux["rootfsPropagation"] = json!(p);
    }
    if !device_nodes.is_empty() {
        linux["devices"] = Value::Array(device_nodes);
    }
    if privileged {
        linux["maskedPaths"] = json!([]);
        linux["readonlyPaths"] = json!([]);
    } else {
        let masked: Vec<String> = if sc.masked_paths.is_empty() {
            defaults::MASKED_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect()
        } else {
            sc.masked_paths.clone()
        };
        let ro: Vec<String> = if sc.readonly_paths.is_empty() {
            defaults::READONLY_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect()
        } else {
            sc.readonly_paths.clone()
        };
        linux["maskedPaths"] = json!(masked);
        linux["readonlyPaths"] = json!(ro);
    }
    if let Some(filter) = seccomp_filter(&sc, &caps)? {
        linux["seccomp"] = filter;
    }

    let mut spec = json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": "rootfs", "readonly": sc.readonly_rootfs},
        "mounts": mounts,
        "linux": linux,
        "annotations": {
            "io.kubernetes.cri.container-type": "container",
            "io.kubernetes.cri.sandbox-id": input.sandbox.id,
        },
    });
    if own_uts && !input.pod.hostname.is_empty() {
        spec["hostname"] = json!(input.pod.hostname);
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_command_and_args_replace_the_images() {
        let image = json!({"Entrypoint": ["/ep"], "Cmd": ["a", "b"]});
        let mut c = cri::ContainerConfig::default();
        assert_eq!(argv(&c, &image).unwrap(), ["/ep", "a", "b"]);
        c.args = vec!["x".into()];
        assert_eq!(argv(&c, &image).unwrap(), ["/ep", "x"]);
        c.command = vec!["sh".into()];
        c.args = vec![];
        assert_eq!(argv(&c, &image).unwrap(), ["sh"]);
        assert!(argv(&cri::ContainerConfig::default(), &json!({})).is_err());
    }

    #[test]
    fn cri_envs_override_the_images() {
        let image = json!({"Env": ["PATH=/bin", "A=1"]});
        let c = cri::ContainerConfig {
            envs: vec![cri::KeyValue {
                key: "A".into(),
                value: "2".into(),
            }],
            ..Default::default()
        };
        assert_eq!(env(&c, &image, "h"), ["PATH=/bin", "A=2", "HOSTNAME=h"]);
    }

    #[test]
    fn a_group_needs_a_user() {
        let sc = cri::LinuxContainerSecurityContext {
            run_as_group: Some(cri::Int64Value { value: 5 }),
            ..Default::default()
        };
        assert!(user_string(&sc, &json!({})).is_err());
        let sc = cri::LinuxContainerSecurityContext {
            run_as_user: Some(cri::Int64Value { value: 7 }),
            run_as_group: Some(cri::Int64Value { value: 5 }),
            ..Default::default()
        };
        assert_eq!(user_string(&sc, &json!({"User": "x"})).unwrap(), "7:5");
        let sc = cri::LinuxContainerSecurityContext::default();
        assert_eq!(user_string(&sc, &json!({"User": "www"})).unwrap(), "www");
    }

    #[test]
    #[allow(deprecated)]
    fn seccomp_names() {
        let caps: Vec<String> = vec![];
        let sc = |p: &str| cri::LinuxContainerSecurityContext {
            seccomp_profile_path: p.to_string(),
            ..Default::default()
        };
        assert!(seccomp_filter(&sc(""), &caps).unwrap().is_none());
        assert!(seccomp_filter(&sc("unconfined"), &caps).unwrap().is_none());
        assert!(seccomp_filter(&sc("runtime/default"), &caps)
            .unwrap()
            .is_some());
        assert!(seccomp_filter(&sc("/some/profile.json"), &caps).is_err());
    }

    #[test]
    fn devices_are_nodes_and_cgroup_rules() {
        let c = cri::ContainerConfig {
            devices: vec![cri::Device {
                container_path: "/dev/mynull".into(),
                host_path: "/dev/null".into(),
                permissions: "rw".into(),
            }],
            ..Default::default()
        };
        let (nodes, rules) = devices(&c).unwrap();
        assert_eq!(nodes[0]["type"], "c");
        assert_eq!(
            (nodes[0]["major"].as_u64(), nodes[0]["minor"].as_u64()),
            (Some(1), Some(3))
        );
        assert_eq!(rules[0]["access"], "rw");
        let bad = cri::ContainerConfig {
            devices: vec![cri::Device {
                container_path: "/dev/x".into(),
                host_path: "/etc/hostname".into(),
                permissions: String::new(),
            }],
            ..Default::default()
        };
        assert!(devices(&bad).is_err());
    }

    #[test]
    fn resources_carry_only_what_is_set() {
        let r = cri::LinuxContainerResources {
            cpu_shares: 512,
            memory_limit_in_bytes: 1 << 26,
            ..Default::default()
        };
        assert_eq!(
            resources(&r),
            json!({"cpu": {"shares": 512}, "memory": {"limit": 1 << 26}})
        );
    }
}
