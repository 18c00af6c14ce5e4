//! Issue 10, findings 6 and 8: unbounded memory and input checked too late. A
//! 2 GiB JSON body is refused (413) with berthd's memory flat; past the
//! connection cap a client gets 503; a 16 MiB `load` archive of symlinks keeps
//! the manager's memory flat; names over 64 KiB, values that overflow, relative
//! working directories and bad volume names are refused at once with a 4xx, and
//! nothing is left behind.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use berth_testutil::require_root;

use crate::{http_raw, peak_rss, rss, serial, Stack};

const MIB: u64 = 1 << 20;

/// Sends a `len`-byte body of zeros (never held in memory) and returns the
/// answer's status and body; the server may answer and close before the body
/// is all sent.
fn huge_body(stack: &Stack, path: &str, len: u64, chunked: bool) -> (u16, String) {
    let mut s = UnixStream::connect(stack.engine_socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!("Content-Length: {len}")
    };
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: berth\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    let mut writer = s.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let zeros = vec![b' '; 1 << 20];
        let mut sent = 0u64;
        while sent < len {
            let r = if chunked {
                writer
                    .write_all(format!("{:x}\r\n", zeros.len()).as_bytes())
                    .and_then(|_| writer.write_all(&zeros))
                    .and_then(|_| writer.write_all(b"\r\n"))
            } else {
                writer.write_all(&zeros)
            };
            if r.is_err() {
                break;
            }
            sent += zeros.len() as u64;
        }
        sent
    });
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let _ = s.shutdown(std::net::Shutdown::Both);
    let sent = sender.join().unwrap();
    eprintln!(
        "sent {} MiB before the answer closed the connection",
        sent / MIB
    );
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[test]
fn a_2gib_json_body_is_refused_with_flat_memory() {
    require_root!();
    let _serial = serial();
    let stack = Stack::start();
    let pid = stack.berthd_pid();
    for chunked in [false, true] {
        let (code, text) = huge_body(&stack, "/v1.47/containers/create", 2 << 30, chunked);
        assert_eq!(code, 413, "{text}");
        assert!(text.contains("larger than 16 MiB"), "{text}");
    }
    let peak = peak_rss(pid);
    eprintln!("berthd peak RSS {} MiB", peak / MIB);
    assert!(peak < 100 * MIB, "berthd peaked at {} MiB", peak / MIB);
    // Still serving.
    assert!(crate::support::ping(&stack.engine_socket()));
}

#[test]
fn past_the_connection_cap_a_client_gets_503() {
    require_root!();
    let _serial = serial();
    let stack = Stack::start();
    // Idle connections hold every slot (512 by default).
    let mut held = vec![];
    for _ in 0..512 {
        held.push(UnixStream::connect(stack.engine_socket()).unwrap());
    }
    // Each is accepted in turn: wait until the next one is refused.
    let answer = crate::support::eventually("a 503 past the cap", || {
        let (code, body) =
            crate::support::http(&stack.engine_socket(), "GET", "/_ping", "text/plain", b"");
        (code == 503).then_some(body)
    });
    assert!(answer.contains("maximum of 512 connections"), "{answer}");
    drop(held);
    crate::support::eventually("serving again once the clients left", || {
        crate::support::ping(&stack.engine_socket()).then_some(())
    });
}

