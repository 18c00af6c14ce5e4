//! The manager's basic task flow through its gRPC API, against a private manager:
//! import the busybox image, run `echo hello` (exit 0, json-file log line),
//! `sh -c 'exit 3'` (3), SIGKILL (137), events in order, and the process tree
//! (each container's init a child of its shim, no shim a child of the manager).
//! The same flow runs with berth-runtime (or the runtime under test), runc and crun.

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod daemon_common;

use std::path::Path;

use berth_api::berth::manager::v1 as pb;
use berth_api::berth::manager::v1::envelope::Event;
use daemon_common::*;

/// A task's events, from its create to its delete.
const TASK_TOPICS: [&str; 4] = [
    "/tasks/create",
    "/tasks/start",
    "/tasks/exit",
    "/tasks/delete",
];

/// The topics of container `id`'s task events up to its delete; its exit is
/// checked to be a plain exit 0.
async fn task_topics(events: &mut tonic::Streaming<pb::Envelope>, id: &str) -> Vec<String> {
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("/tasks/delete") {
        let e = next_event(events, |e| match &e.event {
            Some(Event::TaskCreate(x)) => x.container_id == id,
            Some(Event::TaskStart(x)) => x.container_id == id,
            Some(Event::TaskExit(x)) => x.container_id == id,
            Some(Event::TaskDelete(x)) => x.container_id == id,
            _ => false,
        })
        .await;
        if let Some(Event::TaskExit(x)) = &e.event {
            assert_eq!(x.exit_status, 0);
            assert!(x.reason.is_empty());
        }
        seen.push(e.topic);
    }
    seen
}

