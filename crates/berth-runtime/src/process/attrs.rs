//! The last steps every container process takes before execve, shared by the init
//! and by `exec`: the spec's process attributes in the order that keeps each one
//! possible (rlimits and oom_score_adj while still privileged; seccomp before the
//! capability drop unless no_new_privs lets an unprivileged process load it; the
//! identity change between dropping the bounding set and setting the final
//! capability sets), the executable lookup in the container's PATH, and the fd
//! and signal hygiene that keeps host state out of the container.
//!
//! `ExecPlan` is built by the runtime before forking, so that the children do not
//! have to allocate the argument and environment strings.

use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::unistd::AccessFlags;
use oci_spec::runtime::{
    IOPriorityClass, LinuxCapabilities, LinuxCapabilitiesBuilder, LinuxIOPriority,
    LinuxPersonality, LinuxPersonalityDomain, LinuxSeccomp, Process,
};

use super::channel::{ChildFailure, FailureKind};
use super::ProcessError;
use crate::{capabilities, identity, rlimits, seccomp};

/// PATH when the process's environment has none (Docker's and runc's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The program to execute, prepared by the runtime.
#[derive(Debug, Clone)]
pub struct ExecPlan {
    /// args[0] as given, for messages.
    pub arg0: String,
    pub args: Vec<CString>,
    pub env: Vec<CString>,
    /// Where to look for the program inside the container, in order.
    pub candidates: Vec<CString>,
    /// args[0] names a path (has a '/'): no PATH search.
    pub explicit_path: bool,
}

impl ExecPlan {
    /// Prepare `process`'s program; `rootfs` is read for the user's home
    /// directory when the environment has no HOME (runc sets it).
    pub fn new(process: &Process, rootfs: &Path) -> Result<ExecPlan, ProcessError> {
        let args: Vec<String> = process.args().clone().unwrap_or_default();
        let Some(arg0) = args.first().cloned().filter(|a| !a.is_empty()) else {
            return Err(ProcessError::NoArgs);
        };
        let mut env: Vec<String> = process.env().clone().unwrap_or_default();
        for e in &env {
            if !e.contains('=') {
                return Err(ProcessError::BadEnv(e.clone()));
            }
        }
        if !env.iter().any(|e| e.starts_with("HOME=")) {
            let home = home_of(rootfs, process.user().uid()).unwrap_or_else(|| "/".to_string());
            env.push(format!("HOME={home}"));
        }
        let path_var = env
            .iter()
            .rev()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH)
            .to_string();
        let explicit_path = arg0.contains('/');
        let candidates: Vec<String> = if explicit_path {
            vec![arg0.clone()]
        } else {
            path_var
                .split(':')
                .map(|dir| if dir.is_empty() { "." } else { dir })
                .map(|dir| format!("{}/{arg0}", dir.trim_end_matches('/')))
                .collect()
        };
        let cstrings = |v: Vec<String>, what: &'static str| {
            v.into_iter()
                .map(|s| CString::new(s).map_err(|_| ProcessError::Nul { what }))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(ExecPlan {
            arg0,
            args: cstrings(args, "process.args")?,
            env: cstrings(env, "process.env")?,
            candidates: cstrings(candidates, "process.args[0] or PATH")?,
            explicit_path,
        })
    }

    /// Find the program, as seen from the current root and identity.
    pub fn find(&self) -> Result<&CStr, ChildFailure> {
        let mut denied = None;
        for c in &self.candidates {
            match nix::unistd::access(c.as_c_str(), AccessFlags::X_OK) {
                Ok(()) => {
                    let is_dir =
                        std::fs::metadata(Path::new(std::ffi::OsStr::from_bytes(c.as_bytes())))
                            .map(|m| m.is_dir())
                            .unwrap_or(false);
                    if !is_dir {
                        return Ok(c.as_c_str());
                    }
                    denied.get_or_insert("is a directory");
                }
                Err(Errno::EACCES) | Err(Errno::EPERM) => {
                    denied.get_or_insert("permission denied");
                }
                Err(_) => {}
            }
        }
        Err(match (denied, self.explicit_path) {
            (Some(why), _) => ChildFailure {
                kind: FailureKind::NotExecutable,
                message: format!("exec: {:?}: {why}", self.arg0),
            },
            (None, true) => ChildFailure {
                kind: FailureKind::NotFound,
                message: format!("exec: {:?}: no such file or directory", self.arg0),
            },
            (None, false) => ChildFailure {
                kind: FailureKind::NotFound,
                message: format!("exec: {:?}: executable file not found in $PATH", self.arg0),
            },
        })
    }

    /// execve the program; returns only on failure.
    pub fn exec(&self, path: &CStr) -> ChildFailure {
        let Err(e) = nix::unistd::execve(path, &self.args, &self.env);
        let kind = match e {
            Errno::ENOENT | Errno::ENOTDIR => FailureKind::NotFound,
            _ => FailureKind::NotExecutable,
        };
        ChildFailure {
            kind,
            message: format!("exec {:?}: {}", self.arg0, e.desc()),
        }
    }
}

