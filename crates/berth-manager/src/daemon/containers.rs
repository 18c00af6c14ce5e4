//! Container records: what will run (spec, image, snapshot, runtime, log path), kept
//! in the daemon's own redb file `<root>/containers.redb` (one JSON value per id).
//! redb commits are atomic and durable, so a record is there whole or not at all
//! after a crash.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

const CONTAINERS: TableDefinition<&str, &[u8]> = TableDefinition::new("containers");
/// The CRI server's records (pod sandboxes), one JSON value per id, in the same
/// file so that they are as durable as the containers they name.
const CRI_SANDBOXES: TableDefinition<&str, &[u8]> = TableDefinition::new("cri_sandboxes");
/// The CRI server's own metadata of its containers (sandbox, CRI config, times,
/// exit), beside the manager's container records of the same ids.
const CRI_CONTAINERS: TableDefinition<&str, &[u8]> = TableDefinition::new("cri_containers");

/// Errors of the container database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("opening the container database {path}: {source}")]
    Open {
        path: PathBuf,
        source: redb::DatabaseError,
    },
    #[error("container database: {0}")]
    Db(#[from] redb::Error),
    #[error("container record {id:?}: {source}")]
    Record {
        id: String,
        source: serde_json::Error,
    },
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for DbError {
            fn from(e: $t) -> Self {
                DbError::Db(e.into())
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

/// A container as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    /// The image reference as given ("" = none).
    pub image: String,
    /// The OCI runtime spec, as the JSON text the client sent.
    pub spec: String,
    pub snapshot_key: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// OCI runtime: a path or a name ("" = the manager's default).
    pub runtime: String,
    pub log_path: String,
    pub created_at: String,
    pub updated_at: String,
}

/// The container database.
#[derive(Debug)]
pub struct ContainerDb {
    db: Database,
}

impl ContainerDb {
    /// Open or create the database at `path`.
    pub fn open(path: &Path) -> Result<ContainerDb, DbError> {
        let db = Database::create(path).map_err(|source| DbError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let txn = db.begin_write()?;
        txn.open_table(CONTAINERS)?;
        txn.open_table(CRI_SANDBOXES)?;
        txn.open_table(CRI_CONTAINERS)?;
        txn.commit()?;
        Ok(ContainerDb { db })
    }

    pub fn get(&self, id: &str) -> Result<Option<ContainerRecord>, DbError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(CONTAINERS)?;
        t.get(id)?.map(|v| decode(id, v.value())).transpose()
    }

    pub fn list(&self) -> Result<Vec<ContainerRecord>, DbError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(CONTAINERS)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (k, v) = item?;
            out.push(decode(k.value(), v.value())?);
        }
        Ok(out)
    }

    /// Add a record; false (and nothing written) when the id is taken.
    pub fn insert_new(&self, rec: &ContainerRecord) -> Result<bool, DbError> {
        let value = encode(rec)?;
        let txn = self.db.begin_write()?;
        {
            let mut t = txn.open_table(CONTAINERS)?;
            if t.get(rec.id.as_str())?.is_some() {
                return Ok(false);
            }
            t.insert(rec.id.as_str(), value.as_slice())?;
        }
        txn.commit()?;
        Ok(true)
    }

    /// Replace a record.
    pub fn put(&self, rec: &ContainerRecord) -> Result<(), DbError> {
        let value = encode(rec)?;
        let txn = self.db.begin_write()?;
        {
            let mut t = txn.open_table(CONTAINERS)?;
            t.insert(rec.id.as_str(), value.as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Remove a record; false when there was none.
    pub fn delete(&self, id: &str) -> Result<bool, DbError> {
        let txn = self.db.begin_write()?;
        let existed = {
            let mut t = txn.open_table(CONTAINERS)?;
            let old = t.remove(id)?;
            old.is_some()
        };
        txn.commit()?;
        Ok(existed)
    }
}

/// The CRI's records (opaque JSON values to this file): pod sandboxes and the
/// CRI side of containers.
impl ContainerDb {
    fn raw_get(&self, table: Table, id: &str) -> Result<Option<Vec<u8>>, DbError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(table)?;
        Ok(t.get(id)?.map(|v| v.value().to_vec()))
    }

    fn raw_list(&self, table: Table) -> Result<Vec<(String, Vec<u8>)>, DbError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(table)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (k, v) = item?;
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    fn raw_put(&self, table: Table, id: &str, value: &[u8]) -> Result<(), DbError> {
        let txn = self.db.begin_write()?;
        {
            let mut t = txn.open_table(table)?;
            t.insert(id, value)?;
        }
        txn.commit()?;
        Ok(())
    }

    fn raw_delete(&self, table: Table, id: &str) -> Result<bool, DbError> {
        let txn = self.db.begin_write()?;
        let existed = {
            let mut t = txn.open_table(table)?;
            let old = t.remove(id)?;
            old.is_some()
        };
        txn.commit()?;
        Ok(existed)
    }

    pub fn sandbox(&self, id: &str) -> Result<Option<Vec<u8>>, DbError> {
        self.raw_get(CRI_SANDBOXES, id)
    }

    pub fn sandboxes(&self) -> Result<Vec<(String, Vec<u8>)>, DbError> {
        self.raw_list(CRI_SANDBOXES)
    }

    pub fn put_sandbox(&self, id: &str, value: &[u8]) -> Result<(), DbError> {
        self.raw_put(CRI_SANDBOXES, id, value)
    }

    pub fn delete_sandbox(&self, id: &str) -> Result<bool, DbError> {
        self.raw_delete(CRI_SANDBOXES, id)
    }

    pub fn cri_container(&self, id: &str) -> Result<Option<Vec<u8>>, DbError> {
        self.raw_get(CRI_CONTAINERS, id)
    }

    pub fn cri_containers(&self) -> Result<Vec<(String, Vec<u8>)>, DbError> {
        self.raw_list(CRI_CONTAINERS)
    }

    pub fn put_cri_container(&self, id: &str, value: &[u8]) -> Result<(), DbError> {
        self.raw_put(CRI_CONTAINERS, id, value)
    }

    pub fn delete_cri_container(&self, id: &str) -> Result<bool, DbError> {
        self.raw_delete(CRI_CONTAINERS, id)
    }
}

type Table = TableDefinition<'static, &'static str, &'static [u8]>;

fn encode(rec: &ContainerRecord) -> Result<Vec<u8>, DbError> {
    serde_json::to_vec(rec).map_err(|source| DbError::Record {
        id: rec.id.clone(),
        source,
    })
}

fn decode(id: &str, v: &[u8]) -> Result<ContainerRecord, DbError> {
    serde_json::from_slice(v).map_err(|source| DbError::Record {
        id: id.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str) -> ContainerRecord {
        ContainerRecord {
            id: id.to_string(),
            image: "busybox".to_string(),
            spec: "{}".to_string(),
            snapshot_key: id.to_string(),
            labels: BTreeMap::new(),
            runtime: String::new(),
            log_path: String::new(),
            created_at: "2024-01-01T00:00:00Z".to_string(),
            updated_at: "2024-01-01T00:00:00Z".to_string(),
        }
    }

    #[test]
    fn records_are_added_once_replaced_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.redb");
        let db = ContainerDb::open(&path).unwrap();
        assert!(db.insert_new(&rec("a")).unwrap());
        assert!(!db.insert_new(&rec("a")).unwrap());
        let mut r = rec("a");
        r.image = "alpine".to_string();
        db.put(&r).unwrap();
        drop(db);
        let db = ContainerDb::open(&path).unwrap();
        assert_eq!(db.get("a").unwrap().unwrap().image, "alpine");
        assert_eq!(db.list().unwrap().len(), 1);
        assert!(db.delete("a").unwrap());
        assert!(!db.delete("a").unwrap());
        assert!(db.get("a").unwrap().is_none());
    }
}
