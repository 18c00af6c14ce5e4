//! The seccomp filter a container gets: Docker's default profile unless
//! `--privileged` or `--security-opt seccomp=unconfined`, or a profile the
//! client sends (`seccomp=<json>`: the docker CLI sends the file's content).
//!
//! Profiles are in Docker's format ([`Profile`]): syscall groups that apply only
//! with some capabilities (`includes.caps`), without them (`excludes.caps`), on
//! some architectures or from some kernel version on. [`resolve`] turns one into
//! the OCI `linux.seccomp` for a container's capabilities on this host.
//!
//! The default profile is built from [`DEFAULT`], berth's own table of what
//! Docker's default allows (the same syscalls, capability-dependent additions and
//! argument filters), with `SCMP_ACT_ERRNO(EPERM)` for everything else. Syscalls
//! newer than any the profile knows answer ENOSYS instead ([`NEWER_THAN_PROFILE`]),
//! as under Docker with runc, so that a C library falls back to an older call
//! rather than failing (clone3 → clone, fchmodat2 → fchmodat).
//!
//! Resolving happens at every create, so results are cached per distinct input
//! ([`ProfileCache`]); the runtime compiles what it is given.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use oci_spec::runtime::LinuxSeccomp;
use serde::{Deserialize, Serialize};

use super::SpecError;

/// A seccomp profile in Docker's JSON format (what `--security-opt seccomp=`
/// takes and what moby's profiles are written in).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub default_action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_errno_ret: Option<u32>,
    /// Architectures as the filter lists them (older profiles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architectures: Option<Vec<String>>,
    /// Native architecture → the ones its processes may also use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch_map: Option<Vec<ArchMap>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syscalls: Option<Vec<Syscall>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ArchMap {
    pub architecture: String,
    #[serde(default)]
    pub sub_architectures: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Syscall {
    /// The old spelling of a single-name entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Arg>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Filter::is_empty")]
    pub includes: Filter,
    #[serde(default, skip_serializing_if = "Filter::is_empty")]
    pub excludes: Filter,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Arg {
    pub index: u32,
    pub value: u64,
    #[serde(default)]
    pub value_two: u64,
    pub op: Op,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub enum Op {
    #[default]
    #[serde(rename = "SCMP_CMP_EQ")]
    Eq,
    #[serde(rename = "SCMP_CMP_NE")]
    Ne,
    #[serde(rename = "SCMP_CMP_LT")]
    Lt,
    #[serde(rename = "SCMP_CMP_LE")]
    Le,
    #[serde(rename = "SCMP_CMP_GT")]
    Gt,
    #[serde(rename = "SCMP_CMP_GE")]
    Ge,
    #[serde(rename = "SCMP_CMP_MASKED_EQ")]
    MaskedEq,
}

/// When an entry applies (`includes`) or does not (`excludes`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    /// Go's architecture names (`amd64`, `arm64`, `s390x`...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arches: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caps: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_kernel: Option<String>,
}

impl Filter {
    fn is_empty(&self) -> bool {
        self.arches.is_empty() && self.caps.is_empty() && self.min_kernel.is_none()
    }
}

/// What a container's filter depends on besides the profile.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// Go's name of this host's architecture (`amd64`, `arm64`...).
    pub arch: String,
    /// The running kernel's (major, minor).
    pub kernel: (u32, u32),
    /// The container's bounding capabilities, `CAP_*`, sorted.
    pub caps: Vec<String>,
}

impl Target {
    /// This host, with the given capabilities.
    pub fn host(caps: &[String]) -> Target {
        let mut caps: Vec<String> = caps.to_vec();
        caps.sort();
        caps.dedup();
        Target {
            arch: go_arch(std::env::consts::ARCH).to_string(),
            kernel: kernel_version(),
            caps,
        }
    }
}

/// Rust's architecture name → Go's, in which profiles name them.
pub fn go_arch(rust: &str) -> &str {
    match rust {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        "mips64" => "mips64le",
        other => other,
    }
}

