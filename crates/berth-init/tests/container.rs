//! berth-init as the PID 1 of a real container: a busybox bundle run by
//! berth-runtime, with the binary bind-mounted read-only at /sbin/berth-init, the
//! way the engine's `--init` does it.
//!
//! This is its own test binary because it makes the test process a child
//! subreaper (the runtime's container init is orphaned to us and reaped here).
//! Guards delete the container and remove its cgroup even when a test fails.

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use berth_testutil::{Bundle, CgroupGuard};
use serde_json::json;

/// Where `--init` puts the binary in the container.
const INIT_IN_CONTAINER: &str = "/sbin/berth-init";

/// A container with berth-init as PID 1 and a private runtime root. Dropping it
/// deletes the container (force) and then removes its cgroup.
struct Container {
    runtime: PathBuf,
    root: tempfile::TempDir,
    id: String,
    bundle: Bundle,
    _cgroup: CgroupGuard,
}

impl Container {
    fn new(command: &[&str]) -> Container {
        become_subreaper();
        let init = berth_testutil::binary("berth-init");
        assert!(
            init.exists(),
            "{} missing: cargo build -p berth-init",
            init.display()
        );
        let runtime = berth_testutil::binary("berth-runtime");
        assert!(
            runtime.exists(),
            "{} missing: cargo build -p berth-runtime",
            runtime.display()
        );
        let id = berth_testutil::unique_name("berth-test-init");
        let mut args = vec![INIT_IN_CONTAINER, "--"];
        args.extend_from_slice(command);
        let mut bundle = Bundle::busybox(&id, &args).unwrap();
        // The guard exists before anything can create the cgroup.
        let cgroup = CgroupGuard(bundle.cgroup());
        bundle.config["mounts"].as_array_mut().unwrap().push(json!({
            "destination": INIT_IN_CONTAINER,
            "type": "bind",
            "source": init,
            "options": ["bind", "ro"]
        }));
        bundle.write().unwrap();
        Container {
            runtime,
            root: tempfile::Builder::new()
                .prefix("berth-test-root")
                .tempdir()
                .unwrap(),
            id,
            bundle,
            _cgroup: cgroup,
        }
    }

    /// `berth-runtime run` in the foreground. Output goes through files: the
    /// container inherits the runtime's stdio, and a pipe would stay open for as
    /// long as anything in it lives.
    fn run(&self) -> Output {
        berth_testutil::output_through_files(
            Command::new(&self.runtime)
                .arg("--root")
                .arg(self.root.path())
                .args(["run", "--bundle"])
                .arg(self.bundle.path())
                .arg(&self.id),
        )
        .unwrap()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new(&self.runtime)
            .arg("--root")
            .arg(self.root.path())
            .args(["delete", "--force", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        reap_orphans();
    }
}

/// The container's init is orphaned when the runtime's intermediate process exits;
/// as a subreaper the test process inherits it instead of this machine's PID 1.
fn become_subreaper() {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer flag only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

/// Reap children that were orphaned to us and have exited. The tests here start no
/// other children of their own that anything waits for by pid.
fn reap_orphans() {
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid status pointer; WNOHANG never blocks.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return;
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The `ps -o stat,comm` lines whose state is Z.
fn zombie_lines(ps: &str) -> Vec<&str> {
    ps.lines()
        .skip(1)
        .filter(|l| l.trim_start().starts_with('Z'))
        .collect()
}

#[test]
fn in_a_container_it_is_pid1_and_reaps_zombies() {
    berth_testutil::require_root!();
    let c = Container::new(&[
        "sh",
        "-c",
        "(sleep 0.2 &) ; (sleep 0.2 &); sleep 1; ps -o pid,stat,comm",
    ]);
    let out = c.run();
    let ps = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let pid1 = ps
        .lines()
        .find(|l| l.split_whitespace().next() == Some("1"))
        .unwrap_or_default();
    assert!(
        pid1.ends_with("berth-init"),
        "PID 1 is not berth-init:\n{ps}"
    );
    assert!(zombie_lines(&ps).is_empty(), "zombies left:\n{ps}");
}

#[test]
fn in_a_container_the_command_status_is_the_container_status() {
    berth_testutil::require_root!();
    let c = Container::new(&["sh", "-c", "exit 3"]);
    let out = c.run();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));

    let c = Container::new(&["berth-test-no-such-command"]);
    let out = c.run();
    assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("berth-init: cannot execute"),
        "{}",
        text(&out.stderr)
    );
}
