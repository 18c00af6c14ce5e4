//! berth-init: the process `--init` makes a container's PID 1, like tini or
//! docker-init.
//!
//! The engine bind-mounts this binary read-only at `/sbin/berth-init` and starts the
//! container as `/sbin/berth-init -- CMD [ARG...]` (`--` may be left out when CMD does
//! not start with `-`). Its job, and all of it:
//!
//! - run CMD as its only child, in a process group of its own, which it makes the
//!   terminal's foreground group when berth-init's own group held the terminal (as
//!   tini does: a ^C or ^Z typed at the terminal reaches the command once, from the
//!   kernel, not a second time through berth-init);
//! - forward every signal it can catch to that child (all but SIGKILL and SIGSTOP,
//!   which nobody can catch, and SIGCHLD, which is about its own children). Signals go
//!   to the child's pid, not its group: a shell must pass them on itself;
//! - reap every zombie: as PID 1 of a pid namespace it inherits every orphan in it;
//! - once the child has exited, reap the zombies already there and exit with the
//!   child's status: its exit code, or 128+n if signal n killed it. As PID 1, its exit
//!   makes the kernel kill whatever is left in the namespace.
//!
//! `berth-init --pause` is a Kubernetes pod's pause process instead: it runs no
//! command, reaps every process orphaned into its pid namespace (whose PID 1 it is,
//! so that the pod's containers can share the namespace) and exits 0 on SIGTERM or
//! SIGINT.
//!
//! Its own statuses: 127 when CMD is not found, 126 when CMD is found but cannot be
//! executed, 2 for a bad command line, 1 when the kernel refuses what it needs (fork,
//! signal mask). `berth-init --version` prints its version.
//!
//! It must never do anything else: no options beyond `--version`, `--help` and
//! `--pause`, no
//! configuration or environment variables, no output but `--version`, `--help` and
//! one line on stderr for a fatal error, no restarting the command, no threads, no signal handlers (signals
//! are blocked and collected with `sigwaitinfo`, so nothing runs asynchronously), no
//! touching files, the terminal's settings or the command's environment. The command
//! gets the signal mask and SIGCHLD disposition berth-init was started with.
//!
//! It is a static executable (see build.rs) so that it runs in any root filesystem,
//! with or without a C library. It uses `#![no_main]`: std's start-up code would set
//! SIGPIPE to SIG_IGN, which the command would inherit through exec. It never starts
//! a thread, so the child of `fork` may run ordinary code before `exec`.

#![cfg_attr(not(test), no_main)]
// Unit tests get std's main, so the code only the C entry point uses is unused there.
#![cfg_attr(test, allow(dead_code))]

// Nothing below allocates or formats: PID 1 should not fail on memory, and the
// code between fork and exec stays trivially safe. (std's panic machinery is linked
// all the same: std's unwind tables keep its personality routine alive, and a
// `#![no_std]` binary cannot be built on stable while the dev profile unwinds.)

use std::ffi::CStr;
use std::io;
use std::os::raw::{c_char, c_int};
use std::ptr;

/// Exit status for a command line berth-init does not understand.
const EXIT_USAGE: c_int = 2;
/// Exit status when the kernel refuses berth-init something it needs.
const EXIT_INTERNAL: c_int = 1;
/// Exit status when the command exists but cannot be executed (as in shells).
const EXIT_NOT_EXECUTABLE: c_int = 126;
/// Exit status when the command does not exist (as in shells).
const EXIT_NOT_FOUND: c_int = 127;

const VERSION: &str = concat!("berth-init ", env!("CARGO_PKG_VERSION"), "\n");
const USAGE: &str = "usage: berth-init [--] COMMAND [ARG...]\n       berth-init --pause\n       berth-init --version\n\n\
Runs COMMAND as its child, forwards signals to it, reaps zombies, and exits with\n\
COMMAND's status (128+n when signal n killed it).\n";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    Version,
    Help,
    /// Be a pod's pause process.
    Pause,
    /// Run the command that starts at this index of argv.
    Run(usize),
    /// A bad command line, with the reason.
    Usage(&'static str),
}

