//! Pod sandboxes: the pod's shared namespaces and its network.
//!
//! A sandbox's network, IPC and UTS namespaces are created by util-linux's
//! `unshare` (exec'd, never forked from the daemon) and pinned as nsfs bind mounts
//! under `<state>/cri/sandboxes/<id>/{net,ipc,uts}`, so they need no process to
//! stay alive and outlive a restart of the manager; `hostNetwork` and `hostIPC`
//! pods use the host's instead. The network namespace is set up by the CNI plugins
//! ([`super::cni`]). The record (the CRI config as sent, the state, the CNI
//! result) is kept in the manager's redb file, written before the call answers.
//!
//! StopPodSandbox runs CNI DEL and unpins the namespaces; RemovePodSandbox also
//! forgets the record and the directory. Both are idempotent, as kubelet expects.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use berth_cri_api::prost::Message as _;
use berth_cri_api::runtime::v1 as cri;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use tonic::Status;

use super::cni::{self, Attachment, PortMapping};
use super::Cri;
use crate::daemon::core::blocking;
use crate::daemon::error::DaemonError;

/// A pod sandbox as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub id: String,
    /// The `PodSandboxConfig` as sent (protobuf bytes).
    pub config: Vec<u8>,
    pub runtime_handler: String,
    pub ready: bool,
    /// Nanoseconds since the epoch.
    pub created_at: i64,
    /// Where its pinned namespaces are (`net`, `ipc`, `uts` that exist).
    pub dir: PathBuf,
    /// Whether it has its own network namespace (not `hostNetwork`).
    pub own_net: bool,
    pub own_ipc: bool,
    /// The CNI network it was attached to and the ADD result (for DEL).
    pub cni_network: String,
    pub cni_result: Option<serde_json::Value>,
    pub ips: Vec<String>,
    /// Its containers share a PID namespace, held by a pause process
    /// ([`super::pause`]).
    #[serde(default)]
    pub pause: bool,
}

impl SandboxRecord {
    pub fn config(&self) -> cri::PodSandboxConfig {
        cri::PodSandboxConfig::decode(self.config.as_slice()).unwrap_or_default()
    }

