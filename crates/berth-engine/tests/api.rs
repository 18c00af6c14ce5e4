//! berthd's HTTP API over a real unix socket, with the fake manager behind it: no
//! kernel state, no root needed. Requests are written by hand so the tests see exactly
//! the bytes a docker client would.

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fake_daemon;

use std::path::Path;

use berth_engine::engine::Engine;
use berth_engine::manager::fake::Program;
use berth_engine::spec::HostFacts;
use berth_engine::stream::FrameDecoder;
use fake_daemon::{daemon, request, Daemon};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

#[tokio::test]
async fn ping_get_and_head_carry_the_negotiation_headers() {
    let d = daemon().await;
    let r = request(&d.sock, "GET", "/_ping", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"OK");
    assert_eq!(r.header("Api-Version"), Some("1.47"));
    assert_eq!(r.header("Docker-Experimental"), Some("false"));
    assert_eq!(r.header("Ostype"), Some("linux"));
    assert_eq!(r.header("Builder-Version"), Some("1"));
    assert_eq!(
        r.header("Cache-Control"),
        Some("no-cache, no-store, must-revalidate")
    );
    assert_eq!(r.header("Pragma"), Some("no-cache"));
    let r = request(&d.sock, "HEAD", "/v1.41/_ping", None).await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert_eq!(r.header("Api-Version"), Some("1.47"));
}

#[tokio::test]
async fn version_info_and_errors() {
    let d = daemon().await;
    let v = request(&d.sock, "GET", "/version", None).await.json();
    assert_eq!(v["ApiVersion"], "1.47");
    assert_eq!(v["MinAPIVersion"], "1.24");
    assert_eq!(v["Components"][0]["Details"]["ApiVersion"], "1.47");
    // `docker version`'s Engine part prints these; docker-py's test reads GoVersion.
    assert!(v["Components"][0]["Details"]["GoVersion"].is_string());
    assert!(v["Components"][0]["Details"]["BuildTime"].is_string());
    assert!(v["GoVersion"].is_string());
    assert_eq!(v["Components"][1]["Name"], "berth-manager");
    let i = request(&d.sock, "GET", "/v1.47/info", None).await.json();
    assert_eq!(i["Driver"], "overlay2");
    assert_eq!(i["Images"], 1);
    assert_eq!(i["Swarm"]["LocalNodeState"], "inactive");
    assert_eq!(i["Warnings"], serde_json::json!([]));

    let r = request(&d.sock, "GET", "/v1.99/info", None).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["message"],
        "client version 1.99 is too new. Maximum supported API version is 1.47"
    );
    let r = request(&d.sock, "GET", "/nothing/here", None).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json(), serde_json::json!({"message": "page not found"}));
    let r = request(&d.sock, "POST", "/swarm/leave?force=1", None).await;
    assert_eq!(r.status, 503);
    let r = request(&d.sock, "GET", "/containers/nope/json", None).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["message"], "No such container: nope");
    let r = request(&d.sock, "POST", "/containers/create", Some("{not json")).await;
    assert_eq!(r.status, 400);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .starts_with("invalid JSON"));
    // A network needs a name.
    let r = request(&d.sock, "POST", "/networks/create", Some("{}")).await;
    assert_eq!(r.status, 400);
}