async fn basic_flow(runtime: &Path) {
    let stack = Stack::start(runtime).await;
    let img = stack.import_busybox().await;
    assert!(img
        .names
        .iter()
        .any(|n| n.ends_with("berth-test/busybox:latest")));
    let mut c = stack.clients().await;
    let mut events = c
        .events
        .subscribe(pb::SubscribeRequest {
            filters: vec!["topic=/tasks".into()],
        })
        .await
        .unwrap()
        .into_inner();

    // echo hello → 0, and the line in the json-file log.
    let id = berth_testutil::unique_name("berth-test-echo");
    stack.run(&mut c, &id, &["echo", "hello"]).await;
    assert_eq!(Stack::wait_delete(&mut c, &id).await, 0);
    let log = read_log(&stack.log_path(&id));
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["log"], "hello\n");
    assert_eq!(log[0]["stream"], "stdout");
    let time = log[0]["time"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "{time}");
    assert!(!stack.task_dir(&id).exists(), "task directory left");

    // The task's events, in order.
    assert_eq!(task_topics(&mut events, &id).await, TASK_TOPICS);

    // Created and started in one request: the same events in the same order,
    // and the output whole in the log.
    let id = berth_testutil::unique_name("berth-test-one-step");
    stack
        .create_container(&mut c, &id, &["echo", "in one step"])
        .await;
    stack.create_task(&mut c, &id, true).await;
    let (code, _) = match c
        .tasks
        .start(pb::StartRequest {
            container_id: id.clone(),
            exec_id: String::new(),
        })
        .await
    {
        Ok(_) => panic!("a Start after a started create succeeded"),
        Err(s) => (s.code(), s),
    };
    assert_eq!(code, tonic::Code::FailedPrecondition);
    assert_eq!(Stack::wait_delete(&mut c, &id).await, 0);
    assert_eq!(read_log(&stack.log_path(&id))[0]["log"], "in one step\n");
    assert_eq!(task_topics(&mut events, &id).await, TASK_TOPICS);

    // exit 3 → 3.
    let id = berth_testutil::unique_name("berth-test-exit");
    stack.run(&mut c, &id, &["sh", "-c", "exit 3"]).await;
    assert_eq!(Stack::wait_delete(&mut c, &id).await, 3);

    // SIGKILL → 137.
    let id = berth_testutil::unique_name("berth-test-kill");
    let pid = stack.run(&mut c, &id, &["sleep", "1000"]).await;
    let task = c
        .tasks
        .get(pb::GetTaskRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(task.status, pb::TaskStatus::Running as i32);
    assert_eq!(task.pid, pid);
    c.tasks
        .kill(pb::KillRequest {
            container_id: id.clone(),
            exec_id: String::new(),
            signal: 9,
            all: false,
        })
        .await
        .unwrap();
    assert_eq!(Stack::wait_delete(&mut c, &id).await, 137);

    stack.reap();
    assert!(
        stack.live_shims().is_empty(),
        "shims left: {:?}",
        stack.live_shims()
    );
    assert!(
        stack.mounts().is_empty(),
        "mounts left: {:?}",
        stack.mounts()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_flow_with_the_runtime_under_test() {
    berth_testutil::require_root!();
    basic_flow(&runtime_under_test()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_flow_with_runc() {
    berth_testutil::require_root!();
    let Some(runc) = system_runtime("runc") else {
        eprintln!("skipped: runc is not installed");
        return;
    };
    basic_flow(&runc).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_flow_with_crun() {
    berth_testutil::require_root!();
    let Some(crun) = system_runtime("crun") else {
        eprintln!("skipped: crun is not installed");
        return;
    };
    if hybrid_cgroups() {
        eprintln!("skipped: crun refuses hybrid cgroup hosts (cgroup2 with controllers beside v1)");
        return;
    }
    basic_flow(&crun).await;
}

/// A cgroup v1 host whose cgroup2 mount also has controllers.
fn hybrid_cgroups() -> bool {
    let v2_root = std::fs::metadata("/sys/fs/cgroup/cgroup.controllers").is_ok();
    let unified =
        std::fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers").unwrap_or_default();
    !v2_root && !unified.trim().is_empty()
}

/// `ps -o pid,ppid,comm`: each container's PID 1 is a child of its berth-shim, and
/// no shim is a child of the manager.
#[tokio::test(flavor = "multi_thread")]
async fn containers_are_children_of_their_shims_not_of_the_manager() {
    berth_testutil::require_root!();
    let stack = Stack::start(&runtime_under_test()).await;
    stack.import_busybox().await;
    let mut c = stack.clients().await;
    let ids: Vec<String> = (0..3)
        .map(|_| berth_testutil::unique_name("berth-test-tree"))
        .collect();
    let mut pids = Vec::new();
    for id in &ids {
        pids.push(stack.run(&mut c, id, &["sleep", "1000"]).await);
    }
    let out = std::process::Command::new("ps")
        .args(["-e", "-o", "pid=,ppid=,comm="])
        .output()
        .unwrap();
    let table: Vec<(u32, u32, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((
                f.next()?.parse().ok()?,
                f.next()?.parse().ok()?,
                f.next()?.to_string(),
            ))
        })
        .collect();
    let row = |pid: u32| table.iter().find(|r| r.0 == pid).cloned();
    let manager = stack.manager_pid();
    for (id, pid) in ids.iter().zip(&pids) {
        let task = c
            .tasks
            .get(pb::GetTaskRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        let (_, ppid, comm) = row(*pid).expect("container init not in ps");
        assert_eq!(comm, "sleep");
        assert_eq!(ppid, task.shim_pid, "the init's parent is not its shim");
        let (_, shim_parent, shim_comm) = row(task.shim_pid).expect("shim not in ps");
        assert_eq!(shim_comm, "berth-shim");
        assert_ne!(shim_parent, manager, "the shim is a child of the manager");
    }
    for id in &ids {
        c.tasks
            .kill(pb::KillRequest {
                container_id: id.clone(),
                exec_id: String::new(),
                signal: 9,
                all: false,
            })
            .await
            .unwrap();
        assert_eq!(Stack::wait_delete(&mut c, id).await, 137);
    }
}
