//! CRI containers. A CRI container IS a manager container record and task (the
//! same id, store, snapshot, shim and runtime as the manager's own API), so
//! everything that finds containers by id (the streaming server, `berth-manager`'s
//! own calls) finds these too. What only the CRI knows (its sandbox, the
//! `ContainerConfig` as sent, the log path, created/started/finished times and the
//! exit) is kept in the manager's redb file, table `cri_containers`, written before
//! a call answers.
//!
//! The task is created and started by StartContainer; when it exits its exit is
//! recorded here and the task deleted (shim, rootfs mount and cgroup go), while
//! the container and its snapshot stay until RemoveContainer. The log is written
//! by the shim in the CRI format, so it survives manager restarts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_api::berth::manager::v1 as pb;
use berth_cri_api::prost::Message as _;
use berth_cri_api::runtime::v1 as cri;
use berth_shim_contract::pb as shimpb;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tonic::Status;

use super::sandbox::SandboxRecord;
use super::spec;
use super::Cri;
use crate::daemon::core::blocking;
use crate::daemon::error::DaemonError;
use crate::daemon::lifecycle::CRI_LOG_LABEL;
use crate::daemon::task::record::Exit;

/// The manager label naming the pod sandbox of a CRI container.
pub const SANDBOX_LABEL: &str = "io.berth.cri.sandbox";
/// The most ExecSync output kept per stream (containerd's limit too).
const MAX_EXEC_OUTPUT: usize = 16 << 20;

/// The CRI side of a container, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CriContainer {
    pub id: String,
    pub sandbox_id: String,
    /// The `ContainerConfig` as sent (protobuf bytes), resources as updated.
    pub config: Vec<u8>,
    /// The image's id.
    pub image_ref: String,
    /// Absolute, or "" for none.
    pub log_path: String,
    /// Nanoseconds since the epoch.
    pub created_at: i64,
    #[serde(default)]
    pub started_at: i64,
    #[serde(default)]
    pub finished_at: i64,
    #[serde(default)]
    pub exit_code: i32,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub message: String,
    /// The image's `StopSignal` ("" for SIGTERM).
    #[serde(default)]
    pub stop_signal: String,
}

impl CriContainer {
    pub fn config(&self) -> cri::ContainerConfig {
        cri::ContainerConfig::decode(self.config.as_slice()).unwrap_or_default()
    }
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
}

fn rfc3339_nanos(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .unwrap_or_else(now_nanos)
}

fn new_id() -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(now_nanos().to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    let mut buf = [0u8; 16];
    // Best effort: the time and the pid already make ids distinct in one manager.
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read as _;
        let _ = f.read_exact(&mut buf);
    }
    h.update(buf);
    hex::encode(h.finalize())
}

/// The first overlay lower/upper directory that has /etc/passwd, as berthd finds
/// the image's users before the rootfs is mounted.
fn passwd_root(mounts: &[berth_manager::snapshots::Mount]) -> PathBuf {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for m in mounts {
        if m.kind == "overlay" {
            for o in &m.options {
                if let Some(u) = o.strip_prefix("upperdir=") {
                    dirs.insert(0, PathBuf::from(u));
                } else if let Some(l) = o.strip_prefix("lowerdir=") {
                    dirs.extend(l.split(':').map(PathBuf::from));
                }
            }
        } else {
            dirs.push(PathBuf::from(&m.source));
        }
    }
    dirs.iter()
        .find(|d| d.join("etc/passwd").is_file())
        .cloned()
        .unwrap_or_else(|| dirs.first().cloned().unwrap_or_default())
}

/// What ContainerStatus says of how a container ended.
fn reason_for(exit: &Exit) -> &'static str {
    if exit.oom_killed {
        "OOMKilled"
    } else if exit.exit_status == 0 {
        "Completed"
    } else {
        "Error"
    }
}

fn u64_value(v: u64) -> Option<cri::UInt64Value> {
    Some(cri::UInt64Value { value: v })
}

