//! kill -9 of one shim while the manager runs: that task is reported failed with a
//! clear reason (TaskExit.reason) and cleaned up (container killed, rootfs
//! unmounted, cgroup removed), and the other containers are untouched.

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod daemon_common;

use berth_api::berth::manager::v1 as pb;
use berth_api::berth::manager::v1::envelope::Event;
use daemon_common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_shim_fails_its_task_and_only_its_task() {
    berth_testutil::require_root!();
    let stack = Stack::start(&runtime_under_test()).await;
    stack.import_busybox().await;
    let mut c = stack.clients().await;
    let mut exits = c
        .events
        .subscribe(pb::SubscribeRequest {
            filters: vec!["topic=/tasks/exit".into()],
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<String> = (0..3)
        .map(|_| berth_testutil::unique_name("berth-test-sk"))
        .collect();
    let mut pids = Vec::new();
    for id in &ids {
        pids.push(stack.run(&mut c, id, &["sleep", "1000"]).await);
    }
    let victim = &ids[1];
    let task = c
        .tasks
        .get(pb::GetTaskRequest {
            container_id: victim.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    kill(
        Pid::from_raw(i32::try_from(task.shim_pid).unwrap()),
        Signal::SIGKILL,
    )
    .unwrap();

    let e = next_event(
        &mut exits,
        |e| matches!(&e.event, Some(Event::TaskExit(x)) if x.container_id == *victim),
    )
    .await;
    let Some(Event::TaskExit(x)) = e.event else {
        unreachable!()
    };
    assert!(
        x.reason.contains("berth-shim") && x.reason.contains("died"),
        "unclear reason: {:?}",
        x.reason
    );
    assert_eq!(x.exit_status, 255);
    assert_eq!(x.pid, pids[1]);

    // Cleaned up by the time the exit is published.
    stack.reap();
    eventually("the victim's container is gone", || {
        stack.reap();
        !alive(pids[1])
    })
    .await;
    let rootfs = stack.task_dir(victim).join("rootfs");
    assert!(
        mounts_below(&rootfs).is_empty(),
        "rootfs still mounted: {:?}",
        mounts_below(&rootfs)
    );
    let cg = berth_testutil::test_cgroup(victim);
    assert!(
        cgroup_dirs(&cg).is_empty(),
        "cgroup left: {:?}",
        cgroup_dirs(&cg)
    );
    let t = c
        .tasks
        .get(pb::GetTaskRequest {
            container_id: victim.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t.status, pb::TaskStatus::Stopped as i32);
    assert_eq!(t.exit.unwrap().exit_status, 255);
    // Requests that need the shim say why they cannot be served.
    let err = c
        .tasks
        .kill(pb::KillRequest {
            container_id: victim.clone(),
            exec_id: String::new(),
            signal: 9,
            all: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("died"), "{err:?}");
    assert_eq!(Stack::wait_delete(&mut c, victim).await, 255);
    assert!(!stack.task_dir(victim).exists());

    // The others are untouched.
    for (id, pid) in [(&ids[0], pids[0]), (&ids[2], pids[2])] {
        let t = c
            .tasks
            .get(pb::GetTaskRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(t.status, pb::TaskStatus::Running as i32, "{id}");
        assert_eq!(t.pid, pid);
        assert!(alive(pid), "{id}'s init died");
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
