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
//! A list without filters (`ps`, `ps -a`) is also kept whole, with the version of
//! the records (the store's count of changes) and of the network state (the
//! networks' count) it was read at, and the moment its first `Status` text would
//! read differently: while all three hold, the same bytes are the answer. Every
//! change of a record or a network state bumps its count, so a kept answer is
//! never one change behind.
//!
//! Must never decide anything: it only remembers what [`super::containers`] built.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
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

/// A whole answer to a list without filters, and what it was built from.
#[derive(Debug)]
struct Whole {
    all: bool,
    store: u64,
    networks: u64,
    body: Bytes,
    /// When the first of its `Status` texts changes (None: never).
    until: Option<DateTime<Utc>>,
}

#[derive(Debug, Default)]
pub struct ListRows {
    /// Keyed by the address of the record each row was built from: the row holds
    /// that `Arc`, so no other record can have the address while the row is kept,
    /// and a changed record (a new allocation) finds no row. An integer key keeps
    /// the lookup within the table, where a string key's bytes would be one more
    /// cache line to fetch per row on a list after a quiet spell.
    rows: Mutex<rustc_hash::FxHashMap<usize, Row>>,
    /// The last answers to `ps` and `ps -a` (`all`), reused while no record, no
    /// network state and no `Status` text changed: a client polling the list
    /// gets it without a row being looked at.
    whole: Mutex<Vec<Whole>>,
    /// The length of the last list written, to size the next one's buffer.
    last_len: AtomicUsize,
}

impl ListRows {
    /// The answer kept for a list without filters (`all` or not) built from the
    /// records of `store` version and the network state of `networks` version,
    /// if its `Status` texts still hold at `now`.
    pub fn whole(&self, all: bool, store: u64, networks: u64, now: DateTime<Utc>) -> Option<Bytes> {
        let kept = self.whole.lock().unwrap_or_else(PoisonError::into_inner);
        kept.iter()
            .find(|w| {
                w.all == all
                    && w.store == store
                    && w.networks == networks
                    && w.until.is_none_or(|u| now < u)
            })
            .map(|w| w.body.clone())
    }

    /// Keeps an answer for [`Self::whole`] (the versions read before it was built).
    pub fn keep_whole(
        &self,
        all: bool,
        store: u64,
        networks: u64,
        body: Bytes,
        until: Option<DateTime<Utc>>,
    ) {
        let mut kept = self.whole.lock().unwrap_or_else(PoisonError::into_inner);
        kept.retain(|w| w.all != all);
        kept.push(Whole {
            all,
            store,
            networks,
            body,
            until,
        });
    }

    /// How long the last list was (a good first size for the next one).
    pub fn last_len(&self) -> usize {
        self.last_len.load(Ordering::Relaxed)
    }

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
        status: impl Fn(&ContainerRecord, Option<DateTime<Utc>>) -> (String, Option<DateTime<Utc>>),
    ) -> Result<Option<DateTime<Utc>>, E> {
        let mut first_change: Option<DateTime<Utc>> = None;
        let mut status = |rec: &ContainerRecord, since| {
            let (text, until) = status(rec, since);
            if let Some(u) = until {
                first_change = Some(first_change.map_or(u, |f| f.min(u)));
            }
            text
        };
        let mut rows = self.rows.lock().unwrap_or_else(PoisonError::into_inner);
        out.push(b'[');
        for (i, key) in keys.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let address = Arc::as_ptr(&key.rec) as usize;
            match rows.get(&address) {
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
                    rows.insert(address, row);
                }
            }
        }
        out.push(b']');
        self.last_len.store(out.len() + 1, Ordering::Relaxed);
        // A row whose record only this cache still holds belongs to a container
        // that changed or is gone.
        rows.retain(|_, r| Arc::strong_count(&r.rec) > 1);
        Ok(first_change)
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
    fn a_whole_list_is_reused_only_while_nothing_it_shows_changed() {
        let cache = ListRows::default();
        let now = Utc::now();
        let later = now + chrono::Duration::seconds(5);
        let body = Bytes::from_static(b"[]");
        assert!(cache.whole(false, 1, 1, now).is_none());
        cache.keep_whole(false, 1, 1, body.clone(), Some(later));
        cache.keep_whole(true, 1, 1, Bytes::from_static(b"[1]"), None);
        assert_eq!(cache.whole(false, 1, 1, now), Some(body));
        assert_eq!(
            cache.whole(true, 1, 1, later),
            Some(Bytes::from_static(b"[1]"))
        );
        // Another record version, network version, or a Status that changed.
        assert!(cache.whole(false, 2, 1, now).is_none());
        assert!(cache.whole(false, 1, 2, now).is_none());
        assert!(cache.whole(false, 1, 1, later).is_none());
        // A newer answer replaces the one of the same kind only.
        cache.keep_whole(false, 2, 1, Bytes::from_static(b"[2]"), None);
        assert!(cache.whole(false, 1, 1, now).is_none());
        assert!(cache.whole(true, 1, 1, now).is_some());
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
                    |r, _| (format!("s-{}", r.id), None),
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
        // Gone from the store (only the cache holds it): dropped. `a`'s first row
        // is kept until then too, since this test still holds its record.
        drop((a, b));
        assert_eq!(cache.len(), 3);
        list(vec![key(&a2, &cfg, 1)], &mut builds);
        assert_eq!(cache.len(), 1);
        assert_eq!(list(vec![], &mut builds), "[]");
    }
}
