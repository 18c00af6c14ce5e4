//! The few bpf(2) commands a cgroup device program needs: load it, attach it to
//! a cgroup2 directory, list what is attached there and detach the old ones.
//! Raw syscalls through libc: the attribute structs are the kernel's
//! `union bpf_attr` members, cut after the last field used (the kernel accepts a
//! shorter attribute and treats the rest as zero).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::device_filter::Insn;
use crate::files::OsError;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;

const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
/// Several programs may be attached to one cgroup and all of them must allow;
/// programs of the ancestors keep running too, so a container cannot lift a
/// restriction by attaching its own program below.
const BPF_F_ALLOW_MULTI: u32 = 2;

/// Bytes of verifier log fetched when a load fails.
const LOG_SIZE: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error("loading the cgroup device eBPF program: {error}{}", log_suffix(.log))]
    Load { error: OsError, log: String },
    #[error("opening cgroup directory {}: {error}", path.display())]
    Open { path: PathBuf, error: OsError },
    #[error("attaching the device eBPF program to {}: {error}", path.display())]
    Attach { path: PathBuf, error: OsError },
    #[error("listing the eBPF programs attached to {}: {error}", path.display())]
    Query { path: PathBuf, error: OsError },
    #[error("detaching an old device eBPF program from {}: {error}", path.display())]
    Detach { path: PathBuf, error: OsError },
}

impl BpfError {
    /// The errno behind the failure.
    pub fn errno(&self) -> Option<i32> {
        match self {
            BpfError::Load { error, .. }
            | BpfError::Open { error, .. }
            | BpfError::Attach { error, .. }
            | BpfError::Query { error, .. }
            | BpfError::Detach { error, .. } => error.0.raw_os_error(),
        }
    }
}

fn log_suffix(log: &str) -> String {
    if log.is_empty() {
        String::new()
    } else {
        format!(" (verifier: {})", log.trim())
    }
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetFdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, initialised #[repr(C)] prefix of `union bpf_attr`
    // for `cmd`, and its exact size is passed; pointers inside it point to
    // buffers that outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>(),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn fd_from(r: libc::c_long) -> OwnedFd {
    // SAFETY: bpf(2) returned a new file descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(r as i32) }
}

fn raw(fd: BorrowedFd<'_>) -> u32 {
    // File descriptors are never negative.
    fd.as_raw_fd() as u32
}

/// Load a device program; the verifier's log comes with a refusal.
pub fn load_device_program(prog: &[Insn]) -> Result<OwnedFd, BpfError> {
    let license = CString::from(c"Apache-2.0");
    let mut name = [0u8; 16];
    name[..12].copy_from_slice(b"berth_device");
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: u32::try_from(prog.len()).unwrap_or(u32::MAX),
        insns: prog.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name,
        ..Default::default()
    };
    match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => Ok(fd_from(fd)),
        Err(first) => {
            // Again with a log, only to explain the refusal.
            let mut log = vec![0u8; LOG_SIZE];
            attr.log_level = 1;
            attr.log_size = LOG_SIZE as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            let _ = bpf(BPF_PROG_LOAD, &mut attr).map(fd_from);
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            Err(BpfError::Load {
                error: OsError(first),
                log: String::from_utf8_lossy(&log[..end]).into_owned(),
            })
        }
    }
}

fn open_dir(dir: &Path) -> Result<OwnedFd, BpfError> {
    std::fs::File::open(dir)
        .map(OwnedFd::from)
        .map_err(|e| BpfError::Open {
            path: dir.to_path_buf(),
            error: OsError(e),
        })
}

/// The ids of the device programs attached to the cgroup itself (not those
/// inherited from its ancestors).
pub fn attached_device_programs(dir: &Path) -> Result<Vec<u32>, BpfError> {
    let cg = open_dir(dir)?;
    query(cg.as_fd(), dir)
}

fn query(cg: BorrowedFd<'_>, dir: &Path) -> Result<Vec<u32>, BpfError> {
    let mut ids = vec![0u32; 64];
    loop {
        let mut attr = QueryAttr {
            target_fd: raw(cg),
            attach_type: BPF_CGROUP_DEVICE,
            prog_ids: ids.as_mut_ptr() as u64,
            prog_cnt: u32::try_from(ids.len()).unwrap_or(u32::MAX),
            ..Default::default()
        };
        match bpf(BPF_PROG_QUERY, &mut attr) {
            Ok(_) => {
                ids.truncate(attr.prog_cnt as usize);
                return Ok(ids);
            }
            // The kernel says how many there are: make room and ask again.
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && ids.len() < 4096 => {
                ids = vec![0u32; (attr.prog_cnt as usize).max(ids.len() * 2)];
            }
            Err(e) => {
                return Err(BpfError::Query {
                    path: dir.to_path_buf(),
                    error: OsError(e),
                })
            }
        }
    }
}

/// Attach `prog` to the cgroup2 directory `dir`, then detach the device programs
/// that were attached there before, so that a new rule set replaces the old one.
/// In between both run (all must allow): a device is never allowed by mistake.
pub fn replace_device_program(dir: &Path, prog: BorrowedFd<'_>) -> Result<(), BpfError> {
    let cg = open_dir(dir)?;
    let old = query(cg.as_fd(), dir)?;
    let mut attr = AttachAttr {
        target_fd: raw(cg.as_fd()),
        attach_bpf_fd: raw(prog),
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map_err(|e| BpfError::Attach {
        path: dir.to_path_buf(),
        error: OsError(e),
    })?;
    for id in old {
        let mut get = GetFdAttr {
            prog_id: id,
            ..Default::default()
        };
        let old_fd = match bpf(BPF_PROG_GET_FD_BY_ID, &mut get) {
            Ok(fd) => fd_from(fd),
            // Detached and freed meanwhile.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => {
                return Err(BpfError::Detach {
                    path: dir.to_path_buf(),
                    error: OsError(e),
                })
            }
        };
        let mut attr = AttachAttr {
            target_fd: raw(cg.as_fd()),
            attach_bpf_fd: raw(old_fd.as_fd()),
            attach_type: BPF_CGROUP_DEVICE,
            attach_flags: 0,
        };
        match bpf(BPF_PROG_DETACH, &mut attr) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => {
                return Err(BpfError::Detach {
                    path: dir.to_path_buf(),
                    error: OsError(e),
                })
            }
        }
    }
    Ok(())
}
