//! A task as the manager holds it: its directory `<state>/tasks/<id>/` (the OCI
//! bundle, the shim's files and the manager's `task.json`), a client for its shim,
//! and its exit once known. Everything needed to find it again after a restart is
//! on disk; the in-memory part is a cache of it plus the connection.

pub mod cleanup;
pub mod record;
pub mod shim;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use berth_shim_contract::ShimClient;
use tokio::sync::watch;

use self::record::{Exit, TaskRecord};
use super::error::DaemonError;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One container's task.
#[derive(Debug)]
pub struct Task {
    pub id: String,
    pub dir: PathBuf,
    socket: PathBuf,
    record: Mutex<TaskRecord>,
    client: Mutex<Option<ShimClient>>,
    exit: watch::Sender<Option<Exit>>,
    /// Held while a start is being made and published, and while an exit is
    /// published: a task's start event always comes before its exit event.
    pub order: tokio::sync::Mutex<()>,
    /// The shim is gone and its leftovers are cleaned up.
    gone: AtomicBool,
    /// A Delete is under way: a shim that goes away is expected.
    deleting: AtomicBool,
}

impl Task {
    pub fn new(
        id: String,
        dir: PathBuf,
        socket: PathBuf,
        record: TaskRecord,
        client: Option<ShimClient>,
    ) -> Arc<Task> {
        let (exit, _) = watch::channel(record.exit.clone());
        let gone = record.cleaned;
        Arc::new(Task {
            id,
            dir,
            socket,
            record: Mutex::new(record),
            client: Mutex::new(client),
            exit,
            order: tokio::sync::Mutex::new(()),
            gone: AtomicBool::new(gone),
            deleting: AtomicBool::new(false),
        })
    }

    pub fn record(&self) -> TaskRecord {
        lock(&self.record).clone()
    }

    /// Change the record and write it to disk.
    pub fn update_record(&self, f: impl FnOnce(&mut TaskRecord)) -> Result<(), DaemonError> {
        let mut rec = lock(&self.record);
        f(&mut rec);
        rec.write(&self.dir)
    }

    pub fn shim_pid(&self) -> u32 {
        lock(&self.record).shim_pid
    }

    /// A client for the shim, dialling it if there is no connection yet.
    pub async fn client(&self) -> Result<ShimClient, DaemonError> {
        if self.is_gone() {
            return Err(self.gone_error());
        }
        if let Some(c) = lock(&self.client).clone() {
            return Ok(c);
        }
        let c = shim::connect(&self.id, &self.socket).await?;
        *lock(&self.client) = Some(c.clone());
        Ok(c)
    }

    /// Forget the connection (closed once every clone is dropped).
    pub fn drop_client(&self) {
        lock(&self.client).take();
    }

    pub fn is_gone(&self) -> bool {
        self.gone.load(Ordering::SeqCst)
    }

    /// Mark the shim gone; true for the caller that did it first.
    pub fn mark_gone(&self) -> bool {
        !self.gone.swap(true, Ordering::SeqCst)
    }

    pub fn is_deleting(&self) -> bool {
        self.deleting.load(Ordering::SeqCst)
    }

    pub fn set_deleting(&self, v: bool) {
        self.deleting.store(v, Ordering::SeqCst);
    }

    /// The error for a request that needs the shim of a task that has none.
    pub fn gone_error(&self) -> DaemonError {
        let reason = self
            .exit()
            .map(|e| {
                if e.reason.is_empty() {
                    format!("it exited with status {}", e.exit_status)
                } else {
                    e.reason
                }
            })
            .unwrap_or_else(|| "its shim is gone".to_string());
        DaemonError::TaskGone {
            id: self.id.clone(),
            reason,
        }
    }

    /// Whether the shim process we started is still there.
    pub fn shim_alive(&self) -> bool {
        cleanup::shim_alive(self.shim_pid(), &self.dir)
    }

    /// The published exit, if any.
    pub fn exit(&self) -> Option<Exit> {
        self.exit.borrow().clone()
    }

    /// Record the published exit (the first one wins).
    pub fn set_exit(&self, exit: Exit) {
        self.exit.send_if_modified(|e| {
            if e.is_none() {
                *e = Some(exit);
                true
            } else {
                false
            }
        });
    }

    /// Wait until the exit is published.
    pub async fn wait_exit(&self) -> Exit {
        let mut rx = self.exit.subscribe();
        loop {
            if let Some(e) = rx.borrow_and_update().clone() {
                return e;
            }
            if rx.changed().await.is_err() {
                // The sender lives in `self`, which outlives this borrow.
                std::future::pending::<()>().await;
            }
        }
    }
}
