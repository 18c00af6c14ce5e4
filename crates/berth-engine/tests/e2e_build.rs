//! End to end, as root: `docker build` (the legacy builder, DOCKER_BUILDKIT=0) and
//! `berth build` against a private berth-manager + berthd stack (the shared Stack
//! guard in `support/`): a Dockerfile with FROM, ARG, ENV, RUN, COPY with a
//! .dockerignore, WORKDIR, USER, EXPOSE, HEALTHCHECK and CMD; the cache (every step
//! cached, a changed file re-running from its COPY on, --no-cache); multi-stage with
//! and without --target; a failing RUN's message and exit code, with nothing left
//! behind; a client that goes away mid-RUN stops the build and leaves nothing; RUN
//! containers on the default bridge and on `--network none`, leaving
//! nothing there.
//!
//! Binaries: `cargo build -p berth-manager -p berth-shim -p berth-runtime
//! -p berth-engine -p berth-cli -p berth-init` with the same CARGO_TARGET_DIR.
//! One test in this file: the guard reaps every zombie child of the process.

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use support::{docker_clis, stderr, stdout, Stack};

const APP: &str = r#"FROM busybox
ARG GREETING=hello
ENV APP_HOME=/app NAME=world
RUN echo "$GREETING from run" > /run.txt
COPY src/ /app/src/
WORKDIR /app
USER nobody
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=3s CMD true
CMD ["sh", "-c", "cat /run.txt; cat /app/src/a.txt; ls /app/src; echo $NAME $APP_HOME; pwd; id -u"]
"#;

const MULTI: &str = r#"FROM busybox AS builder
RUN mkdir /out && echo built-artifact > /out/file
FROM busybox AS unused
RUN exit 1
FROM busybox
COPY --from=builder /out/file /final/file
CMD ["cat", "/final/file"]
"#;

fn write(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

/// Mount points and snapshots of the stack, to see that a failed build leaves none.
fn leftovers(stack: &Stack) -> (usize, usize) {
    let root = stack.path("").to_string_lossy().into_owned();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(4).is_some_and(|p| p.starts_with(&root)))
        .count();
    let snaps = std::fs::read_dir(stack.path("manager/snapshots/overlay"))
        .map(|d| d.count())
        .unwrap_or(0);
    (mounts, snaps)
}

