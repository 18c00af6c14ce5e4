//! Garbage collection removes what nothing references, and keeps what images,
//! containers and leases hold.

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::fs;

use berth_manager::import::ImportOptions;
use berth_manager::store::CommitOptions;
use berth_manager::Store;
use berth_testutil::require_root;

#[test]
fn gc_keeps_referenced_and_removes_the_rest() {
    require_root!();
    let dir = common::tempdir();
    let tarball = common::busybox_tar(dir.path());
    let store = Store::open(&dir.path().join("store")).unwrap();
    let a = store
        .import(
            fs::File::open(&tarball).unwrap(),
            &ImportOptions {
                reference: Some("berth-test/a:1".into()),
                ..Default::default()
            },
        )
        .unwrap();
    store
        .prepare_container("c", "berth-test/a:1", BTreeMap::new())
        .unwrap();
    fs::write(
        format!("{}/new", store.snapshot_info("c").unwrap().upper_dir),
        b"x",
    )
    .unwrap();
    let b = store
        .commit_container(
            "c",
            "berth-test/a:1",
            &CommitOptions {
                reference: Some("berth-test/b:1".into()),
                ..Default::default()
            },
        )
        .unwrap();

    // Nothing to collect yet.
    let r = store.gc().unwrap();
    assert!(
        r.blobs_removed.is_empty() && r.snapshots_removed.is_empty(),
        "{r:?}"
    );

    // Drop b: its layer, config, manifest and top snapshot go; a's stay.
    let (untagged, deleted) = store.delete_image("berth-test/b:1", false).unwrap();
    assert_eq!(untagged, vec!["docker.io/berth-test/b:1".to_string()]);
    assert_eq!(deleted, vec![b.id().to_string()]);
    let r = store.gc().unwrap();
    assert!(r.blobs_removed.contains(&b.record.layers[1].digest));
    assert!(r.blobs_removed.contains(b.id()));
    assert!(r.blobs_removed.contains(&b.record.manifest_digest));
    assert_eq!(r.snapshots_removed, vec![b.record.top_snapshot.clone()]);
    assert!(store.content().exists(a.id()));
    assert!(store.snapshotter().exists(&a.record.top_snapshot).unwrap());

    // The container keeps a's layer even when the image is gone.
    assert!(store.delete_image("berth-test/a:1", false).is_err());
    store.delete_image("berth-test/a:1", true).unwrap();
    let r = store.gc().unwrap();
    assert!(r.snapshots_removed.is_empty());
    assert!(store.snapshotter().exists(&a.record.top_snapshot).unwrap());
    assert!(!store.content().exists(a.id()));

    store.snapshotter().remove("c").unwrap();
    store.gc().unwrap();
    assert!(store.snapshotter().list().unwrap().is_empty());
    assert!(store.content().list().unwrap().is_empty());
    assert_eq!(
        fs::read_dir(dir.path().join("store/snapshots/overlay"))
            .unwrap()
            .count(),
        0
    );

    // A lease protects what it holds.
    let lease = store.lease().unwrap();
    let d = store.write_blob(&lease, b"protected").unwrap();
    store.gc().unwrap();
    assert!(store.content().exists(&d));
    drop(lease);
    store.gc().unwrap();
    assert!(!store.content().exists(&d));
}
