//! The container endpoints beyond the life cycle (pause, unpause, update, restart,
//! changes, export, stats, prune) over a real unix socket with the fake manager
//! behind berthd: no kernel state, no root needed.

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_engine::engine::{Engine, EngineConfig};
use berth_engine::manager::fake::FakeManager;
use berth_engine::manager::{Change, Container, TaskStatus};
use berth_engine::server;
use berth_engine::spec::HostFacts;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

struct Daemon {
    _dir: tempfile::TempDir,
    sock: PathBuf,
    fake: Arc<FakeManager>,
    engine: Arc<Engine>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn daemon() -> Daemon {
    daemon_with(|_| {}).await
}

/// A daemon whose fake manager `prepare` fills before berthd starts.
async fn daemon_with(prepare: impl FnOnce(&FakeManager)) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("berth.sock");
    let fake = Arc::new(FakeManager::new());
    prepare(&fake);
    fake.add_image(
        "sha256:1111222233334444555566667777888899990000aaaabbbbccccddddeeeeffff",
        &["busybox", "busybox:latest"],
        json!({"config": {"Cmd": ["sh"]}}),
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
    engine.start_link();
    let listener = server::bind(&sock).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(server::serve(listener, engine.clone(), async {
        let _ = rx.await;
    }));
    Daemon {
        _dir: dir,
        sock,
        fake,
        engine,
        _stop: tx,
    }
}

/// (status, body), chunked bodies decoded.
async fn request(sock: &Path, method: &str, path: &str, body: &str) -> (u16, Vec<u8>) {
    let mut s = UnixStream::connect(sock).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = vec![];
    s.read_to_end(&mut raw).await.unwrap();
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut b = &raw[end + 4..];
    if !head.contains("transfer-encoding: chunked") {
        return (status, b.to_vec());
    }
    let mut out = vec![];
    while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(std::str::from_utf8(&b[..i]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + n]);
        b = &b[i + 2 + n + 2..];
    }
    (status, out)
}

async fn json_of(sock: &Path, method: &str, path: &str, body: &str) -> (u16, Value) {
    let (status, b) = request(sock, method, path, body).await;
    let v = serde_json::from_slice(&b).unwrap_or(Value::Null);
    (status, v)
}

async fn run(d: &Daemon, name: &str) -> String {
    let (status, v) = json_of(
        &d.sock,
        "POST",
        &format!("/containers/create?name={name}"),
        r#"{"Image":"busybox","Cmd":["sleep","9"],"HostConfig":{"Memory":104857600}}"#,
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let (status, _) = request(&d.sock, "POST", &format!("/containers/{name}/start"), "").await;
    assert_eq!(status, 204);
    v["Id"].as_str().unwrap().to_string()
}

/// The container list's `State` and `Status` of `name`.
async fn listed_state(d: &Daemon, name: &str) -> (String, String) {
    let (_, l) = json_of(&d.sock, "GET", "/containers/json?all=1", "").await;
    let row = l
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["Names"][0] == format!("/{name}"))
        .cloned()
        .unwrap();
    (
        row["State"].as_str().unwrap().to_string(),
        row["Status"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn a_listed_status_moves_on_while_nothing_else_changes() {
    let d = daemon().await;
    run(&d, "tick").await;
    // The same list again and again is one answer kept (see `list_rows`) until
    // a Status text in it would read differently.
    let (_, first) = listed_state(&d, "tick").await;
    assert!(first.starts_with("Up "), "{first}");
    let mut now = first.clone();
    // It reads differently within a second or two ("Less than a second", "1
    // second", "2 seconds"...).
    for _ in 0..60 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        now = listed_state(&d, "tick").await.1;
        if now != first {
            break;
        }
    }
    assert_ne!(now, first);
    assert!(
        now.starts_with("Up ") && (now.ends_with(" second") || now.ends_with(" seconds")),
        "{now}"
    );
    // And both kinds of list, running only and all, show a new container.
    run(&d, "tock").await;
    for path in ["/containers/json", "/containers/json?all=1"] {
        let (_, l) = json_of(&d.sock, "GET", path, "").await;
        assert_eq!(l.as_array().map(Vec::len), Some(2), "{path}: {l}");
    }
}

/// The names in `path`'s container list, in its order.
async fn listed_names(d: &Daemon, path: &str) -> Vec<String> {
    let (_, l) = json_of(&d.sock, "GET", path, "").await;
    l.as_array()
        .unwrap()
        .iter()
        .map(|c| c["Names"][0].as_str().unwrap().to_string())
        .collect()
}

/// A request (method, path, what a create adds to its body), its status, then
/// what `ps` and `ps -a` list.
type ListStep<'a> = (&'a str, &'a str, &'a str, u16, &'a [&'a str], &'a [&'a str]);