/// Reads the command line from its first argument (after the program name) and
/// whether a second one follows.
fn parse(first: Option<&[u8]>, second_given: bool) -> Action {
    match first {
        None => Action::Usage("no command given"),
        Some(b"--version") => Action::Version,
        Some(b"-h" | b"--help") => Action::Help,
        Some(b"--pause") if !second_given => Action::Pause,
        Some(b"--pause") => Action::Usage("--pause takes no command"),
        Some(b"--") if second_given => Action::Run(2),
        Some(b"--") => Action::Usage("no command given after --"),
        Some(option) if option.starts_with(b"-") => {
            Action::Usage("unknown option (put -- before a command that starts with -)")
        }
        Some(_) => Action::Run(1),
    }
}

/// The C entry point: the C runtime calls it with the process's arguments.
///
/// # Safety
///
/// `argv` must hold `argc` pointers to NUL-terminated strings followed by a null
/// pointer, as the C runtime passes them.
#[cfg(not(test))]
#[no_mangle]
pub unsafe extern "C" fn main(argc: c_int, argv: *const *const c_char) -> c_int {
    let argc = usize::try_from(argc).unwrap_or(0);
    // SAFETY: the C runtime passes argc string pointers followed by a null pointer,
    // so argc + 1 pointers are readable; they live until the process ends.
    let argv = unsafe { std::slice::from_raw_parts(argv, argc.saturating_add(1)) };
    let arg = |i: usize| {
        argv.get(i)
            .filter(|p| !p.is_null())
            // SAFETY: a non-null pointer among main's argv is a NUL-terminated string
            // that lives as long as the process.
            .map(|&p| unsafe { CStr::from_ptr(p) })
    };
    match parse(arg(1).map(CStr::to_bytes), arg(2).is_some()) {
        Action::Version => {
            write_all(libc::STDOUT_FILENO, VERSION.as_bytes());
            0
        }
        Action::Help => {
            write_all(libc::STDOUT_FILENO, USAGE.as_bytes());
            0
        }
        Action::Pause => pause(),
        Action::Usage(why) => {
            say(&[b"berth-init: ", why.as_bytes(), b"\n", USAGE.as_bytes()]);
            EXIT_USAGE
        }
        // argv[start..] keeps main's terminating null pointer, as execvp wants.
        Action::Run(start) => match (arg(start), argv.get(start..)) {
            (Some(name), Some(command)) => run(name, command),
            _ => EXIT_USAGE,
        },
    }
}

/// Starts the command and supervises it; returns berth-init's exit status.
/// `command` is a null-terminated argv whose first string is `name`.
fn run(name: &CStr, command: &[*const c_char]) -> c_int {
    let signals = match Signals::take() {
        Ok(s) => s,
        Err(e) => return fatal(b"cannot take over signals", &e),
    };
    // SAFETY: berth-init is single-threaded, so the child may run any code after
    // fork; the child only runs `exec_command`, which execs or exits.
    let child = match unsafe { libc::fork() } {
        -1 => return fatal(b"fork", &io::Error::last_os_error()),
        0 => exec_command(name, command, &signals),
        pid => pid,
    };
    supervise(child, &signals)
}

/// `--pause`: reap whatever is orphaned into the pid namespace until SIGTERM or
/// SIGINT (any other signal is ignored, as a pause process does).
fn pause() -> c_int {
    let signals = match Signals::take() {
        Ok(s) => s,
        Err(e) => return fatal(b"cannot take over signals", &e),
    };
    loop {
        match signals.wait() {
            // 0 is never a child's pid: every exited child is reaped, none awaited.
            Ok(libc::SIGCHLD) => {
                reap(0);
            }
            Ok(libc::SIGTERM | libc::SIGINT) => return 0,
            Ok(_) => {}
            Err(e) => return fatal(b"wait for signals", &e),
        }
    }
}

/// The signal state berth-init takes over, and what it found there, which the
/// command gets back.
struct Signals {
    /// Every signal: blocked in berth-init and collected with `sigwaitinfo`.
    all: libc::sigset_t,
    /// The mask berth-init was started with.
    old_mask: libc::sigset_t,
    /// The SIGCHLD disposition berth-init was started with.
    old_sigchld: libc::sigaction,
}