#[test]
fn docker_build_and_berth_build() {
    let _serial = support::serial();
    if !berth_testutil::is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let Some(docker) = docker_clis().into_iter().next() else {
        eprintln!("skipping: no docker CLI");
        return;
    };
    // The legacy builder: the daemon serves builder version 1 only.
    std::env::set_var("DOCKER_BUILDKIT", "0");
    let stack = Stack::start();
    let work = tempfile::tempdir().unwrap();
    let app = work.path().join("app");
    write(&app, "Dockerfile", APP);
    write(&app, "src/a.txt", "file a\n");
    write(&app, "src/secret.txt", "must not be copied\n");
    write(&app, ".dockerignore", "src/secret.txt\n");
    let ctx = app.to_string_lossy().into_owned();

    // A first build runs every step; the image's run shows what the steps wrote.
    let out = stack.cli(&docker, &["build", "-t", "app", &ctx]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let log = stdout(&out);
    assert!(log.contains("Step 10/10 : CMD"), "{log}");
    assert!(log.contains("Successfully tagged app:latest"), "{log}");
    assert_eq!(count(&log, "Using cache"), 0, "{log}");
    let ran = stack.ok(&docker, &["run", "--rm", "app"]);
    assert_eq!(
        ran.lines().collect::<Vec<_>>(),
        vec![
            "hello from run",
            "file a",
            "a.txt",
            "world /app",
            "/app",
            "65534"
        ],
        "{ran}"
    );
    let cfg = stack.inspect("app", "{{json .Config}}");
    for want in [
        "\"User\":\"nobody\"",
        "\"8080/tcp\"",
        "\"WorkingDir\":\"/app\"",
        "\"CMD-SHELL\",\"true\"",
        "\"Interval\":5000000000",
        "NAME=world",
    ] {
        assert!(cfg.contains(want), "{want} not in {cfg}");
    }
    let history = stack.ok(&docker, &["history", "--no-trunc", "app"]);
    assert!(
        history.contains("/bin/sh -c #(nop)  ENV APP_HOME=/app NAME=world"),
        "{history}"
    );
    assert!(
        history.contains("|1 GREETING=hello /bin/sh -c echo"),
        "{history}"
    );

    // Nothing changed: every step after FROM is a cache hit.
    let log = stack.ok(&docker, &["build", "-t", "app", &ctx]);
    assert_eq!(count(&log, "Using cache"), 9, "{log}");

    // One copied file changed: the steps before its COPY are cached, none after.
    write(&app, "src/a.txt", "file a, changed\n");
    let log = stack.ok(&docker, &["build", "-t", "app", &ctx]);
    assert_eq!(count(&log, "Using cache"), 3, "{log}");
    let copy_step = log.find("Step 5/10").unwrap();
    assert!(!log[copy_step..].contains("Using cache"), "{log}");
    assert!(stack
        .ok(&docker, &["run", "--rm", "app"])
        .contains("file a, changed"));

    // --no-cache runs everything again.
    let log = stack.ok(&docker, &["build", "--no-cache", "-t", "app", &ctx]);
    assert_eq!(count(&log, "Using cache"), 0, "{log}");
    assert_eq!(count(&log, "Running in"), 1, "{log}");

    // Multi-stage: the final stage copies from the builder; the unused stage (which
    // would fail) is never built; --target stops at the builder.
    let multi = work.path().join("multi");
    write(&multi, "Dockerfile", MULTI);
    let mctx = multi.to_string_lossy().into_owned();
    let log = stack.ok(&docker, &["build", "-t", "multi", &mctx]);
    assert!(!log.contains("exit 1"), "{log}");
    assert_eq!(
        stack.ok(&docker, &["run", "--rm", "multi"]).trim(),
        "built-artifact"
    );
    let log = stack.ok(
        &docker,
        &["build", "--target", "builder", "-t", "multi-builder", &mctx],
    );
    assert!(log.contains("Step 2/2"), "{log}");
    assert_eq!(
        stack
            .ok(
                &docker,
                &["run", "--rm", "multi-builder", "cat", "/out/file"]
            )
            .trim(),
        "built-artifact"
    );
    let out = stack.cli(
        &docker,
        &["run", "--rm", "multi-builder", "cat", "/final/file"],
    );
    assert_ne!(out.status.code(), Some(0));

    // ADD unpacks a local tarball; COPY --chown by names and --chmod; FROM scratch.
    let files = work.path().join("files");
    write(&files, "f", "x\n");
    let tgz = std::process::Command::new("tar")
        .args(["-czf", "a.tar.gz", "f"])
        .current_dir(&files)
        .status()
        .unwrap();
    assert!(tgz.success());
    write(
        &files,
        "Dockerfile",
        "FROM busybox\nADD a.tar.gz /unpacked/\nCOPY --chown=nobody:nogroup --chmod=600 f /owned\nRUN stat -c '%U:%G %a' /owned && cat /unpacked/f\n",
    );
    let log = stack.ok(&docker, &["build", "-t", "files", &files.to_string_lossy()]);
    assert!(log.contains("nobody:nogroup 600"), "{log}");
    write(
        &files,
        "Dockerfile",
        "FROM scratch\nCOPY f /data/\nWORKDIR /w\n",
    );
    stack.ok(
        &docker,
        &["build", "-t", "scratchy", &files.to_string_lossy()],
    );
    let layers = stack.ok(
        &docker,
        &[
            "image",
            "inspect",
            "-f",
            "{{len .RootFS.Layers}}",
            "scratchy",
        ],
    );
    assert_eq!(layers.trim(), "2");

    // A failing RUN: docker's message, the command's exit code, nothing left behind.
    let before = leftovers(&stack);
    let fail = work.path().join("fail");
    write(
        &fail,
        "Dockerfile",
        "FROM busybox\nRUN echo before && exit 3\n",
    );
    let out = stack.cli(
        &docker,
        &["build", "-t", "failing", &fail.to_string_lossy()],
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out)
            .contains("The command '/bin/sh -c echo before && exit 3' returned a non-zero code: 3"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stack.ok(&docker, &["ps", "-aq"]).trim(), "");
    assert_eq!(leftovers(&stack), before);
    let out = stack.cli(&docker, &["image", "inspect", "failing"]);
    assert_ne!(out.status.code(), Some(0));

    // A client that goes away in the middle of a RUN stops the build: its container
    // is killed and removed, with its snapshot and mounts.
    let mut ctx_tar = tar::Builder::new(Vec::new());
    let df = b"FROM busybox\nRUN echo started && sleep 300\n";
    let mut h = tar::Header::new_gnu();
    h.set_size(df.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    ctx_tar.append_data(&mut h, "Dockerfile", &df[..]).unwrap();
    let body = ctx_tar.into_inner().unwrap();
    let mut conn = UnixStream::connect(stack.engine_socket()).unwrap();
    conn.set_read_timeout(Some(support::EVENTUALLY)).unwrap();
    write!(
        conn,
        "POST /build?t=cancelled HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-tar\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    conn.write_all(&body).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    // The RUN's own output, not the step line that names it.
    while !String::from_utf8_lossy(&seen).contains(r#""stream":"started"#) {
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "{}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    drop(conn);
    support::eventually("the cancelled build's container is gone", || {
        (stack.ok(&docker, &["ps", "-aq"]).trim().is_empty() && leftovers(&stack) == before)
            .then_some(())
    });
    let out = stack.cli(&docker, &["image", "inspect", "cancelled"]);
    assert_ne!(out.status.code(), Some(0));

    // RUN containers are on the default bridge (or `--network`), and give back
    // everything they had there.
    let net = work.path().join("net");
    write(
        &net,
        "Dockerfile",
        "FROM busybox\nRUN grep -q eth0 /proc/net/dev && echo has-eth0\n",
    );
    let log = stack.ok(&docker, &["build", &net.to_string_lossy()]);
    assert!(log.contains("has-eth0"), "{log}");
    write(
        &net,
        "Dockerfile",
        "FROM busybox\nRUN grep -q eth0 /proc/net/dev || echo no-eth0\n",
    );
    let log = stack.ok(
        &docker,
        &["build", "--network", "none", &net.to_string_lossy()],
    );
    assert!(log.contains("no-eth0"), "{log}");
    assert_eq!(
        support::network_leftovers(&stack, &stack.bridge),
        Vec::<String>::new()
    );

    // Our CLI: the same context, plain progress, every step cached.
    let berth: PathBuf = berth_testutil::binary("berth");
    let out = stack.cli(
        &berth,
        &["build", "--progress", "plain", "-t", "app2", &ctx],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(count(&all, "Using cache"), 9, "{all}");
    let iid = work.path().join("iid");
    let out = stack.cli(
        &berth,
        &[
            "build",
            "-q",
            "--iidfile",
            &iid.to_string_lossy(),
            "--build-arg",
            "GREETING=hi",
            "-f",
            &app.join("Dockerfile").to_string_lossy(),
            &ctx,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let id = std::fs::read_to_string(&iid).unwrap();
    assert!(id.starts_with("sha256:"), "{id}");
    assert_eq!(stdout(&out).trim(), id.trim());
    let ran = stack.ok(&docker, &["run", "--rm", id.trim()]);
    assert!(ran.starts_with("hi from run"), "{ran}");
    let out = stack.cli(&berth, &["build", &fail.to_string_lossy()]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));

    // HEALTHCHECK: the built image's (5 s interval), and --health-* flags.
    let id = stack.ok(&docker, &["run", "-d", "app", "sleep", "60"]);
    let id = id.trim().to_string();
    support::eventually("the image's health check passes", || {
        (stack.inspect(&id, "{{.State.Health.Status}}") == "healthy").then_some(())
    });
    let sick = stack.ok(
        &berth,
        &[
            "run",
            "-d",
            "--health-cmd",
            "exit 1",
            "--health-interval",
            "1s",
            "--health-retries",
            "2",
            "busybox",
            "sleep",
            "60",
        ],
    );
    let sick = sick.trim().to_string();
    support::eventually("a failing health check makes it unhealthy", || {
        (stack.inspect(&sick, "{{.State.Health.Status}}") == "unhealthy").then_some(())
    });
    let streak: i64 = stack
        .inspect(&sick, "{{.State.Health.FailingStreak}}")
        .parse()
        .unwrap();
    assert!(streak >= 2, "{streak}");
    // Finished probes are deleted from the shim: at most the one in flight is left.
    let probes = std::fs::read_dir(stack.path(&format!("run/tasks/{sick}")))
        .unwrap()
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with("exec-") && n.ends_with(".json")
        })
        .count();
    assert!(probes <= 1, "{probes} probes kept by the shim");
    let ps = stack.ok(&docker, &["ps", "--format", "{{.ID}} {{.Status}}"]);
    assert!(
        ps.contains("(healthy)") && ps.contains("(unhealthy)"),
        "{ps}"
    );
    let healthy = stack.ok(
        &docker,
        &["ps", "-q", "--no-trunc", "--filter", "health=healthy"],
    );
    assert_eq!(healthy.trim(), id);
    // `--until` counts whole seconds: an event of this very second shows a moment later.
    support::eventually("health_status events for both", || {
        let events = stack.ok(
            &docker,
            &[
                "events",
                "--since",
                "5m",
                "--until",
                "0s",
                "--filter",
                "event=health_status",
            ],
        );
        (events.contains("health_status: healthy") && events.contains("health_status: unhealthy"))
            .then_some(())
    });
    // --no-healthcheck turns the image's off (its health would show at once).
    for cli in [&berth, &docker] {
        let quiet = stack.ok(
            cli,
            &["run", "-d", "--no-healthcheck", "app", "sleep", "60"],
        );
        let quiet = quiet.trim();
        let health = stack.ok(&docker, &["inspect", "-f", "{{json .State.Health}}", quiet]);
        assert_eq!(health.trim(), "null");
        stack.ok(&docker, &["rm", "-f", quiet]);
    }
    stack.ok(&docker, &["rm", "-f", &id, &sick]);

    // The cache outlives berthd.
    let mut stack = stack;
    stack.kill_berthd();
    stack.start_berthd();
    let out = stack.cli(
        &berth,
        &["builder", "build", "--progress", "plain", "-t", "app", &ctx],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(count(&all, "Using cache"), 9, "{all}");
    // builder prune empties it.
    stack.ok(&berth, &["builder", "prune", "-f"]);
    let log = stack.ok(&docker, &["build", "-t", "app", &ctx]);
    assert_eq!(count(&log, "Using cache"), 0, "{log}");
}

/// A one-thread HTTP/1.0 server on 127.0.0.1:`port` answering GETs for the paths
/// of `files` with their bodies (404 otherwise) until the guard drops.
struct Served {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Served {
    fn start_on(port: u16, files: Vec<(&'static str, Vec<u8>)>) -> Served {
        let l = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok((mut s, _)) = l.accept() else {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    continue;
                };
                s.set_nonblocking(false).unwrap();
                let mut req = Vec::new();
                let mut b = [0u8; 1];
                while !req.ends_with(b"\r\n\r\n") && s.read(&mut b).unwrap_or(0) == 1 {
                    req.push(b[0]);
                }
                let req = String::from_utf8_lossy(&req);
                let path = req.split(' ').nth(1).unwrap_or("");
                let _ = match files.iter().find(|(p, _)| *p == path) {
                    Some((_, body)) => s
                        .write_all(
                            format!(
                                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nLast-Modified: Tue, 01 Dec 2026 10:00:00 GMT\r\n\r\n",
                                body.len()
                            )
                            .as_bytes(),
                        )
                        .and_then(|_| s.write_all(body)),
                    None => s.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
                };
            }
        });
        Served {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `ADD <url>` and a `remote=` tarball context: both downloaded by berthd from a
/// server on 127.0.0.1, the file added with mode 0600 and the server's time, and
/// the downloads gone from the builder's directory afterwards.
#[test]
fn add_url_and_remote_context() {
    let _serial = support::serial();
    if !berth_testutil::is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let greeting = b"hello over http\n".to_vec();
    // The context tar refers to the server's port, so the server starts first and
    // the tar is served from a slot filled afterwards.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let dockerfile = format!(
        "FROM busybox\nADD http://127.0.0.1:{port}/greeting.txt /g/\nCMD [\"sh\", \"-c\", \"cat /g/greeting.txt; stat -c '%a %Y' /g/greeting.txt\"]\n"
    );
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(dockerfile.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, "Dockerfile", dockerfile.as_bytes())
        .unwrap();
    let ctx = tar.into_inner().unwrap();
    let served = Served::start_on(port, vec![("/greeting.txt", greeting), ("/ctx.tar", ctx)]);

    let stack = Stack::start();
    let (code, body) = stack.http(
        "POST",
        &format!(
            "/build?t=fromurl&remote=http://127.0.0.1:{}/ctx.tar",
            served.port
        ),
        b"",
    );
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("Successfully tagged fromurl:latest"),
        "{body}"
    );
    let berth = berth_testutil::binary("berth");
    let ran = stack.ok(&berth, &["run", "--rm", "fromurl"]);
    // 2026-12-01T10:00:00Z is 1796119200.
    assert_eq!(ran, "hello over http\n600 1796119200\n", "{ran}");
    // A missing file fails the build with the URL in the message.
    let (code, body) = stack.http(
        "POST",
        &format!("/build?remote=http://127.0.0.1:{}/nothing.tar", served.port),
        b"",
    );
    assert!(code != 200 || body.contains("errorDetail"), "{code} {body}");
    assert!(body.contains("nothing.tar"), "{body}");
    let left: Vec<_> = std::fs::read_dir(stack.path("engine/builder/tmp"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
