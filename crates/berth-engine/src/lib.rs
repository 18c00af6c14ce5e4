//! berthd, the engine: the Docker Engine API on a unix socket, over berth-manager.
//!
//! The HTTP layer (`server`, `router`, `api`) turns requests into calls on the
//! container store, the OCI spec generator, the log reader and the [`manager::Manager`]
//! seam; `error` maps every failure to Docker's status codes in one place.

pub mod api;
pub mod build;
pub mod engine;
pub mod error;
pub mod events;
pub mod fsutil;
pub mod health;
pub mod logs;
pub mod manager;
pub mod network;
pub mod router;
pub mod server;
pub mod spec;
pub mod store;
pub mod stream;
