//! The engine's error type, and the one place where errors become HTTP status codes.
//!
//! Every handler returns [`EngineError`]; [`EngineError::status`] decides the code and
//! [`EngineError::message`] the `{"message": ...}` body, as dockerd does. Errors coming
//! from the manager arrive as `tonic::Status` and are mapped here too.

use http::StatusCode;

use crate::logs::LogError;
use crate::spec::SpecError;
use crate::store::StoreError;

/// What went wrong while answering a request.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A parameter or body the client sent is wrong (400).
    #[error("{0}")]
    BadParameter(String),
    /// The request (its body) is larger than berthd accepts (413).
    #[error("{0}")]
    TooLarge(String),
    /// The request body is not the JSON the endpoint expects (400).
    #[error("invalid JSON: {0}")]
    InvalidJson(#[source] serde_json::Error),
    /// The client's API version is above what berthd serves (400).
    #[error("client version {requested} is too new. Maximum supported API version is {max}")]
    VersionTooNew {
        requested: String,
        max: &'static str,
    },
    /// The client's API version is below what berthd serves (400).
    #[error("client version {requested} is too old. Minimum supported API version is {min}, please upgrade your client to a newer version")]
    VersionTooOld {
        requested: String,
        min: &'static str,
    },
    /// No route matches the method and path (404, dockerd's wording).
    #[error("page not found")]
    PageNotFound,
    /// A container id, name or prefix that matches nothing (404).
    #[error("No such container: {0}")]
    NoSuchContainer(String),
    /// An image reference that matches nothing (404).
    #[error("No such image: {0}")]
    NoSuchImage(String),
    /// An exec id that matches nothing (404).
    #[error("No such exec instance: {0}")]
    NoSuchExec(String),
    /// A volume name that matches nothing (404).
    #[error("get {0}: no such volume")]
    NoSuchVolume(String),
    /// Something else that does not exist (404), with the full message.
    #[error("{0}")]
    NotFound(String),
    /// Credentials a registry refused (`POST /auth`).
    #[error("{0}")]
    Unauthorized(String),
    /// The request conflicts with the object's state (409), e.g. removing a running container.
    #[error("{0}")]
    Conflict(String),
    /// The container is not running when it must be (409).
    #[error("Container {0} is not running")]
    NotRunning(String),
    /// A start failed because the command is missing (exit code 127) or cannot be
    /// run (126): the client's configuration is at fault (400), as with dockerd.
    #[error("{message}")]
    StartFailed { code: i64, message: String },
    /// The endpoint exists but this feature is not there yet (501).
    #[error("{0}")]
    NotImplemented(String),
    /// This node has no swarm (503, what dockerd answers without swarm mode).
    #[error("This node is not part of a swarm")]
    NoSwarm,
    /// The manager cannot be reached (500, with the socket in the message).
    #[error("cannot reach berth-manager at {socket}: {reason}")]
    ManagerUnavailable { socket: String, reason: String },
    /// The manager answered with an error; its gRPC code decides the HTTP code.
    #[error("{message}")]
    Manager { code: tonic::Code, message: String },
    /// Reading or writing the engine's own files failed (500).
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Building the OCI runtime spec failed.
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    /// The container store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Reading a container's log failed.
    #[error(transparent)]
    Logs(#[from] crate::logs::LogError),
    /// A failure with no better class, answered as dockerd does (500): e.g. a
    /// build that fails before it has written anything.
    #[error("{0}")]
    Failed(String),
    /// A network operation failed; it knows its own status code.
    #[error(transparent)]
    Network(#[from] crate::network::NetworkError),
}

impl EngineError {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        EngineError::Io {
            context: context.into(),
            source,
        }
    }

    /// The HTTP status dockerd would answer with.
    pub fn status(&self) -> StatusCode {
        use EngineError::*;
        match self {
            BadParameter(_)
            | InvalidJson(_)
            | VersionTooNew { .. }
            | VersionTooOld { .. }
            | StartFailed { .. } => StatusCode::BAD_REQUEST,
            PageNotFound | NoSuchContainer(_) | NoSuchImage(_) | NoSuchExec(_)
            | NoSuchVolume(_) | NotFound(_) => StatusCode::NOT_FOUND,
            Conflict(_) | NotRunning(_) => StatusCode::CONFLICT,
            Unauthorized(_) => StatusCode::UNAUTHORIZED,
            NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            NoSwarm => StatusCode::SERVICE_UNAVAILABLE,
            TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ManagerUnavailable { .. } | Io { .. } | Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Manager { code, .. } => status_for_grpc(*code),
            Spec(e) => match e {
                SpecError::Invalid(_) | SpecError::User(_) => StatusCode::BAD_REQUEST,
                SpecError::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
                SpecError::Oci(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
            Store(e) => match e {
                StoreError::NoSuchContainer(_) => StatusCode::NOT_FOUND,
                StoreError::NameConflict { .. } => StatusCode::CONFLICT,
                StoreError::InvalidName(_) | StoreError::AmbiguousPrefix(_) => {
                    StatusCode::BAD_REQUEST
                }
                StoreError::Io { .. } | StoreError::Encode { .. } => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            },
            Logs(e) => match e {
                LogError::BadTimestamp { .. } | LogError::BadTail(_) => StatusCode::BAD_REQUEST,
                LogError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            },
            Network(e) => e.status(),
        }
    }

    /// The body's message: for a store error that wraps one of ours, the inner text.
    pub fn message(&self) -> String {
        self.to_string()
    }
}

/// Maps a gRPC code from the manager to the HTTP code dockerd would use for the same fault.
pub fn status_for_grpc(code: tonic::Code) -> StatusCode {
    match code {
        tonic::Code::NotFound => StatusCode::NOT_FOUND,
        tonic::Code::AlreadyExists | tonic::Code::FailedPrecondition => StatusCode::CONFLICT,
        tonic::Code::InvalidArgument | tonic::Code::OutOfRange => StatusCode::BAD_REQUEST,
        tonic::Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        tonic::Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<tonic::Status> for EngineError {
    fn from(status: tonic::Status) -> Self {
        EngineError::Manager {
            code: status.code(),
            message: status.message().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_map_to_dockers_http_codes() {
        let cases = [
            (tonic::Code::NotFound, 404),
            (tonic::Code::AlreadyExists, 409),
            (tonic::Code::InvalidArgument, 400),
            (tonic::Code::FailedPrecondition, 409),
            (tonic::Code::Internal, 500),
            (tonic::Code::Unknown, 500),
            (tonic::Code::PermissionDenied, 500),
        ];
        for (code, http) in cases {
            let e = EngineError::from(tonic::Status::new(code, "boom"));
            assert_eq!(e.status().as_u16(), http, "{code:?}");
            assert_eq!(e.message(), "boom");
        }
    }

    #[test]
    fn messages_match_dockerd() {
        let e = EngineError::from(StoreError::NameConflict {
            name: "/x".into(),
            id: "abc".into(),
        });
        assert_eq!(
            e.message(),
            "Conflict. The container name \"/x\" is already in use by container \"abc\". \
             You have to remove (or rename) that container to be able to reuse that name."
        );
        assert_eq!(e.status(), StatusCode::CONFLICT);
        assert_eq!(
            EngineError::NoSuchContainer("foo".into()).message(),
            "No such container: foo"
        );
        assert_eq!(EngineError::PageNotFound.status(), StatusCode::NOT_FOUND);
        assert_eq!(EngineError::NoSwarm.status().as_u16(), 503);
        let new = EngineError::VersionTooNew {
            requested: "1.99".into(),
            max: "1.47",
        };
        assert_eq!(
            new.message(),
            "client version 1.99 is too new. Maximum supported API version is 1.47"
        );
        assert_eq!(new.status(), StatusCode::BAD_REQUEST);
    }
}
