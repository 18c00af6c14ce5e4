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
//! networks' count) it was read at, the containers it shows, and the moment its
//! first `Status` text would read differently: while both counts and the texts
//! hold, the same bytes are the answer. Every change of a record or a network state
//! bumps its count, so a kept answer is never one change behind. When a count moved,
//! the answer still holds if every change since concerned a container it does not
//! show and that is not to be shown now (the store and the networks remember which
//! container their last changes concerned): `ps` between short-lived containers
//! that came and went is answered without a row being looked at. And when only a
//! `Status` text moved on (with hundreds of containers started within the hour,
//! one does every few hundred milliseconds), the kept answer is copied with the new
//! texts written in, instead of being built again row by row.
//!
//! Must never decide anything: it only remembers what [`super::containers`] built.

use std::collections::hash_map::Entry;
use std::hash::Hasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::containers::StatusForm;
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
    /// Its `Status` but for the time (read from the record once).
    status: Arc<StatusForm>,
    /// [`id_hash`] of the container's id.
    id_hash: u64,
}

/// A container id's hash, for the set of those a whole answer shows. Two ids with
/// one hash only make that set answer yes for both: the answer is built again.
fn id_hash(id: &str) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    h.write(id.as_bytes());
    h.finish()
}

/// Where a row's `Status` text is in a written list, and what it is made from.
#[derive(Debug)]
struct Spot {
    /// The byte offset of the text's JSON string, and its length with the quotes.
    at: usize,
    len: usize,
    status: Arc<StatusForm>,
}

/// What [`ListRows::write_array`] wrote, for [`ListRows::keep_whole`].
pub struct Written {
    /// When the first of its `Status` texts changes (None: never).
    pub until: Option<DateTime<Utc>>,
    /// [`id_hash`] of each container it shows, sorted.
    shown: Box<[u64]>,
    /// Its `Status` texts, in order.
    spots: Vec<Spot>,
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
    /// [`id_hash`] of each container it shows, sorted.
    shown: Box<[u64]>,
    /// Its `Status` texts, in order.
    spots: Vec<Spot>,
}

impl Whole {
    /// The same answer with each `Status` text as it reads at `now`.
    fn restatus(&mut self, now: DateTime<Utc>) {
        let mut body = Vec::with_capacity(self.body.len() + 64);
        let mut from = 0;
        let mut statuses = StatusWriter::new(now);
        for spot in &mut self.spots {
            body.extend_from_slice(&self.body[from..spot.at]);
            from = spot.at + spot.len;
            spot.at = body.len();
            statuses.write(&mut body, &spot.status);
            spot.len = body.len() - spot.at;
        }
        body.extend_from_slice(&self.body[from..]);
        self.body = Bytes::from(body);
        self.until = statuses.until;
    }

    /// Whether it may show container `id` (yes for each id it shows, and rarely
    /// for another one).
    fn may_show(&self, id: &str) -> bool {
        self.shown.binary_search(&id_hash(id)).is_ok()
    }
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
    /// The answer kept for a list without filters (`all` or not), if it was built
    /// from the records of `store` version and the network state of `networks`
    /// version, or from older ones for which `unchanged` (the versions it was
    /// built from, and whether it may show a container) says nothing it shows or
    /// would show now changed since; it is then kept as built from `store` and
    /// `networks`. Its `Status` texts are written again when one of them reads
    /// differently at `now`.
    pub fn whole(
        &self,
        all: bool,
        store: u64,
        networks: u64,
        now: DateTime<Utc>,
        unchanged: impl FnOnce(u64, u64, &dyn Fn(&str) -> bool) -> bool,
    ) -> Option<Bytes> {
        let mut kept = self.whole.lock().unwrap_or_else(PoisonError::into_inner);
        let w = kept.iter_mut().find(|w| w.all == all)?;
        if (w.store, w.networks) != (store, networks) {
            if !unchanged(w.store, w.networks, &|id| w.may_show(id)) {
                return None;
            }
            w.store = store;
            w.networks = networks;
        }
        if w.until.is_some_and(|u| now >= u) {
            w.restatus(now);
        }
        Some(w.body.clone())
    }

