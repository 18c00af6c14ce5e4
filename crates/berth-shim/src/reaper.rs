//! The one place that reaps children. The shim is a child subreaper, so besides
//! the runtime commands it spawns it inherits the container's processes (their
//! parent, the runtime, exits). On SIGCHLD the reaper calls `waitpid(-1, WNOHANG)`
//! until nothing is left and hands every exit to every subscriber.
//!
//! Whoever spawns a process subscribes *before* spawning and then waits on its
//! subscription for the pid, so an exit reaped before the pid is even known is
//! not lost (it sits in the subscription's queue). Nothing else in the shim may
//! wait for a child: no `tokio::process`, no `Child::wait`.
//!
//! The reaper runs as a task on the shim's single-threaded runtime, so it never
//! reaps while synchronous code (such as `Command::spawn`, which waits for a child
//! whose exec failed) is running.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::time::SystemTime;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;

/// A reaped child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub pid: i32,
    /// The exit code, or 128+n for death by signal n.
    pub status: i32,
    pub at: SystemTime,
}

impl Exit {
    fn from_wait(ws: WaitStatus) -> Option<Exit> {
        let at = SystemTime::now();
        match ws {
            WaitStatus::Exited(pid, code) => Some(Exit {
                pid: pid.as_raw(),
                status: code,
                at,
            }),
            WaitStatus::Signaled(pid, sig, _core) => Some(Exit {
                pid: pid.as_raw(),
                status: 128 + sig as i32,
                at,
            }),
            _ => None,
        }
    }
}

/// Errors starting the reaper.
#[derive(Debug, thiserror::Error)]
pub enum ReaperError {
    #[error("installing the SIGCHLD handler: {0}")]
    Signal(std::io::Error),
}

type Subscribers = Mutex<Vec<(u64, mpsc::UnboundedSender<Exit>)>>;

/// Hands reaped exits to subscribers. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Reaper {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    subscribers: Subscribers,
    next_id: AtomicU64,
}

impl Reaper {
    /// Install the SIGCHLD handler and start reaping (on the current runtime).
    /// Must be called before the shim spawns anything.
    pub fn start() -> Result<Reaper, ReaperError> {
        let sigchld = signal(SignalKind::child()).map_err(ReaperError::Signal)?;
        let reaper = Reaper {
            inner: Arc::new(Inner {
                subscribers: Mutex::new(Vec::new()),
                next_id: AtomicU64::new(0),
            }),
        };
        tokio::spawn(reaper.clone().run(sigchld));
        Ok(reaper)
    }

    /// Register interest in exits from now on. Subscribe before spawning.
    pub fn subscribe(&self) -> Subscription {
        let (tx, rx) = mpsc::unbounded_channel();
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        self.subscribers().push((id, tx));
        Subscription {
            id,
            rx,
            kept: Vec::new(),
            reaper: self.clone(),
        }
    }

    fn subscribers(&self) -> std::sync::MutexGuard<'_, Vec<(u64, mpsc::UnboundedSender<Exit>)>> {
        self.inner
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    async fn run(self, mut sigchld: Signal) {
        loop {
            // A child may have exited before the handler was installed, and
            // signals coalesce: always drain everything that is waitable.
            self.reap_all();
            if sigchld.recv().await.is_none() {
                return;
            }
        }
    }

    fn reap_all(&self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(ws) => {
                    if let Some(exit) = Exit::from_wait(ws) {
                        tracing::debug!(pid = exit.pid, status = exit.status, "reaped");
                        self.subscribers().retain(|(_, tx)| tx.send(exit).is_ok());
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    tracing::warn!("waitpid: {e}");
                    return;
                }
            }
        }
    }
}

/// Exits reaped since the subscription was made, in order.
#[derive(Debug)]
pub struct Subscription {
    id: u64,
    rx: mpsc::UnboundedReceiver<Exit>,
    /// Exits skipped by `wait_keeping`, for a later `wait`.
    kept: Vec<Exit>,
    reaper: Reaper,
}

impl Subscription {
    /// Wait for `pid` to be reaped; exits of other pids are dropped (after those
    /// kept by an earlier `wait_keeping`).
    pub async fn wait(&mut self, pid: i32) -> Exit {
        if let Some(i) = self.kept.iter().position(|e| e.pid == pid) {
            let exit = self.kept.swap_remove(i);
            self.kept.clear();
            return exit;
        }
        self.kept.clear();
        loop {
            let exit = self.next().await;
            if exit.pid == pid {
                return exit;
            }
        }
    }

    /// Wait for `pid` to be reaped, keeping the other exits seen meanwhile: a
    /// runtime command's children may be reaped before the command itself, and
    /// their pids are only known once it has exited.
    pub async fn wait_keeping(&mut self, pid: i32) -> Exit {
        loop {
            let exit = self.next().await;
            if exit.pid == pid {
                return exit;
            }
            self.kept.push(exit);
        }
    }

    async fn next(&mut self) -> Exit {
        match self.rx.recv().await {
            Some(exit) => exit,
            // The reaper's task ended with the runtime; nothing will come.
            None => std::future::pending().await,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let id = self.id;
        self.reaper.subscribers().retain(|(i, _)| *i != id);
    }
}
