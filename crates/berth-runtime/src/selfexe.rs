//! Protection against CVE-2019-5736: a container must never be able to open the
//! runtime binary through /proc/<pid>/exe and overwrite it. Before entering a
//! container we re-execute ourselves from a file no one can write: first choice,
//! the binary seen through a private, read-only overlay mount that is never
//! attached to any mount tree (fsopen/fsmount, no copy, well under a millisecond);
//! where the kernel cannot do that, a sealed memfd copy of the binary (a 3.5 MB
//! copy, about 3 ms). Either way the kernel refuses every write to what
//! /proc/self/exe points at.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use nix::fcntl::{fcntl, FcntlArg, FdFlag, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};

/// Set in the environment of the re-executed copy so it does not loop: `1`,
/// or `mnt:<fd>` when the overlay's mount fd comes along (see [`release`]).
const SEALED_ENV: &str = "_BERTH_RUNTIME_SEALED";

/// The empty second layer of the overlay, kept under the runtime's root (not
/// a valid container id, so never one's directory).
pub const EMPTY_LAYER_DIR: &str = "@empty-layer";

/// Whether this process already runs from a sealed copy.
static SEALED: AtomicBool = AtomicBool::new(false);

/// The detached overlay mount this process runs from, while it holds it.
static OVERLAY_MOUNT: Mutex<Option<OwnedFd>> = Mutex::new(None);

/// Re-exec from a file no one can write unless already running from one.
/// `root` is the runtime's state root (the overlay's empty layer lives
/// there). Returns only on error, or when already sealed.
pub fn ensure_sealed(root: &Path) -> io::Result<()> {
    // main may call this twice (before and after parsing the command line).
    if SEALED.load(Ordering::Relaxed) {
        return Ok(());
    }
    if let Some(v) = std::env::var_os(SEALED_ENV) {
        // SAFETY: single-threaded at this point (called first thing in main), so no
        // other thread can be reading the environment.
        unsafe { std::env::remove_var(SEALED_ENV) };
        adopt_mount(&v.to_string_lossy());
        SEALED.store(true, Ordering::Relaxed);
        return Ok(());
    }
    let (exe, mount) = match read_only_overlay_exe(root) {
        Ok(x) => x,
        Err(e) => {
            log::debug!("read-only overlay of the runtime binary failed ({e}); copying it");
            (sealed_memfd_copy()?, None)
        }
    };
    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(std::os::unix::ffi::OsStrExt::as_bytes(a.as_os_str())))
        .collect::<Result<_, _>>()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut env: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = std::os::unix::ffi::OsStrExt::as_bytes(k.as_os_str()).to_vec();
            kv.push(b'=');
            kv.extend_from_slice(std::os::unix::ffi::OsStrExt::as_bytes(v.as_os_str()));
            CString::new(kv).ok()
        })
        .collect();
    // Closing the mount fd dissolves the mount, which waits for an RCU grace
    // period (milliseconds on a busy host). The copy takes it along and
    // closes it while its children are busy (see `release`), not here.
    let value = match &mount {
        Some(m) => {
            fcntl(m.as_fd(), FcntlArg::F_SETFD(FdFlag::empty()))?;
            format!("mnt:{}", m.as_raw_fd())
        }
        None => "1".to_string(),
    };
    env.push(CString::new(format!("{SEALED_ENV}={value}")).map_err(io::Error::other)?);
    match nix::unistd::fexecve(exe.as_fd(), &args, &env) {
        Err(e) => Err(e.into()),
    }
}

/// Take over the mount fd named by the environment (`mnt:<fd>`): close-on-exec
/// again, kept until [`release`].
fn adopt_mount(value: &str) {
    let Some(fd) = value
        .strip_prefix("mnt:")
        .and_then(|n| n.parse::<i32>().ok())
        .filter(|n| *n > 2)
    else {
        return;
    };
    // Only an open descriptor of a directory (the mount's root) is adopted;
    // anything else under that number is left alone.
    // SAFETY: fcntl(F_GETFD) only reads the descriptor table.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return;
    }
    // SAFETY: the previous image of this process opened this descriptor for us
    // and nothing else in this image owns it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let is_dir =
        nix::sys::stat::fstat(&owned).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR);
    if !is_dir || fcntl(owned.as_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).is_err() {
        std::mem::forget(owned);
        return;
    }
    *OVERLAY_MOUNT.lock().unwrap_or_else(|e| e.into_inner()) = Some(owned);
}

/// Close this process's copy of the overlay's mount fd, if it still has one.
/// The last close dissolves the mount and waits for an RCU grace period, so
/// `create` closes the last copy where nobody waits for it: the runtime once
/// the init has dropped its own and is busy pivoting, or the exiting
/// intermediate process where there is one; every process that enters the
/// container calls this first thing, since none may hold the fd there.
/// Otherwise it goes at exit.
pub fn release() {
    drop(
        OVERLAY_MOUNT
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(),
    );
}

/// Whether this process still holds a copy of the overlay's mount fd.
pub fn holds_mount() -> bool {
    OVERLAY_MOUNT
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .is_some()
}

