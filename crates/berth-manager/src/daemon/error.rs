//! The daemon's request errors and the one place they become gRPC status codes
//! ([`From<DaemonError> for Status`]). Storage errors keep their own type
//! ([`StoreError`]) and are mapped here too, variant by variant.

use std::path::PathBuf;

use berth_manager::content::ContentError;
use berth_manager::registry::RegistryError;
use berth_manager::snapshots::SnapshotError;
use berth_manager::StoreError;
use tonic::{Code, Status};

use super::containers::DbError;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("container {0:?} not found")]
    ContainerNotFound(String),
    #[error("container {0:?} already exists")]
    ContainerExists(String),
    #[error("container {0:?} has no task")]
    NoTask(String),
    #[error("container {0:?} already has a task")]
    TaskExists(String),
    #[error("container {0:?} has a task: delete the task first")]
    ContainerHasTask(String),
    #[error("invalid id {0:?}: use 1 to 128 letters, digits, '-', '_' or '.', starting with a letter or digit")]
    BadId(String),
    #[error("a {0} is required")]
    Missing(&'static str),
    #[error("the spec of container {id:?} is not a JSON object: {why}")]
    BadSpec { id: String, why: String },
    #[error("container {id:?} has neither a snapshot nor an absolute root.path in its spec")]
    NoRootfs { id: String },
    #[error("log path {0:?} must be absolute")]
    RelativeLogPath(String),
    #[error("invalid filter {0:?}")]
    BadFilter(String),
    #[error("cannot update field {0:?} (updatable: spec, labels, log_path, runtime, image)")]
    BadUpdateField(String),
    #[error("invalid JSON in {what}: {source}")]
    BadJson {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("invalid digest {0:?}")]
    BadDigest(String),
    #[error("the first attach request must name a container")]
    AttachNoContainer,
    #[error("OCI runtime {0:?} not found (a path, or a name in PATH or next to berth-manager)")]
    RuntimeNotFound(String),
    #[error("berth-shim not found at {0}")]
    ShimNotFound(PathBuf),
    #[error("the socket path {0} is longer than a unix socket address allows (107 bytes): use a shorter --state directory or container id")]
    SocketPathTooLong(PathBuf),
    #[error("starting berth-shim for container {id:?}: {message}")]
    ShimStart { id: String, message: String },
    #[error("connecting to the shim of container {id:?} at {socket}: {source}")]
    ShimConnect {
        id: String,
        socket: PathBuf,
        source: std::io::Error,
    },
    #[error("the task of container {id:?} has stopped: {reason}")]
    TaskGone { id: String, reason: String },
    /// The shim answered with an error; its code is kept.
    #[error("container {id:?}: {}", status.message())]
    Shim { id: String, status: Status },
    #[error("the shim of container {id:?} sent an invalid answer: {why}")]
    ShimAnswer { id: String, why: String },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a background job failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Layout(#[from] berth_shim_contract::layout::LayoutError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl DaemonError {
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DaemonError::Io {
            what,
            path: path.into(),
            source,
        }
    }

    /// The gRPC code this error is reported with.
    pub fn code(&self) -> Code {
        match self {
            DaemonError::ContainerNotFound(_) | DaemonError::NoTask(_) => Code::NotFound,
            DaemonError::ContainerExists(_) | DaemonError::TaskExists(_) => Code::AlreadyExists,
            DaemonError::BadId(_)
            | DaemonError::Missing(_)
            | DaemonError::BadSpec { .. }
            | DaemonError::NoRootfs { .. }
            | DaemonError::RelativeLogPath(_)
            | DaemonError::BadFilter(_)
            | DaemonError::BadUpdateField(_)
            | DaemonError::BadJson { .. }
            | DaemonError::BadDigest(_)
            | DaemonError::AttachNoContainer
            | DaemonError::SocketPathTooLong(_) => Code::InvalidArgument,
            DaemonError::ContainerHasTask(_)
            | DaemonError::RuntimeNotFound(_)
            | DaemonError::TaskGone { .. } => Code::FailedPrecondition,
            DaemonError::Shim { status, .. } => status.code(),
            DaemonError::ShimNotFound(_)
            | DaemonError::ShimStart { .. }
            | DaemonError::ShimConnect { .. }
            | DaemonError::ShimAnswer { .. }
            | DaemonError::Io { .. }
            | DaemonError::Join(_)
            | DaemonError::Db(_)
            | DaemonError::Layout(_) => Code::Internal,
            DaemonError::Store(e) => store_code(e),
        }
    }
}

