//! containerd drives berth-runtime through its runc shim (`ctr run
//! --runc-binary <berth-runtime>`): a private containerd (its own root, state
//! and socket, the CRI plugin off) imports a busybox OCI archive built from the
//! test rootfs and runs containers from it, with the runtime's state in a
//! private --runc-root. Skipped (with a message) where containerd is not
//! installed; scripts/deps.sh installs Debian's containerd so CI runs it.

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_testutil::unmount_below;
use common::{stderr, stdout, which, EngineCgroups};

const CGROUP_PARENT: &str = "berth-test-ctr";
const NAMESPACE: &str = "berth-test";
const IMAGE: &str = "docker.io/library/busybox:latest";

/// A containerd on private directories; stopped, unmounted and its cgroups
/// removed on drop.
struct Containerd {
    dir: tempfile::TempDir,
    child: std::process::Child,
    _cgroups: EngineCgroups,
}

impl Containerd {
    fn start() -> Containerd {
        let dir = tempfile::Builder::new()
            .prefix("berth-test-ctd")
            .tempdir()
            .unwrap();
        let d = dir.path();
        let config = format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n\
             [debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n",
            root = d.join("root").display(),
            state = d.join("state").display(),
            sock = d.join("containerd.sock").display(),
        );
        std::fs::write(d.join("config.toml"), config).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("containerd.log")).unwrap())
            .spawn()
            .unwrap();
        let me = Containerd {
            dir,
            child,
            _cgroups: EngineCgroups::new(CGROUP_PARENT),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if me.ctr(&["version"]).status.success() {
                return me;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("containerd did not come up: {}", me.log());
    }

    fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("--address")
            .arg(self.dir.path().join("containerd.sock"))
            .args(["--namespace", NAMESPACE])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn runc_root(&self) -> PathBuf {
        self.dir.path().join("runc")
    }

    /// `ctr run` of the image with berth-runtime as the shim's runc.
    fn run(&self, extra: &[&str], id: &str, cmd: &[&str]) -> Output {
        let bin = berth_testutil::binary("berth-runtime");
        let root = self.runc_root();
        let cgroup = format!("/{CGROUP_PARENT}/{id}");
        let mut args = vec![
            "run",
            "--runc-binary",
            bin.to_str().unwrap(),
            "--runc-root",
            root.to_str().unwrap(),
            "--cgroup",
            &cgroup,
        ];
        args.extend_from_slice(extra);
        args.push(IMAGE);
        args.push(id);
        args.extend_from_slice(cmd);
        self.ctr(&args)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Tasks first: their shims outlive containerd otherwise.
        let tasks = self.ctr(&["tasks", "list", "--quiet"]);
        for id in stdout(&tasks).split_whitespace() {
            let _ = self.ctr(&["tasks", "kill", "--signal", "SIGKILL", id]);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline
                && self.ctr(&["tasks", "delete", id]).status.code() != Some(0)
            {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let containers = self.ctr(&["containers", "list", "--quiet"]);
        for id in stdout(&containers).split_whitespace() {
            let _ = self.ctr(&["containers", "delete", id]);
        }
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
fn containerd_runs_containers_with_berth_runtime() {
    berth_testutil::require_root!();
    if which("containerd").is_none() || which("ctr").is_none() {
        eprintln!("skipped: containerd not installed (apt-get install containerd)");
        return;
    }
    let ctd = Containerd::start();
    let archive = common::busybox_oci_archive(ctd.dir.path(), IMAGE);
    let out = ctd.ctr(&["images", "import", archive.to_str().unwrap()]);
    assert!(out.status.success(), "import: {}", stderr(&out));

    let out = ctd.run(&["--rm"], "berth-ctr-hello", &["echo", "hello"]);
    assert!(
        out.status.success(),
        "ctr run: {}\n{}",
        stderr(&out),
        ctd.log()
    );
    assert_eq!(stdout(&out), "hello\n");

    let out = ctd.run(&["--rm"], "berth-ctr-exit", &["sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));

    // A detached task, exec into it, kill, delete: all through the runtime.
    let out = ctd.run(&["--detach"], "berth-ctr-bg", &["sleep", "1000"]);
    assert!(out.status.success(), "ctr run -d: {}", stderr(&out));
    let out = ctd.ctr(&[
        "tasks",
        "exec",
        "--exec-id",
        "e1",
        "berth-ctr-bg",
        "cat",
        "/proc/1/cmdline",
    ]);
    assert!(out.status.success(), "exec: {}", stderr(&out));
    assert_eq!(stdout(&out), "sleep\u{0}1000\u{0}");
    // The shim asked berth-runtime to create it under the private root.
    assert!(ctd
        .runc_root()
        .join(NAMESPACE)
        .join("berth-ctr-bg")
        .join("state.json")
        .exists());
    let out = ctd.ctr(&["tasks", "kill", "--signal", "SIGKILL", "berth-ctr-bg"]);
    assert!(out.status.success(), "kill: {}", stderr(&out));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = ctd.ctr(&["tasks", "delete", "berth-ctr-bg"]);
        if out.status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "task delete: {}", stderr(&out));
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = ctd.ctr(&["containers", "delete", "berth-ctr-bg"]);
    assert!(out.status.success(), "container delete: {}", stderr(&out));
    assert!(!ctd
        .runc_root()
        .join(NAMESPACE)
        .join("berth-ctr-bg")
        .exists());
}
