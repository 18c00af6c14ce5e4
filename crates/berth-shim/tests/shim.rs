//! berth-shim against a real OCI runtime (runc by default; see common/mod.rs for
//! BERTH_SHIM_RUNTIMES): lifecycle, exit codes, logs, pty, stdin, exec, reparenting,
//! surviving its starter, the rootfs mount, and what a deleted task leaves. Root only.

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use berth_shim_contract::pb;
use berth_testutil::{require_root, unique_name};
use common::*;
use tonic::Code;

#[tokio::test]
async fn echo_hello_is_logged_and_wait_returns_0() {
    require_root!();
    for rt in runtimes() {
        let id = unique_name("berth-test-shim");
        let mut shim = TestShim::start(&rt, &id, bundle(&id, &["echo", "hello"])).await;
        let pid = shim.create_start(false).await;
        assert!(pid > 0);
        let exit = shim.wait("").await;
        assert_eq!(exit.exit_status, 0, "runtime {}", rt.display());
        assert_eq!(exit.pid, pid);
        assert!(!exit.oom_killed);
        assert!(chrono::DateTime::parse_from_rfc3339(&exit.exited_at).is_ok());

        let entries = shim.log_entries();
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!(entries[0]["log"], "hello\n");
        assert_eq!(entries[0]["stream"], "stdout");
        let time = entries[0]["time"].as_str().unwrap();
        assert!(time.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(time).is_ok());

        // exit.json was written before Wait answered.
        let rec = berth_shim::TaskDir::new(shim.task_dir())
            .read_exit()
            .unwrap()
            .unwrap();
        assert_eq!(rec.exit_status, 0);
        assert_eq!(rec.pid, pid);

        let deleted = shim.delete(false).await;
        assert_eq!(deleted.exit_status, 0);
        shim.assert_cleaned_up().await;
    }
}

