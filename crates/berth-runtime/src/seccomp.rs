//! seccomp: turn `linux.seccomp` into a BPF filter with libseccomp.
//!
//! [`validate`] builds the whole filter (and its BPF program) without loading it,
//! so `create` refuses a bad profile before it changes anything; [`load`] builds
//! it again and installs it on the calling thread. The semantics follow runc:
//! - syscall names this libseccomp does not know are skipped (debug log), so one
//!   profile serves old and new kernels;
//! - a rule whose action equals the default action is redundant and skipped;
//! - several conditions on the same argument index cannot be ANDed in one
//!   libseccomp rule, so each becomes its own rule (an OR, which is what profiles
//!   such as Docker's mean by it);
//! - the filter does not set no_new_privs itself: the caller decides (loading
//!   without it needs CAP_SYS_ADMIN, so it happens before the capabilities drop).
//!
//! SCMP_ACT_NOTIFY needs a seccomp agent that berth-runtime does not have; it is
//! refused with a clear error rather than loaded half-working.
//!
//! Compiling a profile the size of Docker's costs more than the rest of a
//! container's start, so it is compiled once per distinct profile: [`validate_in`]
//! keeps the BPF program of each profile in `<cache>/<sha256>.bpf` (the runtime's
//! root: root's alone) and in memory, and [`load`] in the container's process
//! (forked from the one that validated) loads that program as it is, with
//! seccomp(2), instead of building it again.

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
    ScmpVersion,
};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};

