//! Non-blocking reads and writes on pipe and pty file descriptors through tokio's
//! reactor (`AsyncFd`), without tokio's process or fs modules (which would bring a
//! second reaper or a thread pool).

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use tokio::io::unix::AsyncFd;

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

/// A non-blocking descriptor registered with the reactor.
#[derive(Debug)]
pub(crate) struct AsyncFile(AsyncFd<OwnedFd>);

impl AsyncFile {
    pub(crate) fn new(fd: OwnedFd) -> io::Result<AsyncFile> {
        set_nonblocking(&fd)?;
        // SAFETY: an OwnedFd is a valid open descriptor that stays open, and keeps
        // returning the same number, until it is dropped with the AsyncFd.
        let registered = unsafe { AsyncFd::register(fd) };
        registered.map(AsyncFile).map_err(io::Error::from)
    }

    /// Read some bytes; Ok(0) at end of file. A pty master whose last slave closed
    /// reports EIO, which is returned as is.
    pub(crate) async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.0.readable().await?;
            match guard.try_io(|fd| match nix::unistd::read(fd.get_ref(), buf) {
                Err(Errno::EINTR) => Err(io::ErrorKind::Interrupted.into()),
                r => r.map_err(io::Error::from),
            }) {
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    pub(crate) async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.0.writable().await?;
            match guard.try_io(|fd| nix::unistd::write(fd.get_ref(), data).map_err(io::Error::from))
            {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }
}

/// Read `fd` until end of file, keeping at most `limit` bytes.
pub(crate) async fn read_to_end(fd: OwnedFd, limit: usize) -> io::Result<Vec<u8>> {
    let file = AsyncFile::new(fd)?;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok(out);
        }
        let room = limit.saturating_sub(out.len());
        out.extend_from_slice(&buf[..n.min(room)]);
    }
}
