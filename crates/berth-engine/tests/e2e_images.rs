//! End to end, as root: images, volumes and events through our CLI and the real
//! docker CLIs, against private berth-manager + berthd stacks on temporary
//! directories (the shared Stack guard in `support/`), a second fresh stack to load saved
//! images into, and a local Debian `docker-registry` to push to and pull from.
//!
//! Binaries: `cargo build -p berth-manager -p berth-shim -p berth-runtime
//! -p berth-engine -p berth-cli -p berth-init` with the same CARGO_TARGET_DIR as the
//! test. The guards put the machine back as it was even when the test fails: berthd
//! and the managers killed, shims and containers killed, mounts under the temporary
//! directories undone, cgroups removed, the registry stopped, orphans reaped.
//!
//! This file holds a single test on purpose: the guard reaps every zombie child of
//! the test process, which is only safe while no other test of the same binary runs
//! commands of its own.

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{busybox_tar, docker_clis, stderr, stdout, Stack};

/// Upper bound for what must happen eventually: a guard against hanging, not a
/// timing assertion.
const EVENTUALLY: Duration = Duration::from_secs(120);

/// A local Debian `docker-registry` on a free 127.0.0.1 port, storing under a
/// temporary directory; stopped (killed and reaped) when dropped.
struct Registry {
    port: u16,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("berth-registry-")
            .tempdir_in("/tmp")
            .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        let cfg = dir.path().join("config.yml");
        std::fs::write(&cfg, config).unwrap();
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry is installed (apt-get install docker-registry)");
        let reg = Registry {
            port,
            child: Some(child),
            _dir: dir,
        };
        let start = Instant::now();
        while !reg.answers() {
            assert!(start.elapsed() < EVENTUALLY, "the registry did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        reg
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Whether `GET /v2/` answers 200.
    fn answers(&self) -> bool {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        if s.write_all(b"GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut buf = [0u8; 32];
        let n = s.read(&mut buf).unwrap_or(0);
        // "HTTP/1.0 200 OK": Go answers in the version it was asked in.
        String::from_utf8_lossy(&buf[..n]).split_whitespace().nth(1) == Some("200")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Seconds since the epoch with nanoseconds, as `--since`/`--until` take them.
fn now_ts() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

/// Runs a CLI command and insists that it succeeds.
fn ok(stack: &Stack, cli: &Path, args: &[&str]) -> String {
    let out = stack.cli(cli, args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{} {}: {}\n{}",
        cli.display(),
        args.join(" "),
        stderr(&out),
        stack.logs()
    );
    stdout(&out)
}

/// The lines a CLI prints for `events --since t0 --until now`, polled until they
/// hold every wanted action (the manager's exit event reaches the engine's event
/// feed on its own path, possibly just after `run` returned).
fn events_until(stack: &Stack, cli: &Path, since: &str, container: &str, wanted: &[&str]) {
    let start = Instant::now();
    loop {
        let until = now_ts();
        let out = stack.cli(
            cli,
            &[
                "events",
                "--since",
                since,
                "--until",
                &until,
                "--filter",
                &format!("container={container}"),
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{}", cli.display());
        let text = stdout(&out);
        let missing: Vec<&&str> = wanted
            .iter()
            .filter(|a| !text.contains(&format!("container {a} ")))
            .collect();
        if missing.is_empty() {
            assert!(text.contains(&format!("name={container}")), "{text}");
            return;
        }
        assert!(
            start.elapsed() < EVENTUALLY,
            "{}: events {missing:?} never came\n{text}",
            cli.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn images_volumes_and_events_through_our_cli_and_the_docker_cli() {
    berth_testutil::require_root!();
    let tar = busybox_tar();
    let a = Stack::start();
    a.import_busybox();
    let berth = berth_testutil::binary("berth");
    let dockers: Vec<PathBuf> = docker_clis();
    assert!(
        !dockers.is_empty(),
        "no docker CLI installed (apt-get install docker.io)"
    );
    let mut clis = vec![berth.clone()];
    clis.extend(dockers.iter().cloned());
    let tar_file = a.path("busybox.tar");
    std::fs::write(&tar_file, &tar).unwrap();

    for (n, cli) in clis.iter().enumerate() {
        let cli = cli.as_path();
        let who = cli.display().to_string();

        // images, inspect, history, tag, rmi
        let list = ok(&a, cli, &["images"]);
        assert!(list.starts_with("REPOSITORY"), "{who}: {list}");
        assert!(list.contains("busybox"), "{who}: {list}");
        let id = ok(&a, cli, &["image", "inspect", "-f", "{{.Id}}", "busybox"]);
        assert!(id.trim().starts_with("sha256:"), "{who}: {id}");
        let short = &id.trim()["sha256:".len().."sha256:".len() + 12];
        let ids = ok(&a, cli, &["images", "-q"]);
        assert!(ids.contains(short), "{who}: {ids}");
        let hist = ok(&a, cli, &["history", "busybox"]);
        assert!(hist.starts_with("IMAGE"), "{who}: {hist}");
        assert!(hist.contains(short), "{who}: {hist}");
        let tagged = format!("tagged{n}/box:v{n}");
        ok(&a, cli, &["tag", "busybox", &tagged]);
        let list = ok(&a, cli, &["images"]);
        assert!(list.contains(&format!("tagged{n}/box")), "{who}: {list}");
        let rmi = ok(&a, cli, &["rmi", &tagged]);
        assert!(rmi.contains(&format!("Untagged: {tagged}")), "{who}: {rmi}");
        let out = a.cli(cli, &["image", "inspect", &tagged]);
        assert_ne!(out.status.code(), Some(0), "{who}: {tagged} is still there");

        // import with a change, then run what it made
        let imported = format!("imported{n}:1");
        let out = ok(
            &a,
            cli,
            &[
                "import",
                "--change",
                "CMD [\"echo\",\"hi\"]",
                &tar_file.to_string_lossy(),
                &imported,
            ],
        );
        assert!(out.trim().starts_with("sha256:"), "{who}: {out}");
        assert_eq!(ok(&a, cli, &["run", "--rm", &imported]), "hi\n", "{who}");

        // commit, then run the new image: it sees the change; events saw it all
        let since = now_ts();
        let name = format!("changer{n}");
        ok(
            &a,
            cli,
            &[
                "run",
                "--name",
                &name,
                "busybox",
                "sh",
                "-c",
                &format!("echo changed{n} > /marker"),
            ],
        );
        let committed = format!("committed{n}:1");
        let out = ok(
            &a,
            cli,
            &[
                "commit",
                "--change",
                "CMD [\"cat\",\"/marker\"]",
                &name,
                &committed,
            ],
        );
        assert!(out.trim().starts_with("sha256:"), "{who}: {out}");
        assert_eq!(
            ok(&a, cli, &["run", "--rm", &committed]),
            format!("changed{n}\n"),
            "{who}"
        );
        events_until(
            &a,
            cli,
            &since,
            &name,
            &["create", "start", "die", "commit"],
        );
        ok(&a, cli, &["rm", &name]);

        // a named volume outlives the containers that use it
        let vol = format!("vol{n}");
        assert_eq!(ok(&a, cli, &["volume", "create", &vol]).trim(), vol);
        let ls = ok(&a, cli, &["volume", "ls", "-q"]);
        assert!(ls.lines().any(|l| l == vol), "{who}: {ls}");
        let mp = ok(
            &a,
            cli,
            &["volume", "inspect", "-f", "{{.Mountpoint}}", &vol],
        );
        assert!(
            mp.trim().ends_with(&format!("volumes/{vol}/_data")),
            "{who}: {mp}"
        );
        if n > 0 {
            // docker's inspect tries containers, images and networks before volumes.
            let name = ok(&a, cli, &["inspect", "-f", "{{.Name}}", &vol]);
            assert_eq!(name.trim(), vol, "{who}");
        }
        let bind = format!("{vol}:/data");
        ok(
            &a,
            cli,
            &[
                "run",
                "--rm",
                "-v",
                &bind,
                "busybox",
                "sh",
                "-c",
                "echo persisted > /data/f",
            ],
        );
        assert_eq!(
            ok(
                &a,
                cli,
                &["run", "--rm", "-v", &bind, "busybox", "cat", "/data/f"]
            ),
            "persisted\n",
            "{who}"
        );
        // --rm removes the containers once they exit; until then the volume is in use.
        let start = Instant::now();
        loop {
            let out = a.cli(cli, &["volume", "rm", &vol]);
            if out.status.code() == Some(0) {
                break;
            }
            assert!(start.elapsed() < EVENTUALLY, "{who}: volume rm {vol}");
            std::thread::sleep(Duration::from_millis(100));
        }
        let ls = ok(&a, cli, &["volume", "ls", "-q"]);
        assert!(!ls.lines().any(|l| l == vol), "{who}: {ls}");

        let df = ok(&a, cli, &["system", "df"]);
        assert!(
            df.contains("Images") && df.contains("Local Volumes"),
            "{who}: {df}"
        );
    }

    // A running container is frozen while it is committed, and thawed after.
    let since = now_ts();
    ok(
        &a,
        &berth,
        &[
            "run",
            "-d",
            "--name",
            "live",
            "busybox",
            "sh",
            "-c",
            "echo live > /m; exec sleep 1000",
        ],
    );
    let start = Instant::now();
    while stdout(&a.cli(&berth, &["exec", "live", "cat", "/m"])) != "live\n" {
        assert!(start.elapsed() < EVENTUALLY, "the container never wrote /m");
        std::thread::sleep(Duration::from_millis(100));
    }
    ok(&a, &berth, &["commit", "live", "livecommit:1"]);
    assert_eq!(
        ok(&a, &berth, &["run", "--rm", "livecommit:1", "cat", "/m"]),
        "live\n"
    );
    // An image can be removed right after the removal of its last container:
    // the manager's half of that removal (its container's layer still has the
    // image's as parent) is waited for. Back to back on the API, no CLI between.
    for i in 0..3 {
        let tag = format!("rmright:{i}");
        ok(&a, &berth, &["commit", "live", &tag]);
        let body = format!(r#"{{"Image": "{tag}", "HostConfig": {{"NetworkMode": "none"}}}}"#);
        let (status, created) = a.http("POST", "/containers/create", body.as_bytes());
        assert_eq!(status, 201, "{created}");
        let v: serde_json::Value = serde_json::from_str(&created).unwrap();
        let id = v["Id"].as_str().unwrap();
        let (status, body) = a.http("DELETE", &format!("/containers/{id}"), b"");
        assert_eq!(status, 204, "{body}");
        let (status, body) = a.http("DELETE", &format!("/images/{tag}"), b"");
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(
        ok(&a, &berth, &["exec", "live", "echo", "thawed"]),
        "thawed\n"
    );
    events_until(&a, &berth, &since, "live", &["pause", "unpause", "commit"]);
    ok(&a, &berth, &["kill", "live"]);
    // `wait` exits with the container's code (137 after SIGKILL), as docker's does.
    assert_eq!(stdout(&a.cli(&berth, &["wait", "live"])), "137\n");
    ok(&a, &berth, &["rm", "live"]);

    // save from one engine, load into a fresh one, run it there; then push from the
    // first to a registry and pull into the second.
    let b = Stack::start();
    let registry = Registry::start();
    for (n, cli) in clis.iter().enumerate() {
        let cli = cli.as_path();
        let who = cli.display().to_string();
        let committed = format!("committed{n}:1");
        let archive = a.path(&format!("saved{n}.tar"));
        let archive = archive.to_string_lossy();
        ok(&a, cli, &["save", "-o", &archive, &committed, "busybox"]);
        let out = ok(&b, cli, &["load", "-i", &archive]);
        assert!(
            out.contains(&format!("Loaded image: {committed}")),
            "{who}: {out}"
        );
        assert_eq!(
            ok(&b, cli, &["run", "--rm", &committed]),
            format!("changed{n}\n"),
            "{who}"
        );

        let remote = format!("{}/pushed{n}:v1", registry.addr());
        ok(&a, cli, &["tag", &format!("imported{n}:1"), &remote]);
        let out = ok(&a, cli, &["push", &remote]);
        assert!(out.contains("digest: sha256:"), "{who}: {out}");
        let out = ok(&b, cli, &["pull", &remote]);
        assert!(
            out.contains("Status: Downloaded newer image"),
            "{who}: {out}"
        );
        assert_eq!(ok(&b, cli, &["run", "--rm", &remote]), "hi\n", "{who}");
    }
    let out = ok(&b, &berth, &["image", "prune", "-a", "-f"]);
    assert!(out.contains("Total reclaimed space"), "{out}");
    drop(registry);
}
