//! The gRPC services: one file per service, each a thin adapter that turns
//! requests into [`Daemon`] or store calls. Errors become status codes only
//! through `From<DaemonError> for Status` (`error.rs`).

// Numbers here come from requests: no narrowing `as` (see the workspace lints).
#![deny(clippy::cast_possible_truncation)]

mod containers;
mod content;
mod events;
mod images;
mod snapshots;
mod tasks;
mod version;

use std::sync::Arc;

use tonic::{Response, Status};

use super::core::Daemon;

/// What every service method returns.
pub type Res<T> = Result<Response<T>, Status>;

/// The services' shared handle on the daemon (every service trait is
/// implemented on it).
#[derive(Debug, Clone)]
pub struct Svc {
    pub d: Arc<Daemon>,
}
