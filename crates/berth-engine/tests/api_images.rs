//! berthd's image, volume, events and disk-usage endpoints over a real unix socket,
//! with the fake manager behind it: the shapes and status codes docker clients see.
//! (The same harness as tests/api.rs.)

use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_engine::engine::{Engine, EngineConfig};
use berth_engine::manager::fake::FakeManager;
use berth_engine::server;
use berth_engine::spec::HostFacts;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

struct Daemon {
    _dir: tempfile::TempDir,
    sock: PathBuf,
    _fake: Arc<FakeManager>,
    _engine: Arc<Engine>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn daemon() -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("berth.sock");
    let fake = Arc::new(FakeManager::new());
    fake.add_image(
        "sha256:1111222233334444555566667777888899990000aaaabbbbccccddddeeeeffff",
        &["docker.io/library/busybox:latest", "busybox", "busybox:latest"],
        serde_json::json!({"config": {"Cmd": ["sh"], "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]}}),
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
            HostFacts {
                hostname: "testhost".into(),
                ..HostFacts::default()
            },
        )
        .unwrap(),
    );
    let listener = server::bind(&sock).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(server::serve(listener, engine.clone(), async {
        let _ = rx.await;
    }));
    Daemon {
        _dir: dir,
        sock,
        _fake: fake,
        _engine: engine,
        stop: Some(tx),
    }
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = vec![];
    loop {
        let Some(i) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(std::str::from_utf8(&b[..i]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + n]);
        b = &b[i + 2 + n + 2..];
    }
}

async fn request(sock: &Path, method: &str, path: &str, body: Option<&str>) -> Resp {
    let mut s = UnixStream::connect(sock).await.unwrap();
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = vec![];
    s.read_to_end(&mut raw).await.unwrap();
    parse(&raw)
}

fn parse(raw: &[u8]) -> Resp {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = std::str::from_utf8(&raw[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v == "chunked")
    {
        body = dechunk(&body);
    }
    Resp {
        status,
        headers,
        body,
    }
}

#[tokio::test]
async fn images_list_inspect_history_tag_and_delete() {
    let d = daemon().await;
    let r = request(&d.sock, "GET", "/v1.41/images/json", None).await;
    assert_eq!(r.status, 200);
    let list = r.json();
    assert_eq!(list[0]["RepoTags"][0], "busybox:latest");
    assert_eq!(list[0]["VirtualSize"], list[0]["Size"]);
    let r = request(&d.sock, "GET", "/v1.47/images/busybox:latest/json", None).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["Config"]["Cmd"][0], "sh");
    assert_eq!(v["GraphDriver"]["Name"], "overlay2");
    assert_eq!(v["RootFS"]["Type"], "layers");
    let r = request(&d.sock, "GET", "/v1.47/images/nope/json", None).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["message"], "No such image: nope");
    let r = request(&d.sock, "GET", "/v1.47/images/busybox:latest/history", None).await;
    assert_eq!(r.status, 200);
    assert!(r.json()[0]["Id"].as_str().unwrap().starts_with("sha256:"));

    let r = request(
        &d.sock,
        "POST",
        "/v1.47/images/busybox:latest/tag?repo=me/box&tag=2",
        None,
    )
    .await;
    assert_eq!(r.status, 201);
    let r = request(&d.sock, "GET", "/v1.47/images/me/box:2/json", None).await;
    assert_eq!(r.status, 200);
    let r = request(&d.sock, "POST", "/v1.47/images/busybox:latest/tag", None).await;
    assert_eq!(r.status, 400);
    let r = request(&d.sock, "DELETE", "/v1.47/images/me/box:2", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), serde_json::json!([{"Untagged": "me/box:2"}]));
    let r = request(&d.sock, "DELETE", "/v1.47/images/me/box:2", None).await;
    assert_eq!(r.status, 404);
    let r = request(
        &d.sock,
        "GET",
        "/v1.47/images/json?filters=%7B%22bogus%22%3A%5B%22x%22%5D%7D",
        None,
    )
    .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn import_answers_the_id_and_pull_streams_dockers_progress() {
    let d = daemon().await;
    let r = request(
        &d.sock,
        "POST",
        "/v1.47/images/create?fromSrc=-&repo=imp&tag=1&changes=CMD%20%5B%22echo%22%5D",
        Some("not really a tar"),
    )
    .await;
    assert_eq!(r.status, 200);
    let id = r.json()["status"].as_str().unwrap().to_string();
    assert!(id.starts_with("sha256:"));
    let v = request(&d.sock, "GET", "/v1.47/images/imp:1/json", None)
        .await
        .json();
    assert_eq!(v["Id"], id.as_str());
    assert_eq!(v["Config"]["Cmd"][0], "echo");

    let r = request(
        &d.sock,
        "POST",
        "/v1.47/images/create?fromImage=busybox&tag=latest",
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let text = String::from_utf8_lossy(&r.body).into_owned();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["status"], "Pulling from library/busybox");
    assert_eq!(lines[0]["id"], "latest");
    assert!(lines
        .iter()
        .any(|l| l["status"] == "Pull complete" && l["progressDetail"].is_object()));
    assert_eq!(
        lines.last().unwrap()["status"],
        "Status: Image is up to date for busybox:latest"
    );
    let r = request(&d.sock, "POST", "/v1.47/images/create?fromImage=nope", None).await;
    assert_eq!(r.status, 404);
    let r = request(
        &d.sock,
        "POST",
        "/v1.47/images/create?fromSrc=http://x/y.tar",
        None,
    )
    .await;
    assert_eq!(r.status, 501);
}

#[tokio::test]
async fn commit_answers_id_and_save_is_a_tar() {
    let d = daemon().await;
    let r = request(
        &d.sock,
        "POST",
        "/v1.47/containers/create?name=c1",
        Some(r#"{"Image":"busybox"}"#),
    )
    .await;
    assert_eq!(r.status, 201);
    let r = request(
        &d.sock,
        "POST",
        "/v1.47/commit?container=c1&repo=snap&tag=1",
        None,
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.json()["Id"].as_str().unwrap().starts_with("sha256:"));
    let r = request(&d.sock, "GET", "/v1.47/images/snap:1/json", None).await;
    assert_eq!(r.status, 200);
    let r = request(&d.sock, "POST", "/v1.47/commit?container=nope", None).await;
    assert_eq!(r.status, 404);

    let r = request(
        &d.sock,
        "GET",
        "/v1.47/images/get?names=busybox:latest&names=snap:1",
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("application/x-tar"));
    let r = request(&d.sock, "GET", "/v1.47/images/nope/get", None).await;
    assert_eq!(r.status, 404);
    let r = request(
        &d.sock,
        "POST",
        "/v1.47/images/load?quiet=1",
        Some("archive"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&r.body).contains("Loaded image: loaded:latest"));
}

#[tokio::test]
async fn volumes_create_list_inspect_remove_and_prune() {
    let d = daemon().await;
    let r = request(
        &d.sock,
        "POST",
        "/v1.47/volumes/create",
        Some(r#"{"Name":"data","Labels":{"a":"b"}}"#),
    )
    .await;
    assert_eq!(r.status, 201);
    let v = r.json();
    assert_eq!(v["Name"], "data");
    assert_eq!(v["Driver"], "local");
    assert_eq!(v["Scope"], "local");
    assert!(v["Mountpoint"]
        .as_str()
        .unwrap()
        .ends_with("volumes/data/_data"));
    assert!(Path::new(v["Mountpoint"].as_str().unwrap()).is_dir());
    let r = request(
        &d.sock,
        "POST",
        "/v1.47/volumes/create",
        Some(r#"{"Name":"../x"}"#),
    )
    .await;
    assert_eq!(r.status, 400);
    let r = request(
        &d.sock,
        "POST",
        "/v1.47/volumes/create",
        Some(r#"{"Driver":"nfs"}"#),
    )
    .await;
    assert_eq!(r.status, 404);
    let r = request(&d.sock, "POST", "/v1.47/volumes/create", Some("{}")).await;
    assert_eq!(r.status, 201);
    let anon = r.json()["Name"].as_str().unwrap().to_string();
    assert_eq!(anon.len(), 64);

    let l = request(
        &d.sock,
        "GET",
        "/v1.47/volumes?filters=%7B%22label%22%3A%5B%22a%3Db%22%5D%7D",
        None,
    )
    .await
    .json();
    assert_eq!(l["Volumes"].as_array().unwrap().len(), 1);
    assert_eq!(l["Volumes"][0]["Labels"]["a"], "b");
    let r = request(&d.sock, "GET", "/v1.47/volumes/data", None).await;
    assert_eq!(r.status, 200);
    // `docker inspect data` asks for a network of that name first.
    let r = request(&d.sock, "GET", "/v1.47/networks/data", None).await;
    assert_eq!(r.status, 404);
    let r = request(&d.sock, "GET", "/v1.47/volumes/nope", None).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["message"], "get nope: no such volume");
    // A decoded slash or a dot-dot never reaches outside the volumes directory.
    std::fs::create_dir_all(d._dir.path().join("outside/_data")).unwrap();
    for name in ["..", "..%2F..%2Foutside", "data%2F..%2F..%2F..%2Foutside"] {
        let r = request(&d.sock, "DELETE", &format!("/v1.47/volumes/{name}"), None).await;
        assert_eq!(r.status, 404, "{name}");
        let r = request(&d.sock, "GET", &format!("/v1.47/volumes/{name}"), None).await;
        assert_eq!(r.status, 404, "{name}");
    }
    assert!(d._dir.path().join("outside/_data").is_dir());

    // In use by a container: 409.
    let r = request(
        &d.sock,
        "POST",
        "/v1.47/containers/create?name=user",
        Some(r#"{"Image":"busybox","HostConfig":{"Binds":["data:/data"]}}"#),
    )
    .await;
    assert_eq!(r.status, 201);
    let r = request(&d.sock, "DELETE", "/v1.47/volumes/data", None).await;
    assert_eq!(r.status, 409);
    let r = request(&d.sock, "DELETE", "/v1.47/containers/user", None).await;
    assert_eq!(r.status, 204);

    // API 1.42+: prune takes anonymous volumes only, unless all=true.
    let p = request(&d.sock, "POST", "/v1.47/volumes/prune", None)
        .await
        .json();
    assert_eq!(p["VolumesDeleted"], serde_json::json!([anon]));
    let p = request(
        &d.sock,
        "POST",
        "/v1.47/volumes/prune?filters=%7B%22all%22%3A%5B%22true%22%5D%7D",
        None,
    )
    .await
    .json();
    assert_eq!(p["VolumesDeleted"], serde_json::json!(["data"]));
    let l = request(&d.sock, "GET", "/v1.47/volumes", None).await.json();
    assert_eq!(l["Volumes"], serde_json::json!([]));
}

#[tokio::test]
async fn events_since_until_and_system_df() {
    let d = daemon().await;
    let since = chrono::Utc::now().timestamp() - 1;
    let r = request(
        &d.sock,
        "POST",
        "/v1.47/volumes/create",
        Some(r#"{"Name":"ev"}"#),
    )
    .await;
    assert_eq!(r.status, 201);
    let r = request(&d.sock, "DELETE", "/v1.47/volumes/ev", None).await;
    assert_eq!(r.status, 204);
    let until = chrono::Utc::now().timestamp() + 1;
    let r = request(
        &d.sock,
        "GET",
        &format!("/v1.47/events?since={since}&until={until}&filters=%7B%22type%22%3A%5B%22volume%22%5D%7D"),
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let text = String::from_utf8_lossy(&r.body).into_owned();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["Action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["create", "destroy"]);
    assert_eq!(events[0]["Type"], "volume");
    assert_eq!(events[0]["Actor"]["ID"], "ev");
    assert!(events[0]["timeNano"].as_i64().unwrap() >= since * 1_000_000_000);
    let r = request(&d.sock, "GET", "/v1.47/events?since=yesterday", None).await;
    assert_eq!(r.status, 400);

    let df = request(&d.sock, "GET", "/v1.47/system/df", None).await;
    assert_eq!(df.status, 200);
    let df = df.json();
    assert_eq!(df["Images"].as_array().unwrap().len(), 1);
    assert_eq!(df["BuildCache"], serde_json::json!([]));
    assert!(df["Volumes"].is_array() && df["Containers"].is_array());
}
