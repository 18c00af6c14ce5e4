//! OCI hooks: run each hook program with the container's state JSON on stdin.
//!
//! A hook gets exactly its `env` (the runtime's environment when it has none, as
//! with runc), `args[0]` as its argv[0], and `timeout` seconds to finish (then it
//! is killed and the hook fails). A hook that exits non-zero fails with its path,
//! status and stderr. Hooks run one after the other; [`run`] stops at the first
//! failure and [`run_all`] runs them all and returns every failure (the spec's
//! rules for hooks before and after the container starts).
//!
//! The runtime is single-threaded, so there are no helper threads here: stdin,
//! stdout and stderr are non-blocking pipes served by one poll(2) loop, and the
//! hook's exit is seen through a pidfd (or, where pidfds are missing, by polling
//! with a short timeout).

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use oci_spec::runtime::Hook;

use crate::logger;
use crate::state::OciState;

/// How much of a hook's stdout and stderr is kept for the error message.
const OUTPUT_LIMIT: usize = 64 * 1024;
/// How often a hook's exit is checked when the kernel has no pidfd_open.
const FALLBACK_TICK: Duration = Duration::from_millis(10);

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("hook {path}: timeout must be greater than zero, got {timeout}")]
    InvalidTimeout { path: PathBuf, timeout: i64 },
    #[error("hook {path}: start: {source}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("hook {path}: {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("hook {path} did not finish within {timeout}s and was killed")]
    Timeout { path: PathBuf, timeout: i64 },
    #[error(
        "error running hook {path}: {}{}",
        go_status(status),
        describe_output(stdout, stderr)
    )]
    Failed {
        path: PathBuf,
        status: ExitStatus,
        stdout: String,
        stderr: String,
    },
    #[error("serialize the container state for the hooks: {0}")]
    State(#[source] serde_json::Error),
}

/// An exit status worded as Go's os/exec words it ("exit status 1",
/// "signal: bad system call"), as runc's messages carry it.
fn go_status(status: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => {
            // SAFETY: strsignal returns a pointer to a static or thread-local
            // string (never freed by us), valid until the next call; it is
            // copied at once and the runtime is single-threaded.
            let desc = unsafe {
                let p = libc::strsignal(sig);
                (!p.is_null()).then(|| std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned())
            }
            .unwrap_or_else(|| format!("signal {sig}"));
            let mut chars = desc.chars();
            let lower: String = match chars.next() {
                Some(c) => c.to_lowercase().chain(chars).collect(),
                None => desc,
            };
            format!("signal: {lower}")
        }
        _ => status.to_string(),
    }
}

fn describe_output(stdout: &str, stderr: &str) -> String {
    let mut s = String::new();
    if !stderr.is_empty() {
        s.push_str(&format!(": stderr: {stderr}"));
    }
    if !stdout.is_empty() {
        s.push_str(&format!(": stdout: {stdout}"));
    }
    s
}

/// Run `hooks` in order with `state` on their stdin; stop at the first failure
/// (prestart, createRuntime, createContainer and startContainer hooks).
pub fn run(hooks: &[Hook], state: &OciState) -> Result<(), HookError> {
    if hooks.is_empty() {
        return Ok(());
    }
    let json = serde_json::to_vec(state).map_err(HookError::State)?;
    let _sigpipe = SigpipeIgnored::new();
    for hook in hooks {
        run_one(hook, &json)?;
    }
    Ok(())
}

/// Run every hook even when some fail, and return the failures (poststart and
/// poststop hooks: the spec wants a warning and the remaining hooks run).
pub fn run_all(hooks: &[Hook], state: &OciState) -> Vec<HookError> {
    if hooks.is_empty() {
        return Vec::new();
    }
    let json = match serde_json::to_vec(state) {
        Ok(j) => j,
        Err(e) => return vec![HookError::State(e)],
    };
    let _sigpipe = SigpipeIgnored::new();
    hooks
        .iter()
        .filter_map(|hook| run_one(hook, &json).err())
        .collect()
}