/// The home directory of `uid` in the container's /etc/passwd.
fn home_of(rootfs: &Path, uid: u32) -> Option<String> {
    let passwd = crate::mounts::resolve_in_root(rootfs, Path::new("/etc/passwd")).ok()?;
    let text = std::fs::read_to_string(passwd).ok()?;
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 7 && f[2].parse::<u32>().ok() == Some(uid) && !f[5].is_empty())
            .then(|| f[5].to_string())
    })
}

/// Capabilities for a process whose spec has none: none at all (runc's rule).
pub fn no_capabilities() -> LinuxCapabilities {
    let empty = HashSet::new;
    LinuxCapabilitiesBuilder::default()
        .bounding(empty())
        .effective(empty())
        .inheritable(empty())
        .permitted(empty())
        .ambient(empty())
        .build()
        .unwrap_or_else(|_| {
            let mut c = LinuxCapabilities::default();
            c.set_bounding(Some(HashSet::new()));
            c.set_effective(Some(HashSet::new()));
            c.set_inheritable(Some(HashSet::new()));
            c.set_permitted(Some(HashSet::new()));
            c.set_ambient(Some(HashSet::new()));
            c
        })
}

/// Change into the process's working directory and make sure it lies inside the
/// container's root: a directory reached through a leaked host fd (e.g.
/// `/proc/self/fd/7`) is outside it, and getcwd then fails or says
/// "(unreachable)" (CVE-2024-21626).
pub fn enter_cwd(cwd: &Path) -> Result<(), ChildFailure> {
    nix::unistd::chdir(cwd)
        .map_err(|e| ChildFailure::setup(format!("chdir to cwd {}: {e}", cwd.display())))?;
    match nix::unistd::getcwd() {
        Ok(p) if p.is_absolute() && !p.as_os_str().as_bytes().starts_with(b"(unreachable)") => {
            Ok(())
        }
        _ => Err(ChildFailure::setup(format!(
            "cwd {} is outside the container's root filesystem",
            cwd.display()
        ))),
    }
}

/// Refuse process attributes berth cannot apply, before anything is created.
pub fn check_supported(process: &Process) -> Result<(), ProcessError> {
    if process.scheduler().is_some() {
        return Err(ProcessError::Unsupported("process.scheduler"));
    }
    if process.exec_cpu_affinity().is_some() {
        return Err(ProcessError::Unsupported("process.execCPUAffinity"));
    }
    if let Some(io) = process.io_priority() {
        if !(0..=7).contains(&io.priority()) {
            return Err(ProcessError::IoPriority(io.priority()));
        }
    }
    Ok(())
}

/// linux/personality.h
const PER_LINUX: libc::c_ulong = 0x0000;
const PER_LINUX32: libc::c_ulong = 0x0008;

