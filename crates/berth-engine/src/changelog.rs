//! Which container each of the last changes of a count concerned.
//!
//! The store and the networks count their changes, so that the container list can
//! be answered as it was while the count stands still. A count alone cannot tell a
//! change of a container the kept list shows from one of a container it never
//! showed (a `run --rm` that came and went between two `ps`), so each count also
//! keeps the ids of its last changes. Bounded: when the changes since a version
//! are no longer all here, the caller is told so and builds its answer again.
//!
//! Must never be the count itself: the owner bumps its count and records the change
//! under one lock, so that a reader sees both or neither.

use std::collections::VecDeque;

/// How many changes are remembered. A `run --rm` makes about ten; a client that
/// lists between bursts of starts sees far fewer than this between two lists.
const KEPT: usize = 256;

/// The ids concerned by the last changes, oldest first.
#[derive(Debug, Default)]
pub struct ChangeLog {
    /// `(version after the change, the container it concerned)`; `None`: a change
    /// that concerns every container (a network created or removed).
    entries: VecDeque<(u64, Option<Box<str>>)>,
}

impl ChangeLog {
    /// Records the change that made the count `version` (one more than the last).
    pub fn record(&mut self, version: u64, id: Option<&str>) {
        if self.entries.len() == KEPT {
            self.entries.pop_front();
        }
        self.entries.push_back((version, id.map(Box::from)));
    }

    /// Whether every change after `version`, up to `current` (the count now),
    /// concerned a container for which `unseen` says yes. No when the log no longer
    /// reaches back to `version`, or one of the changes concerned every container.
    pub fn only_unseen_since(
        &self,
        version: u64,
        current: u64,
        mut unseen: impl FnMut(&str) -> bool,
    ) -> bool {
        if version >= current {
            return version == current;
        }
        // The versions are consecutive, so the change right after `version` must
        // be here for all of them to be.
        match self.entries.front() {
            Some((first, _)) if *first <= version + 1 => {}
            _ => return false,
        }
        self.entries
            .iter()
            .filter(|(v, _)| *v > version)
            .all(|(_, id)| id.as_deref().is_some_and(&mut unseen))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_changes_after_a_version_are_asked_about() {
        let mut log = ChangeLog::default();
        for (v, id) in [(1, "a"), (2, "b"), (3, "c")] {
            log.record(v, Some(id));
        }
        let mut asked = vec![];
        assert!(log.only_unseen_since(1, 3, |id| {
            asked.push(id.to_string());
            true
        }));
        assert_eq!(asked, ["b", "c"]);
        assert!(!log.only_unseen_since(1, 3, |id| id != "c"));
        assert!(log.only_unseen_since(3, 3, |_| false));
        // A version from the future (a count read after the log) is not trusted.
        assert!(!log.only_unseen_since(4, 3, |_| true));
    }

    #[test]
    fn a_change_of_everything_or_a_forgotten_one_answers_no() {
        let mut log = ChangeLog::default();
        log.record(1, Some("a"));
        log.record(2, None);
        log.record(3, Some("b"));
        assert!(!log.only_unseen_since(0, 3, |_| true));
        assert!(log.only_unseen_since(2, 3, |_| true));
        for v in 4..4 + KEPT as u64 {
            log.record(v, Some("x"));
        }
        let current = 3 + KEPT as u64;
        assert!(!log.only_unseen_since(2, current, |_| true));
        assert!(log.only_unseen_since(3, current, |_| true));
    }
}
