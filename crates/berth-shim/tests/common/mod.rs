//! Test support: start a real berth-shim (through its daemonizing command line) on
//! a busybox bundle in temporary directories, talk to it with the generated
//! client, and put the kernel back as it was when the test ends, even when it fails.
//!
//! The runtimes to test against come from `BERTH_SHIM_RUNTIMES` (comma-separated
//! names or paths; default `runc`, plus `berth-runtime` when it is built). The name
//! `berth-runtime` means the workspace binary built next to the tests
//! (`cargo build -p berth-runtime` with the same target dir).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_shim::Args;
use berth_shim_contract::pb;
use berth_shim_contract::ShimClient;
use berth_testutil::{Bundle, CgroupGuard};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde_json::Value;

/// Upper bound for things that must happen eventually (not a timing assertion:
/// only a guard against hanging forever).
pub const EVENTUALLY: Duration = Duration::from_secs(60);

/// The runtimes to run each test against: `BERTH_SHIM_RUNTIMES`, or runc plus
/// berth-runtime when it has been built next to the tests.
pub fn runtimes() -> Vec<PathBuf> {
    let list = std::env::var("BERTH_SHIM_RUNTIMES").unwrap_or_else(|_| {
        if berth_testutil::binary("berth-runtime").exists() {
            "runc,berth-runtime".into()
        } else {
            "runc".into()
        }
    });
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|name| {
            if name == "berth-runtime" {
                berth_testutil::binary("berth-runtime")
            } else {
                PathBuf::from(name)
            }
        })
        .collect()
}

/// Make this test process a child subreaper, once: the daemonized shims (whose
/// starter exits) become its children, so the guards can reap them.
pub fn become_subreaper() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        nix::sys::prctl::set_child_subreaper(true).unwrap();
    });
}

