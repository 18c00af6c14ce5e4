//! The manager daemon: content, images, snapshots, containers and tasks served over
//! gRPC on a unix socket ([`server`]), one gRPC adapter per service ([`service`]),
//! the state they share ([`core`]), the task lifecycle and the shims
//! ([`lifecycle`], [`task`]), finding the tasks again after a restart
//! ([`recover`]), the event bus ([`events`]), and Kubernetes' CRI on a socket of
//! its own when enabled ([`cri`]).
//!
//! What it must never do: speak Docker's API (berthd does), hold a container's
//! stdio (its shim does), or be the parent of a shim (shims outlive it).

mod config;
mod containers;
mod core;
mod cri;
mod error;
mod events;
mod lifecycle;
mod ocispec;
mod recover;
mod server;
mod service;
mod stream;
mod task;

/// Now, as RFC 3339 with nanoseconds (UTC).
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Entry point of the binary.
pub fn main() -> std::process::ExitCode {
    server::main()
}
