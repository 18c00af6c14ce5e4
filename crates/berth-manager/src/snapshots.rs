//! The overlay snapshotter: layers and containers' writable layers as directories
//! `<root>/snapshots/overlay/<id>/{fs,work}`, described by records in the metadata
//! database.
//!
//! Directory names are opaque ids from a counter, never digests: a layer is unpacked
//! into a fresh `extract-…` snapshot and becomes visible under its chain id only when
//! the record is renamed in one database transaction, so a half-unpacked layer is never
//! found by name, and two unpacks never write the same directory. `mounts(key)` gives
//! the overlay (or bind) mount that shows a snapshot; the lowerdir chain follows the
//! parents. A directory without a record (a crash between creating it and recording
//! it, or between dropping the record and deleting it) is removed by the GC.
//!
//! Plain blocking code; the daemon calls it from `spawn_blocking`.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::content::{sync_dir, KeyedLocks};
use crate::metadata::{Metadata, MetadataError, SnapshotKind, SnapshotRecord, WriteTxn};

/// Errors of the snapshotter.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// No snapshot with this key.
    #[error("snapshot {0:?} not found")]
    NotFound(String),
    /// The key is taken.
    #[error("snapshot {0:?} already exists")]
    AlreadyExists(String),
    /// The parent must be committed.
    #[error("snapshot {0:?} is not committed and cannot be a parent")]
    ParentNotCommitted(String),
    /// Only active snapshots can be committed.
    #[error("snapshot {0:?} is not active")]
    NotActive(String),
    /// The snapshot is a parent of others.
    #[error("snapshot {key:?} has children: {children:?}")]
    HasChildren { key: String, children: Vec<String> },
    /// The lowerdir option would be longer than the kernel takes in one mount call.
    #[error("snapshot {0:?}: too many layers for one overlay mount")]
    TooManyLayers(String),
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// A filesystem or mount operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(what: &'static str, path: &Path, source: io::Error) -> SnapshotError {
    SnapshotError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// A mount to perform to see a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// "overlay" or "bind".
    pub kind: String,
    pub source: String,
    /// Relative to the target rootfs ("" = the rootfs itself).
    pub target: String,
    pub options: Vec<String>,
}

/// A snapshot as reported, with Docker overlay2's GraphDriver data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub key: String,
    pub parent: Option<String>,
    pub kind: SnapshotKind,
    pub id: u64,
    pub labels: BTreeMap<String, String>,
    pub created: i64,
    /// Colon-separated parent layer directories, top first.
    pub lower_dir: String,
    pub upper_dir: String,
    pub work_dir: String,
    /// Where the daemon mounts the merged view by convention.
    pub merged_dir: String,
}

/// Disk use of a snapshot's own directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub size: u64,
    pub inodes: u64,
    /// The lengths of the files (not directories), as Docker sizes a layer.
    pub apparent: u64,
}

/// The overlay snapshotter.
#[derive(Debug, Clone)]
pub struct Snapshotter {
    root: PathBuf,
    md: Arc<Metadata>,
    locks: Arc<KeyedLocks>,
    /// The last snapshot id given. Ids come from memory, so a snapshot costs one
    /// durable commit (its record), not a second one to count it first. Seeded
    /// above every id counted and every directory on disk, so an id whose
    /// directory a crash left behind (before its record) is never given again;
    /// each record's commit raises the stored counter to its id.
    last_id: Arc<AtomicU64>,
}

