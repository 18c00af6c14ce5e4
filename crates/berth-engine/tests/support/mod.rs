//! The stack the end-to-end tests drive: a private berth-manager and berthd on a
//! temporary directory, with the busybox test image, and a guard that puts the
//! machine back as it was even when a test fails (berthd and the manager killed,
//! every shim of the stack and its container killed, mounts under the temporary
//! directory undone, the containers' cgroups removed, inherited orphans reaped).
//!
//! The guard reaps every zombie child of the test process, which is only safe while
//! no other test of the same binary runs commands of its own: a binary that uses it
//! runs its tests one at a time under [`serial`].

#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use berth_api::berth::manager::v1 as pb;
use berth_api::berth::manager::v1::images_client::ImagesClient;
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

/// Upper bound for what must happen eventually: a guard against hanging, not a
/// timing assertion.
pub const EVENTUALLY: Duration = Duration::from_secs(120);

/// The docker CLIs to try: 28 (upstream's static build) and Debian's 20.10.
pub const DOCKER_CLIS: [&str; 2] = ["/usr/local/bin/docker", "/usr/bin/docker"];

static SERIAL: Mutex<()> = Mutex::new(());

/// Holds the binary's one-test-at-a-time lock (see the module docs).
pub fn serial() -> MutexGuard<'static, ()> {
    match SERIAL.lock() {
        Ok(g) => g,
        // A failed test must not fail the others: the guard of its stack has run.
        Err(p) => p.into_inner(),
    }
}

/// Our CLI, then every docker CLI installed.
pub fn clis() -> Vec<PathBuf> {
    let mut v = vec![berth_testutil::binary("berth")];
    v.extend(docker_clis());
    v
}

/// The docker CLIs installed here.
pub fn docker_clis() -> Vec<PathBuf> {
    DOCKER_CLIS
        .iter()
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .collect()
}

/// The python of a venv with docker-py: `$BERTH_DOCKER_PY` (test.sh sets it, and
/// then it must exist), else `target/docker-py` if scripts/deps.sh made it.
pub fn docker_py() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BERTH_DOCKER_PY") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "BERTH_DOCKER_PY={} does not exist",
            p.display()
        );
        return Some(p);
    }
    let p = berth_testutil::workspace_root().join("target/docker-py/bin/python");
    p.is_file().then_some(p)
}

/// Polls `f` until it gives `Some`, panicking with `what` after [`EVENTUALLY`].
pub fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < EVENTUALLY, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `f` as [`eventually`] does, giving `None` instead of panicking, so that
/// the caller can say what it saw last.
pub fn eventually_or_none<T>(mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() >= EVENTUALLY {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A private manager + berthd; dropping it cleans up everything they made.
pub struct Stack {
    dir: tempfile::TempDir,
    manager: Option<Child>,
    berthd: Option<Child>,
    /// Children started with [`Stack::spawn_cli`] still running at the end.
    spawned: Vec<Child>,
    /// The default bridge device of this stack's berthd (unique on the host).
    pub bridge: String,
    /// The default bridge's gateway and prefix (`--bip`), a /24 of its own.
    pub bip: String,
    /// Where this stack's networks without a subnet get one (a /16 of its own).
    pub pool: String,
}

static SUBNETS_TAKEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .unwrap();
    u32::from_le_bytes(b)
}

/// A /16 (`prefix` 16) or /24 of 10.128.0.0/9 that no route of this host and no
/// other stack of this process uses, so parallel stacks never share a subnet.
pub fn free_subnet(prefix: u8) -> ipnet::Ipv4Net {
    let routes = berth_engine::network::ipam::host_routes();
    let mut taken = SUBNETS_TAKEN.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let r = random_u32();
        let (b, c) = (128 + (r % 128) as u8, ((r >> 8) % 256) as u8);
        let c = if prefix == 16 { 0 } else { c };
        let net = ipnet::Ipv4Net::new(std::net::Ipv4Addr::new(10, b, c, 0), prefix).unwrap();
        let n = ipnet::IpNet::V4(net);
        let clash = routes
            .iter()
            .any(|x| berth_engine::network::ipam::overlaps(x, &n))
            || taken.iter().any(|t| {
                t.parse::<ipnet::IpNet>()
                    .is_ok_and(|t| berth_engine::network::ipam::overlaps(&t, &n))
            });
        if !clash {
            taken.push(net.to_string());
            return net;
        }
    }
}