    /// Keeps an answer for [`Self::whole`] (the versions read before it was built).
    pub fn keep_whole(&self, all: bool, store: u64, networks: u64, body: Bytes, written: Written) {
        let mut kept = self.whole.lock().unwrap_or_else(PoisonError::into_inner);
        kept.retain(|w| w.all != all);
        kept.push(Whole {
            all,
            store,
            networks,
            body,
            until: written.until,
            shown: written.shown,
            spots: written.spots,
        });
    }

    /// How long the last list was (a good first size for the next one).
    pub fn last_len(&self) -> usize {
        self.last_len.load(Ordering::Relaxed)
    }

    /// Appends the rows of `keys` to `out` as a JSON array, each row's kept part
    /// built by `build` when it is missing or out of date (`build` gives the row's
    /// JSON object without `Status`, `status` what its `Status` is made of), then
    /// its `Status` as it reads at `now`.
    pub fn write_array<E>(
        &self,
        keys: Vec<RowKey>,
        out: &mut Vec<u8>,
        mut build: impl FnMut(&RowKey) -> Result<Vec<u8>, E>,
        status: impl Fn(&ContainerRecord) -> StatusForm,
        now: DateTime<Utc>,
    ) -> Result<Written, E> {
        let mut shown = Vec::with_capacity(keys.len());
        let mut spots = Vec::with_capacity(keys.len());
        let mut statuses = StatusWriter::new(now);
        let mut rows = self.rows.lock().unwrap_or_else(PoisonError::into_inner);
        out.push(b'[');
        for (i, key) in keys.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let address = Arc::as_ptr(&key.rec) as usize;
            let row = match rows.entry(address) {
                Entry::Occupied(kept) if key.same(kept.get()) => kept.into_mut(),
                entry => {
                    let mut head = build(&key)?;
                    // An object: drop its closing brace so that Status can follow.
                    if head.last() == Some(&b'}') {
                        head.pop();
                    }
                    let row = Row {
                        status: Arc::new(status(&key.rec)),
                        id_hash: id_hash(&key.rec.id),
                        rec: key.rec,
                        live: key.live,
                        config: key.config,
                        networks: key.networks,
                        head: head.into_boxed_slice(),
                    };
                    match entry {
                        Entry::Occupied(mut old) => {
                            old.insert(row);
                            old.into_mut()
                        }
                        Entry::Vacant(new) => new.insert(row),
                    }
                }
            };
            shown.push(row.id_hash);
            out.extend_from_slice(&row.head);
            if row.head.len() > 1 {
                out.push(b',');
            }
            out.extend_from_slice(b"\"Status\":");
            let at = out.len();
            statuses.write(out, &row.status);
            spots.push(Spot {
                at,
                len: out.len() - at,
                status: row.status.clone(),
            });
            out.push(b'}');
        }
        out.push(b']');
        self.last_len.store(out.len() + 1, Ordering::Relaxed);
        // A row whose record only this cache still holds belongs to a container
        // that changed or is gone.
        rows.retain(|_, r| Arc::strong_count(&r.rec) > 1);
        shown.sort_unstable();
        Ok(Written {
            until: statuses.until,
            shown: shown.into_boxed_slice(),
            spots,
        })
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.rows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Writes `Status` texts as they read at one moment, and notes the first moment at
/// which one of them reads differently.
struct StatusWriter {
    now: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
    /// Each text before it is encoded, one buffer for all.
    text: String,
}

impl StatusWriter {
    fn new(now: DateTime<Utc>) -> StatusWriter {
        StatusWriter {
            now,
            until: None,
            text: String::new(),
        }
    }

