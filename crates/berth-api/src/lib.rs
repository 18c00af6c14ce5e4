//! berth's gRPC API, generated at build time from the `.proto` files in `proto/berth/`
//! (see build.rs). Modules follow the protobuf packages: `berth::shim::v1` is the
//! shim's task service, `berth::manager::v1` the manager's services. Nothing here is
//! written by hand.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

include!(concat!(env!("OUT_DIR"), "/_includes.rs"));
