//! systemd's Type=notify contract: started with NOTIFY_SOCKET, berth-manager sends
//! READY=1 once its gRPC socket serves (so `systemctl start` returns only then),
//! and STOPPING=1 on SIGTERM.

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::net::{UnixDatagram, UnixStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A guard against hanging, not a timing assertion.
const EVENTUALLY: Duration = Duration::from_secs(60);

#[test]
fn manager_notifies_ready_once_serving_and_stopping_on_sigterm() {
    berth_testutil::require_root!();
    let dir = tempfile::Builder::new()
        .prefix("berth-test-")
        .tempdir_in("/tmp")
        .unwrap();
    let notify = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    sock.set_read_timeout(Some(EVENTUALLY)).unwrap();
    let address = dir.path().join("m.sock");
    let mut child = berth_testutil::ChildGuard(
        Command::new(berth_testutil::binary("berth-manager"))
            .arg("--address")
            .arg(&address)
            .arg("--root")
            .arg(dir.path().join("root"))
            .arg("--state")
            .arg(dir.path().join("run"))
            .arg("--shim")
            .arg(berth_testutil::binary("berth-shim"))
            .env("NOTIFY_SOCKET", &notify)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting berth-manager"),
    );
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).expect("no READY=1 from berth-manager");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.lines().any(|l| l == "READY=1"), "{msg:?}");
    // READY=1 came after the socket was bound and served.
    assert!(UnixStream::connect(&address).is_ok());

    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.0.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let n = sock
        .recv(&mut buf)
        .expect("no STOPPING=1 from berth-manager");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.lines().any(|l| l == "STOPPING=1"), "{msg:?}");
    let start = Instant::now();
    while child.0.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < EVENTUALLY, "berth-manager did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}
