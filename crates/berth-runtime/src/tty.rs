//! Pseudo-terminals for `process.terminal`, the way runc makes them: the pty is
//! opened by the container's process inside the container (from its own devpts
//! instance, after pivot_root), the slave becomes its stdin/stdout/stderr and
//! controlling terminal, and the master travels to whoever holds the console: the
//! `--console-socket` (connected by the runtime before forking, so the path is
//! resolved on the host) or, for a foreground `run`/`exec` without one, the
//! runtime itself over its channel, which then relays between its own stdio and
//! the master.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

#[derive(Debug, thiserror::Error)]
pub enum TtyError {
    #[error("connect to console socket {path}: {source}")]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("open a pty in the container's /dev/ptmx: {0}")]
    OpenPty(#[source] nix::Error),
    #[error("open pty slave {path}: {source}")]
    OpenSlave {
        path: String,
        #[source]
        source: nix::Error,
    },
    #[error("make the pty the controlling terminal: {0}")]
    Controlling(#[source] nix::Error),
    #[error("set the console size: {0}")]
    Size(#[source] nix::Error),
    #[error("send the pty master over the console socket: {0}")]
    Send(#[source] nix::Error),
    #[error("receive the pty master: {0}")]
    Receive(#[source] nix::Error),
    #[error("the console socket's peer sent no file descriptor")]
    NoFd,
    #[error("bind the pty on /dev/console: {0}")]
    Console(String),
    #[error("give the pty to the process's user: {0}")]
    Chown(#[source] nix::Error),
    #[error("hand the pty master to the runtime: {0}")]
    ToRuntime(String),
}

/// Connect to the `--console-socket` path.
pub fn connect_console_socket(path: &Path) -> Result<OwnedFd, TtyError> {
    UnixStream::connect(path)
        .map(OwnedFd::from)
        .map_err(|source| TtyError::Connect {
            path: path.to_path_buf(),
            source,
        })
}

/// A new pty: the master, the open slave and the slave's path.
#[derive(Debug)]
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
    pub slave_path: String,
}

/// Open a pty through /dev/ptmx of the current mount namespace.
pub fn open_pty() -> Result<Pty, TtyError> {
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(TtyError::OpenPty)?;
    nix::pty::grantpt(&master).map_err(TtyError::OpenPty)?;
    nix::pty::unlockpt(&master).map_err(TtyError::OpenPty)?;
    let slave_path = nix::pty::ptsname_r(&master).map_err(TtyError::OpenPty)?;
    let slave = nix::fcntl::open(
        slave_path.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|source| TtyError::OpenSlave {
        path: slave_path.clone(),
        source,
    })?;
    Ok(Pty {
        master: master.into(),
        slave,
        slave_path,
    })
}

/// The pty hand-over, the same for a container's init and an exec'd process:
/// a pty from the devpts in view, sized to the process's `consoleSize` before
/// anything runs on it, its slave bound on `/dev/console` (the init only), the
/// master sent to the `--console-socket` or, without one, handed to the
/// runtime by `to_runtime`, and the slave made this process's controlling
/// terminal and stdio, owned by the process's user.
pub fn hand_over(
    process: &oci_spec::runtime::Process,
    console_socket: Option<&OwnedFd>,
    bind_console: bool,
    to_runtime: &mut dyn FnMut(RawFd) -> Result<(), TtyError>,
) -> Result<(), TtyError> {
    let pty = open_pty()?;
    if let Some(size) = process.console_size() {
        let rows = u16::try_from(size.height()).unwrap_or(u16::MAX);
        let cols = u16::try_from(size.width()).unwrap_or(u16::MAX);
        set_size(pty.master.as_raw_fd(), rows, cols)?;
    }
    let console = Path::new("/dev/console");
    if bind_console && console.exists() {
        crate::mounts::bind_path(
            Path::new(&pty.slave_path),
            console,
            false,
            nix::mount::MsFlags::empty(),
        )
        .map_err(|e| TtyError::Console(e.to_string()))?;
    }
    match console_socket {
        Some(sock) => send_fd(sock.as_raw_fd(), pty.master.as_raw_fd(), &pty.slave_path)?,
        None => to_runtime(pty.master.as_raw_fd())?,
    }
    drop(pty.master);
    become_stdio(&pty.slave)?;
    // The slave is a node of the container's own devpts: give it to the user.
    nix::unistd::fchown(
        &pty.slave,
        Some(nix::unistd::Uid::from_raw(process.user().uid())),
        None,
    )
    .map_err(TtyError::Chown)
}

/// Set the window size of a terminal.
pub fn set_size(fd: RawFd, rows: u16, cols: u16) -> Result<(), TtyError> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which is valid for
    // the duration of the call; a bad fd only makes the call fail.
    let r = unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
    nix::errno::Errno::result(r)
        .map(drop)
        .map_err(TtyError::Size)
}

/// The window size of a terminal, if it is one.
pub fn get_size(fd: RawFd) -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize to the pointer, valid for the call.
    let r = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
    (r == 0).then_some((ws.ws_row, ws.ws_col))
}

/// Make `slave` the controlling terminal of this process (which must lead a
/// session already) and its stdin, stdout and stderr.
pub fn become_stdio(slave: &OwnedFd) -> Result<(), TtyError> {
    // SAFETY: TIOCSCTTY takes an int argument (0: do not steal); the fd is open.
    let r = unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) };
    nix::errno::Errno::result(r).map_err(TtyError::Controlling)?;
    for target in 0..=2 {
        // SAFETY: dup2 onto 0..2 replaces the process's stdio; both fds are valid
        // and nothing in this process holds a borrowed handle on the old ones.
        let r = unsafe { libc::dup2(slave.as_raw_fd(), target) };
        nix::errno::Errno::result(r).map_err(TtyError::Controlling)?;
    }
    Ok(())
}

/// Send `fd` over a unix socket with SCM_RIGHTS, with `name` as the payload
/// (runc sends the terminal's name; receivers ignore it or log it).
pub fn send_fd(socket: RawFd, fd: RawFd, name: &str) -> Result<(), TtyError> {
    let fds = [fd];
    let payload = if name.is_empty() { "pty" } else { name };
    let iov = [IoSlice::new(payload.as_bytes())];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    sendmsg::<()>(socket, &iov, &cmsg, MsgFlags::empty(), None).map_err(TtyError::Send)?;
    Ok(())
}

/// Receive one fd sent with `send_fd`.
pub fn recv_fd(socket: RawFd) -> Result<OwnedFd, TtyError> {
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        socket,
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(TtyError::Receive)?;
    for c in msg.cmsgs().map_err(TtyError::Receive)? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(fd) = fds.first() {
                // SAFETY: the kernel just installed this fd in our table for us;
                // nothing else owns it.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    Err(TtyError::NoFd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn fds_travel_over_a_socketpair() {
        let (a, b) = UnixStream::pair().unwrap();
        let f = std::fs::File::open("/proc/self/exe").unwrap();
        send_fd(a.as_raw_fd(), f.as_raw_fd(), "x").unwrap();
        let got = recv_fd(b.as_raw_fd()).unwrap();
        let m1 = std::fs::metadata(format!("/proc/self/fd/{}", got.as_raw_fd())).unwrap();
        let m2 = f.metadata().unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(m1.ino(), m2.ino());
    }

    #[test]
    fn pty_opens_and_resizes() {
        // Needs /dev/ptmx, present on any Linux test host.
        let Ok(pty) = open_pty() else { return };
        set_size(pty.master.as_raw_fd(), 30, 100).unwrap();
        assert_eq!(get_size(pty.slave.as_raw_fd()), Some((30, 100)));
        assert!(pty.slave_path.starts_with("/dev/pts/"));
    }
}