/// The libseccomp names of a Go architecture and of those its processes may also
/// run as (a 64-bit x86 kernel runs 32-bit and x32 programs).
fn scmp_arches(go: &str) -> &'static [&'static str] {
    match go {
        "amd64" => &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "386" => &["SCMP_ARCH_X86"],
        "arm64" => &["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        "arm" => &["SCMP_ARCH_ARM"],
        "ppc64le" => &["SCMP_ARCH_PPC64LE"],
        "s390x" => &["SCMP_ARCH_S390X", "SCMP_ARCH_S390"],
        "riscv64" => &["SCMP_ARCH_RISCV64"],
        "mips64le" => &[
            "SCMP_ARCH_MIPSEL64",
            "SCMP_ARCH_MIPSEL",
            "SCMP_ARCH_MIPSEL64N32",
        ],
        _ => &[],
    }
}

/// The running kernel's version, (0, 0) if unknown (then no `minKernel` entry
/// applies, and no overlay `volatile` is asked for).
pub fn kernel_version() -> (u32, u32) {
    nix::sys::utsname::uname()
        .ok()
        .and_then(|u| parse_kernel(&u.release().to_string_lossy()))
        .unwrap_or((0, 0))
}

fn parse_kernel(s: &str) -> Option<(u32, u32)> {
    let mut it = s.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((major, minor))
}

// ---------------------------------------------------------------------------
// Docker's default profile, as a table of facts about which calls a container
// may make. Grouped by what the calls do, so a review can see what each group
// grants; `tests::default_profile_facts` pins the parts that matter most.
// ---------------------------------------------------------------------------

/// Files, directories, their metadata and extended attributes, and moving data
/// between descriptors.
const FILES: &[&str] = &[
    "access",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "close",
    "close_range",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futimesat",
    "getcwd",
    "getdents",
    "getdents64",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "name_to_handle_at",
    "newfstatat",
    "open",
    "openat",
    "openat2",
    "pread64",
    "preadv",
    "preadv2",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "rmdir",
    "sendfile",
    "sendfile64",
    "setxattr",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "tee",
    "truncate",
    "truncate64",
    "umask",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vmsplice",
    "write",
    "writev",
];

/// Waiting on descriptors, asynchronous I/O, pipes and event descriptors.
const EVENTS: &[&str] = &[
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "io_cancel",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "io_setup",
    "io_submit",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ioctl",
    "pipe",
    "pipe2",
    "poll",
    "ppoll",
    "ppoll_time64",
    "pselect6",
    "pselect6_time64",
    "select",
    "_newselect",
    "signalfd",
    "signalfd4",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
];

/// Processes: creating (without namespaces: see the clone rules), running,
/// waiting for and signalling them, their identity, limits and scheduling.
const PROCESSES: &[&str] = &[
    "capget",
    "capset",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "fork",
    "futex",
    "futex_time64",
    "futex_waitv",
    "get_robust_list",
    "get_thread_area",
    "getcpu",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "getrusage",
    "getsid",
    "gettid",
    "getuid",
    "getuid32",
    "ioprio_get",
    "ioprio_set",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "membarrier",
    "pidfd_open",
    "pidfd_send_signal",
    "prctl",
    "prlimit64",
    "process_mrelease",
    "restart_syscall",
    "rseq",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "set_robust_list",
    "set_thread_area",
    "set_tid_address",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "setsid",
    "setuid",
    "setuid32",
    "sysinfo",
    "tgkill",
    "times",
    "tkill",
    "ugetrlimit",
    "uname",
    "vfork",
    "wait4",
    "waitid",
    "waitpid",
];

/// Signal handling.
const SIGNALS: &[&str] = &[
    "pause",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sigaltstack",
    "sigprocmask",
    "sigreturn",
];

/// The process's own memory.
const MEMORY: &[&str] = &[
    "brk",
    "madvise",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mremap",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "remap_file_pages",
];

/// Clocks and timers (reading them; setting the clock needs CAP_SYS_TIME).
const TIME: &[&str] = &[
    "adjtimex",
    "alarm",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "getitimer",
    "gettimeofday",
    "nanosleep",
    "setitimer",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
];

/// Sockets, once made (making one is filtered by family: see [`DEFAULT`]).
const NETWORK: &[&str] = &[
    "accept",
    "accept4",
    "bind",
    "connect",
    "getpeername",
    "getsockname",
    "getsockopt",
    "listen",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "send",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setsockopt",
    "shutdown",
    "socketcall",
    "socketpair",
];

/// System V and POSIX message queues, semaphores and shared memory (in the
/// container's own IPC namespace).
const IPC: &[&str] = &[
    "ipc",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
];

/// Calls newer than every call the default profile names. They are not allowed,
/// but answer ENOSYS, as they do under Docker (runc makes every call numbered
/// above the profile's highest answer ENOSYS): C libraries probe for them and
/// fall back to older calls on ENOSYS only.
pub const NEWER_THAN_PROFILE: &[&str] = &[
    "cachestat",
    "fchmodat2",
    "map_shadow_stack",
    "futex_wake",
    "futex_wait",
    "futex_requeue",
    "statmount",
    "listmount",
    "lsm_get_self_attr",
    "lsm_set_self_attr",
    "lsm_list_modules",
    "mseal",
    "setxattrat",
    "getxattrat",
    "listxattrat",
    "removexattrat",
    "open_tree_attr",
    "file_getattr",
    "file_setattr",
];

/// The namespace flags of clone(2) (CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC,
/// NEWUSER, NEWPID, NEWNET): without CAP_SYS_ADMIN a container may clone only
/// with none of them.
pub const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

/// The personality(2) values a container may set: Linux (0), Linux with
/// UNAME26 (0x8), with ADDR_NO_RANDOMIZE (0x20000), both (0x20008), and the
/// query (0xffffffff).
pub const PERSONALITIES: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// AF_VSOCK: the one socket family a container may not open (it reaches the
/// hypervisor's host).
pub const AF_VSOCK: u64 = 40;

/// One row of the default table.
struct Row {
    names: &'static [&'static str],
    errno: Option<u32>,
    args: &'static [Arg],
    /// Applies only with one of these capabilities.
    with_caps: &'static [&'static str],
    /// Applies only without any of these capabilities.
    without_caps: &'static [&'static str],
    /// Applies only on these architectures (Go names).
    arches: &'static [&'static str],
    /// Does not apply on these.
    not_arches: &'static [&'static str],
}

