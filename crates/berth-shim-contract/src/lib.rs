//! The contract between berth-manager and berth-shim, and nothing else: how a shim
//! is started (its command line, [`cli`], with its log level), where it keeps what
//! outlives it (the task directory and the exit record, [`layout`]) and how it is
//! dialled ([`client`]). Both sides depend on this crate; the manager links nothing
//! else of the shim.
//!
//! It must never grow the shim's behaviour (running the runtime, stdio, reaping) or
//! the manager's: a change here is a change of the protocol between two programs
//! that are upgraded separately, and an old shim must still be found and understood
//! by a new manager.

pub mod cli;
pub mod client;
pub mod layout;

pub use cli::{Args, LogLevel};
pub use client::connect;
pub use layout::{ExitRecord, LayoutError, TaskDir};
