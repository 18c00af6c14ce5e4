//! Generates the CRI v1 server and client code from `proto/k8s/runtime/v1/api.proto`
//! with protox (no system `protoc`) and tonic-prost-build, as berth-api does for
//! berth's own protos. Kept in its own crate so that the large generated module is
//! compiled only by what serves or tests CRI.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest.join("../../proto/k8s");
    let file = root.join("runtime/v1/api.proto");
    println!("cargo:rerun-if-changed={}", file.display());
    let fds = protox::compile([&file], [&root])?;
    // Unix sockets only (dialled through `tonic::transport::Endpoint`), as in
    // berth-api.
    tonic_prost_build::configure()
        .build_transport(false)
        .include_file("_includes.rs")
        .compile_fds(fds)?;
    Ok(())
}
