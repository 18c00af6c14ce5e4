//! Docker drives berth-runtime as one of its OCI runtimes: a private dockerd with
//! `--add-runtime berth=<our binary>` runs a busybox image imported from the test
//! rootfs. Skipped (with a message) where dockerd is not installed; scripts/test.sh
//! installs Debian's docker.io so CI always runs it.

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_testutil::{unmount_below, CgroupGuard};
use common::which;

const CGROUP_PARENT: &str = "berth-test-docker";

/// A dockerd on private directories; stopped, unmounted and its cgroups removed on drop.
struct Dockerd {
    dir: tempfile::TempDir,
    child: std::process::Child,
    _cgroups: CgroupGuard,
}

impl Dockerd {
    fn start() -> Option<Dockerd> {
        let dockerd = which("dockerd")?;
        let dir = tempfile::Builder::new()
            .prefix("berth-test-dk")
            .tempdir()
            .ok()?;
        let d = dir.path();
        let child = Command::new(dockerd)
            .arg(format!("--host=unix://{}/docker.sock", d.display()))
            .arg(format!("--data-root={}/data", d.display()))
            .arg(format!("--exec-root={}/exec", d.display()))
            .arg(format!("--pidfile={}/docker.pid", d.display()))
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
            .arg(format!("--cgroup-parent={CGROUP_PARENT}"))
            .arg(format!(
                "--add-runtime=berth={}",
                berth_testutil::binary("berth-runtime").display()
            ))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("dockerd.log")).ok()?)
            .spawn()
            .ok()?;
        let me = Dockerd {
            dir,
            child,
            _cgroups: CgroupGuard(CGROUP_PARENT.into()),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if me.docker(&["version"]).status.success() {
                return Some(me);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!("dockerd did not come up: {}", me.log());
        None
    }

    fn docker(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker")
            .arg("-H")
            .arg(format!("unix://{}/docker.sock", self.dir.path().display()))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // SIGTERM lets dockerd stop its containerd and unmount its layers.
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        unmount_below(self.dir.path());
    }
}

#[test]
fn docker_runs_containers_with_berth_runtime() {
    berth_testutil::require_root!();
    if which("dockerd").is_none() || which("docker").is_none() {
        eprintln!("skipped: dockerd not installed (apt-get install docker.io)");
        return;
    }
    let Some(dk) = Dockerd::start() else {
        panic!("dockerd failed to start");
    };
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = tmp.path().join("rootfs");
    berth_testutil::busybox_rootfs(&rootfs).unwrap();
    let tar = tmp.path().join("rootfs.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let out = dk.docker(&["import", tar.to_str().unwrap(), "busybox:latest"]);
    assert!(
        out.status.success(),
        "import: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = dk.docker(&[
        "run",
        "--runtime",
        "berth",
        "--rm",
        "busybox",
        "echo",
        "hello",
    ]);
    assert!(
        out.status.success(),
        "docker run: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        dk.log()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");

    // Exit codes, and exec into a detached container, go through the runtime too.
    let out = dk.docker(&[
        "run",
        "--runtime",
        "berth",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3));
    let out = dk.docker(&[
        "run",
        "-d",
        "--runtime",
        "berth",
        "busybox",
        "sleep",
        "1000",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let out = dk.docker(&["exec", &id, "cat", "/proc/1/cmdline"]);
    assert!(
        out.status.success(),
        "exec: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "sleep\u{0}1000\u{0}");
    let out = dk.docker(&["rm", "-f", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!Path::new(&format!("/sys/fs/cgroup/memory/{CGROUP_PARENT}/{id}")).exists());
}