/// Set the execution domain (`linux.personality`; flags are refused earlier).
fn set_personality(p: &LinuxPersonality) -> Result<(), ChildFailure> {
    let domain = match p.domain() {
        LinuxPersonalityDomain::PerLinux => PER_LINUX,
        LinuxPersonalityDomain::PerLinux32 => PER_LINUX32,
    };
    // SAFETY: personality(2) takes a plain integer and changes only how later
    // execve calls and uname behave for this process.
    let r = unsafe { libc::personality(domain) };
    Errno::result(r)
        .map(drop)
        .map_err(|e| ChildFailure::setup(format!("personality: {e}")))
}

/// ioprio_set(2) for the process itself (IOPRIO_WHO_PROCESS, pid 0).
fn set_io_priority(io: &LinuxIOPriority) -> Result<(), ChildFailure> {
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    const IOPRIO_CLASS_SHIFT: libc::c_long = 13;
    let class: libc::c_long = match io.class() {
        IOPriorityClass::IoprioClassRt => 1,
        IOPriorityClass::IoprioClassBe => 2,
        IOPriorityClass::IoprioClassIdle => 3,
    };
    let prio = (class << IOPRIO_CLASS_SHIFT) | io.priority() as libc::c_long;
    // SAFETY: ioprio_set takes three integers and changes only the I/O priority
    // of the calling process.
    let r = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, prio) };
    Errno::result(r)
        .map(drop)
        .map_err(|e| ChildFailure::setup(format!("ioprio_set: {e}")))
}

/// Apply the process attributes, in order. Runs as the last steps before the
/// executable lookup; `seccomp_filter` and `personality` are the container's (they
/// apply to exec'd processes too). A filter with SCMP_ACT_NOTIFY rules gives a
/// listener fd, which `notify` must hand to the seccomp agent before this
/// process makes any syscall the agent answers.
pub fn apply(
    process: &Process,
    seccomp_filter: Option<&LinuxSeccomp>,
    personality: Option<&LinuxPersonality>,
    notify: &mut dyn FnMut(std::os::fd::OwnedFd) -> Result<(), ChildFailure>,
) -> Result<(), ChildFailure> {
    if let Some(p) = personality {
        set_personality(p)?;
    }
    if let Some(io) = process.io_priority() {
        set_io_priority(io)?;
    }
    if let Some(limits) = process.rlimits() {
        rlimits::apply(limits).map_err(|e| ChildFailure::setup(format!("rlimits: {e}")))?;
    }
    if let Some(adj) = process.oom_score_adj() {
        identity::set_oom_score_adj(adj)
            .map_err(|e| ChildFailure::setup(format!("oom_score_adj: {e}")))?;
    }
    let nnp = process.no_new_privileges().unwrap_or(false);
    // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: do it while we
    // still have it.
    if !nnp {
        if let Some(s) = seccomp_filter {
            if let Some(fd) =
                seccomp::load(s).map_err(|e| ChildFailure::setup(format!("seccomp: {e}")))?
            {
                notify(fd)?;
            }
        }
    }
    let none = no_capabilities();
    let caps = process.capabilities().as_ref().unwrap_or(&none);
    capabilities::drop_bounding(caps)
        .map_err(|e| ChildFailure::setup(format!("capability bounding set: {e}")))?;
    identity::set_identity(process.user())
        .map_err(|e| ChildFailure::setup(format!("user: {e}")))?;
    capabilities::apply(caps).map_err(|e| ChildFailure::setup(format!("capabilities: {e}")))?;
    if nnp {
        identity::set_no_new_privs()
            .map_err(|e| ChildFailure::setup(format!("no_new_privs: {e}")))?;
        // With no_new_privs the filter goes in last, so it can be as strict as it
        // likes about the syscalls above.
        if let Some(s) = seccomp_filter {
            if let Some(fd) =
                seccomp::load(s).map_err(|e| ChildFailure::setup(format!("seccomp: {e}")))?
            {
                notify(fd)?;
            }
        }
    }
    if process.user().umask().is_some() {
        identity::set_umask(process.user())
            .map_err(|e| ChildFailure::setup(format!("umask: {e}")))?;
    } else {
        // The init ran with umask 0 to make device nodes; give the program the
        // usual default.
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    }
    Ok(())
}

