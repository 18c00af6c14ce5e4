//! Protection against CVE-2019-5736: a container must never be able to open the
//! runtime binary through /proc/<pid>/exe and overwrite it. Before entering a
//! container we re-execute ourselves from a sealed memfd copy; the kernel then
//! refuses every write to what /proc/self/exe points at, and the file on disk is
//! never mapped by a process inside a container.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};

/// Set in the environment of the re-executed copy so it does not loop.
const SEALED_ENV: &str = "_BERTH_RUNTIME_SEALED";

/// Re-exec from a sealed memfd unless already running from one. Returns only on
/// error, or when already sealed.
pub fn ensure_sealed() -> io::Result<()> {
    if std::env::var_os(SEALED_ENV).is_some() {
        // SAFETY: single-threaded at this point (called first thing in main), so no
        // other thread can be reading the environment.
        unsafe { std::env::remove_var(SEALED_ENV) };
        return Ok(());
    }
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
    env.push(CString::new(format!("{SEALED_ENV}=1")).map_err(io::Error::other)?);
    match nix::unistd::fexecve(fd.as_fd(), &args, &env) {
        Err(e) => Err(e.into()),
    }
}

/// Whether this process runs from a sealed copy (for tests and debug logs).
pub fn is_sealed_copy() -> bool {
    std::fs::read_link("/proc/self/exe")
        .map(|p| p.to_string_lossy().starts_with("/memfd:berth-runtime"))
        .unwrap_or(false)
}
