//! Import the busybox rootfs, run a container snapshot on it, and check changes,
//! commit and export (the first acceptance line).

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::fs;

use berth_manager::import::ImportOptions;
use berth_manager::snapshots::mount_all;
use berth_manager::store::CommitOptions;
use berth_manager::Store;
use berth_testutil::{require_root, MountGuard};

#[test]
fn import_changes_commit_export() {
    require_root!();
    let dir = common::tempdir();
    let tarball = common::busybox_tar(dir.path());
    let store = Store::open(&dir.path().join("store")).unwrap();

    let img = store
        .import(
            fs::File::open(&tarball).unwrap(),
            &ImportOptions {
                reference: Some("berth-test/busybox:1".into()),
                changes: vec!["ENV A=1".into(), "CMD [\"/bin/sh\"]".into()],
                message: "test import".into(),
            },
        )
        .unwrap();
    assert_eq!(
        img.names,
        vec!["docker.io/berth-test/busybox:1".to_string()]
    );
    assert_eq!(img.record.layers.len(), 1);
    let config: serde_json::Value =
        serde_json::from_slice(&store.image_config(&img).unwrap()).unwrap();
    assert_eq!(config["config"]["Env"], serde_json::json!(["A=1"]));
    assert_eq!(store.image("berth-test/busybox:1").unwrap().id(), img.id());
    assert_eq!(store.image(&img.id().hex()[..12]).unwrap().id(), img.id());

    // A container on it.
    let mounts = store
        .prepare_container("c1", "berth-test/busybox:1", BTreeMap::new())
        .unwrap();
    assert_eq!(mounts[0].kind, "overlay");
    let info = store.snapshot_info("c1").unwrap();
    assert!(!info.lower_dir.is_empty() && !info.upper_dir.is_empty() && !info.work_dir.is_empty());
    assert!(info.merged_dir.ends_with("/merged"));
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let guard = MountGuard(mnt.clone());
    mount_all(&mounts, &mnt).unwrap();
    assert!(mnt.join("bin/busybox").is_file());
    fs::create_dir(mnt.join("test")).unwrap();
    fs::remove_dir_all(mnt.join("tmp")).unwrap();
    let mut passwd = fs::read_to_string(mnt.join("etc/passwd")).unwrap();
    passwd.push_str("berth:x:1000:1000::/:/bin/sh\n");
    fs::write(mnt.join("etc/passwd"), &passwd).unwrap();
    drop(guard);

    let changes: Vec<String> = store
        .changes("c1")
        .unwrap()
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(
        changes,
        vec!["C /etc", "C /etc/passwd", "A /test", "D /tmp"]
    );

    // Commit and look at the result through a new container.
    let committed = store
        .commit_container(
            "c1",
            "berth-test/busybox:1",
            &CommitOptions {
                reference: Some("berth-test/committed:1".into()),
                author: "tester".into(),
                comment: "added /test".into(),
                changes: vec!["LABEL x=y".into()],
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(committed.record.layers.len(), 2);
    assert_eq!(
        committed.record.labels.get("x").map(String::as_str),
        Some("y")
    );
    let cfg: serde_json::Value =
        serde_json::from_slice(&store.image_config(&committed).unwrap()).unwrap();
    assert_eq!(cfg["history"].as_array().unwrap().len(), 2);
    assert_eq!(cfg["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
    assert_eq!(cfg["config"]["Env"], serde_json::json!(["A=1"]));

    // The committed layer carries the whiteout as a .wh. file.
    let layer = store
        .content()
        .open_blob(&committed.record.layers[1].digest)
        .unwrap();
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(layer), &mut plain).unwrap();
    let names = common::tar_names(&plain);
    assert!(names.contains(&".wh.tmp".to_string()), "{names:?}");
    assert!(names.contains(&"test".to_string()));

    let mounts2 = store
        .prepare_container("c2", "berth-test/committed:1", BTreeMap::new())
        .unwrap();
    let mnt2 = dir.path().join("mnt2");
    fs::create_dir(&mnt2).unwrap();
    {
        let _g = MountGuard(mnt2.clone());
        mount_all(&mounts2, &mnt2).unwrap();
        assert!(mnt2.join("test").is_dir());
        assert!(!mnt2.join("tmp").exists());
        assert_eq!(fs::read_to_string(mnt2.join("etc/passwd")).unwrap(), passwd);
    }
    assert!(store.changes("c2").unwrap().is_empty());

    // Export the merged view.
    let data = store.export("c2", Vec::new()).unwrap();
    let names = common::tar_names(&data);
    assert!(names.contains(&"bin/busybox".to_string()));
    assert!(names.contains(&"test".to_string()));
    assert!(!names.iter().any(|n| n == "tmp"));
    assert_eq!(
        common::tar_file(&data, "etc/passwd").unwrap(),
        passwd.as_bytes()
    );

    // Removing the image's parent snapshot is refused while containers use it.
    assert!(store
        .snapshotter()
        .remove(&img.record.top_snapshot)
        .is_err());
    store.snapshotter().remove("c1").unwrap();
    store.snapshotter().remove("c2").unwrap();
}

#[test]
fn view_of_one_layer_is_a_bind_mount() {
    require_root!();
    let dir = common::tempdir();
    let tarball = common::busybox_tar(dir.path());
    let store = Store::open(&dir.path().join("store")).unwrap();
    let img = store
        .import(fs::File::open(&tarball).unwrap(), &ImportOptions::default())
        .unwrap();
    assert!(img.names.is_empty());
    let m = store
        .snapshotter()
        .view("v", Some(&img.record.top_snapshot), BTreeMap::new())
        .unwrap();
    assert_eq!(m[0].kind, "bind");
    assert!(m[0].options.contains(&"ro".to_string()));
    // A second store on the same root is refused while this one is open.
    assert!(Store::open(&dir.path().join("store")).is_err());
}
