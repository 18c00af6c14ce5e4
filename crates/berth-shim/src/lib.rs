//! berth-shim: one process per container, between the manager and the OCI runtime.
//!
//! The shim is started by the manager (see [`cli`] for the command line), leaves
//! its starter behind ([`daemon`]), and serves the `berth.shim.v1` calls
//! ([`service`], framed as the contract's [`wire`] says) on `<task dir>/shim.sock`.
//! It drives the runtime binary through runc's command line ([`runtime`]), so
//! berth-runtime, runc and crun all work; it is a child subreaper and the only
//! reaper of its children ([`reaper`]); it mounts the rootfs ([`mounts`]); it owns
//! the container's stdio and writes its log in Docker's json-file format
//! ([`stdio`], rotated by the bundle's `berth.log.max-size`/`max-file`
//! annotations) or Kubernetes' CRI format ([`crilog`]); and it records the init's
//! exit status to `exit.json` before reporting it ([`task`], [`layout`]), so a
//! manager that restarts finds everything again.
//!
//! The library exists for the binary and its tests. What the manager needs of the
//! shim (its command line, task directory, protocol and client) is in
//! `berth-shim-contract`, re-exported here as [`cli`], [`layout`] and [`wire`].

pub mod crilog;
pub mod daemon;
pub mod error;
mod fdio;
mod logger;
pub mod mounts;
pub mod oom;
pub mod reaper;
pub mod runtime;
pub mod server;
pub mod service;
pub mod stdio;
pub mod task;
mod time;

// The manager-shim contract (command line, task directory, client) is its own
// crate, which the manager depends on instead of this one.
pub use berth_shim_contract::{cli, layout, wire};

pub use cli::Args;
pub use layout::{ExitRecord, TaskDir};
