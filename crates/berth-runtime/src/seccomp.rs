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
//! - syscalls newer than every syscall the profile names get ENOSYS rather
//!   than a non-permissive default action (a BPF stub in front of libseccomp's
//!   program, for the native architecture), so that a program probing for a
//!   new syscall falls back instead of failing;
//! - SCMP_ACT_NOTIFY rules make [`load`] return the listener fd, which the
//!   runtime hands to the agent at `listenerPath` (see `process::notify`); they
//!   cannot apply to write(2), which the runtime's children use after loading.
//!
//! Compiling a profile the size of Docker's costs more than the rest of a
//! container's start, so it is compiled once per distinct profile: [`validate_in`]
//! keeps the BPF program of each profile in `<cache>/<sha256>.bpf` (under the
//! runtime's root: root's alone) and in memory, and [`load`] in the container's
//! process (forked from the one that validated) loads that program as it is
//! instead of building it again. The cache keeps at most [`MAX_CACHED`]
//! programs, evicting the least recently used.

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
    ScmpVersion,
};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};

use std::io::Write;
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
    #[error("SCMP_ACT_NOTIFY cannot be used as the default action")]
    NotifyDefault,
    #[error("SCMP_ACT_NOTIFY cannot be used for the write syscall")]
    NotifyWrite,
    #[error("SCMP_ACT_NOTIFY is used ({0}) but linux.seccomp.listenerPath is not set")]
    NotifyWithoutListener(String),
    #[error("seccomp: load the filter: {0}")]
    Load(#[source] nix::Error),
    #[error("seccomp: {what} {}: {source}", path.display())]
    Cache {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
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

/// The actions `load` accepts.
pub const SUPPORTED_ACTIONS: [LinuxSeccompAction; 9] = [
    LinuxSeccompAction::ScmpActAllow,
    LinuxSeccompAction::ScmpActErrno,
    LinuxSeccompAction::ScmpActKill,
    LinuxSeccompAction::ScmpActKillProcess,
    LinuxSeccompAction::ScmpActKillThread,
    LinuxSeccompAction::ScmpActLog,
    LinuxSeccompAction::ScmpActNotify,
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
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
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

/// The syscalls of the profile's SCMP_ACT_NOTIFY rules, comma-separated
/// (empty when it has none).
fn notified(s: &LinuxSeccomp) -> String {
    s.syscalls()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter(|c| c.action() == LinuxSeccompAction::ScmpActNotify)
        .flat_map(|c| c.names().iter().cloned())
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether the profile has SCMP_ACT_NOTIFY rules (its filter then hands out a
/// listener fd for the seccomp agent).
pub fn uses_notify(s: &LinuxSeccomp) -> bool {
    !notified(s).is_empty()
}

/// Build the filter for `s` without loading it.
pub fn build(s: &LinuxSeccomp) -> Result<ScmpFilterContext, SeccompError> {
    if s.default_action() == LinuxSeccompAction::ScmpActNotify {
        return Err(SeccompError::NotifyDefault);
    }
    let notify = notified(s);
    if !notify.is_empty() {
        if notify.split(',').any(|n| n == "write") {
            return Err(SeccompError::NotifyWrite);
        }
        if s.listener_path()
            .as_ref()
            .is_none_or(|p| p.as_os_str().is_empty())
        {
            return Err(SeccompError::NotifyWithoutListener(notify));
        }
    }
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
    program(s).map(drop)
}

/// The BPF program for `s`: libseccomp's, behind the ENOSYS stub.
fn program(s: &LinuxSeccomp) -> Result<Vec<libc::sock_filter>, SeccompError> {
    let ctx = build(s)?;
    let mut prog = enosys_stub(s);
    prog.extend(export(&ctx)?);
    Ok(prog)
}

/// libseccomp's program (2.5 can only write it to a file descriptor).
fn export(ctx: &ScmpFilterContext) -> Result<Vec<libc::sock_filter>, SeccompError> {
    use std::io::{Read, Seek};
    let mut f = memfd(c"berth-seccomp").map_err(|source| SeccompError::Sink { source })?;
    ctx.export_bpf(&f)
        .map_err(filter_err("generate the BPF program"))?;
    let mut raw = Vec::new();
    f.rewind()
        .and_then(|_| f.read_to_end(&mut raw))
        .map_err(|source| SeccompError::Sink { source })?;
    let size = std::mem::size_of::<libc::sock_filter>();
    Ok(raw
        .chunks_exact(size)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect())
}

/// A compiled filter: the BPF program (stub and libseccomp's) and the
/// profile it was made from (which [`load`] recognises by comparing, without
/// encoding and hashing it again).
#[derive(Clone)]
struct Compiled {
    profile: LinuxSeccomp,
    program: Vec<libc::sock_filter>,
}

/// Where below the runtime's `--root` compiled programs are kept (not a
/// valid container id, so never one's directory).
pub const CACHE_DIR: &str = "@seccomp";

/// The last profile this process compiled or read from the cache.
static COMPILED: Mutex<Option<Compiled>> = Mutex::new(None);

/// Programs kept in the cache directory at most: each new entry beyond this
/// removes the least recently used ones. A host runs few distinct profiles
/// (Docker's default varies with the capabilities added), and an entry is a
/// few KiB.
pub const MAX_CACHED: usize = 64;

/// A cache hit refreshes the entry's modification time (its last use, for
/// the eviction) only when it is older than this, so that most hits write
/// nothing.
const TOUCH_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// Bytes of one `struct sock_filter`.
const INSN: usize = std::mem::size_of::<libc::sock_filter>();
/// The kernel's limit on a filter: BPF_MAXINSNS instructions.
const MAX_INSNS: usize = 4096;

/// What identifies a compiled program: the whole profile (listener, flags and
/// errnos included), the libseccomp that compiles it (another version may
/// compile it differently), the architecture and the format (bump the tag when
/// the program's shape changes, as the ENOSYS stub did). None when the profile
/// cannot be encoded: then it is compiled, never looked up, so two such
/// profiles cannot share an entry.
fn key(s: &LinuxSeccomp) -> Option<[u8; 32]> {
    let profile = serde_json::to_vec(s).ok()?;
    let mut h = sha2::Sha256::new();
    h.update(b"berth-seccomp-v2\0");
    if let Some(v) = library_version() {
        h.update(format!("{}.{}.{}\0", v.major, v.minor, v.micro).as_bytes());
    }
    h.update(std::env::consts::ARCH.as_bytes());
    h.update(profile);
    Some(h.finalize().into())
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

fn to_bytes(p: &[libc::sock_filter]) -> Vec<u8> {
    let mut out = Vec::with_capacity(p.len() * INSN);
    for i in p {
        out.extend_from_slice(&i.code.to_ne_bytes());
        out.push(i.jt);
        out.push(i.jf);
        out.extend_from_slice(&i.k.to_ne_bytes());
    }
    out
}

/// A program read back from the cache, if it has the shape of one.
fn from_bytes(raw: &[u8]) -> Option<Vec<libc::sock_filter>> {
    if raw.is_empty() || raw.len() % INSN != 0 || raw.len() / INSN > MAX_INSNS {
        return None;
    }
    Some(
        raw.chunks_exact(INSN)
            .map(|c| libc::sock_filter {
                code: u16::from_ne_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect(),
    )
}

/// [`validate`], keeping the compiled program in `cache` (a directory, created
/// 0700) and in this process for [`load`]: a profile compiled before, by any
/// runtime process with the same cache, is read instead of compiled.
pub fn validate_in(s: &LinuxSeccomp, cache: Option<&Path>) -> Result<(), SeccompError> {
    let (Some(dir), Some(key)) = (cache, key(s)) else {
        return validate(s);
    };
    let path = dir.join(format!("{}.bpf", hex(&key)));
    // Refused profiles never reach the cache: what is there was valid. A hit
    // is an open, a stat and a read; the only libseccomp call is the version
    // getter in the key (no filter is built, no syscall name resolved).
    let program = match read_cached(&path) {
        Some(p) => p,
        None => {
            let program = program(s)?;
            if let Err(e) = store(dir, &path, &to_bytes(&program)) {
                // A cache that cannot be written costs time, not correctness.
                logger::debug(&format!("{e}"));
            }
            prune(dir, MAX_CACHED);
            program
        }
    };
    *COMPILED.lock().unwrap_or_else(|e| e.into_inner()) = Some(Compiled {
        profile: s.clone(),
        program,
    });
    Ok(())
}

/// The program cached at `path`, if there is one of the right shape; marks
/// it used (see [`TOUCH_AFTER`]).
fn read_cached(path: &Path) -> Option<Vec<libc::sock_filter>> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).ok()?;
    let meta = f.metadata().ok()?;
    let len = usize::try_from(meta.len()).ok()?;
    if len > MAX_INSNS * INSN {
        return None;
    }
    // Files are replaced whole (rename), never changed: the size stands.
    let mut raw = vec![0u8; len];
    f.read_exact(&mut raw).ok()?;
    let program = from_bytes(&raw)?;
    let now = std::time::SystemTime::now();
    let stale = meta
        .modified()
        .ok()
        .and_then(|m| now.duration_since(m).ok())
        .is_some_and(|age| age > TOUCH_AFTER);
    if stale {
        // Best effort: an entry that keeps an old time is evicted sooner.
        let _ = f.set_modified(now);
    }
    Some(program)
}

/// Keep at most `max` programs in `dir`, removing the least recently used
/// (oldest modification time), and temporary files a crashed writer left
/// behind. Another runtime reading an entry removed meanwhile either has it
/// open already or compiles the profile again.
fn prune(dir: &Path, max: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let now = std::time::SystemTime::now();
    let mut programs = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        let Ok(meta) = e.metadata() else {
            continue;
        };
        let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
        if name.starts_with('.') && name.ends_with(".tmp") {
            let old = now
                .duration_since(modified)
                .is_ok_and(|age| age > TOUCH_AFTER);
            if old {
                let _ = std::fs::remove_file(e.path());
            }
        } else if name.ends_with(".bpf") {
            programs.push((modified, e.path()));
        }
    }
    if programs.len() <= max {
        return;
    }
    programs.sort();
    let extra = programs.len() - max;
    for (_, path) in programs.into_iter().take(extra) {
        let _ = std::fs::remove_file(path);
    }
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

fn memfd(name: &std::ffi::CStr) -> std::io::Result<std::fs::File> {
    use std::os::fd::FromRawFd;
    // SAFETY: memfd_create takes a NUL-terminated name and flags and returns a
    // new fd or -1.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the fd was just created and nothing else owns it.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

/// The x32 ABI's syscalls on x86_64 carry this bit.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// A BPF stub that answers ENOSYS for syscalls of the native architecture
/// numbered above every syscall the profile names, ahead of a default action
/// that is not permissive (runc does the same): a program that probes for a
/// syscall newer than the profile then falls back as on an older kernel,
/// instead of failing with EPERM. Empty when it does not apply.
fn enosys_stub(s: &LinuxSeccomp) -> Vec<libc::sock_filter> {
    use LinuxSeccompAction::*;
    if matches!(s.default_action(), ScmpActAllow | ScmpActLog | ScmpActTrace)
        || s.default_errno_ret() == Some(libc::ENOSYS as u32)
    {
        return Vec::new();
    }
    let native = ScmpArch::native();
    let arches = s.architectures().as_deref().unwrap_or_default();
    if !arches.is_empty()
        && !arches
            .iter()
            .any(|a| matches!(arch(*a), ScmpArch::Native) || arch(*a) == native)
    {
        return Vec::new();
    }
    let Some(audit_arch) = audit_arch(native) else {
        return Vec::new();
    };
    let last = s
        .syscalls()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .flat_map(|c| c.names())
        .filter_map(|n| ScmpSyscall::from_name_by_arch(n, native).ok())
        .map(i32::from)
        .filter(|n| *n >= 0)
        .max();
    let Some(last) = last.and_then(|n| u32::try_from(n).ok()) else {
        return Vec::new();
    };
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |code: u32, k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    const LD_W_ABS: u32 = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    const JEQ: u32 = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
    const JGE: u32 = libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K;
    const JGT: u32 = libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K;
    const RET: u32 = libc::BPF_RET | libc::BPF_K;
    // struct seccomp_data: nr at offset 0, arch at offset 4.
    // Every jump lands on the next instruction or on the original program,
    // which starts right after the stub and loads what it needs itself.
    vec![
        stmt(LD_W_ABS, 4),                                  // 0: A = arch
        jump(JEQ, audit_arch, 0, 4),                        // 1: not native → 6
        stmt(LD_W_ABS, 0),                                  // 2: A = nr
        jump(JGE, X32_SYSCALL_BIT, 2, 0),                   // 3: x32 → 6
        jump(JGT, last, 0, 1),                              // 4: nr > last → 5, else 6
        stmt(RET, SECCOMP_RET_ERRNO | libc::ENOSYS as u32), // 5
    ]
}

/// SECCOMP_RET_ERRNO (linux/seccomp.h).
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;

/// The kernel's AUDIT_ARCH_* value for the architectures berth builds for.
fn audit_arch(a: ScmpArch) -> Option<u32> {
    const AUDIT_ARCH_64BIT: u32 = 0x8000_0000;
    const AUDIT_ARCH_LE: u32 = 0x4000_0000;
    match a {
        ScmpArch::X8664 => Some(62 | AUDIT_ARCH_64BIT | AUDIT_ARCH_LE), // EM_X86_64
        ScmpArch::Aarch64 => Some(183 | AUDIT_ARCH_64BIT | AUDIT_ARCH_LE), // EM_AARCH64
        _ => None,
    }
}

/// seccomp(2) filter flags (linux/seccomp.h).
const FLAG_LOG: libc::c_ulong = 2;
const FLAG_SPEC_ALLOW: libc::c_ulong = 4;
const FLAG_NEW_LISTENER: libc::c_ulong = 8;
const FLAG_WAIT_KILLABLE_RECV: libc::c_ulong = 32;

fn load_flags(s: &LinuxSeccomp) -> libc::c_ulong {
    let mut flags = 0;
    for f in s.flags().as_deref().unwrap_or_default() {
        flags |= match f {
            // The runtime is single-threaded when it loads the filter.
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => 0,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => FLAG_SPEC_ALLOW,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => FLAG_WAIT_KILLABLE_RECV,
        };
    }
    if uses_notify(s) {
        flags |= FLAG_NEW_LISTENER;
    }
    flags
}

/// Build the filter and load it into the kernel for the calling thread (and the
/// program it execs). Everything the caller does after this runs under the
/// filter. With SCMP_ACT_NOTIFY rules, returns the listener fd for the agent.
pub fn load(s: &LinuxSeccomp) -> Result<Option<std::os::fd::OwnedFd>, SeccompError> {
    use std::os::fd::FromRawFd;
    let cached = COMPILED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .filter(|c| c.profile == *s);
    let mut prog = match cached {
        Some(c) => c.program,
        None => program(s)?,
    };
    let fprog = libc::sock_fprog {
        len: u16::try_from(prog.len()).unwrap_or(u16::MAX),
        filter: prog.as_mut_ptr(),
    };
    let flags = load_flags(s);
    // SAFETY: seccomp(SECCOMP_SET_MODE_FILTER) reads the sock_fprog and the
    // program it points to, both alive for the duration of the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &fprog as *const libc::sock_fprog,
        )
    };
    if r < 0 {
        return Err(SeccompError::Load(nix::errno::Errno::last()));
    }
    if flags & FLAG_NEW_LISTENER != 0 {
        let fd = i32::try_from(r).map_err(|_| SeccompError::Load(nix::errno::Errno::EBADF))?;
        // SAFETY: with NEW_LISTENER seccomp returns a new fd that we own.
        return Ok(Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }));
    }
    Ok(None)
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
    fn notify_needs_a_listener_and_spares_write() {
        let p = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
        }));
        let e = validate(&p).unwrap_err();
        assert!(matches!(e, SeccompError::NotifyWithoutListener(_)), "{e}");
        assert!(e.to_string().contains("mkdir"), "{e}");
        let p = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": "/run/agent.sock",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
        }));
        validate(&p).unwrap();
        assert!(uses_notify(&p));
        assert_eq!(load_flags(&p) & FLAG_NEW_LISTENER, FLAG_NEW_LISTENER);
        let p = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": "/run/agent.sock",
            "syscalls": [{"names": ["write"], "action": "SCMP_ACT_NOTIFY"}]
        }));
        assert!(matches!(validate(&p), Err(SeccompError::NotifyWrite)));
        let p = profile(serde_json::json!({"defaultAction": "SCMP_ACT_NOTIFY"}));
        assert!(matches!(validate(&p), Err(SeccompError::NotifyDefault)));
    }

    #[test]
    fn enosys_stub_only_before_a_restrictive_default() {
        let p = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}]
        }));
        let stub = enosys_stub(&p);
        assert_eq!(stub.len(), 6);
        let write = i32::from(ScmpSyscall::from_name("write").unwrap()) as u32;
        let read = i32::from(ScmpSyscall::from_name("read").unwrap()) as u32;
        assert_eq!(stub[4].k, write.max(read));
        assert_eq!(stub[5].k, SECCOMP_RET_ERRNO | libc::ENOSYS as u32);
        let allow = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO"}]
        }));
        assert!(enosys_stub(&allow).is_empty());
        let enosys = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]
        }));
        assert!(enosys_stub(&enosys).is_empty());
        assert!(program(&p).unwrap().len() > 6);
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
        assert_eq!(compiled, to_bytes(&program(&p).unwrap()));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777,
            0o700
        );

        // The next validation reads the file instead of compiling: a program
        // put there (any valid one) is what it keeps for load.
        let other = to_bytes(
            &program(&profile(
                serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW"}),
            ))
            .unwrap(),
        );
        std::fs::write(&path, &other).unwrap();
        validate_in(&p, Some(&cache)).unwrap();
        let kept = COMPILED.lock().unwrap().clone().unwrap();
        assert_eq!(to_bytes(&kept.program), other);
        assert!(kept.profile == p);
        // A different profile is another entry.
        let q = profile(serde_json::json!({"defaultAction": "SCMP_ACT_LOG"}));
        validate_in(&q, Some(&cache)).unwrap();
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 2);
        // Garbage in the cache is compiled over.
        std::fs::write(&path, b"odd").unwrap();
        validate_in(&p, Some(&cache)).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), compiled);
    }

    #[test]
    fn the_cache_keeps_the_most_recently_used_programs() {
        use std::time::{Duration, SystemTime};
        let dir = tempfile::tempdir().unwrap();
        let at = |age_s: u64| SystemTime::now() - Duration::from_secs(age_s);
        let put = |name: &str, age_s: u64| {
            let path = dir.path().join(name);
            std::fs::write(&path, b"x").unwrap();
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(at(age_s))
                .unwrap();
        };
        put("a.bpf", 30);
        put("b.bpf", 10);
        put("c.bpf", 20);
        put(".123.tmp", 2 * 3600);
        put(".456.tmp", 5);
        prune(dir.path(), 2);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        // The oldest program goes, and the stale temporary file; a temporary
        // file being written now stays.
        assert_eq!(left, [".456.tmp", "b.bpf", "c.bpf"]);

        // A hit on an entry not used for a while marks it used again.
        let p = profile(serde_json::json!({"defaultAction": "SCMP_ACT_LOG"}));
        let path = dir.path().join("p.bpf");
        std::fs::write(&path, to_bytes(&program(&p).unwrap())).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(at(2 * 3600))
            .unwrap();
        assert!(read_cached(&path).is_some());
        let age = SystemTime::now()
            .duration_since(std::fs::metadata(&path).unwrap().modified().unwrap())
            .unwrap_or_default();
        assert!(age < Duration::from_secs(600), "{age:?}");
    }

    #[test]
    fn version_is_known() {
        let v = library_version().unwrap();
        assert!(v.major >= 2);
    }
}
