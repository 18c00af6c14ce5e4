//! The pause process of a pod whose containers share a PID namespace (the CRI's
//! default, `namespace_options.pid == POD`): a PID namespace cannot be pinned
//! without a live PID 1, so `berth-init --pause` holds it. It runs as an ordinary
//! manager container and task with the sandbox's id (its shim outlives the manager,
//! like every task), in the pod's pinned network, IPC and UTS namespaces, on a
//! root of its own holding only a copy of berth-init. Containers join it through
//! `/proc/<its pid>/ns/pid`.

use std::path::{Path, PathBuf};

use berth_api::berth::manager::v1 as pb;
use serde_json::json;
use tonic::Status;

use super::sandbox::SandboxRecord;
use super::Cri;
use crate::daemon::config::find_program;
use crate::daemon::error::DaemonError;

/// The manager label naming the pod sandbox a pause container holds.
pub const PAUSE_LABEL: &str = "io.berth.cri.pause";

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

/// `<sandbox dir>/pause`: berth-init and the directories the runtime mounts on.
fn make_root(dir: &Path, init: &Path) -> Result<PathBuf, Status> {
    use std::os::unix::fs::PermissionsExt;
    let root = dir.join("pause");
    for sub in ["dev", "proc"] {
        std::fs::create_dir_all(root.join(sub)).map_err(internal)?;
    }
    let bin = root.join("berth-init");
    std::fs::copy(init, &bin).map_err(|e| {
        Status::internal(format!(
            "copying {} for the pod's pause: {e}",
            init.display()
        ))
    })?;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).map_err(internal)?;
    Ok(root)
}

fn pause_spec(rec: &SandboxRecord, root: &Path) -> serde_json::Value {
    let mut namespaces = vec![json!({"type": "pid"}), json!({"type": "mount"})];
    if let Some(net) = rec.netns() {
        namespaces.push(json!({"type": "network", "path": net}));
        namespaces.push(json!({"type": "uts", "path": rec.dir.join("uts")}));
    }
    if rec.own_ipc {
        namespaces.push(json!({"type": "ipc", "path": rec.dir.join("ipc")}));
    }
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["/berth-init", "--pause"],
            "env": ["PATH=/"],
            "cwd": "/",
            "capabilities": {"bounding": [], "effective": [], "permitted": []},
            "noNewPrivileges": true,
        },
        "root": {"path": root, "readonly": true},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        ],
        "linux": {
            "cgroupsPath": format!("/berth/{}", rec.id),
            "namespaces": namespaces,
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "maskedPaths": [],
            "readonlyPaths": [],
        },
    })
}

impl Cri {
    /// Start the pod's pause (for a pod whose containers share its PID namespace).
    pub async fn pause_start(&self, rec: &SandboxRecord) -> Result<(), Status> {
        let init = find_program(std::ffi::OsStr::new("berth-init"))
            .or_else(|| {
                self.d
                    .settings
                    .shim
                    .parent()
                    .map(|d| d.join("berth-init"))
                    .filter(|p| p.is_file())
            })
            .ok_or_else(|| {
                Status::failed_precondition(
                    "berth-init is needed as the pause process of a pod sharing its PID namespace, and was not found beside berth-manager or in PATH",
                )
            })?;
        let root = make_root(&rec.dir, &init)?;
        let spec = pause_spec(rec, &root);
        self.d
            .create_container(pb::Container {
                id: rec.id.clone(),
                image: String::new(),
                spec: serde_json::to_vec(&spec).map_err(internal)?,
                snapshot_key: String::new(),
                labels: [(PAUSE_LABEL.to_string(), rec.id.clone())].into(),
                runtime: String::new(),
                log_path: String::new(),
                created_at: String::new(),
                updated_at: String::new(),
            })
            .await?;
        let started = self.d.create_and_start_task(&rec.id, false).await;
        if let Err(e) = started {
            let _ = self.pause_remove(&rec.id).await;
            return Err(e.into());
        }
        Ok(())
    }

    /// Stop and forget the pod's pause (if it has one): its PID namespace goes,
    /// and with it whatever still ran in it.
    pub async fn pause_remove(&self, id: &str) -> Result<(), Status> {
        if self.d.task_opt(id).is_some() {
            match self.d.delete_task(id, true).await {
                Ok(_) | Err(DaemonError::NoTask(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        match self.d.container(id).await {
            Ok(c) if c.labels.contains_key(PAUSE_LABEL) => {
                match self.d.delete_container(id, false).await {
                    Ok(()) | Err(DaemonError::ContainerNotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The PID namespace of a pod's pause, while it runs.
    pub fn pause_pid_ns(&self, id: &str) -> Option<PathBuf> {
        let task = self.d.task_opt(id)?;
        if task.exit().is_some() {
            return None;
        }
        let pid = task.record().pid;
        (pid != 0).then(|| PathBuf::from(format!("/proc/{pid}/ns/pid")))
    }

    /// At start: the pause of a pod that is gone or not ready any more (its
    /// namespaces vanished, as at a reboot) goes too, so that it holds no network
    /// namespace (and its veth) alive.
    pub async fn reconcile_pauses(&self) -> Result<(), Status> {
        let ours = self
            .d
            .list_containers(vec![format!("label={PAUSE_LABEL}")])
            .await?;
        let ready: std::collections::HashSet<String> = self
            .sandbox_records()
            .await?
            .into_iter()
            .filter(|r| r.ready)
            .map(|r| r.id)
            .collect();
        for c in ours {
            if !ready.contains(&c.id) {
                tracing::warn!(id = %c.id, "CRI: removing the pause of a pod that is gone or not ready");
                if let Err(e) = self.pause_remove(&c.id).await {
                    tracing::warn!(id = %c.id, "CRI: removing a pause: {}", e.message());
                }
            }
        }
        Ok(())
    }
}
