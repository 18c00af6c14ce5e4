//! The parts of berthd's OCI spec generation that the CRI server needs too: Docker's
//! default capabilities, masked paths and device rules, its default seccomp profile
//! and the resolution of users against an image's own /etc/passwd and /etc/group.
//! They are compiled here from berth-engine's own files, so that both sides of
//! berth confine containers alike and no copy drifts from the other.

/// What the engine's modules fail with.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The configuration is wrong (the client's fault).
    #[error("{0}")]
    Invalid(String),
    /// The configuration asks for something berth does not do.
    #[error("{0}")]
    Unsupported(String),
}

#[allow(dead_code)]
#[path = "../../../../berth-engine/src/spec/defaults.rs"]
pub mod defaults;
#[allow(dead_code)]
#[path = "../../../../berth-engine/src/spec/seccomp.rs"]
pub mod seccomp;
#[allow(dead_code)]
#[path = "../../../../berth-engine/src/spec/user.rs"]
pub mod user;