/// The running binary as seen through an overlay whose layers are its directory
/// and an empty one, with no upper layer: overlayfs then refuses every write
/// (EROFS). The mount is made with the new mount API and never attached, so there
/// is nothing to unmount: it goes away with the last file that uses it. Returns
/// the binary's fd and the mount's.
fn read_only_overlay_exe(root: &Path) -> io::Result<(OwnedFd, Option<OwnedFd>)> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let (Some(dir), Some(name)) = (exe.parent(), exe.file_name()) else {
        return Err(io::Error::other("/proc/self/exe has no directory"));
    };
    // Overlay needs two lower layers when there is no upper one; the second is an
    // empty directory that stays under the runtime's root for the next runs
    // (made and removed each time on a disk, it cost a discard at exit).
    let layer = root.join(EMPTY_LAYER_DIR);
    let kept = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(root)
        .and_then(
            |_| match std::fs::DirBuilder::new().mode(0o700).create(&layer) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
                r => r,
            },
        );
    if kept.is_ok() && is_empty_dir(&layer) {
        if let Ok(x) = overlay_open(dir, &layer, name) {
            return Ok(x);
        }
    }
    let empty = std::env::temp_dir().join(format!(".berth-runtime-{}", std::process::id()));
    std::fs::create_dir(&empty)?;
    let result = overlay_open(dir, &empty, name);
    let _ = std::fs::remove_dir(&empty);
    result
}

/// A directory with nothing in it (a file there named like the binary would
/// still be hidden by the binary's own layer, but an empty layer is what the
/// overlay is meant to have).
fn is_empty_dir(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir())
        && std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none())
}

fn overlay_open(
    dir: &std::path::Path,
    empty: &std::path::Path,
    name: &std::ffi::OsStr,
) -> io::Result<(OwnedFd, Option<OwnedFd>)> {
    use std::os::unix::ffi::OsStrExt;
    const FSOPEN_CLOEXEC: libc::c_uint = 1;
    const FSCONFIG_SET_STRING: libc::c_uint = 1;
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const FSMOUNT_CLOEXEC: libc::c_uint = 1;
    const MOUNT_ATTR_NODEV: libc::c_uint = 0x4;
    const MOUNT_ATTR_NOSUID: libc::c_uint = 0x2;

    // Overlay option syntax: ':' separates layers, ',' options, '\' escapes.
    let escape = |p: &std::path::Path| {
        let mut out = Vec::new();
        for &b in p.as_os_str().as_bytes() {
            if matches!(b, b':' | b',' | b'\\') {
                out.push(b'\\');
            }
            out.push(b);
        }
        out
    };
    let mut lower = escape(dir);
    lower.push(b':');
    lower.extend(escape(empty));
    let lower = CString::new(lower).map_err(io::Error::other)?;
    let name = CString::new(name.as_bytes()).map_err(io::Error::other)?;
    let check = |r: libc::c_long| -> io::Result<libc::c_long> {
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r)
        }
    };
    // SAFETY: fsopen takes a NUL-terminated name and flags; it returns a new fd or
    // -1, and the fd is owned by the OwnedFd below from then on.
    let fs =
        check(unsafe { libc::syscall(libc::SYS_fsopen, c"overlay".as_ptr(), FSOPEN_CLOEXEC) })?;
    // SAFETY: fs is a fresh fd returned by fsopen, owned by nobody else.
    let fs = unsafe { OwnedFd::from_raw_fd(fs as libc::c_int) };
    // SAFETY: fs is a valid fs context; key and value are NUL-terminated strings
    // that outlive the call.
    check(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_SET_STRING,
            c"lowerdir".as_ptr(),
            lower.as_ptr(),
            0,
        )
    })?;
    // SAFETY: as above; CMD_CREATE takes no key or value.
    check(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_char>(),
            0,
        )
    })?;
    // SAFETY: fs is a created fs context; fsmount returns a new detached mount fd.
    let mnt = check(unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fs.as_raw_fd(),
            FSMOUNT_CLOEXEC,
            MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID,
        )
    })?;
    // SAFETY: mnt is a fresh fd returned by fsmount, owned by nobody else.
    let mnt = unsafe { OwnedFd::from_raw_fd(mnt as libc::c_int) };
    let fd = nix::fcntl::openat(
        mnt.as_fd(),
        name.as_c_str(),
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    Ok((fd, Some(mnt)))
}

/// A copy of the running binary in a memfd sealed against every change.
fn sealed_memfd_copy() -> io::Result<OwnedFd> {
    let fd: OwnedFd = memfd_create(
        c"berth-runtime",
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )?;
    {
        let mut src = File::open("/proc/self/exe")?;
        let mut dst = File::from(fd.try_clone()?);
        io::copy(&mut src, &mut dst)?;
    }
    fcntl(
        fd.as_fd(),
        FcntlArg::F_ADD_SEALS(
            SealFlag::F_SEAL_SEAL
                | SealFlag::F_SEAL_SHRINK
                | SealFlag::F_SEAL_GROW
                | SealFlag::F_SEAL_WRITE,
        ),
    )?;
    Ok(fd)
}
