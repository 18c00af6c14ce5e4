//! berth-init run as a plain child of the test (no pid namespace: exit statuses,
//! signal forwarding, bad commands) and as PID 1 of a new pid namespace made with
//! util-linux `unshare` (zombie reaping, signals from the parent namespace).
//!
//! Every process a test starts is killed and reaped by a guard, even when the test
//! fails: `Init` kills the command's process group and berth-init; `unshare
//! --kill-child` takes the whole namespace down with it.

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a test waits for something that should take milliseconds, before it
/// gives up (a bound against hanging, not a timing assertion).
const PATIENCE: Duration = Duration::from_secs(20);

fn init_path() -> PathBuf {
    let path = berth_testutil::binary("berth-init");
    assert!(
        path.exists(),
        "{} missing: cargo build -p berth-init",
        path.display()
    );
    path
}

fn init() -> Command {
    Command::new(init_path())
}

fn run(args: &[&str]) -> Output {
    init().args(args).stdin(Stdio::null()).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The pids of `pid`'s children (of its main thread, which is all there is here).
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The state letter of a process (`S`, `R`, `Z`, ...), if it exists.
fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The state follows the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().next()?.chars().next()
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Poll `cond` until it holds, for at most PATIENCE.
fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// A running berth-init. Dropping it kills the process group of each of its
/// children (the command takes a group of its own) and berth-init, and reaps it.
struct Init(Child);

impl Init {
    fn spawn(args: &[&str]) -> Init {
        Init(
            init()
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap(),
        )
    }

    /// Read one line the command printed.
    fn read_line(&mut self) -> String {
        let mut line = String::new();
        let out = self.0.stdout.as_mut().unwrap();
        BufReader::new(out).read_line(&mut line).unwrap();
        line
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill has no memory-safety preconditions; the pid is our unreaped child.
        assert_eq!(unsafe { libc::kill(self.0.id() as i32, signal) }, 0);
    }

    fn wait(&mut self) -> Option<i32> {
        let status = self.0.wait().unwrap();
        status.code()
    }
}

impl Drop for Init {
    fn drop(&mut self) {
        for child in children(self.0.id()) {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe {
                libc::kill(-(child as i32), libc::SIGKILL);
                libc::kill(child as i32, libc::SIGKILL);
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn version_is_printed() {
    let out = run(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        concat!("berth-init ", env!("CARGO_PKG_VERSION"), "\n")
    );
}

#[test]
fn exit_code_passes_through() {
    assert_eq!(run(&["--", "sh", "-c", "exit 3"]).status.code(), Some(3));
    assert_eq!(run(&["--", "true"]).status.code(), Some(0));
}

#[test]
fn command_without_double_dash_runs() {
    assert_eq!(run(&["sh", "-c", "exit 5"]).status.code(), Some(5));
}

#[test]
fn child_killed_by_a_signal_gives_128_plus_its_number() {
    let out = run(&["--", "sh", "-c", "kill -KILL $$"]);
    assert_eq!(out.status.code(), Some(128 + 9));
}

#[test]
fn missing_command_exits_127() {
    let out = run(&["--", "berth-test-no-such-command"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(
        stderr(&out).contains("berth-init: cannot execute berth-test-no-such-command"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn command_that_is_not_executable_exits_126() {
    let dir = tempfile::Builder::new()
        .prefix("berth-test-init")
        .tempdir()
        .unwrap();
    let file = dir.path().join("not-executable");
    std::fs::write(&file, "#!/bin/sh\nexit 0\n").unwrap();
    // Mode 0644: no execute bit for anyone, so even root gets EACCES.
    let out = run(&["--", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
}

#[test]
fn bad_command_lines_exit_2() {
    for args in [&[][..], &["--"][..], &["-g", "sh"][..]] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains("usage:"), "{}", stderr(&out));
    }
}

#[test]
fn sigterm_is_forwarded_to_the_child() {
    // The trap also kills the background sleep, so nothing outlives the test.
    let mut init = Init::spawn(&[
        "--",
        "sh",
        "-c",
        "trap 'kill $!; exit 7' TERM; sleep 100 & echo ready; wait",
    ]);
    // Only signal once the trap is set, or the shell would die of SIGTERM itself.
    assert_eq!(init.read_line(), "ready\n");
    init.signal(libc::SIGTERM);
    assert_eq!(init.wait(), Some(7));
}

#[test]
fn every_catchable_signal_is_forwarded() {
    // Synchronous signals and the job-control ones included: berth-init blocks them
    // all and passes them on when they are sent with kill(2). Signal 40 is a
    // real-time one.
    let signals = [
        libc::SIGHUP,
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGWINCH,
        libc::SIGCONT,
        libc::SIGALRM,
        libc::SIGPIPE,
        libc::SIGURG,
        libc::SIGTSTP,
        libc::SIGTTIN,
        libc::SIGTTOU,
        libc::SIGSEGV,
        libc::SIGABRT,
        40,
    ];
    for (i, signal) in signals.into_iter().enumerate() {
        let code = 10 + i;
        let script = format!("trap 'kill $!; exit {code}' {signal}; sleep 100 & echo ready; wait");
        let mut init = Init::spawn(&["--", "sh", "-c", &script]);
        assert_eq!(init.read_line(), "ready\n", "signal {signal}");
        init.signal(signal);
        assert_eq!(init.wait(), Some(code as i32), "signal {signal}");
    }
}

#[test]
fn the_command_runs_in_its_own_process_group_with_the_signal_mask_it_had() {
    let mut init = Init::spawn(&["--", "sh", "-c", "echo ready; exec sleep 100"]);
    assert_eq!(init.read_line(), "ready\n");
    let init_pid = init.0.id();
    let mut child = 0;
    assert!(eventually(|| {
        child = children(init_pid).first().copied().unwrap_or(0);
        child != 0 && comm(child) == "sleep"
    }));
    let status = std::fs::read_to_string(format!("/proc/{child}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap()
    };
    // std's Command starts berth-init with an empty mask; the command gets it back.
    assert_eq!(field("SigBlk:"), "0000000000000000");
    // SAFETY: getpgid takes no pointers.
    let group = unsafe { libc::getpgid(child as i32) };
    assert_eq!(group, child as i32, "the command leads its own group");
    // SAFETY: as above.
    let init_group = unsafe { libc::getpgid(init_pid as i32) };
    assert_ne!(group, init_group);
}

// ---- berth-init as PID 1 of a pid namespace (root) ----

fn have_unshare() -> bool {
    let found = Command::new("unshare")
        .arg("--version")
        .stdout(Stdio::null())
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        eprintln!("skipped: util-linux unshare not found");
    }
    found
}

/// `unshare --pid --fork --kill-child [--mount-proc] ARGS`: ARGS[0] becomes PID 1
/// of a new pid namespace, and dies (with the whole namespace) when unshare does.
fn unshare(mount_proc: bool, args: &[&str]) -> Command {
    let mut c = Command::new("unshare");
    c.args(["--pid", "--fork", "--kill-child"]);
    if mount_proc {
        c.arg("--mount-proc");
    }
    c.args(args).stdin(Stdio::null());
    c
}

/// The host pid of the namespace's PID 1: unshare's only child.
fn pid_one(unshare: &Child) -> u32 {
    let mut pid = 0;
    // The child exists as a copy of unshare for a moment before it execs the
    // namespace's PID 1: wait until it has become that program.
    assert!(
        eventually(|| {
            pid = children(unshare.id()).first().copied().unwrap_or(0);
            pid != 0 && comm(pid) != "unshare"
        }),
        "unshare started no child"
    );
    pid
}

/// Zombie children of `pid`.
fn zombie_children(pid: u32) -> Vec<u32> {
    children(pid)
        .into_iter()
        .filter(|c| state(*c) == Some('Z'))
        .collect()
}

/// The lines of `ps -o stat,comm` output whose state is Z.
fn zombie_lines(ps: &str) -> Vec<String> {
    ps.lines()
        .skip(1)
        .filter(|l| l.trim_start().starts_with('Z'))
        .map(str::to_string)
        .collect()
}

#[test]
fn as_pid1_it_reaps_orphaned_zombies() {
    berth_testutil::require_root!();
    if !have_unshare() {
        return;
    }
    let init = init_path();
    // The subshells exit at once, so their sleeps are orphaned to PID 1 and die
    // 0.2 s later; a second after that, ps shows whether PID 1 reaped them.
    let script = "(sleep 0.2 &) ; (sleep 0.2 &); sleep 1; ps -e -o stat,comm";
    let out = unshare(true, &[init.to_str().unwrap(), "--", "sh", "-c", script])
        .output()
        .unwrap();
    let ps = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(ps.contains("berth-init"), "berth-init is not PID 1:\n{ps}");
    assert!(zombie_lines(&ps).is_empty(), "zombies left:\n{ps}");
}

/// The same orphans under a PID 1 that never waits (`sleep`): they stay zombies.
/// This is what berth-init is for.
#[test]
fn without_a_reaping_pid1_orphans_stay_zombies() {
    berth_testutil::require_root!();
    if !have_unshare() {
        return;
    }
    let script = "(sleep 0.2 &) ; (sleep 0.2 &); exec sleep 100";
    let unshare = berth_testutil::ChildGuard(
        unshare(false, &["sh", "-c", script])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid1 = pid_one(&unshare.0);
    assert!(
        eventually(|| zombie_children(pid1).len() == 2),
        "expected two zombies under PID 1 ({}), children {:?}",
        comm(pid1),
        children(pid1)
    );
    // Dropping the guard kills unshare, whose --kill-child kills PID 1 and with it
    // the namespace; its zombies go with it.
}

/// The same orphans with berth-init as PID 1 and a command that never waits:
/// berth-init reaps them, and only the command is left as its child.
#[test]
fn as_pid1_it_reaps_orphans_its_command_never_waits_for() {
    berth_testutil::require_root!();
    if !have_unshare() {
        return;
    }
    let init = init_path();
    let script = "(sleep 0.2 &) ; (sleep 0.2 &); exec sleep 100";
    let unshare = berth_testutil::ChildGuard(
        unshare(false, &[init.to_str().unwrap(), "--", "sh", "-c", script])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid1 = pid_one(&unshare.0);
    assert_eq!(comm(pid1), "berth-init");
    // The command is the child that leads its own process group (the orphans are
    // in its group). Once it has exec'd sleep, both subshells have exited and their
    // sleeps, alive or not, are berth-init's children: reaped, or zombies.
    let mut command = 0;
    assert!(eventually(|| {
        command = children(pid1)
            .into_iter()
            // SAFETY: getpgid takes no pointers.
            .find(|&c| unsafe { libc::getpgid(c as i32) } == c as i32)
            .unwrap_or(0);
        command != 0 && comm(command) == "sleep"
    }));
    assert!(
        eventually(|| children(pid1) == [command]),
        "orphans not reaped: children of berth-init {:?}, zombies {:?}",
        children(pid1),
        zombie_children(pid1)
    );
}

#[test]
fn as_pid1_it_forwards_signals_sent_from_the_parent_namespace() {
    berth_testutil::require_root!();
    if !have_unshare() {
        return;
    }
    let init = init_path();
    // No trap clean-up needed: when PID 1 exits the kernel kills the namespace.
    let script = "trap 'exit 7' TERM; sleep 100 & echo ready; wait";
    let mut unshare = berth_testutil::ChildGuard(
        unshare(false, &[init.to_str().unwrap(), "--", "sh", "-c", script])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(unshare.0.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    let pid1 = pid_one(&unshare.0);
    // The kernel drops signals to a namespace's init that it has no handler for;
    // berth-init has none, but blocked signals are queued all the same.
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid1 as i32, libc::SIGTERM) }, 0);
    assert_eq!(unshare.0.wait().unwrap().code(), Some(7));
}

#[test]
fn as_pid1_it_exits_when_the_command_exits() {
    berth_testutil::require_root!();
    if !have_unshare() {
        return;
    }
    let init = init_path();
    // The background sleep is orphaned to berth-init, which does not wait for it.
    let out = unshare(
        false,
        &[
            init.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "sleep 100 & exit 3",
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
}

// ---- the binary itself ----

#[test]
fn binary_is_statically_linked() {
    let types = berth_testutil::assert_no_dynamic_loader(&init_path());
    assert!(
        !types.contains(&berth_testutil::PT_DYNAMIC),
        "has a dynamic section: {types:?}"
    );
}

/// berth-init and a static busybox alone in a directory, chrooted into: no C
/// library, no loader, nothing else.
#[test]
fn runs_in_a_root_with_no_c_library() {
    berth_testutil::require_root!();
    let root = tempfile::Builder::new()
        .prefix("berth-test-init-root")
        .tempdir()
        .unwrap();
    std::fs::copy(init_path(), root.path().join("berth-init")).unwrap();
    let busybox = Path::new("/bin/busybox");
    let with_busybox = busybox.exists();
    if with_busybox {
        std::fs::copy(busybox, root.path().join("busybox")).unwrap();
    }
    let chroot = |args: &[&str]| {
        Command::new("chroot")
            .arg(root.path())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = chroot(&["/berth-init", "--version"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = chroot(&["/berth-init", "--", "/nothing"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    if with_busybox {
        let out = chroot(&["/berth-init", "--", "/busybox", "sh", "-c", "exit 3"]);
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    }
}
