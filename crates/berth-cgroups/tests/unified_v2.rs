//! The v2 backend against a real cgroup2 hierarchy (needs root). On a hybrid
//! host the cgroup2 mount at /sys/fs/cgroup/unified is one, with few controllers
//! (here only hugetlb): enough to check creation with controller delegation,
//! joining, freezing through cgroup.freeze/cgroup.events, listing pids, stats,
//! the "controller not enabled" errors and removal on the kernel itself.
//!
//! The test works below its own parent, `/berth-test-v2`, so that the
//! controllers it enables at the hierarchy root can be disabled again afterwards
//! (the kernel refuses while a child still delegates them).

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_cgroups::{CgroupError, CgroupManager, CgroupVersion, Layout};
use berth_testutil::{require_root, unique_name, CgroupGuard, ChildGuard};
use oci_spec::runtime::LinuxResources;

const UNIFIED: &str = "/sys/fs/cgroup/unified";

/// Removes `/berth-test-v2` and disables at the root the controllers that were
/// not enabled there before the test.
struct RestoreRoot {
    root: PathBuf,
    enabled_before: Vec<String>,
}

impl Drop for RestoreRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(self.root.join("berth-test-v2"));
        let now =
            std::fs::read_to_string(self.root.join("cgroup.subtree_control")).unwrap_or_default();
        for c in now.split_whitespace() {
            if !self.enabled_before.iter().any(|b| b == c) {
                let _ = std::fs::write(self.root.join("cgroup.subtree_control"), format!("-{c}"));
            }
        }
    }
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.join(file).display()))
        .trim()
        .to_string()
}

#[test]
fn v2_backend_on_a_real_cgroup2_hierarchy() {
    require_root!();
    let root = if berth_cgroups::layout::is_cgroup2(Path::new("/sys/fs/cgroup")) {
        PathBuf::from("/sys/fs/cgroup")
    } else if berth_cgroups::layout::is_cgroup2(Path::new(UNIFIED)) {
        PathBuf::from(UNIFIED)
    } else {
        eprintln!("skipped: no cgroup2 hierarchy");
        return;
    };
    let name = unique_name("berth-test-v2");
    let rel = format!("berth-test-v2/{name}");
    // Drop order: the cgroup first (guard), then the parent and the root's state.
    let _restore = RestoreRoot {
        enabled_before: read(&root, "cgroup.subtree_control")
            .split_whitespace()
            .map(str::to_string)
            .collect(),
        root: root.clone(),
    };
    let _guard = CgroupGuard(rel.clone());

    let layout = Layout::V2 { root: root.clone() };
    let m = CgroupManager::with_layout(&layout, Some(Path::new(&rel)), &name, false).unwrap();
    assert_eq!(m.version(), CgroupVersion::V2);
    let dir = m.paths()[""].clone();
    assert_eq!(dir, root.join(&rel));
    assert!(!dir.exists());
    m.create().unwrap();
    assert!(dir.is_dir());

    // Every controller the root offers (and berth wants) is delegated down to
    // the container's cgroup.
    let offered = read(&root, "cgroup.controllers");
    let wanted = [
        "cpu", "cpuset", "io", "memory", "pids", "hugetlb", "rdma", "misc",
    ];
    let mine = read(&dir, "cgroup.controllers");
    for c in offered.split_whitespace().filter(|c| wanted.contains(c)) {
        assert!(
            mine.split_whitespace().any(|m| m == c),
            "{c} not delegated: {mine}"
        );
    }

    let pids_offered = mine.split_whitespace().any(|c| c == "pids");
    let r: LinuxResources = serde_json::from_str(r#"{"pids":{"limit":20}}"#).unwrap();
    match m.apply(&r) {
        Ok(()) => assert_eq!(read(&dir, "pids.max"), "20"),
        Err(CgroupError::NotEnabled { controller, .. }) if !pids_offered => {
            assert_eq!(controller, "pids")
        }
        Err(e) => panic!("{e}"),
    }
    if mine.split_whitespace().any(|c| c == "hugetlb") && dir.join("hugetlb.2MB.max").exists() {
        let r: LinuxResources =
            serde_json::from_str(r#"{"hugepageLimits":[{"pageSize":"2MB","limit":4194304}]}"#)
                .unwrap();
        m.apply(&r).unwrap();
        assert_eq!(read(&dir, "hugetlb.2MB.max"), "4194304");
    }
    // Device rules become one eBPF program attached to the cgroup; applying
    // them again replaces it rather than stacking a second one.
    let devices: LinuxResources =
        serde_json::from_str(r#"{"devices":[{"allow":false,"access":"rwm"}]}"#).unwrap();
    m.apply(&devices).unwrap();
    let first = berth_cgroups::bpf::attached_device_programs(&dir).unwrap();
    assert_eq!(first.len(), 1, "{first:?}");
    m.apply(&devices).unwrap();
    let second = berth_cgroups::bpf::attached_device_programs(&dir).unwrap();
    assert_eq!(second.len(), 1, "{second:?}");
    assert_ne!(first, second);

    let mut child = ChildGuard(
        Command::new("/bin/busybox")
            .args(["sleep", "100"])
            .spawn()
            .unwrap(),
    );
    let pid = i32::try_from(child.0.id()).unwrap();
    m.add_task(pid).unwrap();
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(own.lines().any(|l| l == format!("0::/{rel}")), "{own}");
    assert_eq!(m.pids().unwrap(), vec![pid]);

    m.freeze().unwrap();
    assert!(m.is_frozen().unwrap());
    assert!(read(&dir, "cgroup.events").contains("frozen 1"));
    m.thaw().unwrap();
    assert!(!m.is_frozen().unwrap());

    let s = m.stats().unwrap();
    if dir.join("hugetlb.2MB.current").exists() {
        assert!(s.hugetlb.contains_key("2MB"), "{s:?}");
    }
    serde_json::to_value(&s).unwrap();

    child.0.kill().unwrap();
    child.0.wait().unwrap();
    m.remove().unwrap();
    assert!(!dir.exists());
    assert!(
        dir.parent().unwrap().is_dir(),
        "the parent is not ours to remove"
    );
}
