//! Waiting for a foreground process (`run` and `exec` without --detach): the
//! runtime is its subreaper, forwards the usual signals to it, reaps every child
//! that comes its way (orphans are reparented to us), relays a pty when it holds
//! the master, and returns the process's exit code (128 + signal when killed).
//!
//! Signals arrive through a signalfd, so the loop is one poll(2): no threads, no
//! signal handlers.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::{exit_code_of, ProcessError};
use crate::tty;

/// Signals a foreground runtime passes on to the container's process.
pub const FORWARDED: [Signal; 7] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

fn sys(what: &'static str) -> impl FnOnce(Errno) -> ProcessError {
    move |source| ProcessError::Sys { what, source }
}

/// Block the signals `wait_foreground` takes from its signalfd (SIGCHLD and
/// `FORWARDED`), so that one sent before it runs (while the container is being
/// created and started) stays pending for it instead of killing the runtime
/// and orphaning the container. Children start with them blocked too: the
/// init and the exec'd process unblock every signal before their execve
/// (`attrs::reset_signals`), and hooks run through std's Command, which does.
pub fn block_forwarded() -> Result<(), ProcessError> {
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&forwarded_set()), None)
        .map_err(sys("block signals"))
}

fn forwarded_set() -> SigSet {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    for s in FORWARDED {
        mask.add(s);
    }
    mask
}

/// Wait for `pid` (our child or reparented to us) and return its exit code.
/// With `console`, relay our stdin to the pty master and the master to our
/// stdout meanwhile.
pub fn wait_foreground(pid: Pid, console: Option<OwnedFd>) -> Result<i32, ProcessError> {
    let mask = forwarded_set();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)
        .map_err(sys("block signals"))?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(sys("create a signalfd"))?;

    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut stdin_open = console.is_some();
    let mut master_open = console.is_some();
    if let Some(m) = &console {
        if let Some((rows, cols)) = tty::get_size(stdin.as_fd().as_raw_fd()) {
            let _ = tty::set_size(m.as_raw_fd(), rows, cols);
        }
    }

    loop {
        if let Some(code) = reap(pid)? {
            if let Some(m) = &console {
                if master_open {
                    drain(m.as_fd(), stdout.as_fd());
                }
            }
            return Ok(code);
        }

        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        let stdin_idx = if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            Some(fds.len() - 1)
        } else {
            None
        };
        let master_idx = match (&console, master_open) {
            (Some(m), true) => {
                fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
                Some(fds.len() - 1)
            }
            _ => None,
        };
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(sys("poll")(e)),
        }
        let ready = |i: usize| {
            fds[i].revents().is_some_and(|r| {
                r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR)
            })
        };
        let sig_ready = ready(0);
        let stdin_ready = stdin_idx.is_some_and(ready);
        let master_ready = master_idx.is_some_and(ready);
        drop(fds);

        if sig_ready {
            while let Ok(Some(info)) = sfd.read_signal() {
                let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                    continue;
                };
                match sig {
                    Signal::SIGCHLD => {}
                    Signal::SIGWINCH => {
                        if let Some(m) = &console {
                            if let Some((r, c)) = tty::get_size(stdin.as_fd().as_raw_fd()) {
                                let _ = tty::set_size(m.as_raw_fd(), r, c);
                            }
                        }
                        let _ = kill(pid, sig);
                    }
                    other => {
                        let _ = kill(pid, other);
                    }
                }
            }
        }
        if let Some(m) = &console {
            if stdin_ready && !copy_once(stdin.as_fd(), m.as_fd()) {
                stdin_open = false;
            }
            if master_ready && !copy_once(m.as_fd(), stdout.as_fd()) {
                master_open = false;
            }
        }
    }
}

/// Reap every exited child; the exit code of `pid` once it has exited.
fn reap(pid: Pid) -> Result<Option<i32>, ProcessError> {
    let mut found = None;
    loop {
        match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => break,
            Ok(st) => {
                if st.pid() == Some(pid) {
                    if let Some(code) = exit_code_of(st) {
                        found = Some(code);
                    }
                }
            }
            Err(Errno::EINTR) => continue,
            Err(Errno::ECHILD) => {
                if found.is_none() {
                    return Err(ProcessError::Sys {
                        what: "wait for the container's process (it is not our child)",
                        source: Errno::ECHILD,
                    });
                }
                break;
            }
            Err(e) => return Err(sys("waitpid")(e)),
        }
    }
    Ok(found)
}

/// Copy what is available from `from` to `to`; false at end of file or on error
/// (EIO from a pty master means its last slave closed).
fn copy_once(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> bool {
    let mut buf = [0u8; 8192];
    let n = match nix::unistd::read(from, &mut buf) {
        Ok(0) => return false,
        Ok(n) => n,
        Err(Errno::EINTR) | Err(Errno::EAGAIN) => return true,
        Err(_) => return false,
    };
    write_all(to, &buf[..n]);
    true
}

fn write_all(to: BorrowedFd<'_>, mut data: &[u8]) {
    while !data.is_empty() {
        match nix::unistd::write(to, data) {
            Ok(0) => return,
            Ok(n) => data = &data[n..],
            Err(Errno::EINTR) => continue,
            // A closed stdout: the output has nowhere to go.
            Err(_) => return,
        }
    }
}

/// After the process exited: copy what is left in the master without blocking.
fn drain(master: BorrowedFd<'_>, to: BorrowedFd<'_>) {
    let _ = nix::fcntl::fcntl(
        master,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    );
    while copy_once(master, to) {
        let mut probe = [PollFd::new(master, PollFlags::POLLIN)];
        if !matches!(poll(&mut probe, PollTimeout::ZERO), Ok(n) if n > 0) {
            break;
        }
    }
}
