//! Generates the shim's protobuf messages (proto/berth/shim/v1/shim.proto) with
//! protox (no system `protoc`) and prost-build: messages only, no gRPC service —
//! the protocol around them is `src/wire.rs`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest.join("../../proto");
    let file = proto_root.join("berth/shim/v1/shim.proto");
    println!("cargo:rerun-if-changed={}", file.display());
    let fds = protox::compile([&file], [&proto_root])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