    pub fn netns(&self) -> Option<PathBuf> {
        self.own_net.then(|| self.dir.join("net"))
    }
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

/// The namespace modes a pod asks for (POD unless it says NODE).
fn namespace_options(c: &cri::PodSandboxConfig) -> cri::NamespaceOption {
    c.linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_default()
}

const NODE: i32 = cri::NamespaceMode::Node as i32;
const POD: i32 = cri::NamespaceMode::Pod as i32;

/// A new sandbox id: 64 hex digits, as kubelet's runtimes hand out.
fn new_id(meta: &cri::PodSandboxMetadata) -> String {
    let mut h = sha2::Sha256::new();
    h.update(meta.namespace.as_bytes());
    h.update([0]);
    h.update(meta.name.as_bytes());
    h.update([0]);
    h.update(meta.uid.as_bytes());
    h.update(meta.attempt.to_le_bytes());
    h.update(
        chrono::Utc::now()
            .timestamp_nanos_opt()
            .unwrap_or_default()
            .to_le_bytes(),
    );
    h.update(std::process::id().to_le_bytes());
    hex::encode(h.finalize())
}

/// Make `dir` a mount point of its own with private propagation (as `ip netns`
/// does for /run/netns), so that nsfs bind mounts under it are allowed and do not
/// propagate.
pub fn private_mount_point(dir: &Path) -> Result<(), DaemonError> {
    use nix::mount::{mount, MsFlags};
    std::fs::create_dir_all(dir).map_err(|e| DaemonError::Io {
        what: "creating the CRI sandbox directory",
        path: dir.to_path_buf(),
        source: e,
    })?;
    let mounted = is_mounted(dir);
    let io = |e: nix::Error| DaemonError::Io {
        what: "making the CRI sandbox directory a private mount",
        path: dir.to_path_buf(),
        source: e.into(),
    };
    if !mounted {
        mount(Some(dir), dir, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(io)?;
    }
    mount(
        None::<&str>,
        dir,
        None::<&str>,
        MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(io)
}

/// A mount point as /proc/self/mountinfo writes it: space, tab, newline and
/// backslash as `\ooo` octal escapes.
fn unescape_mountinfo(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .and_then(|d| {
                let v = u32::from(d[0] - b'0') * 64
                    + u32::from(d[1] - b'0') * 8
                    + u32::from(d[2] - b'0');
                u8::try_from(v).ok()
            });
        match (b[i], octal) {
            (b'\\', Some(v)) => {
                out.push(v);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// Whether `path` is a mount point (a pinned namespace).
fn is_mounted(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let want = path.as_os_str().as_bytes();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| unescape_mountinfo(m) == want)
}

/// At start: a sandbox whose pinned namespaces are gone (the host rebooted, or
/// someone unmounted them) is not ready any more, and says so.
pub fn reconcile(db: &crate::daemon::containers::ContainerDb) -> Result<(), DaemonError> {
    for (id, raw) in db.sandboxes()? {
        let Ok(mut rec) = serde_json::from_slice::<SandboxRecord>(&raw) else {
            tracing::warn!(id = %id, "CRI: an unreadable pod sandbox record is left as it is");
            continue;
        };
        let lost = rec.netns().is_some_and(|n| !is_mounted(&n))
            || (rec.own_ipc && !is_mounted(&rec.dir.join("ipc")));
        if rec.ready && lost {
            tracing::warn!(id = %id, "CRI: the namespaces of a ready pod sandbox are gone; it is not ready");
            unpin(&rec.dir);
            // The CNI fields stay: StopPodSandbox still runs DEL, which gives the
            // address back to IPAM.
            rec.ready = false;
            rec.ips.clear();
            let value = serde_json::to_vec(&rec).map_err(|source| DaemonError::BadJson {
                what: "a pod sandbox record",
                source,
            })?;
            db.put_sandbox(&id, &value)?;
        }
    }
    Ok(())
}

/// Unpin the namespaces under `dir` (those that are pinned).
fn unpin(dir: &Path) {
    for ns in ["net", "ipc", "uts"] {
        let p = dir.join(ns);
        if p.exists() {
            match nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH) {
                Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
                Err(e) => tracing::warn!(path = %p.display(), "unpinning a pod namespace: {e}"),
            }
            let _ = std::fs::remove_file(&p);
        }
    }
}

/// The pod's sysctls as `/proc/sys` paths and values: only those its own
/// namespaces hold (`net.*` in its network namespace; the System V IPC and POSIX
/// message queue ones in its IPC namespace), as kubelet's runtimes accept.
fn sysctls(
    c: &cri::PodSandboxConfig,
    own_net: bool,
    own_ipc: bool,
) -> Result<Vec<(String, String)>, Status> {
    const IPC: [&str; 8] = [
        "kernel.shm_rmid_forced",
        "kernel.shmmax",
        "kernel.shmall",
        "kernel.shmmni",
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
    ];
    let Some(linux) = &c.linux else {
        return Ok(vec![]);
    };
    let mut out: Vec<(String, String)> = Vec::new();
    for (key, value) in &linux.sysctls {
        let name = key.replace('/', ".");
        let plain = !name.is_empty()
            && !name.starts_with('.')
            && !name.contains("..")
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !plain || value.contains('\n') || value.len() > 256 {
            return Err(Status::invalid_argument(format!(
                "invalid sysctl {key:?}={value:?}"
            )));
        }
        let ours = if name.starts_with("net.") {
            own_net
        } else if IPC.contains(&name.as_str()) || name.starts_with("fs.mqueue.") {
            own_ipc
        } else {
            return Err(Status::invalid_argument(format!(
                "sysctl {key:?} is not namespaced: a pod cannot set it"
            )));
        };
        if !ours {
            return Err(Status::invalid_argument(format!(
                "sysctl {key:?} needs the pod's own namespace, and it shares the host's"
            )));
        }
        out.push((name.replace('.', "/"), value.clone()));
    }
    out.sort();
    Ok(out)
}

/// Create and pin the pod's namespaces; set its hostname in its UTS one and its
/// sysctls in its network and IPC ones.
async fn pin(
    dir: &Path,
    own_net: bool,
    own_ipc: bool,
    hostname: &str,
    sysctls: &[(String, String)],
) -> Result<(), Status> {
    let mut cmd = tokio::process::Command::new("unshare");
    for (ns, own) in [("net", own_net), ("ipc", own_ipc), ("uts", own_net)] {
        if own {
            let p = dir.join(ns);
            std::fs::write(&p, b"").map_err(internal)?;
            cmd.arg(format!("--{ns}={}", p.display()));
        }
    }
    if !own_net && !own_ipc {
        return Ok(());
    }
    // In the new UTS namespace: the pod's hostname (the host's name stays).
    let host = if own_net && !hostname.is_empty() {
        hostname
    } else {
        ""
    };
    // Run inside the new namespaces, so /proc/sys/net and the IPC limits written
    // are the pod's.
    const SCRIPT: &str = r#"[ -z "$1" ] || printf %s "$1" >/proc/sys/kernel/hostname || exit 1
shift
while [ $# -gt 1 ]; do printf %s "$2" >"/proc/sys/$1" || exit 1; shift 2; done"#;
    cmd.args(["--", "/bin/sh", "-c", SCRIPT, "sh", host]);
    for (path, value) in sysctls {
        cmd.args([path, value]);
    }
    let out = cmd
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| Status::internal(format!("running unshare (util-linux): {e}")))?;
    if !out.status.success() {
        return Err(Status::internal(format!(
            "creating the pod namespaces with unshare: {} ({})",
            String::from_utf8_lossy(&out.stderr).trim(),
            out.status
        )));
    }
    Ok(())
}

fn port_mappings(c: &cri::PodSandboxConfig) -> Vec<PortMapping> {
    c.port_mappings
        .iter()
        .filter(|p| p.host_port > 0)
        .map(|p| PortMapping {
            host_port: p.host_port,
            container_port: p.container_port,
            protocol: match cri::Protocol::try_from(p.protocol) {
                Ok(cri::Protocol::Udp) => "udp",
                Ok(cri::Protocol::Sctp) => "sctp",
                _ => "tcp",
            }
            .to_string(),
            host_ip: p.host_ip.clone(),
        })
        .collect()
}

/// The pod's /etc/resolv.conf: its DNS config, or the host's.
fn resolv_conf(c: &cri::PodSandboxConfig) -> Vec<u8> {
    match &c.dns_config {
        Some(d) if !(d.servers.is_empty() && d.searches.is_empty() && d.options.is_empty()) => {
            let mut s = String::new();
            if !d.searches.is_empty() {
                s.push_str(&format!("search {}\n", d.searches.join(" ")));
            }
            for n in &d.servers {
                s.push_str(&format!("nameserver {n}\n"));
            }
            if !d.options.is_empty() {
                s.push_str(&format!("options {}\n", d.options.join(" ")));
            }
            s.into_bytes()
        }
        _ => std::fs::read("/etc/resolv.conf").unwrap_or_default(),
    }
}

fn state_of(ready: bool) -> i32 {
    if ready {
        cri::PodSandboxState::SandboxReady as i32
    } else {
        cri::PodSandboxState::SandboxNotready as i32
    }
}

impl Cri {
    fn sandboxes_dir(&self) -> PathBuf {
        self.state.join("sandboxes")
    }

    pub async fn sandbox_record(&self, id: &str) -> Result<Option<SandboxRecord>, Status> {
        let d = std::sync::Arc::clone(&self.d);
        let key = id.to_string();
        let raw = blocking(move || d.db.sandbox(&key).map_err(DaemonError::from)).await?;
        raw.map(|r| serde_json::from_slice(&r).map_err(internal))
            .transpose()
    }

    /// Every sandbox record.
    pub async fn sandbox_records(&self) -> Result<Vec<SandboxRecord>, Status> {
        let d = std::sync::Arc::clone(&self.d);
        let raw = blocking(move || d.db.sandboxes().map_err(DaemonError::from)).await?;
        raw.into_iter()
            .map(|(_, v)| serde_json::from_slice(&v).map_err(internal))
            .collect()
    }

    async fn save(&self, rec: &SandboxRecord) -> Result<(), Status> {
        let value = serde_json::to_vec(rec).map_err(internal)?;
        let d = std::sync::Arc::clone(&self.d);
        let id = rec.id.clone();
        blocking(move || d.db.put_sandbox(&id, &value).map_err(DaemonError::from)).await?;
        Ok(())
    }

    /// A sandbox by id, or by an unambiguous id prefix (as crictl passes them).
    pub async fn find_sandbox(&self, id: &str) -> Result<Option<SandboxRecord>, Status> {
        if id.is_empty() {
            return Err(Status::invalid_argument("a pod sandbox id is required"));
        }
        if let Some(r) = self.sandbox_record(id).await? {
            return Ok(Some(r));
        }
        let mut hits: Vec<SandboxRecord> = self
            .sandbox_records()
            .await?
            .into_iter()
            .filter(|r| r.id.starts_with(id))
            .collect();
        match hits.len() {
            0 => Ok(None),
            1 => Ok(hits.pop()),
            _ => Err(Status::invalid_argument(format!(
                "pod sandbox id prefix {id:?} is ambiguous"
            ))),
        }
    }

    fn attachment<'a>(
        rec: &'a SandboxRecord,
        config: &'a cri::PodSandboxConfig,
        netns: &'a Path,
        ports: &'a [PortMapping],
    ) -> Attachment<'a> {
        let meta = config.metadata.clone().unwrap_or_default();
        Attachment {
            container_id: &rec.id,
            netns,
            ifname: "eth0",
            args: vec![
                ("K8S_POD_NAMESPACE", meta.namespace),
                ("K8S_POD_NAME", meta.name),
                ("K8S_POD_INFRA_CONTAINER_ID", rec.id.clone()),
                ("K8S_POD_UID", meta.uid),
            ],
            port_mappings: ports,
        }
    }

    /// CNI DEL for a sandbox that has a network (errors are returned: kubelet
    /// retries a stop that failed).
    async fn network_down(&self, rec: &SandboxRecord) -> Result<(), Status> {
        let Some(netns) = rec.netns() else {
            return Ok(());
        };
        if rec.cni_network.is_empty() {
            return Ok(());
        }
        let network =
            cni::load(&self.cfg.cni_conf_dir).map_err(|e| Status::internal(e.to_string()))?;
        let config = rec.config();
        let ports = port_mappings(&config);
        let at = Self::attachment(rec, &config, &netns, &ports);
        network
            .del(&at, &self.cfg.cni_bin_dirs, rec.cni_result.as_ref())
            .await
            .map_err(|e| Status::internal(format!("tearing down the pod network: {e}")))
    }

    pub async fn pod_run(&self, req: cri::RunPodSandboxRequest) -> Result<String, Status> {
        let config = req
            .config
            .ok_or_else(|| Status::invalid_argument("a pod sandbox config is required"))?;
        let meta = config
            .metadata
            .clone()
            .ok_or_else(|| Status::invalid_argument("pod sandbox metadata is required"))?;
        if meta.name.is_empty() || meta.namespace.is_empty() || meta.uid.is_empty() {
            return Err(Status::invalid_argument(
                "pod sandbox metadata needs a name, a namespace and a uid",
            ));
        }
        if !req.runtime_handler.is_empty() {
            return Err(Status::invalid_argument(format!(
                "runtime handler {:?} is not configured (berth has only the default one)",
                req.runtime_handler
            )));
        }
        // One sandbox per name, namespace, uid and attempt (kubelet's contract).
        let _names = self.d.locks.lock("cri-sandbox-names").await;
        for r in self.sandbox_records().await? {
            let m = r.config().metadata.unwrap_or_default();
            if m == meta {
                return Err(Status::already_exists(format!(
                    "pod sandbox {}_{}_{}_{} exists already: {}",
                    meta.name, meta.namespace, meta.uid, meta.attempt, r.id
                )));
            }
        }
        let ns = namespace_options(&config);
        let sysctls = sysctls(&config, ns.network != NODE, ns.ipc != NODE)?;
        let id = new_id(&meta);
        let dir = self.sandboxes_dir().join(&id);
        let mut rec = SandboxRecord {
            id: id.clone(),
            config: config.encode_to_vec(),
            runtime_handler: req.runtime_handler,
            ready: true,
            created_at: chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default(),
            dir: dir.clone(),
            own_net: ns.network != NODE,
            own_ipc: ns.ipc != NODE,
            cni_network: String::new(),
            cni_result: None,
            ips: vec![],
            pause: false,
        };
        std::fs::create_dir_all(&dir).map_err(internal)?;
        let undo = |dir: PathBuf| async move {
            let _ = blocking(move || {
                unpin(&dir);
                let _ = std::fs::remove_dir_all(&dir);
                Ok(())
            })
            .await;
        };
        let setup = async {
            std::fs::write(dir.join("resolv.conf"), resolv_conf(&config)).map_err(internal)?;
            std::fs::write(dir.join("hostname"), format!("{}\n", config.hostname))
                .map_err(internal)?;
            pin(&dir, rec.own_net, rec.own_ipc, &config.hostname, &sysctls).await?;
            if let Some(netns) = rec.netns() {
                let network = cni::load(&self.cfg.cni_conf_dir)
                    .map_err(|e| Status::failed_precondition(e.to_string()))?;
                let ports = port_mappings(&config);
                let at = Self::attachment(&rec, &config, &netns, &ports);
                match network.add(&at, &self.cfg.cni_bin_dirs).await {
                    Ok(result) => {
                        rec.ips = cni::result_ips(&result);
                        rec.cni_result = Some(result);
                        rec.cni_network = network.name.clone();
                    }
                    Err(e) => {
                        // Whatever the plugins that did run set up goes again.
                        let _ = network.del(&at, &self.cfg.cni_bin_dirs, None).await;
                        return Err(Status::internal(format!("setting up the pod network: {e}")));
                    }
                }
            }
            if ns.pid == POD {
                if let Err(e) = self.pause_start(&rec).await {
                    let _ = self.network_down(&rec).await;
                    return Err(e);
                }
                rec.pause = true;
            }
            Ok::<(), Status>(())
        };
        if let Err(e) = setup.await {
            undo(dir).await;
            return Err(e);
        }
        if let Err(e) = self.save(&rec).await {
            let _ = self.pause_remove(&rec.id).await;
            let _ = self.network_down(&rec).await;
            undo(dir).await;
            return Err(e);
        }
        tracing::info!(id = %id, name = %meta.name, namespace = %meta.namespace, ips = ?rec.ips, "CRI: pod sandbox ready");
        Ok(id)
    }

    pub async fn pod_stop(&self, id: &str) -> Result<(), Status> {
        let Some(mut rec) = self.find_sandbox(id).await? else {
            // Stopping what is not there succeeds (kubelet retries after a restart).
            return Ok(());
        };
        // Its containers first, killed at once (kubelet stops them before with
        // their grace periods).
        for c in self.pod_containers(&rec.id).await? {
            self.container_stop(&c, 0).await?;
        }
        self.pause_remove(&rec.id).await?;
        let _lock = self.d.locks.lock(&format!("cri-sandbox/{}", rec.id)).await;
        if !rec.ready && !rec.own_net && !rec.own_ipc {
            return Ok(());
        }
        self.network_down(&rec).await?;
        let dir = rec.dir.clone();
        blocking(move || {
            unpin(&dir);
            Ok(())
        })
        .await?;
        rec.ready = false;
        rec.cni_result = None;
        rec.cni_network = String::new();
        rec.ips.clear();
        self.save(&rec).await?;
        tracing::info!(id = %rec.id, "CRI: pod sandbox stopped");
        Ok(())
    }

    pub async fn pod_remove(&self, id: &str) -> Result<(), Status> {
        let Some(rec) = self.find_sandbox(id).await? else {
            return Ok(());
        };
        self.pod_stop(&rec.id).await?;
        for c in self.pod_containers(&rec.id).await? {
            self.container_remove(&c).await?;
        }
        let _lock = self.d.locks.lock(&format!("cri-sandbox/{}", rec.id)).await;
        let d = std::sync::Arc::clone(&self.d);
        let (sid, dir) = (rec.id.clone(), rec.dir.clone());
        blocking(move || {
            unpin(&dir);
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(dir = %dir.display(), "removing a pod sandbox directory: {e}");
                }
            }
            d.db.delete_sandbox(&sid)?;
            Ok(())
        })
        .await?;
        tracing::info!(id = %rec.id, "CRI: pod sandbox removed");
        Ok(())
    }