/// The metadata counter of snapshot ids.
const ID_COUNTER: &str = "snapshot";

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Snapshotter {
    /// Open under `root` (`<store>/snapshots/overlay`).
    pub fn open(root: &Path, md: Arc<Metadata>) -> Result<Snapshotter, SnapshotError> {
        fs::create_dir_all(root).map_err(|e| io_err("create", root, e))?;
        let counted = md.read()?.counter(ID_COUNTER)?;
        let on_disk = fs::read_dir(root)
            .map_err(|e| io_err("read", root, e))?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        Ok(Snapshotter {
            root: root.to_path_buf(),
            md,
            locks: Arc::new(KeyedLocks::default()),
            last_id: Arc::new(AtomicU64::new(counted.max(on_disk))),
        })
    }

    /// The snapshot directory for an id.
    pub fn dir(&self, id: u64) -> PathBuf {
        self.root.join(id.to_string())
    }

    /// The directory holding a snapshot's own files (its upper dir when active).
    pub fn fs_dir(&self, id: u64) -> PathBuf {
        self.dir(id).join("fs")
    }

    /// Hold the in-process lock for a snapshot name (used around unpacking a layer
    /// so that two unpacks of the same chain take turns).
    pub fn lock(&self, name: &str) -> crate::content::KeyGuard {
        self.locks.lock(name)
    }

    /// A writable snapshot on top of `parent`.
    pub fn prepare(
        &self,
        key: &str,
        parent: Option<&str>,
        labels: BTreeMap<String, String>,
    ) -> Result<Vec<Mount>, SnapshotError> {
        self.create(SnapshotKind::Active, key, parent, labels, None)?;
        self.mounts(key)
    }

    /// A read-only view of `parent`.
    pub fn view(
        &self,
        key: &str,
        parent: Option<&str>,
        labels: BTreeMap<String, String>,
    ) -> Result<Vec<Mount>, SnapshotError> {
        self.create(SnapshotKind::View, key, parent, labels, None)?;
        self.mounts(key)
    }

    /// Create a snapshot record and its directories; the lease (if any) protects it.
    pub fn create(
        &self,
        kind: SnapshotKind,
        key: &str,
        parent: Option<&str>,
        labels: BTreeMap<String, String>,
        lease: Option<&str>,
    ) -> Result<SnapshotRecord, SnapshotError> {
        // The directory is made before the record exists: a crash in between
        // leaves an orphan directory for the GC, never a record without its
        // directory. A directory already there (made by someone else) gets the
        // next id.
        let (id, dir) = loop {
            let id = self.last_id.fetch_add(1, Ordering::SeqCst) + 1;
            let dir = self.dir(id);
            match fs::create_dir(&dir) {
                Ok(()) => break (id, dir),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err("create snapshot directory", &dir, e)),
            }
        };
        let made = (|| {
            fs::create_dir(dir.join("fs"))?;
            if kind == SnapshotKind::Active {
                fs::create_dir(dir.join("work"))?;
            }
            fs::File::open(&dir)?.sync_all()
        })();
        made.map_err(|e| io_err("create snapshot directory", &dir, e))?;
        let rec = SnapshotRecord {
            key: key.to_string(),
            id,
            parent: parent.map(String::from),
            kind,
            labels,
            created: now(),
            size: 0,
        };
        let res = self.md.write(|t| {
            if t.snapshot(key)?.is_some() {
                return Err(SnapshotError::AlreadyExists(key.to_string()));
            }
            if let Some(p) = parent {
                check_parent(t, p)?;
            }
            t.raise(ID_COUNTER, id)?;
            t.put_snapshot(&rec)?;
            if let Some(l) = lease {
                t.lease_add(l, &[], &[key.to_string()])?;
            }
            Ok(())
        });
        if let Err(e) = res {
            let _ = fs::remove_dir_all(&dir);
            return Err(e);
        }
        Ok(rec)
    }

    /// Commit active snapshot `key` as the committed snapshot `name`.
    pub fn commit(&self, name: &str, key: &str, lease: Option<&str>) -> Result<(), SnapshotError> {
        self.commit_with(name, key, lease, None)
    }

    /// [`Self::commit`], with `parent` (a committed snapshot, or none) as the
    /// committed snapshot's parent instead of the active one's: for a layer unpacked
    /// on its own, before the layers below it were (an overlay layer's files do not
    /// depend on what lies under it).
    pub fn commit_onto(
        &self,
        name: &str,
        key: &str,
        parent: Option<&str>,
        lease: Option<&str>,
    ) -> Result<(), SnapshotError> {
        self.commit_with(name, key, lease, Some(parent))
    }

    fn commit_with(
        &self,
        name: &str,
        key: &str,
        lease: Option<&str>,
        reparent: Option<Option<&str>>,
    ) -> Result<(), SnapshotError> {
        let rec = self
            .md
            .snapshot(key)?
            .ok_or_else(|| SnapshotError::NotFound(key.to_string()))?;
        let usage = self.usage_of(rec.id)?;
        // The layer's files must be on disk before its record says it is complete.
        sync_tree(&self.fs_dir(rec.id));
        self.md.write(|t| {
            let Some(mut rec) = t.snapshot(key)? else {
                return Err(SnapshotError::NotFound(key.to_string()));
            };
            if rec.kind != SnapshotKind::Active {
                return Err(SnapshotError::NotActive(key.to_string()));
            }
            if t.snapshot(name)?.is_some() {
                return Err(SnapshotError::AlreadyExists(name.to_string()));
            }
            if let Some(parent) = reparent {
                if let Some(p) = parent {
                    check_parent(t, p)?;
                }
                rec.parent = parent.map(String::from);
            }
            t.delete_snapshot(key)?;
            rec.key = name.to_string();
            rec.kind = SnapshotKind::Committed;
            rec.size = usage.size;
            t.put_snapshot(&rec)?;
            if let Some(l) = lease {
                t.lease_add(l, &[], &[name.to_string()])?;
            }
            Ok(())
        })?;
        // The work dir is only for overlay's bookkeeping while writable.
        let _ = fs::remove_dir_all(self.dir(rec.id).join("work"));
        Ok(())
    }

    /// Remove a snapshot (not one that is a parent of others).
    pub fn remove(&self, key: &str) -> Result<(), SnapshotError> {
        let rec = self.md.write(|t| {
            let Some(rec) = t.snapshot(key)? else {
                return Err(SnapshotError::NotFound(key.to_string()));
            };
            // Only a committed snapshot can be a parent (`check_parent`), so only
            // its removal reads the other records. A container's snapshot is
            // removed without them: with 500 containers, decoding every record
            // was most of the manager's CPU for a `run --rm`, spent while the
            // client's next request ran.
            if rec.kind == SnapshotKind::Committed {
                let children: Vec<String> = t
                    .snapshots()?
                    .into_iter()
                    .filter(|s| s.parent.as_deref() == Some(key))
                    .map(|s| s.key)
                    .collect();
                if !children.is_empty() {
                    return Err(SnapshotError::HasChildren {
                        key: key.to_string(),
                        children,
                    });
                }
            }
            t.delete_snapshot(key)?;
            Ok(rec)
        })?;
        self.remove_dir(rec.id);
        Ok(())
    }

    /// Delete a snapshot directory; what cannot be deleted now (still mounted) is
    /// left for the GC, which removes directories without a record.
    pub fn remove_dir(&self, id: u64) {
        let dir = self.dir(id);
        if let Err(e) = fs::remove_dir_all(&dir) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(dir = %dir.display(), error = %e, "snapshot directory left for GC");
            }
        }
    }

    /// The record of a snapshot.
    pub fn record(&self, key: &str) -> Result<SnapshotRecord, SnapshotError> {
        self.md
            .snapshot(key)?
            .ok_or_else(|| SnapshotError::NotFound(key.to_string()))
    }

    /// Whether a snapshot exists.
    pub fn exists(&self, key: &str) -> Result<bool, SnapshotError> {
        Ok(self.md.snapshot(key)?.is_some())
    }

    /// The parents of a snapshot, nearest first.
    pub fn parents(&self, rec: &SnapshotRecord) -> Result<Vec<SnapshotRecord>, SnapshotError> {
        let txn = self.md.read()?;
        let mut out = Vec::new();
        let mut next = rec.parent.clone();
        while let Some(p) = next {
            let prec = txn
                .snapshot(&p)?
                .ok_or_else(|| SnapshotError::NotFound(p.clone()))?;
            next = prec.parent.clone();
            out.push(prec);
        }
        Ok(out)
    }

    /// Layer directories of the parents, top first.
    pub fn lower_dirs(&self, rec: &SnapshotRecord) -> Result<Vec<PathBuf>, SnapshotError> {
        Ok(self
            .parents(rec)?
            .iter()
            .map(|p| self.fs_dir(p.id))
            .collect())
    }

    /// The mounts that show snapshot `key`.
    pub fn mounts(&self, key: &str) -> Result<Vec<Mount>, SnapshotError> {
        let rec = self.record(key)?;
        let lowers = self.lower_dirs(&rec)?;
        let own = self.fs_dir(rec.id).to_string_lossy().into_owned();
        let lowerdir = || {
            let joined = lowers
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(":");
            format!("lowerdir={joined}")
        };
        let bind = |source: String, ro: bool| Mount {
            kind: "bind".to_string(),
            source,
            target: String::new(),
            options: vec![
                "rbind".to_string(),
                if ro { "ro" } else { "rw" }.to_string(),
            ],
        };
        let m = match rec.kind {
            SnapshotKind::Active if lowers.is_empty() => bind(own, false),
            SnapshotKind::Active => {
                let work = self.dir(rec.id).join("work").to_string_lossy().into_owned();
                let mut options = vec![
                    lowerdir(),
                    format!("upperdir={own}"),
                    format!("workdir={work}"),
                ];
                if rec.labels.get(VOLATILE_LABEL).map(String::as_str) == Some("true") {
                    options.push("volatile".to_string());
                }
                overlay(options)
            }
            SnapshotKind::View | SnapshotKind::Committed if lowers.is_empty() => bind(own, true),
            SnapshotKind::View if lowers.len() == 1 => {
                bind(lowers[0].to_string_lossy().into_owned(), true)
            }
            SnapshotKind::View => overlay(vec![lowerdir()]),
            SnapshotKind::Committed => {
                let mut all = vec![own];
                all.extend(lowers.iter().map(|p| p.to_string_lossy().into_owned()));
                overlay(vec![format!("lowerdir={}", all.join(":"))])
            }
        };
        if m.options.iter().map(|o| o.len() + 1).sum::<usize>() > 4000 {
            return Err(SnapshotError::TooManyLayers(key.to_string()));
        }
        Ok(vec![m])
    }

    /// A snapshot's record with Docker-style directory data.
    pub fn info(&self, key: &str) -> Result<SnapshotInfo, SnapshotError> {
        let rec = self.record(key)?;
        self.info_of(rec)
    }

    fn info_of(&self, rec: SnapshotRecord) -> Result<SnapshotInfo, SnapshotError> {
        let lowers = self.lower_dirs(&rec)?;
        let dir = self.dir(rec.id);
        let s = |p: PathBuf| p.to_string_lossy().into_owned();
        let (upper, work) = match rec.kind {
            SnapshotKind::Active => (s(dir.join("fs")), s(dir.join("work"))),
            _ => (String::new(), String::new()),
        };
        let mut lower: Vec<String> = lowers.into_iter().map(s).collect();
        if rec.kind == SnapshotKind::Committed {
            lower.insert(0, s(dir.join("fs")));
        }
        Ok(SnapshotInfo {
            key: rec.key,
            parent: rec.parent,
            kind: rec.kind,
            id: rec.id,
            labels: rec.labels,
            created: rec.created,
            lower_dir: lower.join(":"),
            upper_dir: upper,
            work_dir: work,
            merged_dir: s(dir.join("merged")),
        })
    }

    /// Every snapshot.
    pub fn list(&self) -> Result<Vec<SnapshotInfo>, SnapshotError> {
        self.md
            .snapshots()?
            .into_iter()
            .map(|r| self.info_of(r))
            .collect()
    }

    /// Disk use of a snapshot's own directory.
    pub fn usage(&self, key: &str) -> Result<Usage, SnapshotError> {
        let rec = self.record(key)?;
        self.usage_of(rec.id)
    }

    fn usage_of(&self, id: u64) -> Result<Usage, SnapshotError> {
        let mut u = Usage::default();
        let mut seen = std::collections::HashSet::new();
        walk_usage(&self.fs_dir(id), &mut u, &mut seen)
            .map_err(|e| io_err("measure", &self.fs_dir(id), e))?;
        Ok(u)
    }

    /// Ids of the directories on disk (records or not).
    pub fn dir_ids(&self) -> Result<Vec<u64>, SnapshotError> {
        let entries = fs::read_dir(&self.root).map_err(|e| io_err("list", &self.root, e))?;
        Ok(entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
            .collect())
    }

    /// Drop the `extract-…` snapshots a crashed process left half-unpacked.
    pub fn remove_stale_extracts(&self) -> Result<usize, SnapshotError> {
        let stale: Vec<SnapshotRecord> = self
            .md
            .snapshots()?
            .into_iter()
            .filter(|s| s.kind == SnapshotKind::Active && s.key.starts_with(EXTRACT_PREFIX))
            .collect();
        for s in &stale {
            self.remove(&s.key)?;
        }
        Ok(stale.len())
    }
}