/// A tar entry by hand (the tar crate would refuse some of these).
fn entry(out: &mut Vec<u8>, name: &str, kind: tar::EntryType, link: &str, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_path(name).unwrap();
    if !link.is_empty() {
        h.set_link_name(link).unwrap();
    }
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

#[test]
fn load_symlink_bomb_keeps_the_manager_small() {
    require_root!();
    let _serial = serial();
    let stack = Stack::start();
    let pid = stack.manager_pid();
    // One 12 MiB JSON file and 8000 symlinks to it: once, each link was a copy.
    let mut tar = Vec::new();
    let big = format!("[\"{}\"]", "x".repeat(12 << 20));
    entry(
        &mut tar,
        "big.json",
        tar::EntryType::Regular,
        "",
        big.as_bytes(),
    );
    for i in 0..8000 {
        entry(
            &mut tar,
            &format!("l{i}.json"),
            tar::EntryType::Symlink,
            "big.json",
            b"",
        );
    }
    tar.extend_from_slice(&[0u8; 1024]);
    eprintln!("archive: {} MiB", tar.len() as u64 / MIB);
    let (code, body) = http_raw(
        &stack.engine_socket(),
        "POST",
        "/v1.47/images/load",
        "application/x-tar",
        &tar,
    );
    let body = String::from_utf8_lossy(&body);
    assert!(code == 400 || body.contains("error"), "{code} {body}");
    let peak = peak_rss(pid);
    eprintln!(
        "manager peak RSS {} MiB (now {} MiB)",
        peak / MIB,
        rss(pid) / MIB
    );
    assert!(peak < 200 * MIB, "the manager peaked at {} MiB", peak / MIB);

    // Many distinct small files: past the 64 MiB budget, refused.
    let mut tar = Vec::new();
    let one = format!("[\"{}\"]", "y".repeat((1 << 20) - 8));
    for i in 0..80 {
        entry(
            &mut tar,
            &format!("f{i}.json"),
            tar::EntryType::Regular,
            "",
            one.as_bytes(),
        );
    }
    tar.extend_from_slice(&[0u8; 1024]);
    let (code, body) = http_raw(
        &stack.engine_socket(),
        "POST",
        "/v1.47/images/load",
        "application/x-tar",
        &tar,
    );
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("needs more than 64 MiB"), "{code} {body}");
    assert!(peak_rss(pid) < 200 * MIB);
}

#[test]
fn long_names_overflows_and_late_errors_are_4xx() {
    require_root!();
    let _serial = serial();
    let stack = Stack::start();
    // A layer with a 70 KiB GNU long name, imported.
    let mut tar = Vec::new();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::GNULongName);
    h.set_size(70 * 1024);
    h.set_cksum();
    tar.extend_from_slice(h.as_bytes());
    tar.extend_from_slice(&vec![b'n'; 70 * 1024]);
    tar.resize(tar.len().div_ceil(512) * 512, 0);
    entry(&mut tar, "x", tar::EntryType::Regular, "", b"x");
    tar.extend_from_slice(&[0u8; 1024]);
    let (code, body) = http_raw(
        &stack.engine_socket(),
        "POST",
        "/v1.47/images/create?fromSrc=-&repo=longname&tag=latest",
        "application/x-tar",
        &tar,
    );
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("GNU long name"), "{code} {body}");
    let (code, _) = stack.http("GET", "/v1.47/images/longname:latest/json", b"");
    assert_eq!(code, 404, "nothing is left of the refused import");

    for (what, body) in [
        (
            "Memory × 2 overflows",
            r#"{"Image":"busybox","HostConfig":{"Memory":9223372036854775807}}"#,
        ),
        (
            "NanoCpus overflows",
            r#"{"Image":"busybox","HostConfig":{"NanoCpus":9223372036854775807}}"#,
        ),
        (
            "relative WorkingDir",
            r#"{"Image":"busybox","WorkingDir":"relative/dir"}"#,
        ),
        (
            "bad volume name",
            r#"{"Image":"busybox","HostConfig":{"Binds":["bad$name:/data"]}}"#,
        ),
    ] {
        let (code, answer) = stack.http("POST", "/v1.47/containers/create", body.as_bytes());
        assert_eq!(code, 400, "{what}: {answer}");
    }
    let (_, list) = stack.http("GET", "/v1.47/containers/json?all=1", b"");
    assert_eq!(
        list.trim(),
        "[]",
        "a refused create left a container behind"
    );
}