/// Mark every fd from `first` on close-on-exec, so that nothing the runtime or
/// its caller opened reaches the container's program (fds below `first`, stdio
/// and the preserved ones, stay).
pub fn cloexec_from(first: u32) -> Result<(), ChildFailure> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only changes fd flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r == 0 {
        return Ok(());
    }
    // Kernels before 5.11 lack CLOSE_RANGE_CLOEXEC: walk /proc/self/fd.
    let dir = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| ChildFailure::setup(format!("list /proc/self/fd: {e}")))?;
    let fds: Vec<i32> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .filter(|fd| u32::try_from(*fd).map(|u| u >= first).unwrap_or(false))
        .collect();
    for fd in fds {
        // SAFETY: F_SETFD only changes the flags of fd (a closed one fails).
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

/// Give the program the signal state a fresh process has: nothing blocked and
/// SIGPIPE at its default (Rust's runtime ignores it, and ignored signals survive
/// execve).
pub fn reset_signals() -> Result<(), ChildFailure> {
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(|e| ChildFailure::setup(format!("reset the signal mask: {e}")))?;
    // SAFETY: SIG_DFL installs no handler code; no other thread exists.
    unsafe { nix::sys::signal::signal(Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl) }
        .map_err(|e| ChildFailure::setup(format!("reset SIGPIPE: {e}")))?;
    Ok(())
}

/// Where a --pid-file or --console-socket path given relative to our cwd lives.
pub fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::ProcessBuilder;

    fn process(args: &[&str], env: &[&str]) -> Process {
        ProcessBuilder::default()
            .args(args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .env(env.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .cwd("/")
            .build()
            .unwrap()
    }

    #[test]
    fn plan_searches_the_container_path() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\n",
        )
        .unwrap();
        let p = ExecPlan::new(&process(&["sh", "-c", "x"], &["PATH=/a:/b/"]), d.path()).unwrap();
        assert_eq!(p.candidates, [c"/a/sh".to_owned(), c"/b/sh".to_owned()]);
        assert!(p.env.contains(&c"HOME=/root".to_owned()));
        let p = ExecPlan::new(&process(&["./x"], &["HOME=/h"]), d.path()).unwrap();
        assert!(p.explicit_path);
        assert_eq!(p.candidates, [c"./x".to_owned()]);
        assert_eq!(p.env, [c"HOME=/h".to_owned()]);
        assert!(matches!(
            ExecPlan::new(&process(&[], &[]), d.path()),
            Err(ProcessError::NoArgs)
        ));
        assert!(matches!(
            ExecPlan::new(&process(&["a"], &["NOEQUALS"]), d.path()),
            Err(ProcessError::BadEnv(_))
        ));
    }

    #[test]
    fn lookup_distinguishes_missing_from_not_executable() {
        let d = tempfile::tempdir().unwrap();
        let bin = d.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::write(bin.join("plain"), "x").unwrap();
        let path = format!("PATH={}", bin.display());
        let p = ExecPlan::new(&process(&["nope"], &[&path]), d.path()).unwrap();
        assert_eq!(p.find().unwrap_err().kind, FailureKind::NotFound);
        let p = ExecPlan::new(&process(&["plain"], &[&path]), d.path()).unwrap();
        // root may execute any file with an x bit; this one has none.
        assert_eq!(p.find().unwrap_err().kind, FailureKind::NotExecutable);
        let p = ExecPlan::new(&process(&["/bin/sh"], &[]), d.path()).unwrap();
        assert_eq!(p.find().unwrap(), c"/bin/sh");
    }
}
