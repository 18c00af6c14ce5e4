//! Restarting the manager kills no container, loses no exit code and no line of
//! output: containers printing a numbered line every 100 ms survive a kill -9 of
//! the manager with the same host pids; those that exit while it is down report
//! their codes after the restart; every log holds every line, without a gap. And
//! SIGTERM stops the manager gracefully, leaving the containers running.

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod daemon_common;

use std::path::Path;

use berth_api::berth::manager::v1 as pb;
use daemon_common::*;

/// Containers in the restart test.
const CONTAINERS: usize = 20;
/// How many of them exit while the manager is down.
const EXIT_WHILE_DOWN: usize = 5;
/// Lines each container prints before the manager is killed (at least).
const LINES_BEFORE: usize = 3;

/// Prints `line <n>` every 100 ms until /stop exists, then `done <n>` and exits
/// with `code`.
fn printer(code: u32) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        format!(
            "i=0; while [ ! -e /stop ]; do echo line $i; i=$((i+1)); sleep 0.1; done; echo done $i; exit {code}"
        ),
    ]
}

fn lines(stack: &Stack, id: &str) -> Vec<String> {
    read_log(&stack.log_path(id))
        .iter()
        .map(|e| e["log"].as_str().unwrap_or_default().trim_end().to_string())
        .collect()
}

/// The log is `line 0` .. `line n-1` then `done n`, nothing missing.
fn assert_no_gap(stack: &Stack, id: &str) {
    let l = lines(stack, id);
    let last = l.last().cloned().unwrap_or_default();
    let n: usize = last
        .strip_prefix("done ")
        .unwrap_or_else(|| panic!("{id}: log does not end with done: {l:?}"))
        .parse()
        .unwrap();
    let expected: Vec<String> = (0..n)
        .map(|i| format!("line {i}"))
        .chain([last.clone()])
        .collect();
    assert_eq!(l, expected, "{id}: lines missing or out of order");
}

/// Make /stop appear in a running container (through the rootfs mount the shim
/// made under the task directory).
fn stop(stack: &Stack, id: &str) {
    let rootfs = stack.task_dir(id).join("rootfs");
    std::fs::write(rootfs.join("stop"), b"").unwrap();
}

fn code_of(i: usize) -> u32 {
    if i < EXIT_WHILE_DOWN {
        10 + u32::try_from(i).unwrap()
    } else {
        0
    }
}

async fn get(c: &mut Clients, id: &str) -> pb::Task {
    c.tasks
        .get(pb::GetTaskRequest {
            container_id: id.to_string(),
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_of_the_manager_loses_no_container_exit_or_line() {
    berth_testutil::require_root!();
    let mut stack = Stack::start(&runtime_under_test()).await;
    stack.import_busybox().await;
    let mut c = stack.clients().await;
    let ids: Vec<String> = (0..CONTAINERS)
        .map(|_| berth_testutil::unique_name("berth-test-rs"))
        .collect();
    let mut pids = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let args = printer(code_of(i));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        pids.push(stack.run(&mut c, id, &args).await);
    }
    for id in &ids {
        eventually("every container has printed", || {
            lines(&stack, id).len() >= LINES_BEFORE
        })
        .await;
    }

    stack.kill_manager();
    drop(c);
    // While the manager is down: some containers exit, the others keep printing.
    for id in &ids[..EXIT_WHILE_DOWN] {
        stop(&stack, id);
    }
    for pid in &pids[..EXIT_WHILE_DOWN] {
        eventually("the stopped containers exit", || !alive(*pid)).await;
    }
    let counts: Vec<usize> = ids[EXIT_WHILE_DOWN..]
        .iter()
        .map(|id| lines(&stack, id).len())
        .collect();
    for (id, n) in ids[EXIT_WHILE_DOWN..].iter().zip(&counts) {
        eventually("the others keep printing without the manager", || {
            lines(&stack, id).len() > *n
        })
        .await;
    }

    stack.start_manager().await;
    let mut c = stack.clients().await;
    for (i, id) in ids.iter().enumerate().skip(EXIT_WHILE_DOWN) {
        let t = get(&mut c, id).await;
        assert_eq!(t.status, pb::TaskStatus::Running as i32, "{id}");
        assert_eq!(t.pid, pids[i], "{id} has a new pid");
        assert!(alive(pids[i]), "{id}'s init is gone");
    }
    for (i, id) in ids.iter().enumerate().take(EXIT_WHILE_DOWN) {
        let exit = c
            .tasks
            .wait(pb::WaitRequest {
                container_id: id.clone(),
                exec_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(exit.exit_status, code_of(i), "{id}");
        assert_eq!(get(&mut c, id).await.status, pb::TaskStatus::Stopped as i32);
    }
    // The survivors are still managed: stop them the same way, then delete all.
    for id in &ids[EXIT_WHILE_DOWN..] {
        stop(&stack, id);
    }
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(Stack::wait_delete(&mut c, id).await, code_of(i), "{id}");
        assert_no_gap(&stack, id);
    }
    eventually("no shim left", || {
        stack.reap();
        stack.live_shims().is_empty()
    })
    .await;
    assert!(
        stack.mounts().is_empty(),
        "mounts left: {:?}",
        stack.mounts()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_the_manager_and_leaves_containers_running() {
    berth_testutil::require_root!();
    let mut stack = Stack::start(&runtime_under_test()).await;
    stack.import_busybox().await;
    let mut c = stack.clients().await;
    let id = berth_testutil::unique_name("berth-test-term");
    let args = printer(7);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let pid = stack.run(&mut c, &id, &args).await;
    // A call in flight must not keep the manager from stopping for long.
    let mut waiter = c.clone();
    let wid = id.clone();
    let pending = tokio::spawn(async move {
        waiter
            .tasks
            .wait(pb::WaitRequest {
                container_id: wid,
                exec_id: String::new(),
            })
            .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(stack.stop_manager(), Some(0), "{}", stack.manager_log());
    // No CRI socket here: nothing of the CRI can hold the stop up (it once
    // waited the whole grace on a CRI server that did not exist).
    assert!(
        !stack.manager_log().contains("CRI calls still in flight"),
        "{}",
        stack.manager_log()
    );
    assert!(alive(pid), "the container died with the manager");
    assert!(!Path::new(&stack.socket).exists(), "socket left behind");
    let _ = pending.await;
    drop(c);

    stack.start_manager().await;
    let mut c = stack.clients().await;
    assert_eq!(get(&mut c, &id).await.pid, pid);
    stop(&stack, &id);
    assert_eq!(Stack::wait_delete(&mut c, &id).await, 7);
    assert_no_gap(&stack, &id);
}

/// A second manager refuses a socket another one serves. A manager started while
/// the old one is still going away (here: stopped, then killed 300 ms later, as a
/// large process's exit can take) waits for its socket to close and serves; it
/// once took the dying socket for a live one and exited.
#[tokio::test(flavor = "multi_thread")]
async fn a_serving_socket_is_refused_and_a_dying_ones_is_taken() {
    berth_testutil::require_root!();
    let mut stack = Stack::start(&runtime_under_test()).await;
    let second = stack.second_manager();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("another berth-manager serves"), "{err}");

    let mut old = stack.take_manager().unwrap();
    let pid = nix::unistd::Pid::from_raw(i32::try_from(old.id()).unwrap());
    // A stopped process's socket still takes connections (the kernel queues them).
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let _ = old.kill();
        old.wait()
    });
    stack.start_manager().await;
    killer.join().unwrap().unwrap();
    stack
        .clients()
        .await
        .version
        .health(pb::Empty {})
        .await
        .unwrap();
}