impl Signals {
    /// Blocks every signal (so none is lost between now and `sigwaitinfo`) and sets
    /// SIGCHLD to its default disposition.
    ///
    /// Blocking the synchronous signals (SIGSEGV, SIGBUS, ...) is safe: when a fault
    /// raises one, the kernel unblocks it and kills berth-init as it would unblocked,
    /// while the same signals sent with kill(2) are forwarded like any other.
    fn take() -> io::Result<Signals> {
        // SAFETY: sigset_t and sigaction are plain C structs for which all-zero bytes
        // are a valid value; they are filled in below before being relied on.
        let (mut all, mut old_mask, mut old_sigchld, mut default): (
            libc::sigset_t,
            libc::sigset_t,
            libc::sigaction,
            libc::sigaction,
        ) = unsafe { std::mem::zeroed() };
        // SAFETY: `all` is a valid sigset_t owned by this frame.
        check(unsafe { libc::sigfillset(&mut all) })?;
        // SAFETY: both sets are valid sigset_t values owned by this frame.
        check(unsafe { libc::sigprocmask(libc::SIG_SETMASK, &all, &mut old_mask) })?;
        // An inherited SIG_IGN for SIGCHLD would make the kernel reap children itself
        // and throw their exit statuses away.
        default.sa_sigaction = libc::SIG_DFL;
        // SAFETY: `default.sa_mask` is a valid sigset_t owned by this frame.
        check(unsafe { libc::sigemptyset(&mut default.sa_mask) })?;
        // SAFETY: both sigaction structs are valid and owned by this frame; SIG_DFL
        // installs no handler.
        check(unsafe { libc::sigaction(libc::SIGCHLD, &default, &mut old_sigchld) })?;
        Ok(Signals {
            all,
            old_mask,
            old_sigchld,
        })
    }

    /// Puts back the mask and SIGCHLD disposition berth-init was started with.
    fn restore(&self) {
        // SAFETY: the struct and set were filled in by `take`; a null old-value
        // pointer is allowed. Failure would leave the state of `take`, which is
        // harmless, and cannot happen for valid arguments.
        unsafe {
            libc::sigaction(libc::SIGCHLD, &self.old_sigchld, ptr::null_mut());
            libc::sigprocmask(libc::SIG_SETMASK, &self.old_mask, ptr::null_mut());
        }
    }

    /// Blocks every signal again.
    fn block(&self) {
        // SAFETY: `all` was filled in by `take`; a null old-mask pointer is allowed.
        unsafe { libc::sigprocmask(libc::SIG_SETMASK, &self.all, ptr::null_mut()) };
    }

    /// Waits for the next signal and returns its number.
    fn wait(&self) -> io::Result<c_int> {
        loop {
            // SAFETY: `all` is a valid set; a null siginfo pointer is allowed.
            let signal = unsafe { libc::sigwaitinfo(&self.all, ptr::null_mut()) };
            if signal > 0 {
                return Ok(signal);
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
}

/// The child's side of `fork`: takes its own process group (and the terminal, if
/// berth-init's group held it), gets the original signal state back and execs the
/// command. Never returns.
fn exec_command(name: &CStr, command: &[*const c_char], signals: &Signals) -> ! {
    // SAFETY: isatty, tcgetpgrp and getpgrp take no pointers and only read state.
    let held_terminal = unsafe {
        libc::isatty(libc::STDIN_FILENO) == 1
            && libc::tcgetpgrp(libc::STDIN_FILENO) == libc::getpgrp()
    };
    // Failing either is not fatal: the command then runs in berth-init's group, where
    // it still gets every forwarded signal.
    // SAFETY: setpgid(0, 0) moves the calling process; it takes no pointers.
    unsafe { libc::setpgid(0, 0) };
    if held_terminal {
        // SIGTTOU is still blocked here, so a background caller is not stopped.
        // SAFETY: tcsetpgrp takes no pointers; our pid is now our group's id.
        unsafe { libc::tcsetpgrp(libc::STDIN_FILENO, libc::getpid()) };
    }
    signals.restore();
    // SAFETY: `command` is a slice of main's argv: NUL-terminated strings followed by
    // a null pointer, and its first element is the non-null string `name`.
    unsafe { libc::execvp(name.as_ptr(), command.as_ptr()) };
    let err = io::Error::last_os_error();
    let status = if err.raw_os_error() == Some(libc::ENOENT) {
        EXIT_NOT_FOUND
    } else {
        EXIT_NOT_EXECUTABLE
    };
    // With the signals unblocked, writing to a closed stderr would kill the child with
    // SIGPIPE and turn 126/127 into 141.
    signals.block();
    say(&[
        b"berth-init: cannot execute ",
        name.to_bytes(),
        b": ",
        describe(&err),
        b"\n",
    ]);
    // SAFETY: _exit takes no pointers; it skips atexit handlers and stdio buffers,
    // which belong to the parent.
    unsafe { libc::_exit(status) }
}

/// Forwards signals to the child and reaps zombies until the child has exited;
/// returns the child's status.
fn supervise(child: libc::pid_t, signals: &Signals) -> c_int {
    loop {
        let signal = match signals.wait() {
            Ok(s) => s,
            Err(e) => return fatal(b"wait for signals", &e),
        };
        if signal == libc::SIGCHLD {
            // SIGCHLD stays pending until collected and is collected only here, so
            // every exit is seen: one SIGCHLD may stand for several, and `reap`
            // takes all of them.
            if let Some(status) = reap(child) {
                return status;
            }
        } else {
            // The child is not reaped before the loop ends, so its pid cannot have
            // been reused; a zombie child ignores the signal.
            // SAFETY: kill takes no pointers.
            unsafe { libc::kill(child, signal) };
        }
    }
}

/// Reaps every child that has exited so far (the command and any orphan); returns
/// the command's status if it was among them.
fn reap(child: libc::pid_t) -> Option<c_int> {
    let mut status_of_child = None;
    loop {
        let mut status: c_int = 0;
        // SAFETY: `status` is a valid c_int for waitpid to write.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid > 0 {
            if pid == child {
                status_of_child = Some(exit_status(status));
            }
        } else if pid == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            // 0: children remain but none has exited; -1: ECHILD, no children left.
            return status_of_child;
        }
    }
}

/// The exit status a shell would report for a wait status.
fn exit_status(status: c_int) -> c_int {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        // waitpid reports only exits and deaths without WUNTRACED / WCONTINUED.
        EXIT_INTERNAL
    }
}

