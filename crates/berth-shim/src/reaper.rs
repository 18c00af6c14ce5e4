//! The one place that reaps children. The shim is a child subreaper, so besides
//! the runtime commands it spawns it inherits the container's processes (their
//! parent, the runtime, exits). SIGCHLD and SIGTERM are blocked and read from a
//! signalfd that the poll loop watches; on SIGCHLD the reaper calls
//! `waitpid(-1, WNOHANG)` until nothing is left and keeps every exit in a queue.
//!
//! A runtime command being waited for takes its own exit from the queue
//! ([`Reaper::take`]); the poll loop hands the others to the task
//! ([`Reaper::drain`]) only once the command has returned and the pid it made is
//! known, so an exit reaped before its pid is known is never lost. Nothing else in
//! the shim may wait for a child: no `Child::wait`.

use std::os::fd::{AsFd, BorrowedFd};
use std::time::SystemTime;

use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

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
    #[error("blocking SIGCHLD and SIGTERM: {0}")]
    Mask(Errno),
    #[error("creating the signalfd: {0}")]
    Signal(Errno),
}

/// Reaped exits not yet taken, and whether SIGTERM came.
#[derive(Debug)]
pub struct Reaper {
    fd: SignalFd,
    exits: Vec<Exit>,
    terminate: bool,
}

impl Reaper {
    /// Block SIGCHLD and SIGTERM (children get a clean mask from `Command`) and
    /// read them from a signalfd. Must be called while the process has one thread
    /// and before it spawns anything.
    pub fn start() -> Result<Reaper, ReaperError> {
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        mask.add(Signal::SIGTERM);
        mask.thread_block().map_err(ReaperError::Mask)?;
        let fd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(ReaperError::Signal)?;
        let mut reaper = Reaper {
            fd,
            exits: Vec::new(),
            terminate: false,
        };
        // A child may have exited before the mask was set.
        reaper.reap_all();
        Ok(reaper)
    }

    /// The descriptor to poll: readable when a signal is pending.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Read the pending signals and reap every child that has exited.
    pub fn collect(&mut self) {
        loop {
            match self.fd.read_signal() {
                Ok(Some(info)) => {
                    if info.ssi_signo == Signal::SIGTERM as u32 {
                        self.terminate = true;
                    }
                }
                Ok(None) => break,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    tracing::warn!("reading the signalfd: {e}");
                    break;
                }
            }
        }
        // Signals coalesce: always drain everything that is waitable.
        self.reap_all();
    }

    fn reap_all(&mut self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(ws) => {
                    if let Some(exit) = Exit::from_wait(ws) {
                        tracing::debug!(pid = exit.pid, status = exit.status, "reaped");
                        self.exits.push(exit);
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

    /// The exit of `pid`, if it has been reaped.
    pub fn take(&mut self, pid: i32) -> Option<Exit> {
        let i = self.exits.iter().position(|e| e.pid == pid)?;
        Some(self.exits.remove(i))
    }

    /// Every exit reaped and not taken, in order.
    pub fn drain(&mut self) -> Vec<Exit> {
        std::mem::take(&mut self.exits)
    }

    /// Whether SIGTERM arrived since the last call.
    pub fn take_terminate(&mut self) -> bool {
        std::mem::take(&mut self.terminate)
    }
}