use std::io::{Read, Seek, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::Digest as _;

use crate::logger;

/// Syscalls take at most six arguments.
const MAX_ARGS: usize = 6;

/// Above this many rules, ask libseccomp for a binary-tree filter (runc's
/// threshold; libseccomp up to 2.5.4 misbehaves with the tree and no rules).
const OPTIMIZE_THRESHOLD: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp action SCMP_ACT_NOTIFY ({0}) is not supported: berth-runtime has no seccomp agent support")]
    NotifyUnsupported(String),
    #[error("seccomp errnoRet {value} ({what}) is out of range (0..=65535)")]
    ErrnoOutOfRange { value: u32, what: String },
    #[error("seccomp rule for {syscall}: argument index {index} is out of range (0..=5)")]
    ArgIndex { syscall: String, index: usize },
    #[error("seccomp rule with an empty syscall name")]
    EmptySyscallName,
    #[error("seccomp flag {flag} is not supported by this libseccomp or kernel: {source}")]
    UnsupportedFlag {
        flag: String,
        #[source]
        source: libseccomp::error::SeccompError,
    },
    #[error("seccomp: open /dev/null to generate the filter: {source}")]
    Sink {
        #[source]
        source: std::io::Error,
    },
    #[error("seccomp: {what}: {source}")]
    Filter {
        what: String,
        #[source]
        source: libseccomp::error::SeccompError,
    },
    #[error("seccomp: {what} {}: {source}", path.display())]
    Cache {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("seccomp: load the filter: {0}")]
    Load(#[source] std::io::Error),
}

fn filter_err(
    what: impl Into<String>,
) -> impl FnOnce(libseccomp::error::SeccompError) -> SeccompError {
    let what = what.into();
    move |source| SeccompError::Filter { what, source }
}

/// The libseccomp architecture for a spec architecture.
pub fn arch(a: Arch) -> ScmpArch {
    match a {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}

/// Every spec architecture (what `features` reports).
pub const ARCHES: [Arch; 24] = [
    Arch::ScmpArchX86,
    Arch::ScmpArchX86_64,
    Arch::ScmpArchX32,
    Arch::ScmpArchArm,
    Arch::ScmpArchAarch64,
    Arch::ScmpArchMips,
    Arch::ScmpArchMips64,
    Arch::ScmpArchMips64n32,
    Arch::ScmpArchMipsel,
    Arch::ScmpArchMipsel64,
    Arch::ScmpArchMipsel64n32,
    Arch::ScmpArchPpc,
    Arch::ScmpArchPpc64,
    Arch::ScmpArchPpc64le,
    Arch::ScmpArchS390,
    Arch::ScmpArchS390x,
    Arch::ScmpArchParisc,
    Arch::ScmpArchParisc64,
    Arch::ScmpArchRiscv64,
    Arch::ScmpArchLoongarch64,
    Arch::ScmpArchM68k,
    Arch::ScmpArchSh,
    Arch::ScmpArchSheb,
    Arch::ScmpArchNative,
];

/// The architectures this libseccomp can build filters for (2.5 lacks some that
/// the spec names, such as LoongArch), tried on a scratch filter.
pub fn supported_arches() -> Vec<Arch> {
    ARCHES
        .into_iter()
        .filter(|a| *a != Arch::ScmpArchNative)
        .filter(|a| {
            ScmpFilterContext::new(ScmpAction::Allow)
                .ok()
                .is_some_and(|mut ctx| ctx.add_arch(arch(*a)).is_ok())
        })
        .collect()
}

/// The actions `load` accepts (NOTIFY is recognised but refused).
pub const SUPPORTED_ACTIONS: [LinuxSeccompAction; 8] = [
    LinuxSeccompAction::ScmpActAllow,
    LinuxSeccompAction::ScmpActErrno,
    LinuxSeccompAction::ScmpActKill,
    LinuxSeccompAction::ScmpActKillProcess,
    LinuxSeccompAction::ScmpActKillThread,
    LinuxSeccompAction::ScmpActLog,
    LinuxSeccompAction::ScmpActTrace,
    LinuxSeccompAction::ScmpActTrap,
];

/// The argument operators, as the spec spells them.
pub const OPERATORS: [&str; 7] = [
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_LE",
    "SCMP_CMP_LT",
    "SCMP_CMP_MASKED_EQ",
    "SCMP_CMP_NE",
];

/// Every filter flag of the spec, as it spells them.
pub const KNOWN_FLAGS: [LinuxSeccompFilterFlag; 4] = [
    LinuxSeccompFilterFlag::SeccompFilterFlagTsync,
    LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow,
    LinuxSeccompFilterFlag::SeccompFilterFlagLog,
    LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv,
];

/// The flags this libseccomp and kernel can set, tried on a scratch filter.
pub fn supported_flags() -> Vec<LinuxSeccompFilterFlag> {
    KNOWN_FLAGS
        .into_iter()
        .filter(|f| {
            ScmpFilterContext::new(ScmpAction::Allow)
                .ok()
                .is_some_and(|mut ctx| set_flag(&mut ctx, *f).is_ok())
        })
        .collect()
}

/// The version of the libseccomp this process runs with.
pub fn library_version() -> Option<ScmpVersion> {
    ScmpVersion::current().ok()
}

fn errno_value(v: Option<u32>, what: impl Fn() -> String) -> Result<i32, SeccompError> {
    let v = v.unwrap_or(libc::EPERM as u32);
    u16::try_from(v)
        .map(i32::from)
        .map_err(|_| SeccompError::ErrnoOutOfRange {
            value: v,
            what: what(),
        })
}

/// The libseccomp action for a spec action; `errno_ret` is the return value of
/// ERRNO and the message of TRACE (EPERM when absent, as runc).
fn action(
    a: LinuxSeccompAction,
    errno_ret: Option<u32>,
    what: impl Fn() -> String,
) -> Result<ScmpAction, SeccompError> {
    Ok(match a {
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno_value(errno_ret, what)?),
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActTrace => {
            let msg = errno_value(errno_ret, what)?;
            // errno_value keeps the value within u16.
            ScmpAction::Trace(u16::try_from(msg).unwrap_or(u16::MAX))
        }
        LinuxSeccompAction::ScmpActNotify => return Err(SeccompError::NotifyUnsupported(what())),
    })
}

fn compare(syscall: &str, arg: &LinuxSeccompArg) -> Result<ScmpArgCompare, SeccompError> {
    let index = arg.index();
    if index >= MAX_ARGS {
        return Err(SeccompError::ArgIndex {
            syscall: syscall.to_string(),
            index,
        });
    }
    // index < 6 was checked just above.
    let index = u32::try_from(index).unwrap_or(u32::MAX);
    let op = match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        // The spec's `value` is the mask and `valueTwo` the value the masked
        // argument must equal (libseccomp's datum_a and datum_b).
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            return Ok(ScmpArgCompare::new(
                index,
                ScmpCompareOp::MaskedEqual(arg.value()),
                arg.value_two().unwrap_or(0),
            ))
        }
    };
    Ok(ScmpArgCompare::new(index, op, arg.value()))
}