    pub fn sandbox_status(rec: &SandboxRecord, verbose: bool) -> cri::PodSandboxStatusResponse {
        let config = rec.config();
        let ns = namespace_options(&config);
        let mut info = HashMap::new();
        if verbose {
            let v = serde_json::json!({
                "netNamespacePath": rec.netns(),
                "dir": rec.dir,
                "cniNetwork": rec.cni_network,
                "cniResult": rec.cni_result,
            });
            info.insert("info".to_string(), v.to_string());
        }
        cri::PodSandboxStatusResponse {
            status: Some(cri::PodSandboxStatus {
                id: rec.id.clone(),
                metadata: config.metadata.clone(),
                state: state_of(rec.ready),
                created_at: rec.created_at,
                network: Some(cri::PodSandboxNetworkStatus {
                    ip: rec.ips.first().cloned().unwrap_or_default(),
                    additional_ips: rec
                        .ips
                        .iter()
                        .skip(1)
                        .map(|ip| cri::PodIp { ip: ip.clone() })
                        .collect(),
                }),
                linux: Some(cri::LinuxPodSandboxStatus {
                    namespaces: Some(cri::Namespace { options: Some(ns) }),
                }),
                labels: config.labels.clone(),
                annotations: config.annotations.clone(),
                runtime_handler: rec.runtime_handler.clone(),
            }),
            info,
            containers_statuses: vec![],
            timestamp: chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default(),
        }
    }

