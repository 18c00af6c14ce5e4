//! A corpus of hostile layer tars is refused, and nothing is written outside the
//! layer (or the store).

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::Path;

use berth_manager::import::ImportOptions;
use berth_manager::unpack::{apply_layer, UnpackError, UnpackOptions};
use berth_manager::Store;
use berth_testutil::require_root;
use tar::{EntryType, Header};

/// A header whose name is written raw (the tar crate refuses `..` and absolute names).
fn raw_header(name: &[u8], kind: EntryType, size: u64) -> Header {
    let mut h = Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_cksum();
    h
}

fn raw_link(name: &[u8], target: &[u8], kind: EntryType) -> Header {
    let mut h = raw_header(name, kind, 0);
    h.as_old_mut().linkname[..target.len()].copy_from_slice(target);
    h.set_cksum();
    h
}

fn tar_of(entries: Vec<(Header, Vec<u8>)>) -> Vec<u8> {
    let mut out = Vec::new();
    for (h, data) in entries {
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(&data);
        let pad = (512 - data.len() % 512) % 512;
        out.extend(std::iter::repeat_n(0u8, pad));
    }
    out.extend(std::iter::repeat_n(0u8, 1024));
    out
}

/// Every path below `dir` with its size, for before/after comparison.
fn snapshot_tree(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    fn walk(d: &Path, out: &mut Vec<(String, u64)>) {
        if let Ok(rd) = fs::read_dir(d) {
            for e in rd.flatten() {
                let md = fs::symlink_metadata(e.path()).unwrap();
                out.push((e.path().to_string_lossy().into_owned(), md.len()));
                if md.is_dir() {
                    walk(&e.path(), out);
                }
            }
        }
    }
    walk(dir, &mut out);
    out.sort();
    out
}

fn corpus(outside: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let out_abs = outside.to_string_lossy().into_owned();
    let up = format!("../../../../../../../..{out_abs}");
    let mut sparse = Header::new_gnu();
    sparse.set_entry_type(EntryType::GNUSparse);
    sparse.set_path("huge").unwrap();
    sparse.set_size(0);
    sparse.set_mode(0o644);
    {
        let g = sparse.as_gnu_mut().unwrap();
        g.set_real_size(10 << 30);
        g.sparse[0].set_offset(10 << 30);
        g.sparse[0].set_length(0);
    }
    sparse.set_cksum();
    let mut big = Header::new_gnu();
    big.set_path("big").unwrap();
    big.set_entry_type(EntryType::Regular);
    big.set_size(10 << 30);
    big.set_mode(0o644);
    big.set_cksum();
    let mut big_tar = big.as_bytes().to_vec();
    big_tar.extend_from_slice(&[b'x'; 4096]);
    vec![
        (
            "dotdot",
            tar_of(vec![(
                raw_header(b"../escaped", EntryType::Regular, 3),
                b"bad".to_vec(),
            )]),
        ),
        (
            "dotdot-deep",
            tar_of(vec![(
                raw_header(
                    format!("a/../../{}/escaped", up).as_bytes(),
                    EntryType::Regular,
                    3,
                ),
                b"bad".to_vec(),
            )]),
        ),
        (
            "absolute",
            tar_of(vec![(
                raw_header(
                    format!("{out_abs}/escaped").as_bytes(),
                    EntryType::Regular,
                    3,
                ),
                b"bad".to_vec(),
            )]),
        ),
        (
            "symlink-absolute-then-file",
            tar_of(vec![
                (
                    raw_link(b"link", out_abs.as_bytes(), EntryType::Symlink),
                    vec![],
                ),
                (
                    raw_header(b"link/escaped", EntryType::Regular, 3),
                    b"bad".to_vec(),
                ),
            ]),
        ),
        (
            "symlink-relative-then-file",
            tar_of(vec![
                (raw_link(b"link", up.as_bytes(), EntryType::Symlink), vec![]),
                (
                    raw_header(b"link/escaped", EntryType::Regular, 3),
                    b"bad".to_vec(),
                ),
            ]),
        ),
        (
            "symlink-then-dir",
            tar_of(vec![
                (
                    raw_link(b"d", out_abs.as_bytes(), EntryType::Symlink),
                    vec![],
                ),
                (raw_header(b"d/sub/", EntryType::Directory, 0), vec![]),
            ]),
        ),
        (
            "hardlink-etc-passwd",
            tar_of(vec![(
                raw_link(b"pw", b"/etc/passwd", EntryType::Link),
                vec![],
            )]),
        ),
        (
            "hardlink-dotdot",
            tar_of(vec![(
                raw_link(
                    b"pw",
                    b"../../../../../../../../etc/passwd",
                    EntryType::Link,
                ),
                vec![],
            )]),
        ),
        (
            "hardlink-through-symlink",
            tar_of(vec![
                (raw_link(b"etc", b"/etc", EntryType::Symlink), vec![]),
                (raw_link(b"pw", b"etc/passwd", EntryType::Link), vec![]),
            ]),
        ),
        ("sparse-10g", {
            let mut v = sparse.as_bytes().to_vec();
            v.extend(std::iter::repeat_n(0u8, 1024));
            v
        }),
        ("claims-10g", big_tar),
    ]
}

