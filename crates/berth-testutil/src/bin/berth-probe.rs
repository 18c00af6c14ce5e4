//! `berth-probe`: the syscalls an attacker in a container tries first, each made
//! once, each answered on a line `NAME=RESULT` (`ok`, or the errno's name).
//! Security tests run it inside containers (with the host's libraries mounted)
//! and compare the answers with Docker's. It must never be installed anywhere.
//!
//! Usage: berth-probe [PROBE...] (all of them when none is named), or
//! berth-probe swap A B (exchange two names atomically, forever).

use std::ffi::CString;

fn errno_name(e: i32) -> String {
    match e {
        libc::EPERM => "EPERM".into(),
        libc::EACCES => "EACCES".into(),
        libc::ENOSYS => "ENOSYS".into(),
        libc::EINVAL => "EINVAL".into(),
        libc::ENOENT => "ENOENT".into(),
        libc::EAFNOSUPPORT => "EAFNOSUPPORT".into(),
        libc::ENODEV => "ENODEV".into(),
        libc::ENXIO => "ENXIO".into(),
        libc::EEXIST => "EEXIST".into(),
        libc::EBADF => "EBADF".into(),
        libc::EFAULT => "EFAULT".into(),
        libc::ESRCH => "ESRCH".into(),
        other => format!("errno{other}"),
    }
}

fn result(r: libc::c_long) -> String {
    if r < 0 {
        errno_name(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        "ok".into()
    }
}

/// A raw system call; pointers go as integers. The probes pass constants,
/// null pointers or pointers to live C strings, and only report the result.
fn sys(nr: libc::c_long, a: [libc::c_long; 6]) -> libc::c_long {
    // SAFETY: every caller passes arguments the kernel validates itself, and no
    // pointer it is given outlives the call.
    unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) }
}

fn ptr(s: &CString) -> libc::c_long {
    s.as_ptr() as libc::c_long
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap_or_default()
}

fn close(fd: libc::c_long) {
    if fd >= 0 {
        sys(libc::SYS_close, [fd, 0, 0, 0, 0, 0]);
    }
}

/// Run `f` in a forked child (for probes that change the process), report its
/// line.
fn in_child(f: impl FnOnce() -> String) -> String {
    let mut fds = [0i32; 2];
    if sys(
        libc::SYS_pipe2,
        [fds.as_mut_ptr() as libc::c_long, 0, 0, 0, 0, 0],
    ) != 0
    {
        return "pipe-failed".into();
    }
    // A plain fork: this program has one thread.
    let pid = sys(
        libc::SYS_clone,
        [libc::SIGCHLD as libc::c_long, 0, 0, 0, 0, 0],
    );
    if pid == 0 {
        let line = f();
        sys(
            libc::SYS_write,
            [
                fds[1].into(),
                line.as_ptr() as libc::c_long,
                line.len() as libc::c_long,
                0,
                0,
                0,
            ],
        );
        sys(libc::SYS_exit_group, [0; 6]);
    }
    close(fds[1].into());
    let mut buf = [0u8; 256];
    let n = sys(
        libc::SYS_read,
        [
            fds[0].into(),
            buf.as_mut_ptr() as libc::c_long,
            buf.len() as libc::c_long,
            0,
            0,
            0,
        ],
    );
    close(fds[0].into());
    sys(libc::SYS_wait4, [pid, 0, 0, 0, 0, 0]);
    String::from_utf8_lossy(&buf[..usize::try_from(n).unwrap_or(0)]).into_owned()
}