    /// `status` as a JSON string.
    fn write(&mut self, out: &mut Vec<u8>, status: &StatusForm) {
        self.text.clear();
        status.write_at(self.now, &mut self.text);
        // A string always encodes.
        let _ = serde_json::to_writer(&mut *out, self.text.as_str());
        if let Some(t) = status.until(self.now) {
            self.until = Some(self.until.map_or(t, |u| u.min(t)));
        }
    }
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

    /// A container running since `since`.
    fn up(id: &str, since: DateTime<Utc>) -> Arc<ContainerRecord> {
        let mut r = ContainerRecord {
            id: id.to_string(),
            ..ContainerRecord::default()
        };
        r.state.status = Some(bollard_stubs::models::ContainerStateStatusEnum::RUNNING);
        r.state.started_at = Some(since.to_rfc3339());
        Arc::new(r)
    }

    fn key(rec: &Arc<ContainerRecord>, config: &Arc<ContainerNetConfig>, n: u64) -> RowKey {
        RowKey {
            rec: rec.clone(),
            live: None,
            config: config.clone(),
            networks: n,
        }
    }

    fn write(
        cache: &ListRows,
        keys: Vec<RowKey>,
        now: DateTime<Utc>,
        builds: &mut Vec<String>,
    ) -> (Vec<u8>, Written) {
        let mut out = vec![];
        let written = cache
            .write_array::<()>(
                keys,
                &mut out,
                |k| {
                    builds.push(k.rec.id.clone());
                    Ok(format!("{{\"Id\":\"{}\"}}", k.rec.id).into_bytes())
                },
                StatusForm::of,
                now,
            )
            .unwrap();
        (out, written)
    }

    /// Lists `recs` into `cache` at `now` and keeps the answer as one without
    /// filters.
    fn keep(
        cache: &ListRows,
        versions: (u64, u64),
        recs: &[&Arc<ContainerRecord>],
        now: DateTime<Utc>,
    ) -> Bytes {
        let cfg = Arc::new(ContainerNetConfig::default());
        let keys = recs.iter().map(|r| key(r, &cfg, 0)).collect();
        let (out, written) = write(cache, keys, now, &mut vec![]);
        let body = Bytes::from(out);
        cache.keep_whole(false, versions.0, versions.1, body.clone(), written);
        body
    }

    fn same_versions(_: u64, _: u64, _: &dyn Fn(&str) -> bool) -> bool {
        panic!("asked about changes with the versions unchanged")
    }

