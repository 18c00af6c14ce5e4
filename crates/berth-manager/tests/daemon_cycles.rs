//! Many create/start/wait/delete cycles leave nothing behind: no shim process, no
//! mount, no cgroup, no task directory or runtime state, no snapshot, and no fd
//! growth in the manager. And many containers started at once all run (the
//! manager holds no global lock across a create or start).

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod daemon_common;

use berth_api::berth::manager::v1 as pb;
use daemon_common::*;

/// Create/start/wait/delete cycles.
const CYCLES: usize = 200;
/// Cycles run before the manager's fds are counted (connections, caches warm up).
const WARMUP: usize = 5;
/// Containers started at once in the parallel test.
const PARALLEL: usize = 32;

fn dir_names(p: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(p)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn cycles_leave_nothing_behind() {
    berth_testutil::require_root!();
    let stack = Stack::start(&runtime_under_test()).await;
    stack.import_busybox().await;
    let mut c = stack.clients().await;
    let snapshots = dir_names(&stack.root.join("snapshots/overlay"));
    let mut fds_after_warmup = 0;
    for i in 0..CYCLES {
        let id = format!("berth-test-cy-{}-{i}", std::process::id());
        stack.run(&mut c, &id, &["sh", "-c", "echo cycle"]).await;
        assert_eq!(Stack::wait_delete(&mut c, &id).await, 0, "cycle {i}");
        if i + 1 == WARMUP {
            fds_after_warmup = fd_count(stack.manager_pid());
        }
        if i % 50 == 0 {
            stack.reap();
        }
    }
    let fds = fd_count(stack.manager_pid());
    assert!(
        fds <= fds_after_warmup + 2,
        "the manager's fds grew from {fds_after_warmup} to {fds} over {} cycles",
        CYCLES - WARMUP
    );
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
    eventually("no cgroup left", || stack.cgroups_left().is_empty()).await;
    assert_eq!(dir_names(&stack.state.join("tasks")), Vec::<String>::new());
    // The runtime's own caches (`@seccomp`, `@empty-layer`) are not containers.
    let containers: Vec<String> = dir_names(&stack.state.join("runtime"))
        .into_iter()
        .filter(|n| !n.starts_with('@'))
        .collect();
    assert_eq!(containers, Vec::<String>::new());
    assert_eq!(dir_names(&stack.root.join("snapshots/overlay")), snapshots);
    let left = c
        .containers
        .list(pb::ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert!(left.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn many_containers_start_at_once() {
    berth_testutil::require_root!();
    let stack = Stack::start(&runtime_under_test()).await;
    stack.import_busybox().await;
    let c = stack.clients().await;
    let ids: Vec<String> = (0..PARALLEL)
        .map(|_| berth_testutil::unique_name("berth-test-par"))
        .collect();
    let runs = ids.iter().map(|id| {
        let mut c = c.clone();
        let stack = &stack;
        async move {
            stack.run(&mut c, id, &["sh", "-c", "echo parallel"]).await;
            Stack::wait_delete(&mut c, id).await
        }
    });
    let codes = futures_util::future::join_all(runs).await;
    assert_eq!(codes, vec![0; PARALLEL]);
    for id in &ids {
        let log = read_log(&stack.log_path(id));
        assert_eq!(log.len(), 1, "{id}: {log:?}");
        assert_eq!(log[0]["log"], "parallel\n");
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
