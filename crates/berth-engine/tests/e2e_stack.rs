//! End to end, as root: a private berth-manager and berthd on temporary directories,
//! the busybox test image imported, then `run` through our CLI and through the real
//! docker CLI (every version installed, through API version negotiation).
//!
//! Binaries: `cargo build -p berth-manager -p berth-shim -p berth-runtime
//! -p berth-engine -p berth-cli -p berth-init` with the same CARGO_TARGET_DIR as the
//! test. The guard puts the machine back as it was even when the test fails: berthd
//! and the manager killed, every shim of the stack and its container killed, every
//! mount under the temporary directory undone, the containers' cgroups removed, and
//! the orphans this process inherits (it is a child subreaper) reaped.
//!
//! The stack guard is the shared one in `support/`. This file holds a single test on
//! purpose: the guard reaps every zombie child of the test process, which is only
//! safe while no other test of the same binary runs commands of its own.

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use support::{docker_clis, stdout, Stack};

/// Upper bound for what must happen eventually: a guard against hanging, not a
/// timing assertion.
const EVENTUALLY: Duration = Duration::from_secs(120);

#[test]
fn run_through_our_cli_and_the_docker_cli() {
    berth_testutil::require_root!();
    let stack = Stack::start();
    stack.import_busybox();

    let berth = berth_testutil::binary("berth");
    let out = stack.cli(
        &berth,
        &["run", "--rm", "busybox", "echo", "hello", "world"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stack.logs());
    assert_eq!(stdout(&out), "hello world\n");
    let out = stack.cli(&berth, &["run", "--rm", "busybox", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    let out = stack.cli_with_stdin(
        &berth,
        &["run", "-i", "--rm", "busybox", "cat"],
        Some(b"abc\n"),
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), "abc\n");
    let out = stack.cli(
        &berth,
        &[
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "echo out; echo err >&2",
        ],
    );
    assert_eq!(stdout(&out), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");

    let dockers = docker_clis();
    assert!(
        !dockers.is_empty(),
        "no docker CLI installed (apt-get install docker.io)"
    );
    for docker in &dockers {
        let docker = docker.as_path();
        let out = stack.cli(
            docker,
            &["run", "--rm", "busybox", "echo", "hello", "world"],
        );
        assert_eq!(out.status.code(), Some(0), "{}", docker.display());
        assert_eq!(stdout(&out), "hello world\n", "{}", docker.display());
        let out = stack.cli(docker, &["run", "--rm", "busybox", "sh", "-c", "exit 3"]);
        assert_eq!(out.status.code(), Some(3), "{}", docker.display());
        let out = stack.cli_with_stdin(
            docker,
            &["run", "-i", "--rm", "busybox", "cat"],
            Some(b"abc\n"),
        );
        assert_eq!(out.status.code(), Some(0), "{}", docker.display());
        assert_eq!(stdout(&out), "abc\n", "{}", docker.display());
    }

    // --rm removes them all (berthd does it once they exit).
    let start = Instant::now();
    loop {
        let out = stack.cli(&berth, &["ps", "-a", "-q"]);
        if out.status.success() && stdout(&out).is_empty() {
            break;
        }
        assert!(start.elapsed() < EVENTUALLY, "containers left after --rm");
        std::thread::sleep(Duration::from_millis(100));
    }
}