#[tokio::test]
async fn a_kept_list_outlives_only_containers_it_does_not_show() {
    let d = daemon().await;
    let steps: &[ListStep] = &[
        (
            "POST",
            "/containers/create?name=seen",
            "",
            201,
            &[],
            &["/seen"],
        ),
        (
            "POST",
            "/containers/seen/start",
            "",
            204,
            &["/seen"],
            &["/seen"],
        ),
        // Created, not started: only the list of all shows it.
        (
            "POST",
            "/containers/create?name=later",
            "",
            201,
            &["/seen"],
            &["/later", "/seen"],
        ),
        // One that came and went between two lists leaves both as they were.
        (
            "POST",
            "/containers/create?name=brief",
            "",
            201,
            &["/seen"],
            &[],
        ),
        (
            "POST",
            "/containers/brief/start",
            "",
            204,
            &["/brief", "/seen"],
            &[],
        ),
        (
            "DELETE",
            "/containers/brief?force=1",
            "",
            204,
            &["/seen"],
            &["/later", "/seen"],
        ),
        // Started, it is shown; a shown one renamed or stopped is shown so.
        (
            "POST",
            "/containers/later/start",
            "",
            204,
            &["/later", "/seen"],
            &[],
        ),
        (
            "POST",
            "/containers/seen/rename?name=seen2",
            "",
            204,
            &["/later", "/seen2"],
            &[],
        ),
        (
            "POST",
            "/containers/seen2/stop?t=0",
            "",
            204,
            &["/later"],
            &["/later", "/seen2"],
        ),
        // Without a network, a stop changes the record alone.
        (
            "POST",
            "/containers/create?name=alone",
            r#"{"HostConfig":{"NetworkMode":"none"}}"#,
            201,
            &["/later"],
            &[],
        ),
        (
            "POST",
            "/containers/alone/start",
            "",
            204,
            &["/alone", "/later"],
            &[],
        ),
        (
            "POST",
            "/containers/alone/stop?t=0",
            "",
            204,
            &["/later"],
            &[],
        ),
    ];
    for (method, path, extra, status, running, all) in steps {
        let body = if path.contains("/create") {
            let mut b = json!({"Image": "busybox", "Cmd": ["sleep", "9"]});
            if let Ok(Value::Object(more)) = serde_json::from_str(extra) {
                b.as_object_mut().unwrap().extend(more);
            }
            b.to_string()
        } else {
            String::new()
        };
        let (got, answer) = request(&d.sock, method, path, &body).await;
        assert_eq!(got, *status, "{path}: {}", String::from_utf8_lossy(&answer));
        assert_eq!(
            listed_names(&d, "/containers/json").await,
            *running,
            "after {path}"
        );
        // An empty expectation: `ps -a` not looked at after this step.
        if !all.is_empty() {
            assert_eq!(
                listed_names(&d, "/containers/json?all=1").await,
                *all,
                "after {path}"
            );
        }
    }
}

