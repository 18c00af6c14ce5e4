//! Helpers shared by berth-manager's integration tests.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};

/// A temporary directory with the test prefix.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("berth-test-mgr")
        .tempdir()
        .unwrap()
}

/// Build the busybox rootfs under `dir/rootfs-src` and tar it (uncompressed) into
/// `dir/busybox.tar`; returns the tar's path.
pub fn busybox_tar(dir: &Path) -> PathBuf {
    let src = dir.join("rootfs-src");
    berth_testutil::busybox_rootfs(&src).unwrap();
    let out = dir.join("busybox.tar");
    let f = std::fs::File::create(&out).unwrap();
    let mut b = tar::Builder::new(f);
    b.follow_symlinks(false);
    b.append_dir_all(".", &src).unwrap();
    b.into_inner().unwrap();
    out
}

/// Names of every entry in a tar (leading "./" removed, trailing "/" removed).
pub fn tar_names(data: &[u8]) -> Vec<String> {
    let mut a = tar::Archive::new(data);
    a.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let p = e.path().unwrap().to_string_lossy().into_owned();
            p.trim_start_matches("./").trim_end_matches('/').to_string()
        })
        .collect()
}

/// Read a whole tar entry's content by name.
pub fn tar_file(data: &[u8], name: &str) -> Option<Vec<u8>> {
    let mut a = tar::Archive::new(data);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path().unwrap().to_string_lossy().into_owned();
        if p.trim_start_matches("./") == name {
            let mut v = Vec::new();
            e.read_to_end(&mut v).unwrap();
            return Some(v);
        }
    }
    None
}

pub mod registry;
