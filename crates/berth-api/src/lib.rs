//! berth's gRPC API, generated at build time from the `.proto` files in `proto/berth/`
//! (see build.rs). Modules follow the protobuf packages: `berth::manager::v1` holds
//! the manager's services. The shim's messages (`berth.shim.v1`) are generated in
//! berth-shim-contract, which owns that protocol. Nothing here is written by hand
//! but [`MAX_MESSAGE`], the one limit both ends of the manager's API must share.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

include!(concat!(env!("OUT_DIR"), "/_includes.rs"));

/// The largest gRPC message of the manager's API, for its server and every client
/// (tonic's default, 4 MiB, is each side's own): image configs, upload chunks, and
/// the answer to `Containers.List` with specs, which grows with the containers.
pub const MAX_MESSAGE: usize = 64 << 20;
