//! End to end, as root: images, volumes and events through our CLI and the real
//! docker CLIs, against private berth-manager + berthd stacks on temporary
//! directories (the Stack guard of e2e_stack.rs), a second fresh stack to load saved
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

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

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

    /// Imports the busybox test rootfs as `busybox:latest` through berthd's
    /// `POST /images/create?fromSrc=-` (what `docker import` sends).
    fn import_busybox(&self, tar: &[u8]) {
        let status = http_post(
            &self.engine_socket(),
            "/v1.47/images/create?fromSrc=-&repo=busybox&tag=latest&changes=CMD%20%5B%22sh%22%5D",
            tar,
        );
        assert_eq!(status, 200, "import through berthd\n{}", self.logs());
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

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

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
    a.import_busybox(&tar);
    let berth = berth_testutil::binary("berth");
    let dockers: Vec<PathBuf> = DOCKER_CLIS
        .into_iter()
        .filter(|p| Path::new(p).is_file())
        .map(PathBuf::from)
        .collect();
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
