//! End to end, as root: the `berth` CLI as a drop-in for the docker CLI, against a
//! private berth-manager + berthd stack on temporary directories (the engine's shared
//! test stack in crates/berth-engine/tests/support): `--format` through the Go
//! template engine, docker's exit codes and parse errors, Ctrl-C forwarded to the
//! container, ctrl-p ctrl-q detaching (under a pseudo-terminal), `attach` returning
//! the container's exit code, and `login` to a local htpasswd-protected Debian
//! `docker-registry` followed by push and pull.
//!
//! Binaries: `cargo build -p berth-manager -p berth-shim -p berth-runtime
//! -p berth-engine -p berth-cli -p berth-init` with the same CARGO_TARGET_DIR. The
//! stack's guard puts the machine back as it was even when a test fails; the tests
//! of this binary run one at a time (`serial`), as the guard requires.

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../berth-engine/tests/support/mod.rs"]
mod support;

#[path = "../../berth-manager/tests/common/registry.rs"]
mod registry;

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use support::{eventually, serial, stderr, stdout, Stack, EVENTUALLY};

fn berth() -> PathBuf {
    berth_testutil::binary("berth")
}

/// A command for our CLI against the stack, as `Stack::cli` runs it (private docker
/// config directory, no inherited host).
fn cmd(stack: &Stack, args: &[&str]) -> Command {
    let mut c = Command::new(berth());
    c.arg("-H")
        .arg(stack.host())
        .args(args)
        .env("DOCKER_CONFIG", stack.path("docker-config"))
        .env_remove("DOCKER_HOST")
        .env_remove("BERTH_HOST");
    c
}

/// A child killed and reaped when dropped (a CLI a failed test left running).
struct Guard(Option<Child>);

impl Guard {
    fn wait(&mut self) -> Output {
        let start = Instant::now();
        let child = self.0.as_mut().unwrap();
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            assert!(start.elapsed() < EVENTUALLY, "the CLI did not finish");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        self.0.take().unwrap().wait_with_output().unwrap()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A CLI on a pseudo-terminal: what it writes is collected by a reader thread.
struct Pty {
    master: std::fs::File,
    out: Arc<Mutex<Vec<u8>>>,
    child: Guard,
}

impl Pty {
    fn spawn(mut c: Command) -> Pty {
        let pty = nix::pty::openpty(None, None).unwrap();
        let slave: OwnedFd = pty.slave;
        c.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        let child = c.spawn().unwrap();
        let master = std::fs::File::from(pty.master);
        let out = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().unwrap();
        let sink = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match std::io::Read::read(&mut reader, &mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => sink.lock().unwrap().extend_from_slice(&buf[..n]),
                }
            }
        });
        Pty {
            master,
            out,
            child: Guard(Some(child)),
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    fn wait_for(&self, what: &str) {
        eventually(&format!("{what:?} on the terminal"), || {
            self.text().contains(what).then_some(())
        });
    }

    fn send(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).unwrap();
        self.master.flush().unwrap();
    }

    /// The exit status (the reader thread ends with the last writer of the pty).
    fn wait(&mut self) -> Option<i32> {
        let _ = self.master.as_raw_fd();
        self.child.wait().status.code()
    }
}

fn ok(stack: &Stack, args: &[&str]) -> String {
    stack.ok(&berth(), args)
}