fn probe(name: &str) -> String {
    let r = match name {
        // `unshare -U -r`: a user namespace (the first step of most escapes).
        "unshare_user" => in_child(|| {
            result(sys(
                libc::SYS_unshare,
                [libc::CLONE_NEWUSER.into(), 0, 0, 0, 0, 0],
            ))
        }),
        "unshare_mount" => in_child(|| {
            result(sys(
                libc::SYS_unshare,
                [libc::CLONE_NEWNS.into(), 0, 0, 0, 0, 0],
            ))
        }),
        "mount_tmpfs" => {
            let _ = std::fs::create_dir_all("/mnt");
            let (x, mnt, tmpfs) = (c("x"), c("/mnt"), c("tmpfs"));
            let r = sys(libc::SYS_mount, [ptr(&x), ptr(&mnt), ptr(&tmpfs), 0, 0, 0]);
            if r == 0 {
                sys(
                    libc::SYS_umount2,
                    [ptr(&mnt), libc::MNT_DETACH.into(), 0, 0, 0, 0],
                );
            }
            result(r)
        }
        // KEYCTL_GET_KEYRING_ID of the session keyring.
        "keyctl" => result(sys(libc::SYS_keyctl, [0, -3, 0, 0, 0, 0])),
        "add_key" => {
            let (t, d, p) = (c("user"), c("berth"), c("x"));
            result(sys(
                libc::SYS_add_key,
                [ptr(&t), ptr(&d), ptr(&p), 1, -3, 0],
            ))
        }
        "personality_bad" => result(sys(libc::SYS_personality, [0x0040_0000, 0, 0, 0, 0, 0])),
        "personality_query" => result(sys(libc::SYS_personality, [0xffff_ffff, 0, 0, 0, 0, 0])),
        "socket_vsock" => {
            let r = sys(
                libc::SYS_socket,
                [libc::AF_VSOCK.into(), libc::SOCK_STREAM.into(), 0, 0, 0, 0],
            );
            close(r);
            result(r)
        }
        "socket_unix" => {
            let r = sys(
                libc::SYS_socket,
                [libc::AF_UNIX.into(), libc::SOCK_STREAM.into(), 0, 0, 0, 0],
            );
            close(r);
            result(r)
        }
        "clone3" => result(sys(libc::SYS_clone3, [0; 6])),
        "clone_newns" => in_child(|| {
            // A raw clone with a namespace flag; its child exits at once.
            let flags = libc::CLONE_NEWNS | libc::SIGCHLD;
            let r = sys(libc::SYS_clone, [flags.into(), 0, 0, 0, 0, 0]);
            if r == 0 {
                sys(libc::SYS_exit_group, [0; 6]);
            }
            if r > 0 {
                sys(libc::SYS_wait4, [r, 0, 0, 0, 0, 0]);
            }
            result(r)
        }),
        "perf_event_open" => result(sys(libc::SYS_perf_event_open, [0, 0, -1, -1, 0, 0])),
        "kcmp" => {
            let pid = sys(libc::SYS_getpid, [0; 6]);
            result(sys(libc::SYS_kcmp, [pid, pid, 0, 0, 0, 0]))
        }
        "process_vm_readv" => {
            let pid = sys(libc::SYS_getpid, [0; 6]);
            result(sys(libc::SYS_process_vm_readv, [pid, 0, 0, 0, 0, 0]))
        }
        "bpf" => result(sys(libc::SYS_bpf, [0; 6])),
        "mkdir" => {
            let d = c("/tmp/berth-probe-dir");
            let at = libc::AT_FDCWD.into();
            let r = result(sys(libc::SYS_mkdirat, [at, ptr(&d), 0o755, 0, 0, 0]));
            sys(
                libc::SYS_unlinkat,
                [at, ptr(&d), libc::AT_REMOVEDIR.into(), 0, 0, 0],
            );
            r
        }
        "chmod" => {
            let d = c("/tmp");
            result(sys(
                libc::SYS_fchmodat,
                [libc::AT_FDCWD.into(), ptr(&d), 0o1777, 0, 0, 0],
            ))
        }
        _ => "unknown-probe".into(),
    };
    format!("{name}={r}")
}

const ALL: &[&str] = &[
    "unshare_user",
    "unshare_mount",
    "mount_tmpfs",
    "keyctl",
    "add_key",
    "personality_bad",
    "personality_query",
    "socket_vsock",
    "socket_unix",
    "clone3",
    "clone_newns",
    "perf_event_open",
    "kcmp",
    "process_vm_readv",
    "bpf",
    "mkdir",
    "chmod",
];

/// `swap A B`: exchange two names atomically, forever (renameat2
/// RENAME_EXCHANGE): what a compiled exploit racing a path check does.
fn swap_forever(a: &str, b: &str) -> ! {
    let (a, b) = (c(a), c(b));
    let at = libc::c_long::from(libc::AT_FDCWD);
    loop {
        sys(
            libc::SYS_renameat2,
            [
                at,
                ptr(&a),
                at,
                ptr(&b),
                libc::c_long::from(libc::RENAME_EXCHANGE),
                0,
            ],
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() == 3 && args[0] == "swap" {
        swap_forever(&args[1], &args[2]);
    }
    let names: Vec<&str> = if args.is_empty() {
        ALL.to_vec()
    } else {
        args.iter().map(String::as_str).collect()
    };
    for n in names {
        println!("{}", probe(n));
    }
}