#[tokio::test]
async fn exit_code_and_sigkill_status() {
    require_root!();
    for rt in runtimes() {
        let id = unique_name("berth-test-shim");
        let mut shim = TestShim::start(&rt, &id, bundle(&id, &["sh", "-c", "exit 3"])).await;
        shim.create_start(false).await;
        assert_eq!(shim.wait("").await.exit_status, 3);
        shim.delete(false).await;
        shim.assert_cleaned_up().await;

        let id = unique_name("berth-test-shim");
        let mut shim = TestShim::start(&rt, &id, bundle(&id, &["sleep", "100"])).await;
        shim.create_start(false).await;
        let state = shim
            .client
            .state(pb::StateRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(state.status(), pb::Status::Running);
        shim.client
            .kill(pb::KillRequest {
                exec_id: String::new(),
                signal: 9,
                all: false,
            })
            .await
            .unwrap();
        assert_eq!(shim.wait("").await.exit_status, 137);
        let state = shim
            .client
            .state(pb::StateRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(state.status(), pb::Status::Stopped);
        assert_eq!(state.exit.unwrap().exit_status, 137);
        shim.delete(false).await;
        shim.assert_cleaned_up().await;
    }
}

#[tokio::test]
async fn stdout_and_stderr_are_separate_streams() {
    require_root!();
    for rt in runtimes() {
        let id = unique_name("berth-test-shim");
        let args = ["sh", "-c", "echo out; echo err >&2; printf partial"];
        let mut shim = TestShim::start(&rt, &id, bundle(&id, &args)).await;
        shim.create_start(false).await;
        assert_eq!(shim.wait("").await.exit_status, 0);
        let entries = shim.log_entries();
        let of = |stream: &str| -> Vec<String> {
            entries
                .iter()
                .filter(|e| e["stream"] == stream)
                .map(|e| e["log"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(of("stdout"), vec!["out\n", "partial"]);
        assert_eq!(of("stderr"), vec!["err\n"]);
        shim.delete(false).await;
        shim.assert_cleaned_up().await;
    }
}

fn code<T>(r: Result<tonic::Response<T>, tonic::Status>) -> (Code, String) {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => (e.code(), e.message().to_string()),
    }
}

/// Open an attach stream for `exec_id`; returns the stdin sender and the output.
async fn attach(
    shim: &mut TestShim,
    exec_id: &str,
) -> (
    tokio::sync::mpsc::Sender<pb::AttachRequest>,
    berth_shim_contract::AttachStream,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tx.send(pb::AttachRequest {
        exec_id: exec_id.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let out = shim
        .client
        .attach(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    (tx, out)
}

/// Read attached output until `want` has been seen on `stream`, or it ends.
async fn read_until(
    out: &mut berth_shim_contract::AttachStream,
    stream: pb::Stream,
    want: &str,
) -> String {
    let mut seen = String::new();
    while !seen.contains(want) {
        match out.message().await.unwrap() {
            Some(m) if m.stream() == stream => seen.push_str(&String::from_utf8_lossy(&m.data)),
            Some(_) => {}
            None => break,
        }
    }
    seen
}

#[tokio::test]
async fn create_with_start_runs_the_init_and_holds_its_output_for_the_attach() {
    require_root!();
    for rt in runtimes() {
        let id = unique_name("berth-test-shim");
        let mut shim = TestShim::start(&rt, &id, bundle(&id, &["echo", "all of it"])).await;
        let pid = shim
            .client
            .create(pb::CreateRequest {
                log_path: shim.log_path().to_string_lossy().into_owned(),
                start: true,
                attaches: 1,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .pid;
        assert!(pid > 0);
        // Started already: never `created`, and a Start is refused.
        assert_ne!(shim.init_state().await.status, pb::Status::Created as i32);
        let (c, _) = code(shim.client.start(pb::StartRequest::default()).await);
        assert_eq!(c, Code::FailedPrecondition, "runtime {}", rt.display());
        // The process has (most likely) written and exited by now; its output
        // waited for the attach, which sees it whole before its stream ends.
        let (_tx, mut out) = attach(&mut shim, "").await;
        let seen = read_until(&mut out, pb::Stream::Stdout, "all of it\n").await;
        assert_eq!(seen, "all of it\n", "runtime {}", rt.display());
        assert_eq!(shim.wait("").await.exit_status, 0);
        assert_eq!(shim.log_entries()[0]["log"], "all of it\n");
        assert_eq!(shim.delete(false).await.exit_status, 0);
        shim.assert_cleaned_up().await;
    }
}

#[tokio::test]
async fn terminal_output_comes_through_the_pty() {
    require_root!();
    for rt in runtimes() {
        let id = unique_name("berth-test-shim");
        let mut b = bundle(&id, &["tty"]);
        b.config["process"]["terminal"] = true.into();
        let mut shim = TestShim::start(&rt, &id, b).await;
        shim.create(false).await;
        let state = shim
            .client
            .state(pb::StateRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert!(state.terminal);
        assert_eq!(state.status(), pb::Status::Created);
        shim.client
            .resize_pty(pb::ResizePtyRequest {
                exec_id: String::new(),
                width: 100,
                height: 30,
            })
            .await
            .unwrap();
        shim.client
            .start(pb::StartRequest::default())
            .await
            .unwrap();
        assert_eq!(shim.wait("").await.exit_status, 0);
        let entries = shim.log_entries();
        let text: String = entries
            .iter()
            .map(|e| e["log"].as_str().unwrap().to_string())
            .collect();
        assert!(text.starts_with("/dev/pts/0"), "{entries:?}");
        assert!(entries.iter().all(|e| e["stream"] == "stdout"));
        shim.delete(false).await;
        shim.assert_cleaned_up().await;
    }
}

#[tokio::test]
async fn stdin_round_trips_through_attach() {
    require_root!();
    for rt in runtimes() {
        let id = unique_name("berth-test-shim");
        let mut shim = TestShim::start(&rt, &id, bundle(&id, &["cat"])).await;
        shim.create(true).await;
        // Attach before Start so no output can be missed.
        let (tx, mut out) = attach(&mut shim, "").await;
        shim.client
            .start(pb::StartRequest::default())
            .await
            .unwrap();
        tx.send(pb::AttachRequest {
            stdin: b"ping\n".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
        assert_eq!(
            read_until(&mut out, pb::Stream::Stdout, "ping\n").await,
            "ping\n"
        );
        shim.client
            .close_io(pb::CloseIoRequest::default())
            .await
            .unwrap();
        assert_eq!(shim.wait("").await.exit_status, 0);
        // The output ended, so the attach stream ends too.
        while out.message().await.unwrap().is_some() {}
        let logged: Vec<_> = shim.log_entries();
        assert_eq!(logged.len(), 1);
        assert_eq!(logged[0]["log"], "ping\n");
        drop(tx);
        shim.delete(false).await;
        shim.assert_cleaned_up().await;
    }
}

/// More stdin than the pipe and the shim's queue hold, to a process that reads it
/// late: the writer is held up, nothing is lost or reordered.
#[tokio::test]
async fn a_lot_of_stdin_reaches_a_late_reader_whole() {
    require_root!();
    const CHUNK: usize = 64 * 1024;
    const CHUNKS: usize = 64;
    for rt in runtimes() {
        let id = unique_name("berth-test-shim");
        let mut shim =
            TestShim::start(&rt, &id, bundle(&id, &["sh", "-c", "sleep 1; md5sum"])).await;
        shim.create(true).await;
        let (tx, mut out) = attach(&mut shim, "").await;
        shim.client
            .start(pb::StartRequest::default())
            .await
            .unwrap();
        let mut all = Vec::with_capacity(CHUNK * CHUNKS);
        for i in 0..CHUNKS {
            let chunk: Vec<u8> = (0..CHUNK).map(|j| ((i * 7 + j) % 251) as u8).collect();
            all.extend_from_slice(&chunk);
            tx.send(pb::AttachRequest {
                stdin: chunk,
                close_stdin: i + 1 == CHUNKS,
                ..Default::default()
            })
            .await
            .unwrap();
        }
        let seen = read_until(&mut out, pb::Stream::Stdout, "\n").await;
        assert_eq!(shim.wait("").await.exit_status, 0);
        let digest = std::process::Command::new("md5sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(&all)?;
                c.wait_with_output()
            })
            .unwrap();
        let want = String::from_utf8_lossy(&digest.stdout);
        assert_eq!(
            seen.split_whitespace().next(),
            want.split_whitespace().next(),
            "{seen}"
        );
        drop(tx);
        shim.delete(false).await;
        shim.assert_cleaned_up().await;
    }
}

#[tokio::test]
async fn stdin_is_refused_when_not_opened() {
    require_root!();
    for rt in runtimes() {
        let id = unique_name("berth-test-shim");
        let mut shim = TestShim::start(&rt, &id, bundle(&id, &["sleep", "100"])).await;
        shim.create_start(false).await;
        let (tx, mut out) = attach(&mut shim, "").await;
        tx.send(pb::AttachRequest {
            stdin: b"x".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
        let err = out.message().await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
        let err = shim
            .client
            .close_io(pb::CloseIoRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
        shim.delete(true).await;
        shim.assert_cleaned_up().await;
    }
}

#[tokio::test]
async fn exec_runs_in_the_running_container() {
    require_root!();
    for rt in runtimes() {
        let id = unique_name("berth-test-shim");
        let mut shim = TestShim::start(&rt, &id, bundle(&id, &["sleep", "100"])).await;
        shim.create_start(false).await;

        let exec_log = shim.logs.path().join("exec.log");
        shim.client
            .exec(pb::ExecRequest {
                exec_id: "e1".into(),
                process: process_json(&["sh", "-c", "echo hi; hostname >&2; exit 5"], false),
                stdin: false,
                log_path: exec_log.to_string_lossy().into_owned(),
                log_format: 0,
            })
            .await
            .unwrap();
        let (_tx, mut out) = attach(&mut shim, "e1").await;
        let pid = shim
            .client
            .start(pb::StartRequest {
                exec_id: "e1".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .pid;
        assert!(pid > 0);
        let mut stdout = String::new();
        let mut stderr = String::new();
        while let Some(m) = out.message().await.unwrap() {
            match m.stream() {
                pb::Stream::Stdout => stdout.push_str(&String::from_utf8_lossy(&m.data)),
                pb::Stream::Stderr => stderr.push_str(&String::from_utf8_lossy(&m.data)),
            }
        }
        assert_eq!(stdout, "hi\n");
        assert_eq!(stderr, "testhost\n");
        let exit = shim.wait("e1").await;
        assert_eq!(exit.exit_status, 5);
        assert_eq!(exit.pid, pid);
        let logged = read_log(&exec_log);
        assert_eq!(logged.len(), 2, "{logged:?}");

        // A duplicate id, and an exec of a process that cannot run.
        let dup = shim
            .client
            .exec(pb::ExecRequest {
                exec_id: "e1".into(),
                process: process_json(&["true"], false),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(dup.code(), Code::AlreadyExists);
        let deleted = shim
            .client
            .delete(pb::DeleteRequest {
                exec_id: "e1".into(),
                force: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(deleted.exit_status, 5);
        shim.client
            .exec(pb::ExecRequest {
                exec_id: "bad".into(),
                process: process_json(&["/no/such/binary"], false),
                ..Default::default()
            })
            .await
            .unwrap();
        let err = shim
            .client
            .start(pb::StartRequest {
                exec_id: "bad".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err}");
        assert!(err.message().contains("/no/such/binary"), "{err}");

        // A start right after the attach answered loses no output, however fast
        // the process is (the start comes on another connection: the attach's
        // answer says the subscription is in place).
        for i in 0..20 {
            let exec_id = format!("quick{i}");
            shim.client
                .exec(pb::ExecRequest {
                    exec_id: exec_id.clone(),
                    process: process_json(&["echo", &format!("n{i}")], false),
                    ..Default::default()
                })
                .await
                .unwrap();
            let (_tx, mut out) = attach(&mut shim, &exec_id).await;
            shim.client
                .start(pb::StartRequest {
                    exec_id: exec_id.clone(),
                })
                .await
                .unwrap();
            let seen = read_until(&mut out, pb::Stream::Stdout, "\n").await;
            assert_eq!(seen, format!("n{i}\n"));
            assert_eq!(shim.wait(&exec_id).await.exit_status, 0);
        }

        // The init is untouched.
        let state = shim
            .client
            .state(pb::StateRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(state.status(), pb::Status::Running);
        shim.delete(true).await;
        shim.assert_cleaned_up().await;
        assert!(!shim.task_dir().join("exec-e1.json").exists());
    }
}

/// An exec'd process's stdin, sent on its attach stream before and after it
/// starts (kubelet's and docker's clients attach first), then closed on that
/// stream, which then ends: it reads all of it, then end of file.
#[tokio::test]
async fn exec_stdin_before_and_after_start_then_closed() {
    require_root!();
    for rt in runtimes() {
        let id = unique_name("berth-test-shim");
        let mut shim = TestShim::start(&rt, &id, bundle(&id, &["sleep", "100"])).await;
        shim.create_start(false).await;
        for (early, exec_id) in [(true, "early"), (false, "late")] {
            shim.client
                .exec(pb::ExecRequest {
                    exec_id: exec_id.into(),
                    process: process_json(&["sh", "-c", "cat; echo done"], false),
                    stdin: true,
                    ..Default::default()
                })
                .await
                .unwrap();
            let (tx, mut out) = attach(&mut shim, exec_id).await;
            let stdin = |close_stdin| pb::AttachRequest {
                exec_id: exec_id.into(),
                stdin: if close_stdin {
                    Vec::new()
                } else {
                    b"piped in\n".to_vec()
                },
                close_stdin,
            };
            // The client's end of input comes with its last requests, as a
            // client's does that sends all it has and goes (crictl exec -i).
            let mut tx = Some(tx);
            if early {
                let tx = tx.take().unwrap();
                tx.send(stdin(false)).await.unwrap();
                tx.send(stdin(true)).await.unwrap();
            }
            shim.client
                .start(pb::StartRequest {
                    exec_id: exec_id.into(),
                })
                .await
                .unwrap();
            if let Some(tx) = tx {
                tx.send(stdin(false)).await.unwrap();
                tx.send(stdin(true)).await.unwrap();
            }
            assert_eq!(
                read_until(&mut out, pb::Stream::Stdout, "done\n").await,
                "piped in\ndone\n",
                "{exec_id}"
            );
            assert_eq!(shim.wait(exec_id).await.exit_status, 0, "{exec_id}");
        }
        shim.delete(true).await;
        shim.assert_cleaned_up().await;
    }
}

/// An exec'd process's output waits for its attached client: a million lines
/// read late and slowly arrive whole (docker exec and kubectl cp depend on it),
/// and the exit is reported once they have.
#[tokio::test]
async fn a_million_lines_of_exec_output_arrive_whole() {
    require_root!();
    for rt in runtimes() {
        let id = unique_name("berth-test-shim");
        let mut shim = TestShim::start(&rt, &id, bundle(&id, &["sleep", "100"])).await;
        shim.create_start(false).await;
        shim.client
            .exec(pb::ExecRequest {
                exec_id: "seq".into(),
                process: process_json(&["seq", "1", "1000000"], false),
                ..Default::default()
            })
            .await
            .unwrap();
        let (_tx, mut out) = attach(&mut shim, "seq").await;
        shim.client
            .start(pb::StartRequest {
                exec_id: "seq".into(),
            })
            .await
            .unwrap();
        // Late: the shim's backlog for this client fills up first.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let mut all = Vec::with_capacity(7 << 20);
        let mut reads = 0u32;
        while let Some(m) = out.message().await.unwrap() {
            assert_eq!(m.stream(), pb::Stream::Stdout);
            all.extend_from_slice(&m.data);
            reads += 1;
            if reads % 64 == 0 {
                // Slow, now and then.
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }
        assert_eq!(all.len(), 6_888_896);
        assert!(all.ends_with(b"\n999999\n1000000\n"));
        assert_eq!(shim.wait("seq").await.exit_status, 0);
        shim.delete(true).await;
        shim.assert_cleaned_up().await;
    }
}

#[tokio::test]
async fn exec_with_a_terminal() {
    require_root!();
    for rt in runtimes() {
        let id = unique_name("berth-test-shim");
        let mut shim = TestShim::start(&rt, &id, bundle(&id, &["sleep", "100"])).await;
        shim.create_start(false).await;
        shim.client
            .exec(pb::ExecRequest {
                exec_id: "t".into(),
                process: process_json(&["sh"], true),
                stdin: true,
                log_path: String::new(),
                log_format: 0,
            })
            .await
            .unwrap();
        let (tx, mut out) = attach(&mut shim, "t").await;
        shim.client
            .start(pb::StartRequest {
                exec_id: "t".into(),
            })
            .await
            .unwrap();
        tx.send(pb::AttachRequest {
            stdin: b"echo $((6*7)); tty; exit 4\n".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
        let seen = read_until(&mut out, pb::Stream::Stdout, "/dev/pts/").await;
        assert!(seen.contains("42"), "{seen:?}");
        assert_eq!(shim.wait("t").await.exit_status, 4);
        shim.delete(true).await;
        shim.assert_cleaned_up().await;
    }
}

#[tokio::test]
async fn container_init_is_a_child_of_the_shim() {
    require_root!();
    for rt in runtimes() {
        let id = unique_name("berth-test-shim");
        let mut shim = TestShim::start(&rt, &id, bundle(&id, &["sleep", "100"])).await;
        let pid = shim.create_start(false).await;
        let ps = std::process::Command::new("ps")
            .args(["-e", "-o", "pid,ppid,comm"])
            .output()
            .unwrap();
        let ps = String::from_utf8_lossy(&ps.stdout);
        let row = |pid: u32| -> Vec<String> {
            ps.lines()
                .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
                .find(|f| f.first().map(String::as_str) == Some(&pid.to_string()))
                .unwrap_or_else(|| panic!("pid {pid} not in ps:\n{ps}"))
        };
        let init = row(pid);
        assert_eq!(init[1], shim.shim_pid.to_string(), "init's parent: {ps}");
        assert_eq!(init[2], "sleep");
        let shim_row = row(shim.shim_pid as u32);
        assert_eq!(shim_row[2], "berth-shim");
        // The shim's parent is not its starter (which exited) but this subreaper.
        assert_eq!(shim_row[1], std::process::id().to_string());
        // Its own session: not in the starter's.
        let sid = nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(shim.shim_pid))).unwrap();
        assert_eq!(sid.as_raw(), shim.shim_pid);

        let pids = shim
            .client
            .pids(pb::PidsRequest {})
            .await
            .unwrap()
            .into_inner()
            .processes;
        assert!(
            pids.iter().any(|p| p.pid == pid && p.exec_id.is_empty()),
            "{pids:?}"
        );
        shim.delete(true).await;
        shim.assert_cleaned_up().await;
    }
}

#[tokio::test]
async fn shim_outlives_its_starter_and_answers_late_clients() {
    require_root!();
    for rt in runtimes() {
        let id = unique_name("berth-test-shim");
        let b = bundle(&id, &["sleep", "100"]);
        b.write().unwrap();
        let runtime_root = tempfile::Builder::new()
            .prefix("berth-test-rtroot")
            .tempdir()
            .unwrap();
        // A starter that stays around after starting the shim, in its own process
        // group, killed with everything in that group. The shim command returns
        // (and the starter touches `ready`) once the shim serves.
        become_subreaper();
        let args = shim_args(&rt, &id, &b, runtime_root.path());
        let ready = runtime_root.path().join("ready");
        let mut cmd = std::process::Command::new("sh");
        cmd.arg("-c")
            .arg("\"$@\" && touch \"$READY\" && exec sleep 1000")
            .arg("starter")
            .arg(shim_binary())
            .args(args.to_args())
            .env("READY", &ready);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let starter = berth_testutil::ChildGuard(cmd.spawn().unwrap());
        let pid_file = b.path().join("shim.pid");
        eventually("the shim serves", || ready.exists()).await;
        let shim_pid = read_pid(&pid_file);
        let starter_pid = starter.0.id() as i32;
        nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(starter_pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        drop(starter);
        assert!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(shim_pid), None).is_ok(),
            "the shim died with its starter"
        );

        let mut shim = TestShim::adopt(&rt, &id, b, runtime_root, shim_pid).await;
        let pid = shim.create_start(false).await;
        // The first client goes away, as a manager that is killed would.
        let second = shim.new_client().await;
        drop(std::mem::replace(&mut shim.client, second));

        // The container dies while no client is connected.
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let exit_file = shim.task_dir().join("exit.json");
        eventually("exit.json is written", || exit_file.exists()).await;

        // A client that connects later gets the exit from State and Wait.
        let mut late = shim.new_client().await;
        let hello = late
            .connect(pb::ConnectRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(hello.shim_pid, shim_pid as u32);
        assert_eq!(hello.task_pid, pid);
        assert_eq!(hello.id, id);
        let state = late
            .state(pb::StateRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(state.status(), pb::Status::Stopped);
        assert_eq!(state.exit.as_ref().unwrap().exit_status, 137);
        let exit = late
            .wait(pb::WaitRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(exit.exit_status, 137);
        assert_eq!(exit.pid, pid);
        shim.client = late;
        shim.delete(false).await;
        shim.assert_cleaned_up().await;
    }
}

#[tokio::test]
async fn overlay_rootfs_is_mounted_for_the_container_and_unmounted_once_it_exits() {
    require_root!();
    for rt in runtimes() {
        let id = unique_name("berth-test-shim");
        let b = bundle(
            &id,
            &[
                "sh",
                "-c",
                "echo written > /new-file; cat /etc/passwd | head -1",
            ],
        );
        let layers = tempfile::Builder::new()
            .prefix("berth-test-layers")
            .tempdir()
            .unwrap();
        let lower = layers.path().join("lower");
        let upper = layers.path().join("upper");
        let work = layers.path().join("work");
        std::fs::rename(b.rootfs(), &lower).unwrap();
        std::fs::create_dir(b.rootfs()).unwrap();
        std::fs::create_dir(&upper).unwrap();
        std::fs::create_dir(&work).unwrap();
        let _mounts = berth_testutil::MountGuard(b.rootfs());

        let mut shim = TestShim::start(&rt, &id, b).await;
        shim.client
            .create(pb::CreateRequest {
                rootfs: vec![pb::Mount {
                    r#type: "overlay".into(),
                    source: "overlay".into(),
                    target: String::new(),
                    options: vec![
                        format!("lowerdir={}", lower.display()),
                        format!("upperdir={}", upper.display()),
                        format!("workdir={}", work.display()),
                    ],
                }],
                log_path: shim.log_path().to_string_lossy().into_owned(),
                stdin: false,
                log_format: 0,
                ..Default::default()
            })
            .await
            .unwrap();
        let rootfs = shim.task_dir().join("rootfs");
        assert_eq!(
            mounts_below(&rootfs),
            vec![rootfs.to_string_lossy().into_owned()]
        );
        shim.client
            .start(pb::StartRequest::default())
            .await
            .unwrap();
        assert_eq!(shim.wait("").await.exit_status, 0);
        assert_eq!(
            shim.log_entries()[0]["log"],
            "root:x:0:0:root:/root:/bin/sh\n"
        );
        // The write went to the upper layer, not the image.
        assert_eq!(
            std::fs::read_to_string(upper.join("new-file")).unwrap(),
            "written\n"
        );
        assert!(!lower.join("new-file").exists());
        // Once the exit is answered, the runtime's part goes and the rootfs is
        // unmounted, before anyone deletes the task; the task is still there,
        // stopped, and the Delete answers with its exit.
        eventually("the rootfs unmounted after the exit", || {
            mounts_below(&rootfs).is_empty()
        })
        .await;
        let state_dir = shim.runtime_root.path().join(&id);
        eventually("the runtime's state deleted after the exit", || {
            !state_dir.exists()
        })
        .await;
        assert_eq!(shim.init_state().await.status, pb::Status::Stopped as i32);
        let (c, _) = code(shim.client.start(pb::StartRequest::default()).await);
        assert_eq!(c, Code::FailedPrecondition);
        assert_eq!(shim.delete(false).await.exit_status, 0);
        shim.assert_cleaned_up().await;
        assert!(mounts_below(&rootfs).is_empty());
        assert_eq!(std::fs::read_dir(&rootfs).unwrap().count(), 0);
    }
}

#[tokio::test]
async fn bad_requests_get_clear_codes_and_leave_nothing_behind() {
    require_root!();
    for rt in runtimes() {
        let id = unique_name("berth-test-shim");
        let mut shim = TestShim::start(&rt, &id, bundle(&id, &["/no/such/binary"])).await;
        let (c, m) = code(shim.client.start(pb::StartRequest::default()).await);
        assert_eq!(c, Code::NotFound, "{m}");
        let (c, m) = code(shim.client.wait(pb::WaitRequest::default()).await);
        assert_eq!(c, Code::NotFound, "{m}");

        // Mounts that could escape the rootfs are refused before anything happens.
        let (c, m) = code(
            shim.client
                .create(pb::CreateRequest {
                    rootfs: vec![pb::Mount {
                        r#type: "tmpfs".into(),
                        source: "tmpfs".into(),
                        target: "../escape".into(),
                        options: vec![],
                    }],
                    ..Default::default()
                })
                .await,
        );
        assert_eq!(c, Code::InvalidArgument, "{m}");

        // The runtime rejects the spec: its own message comes back.
        let (c, m) = code(
            shim.client
                .create(pb::CreateRequest {
                    log_path: shim.log_path().to_string_lossy().into_owned(),
                    ..Default::default()
                })
                .await,
        );
        assert_eq!(c, Code::InvalidArgument, "{m}");
        assert!(m.contains("/no/such/binary"), "{m}");
        assert!(mounts_below(shim.task_dir()).is_empty());
        assert!(cgroup_dirs(&shim.bundle.cgroup()).is_empty());
        let (c, m) = code(shim.client.state(pb::StateRequest::default()).await);
        assert_eq!(c, Code::NotFound, "{m}");

        // With no task, Shutdown stops the shim.
        shim.client
            .shutdown(pb::ShutdownRequest { force: false })
            .await
            .unwrap();
        assert_eq!(shim.wait_shim_exit().await, 0);
        assert!(!shim.socket.exists());
        assert!(!shim.task_dir().join("shim.pid").exists());
    }
}

#[tokio::test]
async fn wrong_states_are_failed_preconditions() {
    require_root!();
    for rt in runtimes() {
        let id = unique_name("berth-test-shim");
        let mut shim = TestShim::start(&rt, &id, bundle(&id, &["sleep", "100"])).await;
        shim.create_start(false).await;
        let err = shim
            .client
            .create(pb::CreateRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::AlreadyExists, "{err}");
        let err = shim
            .client
            .start(pb::StartRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
        let err = shim
            .client
            .kill(pb::KillRequest {
                exec_id: String::new(),
                signal: 4000,
                all: false,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err}");
        let err = shim
            .client
            .delete(pb::DeleteRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
        let err = shim
            .client
            .state(pb::StateRequest {
                exec_id: "nope".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{err}");
        let err = shim
            .client
            .exec(pb::ExecRequest {
                exec_id: "../x".into(),
                process: process_json(&["true"], false),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err}");
        let err = shim
            .client
            .resize_pty(pb::ResizePtyRequest {
                exec_id: String::new(),
                width: 80,
                height: 24,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err}");

        // Shutdown is refused while the container runs, unless forced.
        let err = shim
            .client
            .shutdown(pb::ShutdownRequest { force: false })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
        // SIGTERM does not take a live container down either.
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(shim.shim_pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let state = shim
            .client
            .state(pb::StateRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(state.status(), pb::Status::Running);
        shim.client
            .shutdown(pb::ShutdownRequest { force: true })
            .await
            .unwrap();
        shim.assert_cleaned_up().await;
        let rec = berth_shim::TaskDir::new(shim.task_dir())
            .read_exit()
            .unwrap()
            .unwrap();
        assert_eq!(rec.exit_status, 137);
    }
}

#[tokio::test]
async fn pause_resume_update_and_stats() {
    require_root!();
    for rt in runtimes() {
        let id = unique_name("berth-test-shim");
        let mut shim = TestShim::start(&rt, &id, bundle(&id, &["sleep", "100"])).await;
        shim.create_start(false).await;
        shim.client.pause(pb::PauseRequest {}).await.unwrap();
        let state = shim
            .client
            .state(pb::StateRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(state.status(), pb::Status::Paused);
        let err = shim.client.pause(pb::PauseRequest {}).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
        shim.client.resume(pb::ResumeRequest {}).await.unwrap();
        let state = shim
            .client
            .state(pb::StateRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(state.status(), pb::Status::Running);

        shim.client
            .update(pb::UpdateRequest {
                resources: br#"{"pids": {"limit": 77}}"#.to_vec(),
            })
            .await
            .unwrap();
        let pids_max = cgroup_dirs(&shim.bundle.cgroup())
            .into_iter()
            .map(|d| d.join("pids.max"))
            .find(|f| f.exists())
            .map(|f| std::fs::read_to_string(f).unwrap());
        if let Some(max) = pids_max {
            assert_eq!(max.trim(), "77");
        }
        let err = shim
            .client
            .update(pb::UpdateRequest {
                resources: b"[1]".to_vec(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err}");

        let stats = shim
            .client
            .stats(pb::StatsRequest {})
            .await
            .unwrap()
            .into_inner();
        let stats: serde_json::Value = serde_json::from_slice(&stats.stats).unwrap();
        assert!(
            stats.get("pids").is_some() || stats.get("memory").is_some(),
            "{stats}"
        );
        shim.delete(true).await;
        shim.assert_cleaned_up().await;
    }
}

#[tokio::test]
async fn an_oom_kill_is_recorded_in_the_exit() {
    require_root!();
    for rt in runtimes() {
        let id = unique_name("berth-test-shim");
        // 200 MB of 'a' in a shell variable, in a 16 MB cgroup.
        let mut b = bundle(
            &id,
            &[
                "sh",
                "-c",
                "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
            ],
        );
        b.config["linux"]["resources"]["memory"] =
            serde_json::json!({"limit": 16 * 1024 * 1024, "swap": 16 * 1024 * 1024});
        let mut shim = TestShim::start(&rt, &id, b).await;
        shim.create_start(false).await;
        let exit = shim.wait("").await;
        assert!(exit.oom_killed, "runtime {}: {exit:?}", rt.display());
        // The OOM killer picks the biggest process: the shell holding the string.
        assert_eq!(exit.exit_status, 137, "{exit:?}");
        assert!(!shim.log_entries().iter().any(|e| e["log"] == "survived\n"));
        let rec = berth_shim::TaskDir::new(shim.task_dir())
            .read_exit()
            .unwrap()
            .unwrap();
        assert!(rec.oom_killed);
        shim.delete(false).await;
        shim.assert_cleaned_up().await;
    }
}

/// The CRI log format (chosen in Create) and ReopenLog after a rename, as kubelet
/// rotates: lines before the rename stay in the renamed file, later ones go to a
/// new file at the path.
#[tokio::test]
async fn cri_log_lines_and_reopen_after_a_rename() {
    require_root!();
    for rt in runtimes() {
        let id = unique_name("berth-test-shim");
        let args = [
            "sh",
            "-c",
            "echo one; echo err >&2; read x; echo two; printf tail",
        ];
        let mut shim = TestShim::start(&rt, &id, bundle(&id, &args)).await;
        let log = shim.logs.path().join("c.log");
        shim.client
            .create(pb::CreateRequest {
                rootfs: vec![],
                log_path: log.to_string_lossy().into_owned(),
                stdin: true,
                log_format: pb::LogFormat::Cri as i32,
                ..Default::default()
            })
            .await
            .unwrap();
        let (tx, mut out) = attach(&mut shim, "").await;
        shim.client
            .start(pb::StartRequest::default())
            .await
            .unwrap();
        let (mut o, mut e) = (String::new(), String::new());
        while !(o.contains("one\n") && e.contains("err\n")) {
            let m = out.message().await.unwrap().expect("output ended early");
            let text = String::from_utf8_lossy(&m.data).into_owned();
            match m.stream() {
                pb::Stream::Stdout => o.push_str(&text),
                pb::Stream::Stderr => e.push_str(&text),
            }
        }
        let rotated = log.with_extension("log.1");
        // Both lines are in the file before they reach attached clients.
        std::fs::rename(&log, &rotated).unwrap();
        shim.client
            .reopen_log(pb::ReopenLogRequest::default())
            .await
            .unwrap();
        assert!(log.exists());
        tx.send(pb::AttachRequest {
            stdin: b"go\n".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
        assert_eq!(shim.wait("").await.exit_status, 0);
        drop(tx);
        let lines = |p: &std::path::Path| -> Vec<(String, String, String)> {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(|l| {
                    let f: Vec<&str> = l.splitn(4, ' ').collect();
                    assert!(chrono::DateTime::parse_from_rfc3339(f[0]).is_ok(), "{l}");
                    (f[1].to_string(), f[2].to_string(), f[3].to_string())
                })
                .collect()
        };
        let mut before = lines(&rotated);
        before.sort();
        let s = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
        assert_eq!(
            before,
            vec![s("stderr", "F", "err"), s("stdout", "F", "one")]
        );
        assert_eq!(
            lines(&log),
            vec![s("stdout", "F", "two"), s("stdout", "F", "tail")]
        );
        // Reopening needs a process that exists.
        let err = shim
            .client
            .reopen_log(pb::ReopenLogRequest {
                exec_id: "nope".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        shim.delete(false).await;
        shim.assert_cleaned_up().await;
    }
}
