//! Garbage collection: remove blobs and snapshots that no image, container snapshot
//! or lease references.
//!
//! Roots: every image (its config, manifest, index and layer blobs, and its top
//! snapshot with all parents), every active or view snapshot (containers) with its
//! parents, and everything a lease holds. A blob written after the oldest live lease
//! was taken is kept too, which covers a pull that has written a blob but not yet
//! recorded it in its lease. A committed snapshot is removed in a transaction that
//! checks again that nothing took it meanwhile. Snapshot directories without a
//! record (a crash between creating one and recording it) are removed once they are
//! older than [`ORPHAN_GRACE`].

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, SystemTime};

use crate::content::Digest;
use crate::metadata::{MetadataError, SnapshotKind};
use crate::store::{Store, StoreError};

/// How old a snapshot directory without a record must be before GC removes it.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(600);

/// What a GC run removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub blobs_removed: Vec<Digest>,
    pub snapshots_removed: Vec<String>,
    pub orphan_dirs_removed: Vec<u64>,
    pub bytes_reclaimed: u64,
}

impl Store {
    /// Remove every blob and snapshot nothing references.
    pub fn gc(&self) -> Result<GcReport, StoreError> {
        let mut report = GcReport::default();
        // List before marking: anything created after this listing is not a candidate.
        let blobs = self.content().list()?;
        let txn = self.metadata().read()?;
        let images = txn.images()?;
        let leases = txn.leases()?;
        let snaps = txn.snapshots()?;
        drop(txn);

        let mut keep_blobs: HashSet<Digest> = HashSet::new();
        let mut keep_snaps: HashSet<String> = HashSet::new();
        for img in &images {
            keep_blobs.insert(img.id.clone());
            keep_blobs.insert(img.manifest_digest.clone());
            keep_blobs.extend(img.index_digest.clone());
            keep_blobs.extend(img.layers.iter().map(|l| l.digest.clone()));
            if !img.top_snapshot.is_empty() {
                keep_snaps.insert(img.top_snapshot.clone());
            }
        }
        for l in &leases {
            keep_blobs.extend(l.blobs.iter().cloned());
            keep_snaps.extend(l.snapshots.iter().cloned());
        }
        keep_snaps.extend(
            snaps
                .iter()
                .filter(|s| s.kind != SnapshotKind::Committed)
                .map(|s| s.key.clone()),
        );
        // Parents of what is kept are kept.
        let by_key: HashMap<&str, &crate::metadata::SnapshotRecord> =
            snaps.iter().map(|s| (s.key.as_str(), s)).collect();
        let mut stack: Vec<String> = keep_snaps.iter().cloned().collect();
        while let Some(k) = stack.pop() {
            if let Some(p) = by_key.get(k.as_str()).and_then(|s| s.parent.clone()) {
                if keep_snaps.insert(p.clone()) {
                    stack.push(p);
                }
            }
        }

        // Snapshots, children before parents.
        let mut doomed: Vec<&crate::metadata::SnapshotRecord> = snaps
            .iter()
            .filter(|s| !keep_snaps.contains(&s.key))
            .collect();
        let depth = |s: &crate::metadata::SnapshotRecord| {
            let mut d = 0;
            let mut p = s.parent.clone();
            while let Some(k) = p {
                d += 1;
                p = by_key.get(k.as_str()).and_then(|s| s.parent.clone());
            }
            d
        };
        doomed.sort_by_key(|s| std::cmp::Reverse(depth(s)));
        for s in doomed {
            let key = s.key.clone();
            let removed = self.metadata().write(|t| {
                let Some(rec) = t.snapshot(&key)? else {
                    return Ok(None);
                };
                let taken = t
                    .snapshots()?
                    .iter()
                    .any(|c| c.parent.as_deref() == Some(key.as_str()))
                    || t.leases()?.iter().any(|l| l.snapshots.contains(&key))
                    || rec.kind != SnapshotKind::Committed;
                if taken {
                    return Ok(None);
                }
                // An image recorded meanwhile references it through its top chain.
                let in_image = t_images_reference(t, &key)?;
                if in_image {
                    return Ok(None);
                }
                t.delete_snapshot(&key)?;
                Ok::<_, MetadataError>(Some(rec))
            })?;
            if let Some(rec) = removed {
                report.bytes_reclaimed += rec.size;
                self.snapshotter().remove_dir(rec.id);
                report.snapshots_removed.push(key);
            }
        }

        // Blobs.
        let oldest_lease = leases
            .iter()
            .map(|l| SystemTime::UNIX_EPOCH + Duration::from_secs(l.created.max(0) as u64))
            .min();
        for b in blobs {
            if keep_blobs.contains(&b.digest) {
                continue;
            }
            if let Some(t) = oldest_lease {
                if b.created + Duration::from_secs(1) >= t {
                    continue;
                }
            }
            self.content().delete(&b.digest)?;
            report.bytes_reclaimed += b.size;
            report.blobs_removed.push(b.digest);
        }

        // Directories without a record.
        let known: BTreeSet<u64> = self.metadata().snapshots()?.iter().map(|s| s.id).collect();
        for id in self.snapshotter().dir_ids()? {
            if known.contains(&id) {
                continue;
            }
            let old = std::fs::metadata(self.snapshotter().dir(id))
                .and_then(|m| m.modified())
                .map(|m| m.elapsed().unwrap_or_default() > ORPHAN_GRACE)
                .unwrap_or(false);
            if old {
                self.snapshotter().remove_dir(id);
                report.orphan_dirs_removed.push(id);
            }
        }
        Ok(report)
    }
}

/// Whether any image's top snapshot is `key` or a descendant of it.
fn t_images_reference(t: &crate::metadata::WriteTxn<'_>, key: &str) -> Result<bool, MetadataError> {
    let snaps: HashMap<String, Option<String>> = t
        .snapshots()?
        .into_iter()
        .map(|s| (s.key, s.parent))
        .collect();
    // Images live in their own table; read them through the same transaction.
    for img in images_in(t)? {
        let mut cur = Some(img);
        while let Some(k) = cur {
            if k == key {
                return Ok(true);
            }
            cur = snaps.get(&k).cloned().flatten();
        }
    }
    Ok(false)
}

fn images_in(t: &crate::metadata::WriteTxn<'_>) -> Result<Vec<String>, MetadataError> {
    Ok(t.images()?
        .into_iter()
        .map(|i| i.top_snapshot)
        .filter(|s| !s.is_empty())
        .collect())
}
