//! Push to and pull from Debian's docker-registry started by the test: anonymous,
//! behind htpasswd basic auth, an image skopeo pushed, and concurrent pulls.

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::process::Command;
use std::sync::{Arc, Mutex};

use berth_manager::images::{LayerProgress, ProgressStatus};
use berth_manager::import::ImportOptions;
use berth_manager::registry::{Auth, PullOptions, PushOptions};
use berth_manager::store::CommitOptions;
use berth_manager::{Image, Store};
use berth_testutil::require_root;
use common::registry::TestRegistry;

/// A two-layer image named `name` in `store`: the busybox rootfs plus a commit.
fn two_layer_image(store: &Store, dir: &std::path::Path, name: &str) -> Image {
    let tarball = common::busybox_tar(dir);
    let base = format!("{name}-base");
    store
        .import(
            flate2::read::GzEncoder::new(
                fs::File::open(&tarball).unwrap(),
                flate2::Compression::fast(),
            ),
            &ImportOptions {
                reference: Some(base.clone()),
                ..Default::default()
            },
        )
        .unwrap();
    let key = berth_testutil::unique_name("berth-test-c");
    store
        .prepare_container(&key, &base, BTreeMap::new())
        .unwrap();
    let upper = store.snapshot_info(&key).unwrap().upper_dir;
    fs::write(format!("{upper}/hello"), vec![b'h'; 300_000]).unwrap();
    let img = store
        .commit_container(
            &key,
            &base,
            &CommitOptions {
                reference: Some(name.to_string()),
                ..Default::default()
            },
        )
        .unwrap();
    store.snapshotter().remove(&key).unwrap();
    img
}

fn same_content(a: &Image, b: &Image) {
    assert_eq!(a.record.manifest_digest, b.record.manifest_digest);
    assert_eq!(a.record.id, b.record.id);
    let la: Vec<_> = a
        .record
        .layers
        .iter()
        .map(|l| (&l.digest, &l.diff_id))
        .collect();
    let lb: Vec<_> = b
        .record
        .layers
        .iter()
        .map(|l| (&l.digest, &l.diff_id))
        .collect();
    assert_eq!(la, lb);
    assert_eq!(a.record.top_snapshot, b.record.top_snapshot);
}