/// CPU and memory of a running container, from its cgroups (`runtime events
/// --stats` through its shim).
fn usage_from(stats: &Value, now: i64) -> (cri::CpuUsage, cri::MemoryUsage) {
    let n = |p: &str| stats.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let usage = n("/memory/usage/usage");
    let inactive = stats
        .pointer("/memory/raw/total_inactive_file")
        .or_else(|| stats.pointer("/memory/raw/inactive_file"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let rss = stats
        .pointer("/memory/raw/total_rss")
        .or_else(|| stats.pointer("/memory/raw/anon"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    (
        cri::CpuUsage {
            timestamp: now,
            usage_core_nano_seconds: u64_value(n("/cpu/usage/total")),
            usage_nano_cores: None,
        },
        cri::MemoryUsage {
            timestamp: now,
            working_set_bytes: u64_value(usage.saturating_sub(inactive)),
            available_bytes: None,
            usage_bytes: u64_value(usage),
            rss_bytes: u64_value(rss),
            page_faults: u64_value(n("/memory/raw/pgfault")),
            major_page_faults: u64_value(n("/memory/raw/pgmajfault")),
        },
    )
}

/// An ExecSync's output from its json-file log: stdout and stderr, each bounded.
fn exec_output(log: &Path) -> (Vec<u8>, Vec<u8>) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let text = std::fs::read(log).unwrap_or_default();
    for line in text.split(|b| *b == b'\n') {
        let Ok(v) = serde_json::from_slice::<Value>(line) else {
            continue;
        };
        let data = v.get("log").and_then(Value::as_str).unwrap_or_default();
        let buf = if v.get("stream").and_then(Value::as_str) == Some("stderr") {
            &mut err
        } else {
            &mut out
        };
        let room = MAX_EXEC_OUTPUT.saturating_sub(buf.len());
        let take = data.len().min(room);
        buf.extend_from_slice(&data.as_bytes()[..take]);
    }
    (out, err)
}

/// A `StopSignal` as images give it (`SIGQUIT`, `QUIT`, `3`); SIGTERM otherwise.
fn stop_signal(s: &str) -> u32 {
    use std::str::FromStr as _;
    let s = s.trim();
    if let Ok(n) = s.parse::<u32>() {
        if (1..65).contains(&n) {
            return n;
        }
    }
    let name = if s.starts_with("SIG") {
        s.to_string()
    } else {
        format!("SIG{s}")
    };
    nix::sys::signal::Signal::from_str(&name.to_ascii_uppercase())
        .map(|sig| sig as u32)
        .unwrap_or(libc::SIGTERM as u32)
}

fn label_match(labels: &HashMap<String, String>, want: &HashMap<String, String>) -> bool {
    want.iter().all(|(k, v)| labels.get(k) == Some(v))
}

impl Cri {
    pub async fn cri_record(&self, id: &str) -> Result<Option<CriContainer>, Status> {
        let d = Arc::clone(&self.d);
        let key = id.to_string();
        let raw = blocking(move || d.db.cri_container(&key).map_err(DaemonError::from)).await?;
        raw.map(|r| serde_json::from_slice(&r).map_err(internal))
            .transpose()
    }

    pub async fn cri_records(&self) -> Result<Vec<CriContainer>, Status> {
        let d = Arc::clone(&self.d);
        let raw = blocking(move || d.db.cri_containers().map_err(DaemonError::from)).await?;
        Ok(raw
            .into_iter()
            .filter_map(|(id, v)| match serde_json::from_slice(&v) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!(id = %id, "CRI: an unreadable container record is skipped: {e}");
                    None
                }
            })
            .collect())
    }

    async fn save_container(&self, rec: &CriContainer) -> Result<(), Status> {
        let value = serde_json::to_vec(rec).map_err(internal)?;
        let d = Arc::clone(&self.d);
        let id = rec.id.clone();
        blocking(move || {
            d.db.put_cri_container(&id, &value)
                .map_err(DaemonError::from)
        })
        .await?;
        Ok(())
    }

    /// A container by id or unambiguous id prefix; NotFound otherwise.
    async fn find_container(&self, id: &str) -> Result<CriContainer, Status> {
        if id.is_empty() {
            return Err(Status::invalid_argument("a container id is required"));
        }
        if let Some(r) = self.cri_record(id).await? {
            return Ok(r);
        }
        let mut hits: Vec<CriContainer> = self
            .cri_records()
            .await?
            .into_iter()
            .filter(|r| r.id.starts_with(id))
            .collect();
        match hits.len() {
            1 => Ok(hits.remove(0)),
            0 => Err(Status::not_found(format!("container {id:?} not found"))),
            _ => Err(Status::invalid_argument(format!(
                "container id prefix {id:?} is ambiguous"
            ))),
        }
    }

    /// Record the exit of a started container (once) and delete its task.
    async fn finalize(&self, id: &str, exit: Option<Exit>) -> Result<CriContainer, Status> {
        let _lock = self.d.locks.lock(&format!("cri-container/{id}")).await;
        let mut rec = self
            .cri_record(id)
            .await?
            .ok_or_else(|| Status::not_found(format!("container {id:?} not found")))?;
        if rec.finished_at == 0 {
            let exit = match exit.or_else(|| self.d.task_opt(id).and_then(|t| t.exit())) {
                Some(e) => e,
                None => Exit {
                    pid: 0,
                    exit_status: 255,
                    exited_at: crate::daemon::now_rfc3339(),
                    oom_killed: false,
                    reason: "the container's task is gone".to_string(),
                },
            };
            rec.finished_at = rfc3339_nanos(&exit.exited_at).max(rec.started_at);
            rec.exit_code = i32::try_from(exit.exit_status).unwrap_or(255);
            rec.reason = reason_for(&exit).to_string();
            rec.message = exit.reason.clone();
            self.save_container(&rec).await?;
            tracing::info!(id, exit_code = rec.exit_code, reason = %rec.reason, "CRI: container exited");
        }
        if self.d.task_opt(id).is_some() {
            match self.d.delete_task(id, true).await {
                Ok(_) | Err(DaemonError::NoTask(_)) => {}
                Err(e) => tracing::warn!(id, "CRI: deleting the task of an exited container: {e}"),
            }
        }
        Ok(rec)
    }

    /// Follow a started container until it exits, then record that.
    pub fn watch_container(&self, id: String) {
        let this = self.clone();
        tokio::spawn(async move {
            let Some(task) = this.d.task_opt(&id) else {
                let _ = this.finalize(&id, None).await;
                return;
            };
            let exit = task.wait_exit().await;
            if let Err(e) = this.finalize(&id, Some(exit)).await {
                tracing::warn!(id, "CRI: recording a container's exit: {e}");
            }
        });
    }

    /// At start: every started container that has not exited is followed again;
    /// manager containers of the CRI without a CRI record (a create cut short) go.
    pub async fn reconcile_containers(&self) -> Result<(), Status> {
        let records = self.cri_records().await?;
        for r in &records {
            if r.started_at != 0 && r.finished_at == 0 {
                self.watch_container(r.id.clone());
            }
        }
        let known: std::collections::HashSet<String> =
            records.iter().map(|r| r.id.clone()).collect();
        let ours = self
            .d
            .list_containers(vec![format!("label={SANDBOX_LABEL}")])
            .await?;
        for c in ours {
            if !known.contains(&c.id) {
                tracing::warn!(id = %c.id, "CRI: removing a container whose create was cut short");
                if self.d.task_opt(&c.id).is_some() {
                    let _ = self.d.delete_task(&c.id, true).await;
                }
                let _ = self.d.delete_container(&c.id, false).await;
            }
        }
        Ok(())
    }

    /// The record as it is now: a started container whose task has exited (or is
    /// gone) is recorded as exited first.
    async fn current(&self, rec: CriContainer) -> Result<CriContainer, Status> {
        if rec.started_at == 0 || rec.finished_at != 0 {
            return Ok(rec);
        }
        match self.d.task_opt(&rec.id) {
            Some(t) if t.exit().is_none() => Ok(rec),
            _ => self.finalize(&rec.id, None).await,
        }
    }

    fn state_of(rec: &CriContainer) -> cri::ContainerState {
        if rec.finished_at != 0 {
            cri::ContainerState::ContainerExited
        } else if rec.started_at != 0 {
            cri::ContainerState::ContainerRunning
        } else {
            cri::ContainerState::ContainerCreated
        }
    }

    pub async fn container_create(
        &self,
        req: cri::CreateContainerRequest,
    ) -> Result<String, Status> {
        let config = req
            .config
            .ok_or_else(|| Status::invalid_argument("a container config is required"))?;
        let meta = config
            .metadata
            .clone()
            .ok_or_else(|| Status::invalid_argument("container metadata is required"))?;
        if meta.name.is_empty() {
            return Err(Status::invalid_argument("container metadata needs a name"));
        }
        let sandbox = self
            .find_sandbox(&req.pod_sandbox_id)
            .await?
            .ok_or_else(|| {
                Status::not_found(format!("pod sandbox {:?} not found", req.pod_sandbox_id))
            })?;
        if !sandbox.ready {
            return Err(Status::failed_precondition(format!(
                "pod sandbox {} is not ready",
                sandbox.id
            )));
        }
        let pod = sandbox.config();
        let image_name = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .filter(|i| !i.is_empty())
            .ok_or_else(|| Status::invalid_argument("a container image is required"))?;
        let store = Arc::clone(&self.d.store);
        let name = image_name.clone();
        let (image_id, image_config) = blocking(move || {
            let img = store.image(&name)?;
            let raw = store.image_config(&img)?;
            Ok((img.id().to_string(), raw))
        })
        .await
        .map_err(|e| match e {
            DaemonError::Store(berth_manager::StoreError::ImageNotFound(_)) => {
                Status::not_found(format!("image {image_name:?} not found"))
            }
            e => Status::from(e),
        })?;
        let image_config: Value = serde_json::from_slice::<Value>(&image_config)
            .ok()
            .and_then(|v| v.get("config").cloned())
            .unwrap_or(Value::Null);

        // One container per sandbox, name and attempt (kubelet's contract).
        let _names = self
            .d
            .locks
            .lock(&format!("cri-container-names/{}", sandbox.id))
            .await;
        for r in self.cri_records().await? {
            if r.sandbox_id == sandbox.id && r.config().metadata.as_ref() == Some(&meta) {
                return Err(Status::already_exists(format!(
                    "container {} (attempt {}) exists already in pod sandbox {}: {}",
                    meta.name, meta.attempt, sandbox.id, r.id
                )));
            }
        }
        let log_path = if !pod.log_directory.is_empty() && !config.log_path.is_empty() {
            let p = Path::new(&pod.log_directory).join(&config.log_path);
            if !p.is_absolute() {
                return Err(Status::invalid_argument(format!(
                    "log path {} is not absolute",
                    p.display()
                )));
            }
            p.to_string_lossy().into_owned()
        } else {
            String::new()
        };
        let id = new_id();
        let mut labels = HashMap::from([
            (SANDBOX_LABEL.to_string(), sandbox.id.clone()),
            (CRI_LOG_LABEL.to_string(), "cri".to_string()),
        ]);
        labels.insert(
            "io.kubernetes.container.name".to_string(),
            meta.name.clone(),
        );
        self.d
            .create_container(pb::Container {
                id: id.clone(),
                image: image_id.clone(),
                spec: b"{}".to_vec(),
                snapshot_key: String::new(),
                labels,
                runtime: String::new(),
                log_path: log_path.clone(),
                created_at: String::new(),
                updated_at: String::new(),
            })
            .await?;
        let built = async {
            let d = Arc::clone(&self.d);
            let key = id.clone();
            let mounts = blocking(move || {
                d.store
                    .snapshotter()
                    .mounts(&key)
                    .map_err(|e| DaemonError::Store(e.into()))
            })
            .await?;
            let root = passwd_root(&mounts);
            let pid_ns = self.pod_pid_ns(&sandbox);
            let spec = spec::build(&spec::SpecInput {
                id: &id,
                config: &config,
                sandbox: &sandbox,
                pod: &pod,
                image: &image_config,
                passwd_root: &root,
                pod_pid_ns: pid_ns,
            })?;
            self.write_pod_files(&sandbox)?;
            self.d
                .update_container(
                    pb::Container {
                        id: id.clone(),
                        spec: serde_json::to_vec(&spec).map_err(internal)?,
                        ..Default::default()
                    },
                    vec!["spec".to_string()],
                )
                .await?;
            let rec = CriContainer {
                id: id.clone(),
                sandbox_id: sandbox.id.clone(),
                config: config.encode_to_vec(),
                image_ref: image_id.clone(),
                log_path: log_path.clone(),
                created_at: now_nanos(),
                started_at: 0,
                finished_at: 0,
                exit_code: 0,
                reason: String::new(),
                message: String::new(),
                stop_signal: image_config
                    .get("StopSignal")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            };
            self.save_container(&rec).await?;
            Ok::<(), Status>(())
        }
        .await;
        if let Err(e) = built {
            if let Err(e) = self.d.delete_container(&id, false).await {
                tracing::warn!(id, "CRI: removing a container whose create failed: {e}");
            }
            return Err(e);
        }
        tracing::info!(id, name = %meta.name, sandbox = %sandbox.id, "CRI: container created");
        Ok(id)
    }

    /// /etc/hosts of a pod with its own network, written once.
    fn write_pod_files(&self, sandbox: &SandboxRecord) -> Result<(), Status> {
        if !sandbox.own_net {
            return Ok(());
        }
        let hosts = sandbox.dir.join("hosts");
        if hosts.exists() {
            return Ok(());
        }
        let mut text = String::from(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
        );
        let host = sandbox.config().hostname;
        if let (Some(ip), false) = (sandbox.ips.first(), host.is_empty()) {
            text.push_str(&format!("{ip}\t{host}\n"));
        }
        berth_shim_contract::layout::write_atomic(&hosts, text.as_bytes()).map_err(internal)
    }

    pub async fn container_start(&self, id: &str) -> Result<(), Status> {
        let rec = self.find_container(id).await?;
        let id = rec.id.clone();
        let _lock = self.d.locks.lock(&format!("cri-container/{id}")).await;
        let rec = self.cri_record(&id).await?.unwrap_or(rec);
        if rec.started_at != 0 || rec.finished_at != 0 {
            return Err(Status::failed_precondition(format!(
                "container {id} is not in the created state"
            )));
        }
        let sandbox = self.sandbox_record(&rec.sandbox_id).await?;
        if !sandbox.as_ref().is_some_and(|s| s.ready) {
            return Err(Status::failed_precondition(format!(
                "the pod sandbox {} of container {id} is not ready",
                rec.sandbox_id
            )));
        }
        let config = rec.config();
        if !rec.log_path.is_empty() {
            if let Some(parent) = Path::new(&rec.log_path).parent() {
                std::fs::create_dir_all(parent).map_err(|e| {
                    Status::internal(format!(
                        "creating the log directory {}: {e}",
                        parent.display()
                    ))
                })?;
            }
        }
        let started = self.d.create_and_start_task(&id, config.stdin).await;
        let mut rec = rec;
        if let Err(e) = started {
            // The container failed to start: it is exited with the reason, as
            // with containerd, and keeps nothing running.
            if self.d.task_opt(&id).is_some() {
                let _ = self.d.delete_task(&id, true).await;
            }
            let now = now_nanos();
            rec.started_at = now;
            rec.finished_at = now;
            rec.exit_code = 128;
            rec.reason = "StartError".to_string();
            rec.message = e.to_string();
            self.save_container(&rec).await?;
            return Err(e.into());
        }
        rec.started_at = now_nanos();
        self.save_container(&rec).await?;
        drop(_lock);
        self.watch_container(id.clone());
        tracing::info!(id, "CRI: container started");
        Ok(())
    }

    /// SIGTERM (or the image's stop signal), then SIGKILL after `timeout` seconds.
    pub async fn container_stop(&self, id: &str, timeout: i64) -> Result<(), Status> {
        let rec = self.find_container(id).await?;
        let id = rec.id.clone();
        let Some(task) = self.d.task_opt(&id) else {
            if rec.started_at != 0 {
                self.finalize(&id, None).await?;
            }
            return Ok(());
        };
        if task.exit().is_none() {
            let term = stop_signal(&rec.stop_signal);
            let wait = Duration::from_secs(u64::try_from(timeout).unwrap_or(0));
            let mut exited = false;
            if !wait.is_zero() {
                match self.d.kill_task(&id, "", term, false).await {
                    Ok(()) => {}
                    Err(e) => tracing::debug!(id, "CRI: SIGTERM: {e}"),
                }
                exited = tokio::time::timeout(wait, task.wait_exit()).await.is_ok();
            }
            if !exited {
                if let Err(e) = self.d.kill_task(&id, "", libc::SIGKILL as u32, true).await {
                    tracing::debug!(id, "CRI: SIGKILL: {e}");
                }
                if tokio::time::timeout(Duration::from_secs(30), task.wait_exit())
                    .await
                    .is_err()
                {
                    return Err(Status::deadline_exceeded(format!(
                        "container {id} did not exit after SIGKILL"
                    )));
                }
            }
        }
        self.finalize(&id, task.exit()).await?;
        Ok(())
    }

    pub async fn container_remove(&self, id: &str) -> Result<(), Status> {
        let rec = match self.find_container(id).await {
            Ok(r) => r,
            // Removing what is not there succeeds (kubelet retries).
            Err(s) if s.code() == tonic::Code::NotFound => return Ok(()),
            Err(s) => return Err(s),
        };
        let id = rec.id;
        if self.d.task_opt(&id).is_some() {
            match self.d.delete_task(&id, true).await {
                Ok(_) | Err(DaemonError::NoTask(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let _lock = self.d.locks.lock(&format!("cri-container/{id}")).await;
        match self.d.delete_container(&id, false).await {
            Ok(()) | Err(DaemonError::ContainerNotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let d = Arc::clone(&self.d);
        let key = id.clone();
        blocking(move || {
            d.db.delete_cri_container(&key)?;
            Ok(())
        })
        .await?;
        tracing::info!(id, "CRI: container removed");
        Ok(())
    }

    fn container_item(rec: &CriContainer) -> cri::Container {
        let config = rec.config();
        cri::Container {
            id: rec.id.clone(),
            pod_sandbox_id: rec.sandbox_id.clone(),
            metadata: config.metadata,
            image: config.image,
            image_ref: rec.image_ref.clone(),
            state: Self::state_of(rec) as i32,
            created_at: rec.created_at,
            labels: config.labels,
            annotations: config.annotations,
        }
    }

    /// Every record, brought up to date, filtered.
    async fn current_records(
        &self,
        id: &str,
        sandbox: &str,
        labels: &HashMap<String, String>,
    ) -> Result<Vec<CriContainer>, Status> {
        let mut out = Vec::new();
        for r in self.cri_records().await? {
            if !r.id.starts_with(id) || !r.sandbox_id.starts_with(sandbox) {
                continue;
            }
            if !label_match(&r.config().labels, labels) {
                continue;
            }
            out.push(self.current(r).await?);
        }
        out.sort_by_key(|r| std::cmp::Reverse(r.created_at));
        Ok(out)
    }

    pub async fn container_list(
        &self,
        filter: Option<cri::ContainerFilter>,
    ) -> Result<Vec<cri::Container>, Status> {
        let f = filter.unwrap_or_default();
        let recs = self
            .current_records(&f.id, &f.pod_sandbox_id, &f.label_selector)
            .await?;
        Ok(recs
            .iter()
            .filter(|r| {
                f.state
                    .as_ref()
                    .is_none_or(|s| s.state == Self::state_of(r) as i32)
            })
            .map(Self::container_item)
            .collect())
    }

    pub async fn container_status(
        &self,
        id: &str,
        verbose: bool,
    ) -> Result<cri::ContainerStatusResponse, Status> {
        let rec = self.find_container(id).await?;
        let rec = self.current(rec).await?;
        let config = rec.config();
        let mut info = HashMap::new();
        if verbose {
            let spec = self
                .d
                .container(&rec.id)
                .await
                .ok()
                .and_then(|c| serde_json::from_str::<Value>(&c.spec).ok());
            let pid = self
                .d
                .task_opt(&rec.id)
                .map(|t| t.record().pid)
                .unwrap_or(0);
            let v = serde_json::json!({
                "sandboxID": rec.sandbox_id,
                "pid": pid,
                "runtimeSpec": spec,
                "logPath": rec.log_path,
            });
            info.insert("info".to_string(), v.to_string());
        }
        let resources = config
            .linux
            .as_ref()
            .and_then(|l| l.resources.clone())
            .map(|r| cri::ContainerResources {
                linux: Some(r),
                windows: None,
            });
        Ok(cri::ContainerStatusResponse {
            status: Some(cri::ContainerStatus {
                id: rec.id.clone(),
                metadata: config.metadata.clone(),
                state: Self::state_of(&rec) as i32,
                created_at: rec.created_at,
                started_at: rec.started_at,
                finished_at: rec.finished_at,
                exit_code: rec.exit_code,
                image: config.image.clone(),
                image_ref: rec.image_ref.clone(),
                reason: rec.reason.clone(),
                message: rec.message.clone(),
                labels: config.labels.clone(),
                annotations: config.annotations.clone(),
                mounts: config.mounts.clone(),
                log_path: rec.log_path.clone(),
                resources,
            }),
            info,
        })
    }

    pub async fn container_update(
        &self,
        id: &str,
        resources: Option<cri::LinuxContainerResources>,
    ) -> Result<(), Status> {
        let rec = self.find_container(id).await?;
        let id = rec.id.clone();
        let Some(r) = resources else {
            return Ok(());
        };
        let _lock = self.d.locks.lock(&format!("cri-container/{id}")).await;
        let mut rec = self.cri_record(&id).await?.unwrap_or(rec);
        if rec.finished_at != 0 {
            return Err(Status::failed_precondition(format!(
                "container {id} has exited"
            )));
        }
        let new = spec::resources(&r);
        // The spec first (a later start uses it), then the running task.
        let c = self.d.container(&id).await?;
        let mut v: Value = serde_json::from_str(&c.spec).map_err(internal)?;
        if let Some(linux) = v.get_mut("linux").and_then(Value::as_object_mut) {
            let res = linux
                .entry("resources")
                .or_insert_with(|| serde_json::json!({}));
            if let (Some(res), Some(new)) = (res.as_object_mut(), new.as_object()) {
                for (k, val) in new {
                    res.insert(k.clone(), val.clone());
                }
            }
        }
        self.d
            .update_container(
                pb::Container {
                    id: id.clone(),
                    spec: serde_json::to_vec(&v).map_err(internal)?,
                    ..Default::default()
                },
                vec!["spec".to_string()],
            )
            .await?;
        if self.d.task_opt(&id).is_some_and(|t| t.exit().is_none()) {
            let data = serde_json::to_vec(&new).map_err(internal)?;
            self.d.update_task(&id, data).await?;
        }
        let mut config = rec.config();
        config.linux.get_or_insert_with(Default::default).resources = Some(r);
        rec.config = config.encode_to_vec();
        self.save_container(&rec).await?;
        Ok(())
    }

    pub async fn container_reopen_log(&self, id: &str) -> Result<(), Status> {
        let rec = self.find_container(id).await?;
        let task = self
            .d
            .task_opt(&rec.id)
            .filter(|t| t.exit().is_none())
            .ok_or_else(|| {
                Status::failed_precondition(format!("container {} is not running", rec.id))
            })?;
        let mut client = task.client().await?;
        client
            .reopen_log(shimpb::ReopenLogRequest {
                exec_id: String::new(),
            })
            .await
            .map_err(|s| Status::internal(format!("reopening the log: {}", s.message())))?;
        Ok(())
    }

    pub async fn container_exec_sync(
        &self,
        req: cri::ExecSyncRequest,
    ) -> Result<cri::ExecSyncResponse, Status> {
        if req.cmd.is_empty() {
            return Err(Status::invalid_argument("a command is required"));
        }
        let rec = self.find_container(&req.container_id).await?;
        let id = rec.id.clone();
        let task = self
            .d
            .task_opt(&id)
            .filter(|t| t.exit().is_none())
            .ok_or_else(|| Status::failed_precondition(format!("container {id} is not running")))?;
        let c = self.d.container(&id).await?;
        let spec: Value = serde_json::from_str(&c.spec).map_err(internal)?;
        let mut process = spec
            .get("process")
            .cloned()
            .unwrap_or_else(|| serde_json::json!({}));
        process["args"] = serde_json::json!(req.cmd);
        process["terminal"] = Value::Bool(false);
        let exec_id = format!("sync-{}", &new_id()[..16]);
        let dir = self.state.join("exec");
        std::fs::create_dir_all(&dir).map_err(internal)?;
        let log = dir.join(format!("{id}-{exec_id}.log"));
        let mut client = task.client().await?;
        client
            .exec(shimpb::ExecRequest {
                exec_id: exec_id.clone(),
                process: serde_json::to_vec(&process).map_err(internal)?,
                stdin: false,
                log_path: log.to_string_lossy().into_owned(),
                log_format: shimpb::LogFormat::JsonFile as i32,
            })
            .await
            .map_err(|s| Status::failed_precondition(format!("exec: {}", s.message())))?;
        let result = async {
            self.d.start_task(&id, &exec_id).await?;
            let wait = self.d.wait_task(&id, &exec_id);
            let exit = if req.timeout > 0 {
                let limit = Duration::from_secs(u64::try_from(req.timeout).unwrap_or(0));
                match tokio::time::timeout(limit, wait).await {
                    Ok(r) => r?,
                    Err(_) => {
                        let _ = self
                            .d
                            .kill_task(&id, &exec_id, libc::SIGKILL as u32, false)
                            .await;
                        let _ = self.d.wait_task(&id, &exec_id).await;
                        return Err(Status::deadline_exceeded(format!(
                            "command {:?} timed out after {}s",
                            req.cmd, req.timeout
                        )));
                    }
                }
            } else {
                wait.await?
            };
            Ok::<_, Status>(exit)
        }
        .await;
        let _ = self.d.delete_process(&id, &exec_id).await;
        let (stdout, stderr) = exec_output(&log);
        let _ = std::fs::remove_file(&log);
        let exit = result?;
        Ok(cri::ExecSyncResponse {
            stdout,
            stderr,
            exit_code: i32::try_from(exit.exit_status).unwrap_or(255),
        })
    }

    fn attributes(rec: &CriContainer) -> cri::ContainerAttributes {
        let config = rec.config();
        cri::ContainerAttributes {
            id: rec.id.clone(),
            metadata: config.metadata,
            labels: config.labels,
            annotations: config.annotations,
        }
    }

    async fn stats_of(&self, rec: &CriContainer) -> cri::ContainerStats {
        let now = now_nanos();
        let running = self.d.task_opt(&rec.id).is_some_and(|t| t.exit().is_none());
        let stats = if running {
            self.d
                .stats(&rec.id)
                .await
                .ok()
                .and_then(|s| serde_json::from_slice::<Value>(&s).ok())
                .unwrap_or(Value::Null)
        } else {
            Value::Null
        };
        let (cpu, memory) = usage_from(&stats, now);
        let d = Arc::clone(&self.d);
        let key = rec.id.clone();
        let writable = blocking(move || {
            let upper = d.store.snapshotter().mounts(&key).ok().and_then(|m| {
                m.iter()
                    .flat_map(|m| m.options.iter())
                    .find_map(|o| o.strip_prefix("upperdir=").map(PathBuf::from))
            });
            Ok(upper.map(|u| super::images::usage(&u)))
        })
        .await
        .ok()
        .flatten();
        cri::ContainerStats {
            attributes: Some(Self::attributes(rec)),
            cpu: Some(cpu),
            memory: Some(memory),
            writable_layer: writable.map(|(bytes, inodes)| cri::FilesystemUsage {
                timestamp: now,
                fs_id: Some(cri::FilesystemIdentifier {
                    mountpoint: self.d.store.root().join("snapshots").display().to_string(),
                }),
                used_bytes: u64_value(bytes),
                inodes_used: u64_value(inodes),
            }),
        }
    }

    pub async fn container_stats(&self, id: &str) -> Result<cri::ContainerStats, Status> {
        let rec = self.find_container(id).await?;
        let rec = self.current(rec).await?;
        Ok(self.stats_of(&rec).await)
    }

    pub async fn container_stats_list(
        &self,
        filter: Option<cri::ContainerStatsFilter>,
    ) -> Result<Vec<cri::ContainerStats>, Status> {
        let f = filter.unwrap_or_default();
        let recs = self
            .current_records(&f.id, &f.pod_sandbox_id, &f.label_selector)
            .await?;
        let mut out = Vec::new();
        for r in &recs {
            out.push(self.stats_of(r).await);
        }
        Ok(out)
    }

    async fn pod_stats_of(&self, sandbox: &SandboxRecord) -> Result<cri::PodSandboxStats, Status> {
        let config = sandbox.config();
        let now = now_nanos();
        let recs = self
            .current_records("", &sandbox.id, &HashMap::new())
            .await?;
        let mut containers = Vec::new();
        for r in recs.iter().filter(|r| r.sandbox_id == sandbox.id) {
            containers.push(self.stats_of(r).await);
        }
        let sum =
            |f: &dyn Fn(&cri::ContainerStats) -> u64| -> u64 { containers.iter().map(f).sum() };
        let cpu = sum(&|c| {
            c.cpu
                .as_ref()
                .and_then(|u| u.usage_core_nano_seconds.as_ref())
                .map_or(0, |v| v.value)
        });
        let ws = sum(&|c| {
            c.memory
                .as_ref()
                .and_then(|m| m.working_set_bytes.as_ref())
                .map_or(0, |v| v.value)
        });
        let usage = sum(&|c| {
            c.memory
                .as_ref()
                .and_then(|m| m.usage_bytes.as_ref())
                .map_or(0, |v| v.value)
        });
        Ok(cri::PodSandboxStats {
            attributes: Some(cri::PodSandboxAttributes {
                id: sandbox.id.clone(),
                metadata: config.metadata,
                labels: config.labels,
                annotations: config.annotations,
            }),
            linux: Some(cri::LinuxPodSandboxStats {
                cpu: Some(cri::CpuUsage {
                    timestamp: now,
                    usage_core_nano_seconds: u64_value(cpu),
                    usage_nano_cores: None,
                }),
                memory: Some(cri::MemoryUsage {
                    timestamp: now,
                    working_set_bytes: u64_value(ws),
                    usage_bytes: u64_value(usage),
                    ..Default::default()
                }),
                network: None,
                process: Some(cri::ProcessUsage {
                    timestamp: now,
                    process_count: None,
                }),
                containers,
            }),
            windows: None,
        })
    }

    pub async fn pod_stats(&self, id: &str) -> Result<cri::PodSandboxStats, Status> {
        let sandbox = self
            .find_sandbox(id)
            .await?
            .ok_or_else(|| Status::not_found(format!("pod sandbox {id:?} not found")))?;
        self.pod_stats_of(&sandbox).await
    }

    pub async fn pod_stats_list(
        &self,
        filter: Option<cri::PodSandboxStatsFilter>,
    ) -> Result<Vec<cri::PodSandboxStats>, Status> {
        let f = filter.unwrap_or_default();
        let mut out = Vec::new();
        for s in self.sandbox_records().await? {
            if !s.id.starts_with(&f.id) || !label_match(&s.config().labels, &f.label_selector) {
                continue;
            }
            out.push(self.pod_stats_of(&s).await?);
        }
        Ok(out)
    }

    /// The containers of a pod sandbox.
    pub async fn pod_containers(&self, sandbox_id: &str) -> Result<Vec<String>, Status> {
        Ok(self
            .cri_records()
            .await?
            .into_iter()
            .filter(|r| r.sandbox_id == sandbox_id)
            .map(|r| r.id)
            .collect())
    }

    /// The PID namespace a pod's containers share, held by its pause.
    fn pod_pid_ns(&self, sandbox: &SandboxRecord) -> Option<PathBuf> {
        if sandbox.pause {
            self.pause_pid_ns(&sandbox.id)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_output_is_split_by_stream() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("e.log");
        std::fs::write(
            &log,
            concat!(
                r#"{"log":"hello\n","stream":"stdout","time":"t"}"#,
                "\n",
                r#"{"log":"oops","stream":"stderr","time":"t"}"#,
                "\n"
            ),
        )
        .unwrap();
        let (out, err) = exec_output(&log);
        assert_eq!(out, b"hello\n");
        assert_eq!(err, b"oops");
    }

    #[test]
    fn stats_working_set_leaves_out_inactive_files() {
        let v = serde_json::json!({
            "cpu": {"usage": {"total": 42}},
            "memory": {"usage": {"usage": 1000}, "raw": {"total_inactive_file": 300}}
        });
        let (cpu, mem) = usage_from(&v, 1);
        assert_eq!(cpu.usage_core_nano_seconds.unwrap().value, 42);
        assert_eq!(mem.working_set_bytes.unwrap().value, 700);
    }

    #[test]
    fn stop_signals() {
        assert_eq!(stop_signal(""), libc::SIGTERM as u32);
        assert_eq!(stop_signal("SIGQUIT"), libc::SIGQUIT as u32);
        assert_eq!(stop_signal("quit"), libc::SIGQUIT as u32);
        assert_eq!(stop_signal("9"), 9);
        assert_eq!(stop_signal("nonsense"), libc::SIGTERM as u32);
    }

    #[test]
    fn reasons() {
        let e = |status, oom| Exit {
            pid: 1,
            exit_status: status,
            exited_at: String::new(),
            oom_killed: oom,
            reason: String::new(),
        };
        assert_eq!(reason_for(&e(0, false)), "Completed");
        assert_eq!(reason_for(&e(1, false)), "Error");
        assert_eq!(reason_for(&e(137, true)), "OOMKilled");
    }
}