/// A snapshot can only stand on a committed one.
fn check_parent(t: &WriteTxn<'_>, parent: &str) -> Result<(), SnapshotError> {
    match t.snapshot(parent)? {
        None => Err(SnapshotError::NotFound(parent.to_string())),
        Some(p) if p.kind != SnapshotKind::Committed => {
            Err(SnapshotError::ParentNotCommitted(p.key))
        }
        Some(_) => Ok(()),
    }
}

/// Key prefix of snapshots that layers are unpacked into.
pub const EXTRACT_PREFIX: &str = "extract-";

/// A container label (and the snapshot label it becomes) saying that its writable
/// layer is thrown away when the container stops (`run --rm`): its overlay is
/// mounted `volatile`, so unmounting it does not sync the whole upper filesystem
/// (tens of milliseconds on a busy disk). Such an upper directory cannot be
/// trusted after a machine crash, and the kernel refuses to mount it again; neither
/// matters for a container that is removed when it stops. The option exists from
/// Linux 5.10 (older kernels refuse the whole mount): a client sets the label only
/// where the kernel has it, as berthd does.
pub const VOLATILE_LABEL: &str = "berth.rootfs.volatile";

/// The label naming the container a container's snapshot was made for.
pub const CONTAINER_LABEL: &str = "berth.container";