#[test]
fn formats_waits_attach_codes_and_parse_errors() {
    let _serial = serial();
    let stack = Stack::start();

    // version --format: the first thing many scripts run.
    let v = ok(&stack, &["version", "--format", "{{.Server.Version}}"]);
    let server: serde_json::Value =
        serde_json::from_str(&stack.http("GET", "/version", b"").1).unwrap();
    assert_eq!(v.trim(), server["Version"].as_str().unwrap());
    assert!(!v.trim().is_empty());

    let images = ok(&stack, &["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(images.lines().any(|l| l == "busybox:latest"), "{images}");

    let id = ok(
        &stack,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "-v",
            "cli-data:/data",
            "busybox",
            "sleep",
            "1000",
        ],
    );
    let id = id.trim();
    let table = ok(&stack, &["ps", "--format", "table {{.ID}}\t{{.Names}}"]);
    assert_eq!(
        table,
        format!("CONTAINER ID   NAMES\n{}   web\n", &id[..12])
    );
    let mounts = ok(
        &stack,
        &[
            "inspect",
            "-f",
            "{{range .Mounts}}{{.Destination}} {{end}}",
            "web",
        ],
    );
    assert_eq!(mounts, "/data \n");
    let upper = ok(
        &stack,
        &[
            "inspect",
            "-f",
            r#"{{index .GraphDriver.Data "UpperDir"}}"#,
            "web",
        ],
    );
    assert!(
        std::path::Path::new(upper.trim()).is_dir(),
        "UpperDir {upper:?} is not a directory"
    );
    // GraphDriver.Data as docker's (a Go map: keys sorted), for containers and images.
    let keys = ok(
        &stack,
        &["inspect", "-f", "{{json .GraphDriver}}", "web", "busybox"],
    );
    let keys: Vec<Vec<String>> = keys
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["Data"].as_object().unwrap().keys().cloned().collect()
        })
        .collect();
    assert_eq!(
        keys[0],
        ["LowerDir", "MergedDir", "UpperDir", "WorkDir"],
        "{keys:?}"
    );
    let mut sorted = keys[1].clone();
    sorted.sort();
    assert_eq!(keys[1], sorted);
    let raw = stack.http("GET", "/images/busybox/json", b"").1;
    let graph = &raw[raw.find("\"GraphDriver\"").unwrap()..];
    assert!(graph.starts_with("\"GraphDriver\":{\"Data\":{"), "{raw}");
    // No health check: docker prints null, not an error.
    let health = ok(&stack, &["inspect", "-f", "{{json .State.Health}}", "web"]);
    assert_eq!(health, "null\n");
    // Go's lexer refuses a field name with a dash in it.
    let out = stack.cli(&berth(), &["inspect", "-f", "{{.a.b-c}}", "web"]);
    assert_ne!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("bad character U+002D '-'"),
        "{}",
        stderr(&out)
    );
    // ps rows as docker's formatter objects, in JSON as docker gives them.
    let row = ok(&stack, &["ps", "--format", "{{json .}}"]);
    let row: serde_json::Value = serde_json::from_str(row.trim()).unwrap();
    assert_eq!(row["ID"], &id[..12]);
    assert_eq!(row["Names"], "web");
    assert_eq!(row["Command"], "\"sleep 1000\"");
    assert_eq!(row["State"], "running");
    assert_eq!(row["LocalVolumes"], "1");

    // wait prints the code and exits 0.
    ok(
        &stack,
        &[
            "run", "-d", "--name", "three", "busybox", "sh", "-c", "exit 3",
        ],
    );
    let out = stack.cli(&berth(), &["wait", "three"]);
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(0), "3\n"));
    // run returns the container's code.
    let out = stack.cli(&berth(), &["run", "--rm", "busybox", "sh", "-c", "exit 4"]);
    assert_eq!(out.status.code(), Some(4));

    // docker's parse errors and exit codes.
    let out = stack.cli(&berth(), &["ps", "--x"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).starts_with("unknown flag: --x\n"),
        "{}",
        stderr(&out)
    );
    let out = stack.cli(&berth(), &["nosuchverb"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("berth: unknown command: berth nosuchverb\n"),
        "{}",
        stderr(&out)
    );
    let out = stack.cli(&berth(), &["stop", "ghost"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("Error response from daemon: "),
        "{}",
        stderr(&out)
    );

    // cp both ways, commit -c, images --digests.
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("hello.txt");
    std::fs::write(&src, "hi there\n").unwrap();
    ok(&stack, &["cp", src.to_str().unwrap(), "web:/tmp/"]);
    let back = tmp.path().join("back.txt");
    ok(
        &stack,
        &["cp", "web:/tmp/hello.txt", back.to_str().unwrap()],
    );
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "hi there\n");
    let img = ok(
        &stack,
        &["commit", "-c", "ENV COMMITTED=yes", "web", "committed:v1"],
    );
    assert!(img.starts_with("sha256:"), "{img}");
    let env = ok(
        &stack,
        &[
            "image",
            "inspect",
            "-f",
            "{{json .Config.Env}}",
            "committed:v1",
        ],
    );
    assert!(env.contains("COMMITTED=yes"), "{env}");
    let digests = ok(&stack, &["images", "--digests"]);
    assert!(
        digests.starts_with("REPOSITORY   TAG       DIGEST    IMAGE ID"),
        "{digests}"
    );

    ok(&stack, &["rm", "-f", "web", "three"]);
}