async fn create(d: &Daemon, name: &str, body: serde_json::Value) -> String {
    let r = request(
        &d.sock,
        "POST",
        &format!("/v1.47/containers/create?name={name}"),
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    r.json()["Id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn create_inspect_list_conflict_and_remove() {
    let d = daemon().await;
    let id = create(
        &d,
        "web",
        serde_json::json!({"Image": "busybox", "Cmd": ["echo", "hi"], "Labels": {"app": "x"}}),
    )
    .await;
    assert_eq!(id.len(), 64);
    assert!(d.fake.container_ids().contains(&id));

    let i = request(&d.sock, "GET", "/containers/web/json", None)
        .await
        .json();
    assert_eq!(i["Id"], id.as_str());
    assert_eq!(i["Name"], "/web");
    assert_eq!(i["Path"], "echo");
    assert_eq!(i["Args"], serde_json::json!(["hi"]));
    assert_eq!(i["State"]["Status"], "created");
    assert_eq!(i["Config"]["Hostname"], &id[..12]);
    assert_eq!(i["Config"]["Env"][0], "PATH=/usr/sbin:/usr/bin:/sbin:/bin");
    assert_eq!(i["GraphDriver"]["Name"], "overlay2");
    assert!(i["GraphDriver"]["Data"]["UpperDir"]
        .as_str()
        .unwrap()
        .contains(&id));
    let dir = d.engine.store.container_dir(&id);
    assert!(
        dir.join("hostname").is_file()
            && dir.join("hosts").is_file()
            && dir.join("resolv.conf").is_file()
    );

    // a short id prefix resolves too
    let r = request(
        &d.sock,
        "GET",
        &format!("/containers/{}/json", &id[..6]),
        None,
    )
    .await;
    assert_eq!(r.status, 200);

    let r = request(
        &d.sock,
        "POST",
        "/containers/create?name=web",
        Some(r#"{"Image":"busybox"}"#),
    )
    .await;
    assert_eq!(r.status, 409);
    assert_eq!(
        r.json()["message"],
        format!("Conflict. The container name \"/web\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name.")
    );
    let r = request(
        &d.sock,
        "POST",
        "/containers/create",
        Some(r#"{"Image":"nosuch"}"#),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["message"], "No such image: nosuch");
    let r = request(
        &d.sock,
        "POST",
        "/containers/create",
        Some(r#"{"Image":"busybox","HostConfig":{"Memory":1000}}"#),
    )
    .await;
    assert_eq!(r.status, 400);

    let running = request(&d.sock, "GET", "/containers/json", None)
        .await
        .json();
    assert_eq!(running, serde_json::json!([]));
    let all = request(&d.sock, "GET", "/containers/json?all=1", None)
        .await
        .json();
    assert_eq!(all[0]["Names"], serde_json::json!(["/web"]));
    assert_eq!(all[0]["Status"], "Created");
    let f = request(
        &d.sock,
        "GET",
        "/containers/json?all=1&filters=%7B%22label%22%3A%5B%22app%3Dy%22%5D%7D",
        None,
    )
    .await
    .json();
    assert_eq!(f, serde_json::json!([]));

    let r = request(
        &d.sock,
        "POST",
        &format!("/containers/{id}/rename?name=web2"),
        None,
    )
    .await;
    assert_eq!(r.status, 204);
    let r = request(&d.sock, "DELETE", "/containers/web2", None).await;
    assert_eq!(r.status, 204);
    assert!(!dir.exists());
    assert!(d.fake.container_ids().is_empty());
}

#[tokio::test]
async fn start_wait_stop_and_remove_running() {
    let d = daemon().await;
    let id = create(
        &d,
        "job",
        serde_json::json!({"Image": "busybox", "Cmd": ["sleep", "9"]}),
    )
    .await;
    // wait is sent before start by the docker CLI; its body comes at the exit
    let sock = d.sock.clone();
    let waiter = tokio::spawn(async move {
        request(
            &sock,
            "POST",
            "/containers/job/wait?condition=next-exit",
            None,
        )
        .await
    });
    let r = request(&d.sock, "POST", "/containers/job/start", None).await;
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    let i = request(&d.sock, "GET", "/containers/job/json", None)
        .await
        .json();
    assert_eq!(i["State"]["Running"], true);
    assert!(i["State"]["Pid"].as_i64().unwrap() > 0);
    assert_eq!(
        request(&d.sock, "POST", "/containers/job/start", None)
            .await
            .status,
        304
    );
    let r = request(&d.sock, "DELETE", "/containers/job", None).await;
    assert_eq!(r.status, 409);
    let list = request(&d.sock, "GET", "/containers/json", None)
        .await
        .json();
    assert!(list[0]["Status"].as_str().unwrap().starts_with("Up "));

    d.fake.exit(&id, "", 3);
    let w = waiter.await.unwrap();
    assert_eq!(w.status, 200);
    assert_eq!(w.json()["StatusCode"], 3);
    // the monitor records the exit
    for _ in 0..100 {
        if d.engine.store.get(&id).unwrap().state.running == Some(false) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let i = request(&d.sock, "GET", "/containers/job/json", None)
        .await
        .json();
    assert_eq!(i["State"]["Status"], "exited");
    assert_eq!(i["State"]["ExitCode"], 3);
    let w = request(&d.sock, "POST", "/containers/job/wait", None).await;
    assert_eq!(w.json()["StatusCode"], 3);
    let r = request(&d.sock, "POST", "/containers/job/kill", None).await;
    assert_eq!(r.status, 409);

    // restart, then stop: the fake dies of the signal (128+15)
    assert_eq!(
        request(&d.sock, "POST", "/containers/job/start", None)
            .await
            .status,
        204
    );
    let r = request(&d.sock, "POST", "/containers/job/stop?t=1", None).await;
    assert_eq!(r.status, 204);
    let i = request(&d.sock, "GET", "/containers/job/json", None)
        .await
        .json();
    assert_eq!(i["State"]["ExitCode"], 143);
    assert_eq!(
        request(&d.sock, "POST", "/containers/job/stop", None)
            .await
            .status,
        304
    );
    assert_eq!(
        request(&d.sock, "DELETE", "/containers/job?force=1", None)
            .await
            .status,
        204
    );
}

async fn hijack(sock: &Path, path: &str, body: &str, stdin: &[u8]) -> (String, Vec<u8>) {
    let mut s = UnixStream::connect(sock).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = vec![];
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    s.write_all(stdin).await.unwrap();
    // the docker CLI half-closes when its stdin ends
    s.shutdown().await.unwrap();
    let mut out = vec![];
    s.read_to_end(&mut out).await.unwrap();
    (String::from_utf8(head).unwrap(), out)
}

#[tokio::test]
async fn attach_hijacks_with_101_and_multiplexes_without_tty() {
    let d = daemon().await;
    let id = create(
        &d,
        "att",
        serde_json::json!({"Image": "busybox", "OpenStdin": true}),
    )
    .await;
    d.fake.set_program(
        &id,
        "",
        Program {
            output: vec![berth_engine::manager::OutputChunk {
                stream: berth_engine::manager::StdStream::Stderr,
                data: bytes::Bytes::from_static(b"warn\n"),
            }],
            echo_stdin: true,
            exit_code: 0,
        },
    );
    let (head, out) = hijack(
        &d.sock,
        "/v1.47/containers/att/attach?stream=1&stdin=1&stdout=1&stderr=1",
        "",
        b"abc\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.to_ascii_lowercase().contains("upgrade: tcp"));
    assert!(head.contains("application/vnd.docker.multiplexed-stream"));
    let mut dec = FrameDecoder::default();
    dec.push(&out);
    let mut frames = vec![];
    while let Some(f) = dec.next_frame().unwrap() {
        frames.push(f);
    }
    assert_eq!(frames[0], (2, bytes::Bytes::from_static(b"warn\n")));
    assert_eq!(frames[1], (1, bytes::Bytes::from_static(b"abc\n")));
}

#[tokio::test]
async fn exec_start_hijacks_raw_with_tty_and_reports_the_exit_code() {
    let d = daemon().await;
    let id = create(
        &d,
        "ex",
        serde_json::json!({"Image": "busybox", "Cmd": ["sleep", "99"]}),
    )
    .await;
    assert_eq!(
        request(&d.sock, "POST", "/containers/ex/start", None)
            .await
            .status,
        204
    );
    let r = request(
        &d.sock,
        "POST",
        "/containers/ex/exec",
        Some(r#"{"Cmd":["tty"],"Tty":true,"AttachStdout":true}"#),
    )
    .await;
    assert_eq!(r.status, 201);
    let eid = r.json()["Id"].as_str().unwrap().to_string();
    d.fake
        .set_program(&id, &eid, Program::prints("/dev/pts/0\r\n"));
    let (head, out) = hijack(
        &d.sock,
        &format!("/exec/{eid}/start"),
        r#"{"Detach":false,"Tty":true}"#,
        b"",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("application/vnd.docker.raw-stream"));
    assert_eq!(out, b"/dev/pts/0\r\n");
    let mut code = serde_json::Value::Null;
    for _ in 0..100 {
        let j = request(&d.sock, "GET", &format!("/exec/{eid}/json"), None)
            .await
            .json();
        if j["Running"] == false {
            code = j["ExitCode"].clone();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(code, 0);
    let r = request(&d.sock, "GET", "/exec/nope/json", None).await;
    assert_eq!(r.status, 404);
    d.fake.exit(&id, "", 0);
}

#[tokio::test]
async fn logs_are_framed_selected_and_tailed() {
    let d = daemon().await;
    let id = create(&d, "lg", serde_json::json!({"Image": "busybox"})).await;
    let rec = d.engine.store.get(&id).unwrap();
    let mut s = String::new();
    for (log, stream) in [("a\n", "stdout"), ("b\n", "stderr"), ("c\n", "stdout")] {
        s += &format!(
            "{}\n",
            serde_json::json!({"log": log, "stream": stream, "time": "2024-05-01T10:00:00.123Z"})
        );
    }
    std::fs::write(&rec.log_path, s).unwrap();
    let r = request(
        &d.sock,
        "GET",
        "/containers/lg/logs?stdout=1&stderr=1",
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let mut dec = FrameDecoder::default();
    dec.push(&r.body);
    let mut got = vec![];
    while let Some((k, p)) = dec.next_frame().unwrap() {
        got.push((k, String::from_utf8(p.to_vec()).unwrap()));
    }
    assert_eq!(
        got,
        vec![(1, "a\n".into()), (2, "b\n".into()), (1, "c\n".into())]
    );
    let r = request(
        &d.sock,
        "GET",
        "/containers/lg/logs?stderr=1&timestamps=1",
        None,
    )
    .await;
    assert_eq!(&r.body[8..], b"2024-05-01T10:00:00.123000000Z b\n");
    let r = request(&d.sock, "GET", "/containers/lg/logs?stdout=1&tail=1", None).await;
    assert_eq!(&r.body[8..], b"c\n");
    let r = request(&d.sock, "GET", "/containers/lg/logs", None).await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn the_store_survives_a_restart_of_the_engine() {
    let d = daemon().await;
    let id = create(&d, "keep", serde_json::json!({"Image": "busybox"})).await;
    let again = Engine::new(
        d.engine.config.clone(),
        d.fake.clone(),
        HostFacts::default(),
    )
    .unwrap();
    assert_eq!(again.store.resolve("keep").unwrap(), id);
}