fn overlay(mut options: Vec<String>) -> Mount {
    if Path::new("/sys/module/overlay/parameters/index").exists() {
        options.insert(0, "index=off".to_string());
    }
    Mount {
        kind: "overlay".to_string(),
        source: "overlay".to_string(),
        target: String::new(),
        options,
    }
}

fn walk_usage(
    dir: &Path,
    u: &mut Usage,
    seen: &mut std::collections::HashSet<(u64, u64)>,
) -> io::Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        let md = e.metadata()?;
        if !seen.insert((md.dev(), md.ino())) {
            continue;
        }
        u.inodes += 1;
        u.size += md.blocks() * 512;
        if md.is_dir() {
            walk_usage(&e.path(), u, seen)?;
        } else {
            u.apparent += md.len();
        }
    }
    Ok(())
}

/// syncfs the filesystem holding `dir` (cheaper than fsyncing every file of a layer,
/// and the layer's files are all on it).
fn sync_tree(dir: &Path) {
    if let Ok(f) = fs::File::open(dir) {
        let _ = nix::unistd::syncfs(&f);
    }
    let _ = dir.parent().map(sync_dir);
}

/// Errors of mounting.
pub type MountError = SnapshotError;

/// Mount `mounts` at `target` (which must exist).
pub fn mount_all(mounts: &[Mount], target: &Path) -> Result<(), MountError> {
    for m in mounts {
        let dest = if m.target.is_empty() {
            target.to_path_buf()
        } else {
            target.join(m.target.trim_start_matches('/'))
        };
        let ro = m.options.iter().any(|o| o == "ro");
        if m.kind == "bind" {
            mount(
                Some(Path::new(&m.source)),
                &dest,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| io_err("bind mount onto", &dest, e.into()))?;
            if ro {
                mount(
                    None::<&str>,
                    &dest,
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                    None::<&str>,
                )
                .map_err(|e| io_err("remount read-only", &dest, e.into()))?;
            }
        } else {
            let data: Vec<&str> = m
                .options
                .iter()
                .map(String::as_str)
                .filter(|o| *o != "ro" && *o != "rw")
                .collect();
            let flags = if ro {
                MsFlags::MS_RDONLY
            } else {
                MsFlags::empty()
            };
            mount(
                Some(m.source.as_str()),
                &dest,
                Some(m.kind.as_str()),
                flags,
                Some(data.join(",").as_str()),
            )
            .map_err(|e| io_err("mount overlay onto", &dest, e.into()))?;
        }
    }
    Ok(())
}

