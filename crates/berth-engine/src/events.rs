//! Docker's event stream (`GET /events`): a hub that keeps the last events (as dockerd
//! keeps 256, so `--since` can look back) and hands new ones to every listener.
//!
//! berthd also appends every event to a journal under its exec root
//! (`events.jsonl`, one JSON object per line, cut back to the last events now and
//! then) and reads it again when it starts: a berthd restart keeps what `--since`
//! sees, and an event that carries a key (a container's `die`) is known to have been
//! published, so it is published once even when berthd dies right around it.
//!
//! Container events come from the manager's `Events.Subscribe` stream (followed by
//! [`crate::link`]), translated to Docker's actions (create, start, destroy, pause,
//! ...) with the engine's names for them, except `die`, which the state machine
//! publishes once per exit it applies; image, volume and commit events are published by the handlers that do the
//! work, because only they know which Docker verb it was (a manager "image created"
//! may be a pull, a tag, an import or a load).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::engine::Engine;
use crate::manager::images::Envelope;
use berth_api::berth::manager::v1::envelope::Event;

/// Events kept for `since`.
const HISTORY: usize = 256;
/// Live events queued per listener before it starts losing them.
const QUEUE: usize = 1024;
/// The journal is cut back to the last [`HISTORY`] events when it has this many.
const JOURNAL_MAX: usize = 4 * HISTORY;
/// The journal's file name under the exec root.
pub const JOURNAL: &str = "events.jsonl";

/// One event, as Docker describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerEvent {
    /// "container", "image", "volume", "network", "daemon".
    pub typ: &'static str,
    pub action: String,
    pub id: String,
    pub attributes: BTreeMap<String, String>,
    /// Nanoseconds since the epoch.
    pub time_nano: i64,
    /// What makes this event once-only (a container's `die`: the run it ends), or
    /// "". Kept in the journal, never shown to clients.
    pub key: String,
}

impl DockerEvent {
    /// An event stamped now.
    pub fn now(typ: &'static str, action: &str, id: &str) -> DockerEvent {
        DockerEvent {
            typ,
            action: action.to_string(),
            id: id.to_string(),
            attributes: BTreeMap::new(),
            time_nano: now_nanos(),
            key: String::new(),
        }
    }

    /// Sets the once-only key.
    pub fn with_key(mut self, key: impl Into<String>) -> DockerEvent {
        self.key = key.into();
        self
    }

    /// Adds an attribute.
    pub fn attr(mut self, k: &str, v: impl Into<String>) -> DockerEvent {
        self.attributes.insert(k.to_string(), v.into());
        self
    }

    /// The JSON line dockerd writes: the Type/Action/Actor form, plus the older
    /// status/id/from fields that clients before API 1.22 read.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "Type": self.typ,
            "Action": self.action,
            "Actor": {"ID": self.id, "Attributes": self.attributes},
            "scope": "local",
            "time": self.time_nano.div_euclid(1_000_000_000),
            "timeNano": self.time_nano,
        });
        if self.typ == "container" || self.typ == "image" {
            v["status"] = json!(self.action);
            v["id"] = json!(self.id);
            if let Some(img) = self.attributes.get("image") {
                if self.typ == "container" {
                    v["from"] = json!(img);
                }
            }
        }
        v
    }
}

/// Nanoseconds since the epoch, now.
pub fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

/// One line of the journal.
#[derive(Debug, Serialize, Deserialize)]
struct Line {
    #[serde(rename = "t")]
    typ: String,
    #[serde(rename = "a")]
    action: String,
    id: String,
    #[serde(rename = "attrs", default)]
    attributes: BTreeMap<String, String>,
    #[serde(rename = "ns")]
    time_nano: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    key: String,
}

impl Line {
    fn of(ev: &DockerEvent) -> Line {
        Line {
            typ: ev.typ.to_string(),
            action: ev.action.clone(),
            id: ev.id.clone(),
            attributes: ev.attributes.clone(),
            time_nano: ev.time_nano,
            key: ev.key.clone(),
        }
    }

    fn event(self) -> Option<DockerEvent> {
        let typ = match self.typ.as_str() {
            "container" => "container",
            "image" => "image",
            "volume" => "volume",
            "network" => "network",
            "daemon" => "daemon",
            _ => return None,
        };
        Some(DockerEvent {
            typ,
            action: self.action,
            id: self.id,
            attributes: self.attributes,
            time_nano: self.time_nano,
            key: self.key,
        })
    }
}

/// The journal file and how many lines it has.
#[derive(Debug)]
struct Journal {
    path: PathBuf,
    file: File,
    lines: usize,
}

#[derive(Debug, Default)]
struct Inner {
    history: VecDeque<Arc<DockerEvent>>,
    /// Container id -> (name without slash, image as the user gave it): remembered
    /// so events about a container that is already gone (destroy) still carry them.
    names: HashMap<String, (String, String)>,
    /// The keys of the keyed events in the journal.
    keys: HashSet<String>,
    journal: Option<Journal>,
}

/// The hub.
#[derive(Debug)]
pub struct EventHub {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Arc<DockerEvent>>,
}