fn set_flag(ctx: &mut ScmpFilterContext, flag: LinuxSeccompFilterFlag) -> Result<(), SeccompError> {
    let unsupported = |source| SeccompError::UnsupportedFlag {
        flag: flag.to_string(),
        source,
    };
    match flag {
        // The runtime is single-threaded when it loads the filter: nothing to sync.
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync => Ok(()),
        LinuxSeccompFilterFlag::SeccompFilterFlagLog => {
            ctx.set_ctl_log(true).map(|_| ()).map_err(unsupported)
        }
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
            ctx.set_ctl_ssb(true).map(|_| ()).map_err(unsupported)
        }
        LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
            ctx.set_ctl_waitkill(true).map(|_| ()).map_err(unsupported)
        }
    }
}

fn add_syscall_rules(
    ctx: &mut ScmpFilterContext,
    call: &LinuxSyscall,
    default: ScmpAction,
) -> Result<(), SeccompError> {
    let describe = || format!("syscalls {}", call.names().join(","));
    let act = action(call.action(), call.errno_ret(), describe)?;
    if act == default {
        return Ok(());
    }
    let args = call.args().as_deref().unwrap_or_default();
    // Checked once for the entry, so a bad condition is refused even when none of
    // its syscalls exists on this system.
    let names = call.names().join(",");
    let conds = args
        .iter()
        .map(|a| compare(&names, a))
        .collect::<Result<Vec<_>, _>>()?;
    let mut per_index = [0usize; MAX_ARGS];
    for a in args {
        per_index[a.index()] += 1;
    }
    for name in call.names() {
        if name.is_empty() {
            return Err(SeccompError::EmptySyscallName);
        }
        let Ok(nr) = ScmpSyscall::from_name(name) else {
            logger::debug(&format!("seccomp: unknown syscall {name:?} skipped"));
            continue;
        };
        let what = || format!("add rule {act:?} for {name}");
        if per_index.iter().any(|n| *n > 1) {
            for c in &conds {
                ctx.add_rule_conditional(act, nr, std::slice::from_ref(c))
                    .map_err(filter_err(what()))?;
            }
        } else {
            ctx.add_rule_conditional(act, nr, &conds)
                .map_err(filter_err(what()))?;
        }
    }
    Ok(())
}

/// Build the filter for `s` without loading it.
pub fn build(s: &LinuxSeccomp) -> Result<ScmpFilterContext, SeccompError> {
    let default = action(s.default_action(), s.default_errno_ret(), || {
        "defaultAction".to_string()
    })?;
    let mut ctx = ScmpFilterContext::new(default).map_err(filter_err("create filter"))?;
    for a in s.architectures().as_deref().unwrap_or_default() {
        ctx.add_arch(arch(*a))
            .map_err(filter_err(format!("add architecture {a}")))?;
    }
    for flag in s.flags().as_deref().unwrap_or_default() {
        set_flag(&mut ctx, *flag)?;
    }
    ctx.set_ctl_nnp(false)
        .map_err(filter_err("leave no_new_privs to the runtime"))?;
    let syscalls = s.syscalls().as_deref().unwrap_or_default();
    if syscalls.len() > OPTIMIZE_THRESHOLD {
        if let Err(e) = ctx.set_ctl_optimize(2) {
            logger::debug(&format!(
                "seccomp: binary tree optimisation not available: {e}"
            ));
        }
    }
    for call in syscalls {
        add_syscall_rules(&mut ctx, call, default)?;
    }
    Ok(ctx)
}

