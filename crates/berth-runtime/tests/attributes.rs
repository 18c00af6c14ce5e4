//! Process attributes against the real kernel: capabilities, uid/gid/groups,
//! no_new_privs, oom_score_adj, rlimits and seccomp.
//!
//! Each change is made in a forked child, never in the test process: the child
//! does its syscalls, reports through a pipe and leaves with `_exit`, and the
//! parent kills and reaps it if anything goes wrong. These tests need root.

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::os::fd::OwnedFd;
use std::panic::{catch_unwind, AssertUnwindSafe};

use berth_runtime::{capabilities, identity, rlimits, seccomp};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe2, ForkResult, Pid};
use oci_spec::runtime::{
    Capabilities, Capability, LinuxCapabilities, LinuxSeccomp, PosixRlimitBuilder, PosixRlimitType,
    User, UserBuilder,
};

/// Kills and reaps the forked child unless it was reaped already.
struct Forked(Option<Pid>);

impl Drop for Forked {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
    }
}

fn write_all(fd: &OwnedFd, mut data: &[u8]) {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

/// Run `f` in a forked child and return what it reported.
fn in_child(f: impl FnOnce() -> Result<String, String>) -> Result<String, String> {
    let (rd, wr) = pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    // SAFETY: the child runs only `f` (syscalls and small allocations, which
    // glibc's malloc keeps fork-safe) and then leaves with _exit, never returning
    // into the test harness.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            drop(rd);
            let report = match catch_unwind(AssertUnwindSafe(f)) {
                Ok(Ok(s)) => format!("OK\n{s}"),
                Ok(Err(e)) => format!("ERR\n{e}"),
                Err(_) => "ERR\npanicked".to_string(),
            };
            write_all(&wr, report.as_bytes());
            // SAFETY: _exit ends the child without running the parent's
            // destructors or atexit handlers.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            let mut guard = Forked(Some(child));
            drop(wr);
            let mut out = String::new();
            std::fs::File::from(rd).read_to_string(&mut out).unwrap();
            let status = waitpid(child, None).unwrap();
            guard.0 = None;
            assert!(
                matches!(status, WaitStatus::Exited(_, 0)),
                "child ended with {status:?}, report {out:?}"
            );
            match out.split_once('\n') {
                Some(("OK", rest)) => Ok(rest.to_string()),
                Some(("ERR", rest)) => Err(rest.to_string()),
                _ => panic!("child sent no report: {out:?}"),
            }
        }
    }
}

fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn proc_status() -> Result<String, String> {
    std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())
}

fn caps_of(list: &[Capability]) -> Capabilities {
    list.iter().copied().collect()
}

fn all_sets(list: &[Capability]) -> LinuxCapabilities {
    sets(Some(list), Some(list), Some(list), Some(list), Some(list))
}

/// Capabilities with exactly these lists (None: the list is absent). Built
/// field by field: the builder would fill absent lists from
/// LinuxCapabilities::default(), which is not empty.
fn sets(
    bounding: Option<&[Capability]>,
    effective: Option<&[Capability]>,
    permitted: Option<&[Capability]>,
    inheritable: Option<&[Capability]>,
    ambient: Option<&[Capability]>,
) -> LinuxCapabilities {
    let mut c = LinuxCapabilities::default();
    c.set_bounding(bounding.map(caps_of));
    c.set_effective(effective.map(caps_of));
    c.set_permitted(permitted.map(caps_of));
    c.set_inheritable(inheritable.map(caps_of));
    c.set_ambient(ambient.map(caps_of));
    c
}

fn user(uid: u32, gid: u32, additional: &[u32]) -> User {
    let mut b = UserBuilder::default().uid(uid).gid(gid);
    if !additional.is_empty() {
        b = b.additional_gids(additional.to_vec());
    }
    b.build().unwrap()
}

const NET_BIND_SERVICE_MASK: &str = "0000000000000400";

#[test]
fn non_root_user_keeps_exactly_the_listed_capabilities() {
    berth_testutil::require_root!();
    let caps = all_sets(&[Capability::NetBindService]);
    let report = in_child(|| {
        capabilities::drop_bounding(&caps).map_err(|e| e.to_string())?;
        identity::set_identity(&user(1000, 1000, &[1001, 1002])).map_err(|e| e.to_string())?;
        capabilities::apply(&caps).map_err(|e| e.to_string())?;
        let keepcaps = nix::sys::prctl::get_keepcaps().map_err(|e| e.to_string())?;
        Ok(format!("keepcaps={keepcaps}\n{}", proc_status()?))
    })
    .unwrap();
    assert!(report.starts_with("keepcaps=false"), "{report}");
    assert_eq!(status_field(&report, "Uid"), "1000 1000 1000 1000");
    assert_eq!(status_field(&report, "Gid"), "1000 1000 1000 1000");
    assert_eq!(status_field(&report, "Groups"), "1001 1002");
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(status_field(&report, set), NET_BIND_SERVICE_MASK, "{set}");
    }
}

