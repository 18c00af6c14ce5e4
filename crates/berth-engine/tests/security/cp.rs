//! Issue 10, findings 3 and 5: `docker cp` both ways.
//!
//! Upload: a container process swaps a directory for a symlink to a host file
//! while directories are uploaded over it, 500 times; every chmod and chown goes
//! through an fd opened without following a symlink, so the host file never
//! changes. Download: a file that grows (with a forged tar entry) or shrinks
//! while it is read comes out as exactly one entry of the size in its header.
//! And what held: entries that climb out of the destination are refused.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use berth_testutil::require_root;

use crate::{http_raw, ok, serial, Stack};

fn tar_of(entries: &[(&str, tar::EntryType, u32, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, mode, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(*mode);
        h.set_uid(4242);
        h.set_gid(4242);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn upload_chmod_race_never_reaches_the_host() {
    require_root!();
    let _serial = serial();
    let stack = Stack::start();
    // The host file the container aims at: 0600, root's.
    let secret = stack.path("secret");
    std::fs::write(&secret, b"host secret").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let before = std::fs::metadata(&secret).unwrap();

    // /tmp/race/x is a directory or a symlink to the host file, swapped
    // atomically as fast as the kernel allows (renameat2 RENAME_EXCHANGE).
    let swap = format!(
        "mkdir -p /tmp/race/x && ln -s {} /tmp/race/y && exec /probe swap /tmp/race/x /tmp/race/y",
        secret.display()
    );
    let mounts = crate::probe_mounts();
    let mut args: Vec<&str> = vec!["run", "-d"];
    args.extend(mounts.iter().map(String::as_str));
    args.extend(["busybox", "sh", "-c", &swap]);
    let id = ok(&stack, &args);
    let tar = tar_of(&[("x", tar::EntryType::Directory, 0o777, b"")]);
    let path = format!("/v1.47/containers/{id}/archive?path=/tmp/race&copyUIDGID=1");
    let mut statuses = std::collections::BTreeMap::new();
    for _ in 0..500 {
        let (code, _) = http_raw(
            &stack.engine_socket(),
            "PUT",
            &path,
            "application/x-tar",
            &tar,
        );
        *statuses.entry(code).or_insert(0) += 1;
        let now = std::fs::metadata(&secret).unwrap();
        assert_eq!(
            (now.mode(), now.uid(), now.gid()),
            (before.mode(), before.uid(), before.gid()),
            "the host file changed (answers so far: {statuses:?})"
        );
    }
    eprintln!("answers: {statuses:?}");
    assert!(
        statuses.keys().all(|c| [200, 400].contains(c)),
        "{statuses:?}"
    );
    ok(&stack, &["rm", "-f", &id]);
}

/// GET archive, parsed: every entry's name and size, checking that the data
/// read matches each header.
fn download(stack: &Stack, id: &str, path: &str) -> Vec<(String, u64)> {
    let (code, body) = http_raw(
        &stack.engine_socket(),
        "GET",
        &format!("/v1.47/containers/{id}/archive?path={path}"),
        "application/json",
        b"",
    );
    assert_eq!(code, 200);
    let mut a = tar::Archive::new(&body[..]);
    let mut out = vec![];
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let size = e.size();
        let mut n = 0u64;
        let mut buf = vec![0u8; 65536];
        loop {
            let k = e.read(&mut buf).unwrap();
            if k == 0 {
                break;
            }
            n += k as u64;
        }
        assert_eq!(n, size);
        out.push((e.path().unwrap().to_string_lossy().into_owned(), size));
    }
    out
}

#[test]
fn download_of_a_changing_file_is_one_entry_of_its_header_size() {
    require_root!();
    let _serial = serial();
    let stack = Stack::start();
    // Grows /tmp/grow with what the test uploads as /tmp/evil.tar, and makes
    // /tmp/shrink 2 MiB then empty, over and over.
    let script = "while [ ! -f /tmp/evil.tar ]; do sleep 0.1; done; \
        (head -c 1048576 /dev/zero > /tmp/grow; while true; do cat /tmp/evil.tar >> /tmp/grow; done) & \
        (while true; do head -c 2097152 /dev/zero > /tmp/shrink; : > /tmp/shrink; done) & wait";
    let id = ok(&stack, &["run", "-d", "busybox", "sh", "-c", script]);
    // What the container appends: a tar entry of its own making, which a
    // client would extract (anywhere) if it were read as part of the stream.
    let mut evil = Vec::new();
    let mut h = tar::Header::new_old();
    let name = b"../../../tmp/berth-pwned";
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(5);
    h.set_cksum();
    evil.extend_from_slice(h.as_bytes());
    evil.extend_from_slice(b"owned");
    evil.resize(1024, 0);
    // Written under another name, then renamed: the loop starts on a whole file.
    let upload = tar_of(&[("evil.part", tar::EntryType::Regular, 0o644, &evil)]);
    let (code, _) = http_raw(
        &stack.engine_socket(),
        "PUT",
        &format!("/v1.47/containers/{id}/archive?path=/tmp"),
        "application/x-tar",
        &upload,
    );
    assert_eq!(code, 200);
    ok(
        &stack,
        &["exec", &id, "mv", "/tmp/evil.part", "/tmp/evil.tar"],
    );
    crate::support::eventually("the container's files exist", || {
        let out = stack.cli(
            &crate::berth(),
            &["exec", &id, "ls", "/tmp/grow", "/tmp/shrink"],
        );
        out.status.success().then_some(())
    });
    for _ in 0..20 {
        let g = download(&stack, &id, "/tmp/grow");
        assert_eq!(g.len(), 1, "{g:?}");
        assert_eq!(g[0].0, "grow");
        let s = download(&stack, &id, "/tmp/shrink");
        assert_eq!(s.len(), 1, "{s:?}");
    }
    ok(&stack, &["rm", "-f", &id]);
}

#[test]
fn uploads_cannot_climb_out() {
    require_root!();
    let _serial = serial();
    let stack = Stack::start();
    let id = ok(&stack, &["run", "-d", "busybox", "sleep", "600"]);
    for name in [
        "../../../../tmp/berth-escaped",
        "/tmp/berth-escaped-abs",
        "a/../../berth-escaped",
    ] {
        // The tar crate refuses to write such names: the header is made by hand.
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(1);
        h.set_cksum();
        let mut data = h.as_bytes().to_vec();
        data.extend_from_slice(&[b'x'; 512]);
        data.extend_from_slice(&[0u8; 1024]);
        let (code, body) = http_raw(
            &stack.engine_socket(),
            "PUT",
            &format!("/v1.47/containers/{id}/archive?path=/tmp"),
            "application/x-tar",
            &data,
        );
        assert_eq!(code, 400, "{name}: {}", String::from_utf8_lossy(&body));
    }
    assert!(!crate::exists(std::path::Path::new("/tmp/berth-escaped")));
    assert!(!crate::exists(std::path::Path::new(
        "/tmp/berth-escaped-abs"
    )));
    // A 70 KiB GNU long name: refused before it is read into memory.
    let long = "n".repeat(70 * 1024);
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    b.append_data(&mut h, &long, &b"x"[..]).unwrap();
    let data = b.into_inner().unwrap();
    let (code, body) = http_raw(
        &stack.engine_socket(),
        "PUT",
        &format!("/v1.47/containers/{id}/archive?path=/tmp"),
        "application/x-tar",
        &data,
    );
    let body = String::from_utf8_lossy(&body);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("GNU long name"), "{body}");
    ok(&stack, &["rm", "-f", &id]);
}
