//! The daemon's state and its container operations: the store, the container
//! database, the tasks, the event bus, and per-container locks.
//!
//! Locking: one async lock per container id serialises what changes that
//! container's life (create, start, delete, pause...); nothing is locked across
//! containers, so creating or starting many containers at once runs in parallel.
//! Blocking work (the store, the database) runs on tokio's blocking threads.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use berth_api::berth::manager::v1 as pb;
use berth_api::berth::manager::v1::envelope::Event;
use berth_manager::snapshots::{SnapshotError, VOLATILE_LABEL};
use berth_manager::{Store, StoreError};
use tokio::sync::OwnedMutexGuard;

use super::config::LogLevel;
use super::containers::{ContainerDb, ContainerRecord};
use super::error::DaemonError;
use super::events::Events;
use super::now_rfc3339;
use super::task::Task;

/// Where things live and what the daemon starts.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `<state>/tasks`: one directory per task.
    pub tasks_dir: PathBuf,
    /// `<state>/runtime`: the OCI runtime's `--root`.
    pub runtime_root: PathBuf,
    pub default_runtime: OsString,
    pub shim: PathBuf,
    pub log_level: LogLevel,
    /// The default runtime's `--version` first line ("" if unknown).
    pub runtime_version: String,
}

/// Async locks by key, forgotten when nobody holds or waits for them.
#[derive(Debug, Default)]
pub struct KeyedLocks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl KeyedLocks {
    pub async fn lock(&self, key: &str) -> OwnedMutexGuard<()> {
        let m = {
            let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            map.retain(|_, m| Arc::strong_count(m) > 1);
            Arc::clone(map.entry(key.to_string()).or_default())
        };
        m.lock_owned().await
    }
}

/// Everything the services share.
#[derive(Debug)]
pub struct Daemon {
    pub store: Arc<Store>,
    pub db: ContainerDb,
    pub events: Events,
    pub settings: Settings,
    pub locks: KeyedLocks,
    tasks: Mutex<HashMap<String, Arc<Task>>>,
}

/// Run blocking work on tokio's blocking threads.
pub async fn blocking<T, F>(f: F) -> Result<T, DaemonError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, DaemonError> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await?
}

/// Container and task ids name directories and cgroups: keep them plain.
pub fn check_id(id: &str) -> Result<(), DaemonError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(DaemonError::BadId(id.to_string()))
    }
}

/// The spec must be a JSON object; it is kept as the client's text.
pub(super) fn check_spec(id: &str, spec: &[u8]) -> Result<String, DaemonError> {
    let bad = |why: String| DaemonError::BadSpec {
        id: id.to_string(),
        why,
    };
    if spec.is_empty() {
        return Err(bad("it is empty".to_string()));
    }
    let text = std::str::from_utf8(spec).map_err(|e| bad(e.to_string()))?;
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    if !v.is_object() {
        return Err(bad("it is not an object".to_string()));
    }
    if v.get("process").is_some_and(|p| !p.is_object()) {
        return Err(bad("\"process\" is not an object".to_string()));
    }
    Ok(text.to_string())
}

fn check_log_path(p: &str) -> Result<(), DaemonError> {
    if !p.is_empty() && !Path::new(p).is_absolute() {
        return Err(DaemonError::RelativeLogPath(p.to_string()));
    }
    Ok(())
}

pub fn container_pb(r: &ContainerRecord) -> pb::Container {
    pb::Container {
        id: r.id.clone(),
        image: r.image.clone(),
        spec: r.spec.clone().into_bytes(),
        snapshot_key: r.snapshot_key.clone(),
        labels: r.labels.clone().into_iter().collect(),
        runtime: r.runtime.clone(),
        log_path: r.log_path.clone(),
        created_at: r.created_at.clone(),
        updated_at: r.updated_at.clone(),
    }
}

/// A label filter `k` or `k=v` against a label map.
pub fn label_matches(labels: &BTreeMap<String, String>, want: &str) -> bool {
    match want.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(want),
    }
}

impl Daemon {
    pub fn new(store: Arc<Store>, db: ContainerDb, settings: Settings) -> Daemon {
        Daemon {
            store,
            db,
            events: Events::default(),
            settings,
            locks: KeyedLocks::default(),
            tasks: Mutex::new(HashMap::new()),
        }
    }

    fn tasks(&self) -> MutexGuard<'_, HashMap<String, Arc<Task>>> {
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn task_opt(&self, id: &str) -> Option<Arc<Task>> {
        self.tasks().get(id).cloned()
    }

    /// The task of container `id`.
    pub fn task(&self, id: &str) -> Result<Arc<Task>, DaemonError> {
        self.task_opt(id)
            .ok_or_else(|| DaemonError::NoTask(id.to_string()))
    }

