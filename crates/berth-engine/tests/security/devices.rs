//! Issue 10, finding 1: device rules on cgroup v2. The eBPF device program on the
//! real kernel: a process in a cgroup2 directory with Docker's default rules
//! attached may create a node for the host's disk but not open it, and a rule
//! added by a later `apply` (an `update`) takes effect.
//!
//! The test cgroup exists only in the cgroup2 hierarchy (on a hybrid host the
//! process stays in the v1 devices controller's root, which allows everything),
//! so what is refused here is refused by the program alone. Then the same attack
//! from a default container, through the whole stack.

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_cgroups::{CgroupManager, Layout};
use berth_testutil::{
    block_device_candidates, require_root, unique_name, Cgroup2RootGuard, CgroupGuard,
};
use oci_spec::runtime::LinuxResources;

use crate::{ok, serial, Stack};

fn cgroup2_root() -> Option<PathBuf> {
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| berth_cgroups::layout::is_cgroup2(p))
}

/// Docker's default device rules, as berthd writes them into every spec.
const DOCKER_RULES: &str = r#"[
    {"allow": false, "access": "rwm"},
    {"allow": true, "type": "c", "access": "m"},
    {"allow": true, "type": "b", "access": "m"},
    {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
    {"allow": true, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
    {"allow": true, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
    {"allow": true, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
    {"allow": true, "type": "c", "major": 136, "access": "rwm"}
]"#;

/// Run `script` in a shell that first moves itself into the cgroup `dir`;
/// returns its exit code and stderr.
fn in_cgroup(dir: &Path, script: &str) -> (i32, String) {
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {}/cgroup.procs || exit 90\n{script}",
            dir.display()
        ))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn v2_device_program_lets_the_host_disk_be_created_not_opened() {
    require_root!();
    let _serial = serial();
    let Some(root) = cgroup2_root() else {
        eprintln!("skipped: no cgroup2 hierarchy");
        return;
    };
    let name = unique_name("berth-test-devbpf");
    let rel = berth_testutil::test_cgroup(&name);
    // Drop order: the cgroup (guard), then the root's controllers.
    let _root = Cgroup2RootGuard::new(&root);
    let _guard = CgroupGuard(rel.clone());
    let layout = Layout::V2 { root: root.clone() };
    let cg = CgroupManager::with_layout(&layout, Some(Path::new(&rel)), &name, false).unwrap();
    cg.create().unwrap();
    let dir = cg.paths()[""].clone();
    let tmp = tempfile::tempdir().unwrap();
    let node = tmp.path().join("disk");
    let probe_for = |major: u32, minor: u32| {
        format!(
            "mknod {n} b {major} {minor} || exit 91\nhead -c 1 {n} >/dev/null || exit 92\nhead -c 1 /dev/null || exit 93\nexit 0",
            n = node.display()
        )
    };

    // Without a program the disk opens: the probe itself works on this host.
    let mut chosen = None;
    for (major, minor) in block_device_candidates() {
        let (code, err) = in_cgroup(&dir, &probe_for(major, minor));
        let _ = std::fs::remove_file(&node);
        if code == 0 {
            chosen = Some((major, minor));
            break;
        }
        eprintln!(
            "block device {major}:{minor} cannot be opened here even without a program: {err}"
        );
    }
    let Some((major, minor)) = chosen else {
        eprintln!("skipped: no block device that root may open on this host");
        return;
    };
    let probe = probe_for(major, minor);

    let mut r = LinuxResources::default();
    r.set_devices(Some(serde_json::from_str(DOCKER_RULES).unwrap()));
    cg.apply(&r).unwrap();
    let (code, err) = in_cgroup(&dir, &probe);
    assert_eq!(
        code, 92,
        "the disk was opened under the device program: {err}"
    );
    assert!(err.contains("Operation not permitted"), "{err}");
    std::fs::remove_file(&node).unwrap();

    // An update adding read access to that one disk replaces the program.
    let mut rules: Vec<serde_json::Value> = serde_json::from_str(DOCKER_RULES).unwrap();
    rules.push(serde_json::json!({"allow": true, "type": "b", "major": major, "minor": minor, "access": "r"}));
    r.set_devices(Some(
        serde_json::from_value(serde_json::Value::Array(rules)).unwrap(),
    ));
    cg.apply(&r).unwrap();
    assert_eq!(
        berth_cgroups::bpf::attached_device_programs(&dir)
            .unwrap()
            .len(),
        1
    );
    let (code, err) = in_cgroup(&dir, &probe);
    assert_eq!(
        code, 0,
        "read access granted by the update was refused: {err}"
    );
    let (code, err) = in_cgroup(
        &dir,
        &format!("echo x > {} && exit 0; exit 94", node.display()),
    );
    assert_eq!(code, 94, "write access was never granted: {err}");
    std::fs::remove_file(&node).unwrap();

    // Nothing the test ran is left in the cgroup; remove it now to see it go.
    for _ in 0..100 {
        if cg.pids().map(|p| p.is_empty()).unwrap_or(true) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    cg.remove().unwrap();
}

/// The same attack from a default container: the node can be made (Docker's
/// rules allow mknod of any block device), opening it is refused; and the
/// container's cgroup2 directory carries exactly one device program on a v2
/// host, none on a hybrid one.
#[test]
fn default_container_cannot_open_the_host_disk() {
    require_root!();
    let _serial = serial();
    let Some((major, minor)) = berth_testutil::host_root_block_device() else {
        eprintln!("skipped: no block device found");
        return;
    };
    let stack = Stack::start();
    let id = ok(&stack, &["run", "-d", "busybox", "sleep", "300"]);
    let script = format!(
        "mknod /tmp/disk b {major} {minor} && echo mknod-ok; head -c 1 /tmp/disk >/dev/null"
    );
    let out = stack.cli(&crate::berth(), &["exec", &id, "sh", "-c", &script]);
    let (o, e) = (crate::stdout(&out), crate::stderr(&out));
    assert!(o.contains("mknod-ok"), "mknod: {o} {e}");
    assert_ne!(
        out.status.code(),
        Some(0),
        "the host disk was opened: {o} {e}"
    );
    assert!(e.contains("Operation not permitted"), "{e}");

    // A v2 host enforces the rules with one eBPF program on the container's
    // cgroup2 directory; a hybrid host with its v1 devices controller alone
    // (no program, as runc and crun), which refused the open above.
    if let Some(root) = cgroup2_root() {
        let dir = root.join("berth").join(&id);
        let progs = berth_cgroups::bpf::attached_device_programs(&dir).unwrap();
        let hybrid = matches!(Layout::detect(), Ok(Layout::V1 { .. }));
        assert_eq!(
            progs.len(),
            usize::from(!hybrid),
            "device programs on {}: {progs:?}",
            dir.display()
        );
    }
    ok(&stack, &["rm", "-f", &id]);
}

/// `--device` and `--device-cgroup-rule` grant what they name and no more: a node
/// mapped read-only reads but does not open for writing, a rule lets a node the
/// container made itself be read, and a path that is not a device is refused at
/// create with nothing left behind.
#[test]
fn device_flags_grant_what_they_name() {
    require_root!();
    let _serial = serial();
    let stack = Stack::start();
    // A block device the host itself may open (some sandboxes refuse root its
    // disk), so a refusal inside is the container's rules.
    let node = stack.path("disk");
    let chosen = block_device_candidates()
        .into_iter()
        .find(|&(major, minor)| {
            let _ = std::fs::remove_file(&node);
            nix::sys::stat::mknod(
                &node,
                nix::sys::stat::SFlag::S_IFBLK,
                nix::sys::stat::Mode::from_bits_truncate(0o600),
                nix::sys::stat::makedev(major.into(), minor.into()),
            )
            .is_ok()
                && std::fs::File::open(&node).is_ok()
        });
    let Some((major, minor)) = chosen else {
        eprintln!("skipped: no block device that root may open on this host");
        return;
    };
    let mapping = format!("{}:/dev/xdisk:r", node.display());
    let out = ok(
        &stack,
        &[
            "run", "--rm", "--network", "none", "--device", &mapping, "busybox", "sh", "-c",
            "head -c 1 /dev/xdisk >/dev/null && echo read-ok; echo x 2>&1 >/dev/xdisk; stat -c '%t:%T' /dev/xdisk",
        ],
    );
    assert!(out.contains("read-ok"), "{out}");
    assert!(out.contains("Operation not permitted"), "{out}");
    assert!(out.contains(&format!("{major:x}:{minor:x}")), "{out}");

    let rule = format!("b {major}:{minor} r");
    let script =
        format!("mknod /tmp/d b {major} {minor} && head -c 1 /tmp/d >/dev/null && echo read-ok");
    let out = ok(
        &stack,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "--device-cgroup-rule",
            &rule,
            "busybox",
            "sh",
            "-c",
            &script,
        ],
    );
    assert_eq!(out, "read-ok");

    let before = ok(&stack, &["ps", "-aq"]);
    let out = stack.cli(
        &crate::berth(),
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "--device",
            "/etc/hostname",
            "busybox",
            "true",
        ],
    );
    assert!(!out.status.success());
    assert!(
        crate::stderr(&out).contains("not a device node"),
        "{}",
        crate::stderr(&out)
    );
    assert_eq!(ok(&stack, &["ps", "-aq"]), before);
}
