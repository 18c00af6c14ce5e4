//! The crate's error: one enum over the modules' own errors plus what the
//! container's lifecycle refuses (wrong status, a process that will not die).
//! The binary turns it into one line on stderr and an exit code
//! ([`Error::exit_code`]); nothing here knows about the command line.

use std::path::PathBuf;

use crate::cgroups::CgroupError;
use crate::hooks::HookError;
use crate::process::ProcessError;
use crate::signal::UnknownSignal;
use crate::state::{StateError, Status};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Hook(#[from] HookError),
    #[error(transparent)]
    Signal(#[from] UnknownSignal),
    #[error("container {id} is not running")]
    NotRunning { id: String },
    #[error("container {id} is not paused: {status}")]
    NotPaused { id: String, status: Status },
    #[error("cannot delete container {id} that is not stopped: {status}")]
    NotStopped { id: String, status: Status },
    #[error("cannot start a container that has stopped")]
    StartStopped,
    #[error("cannot start an already running container")]
    AlreadyRunning,
    #[error("container {id} is not in created state: {status}")]
    NotCreated { id: String, status: Status },
    #[error("container {id}: its init exited before it was started")]
    InitGone { id: String },
    #[error("container {id}: init {pid} did not die within {secs}s of SIGKILL")]
    WouldNotDie { id: String, pid: i32, secs: u64 },
    #[error("sending {signal} to pid {pid}: {source}")]
    Kill {
        signal: String,
        pid: i32,
        #[source]
        source: nix::Error,
    },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Sys {
        what: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("{what} is not valid JSON: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
}

impl Error {
    /// The runtime's exit code for this error: 127 or 126 for a program that is
    /// missing or cannot be executed (as a shell reports it), else 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Process(e) => e.exit_code(),
            _ => 1,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
