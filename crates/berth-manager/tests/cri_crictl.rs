//! CRI containers end to end with crictl (cri-tools' own client), on the test's own
//! CNI network: a pod, a busybox container in it, `exec -s`, `logs` (the shim's
//! CRI-format log), `stats`, `inspect`; a kill -9 of the manager in between changes
//! nothing; `stopp`/`rmp` leave no network namespace, veth, mount, cgroup or
//! process. Skipped when crictl is not built
//! (`CRITEST_BUILD_ONLY=1 scripts/critest.sh CRI_TOOLS_SRC`).

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cri_common;
mod daemon_common;

use std::process::Command;

use cri_common::*;
use daemon_common::*;

/// Deletes the test's bridge when the test ends (the bridge plugin never does).
struct BridgeGuard(String);

impl Drop for BridgeGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn crictl_runs_a_container_in_a_pod() {
    berth_testutil::require_root!();
    let Some(crictl) = crictl() else {
        eprintln!(
            "skipped: no crictl (CRITEST_BUILD_ONLY=1 scripts/critest.sh CRI_TOOLS_SRC builds it)"
        );
        return;
    };
    let n = (std::process::id() + 50) % 200 + 20;
    let bridge = format!("bcrx{}", std::process::id());
    let _bridge = BridgeGuard(bridge.clone());
    let mut stack = start_cri_stack(&bridge, &format!("10.252.{n}.0/24")).await;
    stack.import_busybox().await;
    let endpoint = format!("unix://{}", stack.dir.path().join("cri.sock").display());
    let crictl_cmd = |args: &[&str]| {
        let mut c = Command::new(&crictl);
        c.args([
            "--runtime-endpoint",
            &endpoint,
            "--image-endpoint",
            &endpoint,
            "--timeout",
            "60s",
        ])
        .args(args);
        c
    };
    let run = |args: &[&str]| {
        let out = crictl_cmd(args).output().unwrap();
        assert!(
            out.status.success(),
            "crictl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let logs_dir = stack.dir.path().join("pod-logs");
    let pod_json = stack.dir.path().join("pod.json");
    std::fs::write(
        &pod_json,
        serde_json::json!({
            "metadata": {"name": "box", "namespace": "default", "uid": "box-1", "attempt": 1},
            "hostname": "boxhost",
            "log_directory": logs_dir,
            "linux": {}
        })
        .to_string(),
    )
    .unwrap();
    let ctr_json = stack.dir.path().join("ctr.json");
    std::fs::write(
        &ctr_json,
        serde_json::json!({
            "metadata": {"name": "sh"},
            "image": {"image": BUSYBOX},
            "command": ["sh", "-c", "echo hello; echo oops >&2; exec sleep 1000000"],
            "log_path": "sh.log",
            "linux": {}
        })
        .to_string(),
    )
    .unwrap();

    let pod = run(&["runp", pod_json.to_str().unwrap()]);
    // The pod's pause (its containers share its PID namespace).
    stack.track_cgroup(&format!("berth/{pod}"));
    let ctr = run(&[
        "create",
        &pod,
        ctr_json.to_str().unwrap(),
        pod_json.to_str().unwrap(),
    ]);
    assert_eq!(ctr.len(), 64, "{ctr}");
    stack.track_cgroup(&format!("berth/{ctr}"));
    let inspect =
        |id: &str| -> serde_json::Value { serde_json::from_str(&run(&["inspect", id])).unwrap() };
    assert_eq!(inspect(&ctr)["status"]["state"], "CONTAINER_CREATED");
    run(&["start", &ctr]);
    assert_eq!(inspect(&ctr)["status"]["state"], "CONTAINER_RUNNING");
    assert!(run(&["ps", "-q"]).contains(&ctr));

    // exec -s: ExecSync, output captured; the pod's hostname and network.
    assert_eq!(run(&["exec", "-s", &ctr, "echo", "hi"]), "hi");
    assert_eq!(run(&["exec", "-s", &ctr, "hostname"]), "boxhost");
    // The pod's PID namespace: its pause is PID 1.
    let init = run(&["exec", "-s", &ctr, "cat", "/proc/1/cmdline"]);
    assert!(init.contains("--pause"), "{init:?}");
    let addr = run(&["exec", "-s", &ctr, "ip", "-o", "-4", "addr", "show", "eth0"]);
    assert!(addr.contains(&format!("10.252.{n}.")), "{addr}");
    let failed = crictl_cmd(&["exec", "-s", &ctr, "sh", "-c", "exit 3"])
        .output()
        .unwrap();
    assert!(!failed.status.success());

    // The log, in the CRI format, written by the shim.
    let log = logs_dir.join("sh.log");
    eventually("the container's output in its log", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("stderr F oops"))
    })
    .await;
    let text = std::fs::read_to_string(&log).unwrap();
    let first = text.lines().find(|l| l.contains(" stdout ")).unwrap();
    let parts: Vec<&str> = first.splitn(4, ' ').collect();
    assert!(
        chrono::DateTime::parse_from_rfc3339(parts[0]).is_ok(),
        "{first}"
    );
    assert_eq!(parts[1..], ["stdout", "F", "hello"], "{first}");
    let logs = crictl_cmd(&["logs", &ctr]).output().unwrap();
    assert!(String::from_utf8_lossy(&logs.stdout).contains("hello"));
    assert!(String::from_utf8_lossy(&logs.stderr).contains("oops"));