const fn allow(names: &'static [&'static str]) -> Row {
    Row {
        names,
        errno: None,
        args: &[],
        with_caps: &[],
        without_caps: &[],
        arches: &[],
        not_arches: &[],
    }
}

const fn with_cap(cap: &'static [&'static str], names: &'static [&'static str]) -> Row {
    Row {
        with_caps: cap,
        ..allow(names)
    }
}

const fn on(arches: &'static [&'static str], names: &'static [&'static str]) -> Row {
    Row {
        arches,
        ..allow(names)
    }
}

const fn arg(index: u32, op: Op, value: u64) -> Arg {
    Arg {
        index,
        value,
        value_two: 0,
        op,
    }
}

const fn personality(value: &'static [Arg]) -> Row {
    Row {
        args: value,
        ..allow(&["personality"])
    }
}

const PERSONALITY_ARGS: [[Arg; 1]; 5] = [
    [arg(0, Op::Eq, PERSONALITIES[0])],
    [arg(0, Op::Eq, PERSONALITIES[1])],
    [arg(0, Op::Eq, PERSONALITIES[2])],
    [arg(0, Op::Eq, PERSONALITIES[3])],
    [arg(0, Op::Eq, PERSONALITIES[4])],
];

/// Docker's default: [`FILES`] ... [`IPC`] for everyone, and these.
const DEFAULT: &[Row] = &[
    allow(FILES),
    allow(EVENTS),
    allow(PROCESSES),
    allow(SIGNALS),
    allow(MEMORY),
    allow(TIME),
    allow(NETWORK),
    allow(IPC),
    // Newer moby profiles also allow ptrace and process_vm_{readv,writev} to
    // everyone on kernels from 4.8 (`includes.minKernel`); dockerd 20.10, the
    // reference here, keeps them behind CAP_SYS_PTRACE, and so does berth.
    Row {
        args: &[arg(0, Op::Ne, AF_VSOCK)],
        ..allow(&["socket"])
    },
    personality(&PERSONALITY_ARGS[0]),
    personality(&PERSONALITY_ARGS[1]),
    personality(&PERSONALITY_ARGS[2]),
    personality(&PERSONALITY_ARGS[3]),
    personality(&PERSONALITY_ARGS[4]),
    on(&["ppc64le"], &["sync_file_range2", "swapcontext"]),
    on(
        &["arm", "arm64"],
        &[
            "arm_fadvise64_64",
            "arm_sync_file_range",
            "sync_file_range2",
            "breakpoint",
            "cacheflush",
            "set_tls",
        ],
    ),
    on(&["amd64", "x32"], &["arch_prctl"]),
    on(&["amd64", "x32", "386"], &["modify_ldt"]),
    on(
        &["s390", "s390x"],
        &[
            "s390_pci_mmio_read",
            "s390_pci_mmio_write",
            "s390_runtime_instr",
        ],
    ),
    on(&["riscv64"], &["riscv_flush_icache"]),
    with_cap(&["CAP_DAC_READ_SEARCH"], &["open_by_handle_at"]),
    // Namespaces, mounts and the kernel's global knobs.
    with_cap(
        &["CAP_SYS_ADMIN"],
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    // Without CAP_SYS_ADMIN: clone without namespace flags (the flags are the
    // second argument on s390), and clone3 answers ENOSYS, since its flags are
    // in memory a filter cannot read: C libraries then fall back to clone.
    Row {
        args: &[Arg {
            index: 0,
            value: CLONE_NAMESPACE_FLAGS,
            value_two: 0,
            op: Op::MaskedEq,
        }],
        without_caps: &["CAP_SYS_ADMIN"],
        not_arches: &["s390", "s390x"],
        ..allow(&["clone"])
    },
    Row {
        args: &[Arg {
            index: 1,
            value: CLONE_NAMESPACE_FLAGS,
            value_two: 0,
            op: Op::MaskedEq,
        }],
        without_caps: &["CAP_SYS_ADMIN"],
        arches: &["s390", "s390x"],
        ..allow(&["clone"])
    },
    Row {
        errno: Some(libc::ENOSYS as u32),
        without_caps: &["CAP_SYS_ADMIN"],
        ..allow(&["clone3"])
    },
    with_cap(&["CAP_SYS_BOOT"], &["reboot"]),
    with_cap(&["CAP_SYS_CHROOT"], &["chroot"]),
    with_cap(
        &["CAP_SYS_MODULE"],
        &["delete_module", "init_module", "finit_module"],
    ),
    with_cap(&["CAP_SYS_PACCT"], &["acct"]),
    with_cap(
        &["CAP_SYS_PTRACE"],
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ),
    with_cap(&["CAP_SYS_RAWIO"], &["iopl", "ioperm"]),
    with_cap(
        &["CAP_SYS_TIME"],
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    with_cap(&["CAP_SYS_TTY_CONFIG"], &["vhangup"]),
    with_cap(
        &["CAP_SYS_NICE"],
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    with_cap(&["CAP_SYSLOG"], &["syslog"]),
    with_cap(&["CAP_BPF"], &["bpf"]),
    with_cap(&["CAP_PERFMON"], &["perf_event_open"]),
    Row {
        errno: Some(libc::ENOSYS as u32),
        ..allow(NEWER_THAN_PROFILE)
    },
];

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Docker's default profile, in Docker's format.
pub fn default_profile() -> Profile {
    let arch_map = ["amd64", "arm64", "s390x", "ppc64le", "riscv64", "mips64le"]
        .into_iter()
        .map(|go| {
            let all = scmp_arches(go);
            ArchMap {
                architecture: all[0].to_string(),
                sub_architectures: Some(strings(&all[1..])),
            }
        })
        .collect();
    let syscalls = DEFAULT
        .iter()
        .map(|r| Syscall {
            names: strings(r.names),
            action: if r.errno.is_some() {
                "SCMP_ACT_ERRNO".to_string()
            } else {
                "SCMP_ACT_ALLOW".to_string()
            },
            errno_ret: r.errno,
            args: r.args.to_vec(),
            includes: Filter {
                arches: strings(r.arches),
                caps: strings(r.with_caps),
                min_kernel: None,
            },
            excludes: Filter {
                arches: strings(r.not_arches),
                caps: strings(r.without_caps),
                min_kernel: None,
            },
            ..Default::default()
        })
        .collect();
    Profile {
        default_action: "SCMP_ACT_ERRNO".to_string(),
        default_errno_ret: Some(libc::EPERM as u32),
        arch_map: Some(arch_map),
        syscalls: Some(syscalls),
        ..Default::default()
    }
}

fn invalid(msg: impl Into<String>) -> SpecError {
    SpecError::Invalid(msg.into())
}

/// Parse a profile the client sent (`--security-opt seccomp=<json>`).
pub fn parse(json: &str) -> Result<Profile, SpecError> {
    let p: Profile = serde_json::from_str(json)
        .map_err(|e| invalid(format!("Decoding seccomp profile failed: {e}")))?;
    if p.default_action.is_empty() {
        return Err(invalid(
            "Decoding seccomp profile failed: defaultAction is required",
        ));
    }
    if p.architectures.is_some() && p.arch_map.is_some() {
        return Err(invalid(
            "'architectures' and 'archMap' were specified in the seccomp profile, use either 'architectures' or 'archMap'",
        ));
    }
    if p.listener_path.as_deref().is_some_and(|l| !l.is_empty()) {
        return Err(SpecError::Unsupported(
            "seccomp listenerPath (SCMP_ACT_NOTIFY agents) is not supported by berth".into(),
        ));
    }
    for s in p.syscalls.as_deref().unwrap_or_default() {
        if s.name.is_some() && !s.names.is_empty() {
            return Err(invalid(
                "use either 'name' or 'names' in a seccomp syscall entry, not both",
            ));
        }
    }
    Ok(p)
}

fn applies(f: &Filter, t: &Target, include: bool) -> bool {
    let has_cap = |c: &String| t.caps.iter().any(|x| x == c);
    if include {
        (f.arches.is_empty() || f.arches.contains(&t.arch))
            && (f.caps.is_empty() || f.caps.iter().any(has_cap))
            && f.min_kernel
                .as_deref()
                .is_none_or(|k| parse_kernel(k).is_some_and(|k| t.kernel >= k))
    } else {
        !(f.arches.contains(&t.arch) || f.caps.iter().any(has_cap))
    }
}

/// The OCI `linux.seccomp` for a container: entries whose conditions do not
/// hold for `t` are left out; architectures come from `archMap`'s entry for
/// the host (or `architectures` as given).
pub fn resolve(p: &Profile, t: &Target) -> Result<LinuxSeccomp, SpecError> {
    let architectures: Vec<String> = match (&p.architectures, &p.arch_map) {
        (Some(a), _) => a.clone(),
        (None, Some(map)) => {
            let native = scmp_arches(&t.arch).first().copied().unwrap_or("");
            map.iter()
                .find(|m| m.architecture == native)
                .map(|m| {
                    let mut v = vec![m.architecture.clone()];
                    v.extend(m.sub_architectures.clone().unwrap_or_default());
                    v
                })
                .unwrap_or_default()
        }
        (None, None) => vec![],
    };
    let mut syscalls = vec![];
    for s in p.syscalls.as_deref().unwrap_or_default() {
        if !applies(&s.includes, t, true) || !applies(&s.excludes, t, false) {
            continue;
        }
        let names: Vec<String> = match &s.name {
            Some(n) => vec![n.clone()],
            None => s.names.clone(),
        };
        if names.is_empty() {
            continue;
        }
        let mut entry = serde_json::json!({
            "names": names,
            "action": s.action,
        });
        if let Some(e) = s.errno_ret {
            entry["errnoRet"] = e.into();
        }
        if !s.args.is_empty() {
            entry["args"] = serde_json::to_value(&s.args)
                .map_err(|e| invalid(format!("seccomp profile: {e}")))?;
        }
        syscalls.push(entry);
    }
    let mut v = serde_json::json!({
        "defaultAction": p.default_action,
        "architectures": architectures,
        "syscalls": syscalls,
    });
    if let Some(e) = p.default_errno_ret {
        v["defaultErrnoRet"] = e.into();
    }
    if let Some(f) = &p.flags {
        v["flags"] = serde_json::to_value(f).map_err(|e| invalid(format!("{e}")))?;
    }
    serde_json::from_value(v).map_err(|e| invalid(format!("invalid seccomp profile: {e}")))
}

/// Resolved filters, kept per (profile, target): a daemon starts many
/// containers with the same few, and each is resolved once.
#[derive(Debug, Default)]
pub struct ProfileCache {
    default: Mutex<HashMap<Target, Arc<LinuxSeccomp>>>,
    custom: Mutex<HashMap<(String, Target), Arc<LinuxSeccomp>>>,
}

/// Distinct inputs kept at most; a daemon fed ever-new profiles forgets them.
const CACHE_MAX: usize = 64;

impl ProfileCache {
    /// The default profile for `t`.
    pub fn default_for(&self, t: &Target) -> Result<Arc<LinuxSeccomp>, SpecError> {
        let mut map = self.default.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = map.get(t) {
            return Ok(s.clone());
        }
        let s = Arc::new(resolve(&default_profile(), t)?);
        if map.len() >= CACHE_MAX {
            map.clear();
        }
        map.insert(t.clone(), s.clone());
        Ok(s)
    }

    /// A client's profile (its JSON text) for `t`.
    pub fn custom_for(&self, json: &str, t: &Target) -> Result<Arc<LinuxSeccomp>, SpecError> {
        let key = (json.to_string(), t.clone());
        let mut map = self.custom.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = map.get(&key) {
            return Ok(s.clone());
        }
        let s = Arc::new(resolve(&parse(json)?, t)?);
        if map.len() >= CACHE_MAX {
            map.clear();
        }
        map.insert(key, s.clone());
        Ok(s)
    }
}

/// The process-wide cache [`super::build_spec`] uses.
pub fn cache() -> &'static ProfileCache {
    static CACHE: std::sync::OnceLock<ProfileCache> = std::sync::OnceLock::new();
    CACHE.get_or_init(ProfileCache::default)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxSeccompAction, LinuxSeccompOperator};

    fn target(caps: &[&str]) -> Target {
        Target {
            arch: "amd64".into(),
            kernel: (6, 1),
            caps: strings(caps),
        }
    }

    const DOCKER_CAPS: &[&str] = &[
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    ];

    /// The allowed names (unconditionally, without argument filters).
    fn allowed(s: &LinuxSeccomp) -> Vec<String> {
        s.syscalls()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter(|c| c.action() == LinuxSeccompAction::ScmpActAllow && c.args().is_none())
            .flat_map(|c| c.names().clone())
            .collect()
    }

    fn rules_for<'a>(s: &'a LinuxSeccomp, name: &str) -> Vec<&'a oci_spec::runtime::LinuxSyscall> {
        s.syscalls()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter(|c| c.names().iter().any(|n| n == name))
            .collect()
    }

    #[test]
    fn default_profile_facts() {
        let s = resolve(&default_profile(), &target(DOCKER_CAPS)).unwrap();
        assert_eq!(s.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(s.default_errno_ret(), Some(1));
        let arches: Vec<String> = s
            .architectures()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(
            arches,
            ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
        );
        let ok = allowed(&s);
        for call in ["read", "openat", "execve", "chroot", "arch_prctl"] {
            assert!(ok.iter().any(|n| n == call), "{call} must be allowed");
        }
        // What the issue's attacker used, and the rest of the classics.
        for call in [
            "unshare",
            "mount",
            "keyctl",
            "add_key",
            "request_key",
            "perf_event_open",
            "kcmp",
            "bpf",
            "setns",
            "reboot",
            "init_module",
            "open_by_handle_at",
            "userfaultfd",
            "swapon",
            "kexec_load",
            "clock_settime",
            "pidfd_getfd",
            "ptrace",
            "process_vm_readv",
        ] {
            assert!(
                rules_for(&s, call).is_empty(),
                "{call} must fall to the EPERM default"
            );
        }
        // Namespaced clone is filtered by its flags; clone3 answers ENOSYS.
        let clone = rules_for(&s, "clone");
        assert_eq!(clone.len(), 1);
        let a = &clone[0].args().clone().unwrap()[0];
        assert_eq!(a.index(), 0);
        assert_eq!(a.value(), CLONE_NAMESPACE_FLAGS);
        assert_eq!(a.op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
        let clone3 = rules_for(&s, "clone3");
        assert_eq!(clone3[0].action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(clone3[0].errno_ret(), Some(libc::ENOSYS as u32));
        // personality: five values, one rule each.
        let p = rules_for(&s, "personality");
        let mut values: Vec<u64> = p
            .iter()
            .map(|r| r.args().clone().unwrap()[0].value())
            .collect();
        values.sort();
        assert_eq!(values, PERSONALITIES);
        // socket: every family but AF_VSOCK.
        let sock = rules_for(&s, "socket");
        let a = &sock[0].args().clone().unwrap()[0];
        assert_eq!((a.value(), a.op()), (40, LinuxSeccompOperator::ScmpCmpNe));
        for call in NEWER_THAN_PROFILE {
            let r = rules_for(&s, call);
            assert_eq!(r.len(), 1, "{call}");
            assert_eq!(r[0].errno_ret(), Some(libc::ENOSYS as u32));
        }
        // The size of Docker's allow list, to notice a name lost in an edit.
        let mut all: Vec<&str> = [
            FILES, EVENTS, PROCESSES, SIGNALS, MEMORY, TIME, NETWORK, IPC,
        ]
        .concat();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n, "a name is listed twice");
        assert_eq!(n, 349);
    }

    #[test]
    fn capabilities_add_calls() {
        let mut caps = DOCKER_CAPS.to_vec();
        caps.push("CAP_SYS_ADMIN");
        caps.push("CAP_SYS_PTRACE");
        let s = resolve(&default_profile(), &target(&caps)).unwrap();
        let ok = allowed(&s);
        for call in [
            "mount", "unshare", "setns", "clone", "clone3", "kcmp", "bpf",
        ] {
            assert!(ok.iter().any(|n| n == call), "{call}");
        }
        assert!(rules_for(&s, "clone").iter().all(|r| r.args().is_none()));
        assert!(rules_for(&s, "clone3")
            .iter()
            .all(|r| r.action() == LinuxSeccompAction::ScmpActAllow));
        let no_chroot: Vec<&str> = DOCKER_CAPS
            .iter()
            .copied()
            .filter(|c| *c != "CAP_SYS_CHROOT")
            .collect();
        let s = resolve(&default_profile(), &target(&no_chroot)).unwrap();
        assert!(rules_for(&s, "chroot").is_empty());
    }

    #[test]
    fn arches_and_kernels() {
        let mut t = target(DOCKER_CAPS);
        t.arch = "arm64".into();
        t.kernel = (4, 4);
        let s = resolve(&default_profile(), &t).unwrap();
        let ok = allowed(&s);
        assert!(ok.iter().any(|n| n == "set_tls"));
        assert!(!ok.iter().any(|n| n == "arch_prctl"));
        let arches: Vec<String> = s
            .architectures()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(arches, ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]);
        t.arch = "s390x".into();
        let s = resolve(&default_profile(), &t).unwrap();
        assert_eq!(
            rules_for(&s, "clone")[0].args().clone().unwrap()[0].index(),
            1
        );
        assert_eq!(parse_kernel("6.18.44-fc-v1098"), Some((6, 18)));
        assert_eq!(parse_kernel("5.10"), Some((5, 10)));
        // The comparisons the overlay `volatile` check makes (manager_labels).
        assert!(parse_kernel("5.10.0-28-amd64") >= Some((5, 10)));
        assert!(parse_kernel("6.1.0-18-amd64") >= Some((5, 10)));
        assert!(parse_kernel("5.4.0-150-generic") < Some((5, 10)));
        assert!(parse_kernel("4.19.0") < Some((5, 10)));
        assert_eq!(parse_kernel(""), None);

        // minKernel in a client's profile.
        let p = parse(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}}]}"#,
        )
        .unwrap();
        assert_eq!(rules_for(&resolve(&p, &t).unwrap(), "ptrace").len(), 0);
        t.kernel = (6, 1);
        assert_eq!(rules_for(&resolve(&p, &t).unwrap(), "ptrace").len(), 1);
    }

    #[test]
    fn custom_profiles_in_dockers_format() {
        let json = r#"{
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                {"name": "chmod", "action": "SCMP_ACT_ERRNO"},
                {"names": ["mount"], "action": "SCMP_ACT_ERRNO", "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["uname"], "action": "SCMP_ACT_ERRNO", "includes": {"arches": ["arm64"]}},
                {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 16, "op": "SCMP_CMP_EQ"}], "comment": "no netlink"}
            ]
        }"#;
        let s = resolve(&parse(json).unwrap(), &target(DOCKER_CAPS)).unwrap();
        assert_eq!(s.default_action(), LinuxSeccompAction::ScmpActAllow);
        assert_eq!(rules_for(&s, "mkdirat")[0].errno_ret(), Some(13));
        assert_eq!(rules_for(&s, "chmod").len(), 1);
        assert_eq!(rules_for(&s, "mount").len(), 1);
        assert!(rules_for(&s, "uname").is_empty());
        assert_eq!(
            rules_for(&s, "socket")[0].args().clone().unwrap()[0].value(),
            16
        );

        // The default profile round-trips through Docker's format.
        let text = serde_json::to_string(&default_profile()).unwrap();
        let again = resolve(&parse(&text).unwrap(), &target(DOCKER_CAPS)).unwrap();
        assert_eq!(
            again,
            resolve(&default_profile(), &target(DOCKER_CAPS)).unwrap()
        );

        for bad in [
            "not json",
            "{}",
            r#"{"defaultAction": "SCMP_ACT_NOPE"}"#,
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": [], "archMap": []}"#,
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}]}]}"#,
        ] {
            let r = parse(bad).and_then(|p| resolve(&p, &target(&[])));
            assert!(matches!(r, Err(SpecError::Invalid(_))), "{bad}: {r:?}");
        }
        assert!(matches!(
            parse(r#"{"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock"}"#),
            Err(SpecError::Unsupported(_))
        ));
    }

    #[test]
    fn the_cache_hands_back_the_same_filter() {
        let c = ProfileCache::default();
        let t = target(DOCKER_CAPS);
        let a = c.default_for(&t).unwrap();
        let b = c.default_for(&t).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let other = c.default_for(&target(&["CAP_SYS_ADMIN"])).unwrap();
        assert!(!Arc::ptr_eq(&a, &other));
        let j = r#"{"defaultAction": "SCMP_ACT_ALLOW"}"#;
        assert!(Arc::ptr_eq(
            &c.custom_for(j, &t).unwrap(),
            &c.custom_for(j, &t).unwrap()
        ));
    }
}