#[test]
fn hostile_layers_are_refused() {
    require_root!();
    let dir = common::tempdir();
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("sentinel"), b"keep").unwrap();
    let passwd_before = fs::read("/etc/passwd").unwrap();
    let outside_before = snapshot_tree(&outside);

    for (name, data) in corpus(&outside) {
        let layer = dir.path().join(format!("layer-{name}"));
        fs::create_dir(&layer).unwrap();
        let err = apply_layer(&data[..], &layer, &UnpackOptions::default())
            .expect_err(&format!("{name} was accepted"));
        let kind_ok = match name {
            "dotdot" | "dotdot-deep" => matches!(err, UnpackError::DotDot(_)),
            "absolute" => matches!(err, UnpackError::Absolute(_)),
            "symlink-absolute-then-file" | "symlink-relative-then-file" | "symlink-then-dir" => {
                matches!(err, UnpackError::Escape(_))
            }
            "hardlink-etc-passwd" | "hardlink-dotdot" | "hardlink-through-symlink" => {
                matches!(err, UnpackError::BadLink { .. })
            }
            // Refused by the tar guard before the entry is read, or by the applier.
            "sparse-10g" => matches!(
                err,
                UnpackError::Sparse(_) | UnpackError::Limit(berth_tar::LimitError::Sparse)
            ),
            "claims-10g" => true,
            _ => false,
        };
        assert!(kind_ok, "{name}: unexpected error {err}");
        // Nothing big was written inside either.
        let used: u64 = snapshot_tree(&layer).iter().map(|(_, s)| *s).sum();
        assert!(used < 1 << 20, "{name}: {used} bytes written");
        eprintln!("{name}: refused: {err}");
    }
    assert_eq!(snapshot_tree(&outside), outside_before);
    assert_eq!(fs::read("/etc/passwd").unwrap(), passwd_before);
    assert!(!dir.path().join("escaped").exists());
    assert!(!Path::new("/escaped").exists());

    // Through the store: the import fails, and leaves no image and no snapshot.
    let store = Store::open(&dir.path().join("store")).unwrap();
    for (name, data) in corpus(&outside) {
        let r = store.import(&data[..], &ImportOptions::default());
        assert!(r.is_err(), "{name} imported");
    }
    assert!(store.images().unwrap().is_empty());
    assert!(store.snapshotter().list().unwrap().is_empty());
    assert_eq!(snapshot_tree(&outside), outside_before);
}

#[test]
fn devices_can_be_refused() {
    require_root!();
    let dir = common::tempdir();
    let mut h = Header::new_gnu();
    h.set_path("dev/null").unwrap();
    h.set_entry_type(EntryType::Char);
    h.set_device_major(1).unwrap();
    h.set_device_minor(3).unwrap();
    h.set_mode(0o666);
    h.set_size(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    let data = tar_of(vec![(h, vec![])]);
    let err = apply_layer(
        &data[..],
        dir.path(),
        &UnpackOptions {
            allow_devices: false,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(matches!(err, UnpackError::Device(_)), "{err}");
    let layer2 = dir.path().join("ok");
    fs::create_dir(&layer2).unwrap();
    apply_layer(&data[..], &layer2, &UnpackOptions::default()).unwrap();
    use std::os::unix::fs::FileTypeExt;
    assert!(fs::symlink_metadata(layer2.join("dev/null"))
        .unwrap()
        .file_type()
        .is_char_device());
}

#[test]
fn whiteouts_become_overlay_form() {
    require_root!();
    let dir = common::tempdir();
    let mut entries = Vec::new();
    for (name, kind) in [
        ("a/", EntryType::Directory),
        ("a/.wh..wh..opq", EntryType::Regular),
        ("a/.wh.gone", EntryType::Regular),
        ("a/file", EntryType::Regular),
        ("a/hard", EntryType::Link),
        ("a/sym", EntryType::Symlink),
    ] {
        let mut h = Header::new_gnu();
        h.set_path(name).unwrap();
        h.set_entry_type(kind);
        h.set_mode(0o4755);
        h.set_uid(1234);
        h.set_gid(4321);
        h.set_mtime(1_000_000);
        let data: Vec<u8> = if name == "a/file" {
            b"data".to_vec()
        } else {
            vec![]
        };
        h.set_size(data.len() as u64);
        if kind == EntryType::Link {
            h.set_link_name("a/file").unwrap();
        }
        if kind == EntryType::Symlink {
            h.set_link_name("/nowhere").unwrap();
        }
        h.set_cksum();
        entries.push((h, data));
    }
    let data = tar_of(entries);
    let stats = apply_layer(&data[..], dir.path(), &UnpackOptions::default()).unwrap();
    assert_eq!(stats.diff_id, berth_manager::Digest::of(&data));
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let a = dir.path().join("a");
    assert_eq!(
        xattr::get(&a, "trusted.overlay.opaque").unwrap(),
        Some(b"y".to_vec())
    );
    let gone = fs::symlink_metadata(a.join("gone")).unwrap();
    assert!(gone.file_type().is_char_device() && gone.rdev() == 0);
    let f = fs::symlink_metadata(a.join("file")).unwrap();
    assert_eq!(
        (f.uid(), f.gid(), f.mode() & 0o7777, f.mtime()),
        (1234, 4321, 0o4755, 1_000_000)
    );
    assert_eq!(f.ino(), fs::symlink_metadata(a.join("hard")).unwrap().ino());
    assert_eq!(fs::read_link(a.join("sym")).unwrap(), Path::new("/nowhere"));
    assert_eq!(fs::symlink_metadata(&a).unwrap().mtime(), 1_000_000);
}
