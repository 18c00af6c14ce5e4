//! The shim's request errors and the one place they become status codes (gRPC's
//! numbers, see the contract's `wire`).

use std::path::PathBuf;

use crate::wire::{Code, RpcStatus};

use crate::layout::LayoutError;
use crate::mounts::MountError;
use crate::runtime::RuntimeError;
use crate::stdio::IoError;
use crate::task::ProcessStatus;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("no task: Create has not been called")]
    NoTask,
    #[error("no process with exec id {0:?}")]
    NoProcess(String),
    #[error("the task already exists")]
    TaskExists,
    #[error("a process with exec id {0:?} already exists")]
    ProcessExists(String),
    #[error("exec id {0:?} is invalid: use 1 to 64 letters, digits, '-', '_' or '.', not starting with '.'")]
    BadExecId(String),
    #[error("the process is not valid JSON: {0}")]
    ProcessJson(serde_json::Error),
    #[error("the process must be a JSON object with a non-empty \"args\" array")]
    ProcessNoArgs,
    #[error("{0} is not a signal number")]
    BadSignal(u32),
    #[error("the resources are not a JSON object: {0}")]
    ResourcesJson(serde_json::Error),
    #[error("the resources are {0} bytes, more than the {max} accepted", max = crate::task::MAX_RESOURCES)]
    ResourcesTooLarge(usize),
    #[error("kill --all applies to the init process only")]
    KillAllExec,
    #[error("terminal size {width}x{height} is out of range")]
    BadSize { width: u32, height: u32 },
    #[error("the first attach request must name the process")]
    AttachNoProcess,
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("log path {0} must be absolute")]
    RelativeLogPath(PathBuf),
    #[error("cannot {action}: the process is {status}")]
    WrongState {
        action: &'static str,
        status: ProcessStatus,
    },
    #[error("cannot {action}: the container's init is {status}")]
    ContainerNotRunning {
        action: &'static str,
        status: ProcessStatus,
    },
    #[error("cannot {action}: the task is deleted and the shim is exiting")]
    Deleted { action: &'static str },
    #[error("reading the bundle's config {path}: {source}")]
    Bundle {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the bundle's config {path} is not valid JSON: {source}")]
    BundleJson {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("writing {path}: {source}")]
    WriteFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("signalling pid {pid}: {errno}")]
    Signal { pid: u32, errno: nix::errno::Errno },
    #[error("finishing the delete: {0}")]
    Finish(String),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error(transparent)]
    Io(#[from] IoError),
    #[error(transparent)]
    Layout(#[from] LayoutError),
}

impl ShimError {
    /// The code this error is reported with.
    pub fn code(&self) -> Code {
        match self {
            ShimError::NoTask | ShimError::NoProcess(_) => Code::NotFound,
            ShimError::TaskExists | ShimError::ProcessExists(_) => Code::AlreadyExists,
            ShimError::BadExecId(_)
            | ShimError::ProcessJson(_)
            | ShimError::ProcessNoArgs
            | ShimError::BadSignal(_)
            | ShimError::ResourcesJson(_)
            | ShimError::ResourcesTooLarge(_)
            | ShimError::KillAllExec
            | ShimError::BadSize { .. }
            | ShimError::AttachNoProcess
            | ShimError::BadRequest(_)
            | ShimError::RelativeLogPath(_)
            | ShimError::BundleJson { .. } => Code::InvalidArgument,
            ShimError::Mount(e) if e.is_invalid_request() => Code::InvalidArgument,
            // The runtime refusing to create or exec is how a bad spec shows
            // (an unknown executable, an impossible mount): the request's fault.
            ShimError::Runtime(RuntimeError::Failed { command, .. })
                if command == "create" || command == "run" || command == "exec" =>
            {
                Code::InvalidArgument
            }
            ShimError::WrongState { .. }
            | ShimError::ContainerNotRunning { .. }
            | ShimError::Deleted { .. }
            | ShimError::Io(
                IoError::NoStdin | IoError::StdinClosed | IoError::NoTerminal | IoError::NoConsole,
            ) => Code::FailedPrecondition,
            ShimError::Bundle { .. }
            | ShimError::WriteFile { .. }
            | ShimError::Signal { .. }
            | ShimError::Finish(_)
            | ShimError::Runtime(_)
            | ShimError::Mount(_)
            | ShimError::Io(_)
            | ShimError::Layout(_) => Code::Internal,
        }
    }
}

/// The most bytes of an error message sent to the manager, which hands it on in a
/// gRPC status (an HTTP/2 header that must fit its peer's limit). The whole message
/// goes to the shim's log.
pub const MAX_STATUS_MESSAGE: usize = 1024;

impl From<ShimError> for RpcStatus {
    fn from(e: ShimError) -> RpcStatus {
        let message = e.to_string();
        if message.len() <= MAX_STATUS_MESSAGE {
            return RpcStatus::new(e.code(), message);
        }
        let mut cut = MAX_STATUS_MESSAGE - 64;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        tracing::warn!("error message cut to {cut} bytes for the manager: {message}");
        RpcStatus::new(
            e.code(),
            format!(
                "{}... ({} more bytes in the shim's log)",
                &message[..cut],
                message.len() - cut
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_for_the_manager() {
        let s = RpcStatus::from(ShimError::NoProcess("ü".repeat(50_000)));
        assert!(s.message.len() <= MAX_STATUS_MESSAGE);
        assert!(s.message.ends_with("more bytes in the shim's log)"));
        assert_eq!(s.code, ShimError::NoProcess(String::new()).code() as u32);
        let s = RpcStatus::from(ShimError::NoTask);
        assert_eq!(s.message, "no task: Create has not been called");
    }
}
