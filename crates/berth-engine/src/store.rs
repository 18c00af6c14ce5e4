//! The engine's container store: one `config.v2.json` per container under
//! `<data-root>/containers/<id>/`, written atomically, read back when berthd starts,
//! and an in-memory index of names and ids that resolves what clients type (a full id,
//! a name with or without its leading `/`, or a unique id prefix) the way dockerd does.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use bollard_stubs::models::{ContainerConfig, ContainerState, HostConfig};
use serde::{Deserialize, Serialize};

use crate::fsutil;

/// Errors of the container store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Nothing matches what the client typed.
    #[error("No such container: {0}")]
    NoSuchContainer(String),
    /// The name is taken.
    #[error("Conflict. The container name \"{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name.")]
    NameConflict { name: String, id: String },
    /// A name dockerd would refuse.
    #[error("Invalid container name ({0}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    InvalidName(String),
    /// An id prefix that matches more than one container.
    #[error("Multiple IDs found with provided prefix: {0}")]
    AmbiguousPrefix(String),
    /// Reading or writing the store's files failed.
    #[error("{context} {path}: {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A record could not be turned into JSON.
    #[error("encoding the config of container {id}: {source}")]
    Encode {
        id: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Everything the engine keeps about one container, as `config.v2.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    #[serde(rename = "ID")]
    pub id: String,
    /// With the leading slash, like dockerd: `/web`.
    #[serde(rename = "Name")]
    pub name: String,
    /// RFC 3339 with nanoseconds.
    #[serde(rename = "Created")]
    pub created: String,
    #[serde(rename = "Path")]
    pub path: String,
    #[serde(rename = "Args")]
    pub args: Vec<String>,
    #[serde(rename = "Config")]
    pub config: ContainerConfig,
    #[serde(rename = "HostConfig")]
    pub host_config: HostConfig,
    #[serde(rename = "State")]
    pub state: ContainerState,
    /// The image id (`sha256:...`).
    #[serde(rename = "Image")]
    pub image: String,
    #[serde(rename = "RestartCount")]
    pub restart_count: i64,
    #[serde(rename = "LogPath")]
    pub log_path: String,
    /// The manager's snapshot key for the writable layer.
    #[serde(rename = "SnapshotKey", default)]
    pub snapshot_key: String,
    #[serde(rename = "HasBeenStartedBefore", default)]
    pub has_been_started_before: bool,
    /// Set by `stop`/`kill` from a user, so `unless-stopped` does not restart it.
    #[serde(rename = "HasBeenManuallyStopped", default)]
    pub has_been_manually_stopped: bool,
    #[serde(rename = "ExecIDs", default)]
    pub exec_ids: Vec<String>,
    /// The key of the `die` event of the last exit while it may not be published
    /// yet: written with the exit, cleared once the event is in the journal, and
    /// published at berthd's start if it never was.
    #[serde(
        rename = "PendingDie",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub pending_die: Option<String>,
}

impl ContainerRecord {
    /// The 12-character id dockerd shows.
    pub fn short_id(&self) -> &str {
        short_id(&self.id)
    }
}

/// The first 12 characters of an id.
pub fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// Record `id` of `idx` as it is and after `change` (its id and name kept).
fn changed<F>(
    idx: &Index,
    id: &str,
    change: F,
) -> Result<(Arc<ContainerRecord>, ContainerRecord), StoreError>
where
    F: FnOnce(&mut ContainerRecord),
{
    let rec = idx
        .by_id
        .get(id)
        .ok_or_else(|| StoreError::NoSuchContainer(id.to_string()))?;
    let mut new = ContainerRecord::clone(rec);
    change(&mut new);
    new.id = id.to_string();
    new.name = rec.name.clone();
    Ok((rec.clone(), new))
}

#[derive(Debug, Default)]
struct Index {
    /// Shared, so that listing hundreds of containers copies pointers, not records;
    /// a change replaces the whole record.
    by_id: HashMap<String, Arc<ContainerRecord>>,
    /// The same records newest first (dockerd's `ps` order), so that a list is not
    /// sorted at every request. A record's creation time and id never change.
    by_created: BTreeMap<(Reverse<String>, String), Arc<ContainerRecord>>,
    /// `/name` -> id.
    names: HashMap<String, String>,
    /// Counts the changes of `by_id`, so that what is built from every record (the
    /// container list) knows when to build it again.
    version: u64,
    /// Which container each of the last changes concerned.
    log: crate::changelog::ChangeLog,
}

impl Index {
    /// Adds or replaces a record.
    fn put(&mut self, rec: Arc<ContainerRecord>) {
        self.version += 1;
        self.log.record(self.version, Some(&rec.id));
        if let Some(old) = self.by_id.insert(rec.id.clone(), rec.clone()) {
            self.by_created
                .remove(&(Reverse(old.created.clone()), old.id.clone()));
        }
        self.by_created
            .insert((Reverse(rec.created.clone()), rec.id.clone()), rec);
    }

    fn take(&mut self, id: &str) -> Option<Arc<ContainerRecord>> {
        let rec = self.by_id.remove(id)?;
        self.version += 1;
        self.log.record(self.version, Some(id));
        self.by_created
            .remove(&(Reverse(rec.created.clone()), rec.id.clone()));
        Some(rec)
    }
}

/// The store. All methods are synchronous and short; the files are small.
#[derive(Debug)]
pub struct ContainerStore {
    root: PathBuf,
    index: RwLock<Index>,
    /// The writers of a record, one at a time, from the read of the record a change
    /// starts from until the change is in the index (ids spread over a few locks).
    /// The disk write and its fsync happen under this lock only: every request
    /// reads the index, and a sync takes milliseconds, so holding the index for it
    /// stalled every reader (and every other container's writer) behind each one.
    writers: [Mutex<()>; WRITER_LOCKS],
}

const WRITER_LOCKS: usize = 64;

/// Which of the writer locks is record `id`'s.
fn writer_of(id: &str) -> usize {
    let mut h = rustc_hash::FxHasher::default();
    h.write(id.as_bytes());
    (h.finish() % WRITER_LOCKS as u64) as usize
}

const CONFIG_FILE: &str = "config.v2.json";

/// Docker's rule for names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+` after an optional `/`.
pub fn valid_name(name: &str) -> bool {
    let n = name.strip_prefix('/').unwrap_or(name);
    let mut chars = n.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    let rest = chars.as_str();
    !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn slash_name(name: &str) -> String {
    if name.starts_with('/') {
        name.to_string()
    } else {
        format!("/{name}")
    }
}

impl ContainerStore {
    /// Opens the store at `<data-root>/containers`, creating it, and loads every
    /// container found there. A record that cannot be read is skipped with a warning
    /// rather than keeping berthd from starting.
    pub fn open(root: &Path) -> Result<ContainerStore, StoreError> {
        fs::create_dir_all(root).map_err(|source| StoreError::Io {
            context: "creating",
            path: root.to_path_buf(),
            source,
        })?;
        let mut index = Index::default();
        let entries = fs::read_dir(root).map_err(|source| StoreError::Io {
            context: "reading",
            path: root.to_path_buf(),
            source,
        })?;
        for entry in entries.flatten() {
            let file = entry.path().join(CONFIG_FILE);
            let data = match fs::read(&file) {
                Ok(d) => d,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    tracing::warn!(path = %file.display(), error = %e, "skipping container");
                    continue;
                }
            };
            match serde_json::from_slice::<ContainerRecord>(&data) {
                Ok(rec) => {
                    index.names.insert(slash_name(&rec.name), rec.id.clone());
                    index.put(Arc::new(rec));
                }
                Err(e) => {
                    tracing::warn!(path = %file.display(), error = %e, "skipping unreadable container config");
                }
            }
        }
        Ok(ContainerStore {
            root: root.to_path_buf(),
            index: RwLock::new(index),
            writers: std::array::from_fn(|_| Mutex::new(())),
        })
    }

    /// The lock of the writers of record `id` (see `writers`).
    fn writer(&self, id: &str) -> MutexGuard<'_, ()> {
        self.writers[writer_of(id)]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        match self.index.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        match self.index.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// `<data-root>/containers/<id>`.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Writes a record with `write`: [`fsutil::atomic_write`] for a new one (its
    /// name must be durable too), [`fsutil::atomic_replace`] for a change of one
    /// already on disk (a power loss finds the old record or the new, and berthd
    /// recovers from either as from a crash just before or after the change).
    fn persist(
        &self,
        rec: &ContainerRecord,
        write: fn(&Path, &[u8], u32) -> std::io::Result<()>,
    ) -> Result<(), StoreError> {
        let dir = self.container_dir(&rec.id);
        fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
            context: "creating",
            path: dir.clone(),
            source,
        })?;
        let data = serde_json::to_vec(rec).map_err(|source| StoreError::Encode {
            id: rec.id.clone(),
            source,
        })?;
        let path = dir.join(CONFIG_FILE);
        write(&path, &data, 0o600).map_err(|source| StoreError::Io {
            context: "writing",
            path,
            source,
        })
    }

    /// Adds a new container; its name must be valid and free. Writes it to disk first.
    pub fn create(&self, rec: ContainerRecord) -> Result<ContainerRecord, StoreError> {
        self.create_with(rec, fsutil::atomic_write)
    }

    /// [`ContainerStore::create`] that syncs the record's contents but leaves its
    /// name to a sync of the container's directory that the caller makes next (a
    /// create writes its `network.json` there, and that write syncs the
    /// directory once for both files).
    pub fn create_name_synced_later(
        &self,
        rec: ContainerRecord,
    ) -> Result<ContainerRecord, StoreError> {
        self.create_with(rec, fsutil::atomic_replace)
    }

    fn create_with(
        &self,
        mut rec: ContainerRecord,
        write: fn(&Path, &[u8], u32) -> std::io::Result<()>,
    ) -> Result<ContainerRecord, StoreError> {
        if !valid_name(&rec.name) {
            return Err(StoreError::InvalidName(
                rec.name.trim_start_matches('/').to_string(),
            ));
        }
        rec.name = slash_name(&rec.name);
        let _writer = self.writer(&rec.id);
        // The name is taken before the write, so that no other create gets it
        // meanwhile; until the record is in the index it resolves to no container.
        self.reserve_name(&rec.name, &rec.id)?;
        if let Err(e) = self.persist(&rec, write) {
            self.write().names.remove(&rec.name);
            return Err(e);
        }
        self.write().put(Arc::new(rec.clone()));
        Ok(rec)
    }

    /// Takes `name` for container `id`, if it is free.
    fn reserve_name(&self, name: &str, id: &str) -> Result<(), StoreError> {
        let mut idx = self.write();
        if let Some(other) = idx.names.get(name) {
            return Err(StoreError::NameConflict {
                name: name.to_string(),
                id: other.clone(),
            });
        }
        idx.names.insert(name.to_string(), id.to_string());
        Ok(())
    }

    /// Whether a record with exactly this id exists (no name or prefix lookup).
    pub fn has_id(&self, id: &str) -> bool {
        self.read().by_id.contains_key(id)
    }

    /// Whether a name (with or without `/`) is taken.
    pub fn name_taken(&self, name: &str) -> bool {
        self.read().names.contains_key(&slash_name(name))
    }

    /// Resolves what a client typed to a full id: an exact id, then a name, then a
    /// unique id prefix, in dockerd's order.
    pub fn resolve(&self, reference: &str) -> Result<String, StoreError> {
        let idx = self.read();
        if reference.is_empty() {
            return Err(StoreError::NoSuchContainer(reference.to_string()));
        }
        if idx.by_id.contains_key(reference) {
            return Ok(reference.to_string());
        }
        if let Some(id) = idx.names.get(&slash_name(reference)) {
            return Ok(id.clone());
        }
        let mut found = idx.by_id.keys().filter(|id| id.starts_with(reference));
        match (found.next(), found.next()) {
            (Some(id), None) => Ok(id.clone()),
            (Some(_), Some(_)) => Err(StoreError::AmbiguousPrefix(reference.to_string())),
            _ => Err(StoreError::NoSuchContainer(reference.to_string())),
        }
    }

    /// The record for what a client typed.
    pub fn get(&self, reference: &str) -> Result<ContainerRecord, StoreError> {
        let id = self.resolve(reference)?;
        self.read()
            .by_id
            .get(&id)
            .map(|r| ContainerRecord::clone(r))
            .ok_or_else(|| StoreError::NoSuchContainer(reference.to_string()))
    }

    /// Changes a record and writes it back; returns the new record.
    pub fn update<F>(&self, id: &str, change: F) -> Result<ContainerRecord, StoreError>
    where
        F: FnOnce(&mut ContainerRecord),
    {
        self.update_with(id, fsutil::atomic_replace, change)
    }

    /// [`ContainerStore::update`] without the fsync, for a change that a power loss
    /// may undo: one whose record before and after both end the same way (berthd
    /// recovers from either to the same state). A crash of berthd alone loses
    /// nothing (the rename is in the page cache).
    pub fn update_volatile<F>(&self, id: &str, change: F) -> Result<ContainerRecord, StoreError>
    where
        F: FnOnce(&mut ContainerRecord),
    {
        self.update_with(id, fsutil::atomic_write_volatile, change)
    }

    /// Writes, durably, what the record will be after `change`, without making it
    /// what berthd shows: for a change whose durable part can be written ahead of
    /// the event it records, while that event happens (a start: `running` is on
    /// disk by the time the task is, and the task's pid follows with
    /// [`ContainerStore::update_volatile`]). Writing the record again afterwards
    /// (any update) replaces it; with no change it takes a write ahead back.
    pub fn persist_ahead<F>(&self, id: &str, change: F) -> Result<(), StoreError>
    where
        F: FnOnce(&mut ContainerRecord),
    {
        // Held while writing, as an update does: no other write of this record
        // comes between the read and the rename.
        let _writer = self.writer(id);
        let (_, new) = changed(&self.read(), id, change)?;
        self.persist(&new, fsutil::atomic_replace)
    }

    /// [`ContainerStore::update`] of what berthd shows only, the disk keeping the
    /// record as it was: for a change the record's removal follows at once (an
    /// AutoRemove exit), whose state on disk before it recovers to the same end.
    pub fn update_in_memory<F>(&self, id: &str, change: F) -> Result<ContainerRecord, StoreError>
    where
        F: FnOnce(&mut ContainerRecord),
    {
        self.update_with(id, |_, _, _| Ok(()), change)
    }

    fn update_with<F>(
        &self,
        id: &str,
        write: fn(&Path, &[u8], u32) -> std::io::Result<()>,
        change: F,
    ) -> Result<ContainerRecord, StoreError>
    where
        F: FnOnce(&mut ContainerRecord),
    {
        let _writer = self.writer(id);
        let (rec, new) = changed(&self.read(), id, change)?;
        // A change that changes nothing (a start clearing a flag that was clear)
        // costs no write and no fsync.
        if new == *rec {
            return Ok(new);
        }
        self.persist(&new, write)?;
        self.write().put(Arc::new(new.clone()));
        Ok(new)
    }

    /// Renames a container; the new name must be valid and free.
    pub fn rename(&self, id: &str, new_name: &str) -> Result<ContainerRecord, StoreError> {
        if !valid_name(new_name) {
            return Err(StoreError::InvalidName(new_name.to_string()));
        }
        let new_name = slash_name(new_name);
        let _writer = self.writer(id);
        let mut new = self
            .read()
            .by_id
            .get(id)
            .map(|r| ContainerRecord::clone(r))
            .ok_or_else(|| StoreError::NoSuchContainer(id.to_string()))?;
        self.reserve_name(&new_name, id)?;
        let old_name = std::mem::replace(&mut new.name, new_name.clone());
        if let Err(e) = self.persist(&new, fsutil::atomic_replace) {
            self.write().names.remove(&new_name);
            return Err(e);
        }
        let mut idx = self.write();
        idx.names.remove(&old_name);
        idx.put(Arc::new(new.clone()));
        Ok(new)
    }

    /// Forgets a container and deletes its directory (config, log, etc files).
    pub fn remove(&self, id: &str) -> Result<(), StoreError> {
        let _writer = self.writer(id);
        {
            let mut idx = self.write();
            let rec = idx
                .take(id)
                .ok_or_else(|| StoreError::NoSuchContainer(id.to_string()))?;
            idx.names.remove(&rec.name);
        }
        let dir = self.container_dir(id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StoreError::Io {
                context: "removing",
                path: dir,
                source,
            }),
        }
    }

    /// Every container, newest first (dockerd's `ps` order), with the version of
    /// the records it is: a count that changes with every record added, changed or
    /// removed.
    pub fn list_versioned(&self) -> (u64, Vec<Arc<ContainerRecord>>) {
        let idx = self.read();
        (idx.version, idx.by_created.values().cloned().collect())
    }

    /// The version [`Self::list_versioned`] would give now.
    pub fn version(&self) -> u64 {
        self.read().version
    }

    /// Whether every record change after `version` concerned a container for which
    /// `unseen` (its id, its record now if it still has one) says yes: then what was
    /// built from the records at `version` and showed none of them still holds. No
    /// when the store no longer remembers all of those changes.
    pub fn only_unseen_since(
        &self,
        version: u64,
        mut unseen: impl FnMut(&str, Option<&ContainerRecord>) -> bool,
    ) -> bool {
        let idx = self.read();
        idx.log.only_unseen_since(version, idx.version, |id| {
            unseen(id, idx.by_id.get(id).map(|r| &**r))
        })
    }

    /// Every container, newest first (dockerd's `ps` order).
    pub fn list(&self) -> Vec<Arc<ContainerRecord>> {
        self.list_versioned().1
    }

    /// A free generated name, like dockerd's `adjective_surname`.
    pub fn generate_name(&self) -> Result<String, StoreError> {
        const ADJ: &[&str] = &[
            "brave", "calm", "eager", "fond", "gentle", "happy", "jolly", "keen", "lucid", "merry",
            "nimble", "proud", "quiet", "rapid", "steady", "tidy", "vivid", "witty", "bold",
            "clever",
        ];
        const NOUN: &[&str] = &[
            "anchor", "buoy", "cabin", "dock", "ferry", "galley", "harbor", "island", "jetty",
            "keel", "lagoon", "mast", "pier", "quay", "reef", "sail", "tide", "wharf", "yacht",
            "barge",
        ];
        let io = |source| StoreError::Io {
            context: "reading",
            path: PathBuf::from("/dev/urandom"),
            source,
        };
        for attempt in 0..100 {
            let a = ADJ[fsutil::random_below(ADJ.len()).map_err(io)?];
            let n = NOUN[fsutil::random_below(NOUN.len()).map_err(io)?];
            let name = if attempt < 10 {
                format!("{a}_{n}")
            } else {
                format!("{a}_{n}{}", fsutil::random_below(10).map_err(io)?)
            };
            if !self.name_taken(&name) {
                return Ok(name);
            }
        }
        let id = fsutil::random_id().map_err(io)?;
        Ok(format!("berth_{}", short_id(&id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, name: &str) -> ContainerRecord {
        ContainerRecord {
            id: id.to_string(),
            name: name.to_string(),
            created: format!("2024-01-01T00:00:00.{id}Z"),
            ..ContainerRecord::default()
        }
    }

    #[test]
    fn create_resolve_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContainerStore::open(dir.path()).unwrap();
        let a = "aaaa1111".repeat(8);
        let b = "aaab2222".repeat(8);
        store.create(rec(&a, "web")).unwrap();
        store.create(rec(&b, "/db")).unwrap();
        assert_eq!(store.get("web").unwrap().name, "/web");
        assert_eq!(store.resolve("/web").unwrap(), a);
        assert_eq!(store.resolve("db").unwrap(), b);
        assert_eq!(store.resolve(&a).unwrap(), a);
        assert_eq!(store.resolve("aaaa").unwrap(), a);
        assert!(matches!(
            store.resolve("aaa"),
            Err(StoreError::AmbiguousPrefix(_))
        ));
        let e = store.resolve("nope").unwrap_err();
        assert_eq!(e.to_string(), "No such container: nope");
        assert!(dir.path().join(&a).join("config.v2.json").is_file());

        // a second store over the same directory sees the same containers
        let again = ContainerStore::open(dir.path()).unwrap();
        assert_eq!(again.get("web").unwrap().id, a);
        assert_eq!(again.list().len(), 2);
    }

    /// A write that waits at `GATE` (after saying so on `ENTERED`), then writes.
    static GATE: Mutex<()> = Mutex::new(());
    static ENTERED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    fn gated_write(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
        ENTERED.store(true, std::sync::atomic::Ordering::SeqCst);
        drop(GATE.lock().unwrap_or_else(PoisonError::into_inner));
        fsutil::atomic_write(path, data, mode)
    }

    #[test]
    fn a_write_on_its_way_to_disk_holds_up_no_reader_and_no_other_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(ContainerStore::open(dir.path()).unwrap());
        let (a, b) = ("5a".repeat(32), "6b".repeat(32));
        assert_ne!(writer_of(&a), writer_of(&b));
        store.create(rec(&a, "first")).unwrap();
        let gate = GATE.lock().unwrap();
        let writer = std::thread::spawn({
            let store = store.clone();
            let b = b.clone();
            move || store.create_with(rec(&b, "second"), gated_write)
        });
        while !ENTERED.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::yield_now();
        }
        // Asked from another thread, so that a stall fails the test instead of
        // hanging it.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn({
            let store = store.clone();
            let a = a.clone();
            move || {
                let list = store.list().len();
                let got = store.get("first").map(|r| r.id);
                let updated = store
                    .update(&a, |r| r.restart_count = 1)
                    .map(|r| r.restart_count);
                // The name is taken, the record not there yet.
                let second = store.get("second").map(|r| r.id);
                let again = store.create(rec(&"7c".repeat(32), "second"));
                let _ = tx.send((list, got, updated, second, again));
            }
        });
        let (list, got, updated, second, again) = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("no answer from the store while another record was being written");
        assert_eq!(list, 1);
        assert_eq!(got.unwrap(), a);
        assert_eq!(updated.unwrap(), 1);
        assert!(matches!(second, Err(StoreError::NoSuchContainer(_))));
        assert!(matches!(again, Err(StoreError::NameConflict { .. })));
        drop(gate);
        writer.join().unwrap().unwrap();
        assert_eq!(store.get("second").unwrap().id, b);
        assert_eq!(ContainerStore::open(dir.path()).unwrap().list().len(), 2);
    }

    #[test]
    fn a_create_or_rename_that_cannot_write_leaves_the_name_free() {
        fn failing(_: &Path, _: &[u8], _: u32) -> std::io::Result<()> {
            Err(std::io::Error::other("disk full"))
        }
        let dir = tempfile::tempdir().unwrap();
        let store = ContainerStore::open(dir.path()).unwrap();
        assert!(store
            .create_with(rec(&"8d".repeat(32), "gone"), failing)
            .is_err());
        assert!(!store.name_taken("gone"));
        assert!(store.list().is_empty());
        let a = "9e".repeat(32);
        store.create(rec(&a, "kept")).unwrap();
        // A rename whose write fails: a directory where the record's file goes.
        let cfg = dir.path().join(&a).join(CONFIG_FILE);
        fs::remove_file(&cfg).unwrap();
        fs::create_dir(&cfg).unwrap();
        fs::write(cfg.join("x"), "x").unwrap();
        assert!(store.rename(&a, "other").is_err());
        assert!(!store.name_taken("other"));
        assert_eq!(store.get("kept").unwrap().id, a);
    }

    #[test]
    fn name_conflict_says_what_dockerd_says() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContainerStore::open(dir.path()).unwrap();
        let a = "1a".repeat(32);
        store.create(rec(&a, "xy")).unwrap();
        let e = store.create(rec(&"2b".repeat(32), "xy")).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "Conflict. The container name \"/xy\" is already in use by container \"{a}\". \
                 You have to remove (or rename) that container to be able to reuse that name."
            )
        );
    }

    #[test]
    fn invalid_names_are_refused() {
        for bad in ["", "/", "a", "-ab", "a b", "ab/c", "_x"] {
            assert!(!valid_name(bad), "{bad}");
        }
        for good in ["ab", "/web", "my_app.1-2", "0abc"] {
            assert!(valid_name(good), "{good}");
        }
        let dir = tempfile::tempdir().unwrap();
        let store = ContainerStore::open(dir.path()).unwrap();
        assert!(matches!(
            store.create(rec(&"c".repeat(64), "a b")),
            Err(StoreError::InvalidName(_))
        ));
    }

    #[test]
    fn an_update_that_changes_nothing_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContainerStore::open(dir.path()).unwrap();
        let a = "f".repeat(64);
        store.create(rec(&a, "one")).unwrap();
        // Each write renames a new file over the old one: a new inode.
        let file = store.container_dir(&a).join(CONFIG_FILE);
        let inode = || std::os::unix::fs::MetadataExt::ino(&fs::metadata(&file).unwrap());
        let written = inode();
        store.update(&a, |r| r.restart_count = 0).unwrap();
        assert_eq!(inode(), written);
        store.update(&a, |r| r.restart_count = 1).unwrap();
        assert_ne!(inode(), written);
        let reopened = ContainerStore::open(dir.path()).unwrap();
        assert_eq!(reopened.get(&a).unwrap().restart_count, 1);
    }

    #[test]
    fn update_rename_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContainerStore::open(dir.path()).unwrap();
        let a = "d".repeat(64);
        store.create(rec(&a, "one")).unwrap();
        store.create(rec(&"e".repeat(64), "two")).unwrap();
        store
            .update(&a, |r| {
                r.restart_count = 3;
                r.name = "/ignored".into();
            })
            .unwrap();
        assert_eq!(store.get("one").unwrap().restart_count, 3);
        assert!(matches!(
            store.rename(&a, "two"),
            Err(StoreError::NameConflict { .. })
        ));
        store.rename(&a, "three").unwrap();
        assert!(store.resolve("one").is_err());
        assert_eq!(store.resolve("three").unwrap(), a);
        let reloaded = ContainerStore::open(dir.path()).unwrap();
        assert_eq!(reloaded.get("three").unwrap().restart_count, 3);
        store.remove(&a).unwrap();
        assert!(!dir.path().join(&a).exists());
        assert!(!store.name_taken("three"));
        assert_eq!(store.list().len(), 1);
    }

    #[test]
    fn unreadable_records_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("junk")).unwrap();
        fs::write(dir.path().join("junk/config.v2.json"), b"{not json").unwrap();
        let store = ContainerStore::open(dir.path()).unwrap();
        assert!(store.list().is_empty());
    }

    #[test]
    fn generated_names_are_valid_and_free() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContainerStore::open(dir.path()).unwrap();
        let n = store.generate_name().unwrap();
        assert!(valid_name(&n), "{n}");
        assert!(!store.name_taken(&n));
    }
}
