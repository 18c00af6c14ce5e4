//! The acceptance lines of the runtime issue, run for real as root: a container is
//! a process in its own namespaces and cgroup, and deleting it leaves nothing.

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{cgroup_dirs, memory_limit_file, mounts_mentioning, stderr, stdout, Container, Rt};

#[test]
fn run_echo_pid_is_one_and_namespaces_are_private() {
    berth_testutil::require_root!();
    let rt = Rt::new();
    let c = Container::new(
        &rt,
        &["sh", "-c", "echo $$; hostname; ps -o pid,comm; true"],
        |_| {},
    );
    let out = rt.run(&["run", "--bundle", c.bundle_path().to_str().unwrap(), &c.id]);
    assert!(out.status.success(), "run failed: {}", stderr(&out));
    let text = stdout(&out);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("1"), "output: {text}");
    assert_eq!(lines.next(), Some("testhost"), "output: {text}");
    // ps inside sees only the container: sh (pid 1) and ps itself.
    let procs: Vec<&str> = lines.skip(1).collect();
    assert_eq!(procs.len(), 2, "ps listed {procs:?}");
    assert!(procs[0].trim_start().starts_with("1 sh"), "{procs:?}");
    assert!(procs[1].trim_end().ends_with("ps"), "{procs:?}");
    // A foreground run deletes the container afterwards.
    assert!(!rt.state_dir(&c.id).exists());
}

#[test]
fn namespaces_of_a_running_container_differ_from_the_host() {
    berth_testutil::require_root!();
    let rt = Rt::new();
    let c = Container::new(&rt, &["sleep", "1000"], |_| {});
    let out = c.create();
    assert!(out.status.success(), "create: {}", stderr(&out));
    let pid = c.pid();
    assert!(pid > 0);
    for ns in ["pid", "mnt", "uts", "ipc", "net"] {
        let host = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        let ctr = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
        assert_ne!(host, ctr, "{ns} namespace is the host's");
    }
    // state.json records them where operators look.
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(rt.state_dir(&c.id).join("state.json")).unwrap())
            .unwrap();
    assert_eq!(state["init_process_pid"].as_i64(), Some(pid as i64));
    assert_eq!(
        state["namespace_paths"]["NEWPID"].as_str(),
        Some(format!("/proc/{pid}/ns/pid").as_str())
    );
    assert!(state["namespace_paths"]["NEWNET"].is_string());
}

#[test]
fn lifecycle_leaves_nothing_behind() {
    berth_testutil::require_root!();
    let rt = Rt::new();
    let c = Container::new(
        &rt,
        &[
            "sh",
            "-c",
            "trap 'exit 0' TERM; touch /trap-set; while true; do sleep 0.1; done",
        ],
        |_| {},
    );
    let out = c.create();
    assert!(out.status.success(), "create: {}", stderr(&out));
    let st = rt.state(&c.id);
    assert_eq!(st["status"], "created");
    let pid = st["pid"].as_i64().unwrap() as i32;
    assert!(pid > 0);
    assert!(
        !cgroup_dirs(&c.bundle.cgroup()).is_empty(),
        "no cgroup made"
    );

    let out = rt.run(&["start", &c.id]);
    assert!(out.status.success(), "start: {}", stderr(&out));
    assert_eq!(rt.status(&c.id), "running");
    // PID 1 of a pid namespace only gets signals it has a handler for: wait until
    // the shell has set its trap, or the TERM would be dropped by the kernel.
    let marker = c.bundle.rootfs().join("trap-set");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !marker.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(
        marker.exists(),
        "the container never set its trap: {}",
        stdout(&rt.run(&["exec", &c.id, "cat", "/proc/1/cmdline"]))
    );

    let out = rt.run(&["kill", &c.id, "TERM"]);
    assert!(out.status.success(), "kill: {}", stderr(&out));
    assert!(rt.wait_status(&c.id, "stopped"), "never stopped");

    let out = rt.run(&["delete", &c.id]);
    assert!(out.status.success(), "delete: {}", stderr(&out));
    assert!(!rt.state_dir(&c.id).exists(), "state dir left");
    assert!(
        cgroup_dirs(&c.bundle.cgroup()).is_empty(),
        "cgroups left: {:?}",
        cgroup_dirs(&c.bundle.cgroup())
    );
    let bundle = c.bundle_path().to_string_lossy().into_owned();
    assert!(mounts_mentioning(&bundle).is_empty(), "mounts left");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || berth_runtime::state::is_zombie(pid),
        "process {pid} left"
    );
    let out = rt.run(&["state", &c.id]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
}