#[test]
fn absent_lists_mean_no_capabilities() {
    berth_testutil::require_root!();
    let none = sets(None, None, None, None, None);
    let report = in_child(|| {
        capabilities::drop_bounding(&none).map_err(|e| e.to_string())?;
        identity::set_identity(&user(1000, 1000, &[])).map_err(|e| e.to_string())?;
        capabilities::apply(&none).map_err(|e| e.to_string())?;
        proc_status()
    })
    .unwrap();
    assert_eq!(status_field(&report, "Groups"), "");
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(status_field(&report, set), "0000000000000000", "{set}");
    }
}

#[test]
fn root_with_a_few_capabilities() {
    berth_testutil::require_root!();
    // Docker's shape: effective = permitted = bounding, no inheritable or ambient.
    let list = [
        Capability::Chown,
        Capability::Kill,
        Capability::NetBindService,
    ];
    let caps = sets(Some(&list), Some(&list), Some(&list), None, None);
    let report = in_child(|| {
        capabilities::drop_bounding(&caps).map_err(|e| e.to_string())?;
        identity::set_identity(&user(0, 0, &[])).map_err(|e| e.to_string())?;
        capabilities::apply(&caps).map_err(|e| e.to_string())?;
        proc_status()
    })
    .unwrap();
    // CHOWN (0), KILL (5), NET_BIND_SERVICE (10).
    let mask = format!("{:016x}", 1u64 | 1 << 5 | 1 << 10);
    assert_eq!(status_field(&report, "CapEff"), mask);
    assert_eq!(status_field(&report, "CapPrm"), mask);
    assert_eq!(status_field(&report, "CapBnd"), mask);
    assert_eq!(status_field(&report, "CapInh"), "0000000000000000");
    assert_eq!(status_field(&report, "CapAmb"), "0000000000000000");
    assert_eq!(status_field(&report, "Uid"), "0 0 0 0");
}

#[test]
fn effective_outside_permitted_is_refused() {
    berth_testutil::require_root!();
    let caps = sets(
        None,
        Some(&[Capability::Kill]),
        Some(&[Capability::Chown]),
        None,
        None,
    );
    let err = in_child(|| {
        capabilities::apply(&caps)
            .map(|_| String::new())
            .map_err(|e| e.to_string())
    })
    .unwrap_err();
    assert!(err.contains("CAP_KILL"), "{err}");
}

#[test]
fn setgroups_denied_in_a_user_namespace_is_skipped_when_nothing_is_asked() {
    berth_testutil::require_root!();
    let report = in_child(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER).map_err(|e| e.to_string())?;
        for (file, data) in [
            ("/proc/self/setgroups", "deny"),
            ("/proc/self/gid_map", "0 0 1"),
            ("/proc/self/uid_map", "0 0 1"),
        ] {
            std::fs::write(file, data).map_err(|e| format!("write {file}: {e}"))?;
        }
        let asked = identity::set_identity(&user(0, 0, &[0]));
        let plain = identity::set_identity(&user(0, 0, &[]));
        Ok(format!(
            "asked={}\nplain={}",
            asked
                .map(|_| "ok".to_string())
                .unwrap_or_else(|e| e.to_string()),
            plain
                .map(|_| "ok".to_string())
                .unwrap_or_else(|e| e.to_string()),
        ))
    })
    .unwrap();
    assert!(report.contains("plain=ok"), "{report}");
    assert!(report.contains("asked=additional gids [0]"), "{report}");
}

#[test]
fn no_new_privs_and_oom_score_adj() {
    berth_testutil::require_root!();
    let report = in_child(|| {
        identity::set_no_new_privs().map_err(|e| e.to_string())?;
        identity::set_oom_score_adj(123).map_err(|e| e.to_string())?;
        let adj = std::fs::read_to_string("/proc/self/oom_score_adj").map_err(|e| e.to_string())?;
        Ok(format!("adj={}\n{}", adj.trim(), proc_status()?))
    })
    .unwrap();
    assert!(report.starts_with("adj=123\n"), "{report}");
    assert_eq!(status_field(&report, "NoNewPrivs"), "1");
}

#[test]
fn umask_is_set() {
    berth_testutil::require_root!();
    let report = in_child(|| {
        let u = UserBuilder::default()
            .umask(0o027u32)
            .build()
            .map_err(|e| e.to_string())?;
        identity::set_umask(&u).map_err(|e| e.to_string())?;
        proc_status()
    })
    .unwrap();
    assert_eq!(status_field(&report, "Umask"), "0027");
}

