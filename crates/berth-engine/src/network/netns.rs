//! Named network namespaces: an nsfs bind mount on a file under the engine's exec root,
//! so a container's network outlives berthd, the manager and the shim.
//!
//! berthd runs tokio and must never fork. A namespace is made on a thread of its own
//! that exists only for this: `unshare(CLONE_NEWNET)` moves just that thread into a new
//! namespace (network namespaces are per thread), the thread bind-mounts its
//! `/proc/thread-self/ns/net` onto the file, and ends. No other thread of berthd ever
//! leaves the host's namespace.

use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

/// Creates a new network namespace and pins it at `path` (the file is created; its
/// parent must exist). Fails if `path` already exists.
pub fn create(path: &Path) -> io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    let target = path.to_path_buf();
    let made = std::thread::Builder::new()
        .name("berth-netns".into())
        .spawn(move || -> io::Result<()> {
            unshare(CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
            loopback_up()?;
            mount(
                Some("/proc/thread-self/ns/net"),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(io::Error::from)
        })?
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the namespace thread panicked")));
    if let Err(e) = made {
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    Ok(())
}

/// Brings up the loopback interface of the network namespace this thread is in; the
/// kernel then gives it 127.0.0.1/8 and ::1. Every namespace berth makes has it up
/// (docker's `none` does too, and netavark would do it for the others): made here,
/// a `--network none` start runs no netavark process.
fn loopback_up() -> io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: a plain socket(2) call; its descriptor is owned just below.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a new descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain data, valid all zeroes.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (to, from) in req.ifr_name.iter_mut().zip(b"lo") {
        *to = *from as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS fills the flags of the ifreq it is given, which outlives
    // the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the flags are the member of the union that SIOCGIFFLAGS just set.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads the ifreq it is given, which outlives the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Pins the namespace pinned at `from` at `to` as well (a second bind mount of the
/// same nsfs file; `to` is created and must not exist). Unpinning one leaves the
/// other: this is how a namespace changes hands without being made again.
pub fn share(from: &Path, to: &Path) -> io::Result<()> {
    if !is_pinned(from) {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} is not a pinned network namespace", from.display()),
        ));
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)?;
    if let Err(e) = mount(Some(from), to, None::<&str>, MsFlags::MS_BIND, None::<&str>) {
        let _ = std::fs::remove_file(to);
        return Err(io::Error::from(e));
    }
    Ok(())
}

/// Whether `path` is a pinned network namespace (an nsfs mount), not a bare file.
pub fn is_pinned(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
        .unwrap_or(false)
}

/// Unpins and deletes the namespace at `path`. The namespace itself goes when its last
/// process leaves. Succeeds when nothing is there.
pub fn remove(path: &Path) -> io::Result<()> {
    // A file can have several mounts stacked on it after a crash between two creates.
    for _ in 0..8 {
        match umount2(path, MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => break,
            Err(e) => return Err(io::Error::from(e)),
        }
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Makes sure a pinned namespace exists at `path`: an existing one is kept (a
/// restarted berthd finds its containers' namespaces), a stale file replaced.
pub fn ensure(path: &Path) -> io::Result<bool> {
    if is_pinned(path) {
        return Ok(false);
    }
    remove(path)?;
    create(path)?;
    Ok(true)
}

/// `<dir>/<id>`.
pub fn path_for(dir: &Path, id: &str) -> PathBuf {
    dir.join(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_pin_and_remove() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        // A failed assertion must not leave the pins mounted.
        let _pins = berth_testutil::MountGuard(dir.path().to_path_buf());
        let p = dir.path().join("ns1");
        create(&p).unwrap();
        assert!(is_pinned(&p));
        // a different namespace from ours
        let ours = std::fs::metadata("/proc/self/ns/net").unwrap();
        let pinned = std::fs::metadata(&p).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_ne!(ours.ino(), pinned.ino());
        assert!(!ensure(&p).unwrap(), "kept");
        // Its loopback is up: from a thread that entered it, a datagram to 127.0.0.1
        // goes out (with lo down: network unreachable).
        let ns = std::fs::File::open(&p).unwrap();
        let bound = std::thread::spawn(move || {
            nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET).unwrap();
            let s = std::net::UdpSocket::bind("127.0.0.1:0")?;
            s.send_to(b"x", s.local_addr()?).map(|_| ())
        })
        .join()
        .unwrap();
        assert!(bound.is_ok(), "lo is up: {bound:?}");
        assert!(create(&p).is_err(), "exists");
        remove(&p).unwrap();
        assert!(!p.exists());
        remove(&p).unwrap();
        // a stale plain file is replaced
        std::fs::write(&p, b"").unwrap();
        assert!(ensure(&p).unwrap());
        assert!(is_pinned(&p));
        // shared: the same namespace at a second path, which outlives the first
        let q = dir.path().join("ns2");
        share(&p, &q).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().ino(),
            std::fs::metadata(&q).unwrap().ino()
        );
        assert!(share(&p, &q).is_err(), "exists");
        remove(&p).unwrap();
        assert!(is_pinned(&q));
        assert!(share(&p, &dir.path().join("ns3")).is_err(), "not pinned");
        remove(&q).unwrap();
        // this thread never left the host's namespace
        let after = std::fs::metadata("/proc/thread-self/ns/net").unwrap();
        assert_eq!(ours.ino(), after.ino());
    }
}