/// Build the filter and its BPF program without loading anything, so that a
/// profile libseccomp rejects is refused before the container exists.
pub fn validate(s: &LinuxSeccomp) -> Result<(), SeccompError> {
    compile(s).map(drop)
}

/// A compiled filter: the BPF program (`struct sock_filter`s) as libseccomp
/// generated it, for the profile with this key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Compiled {
    key: [u8; 32],
    program: Vec<u8>,
}

/// Where below the runtime's `--root` compiled programs are kept (not a
/// valid container id, so never one's directory).
pub const CACHE_DIR: &str = "@seccomp";

/// The last profile this process compiled or read from the cache.
static COMPILED: Mutex<Option<Compiled>> = Mutex::new(None);

/// Bytes of one `struct sock_filter`.
const INSN: usize = 8;
/// The kernel's limit on a filter: BPF_MAXINSNS instructions.
const MAX_INSNS: usize = 4096;

/// What identifies a compiled program: the profile, and the libseccomp that
/// compiles it (another version may compile it differently).
fn key(s: &LinuxSeccomp) -> [u8; 32] {
    let mut h = sha2::Sha256::new();
    h.update(b"berth-seccomp-v1\0");
    if let Some(v) = library_version() {
        h.update(format!("{}.{}.{}\0", v.major, v.minor, v.micro).as_bytes());
    }
    h.update(std::env::consts::ARCH.as_bytes());
    h.update(serde_json::to_vec(s).unwrap_or_default());
    h.finalize().into()
}

fn hex(key: &[u8; 32]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

fn cache_err<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> SeccompError + 'a {
    move |source| SeccompError::Cache {
        what,
        path: path.to_path_buf(),
        source,
    }
}

fn valid_program(p: &[u8]) -> bool {
    !p.is_empty() && p.len() % INSN == 0 && p.len() / INSN <= MAX_INSNS
}

