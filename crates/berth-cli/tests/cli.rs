//! The `berth` binary against a real berthd HTTP server (in this process) whose manager
//! is the in-memory fake: flags, tables, --format, run's attach/wait/start dance, exit
//! codes and the unreachable-daemon message.

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Output;
use std::sync::Arc;

use berth_engine::engine::{Engine, EngineConfig};
use berth_engine::manager::fake::{FakeManager, Program};
use berth_engine::server;
use berth_engine::spec::HostFacts;

struct Daemon {
    _dir: tempfile::TempDir,
    host: String,
    fake: Arc<FakeManager>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn daemon() -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("berth.sock");
    let fake = Arc::new(FakeManager::new());
    fake.add_image(
        "sha256:aaaabbbbccccddddeeeeffff0000111122223333444455556666777788889999",
        &["busybox", "busybox:latest"],
        serde_json::json!({"config": {"Cmd": ["sh"]}}),
    );
    let engine = Arc::new(
        Engine::new(
            EngineConfig {
                data_root: dir.path().join("data"),
                exec_root: dir.path().join("exec"),
                manager_socket: "fake".into(),
                init_path: PathBuf::from("/usr/local/bin/berth-init"),
            },
            fake.clone(),
            HostFacts::default(),
        )
        .unwrap(),
    );
    // Exits reach the engine through its link to the manager, as in berthd.
    engine.start_link();
    let listener = server::bind(&sock).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(server::serve(listener, engine, async {
        let _ = rx.await;
    }));
    Daemon {
        host: format!("unix://{}", sock.display()),
        _dir: dir,
        fake,
        _stop: tx,
    }
}

async fn berth(host: &str, args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.arg("-H").arg(host).args(args);
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn create_ps_inspect_rm() {
    let d = daemon().await;
    let out = berth(
        &d.host,
        &[
            "create", "--name", "web", "-e", "A=1", "-m", "100m", "busybox", "echo", "hi",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    assert_eq!(id.len(), 64);

    let out = berth(&d.host, &["ps", "-a"]).await;
    let table = text(&out.stdout);
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("CONTAINER ID   IMAGE"), "{header}");
    let row = lines.next().unwrap();
    assert!(
        row.starts_with(&id[..12]) && row.ends_with("web") && row.contains("Created"),
        "{row}"
    );
    let out = berth(&d.host, &["ps", "-aq"]).await;
    assert_eq!(text(&out.stdout).trim(), &id[..12]);

    let out = berth(
        &d.host,
        &[
            "inspect",
            "--format",
            "{{.Name}} {{.HostConfig.Memory}} {{json .Config.Cmd}}",
            "web",
        ],
    )
    .await;
    assert_eq!(text(&out.stdout).trim(), "/web 104857600 [\"echo\",\"hi\"]");
    let out = berth(&d.host, &["inspect", "web"]).await;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["Id"], id.as_str());
    let out = berth(&d.host, &["inspect", "ghost"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("No such object: ghost"));

    // docker's create reports the engine's error as it is, and exits 1.
    let out = berth(&d.host, &["create", "--name", "web", "busybox"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr)
        .starts_with("Error response from daemon: Conflict. The container name \"/web\""));
    let out = berth(&d.host, &["rm", "web"]).await;
    assert!(out.status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn run_attaches_starts_and_returns_the_exit_code() {
    let d = daemon().await;
    // The fake process prints on both streams and exits 3 (sh -c 'exit 3' style).
    d.fake.set_program(
        "*",
        "",
        Program {
            output: vec![
                berth_engine::manager::OutputChunk {
                    stream: berth_engine::manager::StdStream::Stdout,
                    data: bytes::Bytes::from_static(b"hello world\n"),
                },
                berth_engine::manager::OutputChunk {
                    stream: berth_engine::manager::StdStream::Stderr,
                    data: bytes::Bytes::from_static(b"oops\n"),
                },
            ],
            echo_stdin: false,
            exit_code: 3,
        },
    );
    let out = berth(
        &d.host,
        &["run", "--name", "job", "busybox", "sh", "-c", "exit 3"],
    )
    .await;
    assert_eq!(text(&out.stdout), "hello world\n");
    assert_eq!(text(&out.stderr), "oops\n");
    assert_eq!(out.status.code(), Some(3));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_daemon_is_explained() {
    let out = berth("unix:///nonexistent/berth.sock", &["ps"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim(),
        "berth: cannot reach berthd at unix:///nonexistent/berth.sock: is it running? (sudo systemctl start berthd)"
    );
    let out = berth("unix:///nonexistent/berth.sock", &["run", "busybox"]).await;
    assert_eq!(out.status.code(), Some(125));
}
