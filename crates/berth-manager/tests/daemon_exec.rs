//! The rest of the task API through the manager: exec with attached output, exit
//! codes and events, pids, pause and resume, stats, update, and an interactive
//! attach (stdin in, output out, close stdin).

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod daemon_common;

use berth_api::berth::manager::v1 as pb;
use berth_api::berth::manager::v1::envelope::Event;
use daemon_common::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

fn process(args: &[&str]) -> Vec<u8> {
    let v = spec_value("x", args);
    serde_json::to_vec(&v["process"]).unwrap()
}

/// Collect an attach stream's output until it ends: (stdout, stderr).
async fn drain(mut s: tonic::Streaming<pb::AttachResponse>) -> (String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let deadline = tokio::time::Instant::now() + EVENTUALLY;
    while let Some(m) = tokio::time::timeout_at(deadline, s.message())
        .await
        .expect("attach output did not end")
        .unwrap()
    {
        if m.stream == pb::StdStream::Stderr as i32 {
            err.extend(m.data);
        } else {
            out.extend(m.data);
        }
    }
    (
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_attach_pause_and_friends() {
    berth_testutil::require_root!();
    let stack = Stack::start(&runtime_under_test()).await;
    stack.import_busybox().await;
    let mut c = stack.clients().await;
    let mut events = c
        .events
        .subscribe(pb::SubscribeRequest {
            filters: vec!["topic=/tasks/exec".into(), "topic=/tasks/exit".into()],
        })
        .await
        .unwrap()
        .into_inner();
    let id = berth_testutil::unique_name("berth-test-exec");
    let pid = stack.run(&mut c, &id, &["sleep", "1000"]).await;

    // Exec, attached before it starts so no output is missed.
    c.tasks
        .exec(pb::ExecProcessRequest {
            container_id: id.clone(),
            exec_id: "e1".into(),
            process: process(&["sh", "-c", "echo out; echo err >&2; exit 4"]),
            stdin: false,
        })
        .await
        .unwrap();
    let (tx, rx) = mpsc::channel(4);
    tx.send(pb::AttachRequest {
        container_id: id.clone(),
        exec_id: "e1".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let attached = c
        .tasks
        .attach(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let exec_pid = c
        .tasks
        .start(pb::StartRequest {
            container_id: id.clone(),
            exec_id: "e1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .pid;
    assert!(exec_pid > 0);
    let (out, err) = drain(attached).await;
    drop(tx);
    assert_eq!(out, "out\n");
    assert_eq!(err, "err\n");
    let exit = c
        .tasks
        .wait(pb::WaitRequest {
            container_id: id.clone(),
            exec_id: "e1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(exit.exit_status, 4);
    let deleted = c
        .tasks
        .delete_process(pb::DeleteProcessRequest {
            container_id: id.clone(),
            exec_id: "e1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.exit_status, 4);
    let mut topics = Vec::new();
    while topics.len() < 3 {
        let e = next_event(&mut events, |_| true).await;
        match &e.event {
            Some(Event::TaskExecAdded(x)) => assert_eq!(x.exec_id, "e1"),
            Some(Event::TaskExecStarted(x)) => assert_eq!(x.pid, exec_pid),
            Some(Event::TaskExit(x)) => {
                assert_eq!(x.exec_id, "e1");
                assert_eq!(x.exit_status, 4);
            }
            other => panic!("unexpected event {other:?}"),
        }
        topics.push(e.topic);
    }
    assert_eq!(
        topics,
        ["/tasks/exec-added", "/tasks/exec-started", "/tasks/exit"]
    );

    // Pids, pause, resume, stats, update.
    let pids = c
        .tasks
        .pids(pb::PidsRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .pids;
    assert!(pids.contains(&pid), "{pids:?} lacks {pid}");
    let status = |c: &mut Clients| {
        let mut t = c.tasks.clone();
        let id = id.clone();
        async move {
            t.get(pb::GetTaskRequest { container_id: id })
                .await
                .unwrap()
                .into_inner()
                .status
        }
    };
    c.tasks
        .pause(pb::TaskId {
            container_id: id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(status(&mut c).await, pb::TaskStatus::Paused as i32);
    c.tasks
        .resume(pb::TaskId {
            container_id: id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(status(&mut c).await, pb::TaskStatus::Running as i32);
    let stats = c
        .tasks
        .stats(pb::TaskId {
            container_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats;
    let stats: serde_json::Value = serde_json::from_slice(&stats).unwrap();
    assert!(stats.is_object(), "{stats}");
    c.tasks
        .update(pb::UpdateTaskRequest {
            container_id: id.clone(),
            resources: br#"{"pids":{"limit":100}}"#.to_vec(),
        })
        .await
        .unwrap();
    c.tasks
        .kill(pb::KillRequest {
            container_id: id.clone(),
            exec_id: String::new(),
            // PID 1 of a pid namespace ignores signals it has no handler for
            // when they come from outside; `sleep` installs none, so TERM
            // would be dropped.
            signal: 9,
            all: true,
        })
        .await
        .unwrap();
    assert_eq!(Stack::wait_delete(&mut c, &id).await, 137);

    // Interactive: stdin through Attach, closed with CloseIO semantics.
    let id = berth_testutil::unique_name("berth-test-cat");
    stack.create_container(&mut c, &id, &["cat"]).await;
    let pid = c
        .tasks
        .create(pb::CreateTaskRequest {
            container_id: id.clone(),
            stdin: true,
            spec: Vec::new(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .pid;
    stack.track_pid(pid);
    let (tx, rx) = mpsc::channel(4);
    tx.send(pb::AttachRequest {
        container_id: id.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let attached = c
        .tasks
        .attach(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    c.tasks
        .start(pb::StartRequest {
            container_id: id.clone(),
            exec_id: String::new(),
        })
        .await
        .unwrap();
    tx.send(pb::AttachRequest {
        stdin: b"ping\n".to_vec(),
        ..Default::default()
    })
    .await
    .unwrap();
    // The attach stream and CloseIO are two connections: close only once the
    // stdin has been through (cat echoed it), or the close may overtake it.
    let mut attached = attached;
    let deadline = tokio::time::Instant::now() + EVENTUALLY;
    let first = tokio::time::timeout_at(deadline, attached.message())
        .await
        .expect("no echo of the stdin")
        .unwrap()
        .expect("the output ended before the echo");
    c.tasks
        .close_io(pb::CloseIoRequest {
            container_id: id.clone(),
            exec_id: String::new(),
        })
        .await
        .unwrap();
    let (rest, _) = drain(attached).await;
    drop(tx);
    let out = String::from_utf8(first.data).unwrap() + &rest;
    assert_eq!(out, "ping\n");
    assert_eq!(Stack::wait_delete(&mut c, &id).await, 0);
    let log = read_log(&stack.log_path(&id));
    assert_eq!(log[0]["log"], "ping\n");
}