fn fresh() -> (tempfile::TempDir, Arc<Store>) {
    let d = common::tempdir();
    let s = Arc::new(Store::open(d.path()).unwrap());
    (d, s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_pull_anonymous_and_skopeo() {
    require_root!();
    let dir = common::tempdir();
    let reg = TestRegistry::start(&dir.path().join("registry"), None);
    let name = format!("{}/berth-test/two:1", reg.addr());
    let src = Arc::new(Store::open(&dir.path().join("src")).unwrap());
    let img = two_layer_image(&src, dir.path(), &name);
    assert_eq!(img.record.layers.len(), 2);

    let events: Arc<Mutex<Vec<LayerProgress>>> = Arc::default();
    let ev = Arc::clone(&events);
    let pushed = src
        .push(
            &name,
            &PushOptions {
                progress: Some(Arc::new(move |p| ev.lock().unwrap().push(p))),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(pushed, img.record.manifest_digest);
    assert!(events
        .lock()
        .unwrap()
        .iter()
        .any(|e| e.status == ProgressStatus::Pushed));

    // Pull into a fresh store, with progress per layer.
    let (_d, dst) = fresh();
    let events: Arc<Mutex<Vec<LayerProgress>>> = Arc::default();
    let ev = Arc::clone(&events);
    let pulled = dst
        .pull(
            &name,
            &PullOptions {
                progress: Some(Arc::new(move |p| ev.lock().unwrap().push(p))),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    same_content(&img, &pulled);
    assert_eq!(pulled.names, vec![name.clone()]);
    assert!(pulled.record.repo_digests[0].ends_with(&pulled.record.manifest_digest.to_string()));
    let events = events.lock().unwrap().clone();
    for l in &img.record.layers {
        let mine: Vec<_> = events
            .iter()
            .filter(|e| e.digest == l.digest.as_str())
            .collect();
        assert!(
            mine.iter().any(|e| e.status == ProgressStatus::Downloading
                && e.total == l.size
                && e.current == l.size),
            "{mine:?}"
        );
        assert!(mine.iter().any(|e| e.status == ProgressStatus::Done));
    }
    let info = dst.snapshotter().info(&pulled.record.top_snapshot).unwrap();
    assert!(info
        .lower_dir
        .split(':')
        .any(|d| std::path::Path::new(d).join("bin/busybox").exists()));
    assert!(info
        .lower_dir
        .split(':')
        .any(|d| std::path::Path::new(d).join("hello").exists()));

    // Pulling again fetches nothing.
    let events2: Arc<Mutex<Vec<LayerProgress>>> = Arc::default();
    let ev = Arc::clone(&events2);
    let again = dst
        .pull(
            &name,
            &PullOptions {
                progress: Some(Arc::new(move |p| ev.lock().unwrap().push(p))),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    same_content(&img, &again);
    assert!(!events2
        .lock()
        .unwrap()
        .iter()
        .any(|e| e.status == ProgressStatus::Downloading));

    // An image skopeo pushed.
    let archive = dir.path().join("for-skopeo.tar");
    src.save(
        std::slice::from_ref(&name),
        berth_manager::archive::SaveFormat::Oci,
        fs::File::create(&archive).unwrap(),
    )
    .unwrap();
    let sk_name = format!("{}/berth-test/skopeo:pushed", reg.addr());
    let out = Command::new("skopeo")
        .args(["--insecure-policy", "copy", "--dest-tls-verify=false"])
        .arg(format!("oci-archive:{}", archive.display()))
        .arg(format!("docker://{sk_name}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_d2, dst2) = fresh();
    let from_skopeo = dst2.pull(&sk_name, &PullOptions::default()).await.unwrap();
    assert_eq!(from_skopeo.record.id, img.record.id);
    assert_eq!(from_skopeo.record.layers.len(), 2);
    // And by digest.
    let by_digest = format!(
        "{}/berth-test/skopeo@{}",
        reg.addr(),
        from_skopeo.record.manifest_digest
    );
    let (_d3, dst3) = fresh();
    let d = dst3
        .pull(&by_digest, &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(d.record.id, img.record.id);
    assert!(d.names.is_empty());
    assert_eq!(dst3.image(&by_digest).unwrap().record.id, img.record.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_pull_basic_auth() {
    require_root!();
    let dir = common::tempdir();
    let reg = TestRegistry::start(&dir.path().join("registry"), Some(("berth", "s3cret")));
    assert_eq!(reg.v2_status(), Some(401));
    let name = format!("{}/berth-test/auth:1", reg.addr());
    let src = Arc::new(Store::open(&dir.path().join("src")).unwrap());
    let img = two_layer_image(&src, dir.path(), &name);
    let auth = Auth {
        username: "berth".into(),
        password: "s3cret".into(),
        ..Default::default()
    };
    let wrong = Auth {
        username: "berth".into(),
        password: "nope".into(),
        ..Default::default()
    };
    // docker login's check: refused in dockerd's words, accepted with the password.
    let refused = berth_manager::registry::login(&reg.addr(), &wrong, false)
        .await
        .unwrap_err();
    assert_eq!(
        refused.to_string(),
        format!(
            "login attempt to http://{}/v2/ failed with status: 401 Unauthorized",
            reg.addr()
        )
    );
    let token = berth_manager::registry::login(&format!("http://{}/", reg.addr()), &auth, false)
        .await
        .unwrap();
    assert_eq!(token, "");
    assert!(src.push(&name, &PushOptions::default()).await.is_err());
    assert!(src
        .push(
            &name,
            &PushOptions {
                auth: wrong.clone(),
                ..Default::default()
            }
        )
        .await
        .is_err());
    src.push(
        &name,
        &PushOptions {
            auth: auth.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let (_d, dst) = fresh();
    assert!(dst.pull(&name, &PullOptions::default()).await.is_err());
    assert!(dst
        .pull(
            &name,
            &PullOptions {
                auth: wrong,
                ..Default::default()
            }
        )
        .await
        .is_err());
    assert!(dst.images().unwrap().is_empty());
    let pulled = dst
        .pull(
            &name,
            &PullOptions {
                auth,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    same_content(&img, &pulled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_pulls_share_work() {
    require_root!();
    let dir = common::tempdir();
    let reg = TestRegistry::start(&dir.path().join("registry"), None);
    let name = format!("{}/berth-test/same:1", reg.addr());
    let src = Arc::new(Store::open(&dir.path().join("src")).unwrap());
    let img = two_layer_image(&src, dir.path(), &name);
    src.push(&name, &PushOptions::default()).await.unwrap();

    let (_d, dst) = fresh();
    let spawn = || {
        let (dst, name) = (Arc::clone(&dst), name.clone());
        tokio::spawn(async move { dst.pull(&name, &PullOptions::default()).await })
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());
    same_content(&img, &a);
    same_content(&img, &b);
    // One snapshot per layer, no leftovers, no leases.
    let snaps = dst.snapshotter().list().unwrap();
    assert_eq!(snaps.len(), 2, "{snaps:?}");
    assert!(dst.metadata().leases().unwrap().is_empty());
    assert_eq!(dst.images().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_layer_leaves_no_snapshot_behind() {
    require_root!();
    let dir = common::tempdir();
    let root = dir.path().join("registry");
    let reg = TestRegistry::start(&root, None);
    let name = format!("{}/berth-test/bad:1", reg.addr());
    let src = Arc::new(Store::open(&dir.path().join("src")).unwrap());
    let img = two_layer_image(&src, dir.path(), &name);
    src.push(&name, &PushOptions::default()).await.unwrap();

    // The bottom layer, as the registry serves it, no longer matches its digest:
    // the layer above it is fetched and unpacked meanwhile, and must not be left
    // behind when the pull fails.
    let bottom = img.record.layers[0].digest.to_string();
    let hex = bottom.trim_start_matches("sha256:");
    let blob = root.join(format!(
        "data/docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ));
    let len = fs::metadata(&blob).unwrap().len() as usize;
    fs::write(&blob, vec![b'x'; len]).unwrap();

    let (_d, dst) = fresh();
    let err = dst.pull(&name, &PullOptions::default()).await.unwrap_err();
    assert!(err.to_string().contains("digest"), "{err}");
    let snaps = dst.snapshotter().list().unwrap();
    assert!(snaps.is_empty(), "{snaps:?}");
    assert!(dst.metadata().leases().unwrap().is_empty());
    assert!(dst.images().unwrap().is_empty());
}
