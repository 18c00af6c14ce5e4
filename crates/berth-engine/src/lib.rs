//! berthd, the engine: the Docker Engine API on a unix socket, over berth-manager.
//!
//! The HTTP layer (`server`, `router`, `api`) parses requests and renders answers;
//! what a request changes about a container happens in the state machine
//! ([`lifecycle`]), whose exits arrive through the engine's link to the manager
//! ([`link`]). Below them: the container store, the OCI spec generator, the log
//! reader and the [`manager::Manager`] seam; `error` maps every failure to Docker's
//! status codes in one place.

pub mod api;
pub mod build;
pub mod changelog;
pub mod engine;
pub mod error;
pub mod events;
pub mod fsutil;
pub mod health;
pub mod lifecycle;
pub mod link;
pub mod logs;
pub mod manager;
pub mod network;
pub mod router;
pub mod server;
pub mod spec;
pub mod store;
pub mod stream;
