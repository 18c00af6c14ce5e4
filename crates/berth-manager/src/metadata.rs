//! Metadata database: images, names, snapshots and leases in one redb file
//! (`<root>/metadata.redb`).
//!
//! redb commits are atomic and durable, so anything that must appear all at once (an
//! image record with its names; a snapshot committed under its name together with the
//! lease that protects it) is written in a single transaction through [`WriteTxn`].
//! Values are JSON so the records can grow fields without a migration.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::content::Digest;

const IMAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("images");
const NAMES: TableDefinition<&str, &str> = TableDefinition::new("names");
const SNAPSHOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshots");
const LEASES: TableDefinition<&str, &[u8]> = TableDefinition::new("leases");
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");

/// Errors of the metadata database.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// The database file could not be opened or created.
    #[error("open metadata database {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },
    /// A read or write of the database failed.
    #[error("metadata database: {0}")]
    Db(#[from] redb::Error),
    /// A stored record did not decode (or could not be encoded).
    #[error("metadata record {table}/{key}: {source}")]
    Record {
        table: &'static str,
        key: String,
        #[source]
        source: serde_json::Error,
    },
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for MetadataError {
            fn from(e: $t) -> Self {
                MetadataError::Db(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// One layer of an image as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// Digest of the blob as stored (compressed or not).
    pub digest: Digest,
    /// Digest of the uncompressed tar (config rootfs.diff_ids entry).
    pub diff_id: Digest,
    /// Size of the stored blob.
    pub size: u64,
    pub media_type: String,
}

/// An image as the index knows it. Its id is the config digest, as in Docker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub id: Digest,
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    /// The index / manifest list the manifest was chosen from, when pulled through one.
    #[serde(default)]
    pub index_digest: Option<Digest>,
    pub layers: Vec<LayerRecord>,
    /// The snapshot name of the top layer's chain (a chain id), "" for no layers.
    pub top_snapshot: String,
    /// `repo@digest` references this image was pulled or pushed as.
    #[serde(default)]
    pub repo_digests: Vec<String>,
    /// Config's `created` (RFC 3339), or "" when absent.
    #[serde(default)]
    pub created: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Sum of the unpacked sizes of the layers.
    #[serde(default)]
    pub size: u64,
    /// Unix seconds when the record was written.
    #[serde(default)]
    pub stored_at: i64,
    /// The image this one was committed on (Docker's Parent).
    #[serde(default)]
    pub parent: Option<Digest>,
}

/// What a snapshot is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotKind {
    /// Writable (a container's layer, or a layer being unpacked).
    Active,
    /// Read-only view of its parent.
    View,
    /// Immutable; can be a parent.
    Committed,
}

impl SnapshotKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotKind::Active => "active",
            SnapshotKind::View => "view",
            SnapshotKind::Committed => "committed",
        }
    }
}

/// A snapshot's record. Its directory is `<root>/snapshots/overlay/<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub key: String,
    pub id: u64,
    pub parent: Option<String>,
    pub kind: SnapshotKind,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Unix seconds.
    pub created: i64,
    /// Bytes used by its own directory, computed when committed.
    #[serde(default)]
    pub size: u64,
}

/// A lease: blobs and snapshots that garbage collection must keep while work that
/// will reference them is in progress. Temporary leases belong to the process that
/// made them and are dropped when the store is opened again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub id: String,
    pub created: i64,
    pub temporary: bool,
    #[serde(default)]
    pub blobs: BTreeSet<Digest>,
    #[serde(default)]
    pub snapshots: BTreeSet<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// The metadata database.
#[derive(Debug)]
pub struct Metadata {
    db: Database,
}

fn encode<T: Serialize>(table: &'static str, key: &str, v: &T) -> Result<Vec<u8>, MetadataError> {
    serde_json::to_vec(v).map_err(|source| MetadataError::Record {
        table,
        key: key.to_string(),
        source,
    })
}

fn decode<T: DeserializeOwned>(
    table: &'static str,
    key: &str,
    v: &[u8],
) -> Result<T, MetadataError> {
    serde_json::from_slice(v).map_err(|source| MetadataError::Record {
        table,
        key: key.to_string(),
        source,
    })
}

