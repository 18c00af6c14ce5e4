//! The creation dance against the real kernel: `create`, `start`, `run` and
//! `exec` of busybox containers, as root. Each test uses its own `--root`, unique
//! container ids and cgroups of their own (`berth_testutil::test_cgroup`); a
//! guard deletes the container and removes its cgroup whatever happens.

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_testutil::{Bundle, CgroupGuard};
use serde_json::{json, Value};

/// Upper bound for any runtime command, so that a broken runtime fails the test
/// instead of hanging it (not a timing assertion).
const HANG: Duration = Duration::from_secs(60);

/// A private state root and the runtime binary.
struct Rt {
    root: tempfile::TempDir,
    bin: PathBuf,
}

impl Rt {
    fn new() -> Rt {
        Rt {
            root: tempfile::Builder::new()
                .prefix("berth-test-root")
                .tempdir()
                .unwrap(),
            bin: berth_testutil::binary("berth-runtime"),
        }
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(self.root.path());
        c.stdin(Stdio::null());
        c
    }

    /// Run with stdio captured. Only for commands that do not leave a container
    /// holding our pipes (not `create`: the container inherits its stdio).
    fn run(&self, args: &[&str]) -> Output {
        let child = self
            .cmd()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_output(child)
    }

    /// `create`, the container's stdout and stderr going to `out` (or nowhere).
    fn create(&self, c: &Ctr, out: Option<&Path>, extra: &[&str]) -> Output {
        let mut cmd = self.cmd();
        cmd.arg("create").arg("--bundle").arg(c.bundle.path());
        cmd.args(extra).arg(&c.id);
        match out {
            Some(p) => {
                let f = std::fs::File::create(p).unwrap();
                cmd.stdout(f.try_clone().unwrap()).stderr(f);
            }
            None => {
                cmd.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        let status = wait_status(cmd.spawn().unwrap());
        Output {
            status,
            stdout: Vec::new(),
            stderr: Vec::new(),
        }
    }

    /// `create` with stderr captured in a file (the container's stdout goes
    /// nowhere), for error messages.
    fn create_err(&self, bundle: &Path, id: &str) -> (Option<i32>, String) {
        let errfile = self.root.path().join(format!("{id}.stderr"));
        let mut cmd = self.cmd();
        cmd.arg("create").arg("--bundle").arg(bundle).arg(id);
        cmd.stdout(Stdio::null())
            .stderr(std::fs::File::create(&errfile).unwrap());
        let status = wait_status(cmd.spawn().unwrap());
        let err = std::fs::read_to_string(&errfile).unwrap_or_default();
        let _ = std::fs::remove_file(&errfile);
        (status.code(), err)
    }

    fn state(&self, id: &str) -> Value {
        let out = self.run(&["state", id]);
        assert!(out.status.success(), "state: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn status(&self, id: &str) -> String {
        self.state(id)["status"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Wait (bounded) until the container reaches `want` (it may not exist yet).
    fn wait_status(&self, id: &str, want: &str) -> bool {
        let deadline = Instant::now() + HANG;
        while Instant::now() < deadline {
            let out = self.run(&["state", id]);
            let st: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            if st["status"] == want {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Run with stdio going nowhere (for commands that leave a process holding
    /// it, such as `exec -d`); stderr is returned.
    fn run_quiet(&self, args: &[&str]) -> (Option<i32>, String) {
        let errfile = self.root.path().join("quiet.stderr");
        let mut cmd = self.cmd();
        cmd.args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&errfile).unwrap());
        let status = wait_status(cmd.spawn().unwrap());
        let err = std::fs::read_to_string(&errfile).unwrap_or_default();
        (status.code(), err)
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.root.path().join(id)
    }
}

fn wait_status(mut child: Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + HANG;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("runtime command hung");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn wait_output(mut child: Child) -> Output {
    // Read both pipes to the end (the command exits and closes them), bounded by
    // the same hang guard.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let deadline = Instant::now() + HANG;
    let mut o = Vec::new();
    let mut e = Vec::new();
    set_nonblocking(&out);
    set_nonblocking(&err);
    let mut open = (true, true);
    while open.0 || open.1 {
        let mut buf = [0u8; 8192];
        if open.0 {
            match out.read(&mut buf) {
                Ok(0) => open.0 = false,
                Ok(n) => o.extend_from_slice(&buf[..n]),
                Err(ref x) if x.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => open.0 = false,
            }
        }
        if open.1 {
            match err.read(&mut buf) {
                Ok(0) => open.1 = false,
                Ok(n) => e.extend_from_slice(&buf[..n]),
                Err(ref x) if x.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => open.1 = false,
            }
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "runtime command hung; stdout so far: {}, stderr: {}",
                String::from_utf8_lossy(&o),
                String::from_utf8_lossy(&e)
            );
        }
        if open.0 || open.1 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let status = wait_status(child);
    Output {
        status,
        stdout: o,
        stderr: e,
    }
}

fn set_nonblocking(f: &impl AsRawFd) {
    // SAFETY: F_GETFL/F_SETFL only change the file status flags of a valid fd.
    unsafe {
        let fl = libc::fcntl(f.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(f.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A busybox container: bundle, unique id, cgroup guard. Dropping it deletes the
/// container (force) and removes its cgroup.
struct Ctr<'a> {
    rt: &'a Rt,
    id: String,
    bundle: Bundle,
    _cgroup: CgroupGuard,
}

impl<'a> Ctr<'a> {
    fn new(rt: &'a Rt, args: &[&str], edit: impl FnOnce(&mut Value)) -> Ctr<'a> {
        let id = berth_testutil::unique_name("berth-test");
        let mut bundle = Bundle::busybox(&id, args).unwrap();
        // This host's root lacks CAP_SYS_RESOURCE: the default config's
        // 1048576 open files would be refused (by runc too).
        bundle.config["process"]["rlimits"] =
            json!([{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]);
        edit(&mut bundle.config);
        bundle.write().unwrap();
        let cg = CgroupGuard(bundle.cgroup());
        Ctr {
            rt,
            id,
            bundle,
            _cgroup: cg,
        }
    }

    fn bundle_arg(&self) -> String {
        self.bundle.path().to_string_lossy().into_owned()
    }

    /// `run` in the foreground with output captured.
    fn run(&self, extra: &[&str]) -> Output {
        let b = self.bundle_arg();
        let mut args = vec!["run", "--bundle", &b];
        args.extend_from_slice(extra);
        args.push(&self.id);
        self.rt.run(&args)
    }

    fn pid(&self) -> i32 {
        self.rt.state(&self.id)["pid"].as_i64().unwrap_or(0) as i32
    }

    fn cgroup(&self) -> String {
        self.bundle.cgroup()
    }
}

impl Drop for Ctr<'_> {
    fn drop(&mut self) {
        let _ = self.rt.run(&["delete", "--force", &self.id]);
    }
}

/// Every cgroup directory for `relative` in any hierarchy.
fn cgroup_dirs(relative: &str) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .map(|e| e.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    roots.push(PathBuf::from("/sys/fs/cgroup"));
    roots
        .into_iter()
        .map(|r| r.join(relative))
        .filter(|d| d.is_dir())
        .collect()
}

/// Live (not zombie) processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
        .filter(|pid| *pid != me && !berth_runtime::state::is_zombie(*pid))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .collect()
}

fn gone(pid: i32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists() || berth_runtime::state::is_zombie(pid)
}

#[test]
fn run_prints_pid_one_its_hostname_and_only_its_processes() {
    berth_testutil::require_root!();
    let rt = Rt::new();
    let c = Ctr::new(
        &rt,
        &["sh", "-c", "echo $$; hostname; ps -o pid,comm; true"],
        |_| {},
    );
    let out = c.run(&[]);
    assert!(out.status.success(), "run: {}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.first(), Some(&"1"), "{text}");
    assert_eq!(lines.get(1), Some(&"testhost"), "{text}");
    // ps sees only the container: sh as PID 1 and ps itself.
    let procs: Vec<Vec<&str>> = lines[3..]
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(procs.len(), 2, "{text}");
    assert_eq!(procs[0], ["1", "sh"], "{text}");
    assert_eq!(procs[1][1], "ps", "{text}");
    // A foreground run deletes the container afterwards.
    assert!(!rt.dir(&c.id).exists(), "state dir left");
    assert!(cgroup_dirs(&c.cgroup()).is_empty(), "cgroup left");
}

#[test]
fn created_container_has_its_own_namespaces_and_a_sealed_init() {
    berth_testutil::require_root!();
    let rt = Rt::new();
    let c = Ctr::new(&rt, &["sleep", "1000"], |_| {});
    let pid_file = rt.root.path().join("init.pid");
    let out = rt.create(&c, None, &["--pid-file", pid_file.to_str().unwrap()]);
    assert!(out.status.success(), "create failed");
    let st = rt.state(&c.id);
    assert_eq!(st["status"], "created");
    let pid = c.pid();
    assert!(pid > 0);
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        pid.to_string()
    );
    assert!(rt.dir(&c.id).join("exec.fifo").exists());
    for ns in ["pid", "mnt", "uts", "ipc", "net", "cgroup"] {
        let host = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        let ctr = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
        assert_ne!(host, ctr, "{ns} namespace is the host's");
    }
    let saved: Value =
        serde_json::from_slice(&std::fs::read(rt.dir(&c.id).join("state.json")).unwrap()).unwrap();
    assert_eq!(saved["init_process_pid"].as_i64(), Some(pid as i64));
    assert!(saved["init_process_start"].as_u64().unwrap_or(0) > 0);
    for (key, ns) in [
        ("NEWPID", "pid"),
        ("NEWNS", "mnt"),
        ("NEWUTS", "uts"),
        ("NEWIPC", "ipc"),
        ("NEWNET", "net"),
        ("NEWCGROUP", "cgroup"),
    ] {
        assert_eq!(
            saved["namespace_paths"][key].as_str(),
            Some(format!("/proc/{pid}/ns/{ns}").as_str())
        );
    }
    assert!(saved["namespace_paths"]["NEWUSER"].is_null());
    assert!(!saved["cgroup_paths"].as_object().unwrap().is_empty());
    assert_eq!(saved["owner"], "root");
    assert!(Path::new(saved["bundle"].as_str().unwrap()).is_absolute());
    assert!(Path::new(saved["rootfs"].as_str().unwrap()).is_absolute());
    // The init runs from a file no one can write (a read-only overlay of the
    // binary, or a sealed memfd copy), never from the runtime's file on disk.
    let exe = format!("/proc/{pid}/exe");
    let on_disk = std::fs::metadata(&rt.bin).unwrap();
    let running = std::fs::metadata(&exe).unwrap();
    assert!(
        (running.dev(), running.ino()) != (on_disk.dev(), on_disk.ino()),
        "the init runs from the runtime's file on disk"
    );
    let write = std::fs::OpenOptions::new()
        .write(true)
        .open(&exe)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"x"));
    assert!(write.is_err(), "{exe} is writable");
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .unwrap()
            .trim(),
        "berth:[2:INIT]"
    );
    // The init is in the container's cgroup.
    let procs: Vec<String> = cgroup_dirs(&c.cgroup())
        .iter()
        .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
        .collect();
    assert!(procs
        .iter()
        .any(|p| p.lines().any(|l| l == pid.to_string())));
}

#[test]
fn create_then_start_runs_the_process() {
    berth_testutil::require_root!();
    let rt = Rt::new();
    let c = Ctr::new(&rt, &["sh", "-c", "echo hello-from-$(hostname)"], |_| {});
    let log = rt.root.path().join("out.log");
    assert!(rt.create(&c, Some(&log), &[]).status.success());
    assert_eq!(rt.status(&c.id), "created");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "",
        "ran before start"
    );
    let out = rt.run(&["start", &c.id]);
    assert!(out.status.success(), "start: {}", stderr(&out));
    assert!(rt.wait_status(&c.id, "stopped"), "never stopped");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "hello-from-testhost\n"
    );
    assert!(!rt.dir(&c.id).join("exec.fifo").exists());
    let out = rt.run(&["start", &c.id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot start a container that has stopped"),
        "{}",
        stderr(&out)
    );
    let out = rt.run(&["delete", &c.id]);
    assert!(out.status.success(), "delete: {}", stderr(&out));
    assert!(!rt.dir(&c.id).exists());
}

#[test]
fn exit_codes_propagate_through_run() {
    berth_testutil::require_root!();
    let rt = Rt::new();
    let c = Ctr::new(&rt, &["sh", "-c", "exit 3"], |_| {});
    assert_eq!(c.run(&[]).status.code(), Some(3));

    // A process killed by a signal: 128 + 9. (PID 1 cannot SIGKILL itself from
    // inside its namespace, so the host does it.)
    let c = Ctr::new(&rt, &["sleep", "1000"], |_| {});
    let pid_file = rt.root.path().join("run.pid");
    let b = c.bundle_arg();
    let child = rt
        .cmd()
        .args([
            "run",
            "--bundle",
            &b,
            "--pid-file",
            pid_file.to_str().unwrap(),
            &c.id,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + HANG;
    let pid = loop {
        if let Ok(s) = std::fs::read_to_string(&pid_file) {
            if let Ok(p) = s.trim().parse::<i32>() {
                break p;
            }
        }
        assert!(Instant::now() < deadline, "no pid file");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(rt.wait_status(&c.id, "running"));
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let out = wait_output_stderr(child);
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    assert!(!rt.dir(&c.id).exists());

    // A signal to `run` reaches the container's process.
    // (PID 1 gets only the signals it handles: wait until the trap is set.)
    let c = Ctr::new(
        &rt,
        &[
            "sh",
            "-c",
            "trap 'exit 42' TERM; touch /tmp/trap-set; while true; do sleep 0.1; done",
        ],
        |_| {},
    );
    let b = c.bundle_arg();
    let child = rt
        .cmd()
        .args(["run", "--bundle", &b, &c.id])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ready = c.bundle.rootfs().join("tmp/trap-set");
    let deadline = Instant::now() + HANG;
    while !ready.exists() {
        assert!(Instant::now() < deadline, "the trap was never set");
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = wait_output_stderr(child);
    assert_eq!(out.status.code(), Some(42), "{}", stderr(&out));
}

fn wait_output_stderr(mut child: Child) -> Output {
    let mut err = child.stderr.take().unwrap();
    let status = wait_status(child);
    let mut e = Vec::new();
    let _ = err.read_to_end(&mut e);
    Output {
        status,
        stdout: Vec::new(),
        stderr: e,
    }
}

fn chown_tree(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
    let meta = std::fs::symlink_metadata(p).unwrap();
    if meta.is_dir() {
        for e in std::fs::read_dir(p).unwrap() {
            chown_tree(&e.unwrap().path(), uid, gid);
        }
    }
}

#[test]
fn user_namespace_maps_root_to_an_unprivileged_host_uid() {
    berth_testutil::require_root!();
    const HOST: u32 = 100000;
    let rt = Rt::new();
    let userns = |cfg: &mut Value| {
        cfg["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        cfg["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": HOST, "size": 65536}]);
        cfg["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": HOST, "size": 65536}]);
    };
    let prepare = |c: &Ctr| {
        // The container's root must be able to reach and read its rootfs.
        chown_tree(&c.bundle.rootfs(), HOST, HOST);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(c.bundle.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    };

    // A bind source below a directory only the host's root may enter (0700):
    // the runtime clones it on the host, the init attaches the clone.
    let hidden = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        hidden.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    std::fs::create_dir(hidden.path().join("inner")).unwrap();
    std::fs::write(hidden.path().join("inner/file"), "behind 0700\n").unwrap();
    let c = Ctr::new(
        &rt,
        &[
            "sh",
            "-c",
            "id; cat /proc/self/uid_map; echo x > /tmp/w && cat /tmp/w; ls /dev/null; \
             cat /hidden/file",
        ],
        |cfg| {
            userns(cfg);
            cfg["mounts"].as_array_mut().unwrap().push(json!({
                "destination": "/hidden", "type": "bind",
                "source": hidden.path().join("inner"), "options": ["rbind", "ro"]
            }));
        },
    );
    prepare(&c);
    let out = c.run(&[]);
    assert!(out.status.success(), "run: {}", stderr(&out));
    let text = stdout(&out);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("uid=0(root) gid=0(root)"), "{text}");
    assert_eq!(
        lines
            .next()
            .map(|l| l.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["0", "100000", "65536"]),
        "{text}"
    );
    assert_eq!(lines.next(), Some("x"), "{text}");
    assert_eq!(lines.next(), Some("/dev/null"), "{text}");
    assert_eq!(lines.next(), Some("behind 0700"), "{text}");

    let c = Ctr::new(&rt, &["sleep", "1000"], userns);
    prepare(&c);
    assert!(rt.create(&c, None, &[]).status.success());
    assert!(rt.run(&["start", &c.id]).status.success());
    let pid = c.pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let uids: Vec<&str> = uid_line.split_whitespace().skip(1).collect();
    assert_eq!(uids, vec!["100000"; 4], "{uid_line}");
    let host_user = std::fs::read_link("/proc/self/ns/user").unwrap();
    assert_ne!(
        std::fs::read_link(format!("/proc/{pid}/ns/user")).unwrap(),
        host_user
    );
    assert!(rt.state(&c.id)["status"] == "running");
    let saved: Value =
        serde_json::from_slice(&std::fs::read(rt.dir(&c.id).join("state.json")).unwrap()).unwrap();
    assert_eq!(
        saved["namespace_paths"]["NEWUSER"].as_str(),
        Some(format!("/proc/{pid}/ns/user").as_str())
    );
    // exec joins the user namespace too.
    let out = rt.run(&["exec", &c.id, "id", "-u"]);
    assert!(out.status.success(), "exec: {}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "0");
}

/// Receive one fd with SCM_RIGHTS.
fn recv_fd(sock: &std::os::unix::net::UnixStream) -> OwnedFd {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::io::IoSliceMut;
    use std::os::fd::FromRawFd;
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .unwrap();
    for c in msg.cmsgs().unwrap() {
        if let ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: the kernel just installed this fd for us; we own it.
            return unsafe { OwnedFd::from_raw_fd(fds[0]) };
        }
    }
    panic!("no fd received");
}

/// Read from `fd` into `text` until it contains `want` (bounded by HANG).
fn read_until(fd: &OwnedFd, text: &mut String, want: &str) {
    let deadline = Instant::now() + HANG;
    while !text.contains(want) {
        assert!(
            Instant::now() < deadline,
            "never saw {want:?}; got {text:?}"
        );
        let mut pfd = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(fd),
            nix::poll::PollFlags::POLLIN,
        )];
        let n = nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(100u16)).unwrap_or(0);
        if n == 0 {
            continue;
        }
        let mut buf = [0u8; 4096];
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) | Err(_) => panic!("pty closed; got {text:?}"),
            Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
}

#[test]
fn terminal_master_arrives_over_the_console_socket() {
    berth_testutil::require_root!();
    let rt = Rt::new();
    let c = Ctr::new(&rt, &["sh"], |cfg| {
        cfg["process"]["terminal"] = json!(true);
        cfg["process"]["consoleSize"] = json!({"height": 30, "width": 100});
    });
    let sock_path = rt.root.path().join("console.sock");
    let listener = UnixListener::bind(&sock_path).unwrap();
    let out = rt.create(&c, None, &["--console-socket", sock_path.to_str().unwrap()]);
    assert!(out.status.success(), "create with a console socket failed");
    let (conn, _) = listener.accept().unwrap();
    let master = recv_fd(&conn);
    assert!(rt.run(&["start", &c.id]).status.success());
    nix::unistd::write(&master, b"echo hi-$((40+2)); stty size; tty\n").unwrap();
    let mut text = String::new();
    read_until(&master, &mut text, "hi-42");
    read_until(&master, &mut text, "/dev/pts/");
    assert!(text.contains("30 100"), "{text}");
    nix::unistd::write(&master, b"exit\n").unwrap();
    assert!(rt.wait_status(&c.id, "stopped"));

    // A terminal without a console socket is refused by create.
    let c = Ctr::new(&rt, &["sh"], |cfg| cfg["process"]["terminal"] = json!(true));
    let (code, err) = rt.create_err(c.bundle.path(), &c.id);
    assert_eq!(code, Some(1));
    assert!(err.contains("--console-socket"), "{err}");
    assert!(!rt.dir(&c.id).exists());
}

#[test]
fn exec_joins_the_container_and_reports_exit_codes() {
    berth_testutil::require_root!();
    let rt = Rt::new();
    let c = Ctr::new(&rt, &["sleep", "1000"], |_| {});
    assert!(rt.create(&c, None, &[]).status.success());
    assert!(rt.run(&["start", &c.id]).status.success());
    let init = c.pid();

    let out = rt.run(&["exec", &c.id, "ps", "-o", "pid,comm"]);
    assert!(out.status.success(), "exec: {}", stderr(&out));
    let text = stdout(&out);
    let first: Vec<&str> = text
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(first, ["1", "sleep"], "{text}");

    let out = rt.run(&[
        "exec",
        "--env",
        "FOO=bar",
        "--cwd",
        "/tmp",
        &c.id,
        "sh",
        "-c",
        "echo $FOO $(pwd) $(hostname)",
    ]);
    assert_eq!(stdout(&out).trim(), "bar /tmp testhost", "{}", stderr(&out));

    assert_eq!(
        rt.run(&["exec", &c.id, "sh", "-c", "exit 5"]).status.code(),
        Some(5)
    );

    // As runc: 255 for an exec the runtime could not carry out.
    let out = rt.run(&["exec", &c.id, "no-such-program"]);
    assert_eq!(out.status.code(), Some(255));
    let err = stderr(&out);
    assert!(
        err.contains("no-such-program") && err.contains("not found"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let out = rt.run(&["exec", &c.id, "/etc/passwd"]);
    assert_eq!(out.status.code(), Some(255), "{}", stderr(&out));

    let pid_file = rt.root.path().join("exec.pid");
    let (code, err) = rt.run_quiet(&[
        "exec",
        "-d",
        "--pid-file",
        pid_file.to_str().unwrap(),
        &c.id,
        "sleep",
        "1000",
    ]);
    assert_eq!(code, Some(0), "exec -d: {err}");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!gone(pid));
    for ns in ["pid", "mnt", "net", "uts", "ipc"] {
        assert_eq!(
            std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap(),
            std::fs::read_link(format!("/proc/{init}/ns/{ns}")).unwrap(),
            "{ns}"
        );
    }
    let in_cgroup = cgroup_dirs(&c.cgroup()).iter().any(|d| {
        std::fs::read_to_string(d.join("cgroup.procs"))
            .map(|p| p.lines().any(|l| l == pid.to_string()))
            .unwrap_or(false)
    });
    assert!(in_cgroup, "exec'd process is not in the container's cgroup");

    // A process.json replaces the whole process.
    let pj = rt.root.path().join("process.json");
    std::fs::write(
        &pj,
        json!({"args": ["sh", "-c", "echo from-json $X"], "env": ["X=1", "PATH=/bin"], "cwd": "/", "user": {"uid": 0, "gid": 0}})
            .to_string(),
    )
    .unwrap();
    let out = rt.run(&["exec", "--process", pj.to_str().unwrap(), &c.id]);
    assert_eq!(stdout(&out).trim(), "from-json 1", "{}", stderr(&out));

    // The init being gone, exec is refused.
    let out = rt.run(&["kill", &c.id, "KILL"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(rt.wait_status(&c.id, "stopped"));
    let out = rt.run(&["exec", &c.id, "true"]);
    assert_eq!(out.status.code(), Some(255));
    assert!(
        stderr(&out).contains("cannot exec in a stopped container"),
        "{}",
        stderr(&out)
    );
}

/// Assert that a failed create left nothing behind for `id`.
fn assert_nothing_left(rt: &Rt, id: &str, cgroup: &str) {
    assert!(!rt.dir(id).exists(), "state dir of {id} left");
    assert!(cgroup_dirs(cgroup).is_empty(), "cgroup {cgroup} left");
    let procs = processes_mentioning(id);
    assert!(procs.is_empty(), "processes left for {id}: {procs:?}");
}

#[test]
fn bad_input_is_one_line_exit_one_and_leaves_nothing() {
    berth_testutil::require_root!();
    let rt = Rt::new();
    let one_line = |err: &str| {
        assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");
    };

    let c = Ctr::new(&rt, &["true"], |_| {});
    std::fs::write(c.bundle.path().join("config.json"), "{ not json").unwrap();
    let (code, err) = rt.create_err(c.bundle.path(), &c.id);
    assert_eq!(code, Some(1));
    one_line(&err);
    assert!(err.contains("config.json"), "{err}");
    assert_nothing_left(&rt, &c.id, &c.cgroup());

    let c = Ctr::new(&rt, &["true"], |cfg| {
        cfg["root"]["path"] = json!("no-such-rootfs")
    });
    let (code, err) = rt.create_err(c.bundle.path(), &c.id);
    assert_eq!(code, Some(1));
    one_line(&err);
    assert!(err.contains("no-such-rootfs"), "{err}");
    assert_nothing_left(&rt, &c.id, &c.cgroup());

    let c = Ctr::new(&rt, &["true"], |cfg| {
        cfg["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "bogus"}))
    });
    let (code, err) = rt.create_err(c.bundle.path(), &c.id);
    assert_eq!(code, Some(1));
    one_line(&err);
    assert!(err.contains("unknown namespace type \"bogus\""), "{err}");
    assert_nothing_left(&rt, &c.id, &c.cgroup());

    let c = Ctr::new(&rt, &["true"], |cfg| {
        cfg["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "network", "path": "/proc/1/ns/nonexistent"}))
    });
    let (code, err) = rt.create_err(c.bundle.path(), &c.id);
    assert_eq!(code, Some(1));
    one_line(&err);
    assert_nothing_left(&rt, &c.id, &c.cgroup());

    let c = Ctr::new(&rt, &["true"], |cfg| {
        cfg["process"]["cwd"] = json!("relative/dir")
    });
    let (code, err) = rt.create_err(c.bundle.path(), &c.id);
    assert_eq!(code, Some(1));
    one_line(&err);
    assert!(err.contains("relative/dir"), "{err}");
    assert_nothing_left(&rt, &c.id, &c.cgroup());

    let missing = rt.root.path().join("no-such-bundle");
    let (code, err) = rt.create_err(&missing, "berth-test-nobundle");
    assert_eq!(code, Some(1));
    one_line(&err);
    assert!(err.contains("no-such-bundle"), "{err}");
    assert_nothing_left(
        &rt,
        "berth-test-nobundle",
        &berth_testutil::test_cgroup("berth-test-nobundle"),
    );

    // A missing program fails create (not start), and everything is undone.
    let c = Ctr::new(&rt, &["no-such-program"], |_| {});
    let (code, err) = rt.create_err(c.bundle.path(), &c.id);
    assert_eq!(code, Some(1));
    one_line(&err);
    assert!(err.contains("executable file not found"), "{err}");
    assert_nothing_left(&rt, &c.id, &c.cgroup());

    // A failure inside the init (a mount the kernel refuses) is reported and
    // undone: the init is killed, the cgroup and the state dir removed.
    let c = Ctr::new(&rt, &["true"], |cfg| {
        cfg["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/mnt", "type": "no-such-fs", "source": "x"}))
    });
    let (code, err) = rt.create_err(c.bundle.path(), &c.id);
    assert_eq!(code, Some(1));
    one_line(&err);
    assert!(err.contains("no-such-fs") && err.contains("/mnt"), "{err}");
    assert_nothing_left(&rt, &c.id, &c.cgroup());

    // A duplicate id is refused, and the existing container is untouched.
    let c = Ctr::new(&rt, &["sleep", "1000"], |_| {});
    assert!(rt.create(&c, None, &[]).status.success());
    let pid = c.pid();
    let (code, err) = rt.create_err(c.bundle.path(), &c.id);
    assert_eq!(code, Some(1));
    one_line(&err);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(rt.status(&c.id), "created");
    assert_eq!(c.pid(), pid);
    assert!(!cgroup_dirs(&c.cgroup()).is_empty());
}

#[test]
fn no_host_fd_reaches_the_container() {
    berth_testutil::require_root!();
    let rt = Rt::new();
    let extra = std::fs::File::open("/").unwrap();
    let extra_fd = extra.as_raw_fd();
    let run_with_fds = |c: &Ctr, args: &[&str]| {
        let b = c.bundle_arg();
        let mut cmd = rt.cmd();
        cmd.arg("run").arg("--bundle").arg(&b).args(args).arg(&c.id);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        // SAFETY: between fork and exec the closure only calls dup2 and fcntl,
        // which are async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                // Host fds the caller leaked on purpose: 3, 4 and 7 (not CLOEXEC).
                for target in [3, 4, 7] {
                    // dup2 onto itself keeps FD_CLOEXEC: clear it explicitly.
                    if libc::dup2(extra_fd, target) < 0 || libc::fcntl(target, libc::F_SETFD, 0) < 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        wait_output(cmd.spawn().unwrap())
    };
    // `ls /proc/1/fd` lists the fds of sh (PID 1), not those of ls itself (the
    // trailing `true` keeps sh from exec'ing ls).
    let fds = |out: &Output| {
        let mut v: Vec<i32> = stdout(out)
            .split_whitespace()
            .filter_map(|s| s.parse().ok())
            .collect();
        v.sort();
        v
    };
    let c = Ctr::new(&rt, &["sh", "-c", "ls /proc/1/fd; true"], |_| {});
    let out = run_with_fds(&c, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fds(&out), [0, 1, 2], "{}", stdout(&out));

    let c = Ctr::new(&rt, &["sh", "-c", "ls /proc/1/fd; true"], |_| {});
    let out = run_with_fds(&c, &["--preserve-fds", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fds(&out), [0, 1, 2, 3], "{}", stdout(&out));

    // A cwd through a leaked fd would be outside the root: refused.
    let c = Ctr::new(&rt, &["true"], |cfg| {
        cfg["process"]["cwd"] = json!("/proc/self/fd/3")
    });
    let out = run_with_fds(&c, &["--preserve-fds", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("outside"), "{}", stderr(&out));
    assert!(!rt.dir(&c.id).exists());
    drop(extra);
}

#[test]
fn mounts_devices_and_paths_follow_the_spec() {
    berth_testutil::require_root!();
    let rt = Rt::new();
    let host_dir = tempfile::Builder::new()
        .prefix("berth-test-vol")
        .tempdir()
        .unwrap();
    std::fs::write(host_dir.path().join("file"), "from-host\n").unwrap();
    let vol = host_dir.path().to_string_lossy().into_owned();
    let script = "cat /vol/file; touch /vol/x 2>/dev/null || echo vol-ro; \
        touch /sys/x 2>/dev/null || echo sys-ro; \
        wc -c < /proc/timer_list; ls /sys/firmware | wc -l; \
        touch /proc/sys/x 2>/dev/null || echo procsys-ro; \
        ls /sys/fs/cgroup >/dev/null && echo cgroup-ok; \
        touch /root/x 2>/dev/null || echo root-ro; \
        ls -l /dev/null | cut -c1; readlink /dev/fd; \
        cat /proc/sys/net/ipv4/ip_unprivileged_port_start; \
        mount | grep ' /dev/shm ' | grep -c nosuid";
    let c = Ctr::new(&rt, &["sh", "-c", script], |cfg| {
        cfg["mounts"].as_array_mut().unwrap().push(
            json!({"destination": "/vol", "type": "bind", "source": vol, "options": ["rbind", "ro", "nosuid", "nodev"]}),
        );
        cfg["root"]["readonly"] = json!(true);
        cfg["linux"]["sysctl"] = json!({"net.ipv4.ip_unprivileged_port_start": "80"});
    });
    let out = c.run(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<String> = stdout(&out).lines().map(|l| l.trim().to_string()).collect();
    assert_eq!(
        lines,
        [
            "from-host",
            "vol-ro",
            "sys-ro",
            "0",
            "0",
            "procsys-ro",
            "cgroup-ok",
            "root-ro",
            "c",
            "/proc/self/fd",
            "80",
            "1"
        ],
        "{}",
        stdout(&out)
    );
    // Nothing of the container's mounts shows on the host.
    let host_mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!host_mounts.contains(&c.bundle_arg()));
}

#[test]
fn hooks_run_at_their_stages_with_the_state() {
    berth_testutil::require_root!();
    let rt = Rt::new();
    let logs = tempfile::Builder::new()
        .prefix("berth-test-hooks")
        .tempdir()
        .unwrap();
    let dir = logs.path().to_string_lossy().into_owned();
    let c = Ctr::new(&rt, &["true"], |cfg| {
        let host = |name: &str| json!([{"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {dir}/{name}")]}]);
        cfg["hooks"] = json!({
            "prestart": host("prestart"),
            "createRuntime": host("createRuntime"),
            "createContainer": host("createContainer"),
            // Resolved in the container, after the pivot.
            "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "cat > /tmp/startContainer"]}],
            "poststart": host("poststart"),
            "poststop": host("poststop"),
        });
    });
    let out = c.run(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let read = |p: PathBuf| -> Value {
        serde_json::from_slice(
            &std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
        )
        .unwrap()
    };
    for (name, status) in [
        ("prestart", "creating"),
        ("createRuntime", "creating"),
        ("createContainer", "creating"),
        ("poststart", "running"),
        ("poststop", "stopped"),
    ] {
        let st = read(logs.path().join(name));
        assert_eq!(st["id"], c.id.as_str(), "{name}");
        assert_eq!(st["status"], status, "{name}");
        assert_eq!(st["bundle"], c.bundle_arg(), "{name}");
    }
    let st = read(c.bundle.rootfs().join("tmp/startContainer"));
    assert_eq!(st["id"], c.id.as_str());
    assert!(st["pid"].as_i64().unwrap_or(0) > 0);

    // A failing createRuntime hook fails create and undoes it.
    let c = Ctr::new(&rt, &["true"], |cfg| {
        cfg["hooks"] = json!({"createRuntime": [{"path": "/bin/false"}]});
    });
    let (code, err) = rt.create_err(c.bundle.path(), &c.id);
    assert_eq!(code, Some(1));
    assert!(err.contains("createRuntime"), "{err}");
    assert_nothing_left(&rt, &c.id, &c.cgroup());
}

#[test]
fn foreground_run_and_exec_relay_a_terminal_without_a_console_socket() {
    berth_testutil::require_root!();
    let rt = Rt::new();
    let with_input = |args: &[&str], input: &[u8]| {
        let mut child = rt
            .cmd()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(input).unwrap();
        wait_output(child)
    };
    let c = Ctr::new(&rt, &["sh"], |cfg| cfg["process"]["terminal"] = json!(true));
    let b = c.bundle_arg();
    let out = with_input(
        &["run", "--bundle", &b, &c.id],
        b"tty; echo hi-$((40+2)); exit 4\n",
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("hi-42") && text.contains("/dev/pts/0"),
        "{text}"
    );

    let c = Ctr::new(&rt, &["sleep", "1000"], |_| {});
    assert!(rt.create(&c, None, &[]).status.success());
    assert!(rt.run(&["start", &c.id]).status.success());
    let out = with_input(
        &["exec", "-t", &c.id, "sh"],
        b"tty; echo hi-$((40+3)); exit 6\n",
    );
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("hi-43") && text.contains("/dev/pts/"),
        "{text}"
    );
}

#[test]
fn run_of_a_missing_program_exits_127_and_leaves_nothing() {
    berth_testutil::require_root!();
    let rt = Rt::new();
    let c = Ctr::new(&rt, &["no-such-program"], |_| {});
    let out = c.run(&[]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("executable file not found"),
        "{}",
        stderr(&out)
    );
    assert_nothing_left(&rt, &c.id, &c.cgroup());
}

#[test]
fn no_pivot_time_namespace_and_non_root_user() {
    berth_testutil::require_root!();
    let rt = Rt::new();
    let c = Ctr::new(&rt, &["sh", "-c", "echo $$; ls /bin/busybox"], |_| {});
    let out = c.run(&["--no-pivot"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "1\n/bin/busybox\n");
    // exec sees the container's root too (setns into the mount namespace
    // follows the rootfs that --no-pivot moved onto /).
    let c = Ctr::new(&rt, &["sleep", "1000"], |_| {});
    assert!(rt.create(&c, None, &["--no-pivot"]).status.success());
    assert!(rt.run(&["start", &c.id]).status.success());
    let out = rt.run(&["exec", &c.id, "cat", "/etc/passwd"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 2, "{}", stdout(&out));

    let c = Ctr::new(&rt, &["sh", "-c", "cut -d. -f1 /proc/uptime"], |cfg| {
        cfg["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "time"}));
        cfg["linux"]["timeOffsets"] = json!({"boottime": {"secs": 1_000_000}});
    });
    let out = c.run(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let uptime: u64 = stdout(&out).trim().parse().unwrap();
    assert!(uptime >= 1_000_000, "uptime {uptime}");

    let c = Ctr::new(
        &rt,
        &["sh", "-c", "id; umask; pwd; grep CapEff /proc/self/status"],
        |cfg| {
            cfg["process"]["user"] =
                json!({"uid": 1000, "gid": 1000, "additionalGids": [10], "umask": 0o027});
            cfg["process"]["cwd"] = json!("/made/for/you");
        },
    );
    let out = c.run(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "uid=1000 gid=1000 groups=10", "{text}");
    assert_eq!(lines[1], "0027", "{text}");
    assert_eq!(lines[2], "/made/for/you", "{text}");
    assert!(lines[3].ends_with("0000000000000000"), "{text}");
}

#[test]
fn seccomp_agent_gets_a_listener_from_a_compiled_and_a_cached_program() {
    berth_testutil::require_root!();
    let rt = Rt::new();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    listener.set_nonblocking(false).unwrap();
    // The first create compiles the profile, the second reads it back from the
    // cache: both must hand the agent a working listener.
    for round in 0..2 {
        let c = Ctr::new(&rt, &["sleep", "1000"], |cfg| {
            cfg["linux"]["seccomp"] = json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "listenerPath": sock,
                "listenerMetadata": "berth-test",
                "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
            });
        });
        let out = c.rt.create(&c, None, &[]);
        assert!(out.status.success(), "create, round {round}");
        // The runtime sent the fd before create returned: it waits in the
        // socket's queue.
        let (conn, _) = listener.accept().unwrap();
        let fd = recv_fd(&conn);
        let target = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
        assert_eq!(
            target.to_string_lossy(),
            "anon_inode:seccomp notify",
            "round {round}"
        );
        let status = std::fs::read_to_string(format!("/proc/{}/status", c.pid())).unwrap();
        assert!(status.contains("Seccomp:\t2"), "round {round}: {status}");
        let cached: Vec<_> = std::fs::read_dir(rt.root.path().join("@seccomp"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".bpf"))
            .collect();
        assert_eq!(cached.len(), 1, "round {round}");
    }
}