/// The code of a storage error: what the caller did wrong, or what broke.
fn store_code(e: &StoreError) -> Code {
    match e {
        StoreError::ImageNotFound(_) => Code::NotFound,
        StoreError::Ambiguous(_) => Code::InvalidArgument,
        StoreError::ImageInUse { .. }
        | StoreError::HasChildren(_)
        | StoreError::NotWritable(_)
        | StoreError::Locked(_) => Code::FailedPrecondition,
        StoreError::DiffIdMismatch { .. } | StoreError::LayerCount(_) => Code::InvalidArgument,
        StoreError::Content(c) => match c {
            ContentError::NotFound(_) => Code::NotFound,
            ContentError::InvalidDigest(_)
            | ContentError::DigestMismatch { .. }
            | ContentError::SizeMismatch { .. }
            | ContentError::TooLarge { .. } => Code::InvalidArgument,
            ContentError::Io { .. } => Code::Internal,
        },
        StoreError::Snapshot(s) => match s {
            SnapshotError::NotFound(_) => Code::NotFound,
            SnapshotError::AlreadyExists(_) => Code::AlreadyExists,
            SnapshotError::ParentNotCommitted(_)
            | SnapshotError::NotActive(_)
            | SnapshotError::HasChildren { .. }
            | SnapshotError::TooManyLayers(_) => Code::FailedPrecondition,
            SnapshotError::Metadata(_) | SnapshotError::Io { .. } => Code::Internal,
        },
        // A layer that cannot be unpacked, a reference, manifest, config or change
        // line that does not parse, an archive that is not one: the input's fault.
        StoreError::Unpack(u) => match u {
            berth_manager::unpack::UnpackError::Apply { .. } => Code::Internal,
            _ => Code::InvalidArgument,
        },
        StoreError::Image(_) | StoreError::Import(_) => Code::InvalidArgument,
        StoreError::Archive(a) => match a {
            berth_manager::archive::ArchiveError::Write(_) => Code::Internal,
            _ => Code::InvalidArgument,
        },
        StoreError::Registry(r) => match r {
            RegistryError::Client { source, .. } => {
                use oci_client::errors::OciDistributionError as E;
                match source {
                    E::ImageManifestNotFoundError(_) => Code::NotFound,
                    E::AuthenticationFailure(_) | E::UnauthorizedError { .. } => {
                        Code::Unauthenticated
                    }
                    // A registry out of reach (RequestError, IoError) too: Internal,
                    // not Unavailable, which berthd takes for the manager itself
                    // being out of reach and would say so instead of the registry's
                    // failure (dockerd answers 500 here).
                    _ => Code::Internal,
                }
            }
            RegistryError::Digest { .. } => Code::DataLoss,
            RegistryError::TooLarge { .. } => Code::InvalidArgument,
            // A registry that cannot be reached is dockerd's 500, not Unavailable (which
            // berthd takes for the manager itself being out of reach).
            RegistryError::Login { status, .. } => match status {
                401 | 403 => Code::Unauthenticated,
                _ => Code::Internal,
            },
            RegistryError::Manifest { status, .. } => match status {
                404 => Code::NotFound,
                401 | 403 => Code::Unauthenticated,
                400..=499 => Code::InvalidArgument,
                _ => Code::Internal,
            },
            RegistryError::Task(_) => Code::Internal,
        },
        StoreError::Metadata(_) | StoreError::Diff(_) | StoreError::Io { .. } => Code::Internal,
    }
}

/// The most bytes of an error message that cross gRPC. The message travels in an
/// HTTP/2 header (`grpc-message`): one long enough to overflow the peer's header
/// limit makes it tear the whole connection down, and every other call on it with
/// it. The rest of a longer message goes to the log.
pub const MAX_STATUS_MESSAGE: usize = 1024;

/// A status whose message is at most [`MAX_STATUS_MESSAGE`] bytes: a longer one is
/// cut on a character boundary, says how much was left out, and is logged whole.
pub fn bounded_status(code: Code, message: &str) -> Status {
    if message.len() <= MAX_STATUS_MESSAGE {
        return Status::new(code, message);
    }
    const NOTE: usize = 64;
    let mut cut = MAX_STATUS_MESSAGE - NOTE;
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    tracing::warn!(
        ?code,
        "error message cut to {cut} bytes for the client: {message}"
    );
    Status::new(
        code,
        format!(
            "{}... ({} more bytes in berth-manager's log)",
            &message[..cut],
            message.len() - cut
        ),
    )
}

impl From<DaemonError> for Status {
    fn from(e: DaemonError) -> Status {
        let code = e.code();
        if code == Code::Internal {
            tracing::warn!("internal error: {e}");
        }
        bounded_status(code, &e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let short = bounded_status(Code::InvalidArgument, "bad name");
        assert_eq!(short.message(), "bad name");
        let long = format!("bad name {}", "é".repeat(40_000));
        let s = bounded_status(Code::InvalidArgument, &long);
        assert!(
            s.message().len() <= MAX_STATUS_MESSAGE,
            "{}",
            s.message().len()
        );
        assert!(s.message().starts_with("bad name é"));
        assert!(s.message().ends_with("more bytes in berth-manager's log)"));
        assert_eq!(s.code(), Code::InvalidArgument);
        let e = DaemonError::BadFilter("x".repeat(70_000));
        assert!(Status::from(e).message().len() <= MAX_STATUS_MESSAGE);
    }
}
