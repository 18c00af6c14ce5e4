//! Test support for the manager daemon's acceptance tests: a private berth-manager
//! (temporary root, state and socket) started from the binaries built next to the
//! tests, gRPC clients for it, the busybox test image, and a guard that puts the
//! kernel back as it was when the test ends, even when it fails: the manager
//! killed, every shim whose task directory is under the temporary state killed,
//! every container deleted through the runtime, cgroups removed, orphans reaped,
//! everything under the temporary directory unmounted.
//!
//! Binaries: `cargo build -p berth-manager -p berth-shim -p berth-runtime` with the
//! same CARGO_TARGET_DIR as the tests. The runtime under test is
//! `BERTH_MANAGER_TEST_RUNTIME` (a name or path; `berth-runtime` means the one
//! built next to the tests), by default berth-runtime when it is built, else runc.

#![allow(dead_code)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use berth_api::berth::manager::v1 as pb;
use berth_api::berth::manager::v1::containers_client::ContainersClient;
use berth_api::berth::manager::v1::events_client::EventsClient;
use berth_api::berth::manager::v1::images_client::ImagesClient;
use berth_api::berth::manager::v1::snapshots_client::SnapshotsClient;
use berth_api::berth::manager::v1::tasks_client::TasksClient;
use berth_api::berth::manager::v1::version_client::VersionClient;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;
use serde_json::Value;
use tonic::transport::{Channel, Endpoint};

/// Upper bound for what must happen eventually: a guard against hanging, not a
/// timing assertion.
pub const EVENTUALLY: Duration = Duration::from_secs(120);

/// The image name the busybox test rootfs is imported as.
pub const BUSYBOX: &str = "berth-test/busybox:latest";

/// Make this test process a child subreaper, once: shims (whose starter exits) and
/// the containers of a killed shim become its children, so the guards reap them
/// instead of leaving zombies to an init that may not reap.
pub fn become_subreaper() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        nix::sys::prctl::set_child_subreaper(true).unwrap();
    });
}

/// The OCI runtime the tests use unless they name one.
pub fn runtime_under_test() -> PathBuf {
    match std::env::var("BERTH_MANAGER_TEST_RUNTIME") {
        Ok(r) if r == "berth-runtime" => berth_testutil::binary("berth-runtime"),
        Ok(r) if !r.is_empty() => PathBuf::from(r),
        _ => {
            let ours = berth_testutil::binary("berth-runtime");
            if ours.exists() {
                ours
            } else {
                PathBuf::from("runc")
            }
        }
    }
}

