//! Kubernetes' Container Runtime Interface, v1 (`runtime.v1.RuntimeService` and
//! `runtime.v1.ImageService`), generated at build time from the vendored
//! `proto/k8s/runtime/v1/api.proto` (see build.rs). berth-manager serves it; tests
//! use its clients.
//!
//! What it must never hold: hand-written logic. The module follows the protobuf
//! package: `runtime::v1`.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

include!(concat!(env!("OUT_DIR"), "/_includes.rs"));

/// The protobuf runtime the messages are built on (to encode and decode them).
pub use prost;