/// The shim under test: `BERTH_SHIM_BIN`, or the one built next to the tests.
pub fn shim_binary() -> PathBuf {
    std::env::var_os("BERTH_SHIM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| berth_testutil::binary("berth-shim"))
}

/// A busybox bundle for container `id` running `args`, spec version 1.0.2. Its NOFILE rlimit is the
/// one this process has: raising the hard limit needs CAP_SYS_RESOURCE, which the
/// container's init lacks, and test hosts often have a low hard limit.
pub fn bundle(id: &str, args: &[&str]) -> Bundle {
    let mut b = Bundle::busybox(id, args).unwrap();
    let (soft, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    b.config["process"]["rlimits"] =
        serde_json::json!([{"type": "RLIMIT_NOFILE", "soft": soft, "hard": hard}]);
    // Debian 12's crun (1.8) refuses spec versions above 1.0.x.
    b.config["ociVersion"] = "1.0.2".into();
    b
}

/// A running shim and what it needs; dropping it kills and cleans up everything.
pub struct TestShim {
    pub id: String,
    pub runtime: PathBuf,
    pub shim_pid: i32,
    pub socket: PathBuf,
    pub client: ShimClient,
    pub logs: tempfile::TempDir,
    pub runtime_root: tempfile::TempDir,
    pub bundle: Bundle,
    reaped: bool,
    _cgroup: CgroupGuard,
}

impl TestShim {
    /// Write the bundle's config and start a shim on it (the starter is a plain
    /// child that exits once the shim serves).
    pub async fn start(runtime: &Path, id: &str, bundle: Bundle) -> TestShim {
        become_subreaper();
        bundle.write().unwrap();
        let cgroup = CgroupGuard(bundle.cgroup());
        let runtime_root = tempfile::Builder::new()
            .prefix("berth-test-rtroot")
            .tempdir()
            .unwrap();
        let logs = tempfile::Builder::new()
            .prefix("berth-test-logs")
            .tempdir()
            .unwrap();
        let args = shim_args(runtime, id, &bundle, runtime_root.path());
        let status = Command::new(shim_binary())
            .args(args.to_args())
            .status()
            .unwrap();
        assert!(status.success(), "berth-shim failed to start: {status}");
        let shim_pid = read_pid(&bundle.path().join("shim.pid"));
        let socket = args.socket_path();
        let client = berth_shim_contract::connect(&socket).await.unwrap();
        TestShim {
            id: id.to_string(),
            runtime: runtime.to_path_buf(),
            shim_pid,
            socket,
            client,
            logs,
            runtime_root,
            bundle,
            reaped: false,
            _cgroup: cgroup,
        }
    }

    /// Take charge of a shim started some other way.
    pub async fn adopt(
        runtime: &Path,
        id: &str,
        bundle: Bundle,
        runtime_root: tempfile::TempDir,
        shim_pid: i32,
    ) -> TestShim {
        let cgroup = CgroupGuard(bundle.cgroup());
        let logs = tempfile::Builder::new()
            .prefix("berth-test-logs")
            .tempdir()
            .unwrap();
        let socket = bundle.path().join("shim.sock");
        let client = berth_shim_contract::connect(&socket).await.unwrap();
        TestShim {
            id: id.to_string(),
            runtime: runtime.to_path_buf(),
            shim_pid,
            socket,
            client,
            logs,
            runtime_root,
            bundle,
            reaped: false,
            _cgroup: cgroup,
        }
    }

    pub fn task_dir(&self) -> &Path {
        self.bundle.path()
    }

    pub fn log_path(&self) -> PathBuf {
        self.logs.path().join(format!("{}-json.log", self.id))
    }

    /// A second, independent client (as a restarted manager would dial).
    pub async fn new_client(&self) -> ShimClient {
        berth_shim_contract::connect(&self.socket).await.unwrap()
    }

    /// Create with the log file and Start; returns the init's pid.
    pub async fn create_start(&mut self, stdin: bool) -> u32 {
        let pid = self.create(stdin).await;
        self.client
            .start(pb::StartRequest::default())
            .await
            .unwrap();
        pid
    }

    /// The init's state.
    pub async fn init_state(&mut self) -> pb::StateResponse {
        self.client
            .state(pb::StateRequest::default())
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn create(&mut self, stdin: bool) -> u32 {
        self.client
            .create(pb::CreateRequest {
                rootfs: vec![],
                log_path: self.log_path().to_string_lossy().into_owned(),
                stdin,
                log_format: 0,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .pid
    }

    pub async fn wait(&mut self, exec_id: &str) -> pb::ExitStatus {
        self.client
            .wait(pb::WaitRequest {
                exec_id: exec_id.into(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn delete(&mut self, force: bool) -> pb::ExitStatus {
        self.client
            .delete(pb::DeleteRequest {
                exec_id: String::new(),
                force,
            })
            .await
            .unwrap()
            .into_inner()
    }

    /// The log's entries, parsed.
    pub fn log_entries(&self) -> Vec<Value> {
        read_log(&self.log_path())
    }

    /// Wait for the shim process to exit by itself; returns its exit code.
    pub async fn wait_shim_exit(&mut self) -> i32 {
        let code = wait_pid_exit(self.shim_pid).await;
        self.reaped = true;
        code
    }

    /// Check what a deleted task leaves: shim gone, nothing mounted below the task
    /// dir, no cgroup, and only the files the manager expects.
    pub async fn assert_cleaned_up(&mut self) {
        assert_eq!(self.wait_shim_exit().await, 0, "shim exit code");
        assert!(
            mounts_below(self.task_dir()).is_empty(),
            "mounts left: {:?}",
            mounts_below(self.task_dir())
        );
        let cg = self.bundle.cgroup();
        assert!(
            cgroup_dirs(&cg).is_empty(),
            "cgroups left: {:?}",
            cgroup_dirs(&cg)
        );
        for gone in ["shim.sock", "shim.pid", "init.pid"] {
            assert!(!self.task_dir().join(gone).exists(), "{gone} left behind");
        }
        assert!(
            self.task_dir().join("exit.json").is_file(),
            "exit.json missing"
        );
        assert!(self.task_dir().join("config.json").is_file());
        assert!(self.task_dir().join("rootfs").is_dir());
    }
}

impl Drop for TestShim {
    fn drop(&mut self) {
        if std::env::var_os("BERTH_TEST_SHIM_LOG").is_some() || std::thread::panicking() {
            let log = std::fs::read_to_string(self.task_dir().join("shim.log")).unwrap_or_default();
            eprintln!("--- shim.log of {}:\n{log}", self.id);
        }
        let init = std::fs::read_to_string(self.task_dir().join("init.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        if !self.reaped {
            let _ = kill(Pid::from_raw(self.shim_pid), Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(self.shim_pid), None);
        }
        // The container's processes die with their cgroup (CgroupGuard, dropped
        // after this); an init orphaned by the killed shim is now our child.
        if let Some(pid) = init {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
        }
        berth_testutil::remove_cgroup_everywhere(&self.bundle.cgroup());
        if let Some(pid) = init {
            let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
        }
        berth_testutil::unmount_below(self.bundle.path());
    }
}

pub fn shim_args(runtime: &Path, id: &str, bundle: &Bundle, runtime_root: &Path) -> Args {
    let mut args = Args::new(id, bundle.path());
    args.runtime = runtime.as_os_str().to_owned();
    args.runtime_root = runtime_root.to_path_buf();
    args.log_level = berth_shim::cli::LogLevel::Debug;
    args
}

pub fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .trim()
        .parse()
        .unwrap()
}

/// Reap `pid` (our child through the subreaper) once it exits. Polls without
/// blocking the test's runtime, whose client connections must keep answering the
/// shim (its graceful shutdown waits for them).
pub async fn wait_pid_exit(pid: i32) -> i32 {
    let start = Instant::now();
    loop {
        match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Ok(_) => {}
            Err(e) => panic!("waitpid {pid}: {e}"),
        }
        assert!(start.elapsed() < EVENTUALLY, "pid {pid} did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Wait until `cond` holds (bounded by EVENTUALLY).
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < EVENTUALLY, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn read_log(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad log line {l:?}: {e}")))
        .collect()
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

/// The directories of cgroup `relative` that exist in any hierarchy.
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

/// The process object of a spec, for Exec.
pub fn process_json(args: &[&str], terminal: bool) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "terminal": terminal,
        "user": {"uid": 0, "gid": 0},
        "args": args,
        "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
        "cwd": "/",
        "capabilities": {
            "bounding": berth_testutil::bundle::DEFAULT_CAPS,
            "effective": berth_testutil::bundle::DEFAULT_CAPS,
            "permitted": berth_testutil::bundle::DEFAULT_CAPS
        },
        "noNewPrivileges": true
    }))
    .unwrap()
}