    pub fn sandbox_item(rec: &SandboxRecord) -> cri::PodSandbox {
        let config = rec.config();
        cri::PodSandbox {
            id: rec.id.clone(),
            metadata: config.metadata,
            state: state_of(rec.ready),
            created_at: rec.created_at,
            labels: config.labels,
            annotations: config.annotations,
            runtime_handler: rec.runtime_handler.clone(),
        }
    }

    pub async fn pod_list(
        &self,
        filter: Option<cri::PodSandboxFilter>,
    ) -> Result<Vec<cri::PodSandbox>, Status> {
        let mut items: Vec<cri::PodSandbox> = self
            .sandbox_records()
            .await?
            .iter()
            .map(Self::sandbox_item)
            .collect();
        if let Some(f) = filter {
            items.retain(|s| {
                (f.id.is_empty() || s.id.starts_with(&f.id))
                    && f.state.as_ref().is_none_or(|st| st.state == s.state)
                    && f.label_selector
                        .iter()
                        .all(|(k, v)| s.labels.get(k) == Some(v))
            });
        }
        items.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        Ok(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_config_becomes_resolv_conf() {
        let c = cri::PodSandboxConfig {
            dns_config: Some(cri::DnsConfig {
                servers: vec!["10.10.10.10".to_string()],
                searches: vec!["google.com".to_string()],
                options: vec!["ndots:8".to_string()],
            }),
            ..Default::default()
        };
        assert_eq!(
            String::from_utf8(resolv_conf(&c)).unwrap(),
            "search google.com\nnameserver 10.10.10.10\noptions ndots:8\n"
        );
    }

    #[test]
    fn only_the_pods_own_sysctls_are_accepted() {
        let pod = |pairs: &[(&str, &str)]| cri::PodSandboxConfig {
            linux: Some(cri::LinuxPodSandboxConfig {
                sysctls: pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let ok = sysctls(
            &pod(&[
                ("net.ipv4.ping_group_range", "0 1"),
                ("kernel/shm_rmid_forced", "1"),
            ]),
            true,
            true,
        )
        .unwrap();
        assert_eq!(
            ok,
            vec![
                ("kernel/shm_rmid_forced".to_string(), "1".to_string()),
                ("net/ipv4/ping_group_range".to_string(), "0 1".to_string()),
            ]
        );
        for bad in [("vm.swappiness", "1"), ("net.../x", "1"), ("net.a", "1\n2")] {
            assert!(sysctls(&pod(&[bad]), true, true).is_err(), "{bad:?}");
        }
        // Host network: no net.* sysctls.
        assert!(sysctls(&pod(&[("net.ipv4.ping_group_range", "0 1")]), false, true).is_err());
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(
            unescape_mountinfo(r"/run/a\040b\134c"),
            b"/run/a b\\c".to_vec()
        );
        assert_eq!(unescape_mountinfo(r"/x\04"), b"/x\\04".to_vec());
        assert_eq!(unescape_mountinfo("/plain"), b"/plain".to_vec());
        assert_eq!(unescape_mountinfo(r"/y\777"), b"/y\\777".to_vec());
    }

    #[test]
    fn ids_are_64_hex_digits_and_differ() {
        let m = cri::PodSandboxMetadata {
            name: "a".to_string(),
            ..Default::default()
        };
        let (a, b) = (new_id(&m), new_id(&m));
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn only_published_ports_go_to_cni() {
        let c = cri::PodSandboxConfig {
            port_mappings: vec![
                cri::PortMapping {
                    protocol: cri::Protocol::Udp as i32,
                    container_port: 53,
                    host_port: 5353,
                    host_ip: String::new(),
                },
                cri::PortMapping {
                    container_port: 80,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let p = port_mappings(&c);
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].host_port, p[0].protocol.as_str()), (5353, "udp"));
    }
}