/// A bridge name of at most 15 characters no other stack uses.
pub fn unique_bridge(prefix: &str) -> String {
    format!("{prefix}{:08x}", random_u32())
}

impl Stack {
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn manager_socket(&self) -> PathBuf {
        self.path("manager.sock")
    }

    pub fn engine_socket(&self) -> PathBuf {
        self.path("berth.sock")
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.engine_socket().display())
    }

    /// Starts the stack and imports busybox.
    pub fn start() -> Stack {
        // Shims, and the containers of a killed shim, become our children once their
        // parents are gone: we must be the one who reaps them (PID 1 here does not).
        nix::sys::prctl::set_child_subreaper(true).unwrap();
        // Short: <dir>/run/tasks/<64 hex id>/shim.sock must fit a unix socket address.
        let dir = tempfile::Builder::new()
            .prefix("berth-test-")
            .rand_bytes(4)
            .tempdir_in("/tmp")
            .unwrap();
        let bip_net = free_subnet(24);
        let mut stack = Stack {
            dir,
            manager: None,
            berthd: None,
            spawned: vec![],
            bridge: unique_bridge("bt"),
            bip: format!("{}/24", bip_net.hosts().next().unwrap()),
            pool: format!("base={},size=24", free_subnet(16)),
        };
        stack.start_manager();
        stack.start_berthd();
        stack.import_busybox();
        stack
    }

    /// Starts berth-manager (again), appending to its log; does not wait for it.
    pub fn start_manager(&mut self) {
        let mlog = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("manager.log"))
            .unwrap();
        let manager = Command::new(berth_testutil::binary("berth-manager"))
            .arg("--address")
            .arg(self.manager_socket())
            .arg("--root")
            .arg(self.path("manager"))
            .arg("--state")
            .arg(self.path("run"))
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
        self.manager = Some(manager);
    }

    /// SIGKILLs berth-manager, as a crash would, and reaps it. Its shims and their
    /// containers live on.
    pub fn kill_manager(&mut self) {
        if let Some(mut c) = self.manager.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts berth-manager again after [`Stack::kill_manager`] and waits until it
    /// listens.
    pub fn restart_manager(&mut self) {
        self.start_manager();
        eventually("berth-manager listens again", || {
            UnixStream::connect(self.manager_socket()).ok().map(|_| ())
        });
    }

    /// Starts berthd (again), appending to its log, and waits until it answers.
    pub fn start_berthd(&mut self) {
        self.spawn_berthd();
        self.wait_ready();
    }

    /// Starts berthd (again), appending to its log; does not wait for it.
    pub fn spawn_berthd(&mut self) {
        let elog = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("berthd.log"))
            .unwrap();
        let berthd = Command::new(berth_testutil::binary("berthd"))
            .arg("-H")
            .arg(self.host())
            .arg("--manager")
            .arg(self.manager_socket())
            .arg("--data-root")
            .arg(self.path("engine"))
            .arg("--exec-root")
            .arg(self.path("engine-run"))
            .arg("--init-path")
            .arg(berth_testutil::binary("berth-init"))
            .args(["--bridge", &self.bridge, "--bip", &self.bip])
            .args(["--default-address-pool", &self.pool])
            .arg("--config-file")
            .arg(self.path("daemon.json"))
            .args(["--log-level", "info,berth_engine=debug"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(elog)
            .spawn()
            .expect("starting berthd (cargo build -p berth-engine)");
        self.berthd = Some(berthd);
    }

    /// berthd's pid (0 when it is not running).
    pub fn berthd_pid(&self) -> u32 {
        self.berthd.as_ref().map_or(0, |c| c.id())
    }

    /// berth-manager's pid (0 when it is not running).
    pub fn manager_pid(&self) -> u32 {
        self.manager.as_ref().map_or(0, |c| c.id())
    }

    /// SIGKILLs berthd, as a crash would, and reaps it.
    pub fn kill_berthd(&mut self) {
        if let Some(mut c) = self.berthd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn logs(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.path(n)).unwrap_or_default();
        format!(
            "--- manager.log:\n{}\n--- berthd.log:\n{}",
            read("manager.log"),
            read("berthd.log")
        )
    }

    /// Waits until berth-manager listens and berthd answers (both must be running).
    pub fn wait_ready(&mut self) {
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
    pub fn import_busybox(&self) {
        let tar = busybox_tar();
        let (status, _) = http(
            &self.engine_socket(),
            "POST",
            "/v1.47/images/create?fromSrc=-&repo=busybox&tag=latest",
            "application/x-tar",
            &tar,
        );
        if status == 200 {
            return;
        }
        self.with_manager(|channel| async move {
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

    /// Runs `f` with a channel to the stack's manager, on a runtime of its own.
    pub fn with_manager<T, F>(&self, f: impl FnOnce(tonic::transport::Channel) -> F) -> T
    where
        F: std::future::Future<Output = T>,
    {
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
            f(channel).await
        })
    }

    fn command(&self, program: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(program);
        cmd.arg("-H")
            .arg(self.host())
            .args(args)
            .env("DOCKER_CONFIG", self.path("docker-config"))
            .env_remove("DOCKER_HOST")
            .env_remove("BERTH_HOST");
        cmd
    }

    /// Runs a CLI (ours or docker) against the engine, with a private docker config.
    pub fn cli(&self, program: &Path, args: &[&str]) -> Output {
        self.cli_with_stdin(program, args, None)
    }

    /// [`Stack::cli`], asserting it exits 0; returns its stdout.
    pub fn ok(&self, program: &Path, args: &[&str]) -> String {
        let out = self.cli(program, args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{} {args:?} failed: {}",
            program.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        stdout(&out)
    }

    /// [`Stack::cli`] with `input` as its stdin (then closed).
    pub fn cli_with_stdin(&self, program: &Path, args: &[&str], input: Option<&[u8]>) -> Output {
        let mut child = self
            .command(program, args)
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

    /// Starts a CLI in the background (for `logs -f`, `wait`); its output is read
    /// with [`Stack::finish`]. The guard kills it if the test ends first.
    pub fn spawn_cli(&mut self, program: &Path, args: &[&str]) -> usize {
        let child = self
            .command(program, args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        self.spawned.push(child);
        self.spawned.len() - 1
    }

    /// Waits for a CLI started with [`Stack::spawn_cli`] (up to [`EVENTUALLY`]).
    pub fn finish(&mut self, idx: usize) -> Output {
        let start = Instant::now();
        loop {
            if let Some(_status) = self.spawned[idx].try_wait().unwrap() {
                break;
            }
            assert!(
                start.elapsed() < EVENTUALLY,
                "a background CLI did not finish\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let child = &mut self.spawned[idx];
        let mut out = Output {
            status: child.wait().unwrap(),
            stdout: vec![],
            stderr: vec![],
        };
        if let Some(mut s) = child.stdout.take() {
            let _ = s.read_to_end(&mut out.stdout);
        }
        if let Some(mut s) = child.stderr.take() {
            let _ = s.read_to_end(&mut out.stderr);
        }
        eprintln!(
            "background CLI exit {:?}\n  stdout {:?}\n  stderr {:?}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// A request to berthd: (status, body).
    pub fn http(&self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        http(
            &self.engine_socket(),
            method,
            path,
            "application/json",
            body,
        )
    }

    /// `inspect -f TEMPLATE NAME` through our CLI.
    pub fn inspect(&self, name: &str, template: &str) -> String {
        let out = self.cli(
            &berth_testutil::binary("berth"),
            &["inspect", "-f", template, name],
        );
        stdout(&out).trim().to_string()
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
        for mut c in self.spawned.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
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
                let ours = ["cmdline", "environ"].iter().any(|f| {
                    std::fs::read(format!("/proc/{pid}/{f}"))
                        .map(|c| String::from_utf8_lossy(&c).contains(&*dir.to_string_lossy()))
                        .unwrap_or(false)
                });
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
        self.teardown_networks();
        reap_orphans();
        berth_testutil::unmount_below(self.dir.path());
    }
}

impl Stack {
    /// What berthd left set up in the kernel (veths, iptables rules, aardvark-dns
    /// entries, namespaces): torn down as berthd would, with the options it recorded.
    /// The bridges of the stack's networks go with their last endpoint; any still
    /// there (a crash inside netavark) are deleted.
    fn teardown_networks(&self) {
        let exec_root = self.path("engine-run");
        let backend = berth_engine::network::netavark::Netavark {
            netavark: berth_engine::network::netavark::NETAVARK_BIN.into(),
            aardvark: berth_engine::network::netavark::AARDVARK_BIN.into(),
            config_dir: berth_engine::network::config_dir(&exec_root),
            lock_file: berth_engine::network::netavark::LOCK_FILE.into(),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let errors = rt.block_on(berth_engine::network::teardown_all(&exec_root, &backend));
        for e in errors {
            eprintln!("network teardown: {e}");
        }
        let mut bridges = vec![self.bridge.clone()];
        let mut subnets: Vec<String> = self
            .bip
            .parse::<ipnet::IpNet>()
            .map(|n| vec![n.trunc().to_string()])
            .unwrap_or_default();
        for e in std::fs::read_dir(self.path("engine/networks"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let rec: Option<berth_engine::network::store::NetworkRecord> =
                berth_engine::network::store::load(&e.path());
            if let Some(r) = rec.filter(|r| !r.bridge.is_empty() && r.bridge != self.bridge) {
                subnets.extend(r.subnets.iter().map(|s| s.subnet.trunc().to_string()));
                bridges.push(r.bridge);
            }
        }
        for b in &bridges {
            if std::path::Path::new(&format!("/sys/class/net/{b}")).exists() {
                eprintln!("deleting the bridge {b} netavark left");
                let _ = Command::new("ip").args(["link", "del", b]).status();
            }
        }
        remove_firewall_leftovers(&bridges, &subnets);
    }
}

/// The firewall rules of these bridges and subnets that netavark left. Its last
/// teardown of a network takes the bridge and the rules only when nothing else is
/// on the bridge; a veth still held (a namespace something keeps alive) leaves them
/// all, and deleting the bridge by hand would not. Each test stack's networks are
/// its own, so whatever names them is deleted, and the network's NAT chain with it.
fn remove_firewall_leftovers(bridges: &[String], subnets: &[String]) {
    let Ok(out) = Command::new("iptables-save").output() else {
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut table = String::new();
    let mut rules = vec![];
    let mut chains = vec![];
    for line in text.lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = t.to_string();
            continue;
        }
        let Some(rule) = line.strip_prefix("-A ") else {
            continue;
        };
        let words = shell_words(rule);
        let ours = words.windows(2).any(|w| {
            (matches!(w[0].as_str(), "-i" | "-o") && bridges.contains(&w[1]))
                || (matches!(w[0].as_str(), "-s" | "-d") && subnets.contains(&w[1]))
        });
        if !ours {
            continue;
        }
        if let Some(c) = words
            .windows(2)
            .find(|w| w[0] == "-j")
            .map(|w| w[1].clone())
            .filter(|c| c.starts_with("NETAVARK-") && !c.starts_with("NETAVARK-HOSTPORT"))
        {
            chains.push((table.clone(), c));
        }
        rules.push((table.clone(), words));
    }
    for (table, words) in &rules {
        eprintln!(
            "deleting a firewall rule netavark left: {}",
            words.join(" ")
        );
        let _ = Command::new("iptables")
            .args(["-t", table, "-D"])
            .args(words)
            .stderr(Stdio::null())
            .status();
    }
    for (table, chain) in &chains {
        for op in ["-F", "-X"] {
            let _ = Command::new("iptables")
                .args(["-t", table, op, chain])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A rule as `iptables-save` writes it, split into words (a `"..."` is one word).
fn shell_words(s: &str) -> Vec<String> {
    let mut out = vec![];
    let mut word = String::new();
    let mut quoted = false;
    let mut any = false;
    for ch in s.chars() {
        match ch {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut word));
                    any = false;
                }
            }
            c => {
                word.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(word);
    }
    out
}

/// Reaps our zombie children (shims and containers we inherited as a subreaper),
/// until none is left or a few seconds have passed.
pub fn reap_orphans() {
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

/// (pid, ppid, state) of a process from /proc/PID/stat.
pub fn proc_stat(pid: i32) -> Option<(i32, String)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.rfind(')')?;
    let mut rest = stat[close + 1..].split_whitespace();
    let state = rest.next()?.to_string();
    let ppid = rest.next()?.parse().ok()?;
    Some((ppid, state))
}

/// Every pid on the host.
pub fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
        .collect()
}

fn zombie_children() -> Vec<i32> {
    let me = std::process::id() as i32;
    all_pids()
        .into_iter()
        .filter(|pid| proc_stat(*pid).is_some_and(|(ppid, st)| ppid == me && st == "Z"))
        .collect()
}

/// Whether berthd answers `GET /_ping` with OK.
pub fn ping(socket: &Path) -> bool {
    let (status, body) = http(socket, "GET", "/_ping", "text/plain", b"");
    status == 200 && body == "OK"
}

/// One HTTP/1.1 request on a unix socket: (status, body); status 0 when there was no
/// answer. Chunked bodies are decoded.
pub fn http(
    socket: &Path,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, String) {
    let Ok(mut s) = UnixStream::connect(socket) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: berth\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if s.write_all(head.as_bytes()).is_err() {
        return (0, String::new());
    }
    // An endpoint that refuses the request may answer and close before reading the
    // body: its answer is still there to read.
    let _ = s.write_all(body);
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (headers, raw) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if headers
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(raw)
    } else {
        raw.to_string()
    };
    (status, body)
}

fn dechunk(mut raw: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = raw.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        raw = rest[n..].trim_start_matches("\r\n");
    }
    out
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

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The host ends (interface indexes) of the bridges' keepers' veths: a network keeps
/// one interface of no container on its bridge while it exists.
pub fn keeper_links(stack: &Stack) -> Vec<String> {
    host_ends(stack, "engine-run/network/keepers")
}

/// The host ends of the veths of the namespaces berthd set up in advance on the
/// default bridge (its pool): no container's.
pub fn pool_links(stack: &Stack) -> Vec<String> {
    host_ends(stack, "engine-run/network/pool")
}

/// Interface indexes on the host of the eth0 of each namespace pinned in `dir`.
fn host_ends(stack: &Stack, dir: &str) -> Vec<String> {
    let mut out = vec![];
    for e in std::fs::read_dir(stack.path(dir))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "ns"))
    {
        let o = Command::new("nsenter")
            .arg(format!("--net={}", e.path().display()))
            .args(["ip", "-o", "link", "show", "eth0"])
            .output()
            .unwrap();
        // "2: eth0@if37: <...": 37 is the host end.
        if let Some(idx) = stdout(&o)
            .split_once("@if")
            .and_then(|(_, r)| r.split_once(':'))
            .map(|(i, _)| i.to_string())
        {
            out.push(idx);
        }
    }
    out
}

/// Interfaces enslaved to `bridge` (not its keeper's), pinned network namespaces
/// and network attachments berthd still holds: what a container leaves behind.
pub fn network_leftovers(stack: &Stack, bridge: &str) -> Vec<String> {
    // Listed before the keepers and the pool are read: a pooled namespace being set
    // up meanwhile is then either in both lists or in neither.
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    let mut keepers = keeper_links(stack);
    keepers.extend(pool_links(stack));
    let mut left: Vec<String> = stdout(&links)
        .lines()
        .filter(|l| l.contains(&format!("master {bridge} ")))
        .filter(|l| !keepers.iter().any(|k| l.starts_with(&format!("{k}: "))))
        .map(str::to_string)
        .collect();
    for d in ["engine-run/network/netns", "engine-run/network/containers"] {
        for e in std::fs::read_dir(stack.path(d))
            .into_iter()
            .flatten()
            .flatten()
        {
            left.push(format!("{d}/{}", e.file_name().to_string_lossy()));
        }
    }
    left
}
