//! End to end, as root: a private berth-manager and berthd on temporary directories,
//! the busybox test image imported, then `run` through our CLI and through the real
//! docker CLI (every version installed, through API version negotiation).
//!
//! Binaries: `cargo build -p berth-manager -p berth-shim -p berth-runtime
//! -p berth-engine -p berth-cli -p berth-init` with the same CARGO_TARGET_DIR as the
//! test. The guard puts the machine back as it was even when the test fails: berthd
//! and the manager killed, every shim of the stack and its container killed, every
//! mount under the temporary directory undone, the containers' cgroups removed, and
//! the orphans this process inherits (it is a child subreaper) reaped.
//!
//! This file holds a single test on purpose: the guard reaps every zombie child of
//! the test process, which is only safe while no other test of the same binary runs
//! commands of its own.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_api::berth::manager::v1 as pb;
use berth_api::berth::manager::v1::images_client::ImagesClient;
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

/// Upper bound for what must happen eventually: a guard against hanging, not a
/// timing assertion.
const EVENTUALLY: Duration = Duration::from_secs(120);

/// The docker CLIs to try: 28 (upstream's static build) and Debian's 20.10.
const DOCKER_CLIS: [&str; 2] = ["/usr/local/bin/docker", "/usr/bin/docker"];

/// A private manager + berthd; dropping it cleans up everything they made.
struct Stack {
    dir: tempfile::TempDir,
    manager: Option<Child>,
    berthd: Option<Child>,
}

impl Stack {
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn manager_socket(&self) -> PathBuf {
        self.path("manager.sock")
    }

    fn engine_socket(&self) -> PathBuf {
        self.path("berth.sock")
    }

    fn host(&self) -> String {
        format!("unix://{}", self.engine_socket().display())
    }

