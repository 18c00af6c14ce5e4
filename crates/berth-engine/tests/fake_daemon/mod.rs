//! The harness of the API tests: berthd's HTTP server on a real unix socket in a
//! temporary directory with the fake manager behind it, and a hand-written HTTP/1.1
//! client, so the tests see exactly the bytes a docker client would.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_engine::engine::{Engine, EngineConfig};
use berth_engine::manager::fake::FakeManager;
use berth_engine::server;
use berth_engine::spec::HostFacts;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

pub struct Daemon {
    pub _dir: tempfile::TempDir,
    pub sock: PathBuf,
    pub fake: Arc<FakeManager>,
    pub engine: Arc<Engine>,
    pub stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

pub async fn daemon() -> Daemon {
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
        stop: Some(tx),
    }
}

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

pub fn dechunk(mut b: &[u8]) -> Vec<u8> {
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

pub async fn request(sock: &Path, method: &str, path: &str, body: Option<&str>) -> Resp {
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

pub fn parse(raw: &[u8]) -> Resp {
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
