//! kill -9 in the middle of a pull or an unpack, then reopen the store: no image is
//! listed half-made, nothing is left half-unpacked, and doing it again succeeds.
//!
//! The victim is this test binary re-run as a child with `BERTH_TEST_CRASH_ROLE` set,
//! which makes `crash_child_helper` do the work (and every other test return).

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_manager::import::ImportOptions;
use berth_manager::registry::{PullOptions, PushOptions};
use berth_manager::Store;
use berth_testutil::{require_root, ChildGuard};
use common::registry::TestRegistry;

/// Random-looking bytes (they do not compress), without a rand dependency.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A plain tar of `files` files of `size` bytes each.
fn tar_of_files(path: &Path, files: usize, size: usize, seed: u64) {
    let f = fs::File::create(path).unwrap();
    let mut b = tar::Builder::new(std::io::BufWriter::new(f));
    for i in 0..files {
        let data = noise(size, seed + i as u64);
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        b.append_data(&mut h, format!("d{}/f{i}", i % 50), &data[..])
            .unwrap();
    }
    b.into_inner().unwrap().flush().unwrap();
}

#[test]
fn crash_child_helper() {
    let Ok(role) = std::env::var("BERTH_TEST_CRASH_ROLE") else {
        return;
    };
    let root = PathBuf::from(std::env::var("BERTH_TEST_CRASH_ROOT").unwrap());
    let arg = std::env::var("BERTH_TEST_CRASH_ARG").unwrap();
    let store = Arc::new(Store::open(&root).unwrap());
    match role.as_str() {
        "pull" => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(store.pull(&arg, &PullOptions::default()))
                .unwrap();
        }
        "import" => {
            store
                .import(
                    fs::File::open(&arg).unwrap(),
                    &ImportOptions {
                        reference: Some("berth-test/crash:import".into()),
                        ..Default::default()
                    },
                )
                .unwrap();
        }
        other => panic!("unknown role {other}"),
    }
    // Stay alive so the parent's kill always lands on a live process.
    std::thread::sleep(Duration::from_secs(60));
}

/// Run the helper as a child and SIGKILL it once `ready` says the work is under way.
fn run_and_kill(role: &str, root: &Path, arg: &str, ready: impl Fn() -> bool) {
    let exe = std::env::current_exe().unwrap();
    let child = Command::new(exe)
        .args([
            "crash_child_helper",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("BERTH_TEST_CRASH_ROLE", role)
        .env("BERTH_TEST_CRASH_ROOT", root)
        .env("BERTH_TEST_CRASH_ARG", arg)
        .spawn()
        .unwrap();
    let mut guard = ChildGuard(child);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ready() {
        assert!(Instant::now() < deadline, "{role} never got under way");
        assert!(
            guard.0.try_wait().unwrap().is_none(),
            "{role} child exited early"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    guard.0.kill().unwrap();
    let status = guard.0.wait().unwrap();
    assert!(!status.success());
}

fn dir_has_bytes(dir: &Path, min: u64) -> bool {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .any(|e| e.metadata().map(|m| m.len() >= min).unwrap_or(false))
        })
        .unwrap_or(false)
}

fn entries_below(dir: &Path) -> usize {
    let mut n = 0;
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            n += 1;
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                n += entries_below(&e.path());
            }
        }
    }
    n
}

/// Every listed image is whole: its blobs and its snapshot chain exist.
fn assert_consistent(store: &Store) {
    for img in store.images().unwrap() {
        assert!(store.content().exists(img.id()));
        assert!(store.content().exists(&img.record.manifest_digest));
        for l in &img.record.layers {
            assert!(store.content().exists(&l.digest));
        }
        assert!(store
            .snapshotter()
            .exists(&img.record.top_snapshot)
            .unwrap());
    }
    for s in store.snapshotter().list().unwrap() {
        assert!(!s.key.starts_with("extract-"), "half-unpacked {s:?} left");
    }
    assert!(store.metadata().leases().unwrap().is_empty());
    assert_eq!(
        fs::read_dir(store.root().join("ingest")).unwrap().count(),
        0
    );
}

#[test]
fn kill_during_pull() {
    require_root!();
    if std::env::var("BERTH_TEST_CRASH_ROLE").is_ok() {
        return;
    }
    let dir = common::tempdir();
    let reg = TestRegistry::start(&dir.path().join("registry"), None);
    let name = format!("{}/berth-test/crash:pull", reg.addr());
    let src = Arc::new(Store::open(&dir.path().join("src")).unwrap());
    let tarball = dir.path().join("big.tar");
    tar_of_files(&tarball, 8, 8 << 20, 7);
    src.import(
        fs::File::open(&tarball).unwrap(),
        &ImportOptions {
            reference: Some(name.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(src.push(&name, &PushOptions::default()))
        .unwrap();

    let root = dir.path().join("victim");
    let ingest = root.join("ingest");
    run_and_kill("pull", &root, &name, || dir_has_bytes(&ingest, 1 << 20));

    let store = Arc::new(Store::open(&root).unwrap());
    assert!(
        store.images().unwrap().is_empty(),
        "a half-pulled image is listed"
    );
    assert_consistent(&store);
    let img = rt
        .block_on(store.pull(&name, &PullOptions::default()))
        .unwrap();
    assert_eq!(img.id(), src.image(&name).unwrap().id());
    assert_consistent(&store);
}

#[test]
fn kill_during_unpack() {
    require_root!();
    if std::env::var("BERTH_TEST_CRASH_ROLE").is_ok() {
        return;
    }
    let dir = common::tempdir();
    let tarball = dir.path().join("many.tar");
    tar_of_files(&tarball, 20_000, 2048, 11);
    let root = dir.path().join("victim");
    let overlay = root.join("snapshots/overlay");
    run_and_kill("import", &root, &tarball.to_string_lossy(), || {
        entries_below(&overlay) > 2_000
    });
    let store = Store::open(&root).unwrap();
    assert!(
        store.images().unwrap().is_empty(),
        "a half-unpacked image is listed"
    );
    assert_consistent(&store);
    assert!(store.snapshotter().list().unwrap().is_empty());
    let img = store
        .import(
            fs::File::open(&tarball).unwrap(),
            &ImportOptions {
                reference: Some("berth-test/crash:import".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(
        store.image("berth-test/crash:import").unwrap().id(),
        img.id()
    );
    // The blob the dead process stored is unreferenced now and collectable.
    store.gc().unwrap();
    assert_consistent(&store);
}
