//! Plain non-blocking reads and writes on pipes, ptys and sockets, and poll(2)
//! timeouts: all the shim's I/O goes through its one poll loop ([`crate::service`]).

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{PollFd, PollFlags, PollTimeout};

/// A pipe: (read end, write end), both close-on-exec and blocking.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)
}

/// Put `fd`'s open file description in non-blocking mode.
pub(crate) fn set_nonblocking(fd: &impl AsFd) -> io::Result<()> {
    let flags = fcntl(fd.as_fd(), FcntlArg::F_GETFL)?;
    let flags = OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK;
    fcntl(fd.as_fd(), FcntlArg::F_SETFL(flags))?;
    Ok(())
}

/// One read, retried on EINTR: Ok(0) at end of file, `WouldBlock` when nothing is
/// there yet. A pty master whose last slave closed reports EIO, returned as is.
pub(crate) fn read(fd: &impl AsFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match nix::unistd::read(fd.as_fd(), buf) {
            Err(Errno::EINTR) => continue,
            r => return r.map_err(io::Error::from),
        }
    }
}

/// One write, retried on EINTR.
pub(crate) fn write(fd: &impl AsFd, data: &[u8]) -> io::Result<usize> {
    loop {
        match nix::unistd::write(fd, data) {
            Err(Errno::EINTR) => continue,
            r => return r.map_err(io::Error::from),
        }
    }
}

/// poll(2)'s timeout for the nearest of `deadlines` (none: wait indefinitely).
pub(crate) fn timeout_until(deadline: Option<Instant>) -> PollTimeout {
    match deadline {
        None => PollTimeout::NONE,
        Some(d) => {
            // Rounded up, so the loop does not wake just before the deadline and spin.
            let ms = d
                .saturating_duration_since(Instant::now())
                .as_nanos()
                .div_ceil(1_000_000);
            PollTimeout::try_from(i32::try_from(ms).unwrap_or(i32::MAX)).unwrap_or(PollTimeout::MAX)
        }
    }
}

/// poll(2), retried on EINTR (the deadline is not moved: callers loop anyway).
pub(crate) fn poll(fds: &mut [PollFd<'_>], timeout: PollTimeout) -> io::Result<()> {
    match nix::poll::poll(fds, timeout) {
        Ok(_) | Err(Errno::EINTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Wait until `fd` is readable (or hung up), at most `limit`: false on timeout.
pub(crate) fn wait_readable(fd: &impl AsFd, limit: Duration) -> io::Result<bool> {
    let deadline = Instant::now() + limit;
    loop {
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        poll(&mut fds, timeout_until(Some(deadline)))?;
        if fds[0].revents().is_some_and(|r| !r.is_empty()) {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
    }
}
