//! The event bus: every event is stamped and handed to each subscriber whose
//! filters match, in the order [`Events::publish`] was called (one lock around the
//! fan-out), so a subscriber sees a task's start before its exit.
//!
//! Each subscriber has its own bounded queue. One that falls too far behind is not
//! allowed to slow the daemon down, nor to miss events silently: its stream ends
//! with DATA_LOSS, and it re-reads the state (Tasks.List, Wait) and subscribes again.

use std::sync::{Mutex, MutexGuard, PoisonError};

use berth_api::berth::manager::v1 as pb;
use berth_api::berth::manager::v1::envelope::Event;
use tokio::sync::mpsc;
use tonic::Status;

use super::error::DaemonError;

/// Events queued per subscriber before it is cut off.
const QUEUE: usize = 4096;

/// What a subscriber receives.
pub type Item = Result<pb::Envelope, Status>;

/// Which events a subscriber wants: filters with the same key are alternatives,
/// different keys must all match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    topics: Vec<String>,
    ids: Vec<String>,
}

impl Filter {
    /// Parse `topic=<prefix>` and `id=<container or image>` filters.
    pub fn parse(filters: &[String]) -> Result<Filter, DaemonError> {
        let mut f = Filter::default();
        for s in filters {
            match s.split_once('=') {
                Some(("topic", v)) if !v.is_empty() => f.topics.push(v.to_string()),
                Some(("id", v)) if !v.is_empty() => f.ids.push(v.to_string()),
                _ => return Err(DaemonError::BadFilter(s.clone())),
            }
        }
        Ok(f)
    }

    pub fn matches(&self, env: &pb::Envelope) -> bool {
        let topic_ok =
            self.topics.is_empty() || self.topics.iter().any(|t| env.topic.starts_with(t));
        let id_ok = self.ids.is_empty()
            || env
                .event
                .as_ref()
                .is_some_and(|e| ids_of(e).iter().any(|i| self.ids.iter().any(|w| w == i)));
        topic_ok && id_ok
    }
}

/// The ids an event is about (a container id; an image's name and id).
fn ids_of(e: &Event) -> Vec<&str> {
    match e {
        Event::TaskCreate(x) => vec![&x.container_id],
        Event::TaskStart(x) => vec![&x.container_id],
        Event::TaskExit(x) => vec![&x.container_id],
        Event::TaskOom(x) => vec![&x.container_id],
        Event::TaskDelete(x) => vec![&x.container_id],
        Event::TaskPaused(x) => vec![&x.container_id],
        Event::TaskResumed(x) => vec![&x.container_id],
        Event::TaskExecAdded(x) => vec![&x.container_id],
        Event::TaskExecStarted(x) => vec![&x.container_id],
        Event::ImageCreate(x) | Event::ImageUpdate(x) | Event::ImageDelete(x) => {
            vec![&x.name, &x.id]
        }
        Event::ContainerCreate(x) | Event::ContainerUpdate(x) | Event::ContainerDelete(x) => {
            vec![&x.id]
        }
    }
}

/// The topic of an event, as containerd names them.
pub fn topic_of(e: &Event) -> &'static str {
    match e {
        Event::TaskCreate(_) => "/tasks/create",
        Event::TaskStart(_) => "/tasks/start",
        Event::TaskExit(_) => "/tasks/exit",
        Event::TaskOom(_) => "/tasks/oom",
        Event::TaskDelete(_) => "/tasks/delete",
        Event::TaskPaused(_) => "/tasks/paused",
        Event::TaskResumed(_) => "/tasks/resumed",
        Event::TaskExecAdded(_) => "/tasks/exec-added",
        Event::TaskExecStarted(_) => "/tasks/exec-started",
        Event::ImageCreate(_) => "/images/create",
        Event::ImageUpdate(_) => "/images/update",
        Event::ImageDelete(_) => "/images/delete",
        Event::ContainerCreate(_) => "/containers/create",
        Event::ContainerUpdate(_) => "/containers/update",
        Event::ContainerDelete(_) => "/containers/delete",
    }
}

#[derive(Debug)]
struct Subscriber {
    filter: Filter,
    tx: mpsc::Sender<Item>,
}

/// The bus.
#[derive(Debug, Default)]
pub struct Events {
    subs: Mutex<Vec<Subscriber>>,
}

impl Events {
    fn subs(&self) -> MutexGuard<'_, Vec<Subscriber>> {
        self.subs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stamp `event` and deliver it to every matching subscriber.
    pub fn publish(&self, event: Event) {
        let env = pb::Envelope {
            timestamp: super::now_rfc3339(),
            topic: topic_of(&event).to_string(),
            event: Some(event),
        };
        tracing::debug!(topic = %env.topic, "event");
        self.subs().retain(|s| {
            if !s.filter.matches(&env) {
                return !s.tx.is_closed();
            }
            // The last free slot is kept for the DATA_LOSS notice.
            if s.tx.capacity() <= 1 {
                let _ = s.tx.try_send(Err(Status::data_loss(
                    "event subscriber fell too far behind; events were dropped: re-read the state and subscribe again",
                )));
                return false;
            }
            s.tx.try_send(Ok(env.clone())).is_ok()
        });
    }

    /// A new subscriber with `filters`.
    pub fn subscribe(&self, filters: &[String]) -> Result<mpsc::Receiver<Item>, DaemonError> {
        let filter = Filter::parse(filters)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        self.subs().push(Subscriber { filter, tx });
        Ok(rx)
    }

    /// End every subscription (the daemon is stopping).
    pub fn close(&self) {
        self.subs().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(id: &str) -> Event {
        Event::TaskExit(pb::TaskExit {
            container_id: id.to_string(),
            ..Default::default()
        })
    }

    #[test]
    fn filters_select_by_topic_prefix_and_id() {
        let f = Filter::parse(&["topic=/tasks".into(), "id=a".into(), "id=b".into()]).unwrap();
        let env = |e: Event| pb::Envelope {
            timestamp: String::new(),
            topic: topic_of(&e).to_string(),
            event: Some(e),
        };
        assert!(f.matches(&env(exit("a"))));
        assert!(f.matches(&env(exit("b"))));
        assert!(!f.matches(&env(exit("c"))));
        let img = Event::ImageCreate(pb::ImageEvent {
            name: "a".into(),
            id: "sha256:x".into(),
        });
        assert!(!f.matches(&env(img)));
        assert!(Filter::parse(&["bogus".into()]).is_err());
        assert!(Filter::parse(&["topic=".into()]).is_err());
    }

    #[test]
    fn subscribers_get_events_in_order_and_slow_ones_are_cut_off() {
        let bus = Events::default();
        let mut all = bus.subscribe(&[]).unwrap();
        let mut only_b = bus.subscribe(&["id=b".into()]).unwrap();
        bus.publish(exit("a"));
        bus.publish(exit("b"));
        let got: Vec<String> = (0..2)
            .map(|_| match all.try_recv().unwrap().unwrap().event {
                Some(Event::TaskExit(x)) => x.container_id,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(got, ["a", "b"]);
        assert!(only_b.try_recv().unwrap().is_ok());
        assert!(only_b.try_recv().is_err());

        for _ in 0..QUEUE + 10 {
            bus.publish(exit("a"));
        }
        let mut last = None;
        while let Ok(item) = all.try_recv() {
            last = Some(item);
        }
        assert_eq!(last.unwrap().unwrap_err().code(), tonic::Code::DataLoss);
    }
}