/// Ignores SIGPIPE while hooks run, so that a hook closing its stdin early is an
/// EPIPE for us and not the death of the caller (the init may have reset its
/// signal dispositions); the previous disposition comes back on drop.
struct SigpipeIgnored(Option<SigAction>);

impl SigpipeIgnored {
    fn new() -> Self {
        let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
        // SAFETY: SIG_IGN installs no handler code, so no async-signal-safety
        // requirement arises; the runtime is single-threaded.
        SigpipeIgnored(unsafe { sigaction(Signal::SIGPIPE, &ignore) }.ok())
    }
}

impl Drop for SigpipeIgnored {
    fn drop(&mut self) {
        if let Some(old) = self.0.take() {
            // SAFETY: restores the disposition sigaction returned above.
            let _ = unsafe { sigaction(Signal::SIGPIPE, &old) };
        }
    }
}

/// Kills and reaps the hook when a run ends early (error or timeout).
struct Running {
    child: Child,
    done: bool,
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn command(hook: &Hook) -> Command {
    let path = hook.path();
    let mut cmd = Command::new(path);
    match hook.args().as_deref() {
        Some([argv0, rest @ ..]) => {
            cmd.arg0(argv0).args(rest);
        }
        _ => {
            cmd.arg0(path);
        }
    }
    // A hook with an `env` list gets exactly that environment. Without one it
    // inherits the runtime's, as with runc (Go's exec.Cmd treats a nil Env so),
    // which hooks written for runc rely on for PATH.
    if let Some(env) = hook.env() {
        cmd.env_clear();
        for entry in env {
            match entry.split_once('=') {
                Some((k, v)) if !k.is_empty() => {
                    cmd.env(k, v);
                }
                _ => logger::debug(&format!(
                    "hook {}: environment entry {entry:?} is not KEY=VALUE; skipped",
                    path.display()
                )),
            }
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn set_nonblocking(fd: BorrowedFd<'_>) -> std::io::Result<()> {
    let flags = fcntl(fd, FcntlArg::F_GETFL)?;
    fcntl(
        fd,
        FcntlArg::F_SETFL(OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK),
    )?;
    Ok(())
}

/// A pidfd for `pid`, readable once the process exits; None where the kernel
/// lacks pidfd_open (before 5.3).
fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    // SAFETY: pidfd_open takes a pid and a flags word and returns a new fd or -1;
    // no memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = RawFd::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: the kernel just returned this fd and nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Read what is there without blocking; keep at most OUTPUT_LIMIT bytes. Returns
/// false at end of file.
fn drain(src: &mut impl Read, keep: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut buf = [0u8; 8192];
    loop {
        match src.read(&mut buf) {
            Ok(0) => return Ok(false),
            Ok(n) => {
                let room = OUTPUT_LIMIT.saturating_sub(keep.len());
                keep.extend_from_slice(&buf[..n.min(room)]);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(true),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_string()
}

fn run_one(hook: &Hook, state: &[u8]) -> Result<(), HookError> {
    let path = hook.path().to_path_buf();
    let timeout = match hook.timeout() {
        Some(t) if t <= 0 => return Err(HookError::InvalidTimeout { path, timeout: t }),
        Some(t) => Some(t),
        None => None,
    };
    let io_err = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source: std::io::Error| HookError::Io {
            path,
            action,
            source,
        }
    };

    let child = command(hook).spawn().map_err(|source| HookError::Spawn {
        path: path.clone(),
        source,
    })?;
    let mut running = Running { child, done: false };
    // A timeout too large for the clock is no timeout at all.
    let deadline =
        timeout.and_then(|t| Instant::now().checked_add(Duration::from_secs(t.unsigned_abs())));
    let pidfd = pidfd_open(running.child.id());

    let mut stdin = running.child.stdin.take();
    let mut stdout = running.child.stdout.take();
    let mut stderr = running.child.stderr.take();
    for fd in [
        stdin.as_ref().map(|s| s.as_fd()),
        stdout.as_ref().map(|s| s.as_fd()),
        stderr.as_ref().map(|s| s.as_fd()),
    ]
    .into_iter()
    .flatten()
    {
        set_nonblocking(fd).map_err(io_err("make its pipes non-blocking", &path))?;
    }

    let mut written = 0usize;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let status = loop {
        if let Some(status) = running
            .child
            .try_wait()
            .map_err(io_err("wait for it", &path))?
        {
            break status;
        }
        let wait = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(HookError::Timeout {
                        path,
                        timeout: timeout.unwrap_or_default(),
                    });
                }
                left
            }
            None => Duration::MAX,
        };
        let wait = if pidfd.is_some() {
            wait
        } else {
            wait.min(FALLBACK_TICK)
        };

        let mut fds = Vec::with_capacity(4);
        if let Some(p) = &pidfd {
            fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
        }
        let stdin_at = stdin.as_ref().map(|s| {
            fds.push(PollFd::new(s.as_fd(), PollFlags::POLLOUT));
            fds.len() - 1
        });
        let stdout_at = stdout.as_ref().map(|s| {
            fds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
            fds.len() - 1
        });
        let stderr_at = stderr.as_ref().map(|s| {
            fds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
            fds.len() - 1
        });
        let ms = i32::try_from(wait.as_millis().max(1)).unwrap_or(i32::MAX);
        let timeout = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(io_err("poll its pipes", &path)(e.into())),
        }
        let ready = |at: Option<usize>| {
            at.and_then(|i| fds.get(i))
                .and_then(|f| f.revents())
                .is_some_and(|r| !r.is_empty())
        };
        let (stdin_ready, stdout_ready, stderr_ready) =
            (ready(stdin_at), ready(stdout_at), ready(stderr_at));
        drop(fds);

        if stdin_ready {
            if let Some(pipe) = stdin.as_mut() {
                match pipe.write(&state[written..]) {
                    Ok(n) => written += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    // A hook may exit or close stdin without reading the state.
                    Err(e) if e.kind() == ErrorKind::BrokenPipe => written = state.len(),
                    Err(e) => return Err(io_err("write the state to its stdin", &path)(e)),
                }
                if written >= state.len() {
                    // EOF tells the hook the state is complete.
                    stdin = None;
                }
            }
        }
        if stdout_ready {
            if let Some(pipe) = stdout.as_mut() {
                if !drain(pipe, &mut out).map_err(io_err("read its stdout", &path))? {
                    stdout = None;
                }
            }
        }
        if stderr_ready {
            if let Some(pipe) = stderr.as_mut() {
                if !drain(pipe, &mut err).map_err(io_err("read its stderr", &path))? {
                    stderr = None;
                }
            }
        }
    };
    running.done = true;

    // The hook has exited; take what it wrote before. A background process it left
    // behind may hold the pipes open, so read only what is already there.
    if let Some(pipe) = stdout.as_mut() {
        let _ = drain(pipe, &mut out);
    }
    if let Some(pipe) = stderr.as_mut() {
        let _ = drain(pipe, &mut err);
    }
    if status.success() {
        return Ok(());
    }
    Err(HookError::Failed {
        path,
        status,
        stdout: text(&out),
        stderr: text(&err),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Status;
    use oci_spec::runtime::HookBuilder;

    fn state() -> OciState {
        OciState {
            oci_version: "1.2.0".into(),
            id: "berth-test-hooks".into(),
            status: Status::Created,
            pid: 4242,
            bundle: "/tmp/bundle".into(),
            rootfs: "/tmp/bundle/rootfs".into(),
            created: "2024-01-01T00:00:00Z".into(),
            owner: "root".into(),
            annotations: [("k".to_string(), "v".to_string())].into_iter().collect(),
        }
    }

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        berth_testutil::write_executable(&p, &format!("#!/bin/sh\n{body}\n")).unwrap();
        p
    }

    fn hook(path: &Path, args: &[&str], env: &[&str], timeout: Option<i64>) -> Hook {
        let mut b = HookBuilder::default().path(path);
        if !args.is_empty() {
            b = b.args(args.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        }
        if !env.is_empty() {
            b = b.env(env.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        }
        if let Some(t) = timeout {
            b = b.timeout(t);
        }
        b.build().unwrap()
    }

    #[test]
    fn state_on_stdin_env_and_args_are_passed() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out");
        let p = script(
            d.path(),
            "h.sh",
            &format!(
                "cat > {o}.state; echo \"$0|$1|$2\" > {o}.args; env > {o}.env",
                o = out.display()
            ),
        );
        let h = hook(
            &p,
            &["my-hook", "one", "two words"],
            &["FOO=bar", "EMPTY=", "PATH=/usr/bin:/bin"],
            Some(10),
        );
        run(&[h], &state()).unwrap();

        let got: OciState =
            serde_json::from_slice(&std::fs::read(format!("{}.state", out.display())).unwrap())
                .unwrap();
        assert_eq!(got.id, "berth-test-hooks");
        assert_eq!(got.pid, 4242);
        assert_eq!(got.annotations["k"], "v");
        let raw: serde_json::Value =
            serde_json::from_slice(&std::fs::read(format!("{}.state", out.display())).unwrap())
                .unwrap();
        assert_eq!(raw["ociVersion"], "1.2.0");
        assert_eq!(raw["status"], "created");

        // For a #! script the kernel puts the script's path in $0, so argv[0]
        // itself is checked in argv0_is_args0_or_path.
        let args = std::fs::read_to_string(format!("{}.args", out.display())).unwrap();
        assert!(args.trim_end().ends_with("|one|two words"), "{args}");

        let env = std::fs::read_to_string(format!("{}.env", out.display())).unwrap();
        let mut vars: Vec<&str> = env
            .lines()
            .filter(|l| !l.starts_with("PWD=") && !l.starts_with("SHLVL=") && !l.starts_with("_="))
            .collect();
        vars.sort();
        assert_eq!(vars, ["EMPTY=", "FOO=bar", "PATH=/usr/bin:/bin"]);
    }

    #[test]
    fn absent_env_inherits_and_empty_env_is_empty() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("env");
        let p = script(d.path(), "env.sh", &format!("env > {}", out.display()));
        std::env::var_os("PATH").expect("tests run with a PATH");
        run(&[hook(&p, &[], &[], None)], &state()).unwrap();
        let inherited = std::fs::read_to_string(&out).unwrap();
        assert!(
            inherited.lines().any(|l| l.starts_with("PATH=")),
            "{inherited}"
        );

        let mut h = hook(&p, &[], &[], None);
        h.set_env(Some(Vec::new()));
        run(&[h], &state()).unwrap();
        let empty = std::fs::read_to_string(&out).unwrap();
        assert!(!empty.lines().any(|l| l.starts_with("PATH=")), "{empty}");
    }

    #[test]
    fn argv0_is_args0_or_path() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("argv0");
        let h = hook(
            Path::new("/bin/sh"),
            &[
                "custom-name",
                "-c",
                &format!("tr '\\0' ' ' < /proc/$$/cmdline > {}", out.display()),
            ],
            &[],
            None,
        );
        run(&[h], &state()).unwrap();
        let cmdline = std::fs::read_to_string(&out).unwrap();
        assert!(cmdline.starts_with("custom-name -c "), "{cmdline}");

        let p = script(
            d.path(),
            "noargs.sh",
            &format!("echo \"$0\" > {}", out.display()),
        );
        run(&[hook(&p, &[], &[], None)], &state()).unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap().trim(),
            p.display().to_string()
        );
    }

    #[test]
    fn non_zero_exit_is_reported_with_stderr() {
        let d = tempfile::tempdir().unwrap();
        let p = script(
            d.path(),
            "fail.sh",
            "cat >/dev/null; echo '  went wrong  ' >&2; exit 3",
        );
        let e = run(&[hook(&p, &[], &[], None)], &state()).unwrap_err();
        match &e {
            HookError::Failed {
                path,
                status,
                stderr,
                ..
            } => {
                assert_eq!(path, &p);
                assert_eq!(status.code(), Some(3));
                assert_eq!(stderr, "went wrong");
            }
            other => panic!("unexpected error {other}"),
        }
        let msg = e.to_string();
        assert!(msg.contains(&p.display().to_string()), "{msg}");
        assert!(msg.contains("went wrong"), "{msg}");
        assert!(msg.contains('3'), "{msg}");
    }

    #[test]
    fn first_failure_stops_the_list() {
        let d = tempfile::tempdir().unwrap();
        let marker = d.path().join("ran");
        let fail = script(d.path(), "fail.sh", "exit 1");
        let later = script(d.path(), "later.sh", &format!("touch {}", marker.display()));
        assert!(run(
            &[hook(&fail, &[], &[], None), hook(&later, &[], &[], None)],
            &state()
        )
        .is_err());
        assert!(!marker.exists());
        run(&[hook(&later, &[], &[], None)], &state()).unwrap();
        assert!(marker.exists());
    }

    #[test]
    fn run_all_runs_every_hook() {
        let d = tempfile::tempdir().unwrap();
        let marker = d.path().join("ran");
        let fail = script(d.path(), "fail.sh", "echo nope >&2; exit 1");
        let later = script(d.path(), "later.sh", &format!("touch {}", marker.display()));
        let errors = run_all(
            &[
                hook(&fail, &[], &[], None),
                hook(&later, &[], &[], None),
                hook(&fail, &[], &[], None),
            ],
            &state(),
        );
        assert_eq!(errors.len(), 2);
        assert!(errors[0].to_string().contains("nope"));
        assert!(marker.exists());
        assert!(run_all(&[], &state()).is_empty());
    }

    #[test]
    fn huge_timeout_is_no_timeout() {
        run(
            &[hook(Path::new("/bin/true"), &[], &[], Some(i64::MAX))],
            &state(),
        )
        .unwrap();
    }

    #[test]
    fn timeout_kills_the_hook() {
        let d = tempfile::tempdir().unwrap();
        let pidfile = d.path().join("pid");
        let p = script(
            d.path(),
            "slow.sh",
            &format!("echo $$ > {}; exec sleep 600", pidfile.display()),
        );
        let e = run(&[hook(&p, &[], &[], Some(1))], &state()).unwrap_err();
        assert!(matches!(e, HookError::Timeout { timeout: 1, .. }), "{e}");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Killed and reaped: the pid no longer exists as our child.
        assert!(crate::state::process_start_time(pid).is_none() || crate::state::is_zombie(pid));
    }

    #[test]
    fn hook_that_ignores_stdin_and_big_state_do_not_hang() {
        let d = tempfile::tempdir().unwrap();
        let p = script(d.path(), "ignore.sh", "exit 0");
        let mut s = state();
        s.annotations = (0..20000)
            .map(|i| (format!("key{i}"), "x".repeat(20)))
            .collect();
        run(&[hook(&p, &[], &[], Some(30))], &s).unwrap();

        let out = d.path().join("len");
        let counter = script(d.path(), "count.sh", &format!("wc -c > {}", out.display()));
        run(&[hook(&counter, &[], &[], Some(30))], &s).unwrap();
        let n: usize = std::fs::read_to_string(&out)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(n, serde_json::to_vec(&s).unwrap().len());
    }

    #[test]
    fn chatty_hook_does_not_block() {
        let d = tempfile::tempdir().unwrap();
        let p = script(
            d.path(),
            "chatty.sh",
            "head -c 1000000 /dev/zero; head -c 1000000 /dev/zero >&2; exit 0",
        );
        run(&[hook(&p, &[], &[], Some(30))], &state()).unwrap();
    }

    #[test]
    fn bad_hooks_are_refused() {
        let e = run(
            &[hook(
                Path::new("/nonexistent/berth-test-hook"),
                &[],
                &[],
                None,
            )],
            &state(),
        )
        .unwrap_err();
        assert!(matches!(e, HookError::Spawn { .. }), "{e}");
        assert!(e.to_string().contains("/nonexistent/berth-test-hook"));
        let e = run(&[hook(Path::new("/bin/true"), &[], &[], Some(0))], &state()).unwrap_err();
        assert!(
            matches!(e, HookError::InvalidTimeout { timeout: 0, .. }),
            "{e}"
        );
        run(&[], &state()).unwrap();
    }
}