#[test]
fn memory_pids_and_cpu_limits_show_in_the_cgroup_and_oom_kills() {
    berth_testutil::require_root!();
    let rt = Rt::new();
    let limits = |cfg: &mut serde_json::Value| {
        let r = &mut cfg["linux"]["resources"];
        r["memory"] = serde_json::json!({"limit": 104857600});
        r["pids"] = serde_json::json!({"limit": 64});
        r["cpu"] = serde_json::json!({"quota": 50000, "period": 100000, "shares": 512});
    };
    let c = Container::new(&rt, &["sleep", "1000"], limits);
    let out = c.create();
    assert!(out.status.success(), "create: {}", stderr(&out));
    let cg = c.bundle.cgroup();
    let mem = std::fs::read_to_string(memory_limit_file(&cg)).unwrap();
    assert_eq!(mem.trim(), "104857600");
    let v1 = std::path::Path::new("/sys/fs/cgroup/memory").exists();
    if v1 {
        let pids = std::fs::read_to_string(format!("/sys/fs/cgroup/pids/{cg}/pids.max")).unwrap();
        assert_eq!(pids.trim(), "64");
        let quota =
            std::fs::read_to_string(format!("/sys/fs/cgroup/cpu/{cg}/cpu.cfs_quota_us")).unwrap();
        assert_eq!(quota.trim(), "50000");
        let shares =
            std::fs::read_to_string(format!("/sys/fs/cgroup/cpu/{cg}/cpu.shares")).unwrap();
        assert_eq!(shares.trim(), "512");
    } else {
        let pids = std::fs::read_to_string(format!("/sys/fs/cgroup/{cg}/pids.max")).unwrap();
        assert_eq!(pids.trim(), "64");
        let cpu = std::fs::read_to_string(format!("/sys/fs/cgroup/{cg}/cpu.max")).unwrap();
        assert_eq!(cpu.trim(), "50000 100000");
    }
    drop(c);

    // 200 MiB through tail (which keeps the whole newline-free input) in 100 MiB.
    let c = Container::new(
        &rt,
        &["sh", "-c", "head -c 209715200 /dev/zero | tail > /dev/null"],
        limits,
    );
    let out = rt.run(&["run", "--bundle", c.bundle_path().to_str().unwrap(), &c.id]);
    assert_eq!(out.status.code(), Some(137), "stderr: {}", stderr(&out));
}

#[test]
fn exec_joins_the_container() {
    berth_testutil::require_root!();
    let rt = Rt::new();
    let c = Container::new(&rt, &["sleep", "1000"], |_| {});
    assert!(c.create().status.success());
    assert!(rt.run(&["start", &c.id]).status.success());
    let out = rt.run(&["exec", &c.id, "ps", "-o", "pid,comm"]);
    assert!(out.status.success(), "exec: {}", stderr(&out));
    let text = stdout(&out);
    let first = text.lines().nth(1).unwrap_or_default();
    assert!(
        first.split_whitespace().collect::<Vec<_>>() == ["1", "sleep"],
        "ps in the container: {text}"
    );
    // exec lands in the container's cgroup: the runtime's ps lists both processes.
    let out = rt.run(&["ps", "--format", "json", &c.id]);
    assert!(out.status.success(), "ps: {}", stderr(&out));
    let pids: Vec<i32> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pids, vec![c.pid()]);
}

#[test]
fn list_pause_resume_and_update() {
    berth_testutil::require_root!();
    let rt = Rt::new();
    let c = Container::new(&rt, &["sleep", "1000"], |_| {});
    assert!(c.create().status.success());
    assert!(rt.run(&["start", &c.id]).status.success());

    let out = rt.run(&["list", "--format", "json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["id"], c.id.as_str());
    assert_eq!(list[0]["status"], "running");
    let table = stdout(&rt.run(&["list"]));
    assert!(table.starts_with("ID "), "{table}");
    assert!(table.contains(&c.id));

    assert!(rt.run(&["pause", &c.id]).status.success());
    assert_eq!(rt.status(&c.id), "paused");
    assert!(rt.run(&["resume", &c.id]).status.success());
    assert_eq!(rt.status(&c.id), "running");

    let out = rt.run(&["update", "--memory", "50m", "--pids-limit", "32", &c.id]);
    assert!(out.status.success(), "update: {}", stderr(&out));
    let mem = std::fs::read_to_string(memory_limit_file(&c.bundle.cgroup())).unwrap();
    assert_eq!(mem.trim(), "52428800");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(rt.state_dir(&c.id).join("state.json")).unwrap())
            .unwrap();
    assert_eq!(
        state["config"]["linux"]["resources"]["memory"]["limit"],
        52428800
    );

    let out = rt.run(&["events", "--stats", &c.id]);
    assert!(out.status.success(), "events: {}", stderr(&out));
    let ev: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ev["type"], "stats");
    assert!(ev["data"]["memory"].is_object(), "{ev}");

    // A running container is not deleted without --force.
    let out = rt.run(&["delete", &c.id]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not stopped"), "{}", stderr(&out));
    let out = rt.run(&["delete", "--force", &c.id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(cgroup_dirs(&c.bundle.cgroup()).is_empty());
}

#[test]
fn bad_input_is_refused_cleanly() {
    berth_testutil::require_root!();
    let rt = Rt::new();
    // kill with an unknown signal, state of an unknown id.
    let out = rt.run(&["kill", "nope", "SIGNOPE"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("unknown signal"), "{}", stderr(&out));
    let out = rt.run(&["state", "nope"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not exist"));
    let out = rt.run(&["state", "../etc"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not valid"), "{}", stderr(&out));
    // delete --force of a missing container succeeds (containerd relies on it).
    assert!(rt.run(&["delete", "--force", "nope"]).status.success());
}