#[tokio::test]
async fn pause_and_unpause_follow_the_task() {
    let d = daemon().await;
    let id = run(&d, "pp").await;
    // Listed before the change, so that a row kept from this listing would show.
    assert_eq!(listed_state(&d, "pp").await.0, "running");
    assert_eq!(
        request(&d.sock, "POST", "/containers/pp/pause", "").await.0,
        204
    );
    assert_eq!(d.fake.task_status(&id), Some(TaskStatus::Paused));
    let (_, v) = json_of(&d.sock, "GET", "/containers/pp/json", "").await;
    assert_eq!(v["State"]["Status"], "paused");
    assert_eq!(v["State"]["Paused"], true);
    let (state, status) = listed_state(&d, "pp").await;
    assert_eq!(state, "paused");
    assert!(status.ends_with("(Paused)"), "{status}");
    let (status, v) = json_of(&d.sock, "POST", "/containers/pp/pause", "").await;
    assert_eq!(status, 409);
    assert!(v["message"]
        .as_str()
        .unwrap()
        .ends_with("is already paused"));
    assert_eq!(
        request(&d.sock, "POST", "/containers/pp/unpause", "")
            .await
            .0,
        204
    );
    assert_eq!(d.fake.task_status(&id), Some(TaskStatus::Running));
    assert_eq!(listed_state(&d, "pp").await.0, "running");
    assert_eq!(
        request(&d.sock, "POST", "/containers/pp/unpause", "")
            .await
            .0,
        409
    );
    assert_eq!(
        request(&d.sock, "POST", "/containers/nope/pause", "")
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn update_sends_the_new_resources_and_keeps_them() {
    let d = daemon().await;
    let id = run(&d, "uu").await;
    let (status, v) = json_of(
        &d.sock,
        "POST",
        "/containers/uu/update",
        r#"{"Memory":209715200,"MemorySwap":0,"CpuShares":0,"PidsLimit":50}"#,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["Warnings"], json!([]));
    let updates = d.fake.updates();
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].0, id);
    assert_eq!(updates[0].1["memory"]["limit"], 209715200);
    assert_eq!(updates[0].1["pids"]["limit"], 50);
    let (_, v) = json_of(&d.sock, "GET", "/containers/uu/json", "").await;
    assert_eq!(v["HostConfig"]["Memory"], 209715200);
    assert_eq!(v["HostConfig"]["PidsLimit"], 50);
    let (status, _) = json_of(
        &d.sock,
        "POST",
        "/containers/uu/update",
        r#"{"Memory":"x"}"#,
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = json_of(&d.sock, "POST", "/containers/uu/update", "{bad").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn restart_starts_a_new_task() {
    let d = daemon().await;
    run(&d, "rr").await;
    let (_, before) = json_of(&d.sock, "GET", "/containers/rr/json", "").await;
    let (status, _) = request(&d.sock, "POST", "/containers/rr/restart?t=0", "").await;
    assert_eq!(status, 204);
    let (_, after) = json_of(&d.sock, "GET", "/containers/rr/json", "").await;
    assert_eq!(after["State"]["Running"], true);
    assert_ne!(before["State"]["Pid"], after["State"]["Pid"]);
}

#[tokio::test]
async fn a_start_deletes_a_stopped_task_left_in_its_way() {
    let d = daemon().await;
    let (status, v) = json_of(
        &d.sock,
        "POST",
        "/containers/create?name=lt",
        r#"{"Image":"busybox","Cmd":["sleep","9"]}"#,
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let id = v["Id"].as_str().unwrap().to_string();
    d.fake.leave_stopped_task(&id);
    let (status, body) = request(&d.sock, "POST", "/containers/lt/start", "").await;
    assert_eq!(status, 204, "{}", String::from_utf8_lossy(&body));
    assert_eq!(d.fake.task_status(&id), Some(TaskStatus::Running));
    let (_, after) = json_of(&d.sock, "GET", "/containers/lt/json", "").await;
    assert_eq!(after["State"]["Running"], true);
}

#[tokio::test]
async fn manager_containers_a_create_left_unrecorded_are_deleted() {
    let marked = |id: &str, created_at: String| Container {
        id: id.to_string(),
        labels: [(
            berth_engine::lifecycle::create::ENGINE_LABEL.to_string(),
            "true".to_string(),
        )]
        .into(),
        created_at,
        ..Container::default()
    };
    let old = "2020-01-01T00:00:00.000000000Z".to_string();
    let (cut, other, ongoing) = ("c".repeat(64), "d".repeat(64), "e".repeat(64));
    let d = daemon_with(|fake| {
        // An earlier berthd's create cut short between the two commits: deleted.
        fake.add_container(marked(&cut, old.clone()));
        // Not berthd's (a build's, CRI's): left alone.
        fake.add_container(Container {
            id: other.clone(),
            created_at: old.clone(),
            ..Container::default()
        });
        // This berthd's, between its two commits: left alone.
        let later = chrono::Utc::now() + chrono::Duration::hours(1);
        fake.add_container(marked(
            &ongoing,
            later.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        ));
    })
    .await;
    // Recorded: left alone.
    let kept = run(&d, "kept").await;
    // The link's first reconcile looks for them.
    for _ in 0..1000 {
        if !d.fake.container_ids().contains(&cut) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let ids = d.fake.container_ids();
    assert!(!ids.contains(&cut), "{ids:?}");
    for id in [&other, &ongoing, &kept] {
        assert!(ids.contains(id), "{id} in {ids:?}");
    }
    // Only an earlier berthd can have left any: later reconciles do not look again.
    let late = "f".repeat(64);
    d.fake.add_container(marked(&late, old));
    berth_engine::link::reconcile(&d.engine).await.unwrap();
    assert!(d.fake.container_ids().contains(&late));
}

/// A removal answers once the engine's record is gone; the manager's container
/// follows. One the manager cannot delete then is deleted by a later reconcile,
/// and the removal still answered as done (the container is gone for clients).
#[tokio::test]
async fn a_removal_the_manager_cannot_finish_is_finished_later() {
    let d = daemon().await;
    let create = || async {
        let (status, v) = json_of(
            &d.sock,
            "POST",
            "/containers/create?name=late",
            r#"{"Image":"busybox","Cmd":["true"]}"#,
        )
        .await;
        assert_eq!(status, 201, "{v}");
        v["Id"].as_str().unwrap().to_string()
    };
    let id = create().await;
    d.fake.fail_container_deletes(true);
    assert_eq!(
        request(&d.sock, "DELETE", "/containers/late", "").await.0,
        204
    );
    assert_eq!(
        request(&d.sock, "GET", "/containers/late/json", "").await.0,
        404
    );
    // The name is free again at once.
    create().await;
    d.engine.removals_settled().await;
    assert!(d.fake.container_ids().contains(&id));
    d.fake.fail_container_deletes(false);
    berth_engine::link::reconcile(&d.engine).await.unwrap();
    let ids = d.fake.container_ids();
    assert!(!ids.contains(&id), "{ids:?}");
    assert_eq!(ids.len(), 1, "{ids:?}");
}

#[tokio::test]
async fn a_start_is_on_disk_and_one_cut_short_gets_its_pid_back() {
    let d = daemon().await;
    let id = run(&d, "ahead").await;
    let pid = d.engine.store.get(&id).unwrap().state.pid.unwrap();
    assert!(pid > 0);
    // The record written ahead of the task, then its pid: both on disk.
    let on_disk = || -> serde_json::Value {
        let path = d.engine.store.container_dir(&id).join("config.v2.json");
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };
    assert_eq!(on_disk()["State"]["Running"], true);
    assert_eq!(on_disk()["State"]["Pid"], pid);
    // What berthd finds after dying between the two writes: running, no pid yet.
    d.engine
        .store
        .update_volatile(&id, |r| r.state.pid = Some(0))
        .unwrap();
    berth_engine::link::reconcile(&d.engine).await.unwrap();
    let rec = d.engine.store.get(&id).unwrap();
    assert_eq!(rec.state.running, Some(true));
    assert_eq!(rec.state.pid, Some(pid));
    assert_eq!(on_disk()["State"]["Pid"], pid);

    // A start the manager never heard of: the record written ahead is taken back.
    let (status, v) = json_of(
        &d.sock,
        "POST",
        "/containers/create?name=notyet",
        r#"{"Image":"busybox","Cmd":["true"]}"#,
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let other = v["Id"].as_str().unwrap().to_string();
    d.fake.fail_task_creates_unreachable(true);
    let (status, _) = request(&d.sock, "POST", "/containers/notyet/start", "").await;
    assert_eq!(status, 500);
    let path = d.engine.store.container_dir(&other).join("config.v2.json");
    let disk: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    assert_eq!(disk["State"]["Status"], "created", "{disk}");
    assert_eq!(disk["State"]["Running"], false, "{disk}");
    let rec = d.engine.store.get(&other).unwrap();
    assert_eq!(rec.state.running, Some(false));
}

#[tokio::test]
async fn changes_export_and_stats_in_dockers_shapes() {
    let d = daemon().await;
    let id = run(&d, "cc").await;
    let ch = |kind: &str, path: &str| Change {
        kind: kind.into(),
        path: path.into(),
    };
    d.fake.set_changes(
        &id,
        vec![
            ch("C", "/etc"),
            ch("A", "/etc/hosts"),
            ch("A", "/test"),
            ch("D", "/tmp"),
        ],
    );
    let (status, v) = json_of(&d.sock, "GET", "/containers/cc/changes", "").await;
    assert_eq!(status, 200);
    assert_eq!(
        v,
        json!([{"Path": "/test", "Kind": 1}, {"Path": "/tmp", "Kind": 2}])
    );
    let tar: Vec<u8> = (0..100u8).collect();
    d.fake.set_export(&id, tar.clone());
    let (status, body) = request(&d.sock, "GET", "/containers/cc/export", "").await;
    assert_eq!(status, 200);
    assert_eq!(body, tar);
    d.fake.set_stats(
        json!({"memory": {"usage": {"limit": 104857600, "usage": 4096}},
                            "pids": {"current": 1}}),
    );
    let (status, v) = json_of(
        &d.sock,
        "GET",
        "/containers/cc/stats?stream=0&one-shot=1",
        "",
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["memory_stats"]["usage"], 4096);
    assert_eq!(v["memory_stats"]["limit"], 104857600);
    assert_eq!(v["pids_stats"]["current"], 1);
    assert_eq!(v["name"], "/cc");
    assert_eq!(v["id"], id.as_str());
    // A streamed answer is one JSON object per line; read the first and hang up.
    let mut s = UnixStream::connect(&d.sock).await.unwrap();
    s.write_all(b"GET /containers/cc/stats HTTP/1.1\r\nHost: docker\r\n\r\n")
        .await
        .unwrap();
    let mut got = vec![];
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("\"memory_stats\"") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "the stream ended early");
        got.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn prune_removes_what_is_not_running() {
    let d = daemon().await;
    run(&d, "live").await;
    let (status, v) = json_of(
        &d.sock,
        "POST",
        "/containers/create?name=idle",
        r#"{"Image":"busybox","Labels":{"keep":"1"}}"#,
    )
    .await;
    assert_eq!(status, 201);
    let idle = v["Id"].as_str().unwrap().to_string();
    let (_, v) = json_of(
        &d.sock,
        "POST",
        "/containers/create?name=old",
        r#"{"Image":"busybox"}"#,
    )
    .await;
    let old = v["Id"].as_str().unwrap().to_string();
    let filters = "%7B%22label!%22%3A%5B%22keep%22%5D%7D"; // {"label!":["keep"]}
    let (status, v) = json_of(
        &d.sock,
        "POST",
        &format!("/containers/prune?filters={filters}"),
        "",
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["ContainersDeleted"], json!([old]));
    let (_, v) = json_of(&d.sock, "POST", "/containers/prune", "").await;
    assert_eq!(v["ContainersDeleted"], json!([idle]));
    assert_eq!(v["SpaceReclaimed"], 0);
    let (_, v) = json_of(&d.sock, "GET", "/containers/json?all=1", "").await;
    assert_eq!(v.as_array().unwrap().len(), 1);
    let (status, _) = json_of(
        &d.sock,
        "POST",
        "/containers/prune?filters=%7B%22x%22%3A%5B%221%22%5D%7D",
        "",
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn list_needs_every_label_filter_to_match() {
    let d = daemon().await;
    for (name, labels) in [
        ("svc", r#"{"p":"x","oneoff":"False"}"#),
        ("once", r#"{"p":"x","oneoff":"True"}"#),
        ("other", r#"{"p":"y","oneoff":"False"}"#),
    ] {
        let (status, v) = json_of(
            &d.sock,
            "POST",
            &format!("/containers/create?name={name}"),
            &format!(r#"{{"Image":"busybox","Labels":{labels}}}"#),
        )
        .await;
        assert_eq!(status, 201, "{v}");
    }
    let names = |v: &Value| -> Vec<String> {
        let mut n: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["Names"][0].as_str().unwrap().to_string())
            .collect();
        n.sort();
        n
    };
    // {"label":["p=x","oneoff=False"]}: both, as compose asks for its services.
    let both = "%7B%22label%22%3A%5B%22p%3Dx%22%2C%22oneoff%3DFalse%22%5D%7D";
    let (status, v) = json_of(
        &d.sock,
        "GET",
        &format!("/containers/json?all=1&filters={both}"),
        "",
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(names(&v), vec!["/svc"]);
    // {"label":["p"]}: a key alone matches any value.
    let key = "%7B%22label%22%3A%5B%22p%22%5D%7D";
    let (_, v) = json_of(
        &d.sock,
        "GET",
        &format!("/containers/json?all=1&filters={key}"),
        "",
    )
    .await;
    assert_eq!(names(&v), vec!["/once", "/other", "/svc"]);
}

/// `LogConfig` and `Runtime` at create, as docker-py sees them: an empty log type is
/// json-file, an unknown driver is dockerd's 400, a docker driver berth lacks is 501;
/// the runtime defaults to berth-runtime, runc is taken when installed, others are 400.
#[tokio::test]
async fn create_checks_log_driver_and_runtime() {
    let d = daemon().await;
    let create = |hc: &'static str| {
        let sock = d.sock.clone();
        async move {
            json_of(
                &sock,
                "POST",
                "/containers/create",
                &format!(r#"{{"Image":"busybox","Cmd":["true"],"HostConfig":{hc}}}"#),
            )
            .await
        }
    };
    let (status, v) = create(r#"{"LogConfig":{"Type":"","Config":{"max-file":"100"}}}"#).await;
    assert_eq!(status, 201, "{v}");
    let id = v["Id"].as_str().unwrap().to_string();
    let (_, info) = json_of(&d.sock, "GET", &format!("/containers/{id}/json"), "").await;
    assert_eq!(info["HostConfig"]["LogConfig"]["Type"], "json-file");
    assert_eq!(info["HostConfig"]["LogConfig"]["Config"]["max-file"], "100");
    assert_eq!(info["HostConfig"]["Runtime"], "berth-runtime");
    // No NetworkMode sent: dockerd's `default`, so templates can read it.
    assert_eq!(info["HostConfig"]["NetworkMode"], "default");

    let (status, v) = create(r#"{"LogConfig":{"Type":"none"}}"#).await;
    assert_eq!(status, 201, "{v}");
    // No log kept, none to read: dockerd's answers.
    let none = v["Id"].as_str().unwrap().to_string();
    let (_, info) = json_of(&d.sock, "GET", &format!("/containers/{none}/json"), "").await;
    assert_eq!(info["LogPath"], "");
    let (status, v) = json_of(
        &d.sock,
        "GET",
        &format!("/containers/{none}/logs?stdout=1"),
        "",
    )
    .await;
    assert_eq!(status, 501);
    assert_eq!(
        v["message"],
        "configured logging driver does not support reading"
    );
    let (status, v) = create(r#"{"LogConfig":{"Type":"asdf","Config":{}}}"#).await;
    assert_eq!(status, 400);
    assert_eq!(
        v["message"],
        "logger: no log driver named 'asdf' is registered"
    );
    let (status, _) = create(r#"{"LogConfig":{"Type":"syslog"}}"#).await;
    assert_eq!(status, 501);

    let (status, v) = create(r#"{"Runtime":"nope"}"#).await;
    assert_eq!(status, 400);
    assert_eq!(v["message"], "Unknown runtime specified nope");
    let runc = berth_engine::lifecycle::create::on_path("runc");
    let (status, v) = create(r#"{"Runtime":"runc"}"#).await;
    if runc {
        assert_eq!(status, 201, "{v}");
        let id = v["Id"].as_str().unwrap().to_string();
        let (_, info) = json_of(&d.sock, "GET", &format!("/containers/{id}/json"), "").await;
        assert_eq!(info["HostConfig"]["Runtime"], "runc");
        let (_, sys) = json_of(&d.sock, "GET", "/info", "").await;
        assert!(sys["Runtimes"]["runc"].is_object(), "{sys}");
    } else {
        assert_eq!(status, 400);
    }
    // Nothing is left of the refused ones.
    let (_, list) = json_of(&d.sock, "GET", "/containers/json?all=1", "").await;
    assert_eq!(list.as_array().unwrap().len(), if runc { 3 } else { 2 });
}

/// What the engine does itself publishes dockerd's events, in dockerd's order:
/// an exec's create and start (the command in the action), a rename (the old
/// name in `oldName`), an update, the kill of a restart's stop (its signal), the
/// stop, the restart, a kill. Once, rename, update, kill, stop and restart
/// published nothing.
#[tokio::test]
async fn engine_actions_publish_dockers_events() {
    let d = daemon().await;
    let id = run(&d, "ev").await;
    let (status, v) = json_of(
        &d.sock,
        "POST",
        "/containers/ev/exec",
        r#"{"Cmd":["sh","-c","true"]}"#,
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let exec = v["Id"].as_str().unwrap().to_string();
    let post = |path: String, body: &'static str| {
        let sock = d.sock.clone();
        async move { request(&sock, "POST", &path, body).await.0 }
    };
    assert_eq!(
        post(format!("/exec/{exec}/start"), r#"{"Detach":true}"#).await,
        200
    );
    assert_eq!(post("/containers/ev/rename?name=ev2".into(), "").await, 204);
    assert_eq!(
        post("/containers/ev2/update".into(), r#"{"CpuShares":512}"#).await,
        200
    );
    assert_eq!(post("/containers/ev2/restart?t=1".into(), "").await, 204);
    assert_eq!(
        post("/containers/ev2/kill?signal=SIGUSR1".into(), "").await,
        204
    );
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let (status, body) = request(
        &d.sock,
        "GET",
        &format!("/events?since=0&until={until}"),
        "",
    )
    .await;
    assert_eq!(status, 200);
    let events: Vec<Value> = String::from_utf8_lossy(&body)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|e: &Value| e["Actor"]["ID"] == id.as_str())
        .collect();
    let ours = [
        "exec_create: sh -c true",
        "exec_start: sh -c true",
        "rename",
        "update",
        "kill",
        "stop",
        "restart",
    ];
    let seen: Vec<(String, Value)> = events
        .iter()
        .filter(|e| ours.contains(&e["Action"].as_str().unwrap_or("")))
        .map(|e| {
            (
                e["Action"].as_str().unwrap().to_string(),
                e["Actor"]["Attributes"].clone(),
            )
        })
        .collect();
    let actions: Vec<&str> = seen.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(
        actions,
        [
            "exec_create: sh -c true",
            "exec_start: sh -c true",
            "rename",
            "update",
            "kill",
            "stop",
            "restart",
            "kill"
        ],
        "{events:?}"
    );
    assert_eq!(seen[0].1["execID"], exec.as_str());
    assert_eq!(seen[2].1["oldName"], "/ev");
    assert_eq!(seen[2].1["name"], "ev2");
    assert_eq!(seen[4].1["signal"], "15");
    assert_eq!(seen[7].1["signal"], "10");
}

/// `?size=1` on the list and on inspect, and `system df`, carry the writable
/// layer's size (they said 0 for every container once).
#[tokio::test]
async fn sizes_are_the_writable_layers() {
    let d = daemon().await;
    let id = run(&d, "sz").await;
    d.fake.set_usage(&id, 4096);
    let (_, list) = json_of(&d.sock, "GET", "/containers/json?size=1", "").await;
    assert_eq!(list[0]["SizeRw"], 4096, "{list}");
    assert!(list[0]["SizeRootFs"].as_i64().unwrap() >= 4096, "{list}");
    let (_, plain) = json_of(&d.sock, "GET", "/containers/json", "").await;
    assert!(plain[0].get("SizeRw").is_none(), "{plain}");
    let (_, info) = json_of(&d.sock, "GET", "/containers/sz/json?size=1", "").await;
    assert_eq!(info["SizeRw"], 4096, "{info}");
    let (_, df) = json_of(&d.sock, "GET", "/system/df", "").await;
    assert_eq!(df["Containers"][0]["SizeRw"], 4096, "{df}");
}

/// `before` and `since` name a container: the list is of those made before or
/// after it, stopped ones too (they were refused as unknown filters).
#[tokio::test]
async fn before_and_since_filters() {
    let d = daemon().await;
    for name in ["first", "second", "third"] {
        let (status, v) = json_of(
            &d.sock,
            "POST",
            &format!("/containers/create?name={name}"),
            r#"{"Image":"busybox","Cmd":["true"]}"#,
        )
        .await;
        assert_eq!(status, 201, "{v}");
    }
    let names = |filter: &'static str| {
        let sock = d.sock.clone();
        async move {
            let q = filter
                .replace('"', "%22")
                .replace('{', "%7B")
                .replace('}', "%7D");
            let (status, v) =
                json_of(&sock, "GET", &format!("/containers/json?filters={q}"), "").await;
            assert_eq!(status, 200, "{v}");
            v.as_array()
                .unwrap()
                .iter()
                .map(|c| c["Names"][0].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(names(r#"{"before":["second"]}"#).await, ["/first"]);
    assert_eq!(names(r#"{"since":["second"]}"#).await, ["/third"]);
    let (status, _) = request(
        &d.sock,
        "GET",
        "/containers/json?filters=%7B%22before%22%3A%5B%22nope%22%5D%7D",
        "",
    )
    .await;
    assert_eq!(status, 404);
}