#[test]
fn rlimits_are_applied() {
    berth_testutil::require_root!();
    let list = vec![
        PosixRlimitBuilder::default()
            .typ(PosixRlimitType::RlimitNofile)
            .soft(64u64)
            .hard(128u64)
            .build()
            .unwrap(),
        PosixRlimitBuilder::default()
            .typ(PosixRlimitType::RlimitCore)
            .soft(0u64)
            .hard(u64::MAX)
            .build()
            .unwrap(),
    ];
    let report = in_child(|| {
        rlimits::apply(&list).map_err(|e| e.to_string())?;
        let nofile = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map_err(|e| e.to_string())?;
        let core = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_CORE)
            .map_err(|e| e.to_string())?;
        Ok(format!("{nofile:?} {core:?}"))
    })
    .unwrap();
    assert_eq!(report, format!("(64, 128) (0, {})", u64::MAX));
}

fn profile(json: serde_json::Value) -> LinuxSeccomp {
    serde_json::from_value(json).unwrap()
}

/// errno of `mkdir(path)`, or 0 when it succeeded (the directory is removed again).
fn mkdir_errno(path: &std::path::Path) -> i32 {
    match std::fs::create_dir(path) {
        Ok(()) => {
            let _ = std::fs::remove_dir(path);
            0
        }
        Err(e) => e.raw_os_error().unwrap_or(-1),
    }
}

#[test]
fn seccomp_profile_makes_mkdir_fail_with_eperm() {
    berth_testutil::require_root!();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("berth-test-mkdir");
    let p = profile(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]
    }));
    seccomp::validate(&p).unwrap();
    let report = in_child(|| {
        let before = mkdir_errno(&target);
        seccomp::load(&p).map_err(|e| e.to_string())?;
        let after = mkdir_errno(&target);
        Ok(format!("{before} {after}"))
    })
    .unwrap();
    assert_eq!(report, format!("0 {}", libc::EPERM));
    assert!(!target.exists());
    // The test process itself is untouched.
    assert_eq!(mkdir_errno(&target), 0);
}

/// Syscalls a Rust program needs to run a little and exit, plus common ones; an
/// allow-list in the style of Docker's default profile, not a copy of it.
const ALLOWED: &[&str] = &[
    "read",
    "write",
    "readv",
    "writev",
    "pread64",
    "pwrite64",
    "close",
    "close_range",
    "openat",
    "open",
    "fstat",
    "newfstatat",
    "statx",
    "lseek",
    "_llseek",
    "mmap",
    "mmap2",
    "munmap",
    "mprotect",
    "mremap",
    "madvise",
    "brk",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "sigaltstack",
    "futex",
    "futex_time64",
    "getpid",
    "gettid",
    "getppid",
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "getuid32",
    "geteuid32",
    "getgid32",
    "getegid32",
    "exit",
    "exit_group",
    "sched_yield",
    "sched_getaffinity",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "nanosleep",
    "poll",
    "ppoll",
    "getrandom",
    "fcntl",
    "fcntl64",
    "dup",
    "dup2",
    "dup3",
    "pipe",
    "pipe2",
    "ioctl",
    "uname",
    "prctl",
    "getcwd",
    "chdir",
    "fchdir",
    "access",
    "faccessat",
    "faccessat2",
    "readlink",
    "readlinkat",
    "getdents64",
    "set_robust_list",
    "get_robust_list",
    "rseq",
    "set_tid_address",
    "prlimit64",
    "getrlimit",
    "ugetrlimit",
    "wait4",
    "waitid",
    "kill",
    "tgkill",
    "execve",
    "execveat",
    "arch_prctl",
    "set_thread_area",
    "berth_no_such_syscall",
];

#[test]
fn docker_style_allow_list_loads_and_denies_the_rest() {
    berth_testutil::require_root!();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("berth-test-mkdir");
    let arches = if cfg!(target_arch = "x86_64") {
        serde_json::json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
    } else {
        serde_json::json!(["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"])
    };
    let p = profile(serde_json::json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": arches,
        "syscalls": [
            {"names": ALLOWED, "action": "SCMP_ACT_ALLOW"},
            {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 4294967295u64, "op": "SCMP_CMP_EQ"}]},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 2114060288u64, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
        ]
    }));
    seccomp::validate(&p).unwrap();
    let report = in_child(|| {
        seccomp::load(&p).map_err(|e| e.to_string())?;
        let mkdir = mkdir_errno(&target);
        let errno_of = |r: libc::c_long| {
            if r == -1 {
                nix::errno::Errno::last_raw()
            } else {
                0
            }
        };
        // SAFETY: raw syscalls without pointers (clone3 gets NULL and size 0, which
        // the kernel refuses with EINVAL when the filter lets it through).
        let unshare_errno =
            errno_of(unsafe { libc::syscall(libc::SYS_unshare, libc::CLONE_NEWNS) });
        // SAFETY: as above.
        let clone3_errno = errno_of(unsafe { libc::syscall(libc::SYS_clone3, 0usize, 0usize) });
        // SAFETY: personality(0xffffffff) only queries the persona.
        let pers = unsafe { libc::syscall(libc::SYS_personality, 0xffff_ffffu64) };
        let pid = nix::unistd::getpid().as_raw();
        Ok(format!(
            "mkdir={mkdir} unshare={unshare_errno} clone3={clone3_errno} personality={} pid_ok={}",
            pers >= 0,
            pid > 0
        ))
    })
    .unwrap();
    assert_eq!(
        report,
        format!(
            "mkdir={} unshare={} clone3={} personality=true pid_ok=true",
            libc::EPERM,
            libc::EPERM,
            libc::ENOSYS
        )
    );
}