impl Default for EventHub {
    fn default() -> Self {
        EventHub {
            inner: Mutex::new(Inner::default()),
            tx: broadcast::channel(QUEUE).0,
        }
    }
}

fn append(file: &mut File, ev: &DockerEvent) -> std::io::Result<()> {
    let mut data = serde_json::to_vec(&Line::of(ev)).map_err(std::io::Error::other)?;
    data.push(b'\n');
    // One write of a whole line: a crash leaves at most a torn last line, which
    // the reader skips.
    file.write_all(&data)
}

impl EventHub {
    /// A hub with its journal at `path`: the events in it become the history, and
    /// new ones are appended. Without a readable journal the hub starts empty and
    /// says why.
    pub fn open(path: &Path) -> EventHub {
        let hub = EventHub::default();
        {
            let mut inner = hub.lock();
            let mut lines = 0;
            if let Ok(f) = File::open(path) {
                for line in std::io::BufReader::new(f).lines() {
                    let Ok(line) = line else { break };
                    lines += 1;
                    let Some(ev) = serde_json::from_str::<Line>(&line)
                        .ok()
                        .and_then(Line::event)
                    else {
                        continue;
                    };
                    if !ev.key.is_empty() {
                        inner.keys.insert(ev.key.clone());
                    }
                    if inner.history.len() == HISTORY {
                        inner.history.pop_front();
                    }
                    inner.history.push_back(Arc::new(ev));
                }
            }
            match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                Ok(file) => {
                    inner.journal = Some(Journal {
                        path: path.to_path_buf(),
                        file,
                        lines,
                    })
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "no event journal: events are kept in memory only")
                }
            }
        }
        hub
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether an event with this once-only key was published.
    pub fn published(&self, key: &str) -> bool {
        self.lock().keys.contains(key)
    }

    /// Records `ev` (in the journal first) and hands it to the listeners.
    pub fn publish(&self, ev: DockerEvent) {
        let ev = Arc::new(ev);
        let mut inner = self.lock();
        if let Some(j) = inner.journal.as_mut() {
            if let Err(e) = append(&mut j.file, &ev) {
                tracing::warn!(path = %j.path.display(), error = %e, "writing the event journal");
            }
            j.lines += 1;
        }
        if !ev.key.is_empty() {
            inner.keys.insert(ev.key.clone());
        }
        if inner.history.len() == HISTORY {
            inner.history.pop_front();
        }
        inner.history.push_back(ev.clone());
        if inner
            .journal
            .as_ref()
            .is_some_and(|j| j.lines >= JOURNAL_MAX)
        {
            Self::compact(&mut inner);
        }
        // Sent under the lock, so a listener that took the history under it sees
        // every event exactly once.
        let _ = self.tx.send(ev);
    }

    /// Cuts the journal back to the history (written aside, then renamed over it).
    fn compact(inner: &mut Inner) {
        let Some(j) = inner.journal.as_ref() else {
            return;
        };
        let path = j.path.clone();
        let mut data = Vec::new();
        for ev in &inner.history {
            if let Ok(line) = serde_json::to_vec(&Line::of(ev)) {
                data.extend_from_slice(&line);
                data.push(b'\n');
            }
        }
        let reopened = crate::fsutil::atomic_write(&path, &data, 0o600)
            .and_then(|()| std::fs::OpenOptions::new().append(true).open(&path));
        match reopened {
            Ok(file) => {
                inner.keys = inner
                    .history
                    .iter()
                    .filter(|e| !e.key.is_empty())
                    .map(|e| e.key.clone())
                    .collect();
                inner.journal = Some(Journal {
                    path,
                    file,
                    lines: inner.history.len(),
                });
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cutting the event journal back")
            }
        }
    }

    /// The events kept so far and a receiver for the ones to come, taken together.
    pub fn listen(&self) -> (Vec<Arc<DockerEvent>>, broadcast::Receiver<Arc<DockerEvent>>) {
        let inner = self.lock();
        (inner.history.iter().cloned().collect(), self.tx.subscribe())
    }

    fn remember(&self, id: &str, name: &str, image: &str) {
        self.lock()
            .names
            .insert(id.to_string(), (name.to_string(), image.to_string()));
    }

    fn remembered(&self, id: &str) -> Option<(String, String)> {
        self.lock().names.get(id).cloned()
    }

    fn forget(&self, id: &str) {
        self.lock().names.remove(id);
    }
}

/// Parses dockerd's `since`/`until`: seconds since the epoch with an optional
/// fraction (`1700000000.123456789`). `None` for anything else.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    let nanos: i64 = if frac.is_empty() {
        0
    } else {
        if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        format!("{frac:0<9}").parse().ok()?
    };
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// dockerd's action for an exec's create and start, the command in it
/// (`exec_start: sh -c echo hi`).
pub fn exec_action(kind: &str, cmd: &[String]) -> String {
    let (first, rest) = match cmd.split_first() {
        Some((first, rest)) => (first.as_str(), rest.join(" ")),
        None => ("", String::new()),
    };
    format!("{kind}: {first} {rest}")
}

