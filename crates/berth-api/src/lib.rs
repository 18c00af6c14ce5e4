//! berth's gRPC API, generated at build time from the `.proto` files in `proto/berth/`
//! (see build.rs). Modules follow the protobuf packages: `berth::manager::v1` holds
//! the manager's services. The shim's messages (`berth.shim.v1`) are generated in
//! berth-shim-contract, which owns that protocol. Nothing here is written by hand.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

include!(concat!(env!("OUT_DIR"), "/_includes.rs"));
