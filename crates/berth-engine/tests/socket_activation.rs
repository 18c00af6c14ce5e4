//! systemd socket activation: berthd serves the listening socket it is handed
//! through LISTEN_FDS/LISTEN_PID (fd 3) and does not bind `-H` itself. The socket
//! is handed over by `systemd-socket-activate` (package systemd), which sets both
//! variables for the process it execs, as systemd does.

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A guard against hanging, not a timing assertion.
const EVENTUALLY: Duration = Duration::from_secs(60);

fn activator() -> Option<&'static Path> {
    [
        "/usr/bin/systemd-socket-activate",
        "/bin/systemd-socket-activate",
    ]
    .into_iter()
    .map(Path::new)
    .find(|p| p.exists())
}

#[test]
fn berthd_serves_the_socket_systemd_passes() {
    let Some(activate) = activator() else {
        panic!("systemd-socket-activate is missing (apt-get install systemd)");
    };
    let dir = tempfile::Builder::new()
        .prefix("berth-test-")
        .tempdir_in("/tmp")
        .unwrap();
    let passed = dir.path().join("passed.sock");
    let own = dir.path().join("own.sock");
    let _child = berth_testutil::ChildGuard(
        Command::new(activate)
            .arg("-l")
            .arg(&passed)
            .arg(berth_testutil::binary("berthd"))
            .arg("-H")
            .arg(format!("unix://{}", own.display()))
            .arg("--manager")
            .arg(dir.path().join("no-manager.sock"))
            .arg("--data-root")
            .arg(dir.path().join("engine"))
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .arg("--log-level-file")
            .arg(dir.path().join("level"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting systemd-socket-activate"),
    );
    let start = Instant::now();
    let mut conn = loop {
        if let Ok(c) = UnixStream::connect(&passed) {
            break c;
        }
        assert!(start.elapsed() < EVENTUALLY, "the activator never listened");
        std::thread::sleep(Duration::from_millis(20));
    };
    conn.set_read_timeout(Some(EVENTUALLY)).unwrap();
    conn.write_all(b"GET /v1.47/_ping HTTP/1.1\r\nHost: berth\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("api-version: 1.47"),
        "{answer}"
    );
    assert!(answer.ends_with("OK"), "{answer}");
    // The socket came from the activator: berthd bound nothing of its own.
    assert!(
        !own.exists(),
        "berthd bound -H although it was given a socket"
    );
}