/// A runtime binary looked up in PATH and the sbin directories.
pub fn system_runtime(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The generated clients on one connection.
#[derive(Clone)]
pub struct Clients {
    pub images: ImagesClient<Channel>,
    pub snapshots: SnapshotsClient<Channel>,
    pub containers: ContainersClient<Channel>,
    pub tasks: TasksClient<Channel>,
    pub events: EventsClient<Channel>,
    pub version: VersionClient<Channel>,
}

/// A private manager and everything it made; dropping it cleans up.
pub struct Stack {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub state: PathBuf,
    pub socket: PathBuf,
    pub logs: PathBuf,
    pub runtime: PathBuf,
    /// The manager's config file (`<dir>/manager.json`, absent unless a test
    /// writes it), so that the host's /etc/berth/manager.json is never read.
    pub config: PathBuf,
    /// More arguments for every start of the manager.
    pub extra_args: Vec<String>,
    manager: Option<Child>,
    cgroups: Mutex<HashSet<String>>,
    pids: Mutex<HashSet<i32>>,
}

impl Stack {
    /// Start a manager with `runtime` as its default runtime.
    pub async fn start(runtime: &Path) -> Stack {
        Stack::start_with(runtime, |_| {}).await
    }

    /// Start a manager with `runtime`, after `prepare` (which may write the config
    /// file or add arguments) has seen the stack.
    pub async fn start_with(runtime: &Path, prepare: impl FnOnce(&mut Stack)) -> Stack {
        become_subreaper();
        // Short paths: a shim socket (<state>/tasks/<id>/shim.sock) must fit in
        // 107 bytes.
        let dir = tempfile::Builder::new()
            .prefix("berth-test-")
            .tempdir_in("/tmp")
            .unwrap();
        let root = dir.path().join("root");
        let state = dir.path().join("run");
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let mut stack = Stack {
            socket: dir.path().join("m.sock"),
            config: dir.path().join("manager.json"),
            extra_args: Vec::new(),
            root,
            state,
            logs,
            runtime: runtime.to_path_buf(),
            dir,
            manager: None,
            cgroups: Mutex::new(HashSet::new()),
            pids: Mutex::new(HashSet::new()),
        };
        prepare(&mut stack);
        stack.start_manager().await;
        stack
    }

    /// (Re)start the manager process and wait until it answers.
    pub async fn start_manager(&mut self) {
        assert!(self.manager.is_none(), "the manager is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("manager.log"))
            .unwrap();
        let child = Command::new(berth_testutil::binary("berth-manager"))
            .arg("--address")
            .arg(&self.socket)
            .arg("--root")
            .arg(&self.root)
            .arg("--state")
            .arg(&self.state)
            .arg("--runtime")
            .arg(&self.runtime)
            .arg("--shim")
            .arg(berth_testutil::binary("berth-shim"))
            .args(["--log-level", "debug"])
            .arg("--config")
            .arg(&self.config)
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting berth-manager (build it with cargo build -p berth-manager)");
        self.manager = Some(child);
        let start = Instant::now();
        loop {
            if let Some(status) = self.manager.as_mut().and_then(|c| c.try_wait().unwrap()) {
                self.manager = None;
                panic!(
                    "berth-manager exited with {status}:\n{}",
                    self.manager_log()
                );
            }
            if let Ok(mut c) = self.try_clients().await {
                if c.version.health(pb::Empty {}).await.is_ok() {
                    return;
                }
            }
            assert!(
                start.elapsed() < EVENTUALLY,
                "berth-manager did not answer:\n{}",
                self.manager_log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn manager_pid(&self) -> u32 {
        self.manager.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// kill -9 the manager (its containers and shims must not notice).
    pub fn kill_manager(&mut self) {
        if let Some(mut c) = self.manager.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The running manager, no longer the stack's: the test signals and reaps it.
    pub fn take_manager(&mut self) -> Option<Child> {
        self.manager.take()
    }

    /// A second manager on this stack's socket with its own roots, run to its end.
    pub fn second_manager(&self) -> std::process::Output {
        Command::new(berth_testutil::binary("berth-manager"))
            .arg("--address")
            .arg(&self.socket)
            .arg("--root")
            .arg(self.dir.path().join("root2"))
            .arg("--state")
            .arg(self.dir.path().join("run2"))
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// SIGTERM the manager and return its exit code.
    pub fn stop_manager(&mut self) -> Option<i32> {
        let mut c = self.manager.take()?;
        let pid = i32::try_from(c.id()).unwrap();
        kill(Pid::from_raw(pid), Signal::SIGTERM).unwrap();
        let status = c.wait().unwrap();
        status.code()
    }

    pub fn manager_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("manager.log")).unwrap_or_default()
    }

    async fn try_clients(&self) -> Result<Clients, tonic::transport::Error> {
        let channel = Endpoint::from_shared(format!("unix://{}", self.socket.display()))?
            .connect()
            .await?;
        Ok(Clients {
            images: ImagesClient::new(channel.clone()),
            snapshots: SnapshotsClient::new(channel.clone()),
            containers: ContainersClient::new(channel.clone()),
            tasks: TasksClient::new(channel.clone()),
            events: EventsClient::new(channel.clone()),
            version: VersionClient::new(channel),
        })
    }

    /// Clients on a new connection.
    pub async fn clients(&self) -> Clients {
        self.try_clients().await.unwrap()
    }

    /// Import the busybox test rootfs as [`BUSYBOX`].
    pub async fn import_busybox(&self) -> pb::Image {
        let tar = busybox_tar();
        let mut msgs = vec![pb::ImportRequest {
            reference: BUSYBOX.to_string(),
            changes: vec![],
            message: "busybox test rootfs".to_string(),
            data: vec![],
        }];
        for chunk in tar.chunks(1 << 20) {
            msgs.push(pb::ImportRequest {
                data: chunk.to_vec(),
                ..Default::default()
            });
        }
        self.clients()
            .await
            .images
            .import(tokio_stream::iter(msgs))
            .await
            .unwrap()
            .into_inner()
    }

    /// A container spec for `id` running `args` (in its [`berth_testutil::test_cgroup`],
    /// removed by the guard).
    pub fn spec(&self, id: &str, args: &[&str]) -> Vec<u8> {
        self.cgroups
            .lock()
            .unwrap()
            .insert(berth_testutil::test_cgroup(id));
        serde_json::to_vec(&spec_value(id, args)).unwrap()
    }

    /// Where a container's json-file log goes.
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.logs.join(format!("{id}-json.log"))
    }

    /// Create a container from the busybox image.
    pub async fn create_container(&self, c: &mut Clients, id: &str, args: &[&str]) {
        c.containers
            .create(pb::CreateContainerRequest {
                container: Some(pb::Container {
                    id: id.to_string(),
                    image: BUSYBOX.to_string(),
                    spec: self.spec(id, args),
                    log_path: self.log_path(id).to_string_lossy().into_owned(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
    }

    /// Create container `id`'s task (started too with `start`); returns the
    /// init's pid.
    pub async fn create_task(&self, c: &mut Clients, id: &str, start: bool) -> u32 {
        let pid = c
            .tasks
            .create(pb::CreateTaskRequest {
                container_id: id.to_string(),
                start,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .pid;
        self.track_pid(pid);
        pid
    }

    /// Create a container and its task and start it; returns the init's pid.
    pub async fn run(&self, c: &mut Clients, id: &str, args: &[&str]) -> u32 {
        self.create_container(c, id, args).await;
        let pid = self.create_task(c, id, false).await;
        let started = c
            .tasks
            .start(pb::StartRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .pid;
        assert_eq!(started, pid);
        pid
    }

    /// Remember a container pid: if its shim dies it becomes our child to reap.
    pub fn track_pid(&self, pid: u32) {
        if let Ok(p) = i32::try_from(pid) {
            self.pids.lock().unwrap().insert(p);
        }
    }

    /// Wait for a task's exit, delete the task and the container; returns the
    /// exit status.
    pub async fn wait_delete(c: &mut Clients, id: &str) -> u32 {
        let status = c
            .tasks
            .wait(pb::WaitRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .exit_status;
        let deleted = c
            .tasks
            .delete(pb::DeleteTaskRequest {
                container_id: id.to_string(),
                force: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(deleted.exit_status, status);
        c.containers
            .delete(pb::DeleteContainerRequest {
                id: id.to_string(),
                keep_snapshot: false,
            })
            .await
            .unwrap();
        status
    }

    pub fn task_dir(&self, id: &str) -> PathBuf {
        self.state.join("tasks").join(id)
    }

    /// Reap the zombies among our children that are ours to reap: shims and the
    /// container pids this stack tracked.
    pub fn reap(&self) {
        let tracked = self.pids.lock().unwrap().clone();
        for (pid, comm) in zombie_children() {
            if comm == "berth-shim" || tracked.contains(&pid) {
                let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
            }
        }
    }

    /// Live (not zombie) berth-shim processes serving a task under our state dir.
    pub fn live_shims(&self) -> Vec<i32> {
        let marker = self.state.to_string_lossy().into_owned();
        processes()
            .into_iter()
            .filter(|p| p.comm == "berth-shim" && p.state != 'Z' && p.cmdline.contains(&marker))
            .map(|p| p.pid)
            .collect()
    }

    /// Remove the cgroup `relative` (in every hierarchy) when the stack goes, as
    /// for the containers of [`Stack::spec`].
    pub fn track_cgroup(&self, relative: &str) {
        self.cgroups.lock().unwrap().insert(relative.to_string());
    }

    /// Mount points under the temporary directory.
    /// Mounts left below the stack's directory by its containers. The
    /// runtime's mount namespace template is not one: it is made once per
    /// runtime root and lives as long as the stack (Drop unmounts it).
    pub fn mounts(&self) -> Vec<String> {
        let template = self.state.join("runtime/@mntns/template");
        let template = template.to_string_lossy();
        mounts_below(self.dir.path())
            .into_iter()
            .filter(|m| *m != template)
            .collect()
    }

    /// Cgroup directories left for the containers of this stack.
    pub fn cgroups_left(&self) -> Vec<PathBuf> {
        self.cgroups
            .lock()
            .unwrap()
            .iter()
            .flat_map(|c| cgroup_dirs(c))
            .collect()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("BERTH_TEST_MANAGER_LOG").is_some() {
            eprintln!("--- manager.log:\n{}", self.manager_log());
        }
        self.kill_manager();
        let tasks = self.state.join("tasks");
        let runtime_root = self.state.join("runtime");
        for entry in std::fs::read_dir(&tasks).into_iter().flatten().flatten() {
            let dir = entry.path();
            let id = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = std::fs::read_to_string(dir.join("shim.pid"))
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
            {
                let ours = pid > 0 && berth_shim_contract::cli::started_for(pid as u32, &dir);
                if ours {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
            let runtime = std::fs::read(dir.join("task.json"))
                .ok()
                .and_then(|d| serde_json::from_slice::<Value>(&d).ok())
                .and_then(|v| v["runtime"].as_str().map(PathBuf::from))
                .unwrap_or_else(|| self.runtime.clone());
            let _ = Command::new(runtime)
                .arg("--root")
                .arg(&runtime_root)
                .args(["delete", "--force", &id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        for cg in self.cgroups.lock().unwrap().iter() {
            berth_testutil::remove_cgroup_everywhere(cg);
        }
        let start = Instant::now();
        loop {
            self.reap();
            let tracked = self.pids.lock().unwrap().clone();
            let left = zombie_children()
                .into_iter()
                .any(|(pid, comm)| comm == "berth-shim" || tracked.contains(&pid));
            if !left || start.elapsed() > Duration::from_secs(5) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        berth_testutil::unmount_below(self.dir.path());
    }
}

/// The busybox test rootfs as a tar (symlinks kept as links).
pub fn busybox_tar() -> Vec<u8> {
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

/// Docker-like defaults for a busybox container (see berth-testutil), with the
/// NOFILE limit this process has (the container cannot raise a hard limit) and
/// spec version 1.0.2 (Debian 12's crun refuses newer ones).
pub fn spec_value(id: &str, args: &[&str]) -> Value {
    let mut v = berth_testutil::bundle::default_config(id, args);
    let (soft, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    v["process"]["rlimits"] =
        serde_json::json!([{"type": "RLIMIT_NOFILE", "soft": soft, "hard": hard}]);
    v["ociVersion"] = "1.0.2".into();
    v
}

#[derive(Debug, Clone)]
pub struct ProcInfo {
    pub pid: i32,
    pub ppid: i32,
    pub state: char,
    pub comm: String,
    pub cmdline: String,
}

/// Every process, from /proc.
pub fn processes() -> Vec<ProcInfo> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_string();
        let mut rest = stat[close + 1..].split_whitespace();
        let state = rest.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid = rest.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        // The shim's task directory is in its environment, not its command
        // line: both are searched.
        let cmdline = ["cmdline", "environ"]
            .iter()
            .filter_map(|f| std::fs::read(format!("/proc/{pid}/{f}")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .collect::<Vec<_>>()
            .join(" ");
        out.push(ProcInfo {
            pid,
            ppid,
            state,
            comm,
            cmdline,
        });
    }
    out
}

/// (pid, comm) of our zombie children.
fn zombie_children() -> Vec<(i32, String)> {
    let me = i32::try_from(std::process::id()).unwrap();
    processes()
        .into_iter()
        .filter(|p| p.ppid == me && p.state == 'Z')
        .map(|p| (p.pid, p.comm))
        .collect()
}

/// Whether a pid is a live (not zombie) process.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .and_then(|i| s[i + 1..].split_whitespace().next().map(str::to_string))
        })
        .is_some_and(|st| st != "Z" && st != "X")
}

/// Mount points at or below `dir`.
pub fn mounts_below(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| *p == prefix || p.starts_with(&format!("{prefix}/")))
        .map(str::to_string)
        .collect()
}

/// The directories of cgroup `relative` in any hierarchy.
pub fn cgroup_dirs(relative: &str) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    roots.push(PathBuf::from("/sys/fs/cgroup"));
    roots
        .into_iter()
        .map(|r| r.join(relative))
        .filter(|p| p.is_dir())
        .collect()
}

/// The json-file log's entries.
pub fn read_log(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad log line {l:?}: {e}")))
        .collect()
}

/// Wait until `cond` holds (bounded by EVENTUALLY).
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < EVENTUALLY, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Read events from a subscription until `pred` matches one (bounded).
pub async fn next_event(
    stream: &mut tonic::Streaming<pb::Envelope>,
    mut pred: impl FnMut(&pb::Envelope) -> bool,
) -> pb::Envelope {
    let deadline = tokio::time::Instant::now() + EVENTUALLY;
    loop {
        let msg = tokio::time::timeout_at(deadline, stream.message())
            .await
            .expect("no matching event in time")
            .unwrap()
            .expect("the event stream ended");
        if pred(&msg) {
            return msg;
        }
    }
}

/// Number of open fds of a process.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}