    #[test]
    fn a_whole_list_is_reused_only_while_nothing_it_shows_changed() {
        let cache = ListRows::default();
        let now = Utc::now();
        let changed = |_: u64, _: u64, _: &dyn Fn(&str) -> bool| false;
        assert!(cache.whole(false, 1, 1, now, changed).is_none());
        let a = rec("a");
        let body = keep(&cache, (1, 1), &[&a], now);
        assert_eq!(&body[..], br#"[{"Id":"a","Status":"Created"}]"#);
        assert_eq!(
            cache.whole(false, 1, 1, now, same_versions),
            Some(body.clone())
        );
        // The list of all containers is another answer.
        assert!(cache.whole(true, 1, 1, now, changed).is_none());
        // Another record version or network version.
        assert!(cache.whole(false, 2, 1, now, changed).is_none());
        assert!(cache.whole(false, 1, 2, now, changed).is_none());
        // A newer answer replaces the one of the same kind.
        let b = rec("b");
        keep(&cache, (2, 1), &[&a, &b], now);
        assert!(cache.whole(false, 1, 1, now, changed).is_none());
        assert!(cache.whole(false, 2, 1, now, same_versions).is_some());
    }

    #[test]
    fn a_whole_list_outlives_changes_of_containers_it_does_not_show() {
        let cache = ListRows::default();
        let now = Utc::now();
        let a = rec("a");
        let body = keep(&cache, (3, 7), &[&a], now);
        let mut asked = None;
        let kept = cache.whole(false, 5, 9, now, |store, networks, may_show| {
            asked = Some((store, networks, may_show("a"), may_show("b")));
            true
        });
        assert_eq!(kept, Some(body.clone()));
        assert_eq!(asked, Some((3, 7, true, false)));
        // Kept as built from the versions it was found good at: not asked again.
        assert_eq!(cache.whole(false, 5, 9, now, same_versions), Some(body));
        assert!(cache.whole(false, 6, 9, now, |_, _, _| false).is_none());
    }

    #[test]
    fn a_status_that_moved_on_is_written_into_the_kept_list() {
        let cache = ListRows::default();
        let t0 = Utc::now();
        let at = |ms: i64| t0 + chrono::Duration::milliseconds(ms);
        let (a, b, c) = (up("a", t0), rec("b"), up("c", at(-7_200_000)));
        let body = keep(&cache, (1, 1), &[&a, &b, &c], at(5_000));
        let expect = |a: &str, c: &str| {
            format!(
                r#"[{{"Id":"a","Status":"Up {a}"}},{{"Id":"b","Status":"Created"}},{{"Id":"c","Status":"Up {c}"}}]"#
            )
        };
        assert_eq!(body, expect("5 seconds", "2 hours"));
        // The same bytes until a text reads differently, then the new texts.
        assert_eq!(
            cache.whole(false, 1, 1, at(5_900), same_versions),
            Some(body)
        );
        let body = cache.whole(false, 1, 1, at(12_000), same_versions).unwrap();
        assert_eq!(body, expect("12 seconds", "2 hours"));
        let body = cache
            .whole(false, 1, 1, at(3_600_000), same_versions)
            .unwrap();
        assert_eq!(body, expect("About an hour", "3 hours"));
        // Written again from the texts of the last writing, not of the first.
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v[2]["Status"], "Up 3 hours");
    }

    #[test]
    fn rows_are_built_once_per_change_and_status_is_always_fresh() {
        let cache = ListRows::default();
        let cfg = Arc::new(ContainerNetConfig::default());
        let t0 = Utc::now();
        let a = up("a", t0);
        let b = rec("b");
        let mut builds = vec![];
        let list = |keys: Vec<RowKey>, ms: i64, builds: &mut Vec<String>| {
            let now = t0 + chrono::Duration::milliseconds(ms);
            String::from_utf8(write(&cache, keys, now, builds).0).unwrap()
        };
        let out = list(vec![key(&a, &cfg, 0), key(&b, &cfg, 0)], 0, &mut builds);
        assert_eq!(
            out,
            r#"[{"Id":"a","Status":"Up Less than a second"},{"Id":"b","Status":"Created"}]"#
        );
        assert_eq!(builds, ["a", "b"]);
        // Nothing changed: nothing built, the time counted anew.
        let out = list(vec![key(&a, &cfg, 0), key(&b, &cfg, 0)], 2_000, &mut builds);
        assert_eq!(builds.len(), 2);
        assert!(out.contains(r#""Status":"Up 2 seconds""#), "{out}");
        // A new record, a new config, a network change: each builds its row again.
        let a2 = rec("a");
        list(vec![key(&a2, &cfg, 0), key(&b, &cfg, 0)], 0, &mut builds);
        assert_eq!(builds[2..], ["a"]);
        let cfg2 = Arc::new(ContainerNetConfig::default());
        list(vec![key(&a2, &cfg, 0), key(&b, &cfg2, 0)], 0, &mut builds);
        assert_eq!(builds[3..], ["b"]);
        list(vec![key(&a2, &cfg, 1), key(&b, &cfg2, 0)], 0, &mut builds);
        assert_eq!(builds[4..], ["a"]);
        // Gone from the store (only the cache holds it): dropped. `a`'s first row
        // is kept until then too, since this test still holds its record.
        drop((a, b));
        assert_eq!(cache.len(), 3);
        list(vec![key(&a2, &cfg, 1)], 0, &mut builds);
        assert_eq!(cache.len(), 1);
        assert_eq!(list(vec![], 0, &mut builds), "[]");
    }
}