#[test]
fn ctrl_c_is_forwarded_and_detach_keys_detach() {
    let _serial = serial();
    let stack = Stack::start();

    // SIGINT to the CLI goes to the container, which traps it and exits 7.
    let mut run = cmd(
        &stack,
        &[
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "trap 'echo got INT; exit 7' INT; echo ready; while true; do sleep 0.1; done",
        ],
    );
    let child = run
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut guard = Guard(Some(child));
    let mut stdout_pipe = guard.0.as_mut().unwrap().stdout.take().unwrap();
    let mut first = [0u8; 6];
    std::io::Read::read_exact(&mut stdout_pipe, &mut first).unwrap();
    assert_eq!(&first, b"ready\n");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout_pipe, &mut rest).unwrap();
    let out = guard.wait();
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert_eq!(rest, "got INT\n");

    // ctrl-p ctrl-q detaches `run -it`: the CLI exits 0, the container runs on.
    let ticker = "echo started; while true; do echo tick; sleep 0.2; done";
    let mut pty = Pty::spawn(cmd(
        &stack,
        &["run", "-it", "--name", "det", "busybox", "sh", "-c", ticker],
    ));
    pty.wait_for("started");
    pty.send(&[0x10, 0x11]);
    assert_eq!(pty.wait(), Some(0), "{}", pty.text());
    assert_eq!(stack.inspect("det", "{{.State.Status}}"), "running");

    // attach detaches too (docker's attach says so and exits 1), with the keys from
    // --detach-keys and from the configuration file.
    let mut pty = Pty::spawn(cmd(&stack, &["attach", "det"]));
    pty.wait_for("tick");
    pty.send(&[0x10, 0x11]);
    assert_eq!(pty.wait(), Some(1));
    assert!(
        pty.text().contains("read escape sequence"),
        "{}",
        pty.text()
    );
    let mut pty = Pty::spawn(cmd(&stack, &["attach", "--detach-keys", "ctrl-x", "det"]));
    pty.wait_for("tick");
    pty.send(&[0x18]);
    assert_eq!(pty.wait(), Some(1));
    std::fs::create_dir_all(stack.path("docker-config")).unwrap();
    std::fs::write(
        stack.path("docker-config/config.json"),
        r#"{"detachKeys": "ctrl-e,e"}"#,
    )
    .unwrap();
    let mut pty = Pty::spawn(cmd(&stack, &["attach", "det"]));
    pty.wait_for("tick");
    pty.send(b"\x05e");
    assert_eq!(pty.wait(), Some(1));
    assert_eq!(stack.inspect("det", "{{.State.Status}}"), "running");
    ok(&stack, &["rm", "-f", "det"]);

    // attach returns the container's exit code.
    ok(
        &stack,
        &[
            "run",
            "-d",
            "-i",
            "--name",
            "reader",
            "busybox",
            "sh",
            "-c",
            "read line; exit 9",
        ],
    );
    let out = stack.cli_with_stdin(&berth(), &["attach", "reader"], Some(b"go\n"));
    assert_eq!(out.status.code(), Some(9), "{}", stderr(&out));
    let out = stack.cli(&berth(), &["wait", "reader"]);
    assert_eq!(stdout(&out), "9\n");
    ok(&stack, &["rm", "reader"]);
}

/// docker's full ctrl-p ctrl-q round trip with a shell: detach, attach again, type.
/// berthd keeps a TTY container's stdin open when an attached client leaves (as
/// dockerd, which closes it only for `StdinOnce` without a TTY).
#[test]
fn a_detached_shell_takes_input_again() {
    let _serial = serial();
    let stack = Stack::start();
    let mut pty = Pty::spawn(cmd(
        &stack,
        &["run", "-it", "--name", "sh1", "busybox", "sh"],
    ));
    pty.wait_for("/ # ");
    pty.send(b"echo hello-$((40+2))\r");
    pty.wait_for("hello-42");
    pty.send(&[0x10, 0x11]);
    assert_eq!(pty.wait(), Some(0), "{}", pty.text());
    let mut pty = Pty::spawn(cmd(&stack, &["attach", "sh1"]));
    pty.send(b"echo again-$((1+1))\r");
    pty.wait_for("again-2");
    pty.send(b"exit 9\r");
    assert_eq!(pty.wait(), Some(9), "{}", pty.text());
    ok(&stack, &["rm", "sh1"]);
}

