//! Bad requests get the right gRPC codes with clear messages, and leave nothing
//! behind: no container record, no snapshot, no task directory, no shim, no
//! mount, no cgroup.

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod daemon_common;

use berth_api::berth::manager::v1 as pb;
use daemon_common::*;
use tonic::Code;

fn assert_code<T: std::fmt::Debug>(r: Result<T, tonic::Status>, code: Code, needle: &str) {
    let e = r.expect_err("the request should have failed");
    assert_eq!(e.code(), code, "{e:?}");
    assert!(
        e.message().contains(needle),
        "message {:?} should mention {needle:?}",
        e.message()
    );
}

fn container(stack: &Stack, id: &str, image: &str, spec: Vec<u8>) -> pb::CreateContainerRequest {
    pb::CreateContainerRequest {
        container: Some(pb::Container {
            id: id.to_string(),
            image: image.to_string(),
            spec,
            log_path: stack.log_path(id).to_string_lossy().into_owned(),
            ..Default::default()
        }),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_clear_codes_and_leave_nothing_behind() {
    berth_testutil::require_root!();
    let stack = Stack::start(&runtime_under_test()).await;
    stack.import_busybox().await;
    let mut c = stack.clients().await;
    let snapshots_before = snapshot_dirs(&stack);

    // Unknown ids.
    let ghost = "berth-test-no-such-container".to_string();
    assert_code(
        c.containers
            .get(pb::GetContainerRequest { id: ghost.clone() })
            .await,
        Code::NotFound,
        &ghost,
    );
    assert_code(
        c.containers
            .delete(pb::DeleteContainerRequest {
                id: ghost.clone(),
                keep_snapshot: false,
            })
            .await,
        Code::NotFound,
        &ghost,
    );
    assert_code(
        c.tasks
            .create(pb::CreateTaskRequest {
                container_id: ghost.clone(),
                stdin: false,
                spec: Vec::new(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        &ghost,
    );
    assert_code(
        c.tasks
            .start(pb::StartRequest {
                container_id: ghost.clone(),
                exec_id: String::new(),
            })
            .await,
        Code::NotFound,
        "has no task",
    );
    assert_code(
        c.tasks
            .wait(pb::WaitRequest {
                container_id: ghost.clone(),
                exec_id: String::new(),
            })
            .await,
        Code::NotFound,
        "has no task",
    );
    assert_code(
        c.tasks
            .delete(pb::DeleteTaskRequest {
                container_id: ghost.clone(),
                force: true,
            })
            .await,
        Code::NotFound,
        "has no task",
    );
    assert_code(
        c.images
            .get(pb::GetImageRequest {
                reference: "berth-test/no-such-image:1".into(),
            })
            .await,
        Code::NotFound,
        "no-such-image",
    );

    // Missing image: nothing recorded, no snapshot made.
    let id = berth_testutil::unique_name("berth-test-noimg");
    assert_code(
        c.containers
            .create(container(
                &stack,
                &id,
                "berth-test/missing:1",
                stack.spec(&id, &["true"]),
            ))
            .await,
        Code::NotFound,
        "berth-test/missing:1",
    );
    assert_code(
        c.containers
            .get(pb::GetContainerRequest { id: id.clone() })
            .await,
        Code::NotFound,
        &id,
    );
    assert_code(
        c.snapshots.info(pb::SnapshotKey { key: id.clone() }).await,
        Code::NotFound,
        &id,
    );

    // Invalid arguments.
    assert_code(
        c.containers
            .create(container(
                &stack,
                "../escape",
                BUSYBOX,
                stack.spec("x", &["true"]),
            ))
            .await,
        Code::InvalidArgument,
        "invalid id",
    );
    let id = berth_testutil::unique_name("berth-test-badspec");
    assert_code(
        c.containers
            .create(container(&stack, &id, BUSYBOX, b"{not json".to_vec()))
            .await,
        Code::InvalidArgument,
        "not a JSON object",
    );
    assert_code(
        c.containers
            .get(pb::GetContainerRequest { id: id.clone() })
            .await,
        Code::NotFound,
        &id,
    );
    assert_code(
        c.containers
            .create(pb::CreateContainerRequest { container: None })
            .await,
        Code::InvalidArgument,
        "container",
    );
    assert_code(
        c.events
            .subscribe(pb::SubscribeRequest {
                filters: vec!["colour=blue".into()],
            })
            .await,
        Code::InvalidArgument,
        "colour=blue",
    );

    // Duplicates.
    let id = berth_testutil::unique_name("berth-test-dup");
    stack
        .create_container(&mut c, &id, &["sleep", "1000"])
        .await;
    assert_code(
        c.containers
            .create(container(&stack, &id, BUSYBOX, stack.spec(&id, &["true"])))
            .await,
        Code::AlreadyExists,
        "already exists",
    );
    // A spec sent with the task is checked before anything is made, and
    // replaces the container's when it is good.
    assert_code(
        c.tasks
            .create(pb::CreateTaskRequest {
                container_id: id.clone(),
                stdin: false,
                spec: b"[]".to_vec(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "not a JSON object",
    );
    assert_code(
        c.tasks
            .get(pb::GetTaskRequest {
                container_id: id.clone(),
            })
            .await,
        Code::NotFound,
        &id,
    );
    let pid = c
        .tasks
        .create(pb::CreateTaskRequest {
            container_id: id.clone(),
            stdin: false,
            spec: stack.spec(&id, &["sleep", "999"]),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .pid;
    stack.track_pid(pid);
    let spec = c
        .containers
        .get(pb::GetContainerRequest { id: id.clone() })
        .await
        .unwrap()
        .into_inner()
        .spec;
    assert!(String::from_utf8_lossy(&spec).contains("\"999\""));
    assert_code(
        c.tasks
            .create(pb::CreateTaskRequest {
                container_id: id.clone(),
                stdin: false,
                spec: Vec::new(),
                ..Default::default()
            })
            .await,
        Code::AlreadyExists,
        "already has a task",
    );

    // Wrong state.
    c.tasks
        .start(pb::StartRequest {
            container_id: id.clone(),
            exec_id: String::new(),
        })
        .await
        .unwrap();
    assert_code(
        c.tasks
            .start(pb::StartRequest {
                container_id: id.clone(),
                exec_id: String::new(),
            })
            .await,
        Code::FailedPrecondition,
        "start",
    );
    assert_code(
        c.tasks
            .delete(pb::DeleteTaskRequest {
                container_id: id.clone(),
                force: false,
            })
            .await,
        Code::FailedPrecondition,
        "running",
    );
    assert_code(
        c.containers
            .delete(pb::DeleteContainerRequest {
                id: id.clone(),
                keep_snapshot: false,
            })
            .await,
        Code::FailedPrecondition,
        "delete the task first",
    );
    let exit = c
        .tasks
        .delete(pb::DeleteTaskRequest {
            container_id: id.clone(),
            force: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(exit.exit_status, 137);
    c.containers
        .delete(pb::DeleteContainerRequest {
            id: id.clone(),
            keep_snapshot: false,
        })
        .await
        .unwrap();

    // A spec the runtime rejects: the task is refused with the runtime's reason,
    // and no shim, mount, cgroup or task directory stays.
    let id = berth_testutil::unique_name("berth-test-rejected");
    let mut spec = spec_value(&id, &["true"]);
    spec["mounts"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "destination": "/bogus", "type": "no-such-fs", "source": "none", "options": []
        }));
    stack.spec(&id, &["true"]);
    c.containers
        .create(container(
            &stack,
            &id,
            BUSYBOX,
            serde_json::to_vec(&spec).unwrap(),
        ))
        .await
        .unwrap();
    let e = c
        .tasks
        .create(pb::CreateTaskRequest {
            container_id: id.clone(),
            stdin: false,
            spec: Vec::new(),
            ..Default::default()
        })
        .await
        .expect_err("the runtime should refuse the spec");
    assert!(
        matches!(e.code(), Code::InvalidArgument | Code::FailedPrecondition),
        "{e:?}"
    );
    assert!(e.message().contains(&id), "{e:?}");
    assert!(!stack.task_dir(&id).exists(), "task directory left behind");
    assert_code(
        c.tasks
            .get(pb::GetTaskRequest {
                container_id: id.clone(),
            })
            .await,
        Code::NotFound,
        "has no task",
    );
    c.containers
        .delete(pb::DeleteContainerRequest {
            id: id.clone(),
            keep_snapshot: false,
        })
        .await
        .unwrap();

    // Nothing is left behind.
    let list = c
        .containers
        .list(pb::ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert!(list.is_empty(), "containers left: {list:?}");
    assert_eq!(snapshot_dirs(&stack), snapshots_before, "snapshots left");
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
    let tasks: Vec<_> = std::fs::read_dir(stack.state.join("tasks"))
        .unwrap()
        .collect();
    assert!(tasks.is_empty(), "task directories left: {tasks:?}");
}

/// The snapshot directories of the store.
fn snapshot_dirs(stack: &Stack) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(stack.root.join("snapshots/overlay"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A tar whose one file has a 64 KiB name (a PAX `path` record).
fn long_name_tar() -> Vec<u8> {
    let name = format!("a/{}", "x".repeat(64 * 1024));
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(2);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, &name, &b"hi"[..]).unwrap();
    b.into_inner().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_long_error_does_not_break_the_connection_others_share() {
    berth_testutil::require_root!();
    let stack = Stack::start(&runtime_under_test()).await;
    stack.import_busybox().await;
    // Every client below shares one HTTP/2 connection.
    let mut c = stack.clients().await;
    let id = "berth-test-long-error";
    stack.run(&mut c, id, &["sleep", "1000"]).await;
    let mut waiter = c.tasks.clone();
    let wait = tokio::spawn(async move {
        waiter
            .wait(pb::WaitRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
            })
            .await
    });
    let tar = long_name_tar();
    let msgs = vec![
        pb::ImportRequest {
            reference: "berth-test/long:1".to_string(),
            ..Default::default()
        },
        pb::ImportRequest {
            data: tar,
            ..Default::default()
        },
    ];
    let e = c
        .images
        .import(tokio_stream::iter(msgs))
        .await
        .expect_err("a 64 KiB file name is refused");
    assert!(
        e.message().len() <= 1024,
        "the message crosses gRPC whole: {} bytes",
        e.message().len()
    );
    assert_ne!(e.code(), Code::Unavailable, "{e:?}");
    // The same connection still answers, and the wait that was in flight on it
    // still gets the exit.
    c.version.version(pb::Empty {}).await.unwrap();
    c.tasks
        .kill(pb::KillRequest {
            container_id: id.to_string(),
            exec_id: String::new(),
            signal: 9,
            all: false,
        })
        .await
        .unwrap();
    let exit = tokio::time::timeout(std::time::Duration::from_secs(60), wait)
        .await
        .expect("the wait returns")
        .unwrap()
        .expect("the wait survives the long error");
    assert_eq!(exit.into_inner().exit_status, 137);
    Stack::wait_delete(&mut c, id).await;
}