impl Metadata {
    /// Open or create the database at `path` and make sure every table exists.
    pub fn open(path: &Path) -> Result<Metadata, MetadataError> {
        let db = Database::create(path).map_err(|source| MetadataError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let md = Metadata { db };
        md.write(|txn| {
            txn.txn.open_table(IMAGES)?;
            txn.txn.open_table(NAMES)?;
            txn.txn.open_table(SNAPSHOTS)?;
            txn.txn.open_table(LEASES)?;
            txn.txn.open_table(COUNTERS)?;
            Ok::<_, MetadataError>(())
        })?;
        Ok(md)
    }

    /// Run `f` in one write transaction, committed only if it returns Ok.
    pub fn write<T, E>(&self, f: impl FnOnce(&WriteTxn<'_>) -> Result<T, E>) -> Result<T, E>
    where
        E: From<MetadataError>,
    {
        let txn = self
            .db
            .begin_write()
            .map_err(|e| E::from(MetadataError::from(e)))?;
        let out = f(&WriteTxn { txn: &txn })?;
        txn.commit().map_err(|e| E::from(MetadataError::from(e)))?;
        Ok(out)
    }

    /// A consistent snapshot of the whole database (for listings and GC marking).
    pub fn read(&self) -> Result<ReadTxn, MetadataError> {
        Ok(ReadTxn {
            txn: self.db.begin_read()?,
        })
    }

    pub fn image(&self, id: &Digest) -> Result<Option<ImageRecord>, MetadataError> {
        self.read()?.image(id)
    }

    pub fn images(&self) -> Result<Vec<ImageRecord>, MetadataError> {
        self.read()?.images()
    }

    pub fn names(&self) -> Result<BTreeMap<String, Digest>, MetadataError> {
        self.read()?.names()
    }

    pub fn snapshot(&self, key: &str) -> Result<Option<SnapshotRecord>, MetadataError> {
        self.read()?.snapshot(key)
    }

    pub fn snapshots(&self) -> Result<Vec<SnapshotRecord>, MetadataError> {
        self.read()?.snapshots()
    }

    pub fn leases(&self) -> Result<Vec<LeaseRecord>, MetadataError> {
        self.read()?.leases()
    }
}

/// A read transaction: every read through it sees the same state.
pub struct ReadTxn {
    txn: redb::ReadTransaction,
}

impl std::fmt::Debug for ReadTxn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadTxn")
    }
}

impl ReadTxn {
    /// The value of a counter (0 if it was never counted).
    pub fn counter(&self, counter: &str) -> Result<u64, MetadataError> {
        let t = self.txn.open_table(COUNTERS)?;
        Ok(t.get(counter)?.map(|v| v.value()).unwrap_or(0))
    }

    pub fn image(&self, id: &Digest) -> Result<Option<ImageRecord>, MetadataError> {
        let t = self.txn.open_table(IMAGES)?;
        t.get(id.as_str())?
            .map(|v| decode("images", id.as_str(), v.value()))
            .transpose()
    }

    pub fn images(&self) -> Result<Vec<ImageRecord>, MetadataError> {
        let t = self.txn.open_table(IMAGES)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (k, v) = item?;
            out.push(decode("images", k.value(), v.value())?);
        }
        Ok(out)
    }

    pub fn name(&self, name: &str) -> Result<Option<Digest>, MetadataError> {
        let t = self.txn.open_table(NAMES)?;
        t.get(name)?
            .map(|v| {
                v.value()
                    .parse::<Digest>()
                    .map_err(|e| MetadataError::Record {
                        table: "names",
                        key: name.to_string(),
                        source: serde::de::Error::custom(e),
                    })
            })
            .transpose()
    }

    pub fn names(&self) -> Result<BTreeMap<String, Digest>, MetadataError> {
        let t = self.txn.open_table(NAMES)?;
        let mut out = BTreeMap::new();
        for item in t.iter()? {
            let (k, v) = item?;
            if let Ok(d) = v.value().parse::<Digest>() {
                out.insert(k.value().to_string(), d);
            }
        }
        Ok(out)
    }

