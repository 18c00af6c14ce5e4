//! Docker's event stream (`GET /events`): a hub that keeps the last events in memory
//! (as dockerd keeps 256, so `--since` can look back) and hands new ones to every
//! listener.
//!
//! Container events come from the manager's `Events.Subscribe` stream (followed by
//! [`crate::link`]), translated to Docker's actions (create, start, destroy, pause,
//! ...) with the engine's names for them, except `die`, which the state machine
//! publishes once per exit it applies; image, volume and commit events are published by the handlers that do the
//! work, because only they know which Docker verb it was (a manager "image created"
//! may be a pull, a tag, an import or a load).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::engine::Engine;
use crate::manager::images::{EventKind, ManagerEvent};

/// Events kept for `since`.
const HISTORY: usize = 256;
/// Live events queued per listener before it starts losing them.
const QUEUE: usize = 1024;

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
        }
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

#[derive(Debug, Default)]
struct Inner {
    history: VecDeque<Arc<DockerEvent>>,
    /// Container id -> (name without slash, image as the user gave it): remembered
    /// so events about a container that is already gone (destroy) still carry them.
    names: HashMap<String, (String, String)>,
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

impl EventHub {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `ev` and hands it to the listeners.
    pub fn publish(&self, ev: DockerEvent) {
        let ev = Arc::new(ev);
        let mut inner = self.lock();
        if inner.history.len() == HISTORY {
            inner.history.pop_front();
        }
        inner.history.push_back(ev.clone());
        // Sent under the lock, so a listener that took the history under it sees
        // every event exactly once.
        let _ = self.tx.send(ev);
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

impl Engine {
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
    pub(crate) fn translate(&self, m: ManagerEvent) -> Option<DockerEvent> {
        let mut ev = match m.kind {
            EventKind::ContainerCreate { id, .. } => self.container_event("create", &id),
            EventKind::TaskStart { id, .. } => self.container_event("start", &id),
            EventKind::TaskExit { exec_id, .. } if exec_id.is_empty() => return None,
            EventKind::TaskExit {
                id,
                exec_id,
                exit_status,
                ..
            } => self
                .container_event("exec_die", &id)
                .attr("exitCode", exit_status.to_string())
                .attr("execID", exec_id),
            EventKind::TaskOom { id } => self.container_event("oom", &id),
            EventKind::TaskPaused { id } => self.container_event("pause", &id),
            EventKind::TaskResumed { id } => self.container_event("unpause", &id),
            EventKind::TaskExecAdded { id, exec_id } => self
                .container_event("exec_create", &id)
                .attr("execID", exec_id),
            EventKind::TaskExecStarted { id, exec_id } => self
                .container_event("exec_start", &id)
                .attr("execID", exec_id),
            EventKind::ContainerDelete { id } => {
                let ev = self.container_event("destroy", &id);
                self.event_hub.forget(&id);
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
