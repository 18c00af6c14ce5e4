//! The contract between berth-manager and berth-shim, and nothing else: how a shim
//! is started (its command line, [`cli`], with its log level), where it keeps what
//! outlives it (the task directory and the exit record, [`layout`]), the protocol
//! it speaks on its socket ([`wire`]) and how it is dialled ([`client`], with the
//! `client` feature). Both sides depend on this crate; the manager links nothing
//! else of the shim.
//!
//! It must never grow the shim's behaviour (running the runtime, stdio, reaping) or
//! the manager's: a change here is a change of the protocol between two programs
//! that are upgraded separately, and an old shim must still be found and understood
//! by a new manager.

pub mod cli;
#[cfg(feature = "client")]
pub mod client;
pub mod layout;
pub mod wire;

pub use cli::{Args, LogLevel};
#[cfg(feature = "client")]
pub use client::{connect, AttachStream, ShimClient};
pub use layout::{ExitRecord, LayoutError, TaskDir};
pub use wire::pb;