    pub fn all_tasks(&self) -> Vec<Arc<Task>> {
        let mut v: Vec<Arc<Task>> = self.tasks().values().cloned().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    pub fn insert_task(&self, task: Arc<Task>) {
        self.tasks().insert(task.id.clone(), task);
    }

    pub fn remove_task(&self, id: &str) {
        self.tasks().remove(id);
    }

    pub fn task_dir(&self, id: &str) -> PathBuf {
        self.settings.tasks_dir.join(id)
    }

    /// Where the snapshot `key` is mounted by a task now: the rootfs of the bundle
    /// of the live task whose container uses it. `owner` is the container the
    /// snapshot says it was made for (its `berth.container` label): then only that
    /// container's task is looked at, not every task's container record (an
    /// `inspect` must not cost a read per container on the host).
    pub async fn mounted_rootfs(
        self: &Arc<Self>,
        key: &str,
        owner: Option<&str>,
    ) -> Option<PathBuf> {
        if let Some(owner) = owner {
            let task = self.task_opt(owner).filter(|t| !t.is_gone())?;
            let c = self.container(&task.id).await.ok()?;
            return (c.snapshot_key == key)
                .then(|| task.dir.join(berth_shim_contract::layout::ROOTFS));
        }
        for task in self.all_tasks() {
            if task.is_gone() {
                continue;
            }
            let Ok(c) = self.container(&task.id).await else {
                continue;
            };
            if c.snapshot_key == key {
                return Some(task.dir.join(berth_shim_contract::layout::ROOTFS));
            }
        }
        None
    }

    /// The container record of `id`.
    pub async fn container(self: &Arc<Self>, id: &str) -> Result<ContainerRecord, DaemonError> {
        let this = Arc::clone(self);
        let key = id.to_string();
        blocking(move || this.db.get(&key).map_err(DaemonError::from))
            .await?
            .ok_or_else(|| DaemonError::ContainerNotFound(id.to_string()))
    }

    pub async fn create_container(
        self: &Arc<Self>,
        c: pb::Container,
    ) -> Result<pb::Container, DaemonError> {
        check_id(&c.id)?;
        let spec = check_spec(&c.id, &c.spec)?;
        check_log_path(&c.log_path)?;
        let _lock = self.locks.lock(&c.id).await;
        let this = Arc::clone(self);
        let rec = blocking(move || {
            if this.db.get(&c.id)?.is_some() {
                return Err(DaemonError::ContainerExists(c.id));
            }
            if !c.image.is_empty() {
                this.store.image(&c.image)?;
            }
            let mut key = c.snapshot_key.clone();
            let mut made = false;
            if key.is_empty() && !c.image.is_empty() {
                let mut labels =
                    BTreeMap::from([(berth_manager::snapshots::CONTAINER_LABEL.to_string(), c.id.clone())]);
                if let Some(v) = c.labels.get(VOLATILE_LABEL) {
                    labels.insert(VOLATILE_LABEL.to_string(), v.clone());
                }
                this.store.prepare_container(&c.id, &c.image, labels)?;
                key = c.id.clone();
                made = true;
            } else if !key.is_empty()
                && !this
                    .store
                    .snapshotter()
                    .exists(&key)
                    .map_err(StoreError::from)?
            {
                return Err(StoreError::from(SnapshotError::NotFound(key)).into());
            }
            let now = now_rfc3339();
            let rec = ContainerRecord {
                id: c.id.clone(),
                image: c.image,
                spec,
                snapshot_key: key.clone(),
                labels: c.labels.into_iter().collect(),
                runtime: c.runtime,
                log_path: c.log_path,
                created_at: now.clone(),
                updated_at: now,
            };
            let inserted = this.db.insert_new(&rec);
            if !matches!(inserted, Ok(true)) && made {
                // Nothing of a refused container stays behind.
                if let Err(e) = this.store.snapshotter().remove(&key) {
                    tracing::warn!(snapshot = %key, "removing the snapshot of a refused container: {e}");
                }
            }
            match inserted {
                Ok(true) => Ok(rec),
                Ok(false) => Err(DaemonError::ContainerExists(c.id)),
                Err(e) => Err(e.into()),
            }
        })
        .await?;
        tracing::info!(id = %rec.id, image = %rec.image, snapshot = %rec.snapshot_key, "container created");
        self.events
            .publish(Event::ContainerCreate(pb::ContainerEvent {
                id: rec.id.clone(),
                image: rec.image.clone(),
            }));
        Ok(container_pb(&rec))
    }

    pub async fn list_containers(
        self: &Arc<Self>,
        filters: Vec<String>,
    ) -> Result<Vec<pb::Container>, DaemonError> {
        let mut want: Vec<(String, String)> = Vec::new();
        for f in &filters {
            match f.split_once('=') {
                Some((k @ ("label" | "id" | "image"), v)) if !v.is_empty() => {
                    want.push((k.to_string(), v.to_string()))
                }
                _ => return Err(DaemonError::BadFilter(f.clone())),
            }
        }
        let this = Arc::clone(self);
        let all = blocking(move || this.db.list().map_err(DaemonError::from)).await?;
        let normalized =
            |r: &str| berth_manager::images::normalize(r).unwrap_or_else(|_| r.to_string());
        Ok(all
            .iter()
            .filter(|r| {
                want.iter().all(|(k, v)| match k.as_str() {
                    "label" => label_matches(&r.labels, v),
                    "id" => r.id.starts_with(v.as_str()),
                    _ => r.image == *v || normalized(&r.image) == normalized(v),
                })
            })
            .map(container_pb)
            .collect())
    }

    pub async fn update_container(
        self: &Arc<Self>,
        c: pb::Container,
        mask: Vec<String>,
    ) -> Result<pb::Container, DaemonError> {
        const FIELDS: [&str; 5] = ["spec", "labels", "log_path", "runtime", "image"];
        let mask: Vec<String> = if mask.is_empty() {
            FIELDS.iter().map(|s| s.to_string()).collect()
        } else {
            mask
        };
        if let Some(bad) = mask.iter().find(|m| !FIELDS.contains(&m.as_str())) {
            return Err(DaemonError::BadUpdateField(bad.clone()));
        }
        let _lock = self.locks.lock(&c.id).await;
        let mut rec = self.container(&c.id).await?;
        for m in &mask {
            match m.as_str() {
                "spec" => rec.spec = check_spec(&c.id, &c.spec)?,
                "labels" => rec.labels = c.labels.clone().into_iter().collect(),
                "log_path" => {
                    check_log_path(&c.log_path)?;
                    rec.log_path = c.log_path.clone();
                }
                "runtime" => rec.runtime = c.runtime.clone(),
                _ => rec.image = c.image.clone(),
            }
        }
        let rec = self.save_updated(rec).await?;
        Ok(container_pb(&rec))
    }

    /// Writes a changed container record (the caller holds its lock) and tells
    /// the subscribers.
    pub(crate) async fn save_updated(
        self: &Arc<Self>,
        mut rec: ContainerRecord,
    ) -> Result<ContainerRecord, DaemonError> {
        rec.updated_at = now_rfc3339();
        let this = Arc::clone(self);
        let r = rec.clone();
        blocking(move || this.db.put(&r).map_err(DaemonError::from)).await?;
        self.events
            .publish(Event::ContainerUpdate(pb::ContainerEvent {
                id: rec.id.clone(),
                image: rec.image.clone(),
            }));
        Ok(rec)
    }

    pub async fn delete_container(
        self: &Arc<Self>,
        id: &str,
        keep_snapshot: bool,
    ) -> Result<(), DaemonError> {
        let _lock = self.locks.lock(id).await;
        let rec = self.container(id).await?;
        if self.task_opt(id).is_some() || self.task_dir(id).exists() {
            return Err(DaemonError::ContainerHasTask(id.to_string()));
        }
        let this = Arc::clone(self);
        let r = rec.clone();
        blocking(move || {
            // The snapshot first: a crash in between leaves a record whose snapshot
            // is gone (deleting it again works), never a snapshot nothing owns.
            if !keep_snapshot && !r.snapshot_key.is_empty() {
                match this.store.snapshotter().remove(&r.snapshot_key) {
                    Ok(()) | Err(SnapshotError::NotFound(_)) => {}
                    Err(e) => return Err(StoreError::from(e).into()),
                }
            }
            this.db.delete(&r.id)?;
            Ok(())
        })
        .await?;
        tracing::info!(id, "container deleted");
        self.events
            .publish(Event::ContainerDelete(pb::ContainerEvent {
                id: rec.id,
                image: rec.image,
            }));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_plain() {
        for ok in ["a", "abc-1", "A.b_c", &"x".repeat(128)] {
            assert!(check_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".a", "-a", "a/b", "..", "a b", &"x".repeat(129)] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn specs_must_be_json_objects() {
        assert!(check_spec("c", br#"{"process":{"args":["sh"]}}"#).is_ok());
        for bad in [&b""[..], b"[]", b"{", b"{\"process\":1}", b"\xff"] {
            assert!(check_spec("c", bad).is_err());
        }
    }

    #[test]
    fn label_filters() {
        let l = BTreeMap::from([("a".to_string(), "1".to_string())]);
        assert!(label_matches(&l, "a"));
        assert!(label_matches(&l, "a=1"));
        assert!(!label_matches(&l, "a=2"));
        assert!(!label_matches(&l, "b"));
    }
}
