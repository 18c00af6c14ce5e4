//! Leaving the starter behind. The shim forks before anything else runs (no
//! threads exist yet); the child starts a new session, moves its stdio to /dev/null
//! and its log file, and reports on a pipe once it serves its socket. The parent
//! waits for that report and exits 0, or 1 with the child's error on stderr, so the
//! starter knows the shim is ready when the command returns.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::unistd::{fork, setsid, ForkResult};

/// Errors becoming a daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("creating the readiness pipe: {0}")]
    Pipe(std::io::Error),
    #[error("opening {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("fork: {0}")]
    Fork(Errno),
    #[error("setsid: {0}")]
    Setsid(Errno),
    #[error("redirecting stdio: {0}")]
    Dup(Errno),
    #[error("changing directory to /: {0}")]
    Chdir(std::io::Error),
}

/// The daemon's end of the readiness pipe.
#[derive(Debug)]
pub struct Readiness {
    pipe: Option<File>,
}

const READY: &[u8] = b"ready";

impl Readiness {
    /// No one is waiting (foreground mode).
    pub fn none() -> Readiness {
        Readiness { pipe: None }
    }

    /// The socket is served: let the starter go.
    pub fn ready(&mut self) {
        if let Some(mut p) = self.pipe.take() {
            let _ = p.write_all(READY);
        }
    }

    /// Startup failed: the starter prints `message` and exits 1.
    pub fn fail(&mut self, message: &str) {
        if let Some(mut p) = self.pipe.take() {
            let _ = p.write_all(message.as_bytes());
        }
    }
}

/// Fork; in the parent wait for the child's report and exit, in the child become a
/// session leader with stdin on /dev/null and stdout/stderr on `log`.
///
/// Must be called while the process has a single thread.
pub fn daemonize(log: &Path) -> Result<Readiness, DaemonError> {
    let open = |path: &Path, write: bool| {
        std::fs::OpenOptions::new()
            .read(!write)
            .append(write)
            .create(write)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|source| DaemonError::Open {
                path: path.to_path_buf(),
                source,
            })
    };
    let null = open(Path::new("/dev/null"), false)?;
    let log_file = open(log, true)?;
    let (read, write) = crate::fdio::pipe().map_err(DaemonError::Pipe)?;

    // SAFETY: the shim never starts a thread (its poll loop runs on the main one),
    // so the child is a full copy of a single-threaded process and may go on
    // running normal Rust code.
    match unsafe { fork() }.map_err(DaemonError::Fork)? {
        ForkResult::Parent { .. } => {
            drop(write);
            std::process::exit(wait_for_child(read))
        }
        ForkResult::Child => {
            drop(read);
            setsid().map_err(DaemonError::Setsid)?;
            std::env::set_current_dir("/").map_err(DaemonError::Chdir)?;
            nix::unistd::dup2_stdin(&null).map_err(DaemonError::Dup)?;
            nix::unistd::dup2_stdout(&log_file).map_err(DaemonError::Dup)?;
            nix::unistd::dup2_stderr(&log_file).map_err(DaemonError::Dup)?;
            Ok(Readiness {
                pipe: Some(File::from(write)),
            })
        }
    }
}

/// The starter's side: 0 once the daemon is ready, 1 (after printing why) if not.
fn wait_for_child(read: OwnedFd) -> i32 {
    let mut report = Vec::new();
    // EOF comes when the daemon reports, or dies without reporting.
    let _ = File::from(read).read_to_end(&mut report);
    if report == READY {
        return 0;
    }
    let message = if report.is_empty() {
        "the shim exited during startup (see shim.log in the task directory)".to_string()
    } else {
        String::from_utf8_lossy(&report).into_owned()
    };
    eprintln!("berth-shim: {message}");
    1
}