/// Unmount `target` (lazily if it is busy).
pub fn unmount(target: &Path) -> Result<(), MountError> {
    match umount2(target, MntFlags::empty()) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EBUSY) => {
            umount2(target, MntFlags::MNT_DETACH).map_err(|e| io_err("unmount", target, e.into()))
        }
        Err(e) => Err(io_err("unmount", target, e.into())),
    }
}

/// A temporary mount that is unmounted when dropped.
#[derive(Debug)]
pub struct TempMount {
    pub path: PathBuf,
}

impl TempMount {
    /// Mount `mounts` on a fresh directory `path` (created, and removed on drop).
    pub fn new(mounts: &[Mount], path: PathBuf) -> Result<TempMount, MountError> {
        fs::create_dir_all(&path).map_err(|e| io_err("create", &path, e))?;
        if let Err(e) = mount_all(mounts, &path) {
            let _ = fs::remove_dir(&path);
            return Err(e);
        }
        Ok(TempMount { path })
    }
}

impl Drop for TempMount {
    fn drop(&mut self) {
        let _ = unmount(&self.path);
        let _ = fs::remove_dir(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Tests may unwrap: a panic is how a test fails.
    #[allow(clippy::unwrap_used)]
    #[test]
    fn ids_skip_directories_a_crash_left_and_survive_a_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("overlay");
        let md = Arc::new(Metadata::open(&tmp.path().join("metadata.redb")).unwrap());
        let snaps = Snapshotter::open(&root, Arc::clone(&md)).unwrap();
        let a = snaps
            .create(SnapshotKind::Active, "a", None, BTreeMap::new(), None)
            .unwrap();
        // What a crash between a directory and its record leaves.
        fs::create_dir(snaps.dir(a.id + 1)).unwrap();
        let b = snaps
            .create(SnapshotKind::Active, "b", None, BTreeMap::new(), None)
            .unwrap();
        assert_eq!(b.id, a.id + 2);
        // A new manager (a restart) counts on from the stored counter and the disk.
        fs::create_dir(root.join((b.id + 5).to_string())).unwrap();
        let again = Snapshotter::open(&root, md).unwrap();
        let c = again
            .create(SnapshotKind::Active, "c", None, BTreeMap::new(), None)
            .unwrap();
        assert_eq!(c.id, b.id + 6);
        assert!(again.dir(c.id).join("fs").is_dir() && again.dir(c.id).join("work").is_dir());
    }

    // `remove` looks for children only under committed snapshots: this holds
    // because nothing can stand on any other kind.
    #[allow(clippy::unwrap_used)]
    #[test]
    fn only_committed_snapshots_have_children_and_keep_them() {
        let tmp = tempfile::tempdir().unwrap();
        let md = Arc::new(Metadata::open(&tmp.path().join("metadata.redb")).unwrap());
        let snaps = Snapshotter::open(&tmp.path().join("overlay"), md).unwrap();
        let none = BTreeMap::new;
        snaps
            .create(SnapshotKind::Active, "layer", None, none(), None)
            .unwrap();
        for kind in [SnapshotKind::Active, SnapshotKind::View] {
            assert!(matches!(
                snaps.create(kind, "on-active", Some("layer"), none(), None),
                Err(SnapshotError::ParentNotCommitted(_))
            ));
        }
        snaps.commit("base", "layer", None).unwrap();
        snaps
            .create(SnapshotKind::Active, "c", Some("base"), none(), None)
            .unwrap();
        snaps
            .create(SnapshotKind::View, "v", Some("base"), none(), None)
            .unwrap();
        match snaps.remove("base") {
            Err(SnapshotError::HasChildren { key, mut children }) => {
                children.sort();
                assert_eq!(
                    (key.as_str(), children),
                    ("base", vec!["c".to_string(), "v".to_string()])
                );
            }
            other => panic!("removing a parent: {other:?}"),
        }
        snaps.remove("c").unwrap();
        assert!(matches!(
            snaps.remove("base"),
            Err(SnapshotError::HasChildren { .. })
        ));
        snaps.remove("v").unwrap();
        snaps.remove("base").unwrap();
        assert!(!snaps.exists("base").unwrap());
        assert!(matches!(snaps.remove("c"), Err(SnapshotError::NotFound(_))));
    }
}
