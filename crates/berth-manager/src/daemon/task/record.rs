//! `task.json`: what the manager itself keeps about a task in its task directory,
//! beside the shim's files. Written atomically at every change, read back after a
//! restart: with it the manager knows which runtime to clean up with, whether it
//! already published the task's exit, and why a task failed.

use std::path::{Path, PathBuf};

use berth_api::berth::manager::v1 as pb;
use serde::{Deserialize, Serialize};

use crate::daemon::error::DaemonError;

/// The file name in the task directory.
pub const TASK_JSON: &str = "task.json";

/// How the task's init ended, as published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    pub pid: u32,
    pub exit_status: u32,
    pub exited_at: String,
    pub oom_killed: bool,
    /// Why the task failed when it did not simply exit ("" otherwise).
    #[serde(default)]
    pub reason: String,
}

impl Exit {
    pub fn to_pb(&self) -> pb::ExitStatus {
        pb::ExitStatus {
            pid: self.pid,
            exit_status: self.exit_status,
            exited_at: self.exited_at.clone(),
            oom_killed: self.oom_killed,
        }
    }
}

/// The manager's record of one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub id: String,
    /// The OCI runtime binary the shim drives (to clean up after a dead shim).
    pub runtime: PathBuf,
    /// The init's host pid; 0 until the shim has created it.
    pub pid: u32,
    pub shim_pid: u32,
    pub terminal: bool,
    pub stdin: bool,
    pub created_at: String,
    #[serde(default)]
    pub started_at: String,
    /// Set once the exit has been published (after the event, so a crash in
    /// between publishes it again rather than never).
    #[serde(default)]
    pub exit: Option<Exit>,
    /// The shim is gone and what it left has been cleaned up: only this file
    /// remains, until the task is deleted.
    #[serde(default)]
    pub cleaned: bool,
}

impl TaskRecord {
    pub fn read(dir: &Path) -> Result<Option<TaskRecord>, DaemonError> {
        let path = dir.join(TASK_JSON);
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(DaemonError::io("reading", path, e)),
        };
        // A record that does not parse is treated like a missing one: the task
        // directory is then cleaned up as an interrupted create.
        match serde_json::from_slice(&data) {
            Ok(r) => Ok(Some(r)),
            Err(e) => {
                tracing::warn!(path = %path.display(), "ignoring an unreadable task record: {e}");
                Ok(None)
            }
        }
    }

    pub fn write(&self, dir: &Path) -> Result<(), DaemonError> {
        let path = dir.join(TASK_JSON);
        let data = serde_json::to_vec(self)
            .map_err(|e| DaemonError::io("encoding", path.clone(), std::io::Error::other(e)))?;
        Ok(berth_shim_contract::layout::write_atomic(&path, &data)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_garbage_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(TaskRecord::read(dir.path()).unwrap(), None);
        let rec = TaskRecord {
            id: "c".into(),
            runtime: "/usr/sbin/runc".into(),
            pid: 7,
            shim_pid: 6,
            terminal: false,
            stdin: true,
            created_at: "t".into(),
            started_at: String::new(),
            exit: Some(Exit {
                pid: 7,
                exit_status: 3,
                exited_at: "t2".into(),
                oom_killed: false,
                reason: String::new(),
            }),
            cleaned: false,
        };
        rec.write(dir.path()).unwrap();
        assert_eq!(TaskRecord::read(dir.path()).unwrap(), Some(rec));
        std::fs::write(dir.path().join(TASK_JSON), "{").unwrap();
        assert_eq!(TaskRecord::read(dir.path()).unwrap(), None);
    }
}
