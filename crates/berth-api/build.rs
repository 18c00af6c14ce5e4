//! Generates the gRPC code for every `.proto` below `proto/berth/` with protox (a
//! protobuf compiler in Rust, so no system `protoc` is needed) and tonic-prost-build.
//! A new service is added by dropping its files there; `_includes.rs` nests the
//! generated modules by package, so lib.rs needs no change.

use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest.join("../../proto");
    let mut files = Vec::new();
    collect_protos(&proto_root.join("berth"), &mut files)?;
    // The shim's messages are berth-shim-contract's: it speaks its own framing, not
    // gRPC (see that crate's `wire`).
    files.retain(|f| !f.starts_with(proto_root.join("berth/shim")));
    files.sort();

    println!("cargo:rerun-if-changed={}", proto_root.display());
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let fds = protox::compile(&files, [&proto_root])?;
    // No generated `connect(endpoint)` constructors: the shim's `Connect` RPC would
    // clash with them, and every berth socket is a unix socket dialled through
    // `tonic::transport::Endpoint` anyway (`Client::new(channel)`).
    tonic_prost_build::configure()
        .build_transport(false)
        .include_file("_includes.rs")
        .compile_fds(fds)?;
    Ok(())
}

/// Every `.proto` file at or below `dir` (directories are watched too, so a new
/// file triggers a rebuild).
fn collect_protos(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    println!("cargo:rerun-if-changed={}", dir.display());
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
    Ok(())
}
