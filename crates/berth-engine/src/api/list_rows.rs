//! The container list's rows (`GET /containers/json`), each encoded once per change
//! of what it shows.
//!
//! Clients list often (compose and docker-py poll it, `ps` in loops), and a row
//! changes only when its container's record, its network state or configuration, or
//! a network's definition does. So each row's JSON is kept with the `Arc`s it was
//! built from and reused while they are still the same allocations. Holding those
//! `Arc`s is what makes pointer equality a version check: an allocation this cache
//! holds cannot be freed and handed to a newer record. The one time-dependent
//! field, `Status` ("Up 5 minutes"), is never kept: it is written after the kept
//! part at each listing.
//!
//! Must never decide anything: it only remembers what [`super::containers`] built.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};

use crate::network::store::{ContainerNetConfig, LiveState};
use crate::store::ContainerRecord;

/// What one row was built from, and its JSON object without `Status` and without
/// the closing brace.
#[derive(Debug)]
struct Row {
    rec: Arc<ContainerRecord>,
    live: Option<Arc<LiveState>>,
    config: Arc<ContainerNetConfig>,
    networks: u64,
    head: Box<[u8]>,
    /// What `Status` counts from (parsed once).
    since: Option<DateTime<Utc>>,
}

/// The inputs of a row, read before it is built (so that a change racing the build
/// makes the next listing build it again, never keeps a stale row).
pub struct RowKey {
    pub rec: Arc<ContainerRecord>,
    pub live: Option<Arc<LiveState>>,
    pub config: Arc<ContainerNetConfig>,
    pub networks: u64,
}

impl RowKey {
    fn same(&self, row: &Row) -> bool {
        Arc::ptr_eq(&self.rec, &row.rec)
            && Arc::ptr_eq(&self.config, &row.config)
            && self.networks == row.networks
            && match (&self.live, &row.live) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
    }
}

#[derive(Debug, Default)]
pub struct ListRows {
    rows: Mutex<HashMap<String, Row>>,
}

impl ListRows {
    /// Appends the rows of `keys` to `out` as a JSON array, each row's kept part
    /// built by `build` when it is missing or out of date (`build` gives the row's
    /// JSON object without `Status`, `since` the time its status counts from),
    /// then its `Status` from `status`.
    pub fn write_array<E>(
        &self,
        keys: Vec<RowKey>,
        out: &mut Vec<u8>,
        mut build: impl FnMut(&RowKey) -> Result<Vec<u8>, E>,
        since: impl Fn(&ContainerRecord) -> Option<DateTime<Utc>>,
        status: impl Fn(&ContainerRecord, Option<DateTime<Utc>>) -> String,
    ) -> Result<(), E> {
        let mut rows = self.rows.lock().unwrap_or_else(PoisonError::into_inner);
        out.push(b'[');
        for (i, key) in keys.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            match rows.get(&key.rec.id) {
                Some(row) if key.same(row) => write_row(out, row, &status(&key.rec, row.since)),
                _ => {
                    let mut head = build(&key)?;
                    // An object: drop its closing brace so that Status can follow.
                    if head.last() == Some(&b'}') {
                        head.pop();
                    }
                    let row = Row {
                        rec: key.rec.clone(),
                        live: key.live.clone(),
                        config: key.config.clone(),
                        networks: key.networks,
                        head: head.into_boxed_slice(),
                        since: since(&key.rec),
                    };
                    write_row(out, &row, &status(&key.rec, row.since));
                    rows.insert(key.rec.id.clone(), row);
                }
            }
        }
        out.push(b']');
        // A row whose record only this cache still holds belongs to a container
        // that changed or is gone.
        rows.retain(|_, r| Arc::strong_count(&r.rec) > 1);
        Ok(())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.rows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// A kept row with its `Status`.
fn write_row(out: &mut Vec<u8>, row: &Row, status: &str) {
    out.extend_from_slice(&row.head);
    if row.head.len() > 1 {
        out.push(b',');
    }
    out.extend_from_slice(b"\"Status\":");
    // A string always encodes.
    let _ = serde_json::to_writer(&mut *out, status);
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str) -> Arc<ContainerRecord> {
        Arc::new(ContainerRecord {
            id: id.to_string(),
            ..ContainerRecord::default()
        })
    }

    fn key(rec: &Arc<ContainerRecord>, config: &Arc<ContainerNetConfig>, n: u64) -> RowKey {
        RowKey {
            rec: rec.clone(),
            live: None,
            config: config.clone(),
            networks: n,
        }
    }

    #[test]
    fn rows_are_built_once_per_change_and_status_is_always_fresh() {
        let cache = ListRows::default();
        let cfg = Arc::new(ContainerNetConfig::default());
        let a = rec("a");
        let b = rec("b");
        let mut builds = vec![];
        let list = |keys: Vec<RowKey>, builds: &mut Vec<String>| {
            let mut out = vec![];
            cache
                .write_array::<()>(
                    keys,
                    &mut out,
                    |k| {
                        builds.push(k.rec.id.clone());
                        Ok(format!("{{\"Id\":\"{}\"}}", k.rec.id).into_bytes())
                    },
                    |_| None,
                    |r, _| format!("s-{}", r.id),
                )
                .unwrap();
            String::from_utf8(out).unwrap()
        };
        let out = list(vec![key(&a, &cfg, 0), key(&b, &cfg, 0)], &mut builds);
        assert_eq!(
            out,
            r#"[{"Id":"a","Status":"s-a"},{"Id":"b","Status":"s-b"}]"#
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v[1]["Status"], "s-b");
        assert_eq!(builds, ["a", "b"]);
        // Nothing changed: nothing built.
        list(vec![key(&a, &cfg, 0), key(&b, &cfg, 0)], &mut builds);
        assert_eq!(builds.len(), 2);
        // A new record, a new config, a network change: each builds its row again.
        let a2 = rec("a");
        list(vec![key(&a2, &cfg, 0), key(&b, &cfg, 0)], &mut builds);
        assert_eq!(builds[2..], ["a"]);
        let cfg2 = Arc::new(ContainerNetConfig::default());
        list(vec![key(&a2, &cfg, 0), key(&b, &cfg2, 0)], &mut builds);
        assert_eq!(builds[3..], ["b"]);
        list(vec![key(&a2, &cfg, 1), key(&b, &cfg2, 0)], &mut builds);
        assert_eq!(builds[4..], ["a"]);
        // Gone from the store (only the cache holds it): dropped.
        drop((a, b));
        assert_eq!(cache.len(), 2);
        list(vec![key(&a2, &cfg, 1)], &mut builds);
        assert_eq!(cache.len(), 1);
        assert_eq!(list(vec![], &mut builds), "[]");
    }
}