    let stats: serde_json::Value =
        serde_json::from_str(&run(&["stats", "-o", "json", &ctr])).unwrap();
    let s = &stats["stats"][0];
    assert_eq!(s["attributes"]["id"], ctr.as_str());
    assert!(s["memory"]["workingSetBytes"]["value"]
        .as_str()
        .is_some_and(|v| v != "0"));

    // UpdateContainerResources reaches the running container's cgroup.
    run(&["update", "--memory", "67108864", &ctr]);
    let limit = [
        format!("/sys/fs/cgroup/memory/berth/{ctr}/memory.limit_in_bytes"),
        format!("/sys/fs/cgroup/berth/{ctr}/memory.max"),
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok())
    .unwrap();
    assert_eq!(limit.trim(), "67108864");

    // kill -9 of the manager changes nothing.
    let before = inspect(&ctr);
    stack.kill_manager();
    stack.start_manager().await;
    let after = inspect(&ctr);
    assert_eq!(after["status"], before["status"]);
    assert_eq!(run(&["exec", "-s", &ctr, "echo", "again"]), "again");
    assert!(run(&["pods", "-q"]).contains(&pod));

    // A container that exits on its own is seen exited, with its code and reason.
    let done_json = stack.dir.path().join("done.json");
    std::fs::write(
        &done_json,
        serde_json::json!({
            "metadata": {"name": "done"},
            "image": {"image": BUSYBOX},
            "command": ["sh", "-c", "exit 7"],
            "linux": {}
        })
        .to_string(),
    )
    .unwrap();
    let done = run(&[
        "create",
        &pod,
        done_json.to_str().unwrap(),
        pod_json.to_str().unwrap(),
    ]);
    stack.track_cgroup(&format!("berth/{done}"));
    run(&["start", &done]);
    let mut state = serde_json::Value::Null;
    for _ in 0..200 {
        state = inspect(&done);
        if state["status"]["state"] == "CONTAINER_EXITED" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(state["status"]["state"], "CONTAINER_EXITED", "{state}");
    assert_eq!(state["status"]["exitCode"], 7);
    assert_eq!(state["status"]["reason"], "Error");

    // A container whose process dies while the manager is down is seen exited
    // after the restart, with the code its shim recorded.
    let victim_json = stack.dir.path().join("victim.json");
    std::fs::write(
        &victim_json,
        serde_json::json!({
            "metadata": {"name": "victim"},
            "image": {"image": BUSYBOX},
            "command": ["sleep", "1000000"],
            "linux": {}
        })
        .to_string(),
    )
    .unwrap();
    let victim = run(&[
        "create",
        &pod,
        victim_json.to_str().unwrap(),
        pod_json.to_str().unwrap(),
    ]);
    stack.track_cgroup(&format!("berth/{victim}"));
    run(&["start", &victim]);
    let pid = inspect(&victim)["info"]["pid"].as_i64().unwrap();
    assert!(pid > 0);
    stack.kill_manager();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    stack.start_manager().await;
    let gone = inspect(&victim);
    assert_eq!(gone["status"]["state"], "CONTAINER_EXITED", "{gone}");
    assert_eq!(gone["status"]["exitCode"], 137);
    assert_eq!(inspect(&ctr)["status"]["state"], "CONTAINER_RUNNING");

    run(&["stop", &ctr]);
    assert_eq!(inspect(&ctr)["status"]["state"], "CONTAINER_EXITED");

    let dir = stack.state.join("cri/sandboxes").join(&pod);
    run(&["stopp", &pod]);
    run(&["rmp", &pod]);
    assert_eq!(run(&["pods", "-q"]), "");
    assert_eq!(run(&["ps", "-a", "-q"]), "");
    assert!(!dir.exists());
    assert_eq!(veths_on(&bridge), "");
    assert!(stack.live_shims().is_empty(), "{:?}", stack.live_shims());
    assert!(
        stack.cgroups_left().is_empty(),
        "{:?}",
        stack.cgroups_left()
    );
    let mounts: Vec<String> = stack
        .mounts()
        .into_iter()
        .filter(|m| !m.ends_with("/run/cri/sandboxes"))
        .collect();
    assert!(mounts.is_empty(), "{mounts:?}");
}