    pub fn snapshot(&self, key: &str) -> Result<Option<SnapshotRecord>, MetadataError> {
        let t = self.txn.open_table(SNAPSHOTS)?;
        t.get(key)?
            .map(|v| decode("snapshots", key, v.value()))
            .transpose()
    }

    pub fn snapshots(&self) -> Result<Vec<SnapshotRecord>, MetadataError> {
        let t = self.txn.open_table(SNAPSHOTS)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (k, v) = item?;
            out.push(decode("snapshots", k.value(), v.value())?);
        }
        Ok(out)
    }

    pub fn leases(&self) -> Result<Vec<LeaseRecord>, MetadataError> {
        let t = self.txn.open_table(LEASES)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (k, v) = item?;
            out.push(decode("leases", k.value(), v.value())?);
        }
        Ok(out)
    }
}

/// A write transaction handed to [`Metadata::write`]'s closure.
pub struct WriteTxn<'a> {
    txn: &'a redb::WriteTransaction,
}

impl std::fmt::Debug for WriteTxn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteTxn")
    }
}

impl WriteTxn<'_> {
    pub fn image(&self, id: &Digest) -> Result<Option<ImageRecord>, MetadataError> {
        let t = self.txn.open_table(IMAGES)?;
        let v = t.get(id.as_str())?;
        v.map(|v| decode("images", id.as_str(), v.value()))
            .transpose()
    }

    pub fn images(&self) -> Result<Vec<ImageRecord>, MetadataError> {
        let t = self.txn.open_table(IMAGES)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (k, v) = item?;
            out.push(decode("images", k.value(), v.value())?);
        }
        Ok(out)
    }

    pub fn put_image(&self, rec: &ImageRecord) -> Result<(), MetadataError> {
        let data = encode("images", rec.id.as_str(), rec)?;
        self.txn
            .open_table(IMAGES)?
            .insert(rec.id.as_str(), data.as_slice())?;
        Ok(())
    }

    pub fn delete_image(&self, id: &Digest) -> Result<bool, MetadataError> {
        Ok(self.txn.open_table(IMAGES)?.remove(id.as_str())?.is_some())
    }

    pub fn name(&self, name: &str) -> Result<Option<Digest>, MetadataError> {
        let t = self.txn.open_table(NAMES)?;
        let v = t.get(name)?;
        Ok(v.and_then(|v| v.value().parse().ok()))
    }

    pub fn names(&self) -> Result<BTreeMap<String, Digest>, MetadataError> {
        let t = self.txn.open_table(NAMES)?;
        let mut out = BTreeMap::new();
        for item in t.iter()? {
            let (k, v) = item?;
            if let Ok(d) = v.value().parse::<Digest>() {
                out.insert(k.value().to_string(), d);
            }
        }
        Ok(out)
    }

    /// Point `name` at image `id`; returns the image it pointed at before.
    pub fn set_name(&self, name: &str, id: &Digest) -> Result<Option<Digest>, MetadataError> {
        let mut t = self.txn.open_table(NAMES)?;
        let old = t.insert(name, id.as_str())?;
        Ok(old.and_then(|v| v.value().parse().ok()))
    }

    pub fn remove_name(&self, name: &str) -> Result<Option<Digest>, MetadataError> {
        let mut t = self.txn.open_table(NAMES)?;
        let old = t.remove(name)?;
        Ok(old.and_then(|v| v.value().parse().ok()))
    }

    pub fn snapshot(&self, key: &str) -> Result<Option<SnapshotRecord>, MetadataError> {
        let t = self.txn.open_table(SNAPSHOTS)?;
        let v = t.get(key)?;
        v.map(|v| decode("snapshots", key, v.value())).transpose()
    }

    pub fn snapshots(&self) -> Result<Vec<SnapshotRecord>, MetadataError> {
        let t = self.txn.open_table(SNAPSHOTS)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (k, v) = item?;
            out.push(decode("snapshots", k.value(), v.value())?);
        }
        Ok(out)
    }

    pub fn put_snapshot(&self, rec: &SnapshotRecord) -> Result<(), MetadataError> {
        let data = encode("snapshots", &rec.key, rec)?;
        self.txn
            .open_table(SNAPSHOTS)?
            .insert(rec.key.as_str(), data.as_slice())?;
        Ok(())
    }

    pub fn delete_snapshot(&self, key: &str) -> Result<bool, MetadataError> {
        Ok(self.txn.open_table(SNAPSHOTS)?.remove(key)?.is_some())
    }

    /// Raises a counter to `value` if it is lower.
    pub fn raise(&self, counter: &str, value: u64) -> Result<(), MetadataError> {
        let mut t = self.txn.open_table(COUNTERS)?;
        let cur = t.get(counter)?.map(|v| v.value()).unwrap_or(0);
        if value > cur {
            t.insert(counter, value)?;
        }
        Ok(())
    }

    /// Next value of a named counter (starting at 1).
    pub fn next(&self, counter: &str) -> Result<u64, MetadataError> {
        let mut t = self.txn.open_table(COUNTERS)?;
        let cur = t.get(counter)?.map(|v| v.value()).unwrap_or(0);
        let next = cur + 1;
        t.insert(counter, next)?;
        Ok(next)
    }

    pub fn lease(&self, id: &str) -> Result<Option<LeaseRecord>, MetadataError> {
        let t = self.txn.open_table(LEASES)?;
        let v = t.get(id)?;
        v.map(|v| decode("leases", id, v.value())).transpose()
    }

    pub fn leases(&self) -> Result<Vec<LeaseRecord>, MetadataError> {
        let t = self.txn.open_table(LEASES)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (k, v) = item?;
            out.push(decode("leases", k.value(), v.value())?);
        }
        Ok(out)
    }

    pub fn put_lease(&self, rec: &LeaseRecord) -> Result<(), MetadataError> {
        let data = encode("leases", &rec.id, rec)?;
        self.txn
            .open_table(LEASES)?
            .insert(rec.id.as_str(), data.as_slice())?;
        Ok(())
    }

    pub fn delete_lease(&self, id: &str) -> Result<bool, MetadataError> {
        Ok(self.txn.open_table(LEASES)?.remove(id)?.is_some())
    }

    /// Add resources to an existing lease (a missing lease is not an error: the work
    /// it protected is already recorded elsewhere).
    pub fn lease_add(
        &self,
        id: &str,
        blobs: &[Digest],
        snapshots: &[String],
    ) -> Result<(), MetadataError> {
        if let Some(mut l) = self.lease(id)? {
            l.blobs.extend(blobs.iter().cloned());
            l.snapshots.extend(snapshots.iter().cloned());
            self.put_lease(&l)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_atomic_abort() {
        let dir = tempfile::tempdir().unwrap();
        let md = Metadata::open(&dir.path().join("m.redb")).unwrap();
        let id = Digest::of(b"cfg");
        let rec = ImageRecord {
            id: id.clone(),
            manifest_digest: Digest::of(b"m"),
            manifest_media_type: "x".into(),
            index_digest: None,
            layers: vec![],
            top_snapshot: String::new(),
            repo_digests: vec![],
            created: String::new(),
            labels: BTreeMap::new(),
            size: 0,
            stored_at: 0,
            parent: None,
        };
        md.write(|t| {
            t.put_image(&rec)?;
            t.set_name("a:b", &id)?;
            Ok::<_, MetadataError>(())
        })
        .unwrap();
        // An error inside the closure leaves nothing behind.
        let r: Result<(), MetadataError> = md.write(|t| {
            t.set_name("c:d", &id)?;
            Err(MetadataError::Record {
                table: "x",
                key: "y".into(),
                source: serde::de::Error::custom("boom"),
            })
        });
        assert!(r.is_err());
        assert_eq!(md.names().unwrap().len(), 1);
        assert_eq!(md.image(&id).unwrap().unwrap(), rec);
        assert_eq!(md.read().unwrap().counter("x").unwrap(), 0);
        let n = md.write(|t| t.next("x")).unwrap();
        assert_eq!(n, 1);
        assert_eq!(md.write(|t| t.next("x")).unwrap(), 2);
    }
}
