//! Issue 10, finding 8 (layers) and what held: a layer whose whiteouts name no
//! file (`.wh.`, `.wh..`, `.wh...`), or that carries overlayfs's own xattrs
//! (`trusted.overlay.*`), is refused with a 400 and leaves no image; entries
//! that climb out of the layer are refused; `load` verifies every blob against
//! its digest. A compressed layer that expands past its limit (50× its size,
//! at least 64 MiB) is refused.

use berth_testutil::require_root;

use crate::{http_raw, serial, Stack};

fn header(name: &str, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(0o755);
    h.set_size(size);
    // Some of these names the tar crate would refuse to set: write them raw.
    let raw = &mut h.as_ustar_mut().unwrap().name;
    raw.fill(0);
    raw[..name.len()].copy_from_slice(name.as_bytes());
    h.set_cksum();
    h
}

/// A header and the data that follows it.
type Entry = (tar::Header, Vec<u8>);

fn layer(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for (h, data) in entries {
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

fn pax(records: &[(&str, &[u8])]) -> Entry {
    let mut data = Vec::new();
    for (k, v) in records {
        let body_len = k.len() + v.len() + 3;
        let mut len = body_len + body_len.to_string().len();
        if len.to_string().len() != body_len.to_string().len() {
            len += 1;
        }
        data.extend_from_slice(format!("{len} {k}=").as_bytes());
        data.extend_from_slice(v);
        data.push(b'\n');
    }
    let h = header("PaxHeaders/x", tar::EntryType::XHeader, data.len() as u64);
    (h, data)
}

fn import(stack: &Stack, repo: &str, tar: &[u8]) -> (u16, String) {
    let (code, body) = http_raw(
        &stack.engine_socket(),
        "POST",
        &format!("/v1.47/images/create?fromSrc=-&repo={repo}&tag=latest"),
        "application/x-tar",
        tar,
    );
    (code, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn bad_whiteouts_overlay_xattrs_and_escapes_are_refused() {
    require_root!();
    let _serial = serial();
    let stack = Stack::start();
    let dir = |n: &str| (header(n, tar::EntryType::Directory, 0), vec![]);
    let file = |n: &str| (header(n, tar::EntryType::Regular, 1), vec![b'x']);
    let cases: Vec<(&str, Vec<Entry>, &str)> = vec![
        (
            "wh-empty",
            vec![dir("etc/"), file("etc/.wh.")],
            "invalid whiteout",
        ),
        (
            "wh-dot",
            vec![dir("etc/"), file("etc/.wh..")],
            "invalid whiteout",
        ),
        (
            "wh-dotdot",
            vec![dir("etc/"), file("etc/.wh...")],
            "invalid whiteout",
        ),
        (
            "overlay-xattr",
            vec![
                pax(&[("SCHILY.xattr.trusted.overlay.redirect", b"/etc")]),
                dir("d/"),
            ],
            "reserved for overlayfs",
        ),
        ("dotdot", vec![file("../escaped")], "'..'"),
        ("absolute", vec![file("/escaped")], "absolute"),
    ];
    for (name, entries, says) in cases {
        let (code, body) = import(&stack, name, &layer(&entries));
        assert!(
            body.contains(says) && (code == 400 || body.contains("error")),
            "{name}: {code} {body}"
        );
        let (code, _) = stack.http("GET", &format!("/v1.47/images/{name}:latest/json"), b"");
        assert_eq!(code, 404, "{name} left an image");
    }
    assert!(!crate::exists(std::path::Path::new("/escaped")));

    // load: a blob whose content does not hash to its name.
    let mut tar = Vec::new();
    let name = format!("blobs/sha256/{}", "ab".repeat(32));
    let (h, d) = (header(&name, tar::EntryType::Regular, 5), b"lies!".to_vec());
    tar.extend_from_slice(&layer(&[(h, d)])[..]);
    let (code, body) = http_raw(
        &stack.engine_socket(),
        "POST",
        "/v1.47/images/load",
        "application/x-tar",
        &tar,
    );
    let body = String::from_utf8_lossy(&body);
    assert!(
        body.contains("digest") || body.contains("mismatch"),
        "{code} {body}"
    );
}

/// A tar of one `size`-byte file of zeros, gzip-compressed by gzip(1) as it is
/// made (never whole in memory): a 100 MiB file is some 100 KiB.
fn gzip_bomb(size: u64) -> Vec<u8> {
    use std::io::Write;
    let mut gz = std::process::Command::new("gzip")
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip");
    let mut stdin = gz.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let mut h = tar::Header::new_gnu();
        h.set_path("zeros").unwrap();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(size);
        h.set_cksum();
        stdin.write_all(h.as_bytes()).unwrap();
        let zeros = vec![0u8; 1 << 20];
        let mut left = size;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            stdin.write_all(&zeros[..n]).unwrap();
            left -= n as u64;
        }
        stdin.write_all(&[0u8; 1024]).unwrap();
    });
    let out = gz.wait_with_output().unwrap();
    writer.join().unwrap();
    out.stdout
}

#[test]
fn a_decompression_bomb_stops_at_its_limit() {
    require_root!();
    let _serial = serial();
    let stack = Stack::start();
    let bomb = gzip_bomb(200 << 20);
    eprintln!("bomb: {} KiB compressed", bomb.len() / 1024);
    let (code, body) = import(&stack, "bomb", &bomb);
    assert!(
        body.contains("larger than") && (code == 400 || body.contains("error")),
        "{code} {body}"
    );
    let (code, _) = stack.http("GET", "/v1.47/images/bomb:latest/json", b"");
    assert_eq!(code, 404, "the bomb left an image");
    // Within the limit, the same shape unpacks.
    let fine = gzip_bomb(8 << 20);
    let (code, body) = import(&stack, "fine", &fine);
    assert_eq!(code, 200, "{body}");
}
