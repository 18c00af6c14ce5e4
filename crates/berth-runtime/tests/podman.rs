//! podman drives berth-runtime as its OCI runtime (`podman --runtime
//! <berth-runtime>`): a podman on private --root/--runroot/--tmpdir with vfs
//! storage, file locks and file events (nothing shared with another podman on
//! the machine), no network, runs a busybox image imported from the test
//! rootfs. Skipped (with a message) where podman is not installed;
//! scripts/deps.sh installs Debian's podman so CI runs it.

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Output, Stdio};

use berth_testutil::unmount_below;
use common::{stderr, stdout, which, EngineCgroups};

const CGROUP_PARENT: &str = "berth-test-podman";

struct Podman {
    dir: tempfile::TempDir,
    _cgroups: EngineCgroups,
}

impl Podman {
    fn new() -> Podman {
        let dir = tempfile::Builder::new()
            .prefix("berth-test-pm")
            .tempdir()
            .unwrap();
        std::fs::write(
            dir.path().join("containers.conf"),
            "[engine]\nlock_type = \"file\"\nevents_logger = \"file\"\ncgroup_manager = \"cgroupfs\"\n",
        )
        .unwrap();
        // podman runs its runtime without --root, so berth-runtime would keep the
        // containers' state (and its caches) in the host's /run/berth/runtime: the
        // runtime podman gets is ours with a root in the test's directory.
        let wrapper = dir.path().join("berth-runtime");
        berth_testutil::write_executable(
            &wrapper,
            &format!(
                "#!/bin/sh\nexec '{}' --root '{}' \"$@\"\n",
                berth_testutil::binary("berth-runtime").display(),
                dir.path().join("runtime").display()
            ),
        )
        .unwrap();
        Podman {
            dir,
            _cgroups: EngineCgroups::new(CGROUP_PARENT),
        }
    }

    fn podman(&self, args: &[&str]) -> Output {
        let d = self.dir.path();
        Command::new("podman")
            .env("CONTAINERS_CONF", d.join("containers.conf"))
            .arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("runroot"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .args(["--storage-driver", "vfs"])
            .arg("--runtime")
            .arg(d.join("berth-runtime"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `podman run` with what every container here gets: no network, the
    /// test's cgroup parent, and rlimits no higher than the test's own
    /// (podman asks for 1048576 files and processes, which a host without
    /// CAP_SYS_RESOURCE for its root cannot grant).
    fn run(&self, extra: &[&str], cmd: &[&str]) -> Output {
        let nofile = format!("nofile={0}:{0}", hard_limit(libc::RLIMIT_NOFILE));
        let nproc = format!("nproc={0}:{0}", hard_limit(libc::RLIMIT_NPROC));
        let parent = format!("/{CGROUP_PARENT}");
        let mut args = vec![
            "run",
            "--network",
            "none",
            "--cgroup-parent",
            &parent,
            "--ulimit",
            &nofile,
            "--ulimit",
            &nproc,
        ];
        args.extend_from_slice(extra);
        args.push("localhost/busybox:latest");
        args.extend_from_slice(cmd);
        self.podman(&args)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.podman(&["rm", "--all", "--force", "--time", "0"]);
        unmount_below(self.dir.path());
    }
}

/// The current hard limit of `resource`, capped at 1024 (lowering a limit
/// needs no privilege).
fn hard_limit(resource: libc::__rlimit_resource_t) -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the valid pointer.
    if unsafe { libc::getrlimit(resource, &mut r) } != 0 {
        return 1024;
    }
    r.rlim_max.min(1024)
}

#[test]
fn podman_runs_containers_with_berth_runtime() {
    berth_testutil::require_root!();
    if which("podman").is_none() {
        eprintln!("skipped: podman not installed (apt-get install podman)");
        return;
    }
    let pm = Podman::new();
    let tar = common::busybox_tar(pm.dir.path());
    let out = pm.podman(&["import", tar.to_str().unwrap(), "localhost/busybox:latest"]);
    assert!(out.status.success(), "import: {}", stderr(&out));

    let out = pm.run(&["--rm"], &["echo", "hello"]);
    assert!(out.status.success(), "podman run: {}", stderr(&out));
    assert_eq!(stdout(&out), "hello\n");

    // The exit code comes back through conmon from the runtime's process.
    let out = pm.run(&["--rm"], &["sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));

    // A detached container, exec into it (with a terminal too), stop, remove.
    let out = pm.run(&["-d", "--name", "berth-pm"], &["sleep", "1000"]);
    assert!(out.status.success(), "podman run -d: {}", stderr(&out));
    let out = pm.podman(&["exec", "berth-pm", "cat", "/proc/1/cmdline"]);
    assert!(out.status.success(), "exec: {}", stderr(&out));
    assert_eq!(stdout(&out), "sleep\u{0}1000\u{0}");
    let out = pm.podman(&["exec", "-t", "berth-pm", "tty"]);
    assert!(out.status.success(), "exec -t: {}", stderr(&out));
    assert!(stdout(&out).starts_with("/dev/pts/"), "{}", stdout(&out));
    let out = pm.podman(&["inspect", "--format", "{{.State.Status}}", "berth-pm"]);
    assert_eq!(stdout(&out).trim(), "running", "{}", stderr(&out));
    let out = pm.podman(&["rm", "--force", "--time", "0", "berth-pm"]);
    assert!(out.status.success(), "rm: {}", stderr(&out));
    let out = pm.podman(&["ps", "--all", "--quiet"]);
    assert_eq!(stdout(&out).trim(), "", "{}", stderr(&out));
}