/// Compile `s` with libseccomp into the BPF program it would load.
fn compile(s: &LinuxSeccomp) -> Result<Vec<u8>, SeccompError> {
    let ctx = build(s)?;
    // libseccomp 2.5 exports the program only to a file descriptor.
    // SAFETY: memfd_create with a valid C string; the fd is owned below.
    let fd = unsafe { libc::memfd_create(c"berth-seccomp".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(SeccompError::Sink {
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: memfd_create returned a new descriptor nothing else owns.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    ctx.export_bpf(&file)
        .map_err(filter_err("generate the BPF program"))?;
    let mut program = Vec::new();
    file.rewind()
        .and_then(|_| file.read_to_end(&mut program))
        .map_err(|source| SeccompError::Sink { source })?;
    Ok(program)
}

/// [`validate`], keeping the compiled program in `cache` (a directory, created
/// 0700) and in this process for [`load`]: a profile compiled before, by any
/// runtime process with the same cache, is read instead of compiled.
pub fn validate_in(s: &LinuxSeccomp, cache: Option<&Path>) -> Result<(), SeccompError> {
    let Some(dir) = cache else {
        return validate(s);
    };
    let key = key(s);
    let path = dir.join(format!("{}.bpf", hex(&key)));
    // Refused profiles never reach the cache: what is there was valid.
    let cached = std::fs::read(&path).ok().filter(|p| valid_program(p));
    let program = match cached {
        Some(p) => p,
        None => {
            let program = compile(s)?;
            if let Err(e) = store(dir, &path, &program) {
                // A cache that cannot be written costs time, not correctness.
                logger::debug(&format!("{e}"));
            }
            program
        }
    };
    *COMPILED.lock().unwrap_or_else(|e| e.into_inner()) = Some(Compiled { key, program });
    Ok(())
}

/// Write the program atomically (temporary file, fsync, rename), root's only.
fn store(dir: &Path, path: &Path, program: &[u8]) -> Result<(), SeccompError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(cache_err("create cache directory", dir))?;
    let tmp = dir.join(format!(".{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(program)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(cache_err("write cached program", path))
}

/// The seccomp(2) flags the spec asks for (libseccomp's load sets the same).
fn kernel_flags(s: &LinuxSeccomp) -> libc::c_ulong {
    let mut flags = 0;
    for f in s.flags().as_deref().unwrap_or_default() {
        flags |= match f {
            // The runtime is single-threaded when it loads the filter.
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => 0,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => 1 << 5,
        };
    }
    flags
}

/// Load a compiled program into the kernel for the calling thread.
fn load_program(program: &[u8], flags: libc::c_ulong) -> Result<(), SeccompError> {
    let filters: Vec<libc::sock_filter> = program
        .chunks_exact(INSN)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    let prog = libc::sock_fprog {
        // valid_program bounds the length by BPF_MAXINSNS.
        len: u16::try_from(filters.len()).unwrap_or(u16::MAX),
        filter: filters.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `prog` points to `filters`, alive for the call; the kernel copies
    // the program.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &prog as *const libc::sock_fprog,
        )
    };
    if r != 0 {
        return Err(SeccompError::Load(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Load the filter into the kernel for the calling thread (and the program it
/// execs): the program [`validate_in`] compiled in this process (or a parent it
/// was forked from) when it is for this profile, else built now. Everything the
/// caller does after this runs under the filter.
pub fn load(s: &LinuxSeccomp) -> Result<(), SeccompError> {
    let compiled = COMPILED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .filter(|c| valid_program(&c.program) && c.key == key(s));
    match compiled {
        Some(c) => load_program(&c.program, kernel_flags(s)),
        None => {
            let ctx = build(s)?;
            ctx.load().map_err(filter_err("load the filter"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(json: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn allow_list_with_errno_default_builds() {
        let p = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
            "flags": ["SECCOMP_FILTER_FLAG_TSYNC"],
            "syscalls": [
                {"names": ["read", "write", "exit_group", "no_such_syscall_berth", "chown32", "_llseek"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}]},
                {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
                {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                {"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [
                    {"index": 0, "value": 40, "op": "SCMP_CMP_NE"},
                    {"index": 0, "value": 16, "op": "SCMP_CMP_NE"},
                    {"index": 1, "value": 3, "op": "SCMP_CMP_LE"}
                ]},
                {"names": ["mmap"], "action": "SCMP_ACT_ALLOW", "args": [
                    {"index": 0, "value": 0, "op": "SCMP_CMP_GE"},
                    {"index": 2, "value": 7, "op": "SCMP_CMP_LT"}
                ]},
                {"names": ["ptrace"], "action": "SCMP_ACT_TRACE"},
                {"names": ["reboot"], "action": "SCMP_ACT_KILL_PROCESS"},
                {"names": ["swapon"], "action": "SCMP_ACT_KILL"},
                {"names": ["acct"], "action": "SCMP_ACT_TRAP"},
                {"names": ["getpid"], "action": "SCMP_ACT_LOG"}
            ]
        }));
        validate(&p).unwrap();
    }

    #[test]
    fn notify_is_refused_clearly() {
        let p = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
        }));
        let e = validate(&p).unwrap_err();
        assert!(matches!(e, SeccompError::NotifyUnsupported(_)), "{e}");
        assert!(e.to_string().contains("mkdir"), "{e}");
        let p = profile(serde_json::json!({"defaultAction": "SCMP_ACT_NOTIFY"}));
        assert!(matches!(
            validate(&p),
            Err(SeccompError::NotifyUnsupported(_))
        ));
    }

    #[test]
    fn bad_profiles_are_refused() {
        let p = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]
        }));
        assert!(matches!(
            validate(&p),
            Err(SeccompError::ArgIndex { index: 6, .. })
        ));

        let p = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["berth_no_such_syscall"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 7, "value": 0, "op": "SCMP_CMP_EQ"}]}]
        }));
        assert!(matches!(
            validate(&p),
            Err(SeccompError::ArgIndex { index: 7, .. })
        ));

        let p = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": [""], "action": "SCMP_ACT_ERRNO"}]
        }));
        assert!(matches!(validate(&p), Err(SeccompError::EmptySyscallName)));

        let p = profile(
            serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000}),
        );
        assert!(matches!(
            validate(&p),
            Err(SeccompError::ErrnoOutOfRange { value: 70000, .. })
        ));

        // Unknown actions, operators and architectures never get past the parser.
        for bad in [
            serde_json::json!({"defaultAction": "SCMP_ACT_BOGUS"}),
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_VAX"]}),
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_ABOUT"}]}]}),
        ] {
            assert!(serde_json::from_value::<LinuxSeccomp>(bad).is_err());
        }
    }

    #[test]
    fn rules_equal_to_the_default_are_skipped() {
        let p = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},
                {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}
            ]
        }));
        validate(&p).unwrap();
    }

    #[test]
    fn flags() {
        let p = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]
        }));
        validate(&p).unwrap();
        let supported = supported_flags();
        assert!(supported.contains(&LinuxSeccompFilterFlag::SeccompFilterFlagTsync));
        assert!(supported.contains(&LinuxSeccompFilterFlag::SeccompFilterFlagLog));
    }

    #[test]
    fn masked_eq_uses_value_as_mask() {
        let arg: LinuxSeccompArg = serde_json::from_value(serde_json::json!(
            {"index": 1, "value": 255, "valueTwo": 4, "op": "SCMP_CMP_MASKED_EQ"}
        ))
        .unwrap();
        assert_eq!(
            compare("x", &arg).unwrap(),
            ScmpArgCompare::new(1, ScmpCompareOp::MaskedEqual(255), 4)
        );
    }

    #[test]
    fn supported_arches_include_the_native_ones() {
        let arches = supported_arches();
        assert!(arches.contains(&Arch::ScmpArchX86_64));
        assert!(arches.contains(&Arch::ScmpArchAarch64));
        assert!(!arches.contains(&Arch::ScmpArchNative));
    }

    #[test]
    fn programs_are_compiled_once_per_profile() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let p = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]
        }));
        validate_in(&p, Some(&cache)).unwrap();
        let files: Vec<_> = std::fs::read_dir(&cache).unwrap().flatten().collect();
        assert_eq!(files.len(), 1);
        let path = files[0].path();
        let compiled = std::fs::read(&path).unwrap();
        assert!(valid_program(&compiled));
        assert_eq!(compiled, compile(&p).unwrap());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777,
            0o700
        );

        // The next validation reads the file instead of compiling: a program
        // put there (any valid one) is what it keeps for load.
        let other = compile(&profile(
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW"}),
        ))
        .unwrap();
        std::fs::write(&path, &other).unwrap();
        validate_in(&p, Some(&cache)).unwrap();
        let kept = COMPILED.lock().unwrap().clone().unwrap();
        assert_eq!(kept.program, other);
        assert_eq!(kept.key, key(&p));
        // A different profile is another entry.
        let q = profile(serde_json::json!({"defaultAction": "SCMP_ACT_LOG"}));
        validate_in(&q, Some(&cache)).unwrap();
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 2);
        // Garbage in the cache is compiled over.
        std::fs::write(&path, b"odd").unwrap();
        validate_in(&p, Some(&cache)).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), compiled);
        assert_eq!(
            kernel_flags(&profile(serde_json::json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_TSYNC"]
            }))),
            libc::SECCOMP_FILTER_FLAG_LOG
        );
    }

    #[test]
    fn version_is_known() {
        let v = library_version().unwrap();
        assert!(v.major >= 2);
    }
}