impl Engine {
    /// Publishes a container event the engine makes itself (a kill, a stop, a
    /// rename...), with `attrs` beside the name, image and labels.
    pub fn publish_container(&self, action: &str, id: &str, attrs: &[(&str, String)]) {
        let mut ev = self.container_event(action, id);
        for (k, v) in attrs {
            ev = ev.attr(k, v.clone());
        }
        self.event_hub.publish(ev);
    }

    /// A container event with the name and image Docker puts in its attributes.
    pub fn container_event(&self, action: &str, id: &str) -> DockerEvent {
        let (name, image) = match self.store.get(id) {
            Ok(rec) => {
                let name = rec.name.trim_start_matches('/').to_string();
                let image = rec.config.image.clone().unwrap_or_default();
                self.event_hub.remember(id, &name, &image);
                (name, image)
            }
            Err(_) => self.event_hub.remembered(id).unwrap_or_default(),
        };
        let mut ev = DockerEvent::now("container", action, id);
        if !image.is_empty() {
            ev = ev.attr("image", image);
        }
        if !name.is_empty() {
            ev = ev.attr("name", name);
        }
        if let Ok(rec) = self.store.get(id) {
            for (k, v) in rec.config.labels.unwrap_or_default() {
                ev = ev.attr(&k, v);
            }
        }
        ev
    }

    /// Turns one manager event into Docker's, if it has one. A container's `die`
    /// is not among them: the state machine publishes it when it applies the exit,
    /// once, however often the manager reports it.
    pub(crate) fn translate(&self, m: Envelope) -> Option<DockerEvent> {
        let mut ev = match m.event? {
            Event::ContainerCreate(c) => self.container_event("create", &c.id),
            Event::TaskStart(t) => self.container_event("start", &t.container_id),
            Event::TaskExit(t) if t.exec_id.is_empty() => return None,
            Event::TaskExit(t) => self
                .container_event("exec_die", &t.container_id)
                .attr("exitCode", t.exit_status.to_string())
                .attr("execID", t.exec_id),
            Event::TaskOom(t) => self.container_event("oom", &t.container_id),
            Event::TaskPaused(t) => self.container_event("pause", &t.container_id),
            Event::TaskResumed(t) => self.container_event("unpause", &t.container_id),
            // An exec's create and start are the engine's to publish, as dockerd
            // does, with the command in the action (`exec_create: sh -c ...`), the
            // create when the exec is made, not when its process is.
            Event::ContainerDelete(c) => {
                let ev = self.container_event("destroy", &c.id);
                self.event_hub.forget(&c.id);
                ev
            }
            _ => return None,
        };
        if let Some(t) = chrono::DateTime::parse_from_rfc3339(&m.timestamp)
            .ok()
            .and_then(|t| t.timestamp_nanos_opt())
        {
            ev.time_nano = t;
        }
        Some(ev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_as_dockerd_takes_them() {
        assert_eq!(parse_timestamp("12"), Some(12_000_000_000));
        assert_eq!(parse_timestamp("12.5"), Some(12_500_000_000));
        assert_eq!(parse_timestamp("12.000000001"), Some(12_000_000_001));
        assert_eq!(parse_timestamp("x"), None);
        assert_eq!(parse_timestamp("1.1234567891"), None);
    }

    #[test]
    fn the_journal_keeps_events_and_keys_across_a_restart() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join(JOURNAL);
        let hub = EventHub::open(&path);
        hub.publish(DockerEvent::now("container", "start", "c1"));
        hub.publish(
            DockerEvent::now("container", "die", "c1")
                .attr("exitCode", "3")
                .with_key("die:c1:7"),
        );
        assert!(hub.published("die:c1:7"));
        drop(hub);
        // A torn last line (a crash mid-write) is skipped.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"t\":\"contai")
            .unwrap();
        let again = EventHub::open(&path);
        assert!(again.published("die:c1:7"));
        assert!(!again.published("die:c1:8"));
        let (old, _) = again.listen();
        assert_eq!(old.len(), 2);
        assert_eq!(old[1].attributes["exitCode"], "3");
        for i in 0..JOURNAL_MAX {
            again.publish(DockerEvent::now("image", "tag", &i.to_string()));
        }
        let n = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(n <= JOURNAL_MAX, "{n} lines");
        assert!(!again.published("die:c1:7"), "cut back with its event");
    }

    #[test]
    fn history_is_bounded_and_listeners_see_new_events() {
        let hub = EventHub::default();
        for i in 0..300 {
            hub.publish(DockerEvent::now("image", "tag", &i.to_string()));
        }
        let (old, mut rx) = hub.listen();
        assert_eq!(old.len(), HISTORY);
        assert_eq!(old[0].id, "44");
        hub.publish(DockerEvent::now("volume", "create", "v"));
        let ev = rx.try_recv().unwrap();
        assert_eq!(ev.action, "create");
        let j = ev.to_json();
        assert_eq!(j["Type"], "volume");
        assert_eq!(j["Actor"]["ID"], "v");
        assert!(j["timeNano"].as_i64().unwrap() > 0);
    }
}
