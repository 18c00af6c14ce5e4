//! berth-manager's storage half: everything on disk that containers are made from.
//!
//! Its job: a content-addressed blob store ([`content`]), the image index, snapshots
//! and leases in a crash-safe database ([`metadata`]), image formats ([`images`]),
//! layer unpacking with overlay whiteouts and path safety ([`unpack`]), the overlay
//! snapshotter ([`snapshots`]), `import`, `load`/`save` ([`archive`]), registry
//! pull/push ([`registry`]), `diff`/`export`/`commit` ([`diff`]) and garbage
//! collection ([`gc`]). [`store::Store`] opens all of it under one root directory and
//! is what the daemon uses.
//!
//! What it must never do: speak Docker's API (that is berthd's), or hold a
//! container's stdio (that is the shim's). The overlay and unpack parts are plain
//! blocking code, usable from any thread (the daemon calls them with
//! `spawn_blocking`); only the registry code is async.

pub mod archive;
pub mod content;
pub mod diff;
pub mod gc;
pub mod images;
pub mod import;
pub mod metadata;
pub mod registry;
pub mod snapshots;
pub mod store;
pub mod unpack;

pub use content::Digest;
pub use store::{Image, Store, StoreError};