#[test]
fn unprivileged_process_loads_seccomp_after_no_new_privs() {
    berth_testutil::require_root!();
    // The order the init uses for a non-root user: bounding, identity, caps,
    // no_new_privs, then the filter (loading without CAP_SYS_ADMIN needs NNP).
    let caps = all_sets(&[Capability::NetBindService]);
    let p = profile(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]
    }));
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("berth-test-mkdir");
    let report = in_child(|| {
        capabilities::drop_bounding(&caps).map_err(|e| e.to_string())?;
        identity::set_identity(&user(1000, 1000, &[])).map_err(|e| e.to_string())?;
        capabilities::apply(&caps).map_err(|e| e.to_string())?;
        identity::set_no_new_privs().map_err(|e| e.to_string())?;
        seccomp::load(&p).map_err(|e| e.to_string())?;
        Ok(format!("mkdir={} {}", mkdir_errno(&target), proc_status()?))
    })
    .unwrap();
    assert!(
        report.starts_with(&format!("mkdir={} ", libc::EACCES)),
        "{report}"
    );
    assert_eq!(status_field(&report, "Seccomp"), "2");
    assert_eq!(status_field(&report, "CapEff"), NET_BIND_SERVICE_MASK);
}

#[test]
fn in_child_reports_errors() {
    let e = in_child(|| Err("boom".to_string())).unwrap_err();
    assert_eq!(e, "boom");
    assert_eq!(in_child(|| Ok("fine".into())).unwrap(), "fine");
}

/// What `/proc/self/fd/<fd>` names (an anonymous inode's kind for a listener).
fn fd_target(fd: &OwnedFd) -> String {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|e| format!("readlink: {e}"))
}

#[test]
fn cached_programs_keep_the_listener_and_every_part_of_their_profile() {
    berth_testutil::require_root!();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let target = dir.path().join("berth-test-mkdir");
    let files = || std::fs::read_dir(&cache).unwrap().count();

    // A notify profile, compiled by one validation and read back from the
    // cache file by the next, as `create` then `exec` do.
    let notify = profile(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": "/run/berth-test-agent.sock",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
    }));
    seccomp::validate_in(&notify, Some(&cache)).unwrap();
    seccomp::validate_in(&notify, Some(&cache)).unwrap();
    assert_eq!(files(), 1);
    let report = in_child(|| {
        let fd = seccomp::load(&notify)
            .map_err(|e| e.to_string())?
            .ok_or("no listener fd from a cached notify program")?;
        let kind = fd_target(&fd);
        // With its listener gone a notified syscall fails with ENOSYS: the rule
        // is in the program that was loaded.
        drop(fd);
        Ok(format!("{kind} mkdir={}", mkdir_errno(&target)))
    })
    .unwrap();
    assert_eq!(
        report,
        format!("anon_inode:seccomp notify mkdir={}", libc::ENOSYS)
    );

    // Profiles that differ only in an errno, a flag or an action are other
    // programs: each gets its own entry and its own answer.
    let errno = |n: u32| {
        profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": n}]
        }))
    };
    let (eperm, eacces) = (errno(1), errno(13));
    let mut logged = eacces.clone();
    logged.set_flags(Some(vec![
        oci_spec::runtime::LinuxSeccompFilterFlag::SeccompFilterFlagLog,
    ]));
    for p in [&eperm, &eacces, &logged] {
        seccomp::validate_in(p, Some(&cache)).unwrap();
    }
    assert_eq!(files(), 4);
    // The last one validated is what the process keeps in memory; loading
    // another profile compiles it instead of loading the kept program.
    for (p, want) in [(&eperm, libc::EPERM), (&eacces, libc::EACCES)] {
        let got = in_child(|| {
            let fd = seccomp::load(p).map_err(|e| e.to_string())?;
            Ok(format!("{} {}", fd.is_some(), mkdir_errno(&target)))
        })
        .unwrap();
        assert_eq!(got, format!("false {want}"));
    }
    assert!(!target.exists());
}