fn check(ret: c_int) -> io::Result<()> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The C library's text for an error.
fn describe(err: &io::Error) -> &'static [u8] {
    let Some(errno) = err.raw_os_error() else {
        return b"unknown error";
    };
    // SAFETY: strerror returns a NUL-terminated string that stays valid until the
    // next strerror call in this thread; berth-init has one thread and uses the
    // text before calling strerror again.
    unsafe { CStr::from_ptr(libc::strerror(errno)) }.to_bytes()
}

/// Reports a fatal error on stderr and returns the status to exit with.
fn fatal(what: &[u8], err: &io::Error) -> c_int {
    say(&[b"berth-init: ", what, b": ", describe(err), b"\n"]);
    EXIT_INTERNAL
}

/// Writes a message to stderr.
fn say(parts: &[&[u8]]) {
    for part in parts {
        write_all(libc::STDERR_FILENO, part);
    }
}

/// Writes all of `bytes` to `fd`, as far as it goes: a failed write of a message has
/// nowhere else to be reported.
fn write_all(fd: c_int, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a readable buffer of `bytes.len()` bytes.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        match usize::try_from(n) {
            Ok(0) => return,
            Ok(n) => bytes = bytes.get(n..).unwrap_or_default(),
            Err(_) if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_after_double_dash() {
        assert_eq!(parse(Some(b"--"), true), Action::Run(2));
    }

    #[test]
    fn command_without_double_dash() {
        assert_eq!(parse(Some(b"sh"), true), Action::Run(1));
        assert_eq!(parse(Some(b"sh"), false), Action::Run(1));
    }

    #[test]
    fn version_and_help() {
        assert_eq!(parse(Some(b"--version"), false), Action::Version);
        assert_eq!(parse(Some(b"--help"), false), Action::Help);
        assert_eq!(parse(Some(b"-h"), false), Action::Help);
        assert_eq!(parse(Some(b"--pause"), false), Action::Pause);
        assert!(matches!(parse(Some(b"--pause"), true), Action::Usage(_)));
    }

    #[test]
    fn bad_command_lines() {
        assert!(matches!(parse(None, false), Action::Usage(_)));
        assert!(matches!(parse(Some(b"--"), false), Action::Usage(_)));
        assert!(matches!(parse(Some(b"-g"), true), Action::Usage(_)));
    }

    #[test]
    fn exit_status_of_wait_status() {
        // Wait statuses as the kernel encodes them: code << 8, or the signal number.
        assert_eq!(exit_status(3 << 8), 3);
        assert_eq!(exit_status(libc::SIGKILL), 128 + 9);
        assert_eq!(exit_status(libc::SIGTERM | 0x80), 128 + 15); // with a core dump
    }

    #[test]
    fn describe_gives_the_c_library_text() {
        let e = io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(describe(&e), b"No such file or directory");
    }
}
