//! berth-cgroups against the real kernel (needs root): every test works in a
//! top-level cgroup of its own (`berth_testutil::test_cgroup`), and a guard
//! removes it whatever happens.

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use berth_cgroups::{CgroupError, CgroupManager, CgroupVersion, Layout, ResourceError};
use berth_testutil::{require_root, unique_name, CgroupGuard, ChildGuard};
use oci_spec::runtime::LinuxResources;

/// A manager for the test's own cgroup and the guard that removes it.
struct TestCgroup {
    mgr: CgroupManager,
    rel: String,
    _guard: CgroupGuard,
}

fn test_cgroup(tag: &str) -> TestCgroup {
    let name = unique_name(&format!("berth-test-{tag}"));
    let rel = berth_testutil::test_cgroup(&name);
    let mgr = CgroupManager::new(Some(Path::new(&format!("/{rel}"))), &name, false).unwrap();
    TestCgroup {
        mgr,
        _guard: CgroupGuard(rel.clone()),
        rel,
    }
}

fn resources(json: &str) -> LinuxResources {
    serde_json::from_str(json).unwrap()
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.join(file).display()))
        .trim()
        .to_string()
}

fn is_v1() -> bool {
    matches!(Layout::detect().unwrap(), Layout::V1 { .. })
}

/// A process that waits for a line on stdin before running `script` (so that it
/// can be moved into a cgroup first).
fn gated_shell(script: &str) -> ChildGuard {
    let child = Command::new("/bin/busybox")
        .args(["sh", "-c", &format!("read x; {script}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    ChildGuard(child)
}

fn release(child: &mut ChildGuard) -> std::process::Output {
    let mut stdin = child.0.stdin.take().unwrap();
    stdin.write_all(b"go\n").unwrap();
    drop(stdin);
    let mut out = std::process::Output {
        status: child.0.wait().unwrap(),
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    if let Some(mut s) = child.0.stdout.take() {
        std::io::Read::read_to_end(&mut s, &mut out.stdout).unwrap();
    }
    if let Some(mut s) = child.0.stderr.take() {
        std::io::Read::read_to_end(&mut s, &mut out.stderr).unwrap();
    }
    out
}

#[test]
fn lifecycle_create_limit_join_freeze_stats_remove() {
    require_root!();
    let t = test_cgroup("life");
    let m = &t.mgr;
    let paths = m.paths();
    for dir in paths.values() {
        assert!(
            !dir.exists(),
            "new() must create nothing: {}",
            dir.display()
        );
    }
    m.create().unwrap();
    for dir in paths.values() {
        assert!(dir.is_dir(), "{} not created", dir.display());
    }
    assert_eq!(CgroupManager::from_paths(&paths).unwrap(), *m);

    m.apply(&resources(
        r#"{"memory":{"limit":104857600,"reservation":52428800},
            "pids":{"limit":20},
            "cpu":{"shares":512,"quota":50000,"period":100000,"cpus":"0","mems":"0"},
            "devices":[{"allow":false,"access":"rwm"},
                       {"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"},
                       {"allow":true,"type":"c","major":1,"minor":9,"access":"rwm"}]}"#,
    ))
    .unwrap();

    if m.version() == CgroupVersion::V1 {
        // Hybrid hosts also get the cgroup2 directory, as runc does.
        if Path::new("/sys/fs/cgroup/unified").is_dir() {
            assert_eq!(paths[""], Path::new("/sys/fs/cgroup/unified").join(&t.rel));
        }
        assert_eq!(read(&paths["memory"], "memory.limit_in_bytes"), "104857600");
        assert_eq!(
            read(&paths["memory"], "memory.soft_limit_in_bytes"),
            "52428800"
        );
        assert_eq!(read(&paths["pids"], "pids.max"), "20");
        assert_eq!(read(&paths["cpu"], "cpu.shares"), "512");
        assert_eq!(read(&paths["cpu"], "cpu.cfs_quota_us"), "50000");
        assert_eq!(read(&paths["cpu"], "cpu.cfs_period_us"), "100000");
        assert_eq!(read(&paths["cpuset"], "cpuset.cpus"), "0");
        assert_eq!(read(&paths["cpuset"], "cpuset.mems"), "0");
        let list = read(&paths["devices"], "devices.list");
        let mut rules: Vec<&str> = list.lines().collect();
        rules.sort();
        assert_eq!(
            rules,
            vec!["c 1:3 rwm", "c 1:9 rwm"],
            "devices.list: {list}"
        );
    } else {
        let dir = &paths[""];
        assert_eq!(read(dir, "memory.max"), "104857600");
        assert_eq!(read(dir, "pids.max"), "20");
        assert_eq!(read(dir, "cpu.max"), "50000 100000");
        assert_eq!(read(dir, "cpu.weight"), "20");
    }

    let mut child = ChildGuard(
        Command::new("/bin/busybox")
            .args(["sleep", "100"])
            .spawn()
            .unwrap(),
    );
    let pid = i32::try_from(child.0.id()).unwrap();
    m.add_task(pid).unwrap();
    assert_eq!(m.pids().unwrap(), vec![pid]);
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for line in own.lines() {
        // Every hierarchy (and the cgroup2 one, "0::") places it in our cgroup.
        assert!(line.ends_with(&format!(":/{}", t.rel)), "{own}");
    }

    assert!(!m.is_frozen().unwrap());
    m.freeze().unwrap();
    assert!(m.is_frozen().unwrap());
    m.thaw().unwrap();
    assert!(!m.is_frozen().unwrap());

    let s = m.stats().unwrap();
    assert_eq!(s.pids.current, 1);
    assert_eq!(s.pids.limit, 20);
    assert_eq!(s.memory.usage.limit, 104857600);
    assert!(
        s.memory.usage.usage > 0
            || s.memory.raw.contains_key("rss")
            || s.memory.raw.contains_key("anon")
    );
    assert!(!s.memory.raw.is_empty());
    assert_eq!(s.cpuset.cpus, vec![0]);
    let json = serde_json::to_value(&s).unwrap();
    for key in ["cpu", "cpuset", "memory", "pids", "blkio", "hugetlb"] {
        assert!(json.get(key).is_some(), "no {key} in {json}");
    }
    assert_eq!(json["memory"]["usage"]["limit"], 104857600);
    assert_eq!(json["pids"]["limit"], 20);
    assert_eq!(m.oom_kill_count().unwrap(), 0);

    // The cgroup still has a process: remove() must not kill it, and fails.
    let err = m.remove().unwrap_err();
    assert!(err.to_string().contains("Device or resource busy"), "{err}");

    child.0.kill().unwrap();
    child.0.wait().unwrap();
    m.remove().unwrap();
    for dir in paths.values() {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
    // Already gone is success.
    m.remove().unwrap();
}

#[test]
fn device_rules_are_enforced() {
    require_root!();
    if !is_v1() {
        eprintln!("skipped: device rules are not enforced on cgroup v2 yet");
        return;
    }
    let t = test_cgroup("dev");
    t.mgr.create().unwrap();
    t.mgr
        .apply(&resources(
            r#"{"devices":[{"allow":false,"access":"rwm"},
                           {"allow":true,"type":"c","major":1,"minor":3,"access":"rw"}]}"#,
        ))
        .unwrap();
    let mut child = gated_shell(
        "echo ok >/dev/null || exit 3; \
         if /bin/busybox head -c1 /dev/zero >/dev/null; then exit 4; fi; exit 0",
    );
    t.mgr
        .add_task(i32::try_from(child.0.id()).unwrap())
        .unwrap();
    // On a hybrid host the child is in the cgroup2 directory too, and no
    // device program is attached there (runc's and crun's choice): what
    // refuses /dev/zero below is the v1 devices controller alone.
    if let Some(unified) = t.mgr.paths().get("") {
        let progs = berth_cgroups::bpf::attached_device_programs(unified).unwrap();
        assert!(
            progs.is_empty(),
            "device programs on {}: {progs:?}",
            unified.display()
        );
    }
    let out = release(&mut child);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(stderr.contains("Operation not permitted"), "{stderr}");
}

#[test]
fn oom_kills_are_counted() {
    require_root!();
    let t = test_cgroup("oom");
    t.mgr.create().unwrap();
    // memory+swap equal to memory: nothing can go to swap.
    t.mgr
        .apply(&resources(
            r#"{"memory":{"limit":20971520,"swap":20971520}}"#,
        ))
        .unwrap();
    assert_eq!(t.mgr.oom_kill_count().unwrap(), 0);
    // dd fills a 50 MiB buffer: more than the cgroup may hold.
    let mut child = gated_shell("exec /bin/busybox dd if=/dev/zero of=/dev/null bs=50M count=1");
    t.mgr
        .add_task(i32::try_from(child.0.id()).unwrap())
        .unwrap();
    let out = release(&mut child);
    assert!(!out.status.success(), "dd was not killed");
    assert!(t.mgr.oom_kill_count().unwrap() >= 1);
    let stats = t.mgr.stats().unwrap();
    // The peak reached the limit (failcnt is not kept by every kernel).
    if t.mgr.version() == CgroupVersion::V1 {
        assert_eq!(stats.memory.usage.max, 20971520, "{stats:?}");
    }
    t.mgr.remove().unwrap();
}

#[test]
fn nested_cpuset_levels_are_filled_and_only_the_leaf_is_removed() {
    require_root!();
    let t = test_cgroup("nest");
    let leaf = format!("/{}/a/b", t.rel);
    let m = CgroupManager::new(Some(Path::new(&leaf)), "b", false).unwrap();
    m.create().unwrap();
    if let Some(cpuset) = m.paths().get("cpuset") {
        for dir in [
            cpuset.as_path(),
            cpuset.parent().unwrap(),
            cpuset.parent().unwrap().parent().unwrap(),
        ] {
            assert!(!read(dir, "cpuset.cpus").is_empty(), "{}", dir.display());
            assert!(!read(dir, "cpuset.mems").is_empty(), "{}", dir.display());
        }
    }
    // Without the copied cpuset this fails with ENOSPC.
    let mut child = ChildGuard(
        Command::new("/bin/busybox")
            .args(["sleep", "100"])
            .spawn()
            .unwrap(),
    );
    m.add_task(i32::try_from(child.0.id()).unwrap()).unwrap();
    child.0.kill().unwrap();
    child.0.wait().unwrap();

    // A child cgroup of the leaf goes with it.
    let sub = CgroupManager::new(Some(Path::new(&format!("{leaf}/sub"))), "sub", false).unwrap();
    sub.create().unwrap();
    m.remove().unwrap();
    for dir in m.paths().values() {
        assert!(!dir.exists(), "{} left behind", dir.display());
        assert!(
            dir.parent().unwrap().is_dir(),
            "ancestor of {} removed",
            dir.display()
        );
    }
}

#[test]
fn partial_updates_and_memory_swap_ordering() {
    require_root!();
    let t = test_cgroup("upd");
    let m = &t.mgr;
    m.create().unwrap();
    let mib = 1 << 20;
    let limits = |mem: i64, swap: i64| {
        resources(&format!(r#"{{"memory":{{"limit":{mem},"swap":{swap}}}}}"#))
    };
    m.apply(&limits(100 * mib, 200 * mib)).unwrap();
    // Raising both needs memory+swap first, lowering both memory first.
    m.apply(&limits(300 * mib, 400 * mib)).unwrap();
    m.apply(&limits(50 * mib, 60 * mib)).unwrap();
    // Setting only pids leaves memory alone.
    m.apply(&resources(r#"{"pids":{"limit":7}}"#)).unwrap();
    let s = m.stats().unwrap();
    assert_eq!(s.memory.usage.limit, 50 * 1048576);
    assert_eq!(s.pids.limit, 7);
    if m.version() == CgroupVersion::V1 {
        let dir = &m.paths()["memory"];
        if dir.join("memory.memsw.limit_in_bytes").exists() {
            assert_eq!(
                read(dir, "memory.memsw.limit_in_bytes"),
                (60 * mib).to_string()
            );
        }
    }
    // Unlimited again.
    m.apply(&resources(r#"{"memory":{"limit":-1}}"#)).unwrap();
    assert!(m.stats().unwrap().memory.usage.limit > 1 << 60);
    m.remove().unwrap();
}

#[test]
fn kernel_refusals_name_the_file_and_value() {
    require_root!();
    let t = test_cgroup("err");
    let m = &t.mgr;
    m.create().unwrap();
    if m.version() == CgroupVersion::V1 {
        let err = m
            .apply(&resources(r#"{"cpu":{"cpus":"4095"}}"#))
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("writing 4095 to /sys/fs/cgroup/cpuset/"),
            "{msg}"
        );
        // The kernel's own words follow (ERANGE or EINVAL, by version).
        assert!(msg.contains(&format!("{}/cpuset.cpus: ", t.rel)), "{msg}");
        // The kernel clamps shares silently; berth says so.
        let err = m.apply(&resources(r#"{"cpu":{"shares":1}}"#)).unwrap_err();
        assert!(
            matches!(
                err,
                CgroupError::Resource(ResourceError::SharesOutOfRange {
                    requested: 1,
                    applied: 2
                })
            ),
            "{err}"
        );
    } else {
        let err = m
            .apply(&resources(r#"{"unified":{"pids.max":"bogus"}}"#))
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("writing bogus to /sys/fs/cgroup/"), "{msg}");
        assert!(
            msg.ends_with(&format!("{}/pids.max: Invalid argument", t.rel)),
            "{msg}"
        );
    }
    m.remove().unwrap();
}

#[test]
fn from_recorded_paths_drives_the_same_cgroup() {
    require_root!();
    let t = test_cgroup("state");
    t.mgr.create().unwrap();
    // What state.json stores, through JSON and back.
    let json = serde_json::to_string(&t.mgr.paths()).unwrap();
    let paths: BTreeMap<String, PathBuf> = serde_json::from_str(&json).unwrap();
    let again = CgroupManager::from_paths(&paths).unwrap();
    assert_eq!(again.version(), t.mgr.version());
    again.apply(&resources(r#"{"pids":{"limit":3}}"#)).unwrap();
    assert_eq!(t.mgr.stats().unwrap().pids.limit, 3);
    again.freeze().unwrap();
    assert!(t.mgr.is_frozen().unwrap());
    again.thaw().unwrap();
    again.remove().unwrap();
    for dir in paths.values() {
        assert!(!dir.exists());
    }
}