#[test]
fn login_then_push_and_pull_with_the_stored_credentials() {
    let _serial = serial();
    let stack = Stack::start();
    let dir = tempfile::Builder::new()
        .prefix("berth-registry-")
        .tempdir()
        .unwrap();
    let reg = registry::TestRegistry::start(dir.path(), Some(("alice", "s3cret-pw")));
    let image = format!("{}/cli/busybox:v1", reg.addr());
    ok(&stack, &["tag", "busybox", &image]);

    // Without credentials the registry refuses.
    let out = stack.cli(&berth(), &["push", &image]);
    assert_ne!(out.status.code(), Some(0), "pushed without logging in");

    // A wrong password: the engine asks the registry (POST /auth), which refuses it,
    // in docker's words; nothing is stored.
    let out = stack.cli_with_stdin(
        &berth(),
        &["login", "-u", "alice", "--password-stdin", &reg.addr()],
        Some(b"not-the-password\n"),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert_eq!(
        stderr(&out).trim(),
        format!(
            "Error response from daemon: login attempt to http://{}/v2/ failed with status: 401 Unauthorized",
            reg.addr()
        )
    );
    let config = stack.path("docker-config/config.json");
    let stored = || std::fs::read_to_string(&config).unwrap_or_default();
    assert!(!stored().contains(&reg.addr()), "{}", stored());

    let out = stack.cli_with_stdin(
        &berth(),
        &["login", "-u", "alice", "--password-stdin", &reg.addr()],
        Some(b"s3cret-pw\n"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("Login Succeeded"));
    assert!(
        !stderr(&out).contains("cannot check credentials"),
        "{}",
        stderr(&out)
    );
    // Stored as docker stores it.
    let cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(stack.path("docker-config/config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        cfg["auths"][reg.addr()]["auth"],
        "YWxpY2U6czNjcmV0LXB3",
        "{cfg}"
    );

    ok(&stack, &["push", &image]);
    ok(&stack, &["rmi", &image]);
    ok(&stack, &["pull", &image]);
    let tags = ok(&stack, &["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(tags.lines().any(|l| l == image), "{tags}");

    // Logged out, the entry is gone and the same pull is refused again.
    let out = ok(&stack, &["logout", &reg.addr()]);
    assert_eq!(
        out.trim(),
        format!("Removing login credentials for {}", reg.addr())
    );
    let cfg: serde_json::Value = serde_json::from_str(&stored()).unwrap();
    assert!(cfg["auths"].get(reg.addr()).is_none(), "{cfg}");
    ok(&stack, &["rmi", &image]);
    let out = stack.cli(&berth(), &["pull", &image]);
    assert_ne!(out.status.code(), Some(0), "pulled after logging out");
}

/// `berth logs X | head -1`: when the reader goes away the CLI ends as docker's
/// does (141, the code of a death by SIGPIPE), without an error message.
#[test]
fn a_reader_that_goes_away_ends_the_cli_quietly() {
    use std::io::{BufRead, BufReader};
    let _serial = serial();
    let stack = Stack::start();
    let id = ok(
        &stack,
        &[
            "run",
            "-d",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "i=0; while [ $i -lt 20000 ]; do echo line $i; i=$((i+1)); done",
        ],
    );
    let id = id.trim();
    ok(&stack, &["wait", id]);
    let mut child = Guard(Some(
        cmd(&stack, &["logs", id])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let c = child.0.as_mut().unwrap();
    let mut first = String::new();
    BufReader::new(c.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert_eq!(first, "line 0\n");
    // The reader is dropped here: the CLI's next writes fail.
    let out = child.0.take().unwrap().wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(141), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    ok(&stack, &["rm", id]);
}