    fn start() -> Stack {
        // Shims, and the containers of a killed shim, become our children once their
        // parents are gone: we must be the one who reaps them (PID 1 here does not).
        nix::sys::prctl::set_child_subreaper(true).unwrap();
        // Short: <dir>/run/tasks/<64 hex id>/shim.sock must fit a unix socket address.
        let dir = tempfile::Builder::new()
            .prefix("berth-test-")
            .rand_bytes(4)
            .tempdir_in("/tmp")
            .unwrap();
        let mut stack = Stack {
            dir,
            manager: None,
            berthd: None,
        };
        let log = |name: &str| std::fs::File::create(stack.path(name)).unwrap();
        let (mlog, elog) = (log("manager.log"), log("berthd.log"));
        let manager = Command::new(berth_testutil::binary("berth-manager"))
            .arg("--address")
            .arg(stack.manager_socket())
            .arg("--root")
            .arg(stack.path("manager"))
            .arg("--state")
            .arg(stack.path("run"))
            .arg("--runtime")
            .arg(berth_testutil::binary("berth-runtime"))
            .arg("--shim")
            .arg(berth_testutil::binary("berth-shim"))
            .args(["--log-level", "debug"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(mlog)
            .spawn()
            .expect("starting berth-manager (cargo build -p berth-manager)");
        stack.manager = Some(manager);
        let berthd = Command::new(berth_testutil::binary("berthd"))
            .arg("-H")
            .arg(stack.host())
            .arg("--manager")
            .arg(stack.manager_socket())
            .arg("--data-root")
            .arg(stack.path("engine"))
            .arg("--exec-root")
            .arg(stack.path("engine-run"))
            .arg("--init-path")
            .arg(berth_testutil::binary("berth-init"))
            .args(["--log-level", "info,berth_engine=debug"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(elog)
            .spawn()
            .expect("starting berthd (cargo build -p berth-engine)");
        stack.berthd = Some(berthd);
        stack.wait_ready();
        stack
    }

    fn logs(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.path(n)).unwrap_or_default();
        format!(
            "--- manager.log:\n{}\n--- berthd.log:\n{}",
            read("manager.log"),
            read("berthd.log")
        )
    }

    fn wait_ready(&mut self) {
        let start = Instant::now();
        loop {
            let exited = [
                ("berth-manager", &mut self.manager),
                ("berthd", &mut self.berthd),
            ]
            .into_iter()
            .find_map(|(name, child)| {
                let status = child.as_mut().and_then(|c| c.try_wait().unwrap())?;
                *child = None;
                Some(format!("{name} exited with {status}"))
            });
            if let Some(what) = exited {
                panic!("{what}\n{}", self.logs());
            }
            let manager_up = UnixStream::connect(self.manager_socket()).is_ok();
            if manager_up && ping(&self.engine_socket()) {
                return;
            }
            assert!(
                start.elapsed() < EVENTUALLY,
                "the stack did not come up\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Imports the busybox test rootfs as `busybox:latest`: through berthd's
    /// `POST /images/create?fromSrc=-` when it serves it, else through the manager.
    fn import_busybox(&self) {
        let tar = busybox_tar();
        let status = http_post(
            &self.engine_socket(),
            "/v1.47/images/create?fromSrc=-&repo=busybox&tag=latest",
            &tar,
        );
        if status == 200 {
            return;
        }
        eprintln!("berthd answered {status} to the import; importing through the manager");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let socket = self.manager_socket();
        rt.block_on(async move {
            let channel =
                tonic::transport::Endpoint::from_shared(format!("unix://{}", socket.display()))
                    .unwrap()
                    .connect()
                    .await
                    .unwrap();
            let mut msgs = vec![pb::ImportRequest {
                reference: "busybox:latest".to_string(),
                changes: vec!["CMD [\"sh\"]".to_string()],
                message: "busybox test rootfs".to_string(),
                data: vec![],
            }];
            for chunk in tar.chunks(1 << 20) {
                msgs.push(pb::ImportRequest {
                    data: chunk.to_vec(),
                    ..Default::default()
                });
            }
            ImagesClient::new(channel)
                .import(futures_util::stream::iter(msgs))
                .await
                .unwrap();
        });
    }

    /// Runs a CLI (ours or docker) against the engine, with a private docker config.
    fn cli(&self, program: &Path, args: &[&str]) -> Output {
        self.cli_with_stdin(program, args, None)
    }

    /// [`Stack::cli`] with `input` as its stdin (then closed).
    fn cli_with_stdin(&self, program: &Path, args: &[&str], input: Option<&[u8]>) -> Output {
        let mut child = Command::new(program)
            .arg("-H")
            .arg(self.host())
            .args(args)
            .env("DOCKER_CONFIG", self.path("docker-config"))
            .env_remove("DOCKER_HOST")
            .env_remove("BERTH_HOST")
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin.write_all(data).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        eprintln!(
            "$ {} {}\n  exit {:?}\n  stdout {:?}\n  stderr {:?}",
            program.display(),
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Ids of every container the stack knows of: the engine's and the manager's.
    fn container_ids(&self) -> Vec<String> {
        let mut ids = vec![];
        for d in [self.path("engine/containers"), self.path("run/tasks")] {
            for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
                ids.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        ids.sort();
        ids.dedup();
        ids
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        for child in [self.berthd.take(), self.manager.take()]
            .into_iter()
            .flatten()
        {
            let mut c = child;
            let _ = c.kill();
            let _ = c.wait();
        }
        let tasks = self.path("run/tasks");
        for e in std::fs::read_dir(&tasks).into_iter().flatten().flatten() {
            let dir = e.path();
            let pid = std::fs::read_to_string(dir.join("shim.pid"))
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok());
            if let Some(pid) = pid {
                // Only a shim that serves this directory: a stale pid file must not
                // make us kill a stranger.
                let ours = std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|c| String::from_utf8_lossy(&c).contains(&*dir.to_string_lossy()))
                    .unwrap_or(false);
                if ours {
                    let _ = nix::sys::signal::kill(
                        Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
            let id = e.file_name().to_string_lossy().into_owned();
            let _ = Command::new(berth_testutil::binary("berth-runtime"))
                .arg("--root")
                .arg(self.path("run/runtime"))
                .args(["delete", "--force", &id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        for id in self.container_ids() {
            berth_testutil::remove_cgroup_everywhere(&format!("berth/{id}"));
        }
        reap_orphans();
        berth_testutil::unmount_below(self.dir.path());
    }
}

/// Reaps our zombie children (shims and containers we inherited as a subreaper),
/// until none is left or a few seconds have passed.
fn reap_orphans() {
    let start = Instant::now();
    loop {
        let zombies = zombie_children();
        for pid in &zombies {
            let _ = waitpid(Pid::from_raw(*pid), Some(WaitPidFlag::WNOHANG));
        }
        if zombies.is_empty() || start.elapsed() > Duration::from_secs(5) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn zombie_children() -> Vec<i32> {
    let me = std::process::id().to_string();
    let mut out = vec![];
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let mut rest = stat[close + 1..].split_whitespace();
        let state = rest.next().unwrap_or("");
        let ppid = rest.next().unwrap_or("");
        if state == "Z" && ppid == me {
            out.push(pid);
        }
    }
    out
}

/// Whether berthd answers `GET /_ping` with OK.
fn ping(socket: &Path) -> bool {
    let Ok(mut s) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"GET /_ping HTTP/1.1\r\nHost: berth\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp.starts_with("HTTP/1.1 200") && resp.ends_with("OK")
}

/// POSTs `body` to berthd and returns the status code (0 when there was no answer).
fn http_post(socket: &Path, path: &str, body: &[u8]) -> u16 {
    let Ok(mut s) = UnixStream::connect(socket) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: berth\r\nContent-Type: application/x-tar\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if s.write_all(head.as_bytes()).is_err() {
        return 0;
    }
    // An endpoint that refuses the request may answer and close before reading the
    // body: its answer is still there to read.
    let _ = s.write_all(body);
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// The busybox test rootfs as a tar (symlinks kept as links).
fn busybox_tar() -> Vec<u8> {
    let tmp = tempfile::Builder::new()
        .prefix("berth-test-rootfs")
        .tempdir()
        .unwrap();
    let rootfs = tmp.path().join("rootfs");
    berth_testutil::busybox_rootfs(&rootfs).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.append_dir_all(".", &rootfs).unwrap();
    b.into_inner().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn run_through_our_cli_and_the_docker_cli() {
    berth_testutil::require_root!();
    let stack = Stack::start();
    stack.import_busybox();

    let berth = berth_testutil::binary("berth");
    let out = stack.cli(
        &berth,
        &["run", "--rm", "busybox", "echo", "hello", "world"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stack.logs());
    assert_eq!(stdout(&out), "hello world\n");
    let out = stack.cli(&berth, &["run", "--rm", "busybox", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    let out = stack.cli_with_stdin(
        &berth,
        &["run", "-i", "--rm", "busybox", "cat"],
        Some(b"abc\n"),
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), "abc\n");
    let out = stack.cli(
        &berth,
        &[
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "echo out; echo err >&2",
        ],
    );
    assert_eq!(stdout(&out), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");

    let dockers: Vec<&str> = DOCKER_CLIS
        .into_iter()
        .filter(|p| Path::new(p).is_file())
        .collect();
    assert!(
        !dockers.is_empty(),
        "no docker CLI installed (apt-get install docker.io)"
    );
    for docker in dockers {
        let docker = Path::new(docker);
        let out = stack.cli(
            docker,
            &["run", "--rm", "busybox", "echo", "hello", "world"],
        );
        assert_eq!(out.status.code(), Some(0), "{}", docker.display());
        assert_eq!(stdout(&out), "hello world\n", "{}", docker.display());
        let out = stack.cli(docker, &["run", "--rm", "busybox", "sh", "-c", "exit 3"]);
        assert_eq!(out.status.code(), Some(3), "{}", docker.display());
        let out = stack.cli_with_stdin(
            docker,
            &["run", "-i", "--rm", "busybox", "cat"],
            Some(b"abc\n"),
        );
        assert_eq!(out.status.code(), Some(0), "{}", docker.display());
        assert_eq!(stdout(&out), "abc\n", "{}", docker.display());
    }

    // --rm removes them all (berthd does it once they exit).
    let start = Instant::now();
    loop {
        let out = stack.cli(&berth, &["ps", "-a", "-q"]);
        if out.status.success() && stdout(&out).is_empty() {
            break;
        }
        assert!(start.elapsed() < EVENTUALLY, "containers left after --rm");
        std::thread::sleep(Duration::from_millis(100));
    }
}
