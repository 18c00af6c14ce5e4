//! Load archives made by skopeo (docker-archive and oci-archive), save them back,
//! and load the saved files into fresh stores with the same image ids.

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use berth_manager::archive::SaveFormat;
use berth_manager::import::ImportOptions;
use berth_manager::Store;
use berth_testutil::require_root;

fn skopeo(args: &[&str]) {
    let out = Command::new("skopeo")
        .args(["--insecure-policy"])
        .args(args)
        .output()
        .expect("skopeo is installed (apt-get install skopeo)");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn save_to(store: &Store, refs: &[&str], format: SaveFormat, path: &Path) {
    let f = fs::File::create(path).unwrap();
    let refs: Vec<String> = refs.iter().map(|s| s.to_string()).collect();
    store.save(&refs, format, f).unwrap();
}

#[test]
fn skopeo_archives_round_trip() {
    require_root!();
    let dir = common::tempdir();
    let d = dir.path();
    let tarball = common::busybox_tar(d);

    // A source image and its OCI archive (our save), which skopeo converts.
    let src = Store::open(&d.join("src")).unwrap();
    let img = src
        .import(
            flate2::read::GzEncoder::new(
                fs::File::open(&tarball).unwrap(),
                flate2::Compression::fast(),
            ),
            &ImportOptions {
                reference: Some("berth-test/bb:src".into()),
                changes: vec!["CMD [\"/bin/sh\"]".into()],
                ..Default::default()
            },
        )
        .unwrap();
    let ours = d.join("ours-oci.tar");
    save_to(&src, &["berth-test/bb:src"], SaveFormat::Oci, &ours);
    let sk_docker = d.join("skopeo-docker.tar");
    let sk_oci = d.join("skopeo-oci.tar");
    skopeo(&[
        "copy",
        &format!("oci-archive:{}", ours.display()),
        &format!(
            "docker-archive:{}:berth-test/bb:skopeo",
            sk_docker.display()
        ),
    ]);
    skopeo(&[
        "copy",
        &format!("oci-archive:{}", ours.display()),
        &format!("oci-archive:{}:berth-test/bb:oci", sk_oci.display()),
    ]);

    for (archive, tag) in [
        (&sk_docker, "berth-test/bb:skopeo"),
        (&sk_oci, "berth-test/bb:oci"),
    ] {
        let a = Store::open(&d.join(format!("a-{tag}").replace([':', '/'], "-"))).unwrap();
        let loaded = a.load(fs::File::open(archive).unwrap(), None).unwrap();
        assert_eq!(loaded.len(), 1, "{archive:?}");
        assert_eq!(loaded[0].id(), img.id(), "{archive:?}: image id changed");
        assert_eq!(a.image(tag).unwrap().id(), img.id());

        for format in [SaveFormat::Docker, SaveFormat::Oci] {
            let saved = d.join(format!(
                "saved-{}-{format:?}.tar",
                tag.replace([':', '/'], "-")
            ));
            save_to(&a, &[tag], format, &saved);
            let fresh = tempfile::Builder::new()
                .prefix("berth-test-mgr")
                .tempdir()
                .unwrap();
            let b = Store::open(fresh.path()).unwrap();
            let again = b.load(fs::File::open(&saved).unwrap(), None).unwrap();
            assert_eq!(again.len(), 1);
            assert_eq!(again[0].id(), img.id(), "{format:?} round trip of {tag}");
            assert_eq!(
                b.image(tag).unwrap().id(),
                img.id(),
                "tag {tag} kept by {format:?}"
            );
            assert!(!again[0].record.top_snapshot.is_empty());
        }
    }

    // skopeo reads what we save in docker form too.
    let ours_docker = d.join("ours-docker.tar");
    save_to(
        &src,
        &["berth-test/bb:src"],
        SaveFormat::Docker,
        &ours_docker,
    );
    skopeo(&[
        "inspect",
        &format!("docker-archive:{}", ours_docker.display()),
    ]);
    // The same archive is an OCI layout too, as Docker 25+ writes it: skopeo
    // copies it out of index.json, checking every blob's digest and size.
    let names = tar_names(&ours_docker);
    for n in ["manifest.json", "index.json", "oci-layout", "repositories"] {
        assert!(names.iter().any(|x| x == n), "{n} in {names:?}");
    }
    skopeo(&[
        "copy",
        &format!("oci-archive:{}", ours_docker.display()),
        &format!("dir:{}", d.join("from-index").display()),
    ]);
    let repos: serde_json::Value =
        serde_json::from_slice(&tar_file(&ours_docker, "repositories")).unwrap();
    assert!(repos["berth-test/bb"]["src"].is_string(), "{repos}");
}

fn tar_entries(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut a = tar::Archive::new(fs::File::open(path).unwrap());
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            (name, data)
        })
        .collect()
}

fn tar_names(path: &Path) -> Vec<String> {
    tar_entries(path).into_iter().map(|(n, _)| n).collect()
}

fn tar_file(path: &Path, name: &str) -> Vec<u8> {
    tar_entries(path)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, d)| d)
        .unwrap_or_else(|| panic!("{name} not in {path:?}"))
}

#[test]
fn several_images_in_one_archive() {
    require_root!();
    let dir = common::tempdir();
    let d = dir.path();
    let tarball = common::busybox_tar(d);
    let s = Store::open(&d.join("s")).unwrap();
    let one = s
        .import(
            fs::File::open(&tarball).unwrap(),
            &ImportOptions {
                reference: Some("berth-test/one:1".into()),
                ..Default::default()
            },
        )
        .unwrap();
    let two = s
        .import(
            fs::File::open(&tarball).unwrap(),
            &ImportOptions {
                reference: Some("berth-test/two:2".into()),
                changes: vec!["ENV X=2".into()],
                ..Default::default()
            },
        )
        .unwrap();
    s.tag("berth-test/two:2", "berth-test/two:also").unwrap();
    assert_ne!(one.id(), two.id());
    // The same layer is shared: one snapshot for both images.
    assert_eq!(one.record.top_snapshot, two.record.top_snapshot);
    for format in [SaveFormat::Docker, SaveFormat::Oci] {
        let path = d.join(format!("multi-{format:?}.tar"));
        save_to(
            &s,
            &[
                "berth-test/one:1",
                "berth-test/two:2",
                "berth-test/two:also",
            ],
            format,
            &path,
        );
        let fresh = tempfile::Builder::new()
            .prefix("berth-test-mgr")
            .tempdir()
            .unwrap();
        let b = Store::open(fresh.path()).unwrap();
        let loaded = b.load(fs::File::open(&path).unwrap(), None).unwrap();
        assert_eq!(loaded.len(), 2, "{format:?}");
        assert_eq!(b.image("berth-test/one:1").unwrap().id(), one.id());
        assert_eq!(b.image("berth-test/two:2").unwrap().id(), two.id());
        assert_eq!(b.image("berth-test/two:also").unwrap().id(), two.id());
    }

    // A repository without a tag saves every tag of it, as docker does.
    let path = d.join("repo-only.tar");
    save_to(&s, &["berth-test/two"], SaveFormat::Docker, &path);
    let manifest: serde_json::Value =
        serde_json::from_slice(&tar_file(&path, "manifest.json")).unwrap();
    assert_eq!(
        manifest[0]["RepoTags"],
        serde_json::json!(["berth-test/two:2", "berth-test/two:also"]),
        "{manifest}"
    );
}
