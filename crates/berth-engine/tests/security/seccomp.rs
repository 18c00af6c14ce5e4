//! Issue 10, finding 2: no seccomp filter. A default container now runs under
//! Docker's default profile: the syscalls attackers reach for first answer EPERM
//! (clone3 ENOSYS, so C libraries fall back to clone); `seccomp=unconfined` lifts
//! it; a custom profile in Docker's format is honoured. And inside a default
//! container the same answers as a default docker container on this machine, when
//! dockerd is installed.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_testutil::{require_root, CgroupGuard};

use crate::{berth, probe, probe_mounts, serial, stdout, Stack};

fn answers(v: Vec<(String, String)>) -> BTreeMap<String, String> {
    v.into_iter().collect()
}

#[test]
fn default_profile_blocks_what_docker_blocks() {
    require_root!();
    let _serial = serial();
    let stack = Stack::start();
    let status = stack.ok(
        &berth(),
        &[
            "run",
            "--rm",
            "busybox",
            "grep",
            "-E",
            "Seccomp|NoNewPrivs|CapEff",
            "/proc/self/status",
        ],
    );
    assert!(status.contains("Seccomp:\t2"), "{status}");
    assert!(status.contains("NoNewPrivs:\t0"), "{status}");
    assert!(status.contains("CapEff:\t00000000a80425fb"), "{status}");

    let all = [
        "unshare_user",
        "mount_tmpfs",
        "keyctl",
        "add_key",
        "personality_bad",
        "personality_query",
        "socket_vsock",
        "socket_unix",
        "clone3",
        "clone_newns",
        "perf_event_open",
        "kcmp",
        "process_vm_readv",
        "bpf",
        "mkdir",
    ];
    let a = answers(probe(&stack, &[], &all));
    for (k, want) in [
        ("unshare_user", "EPERM"),
        ("mount_tmpfs", "EPERM"),
        ("keyctl", "EPERM"),
        ("add_key", "EPERM"),
        ("personality_bad", "EPERM"),
        ("personality_query", "ok"),
        ("socket_vsock", "EPERM"),
        ("socket_unix", "ok"),
        ("clone3", "ENOSYS"),
        ("clone_newns", "EPERM"),
        ("perf_event_open", "EPERM"),
        ("kcmp", "EPERM"),
        ("process_vm_readv", "EPERM"),
        ("bpf", "EPERM"),
        ("mkdir", "ok"),
    ] {
        assert_eq!(a[k], want, "{k} under the default profile: {a:?}");
    }

    // Unconfined: what the filter (not the capabilities) refused now runs.
    let u = answers(probe(
        &stack,
        &["--security-opt", "seccomp=unconfined"],
        &all,
    ));
    for k in [
        "unshare_user",
        "keyctl",
        "add_key",
        "personality_bad",
        "kcmp",
    ] {
        assert_eq!(u[k], "ok", "{k} with seccomp=unconfined: {u:?}");
    }
    let status = stack.ok(
        &berth(),
        &[
            "run",
            "--rm",
            "--security-opt",
            "seccomp=unconfined",
            "busybox",
            "grep",
            "Seccomp:",
            "/proc/self/status",
        ],
    );
    assert!(status.contains("Seccomp:\t0"), "{status}");
    // --privileged: no filter either, as under Docker. It starts on a host that
    // withholds a capability from berthd too (this CI host has no
    // CAP_SYS_RESOURCE): the container gets the ones berthd holds.
    let status = stack.ok(
        &berth(),
        &[
            "run",
            "--rm",
            "--privileged",
            "busybox",
            "grep",
            "-E",
            "Seccomp:|CapEff:",
            "/proc/self/status",
        ],
    );
    assert!(status.contains("Seccomp:\t0"), "{status}");
    let held = std::fs::read_to_string("/proc/self/status").unwrap();
    let held = held.lines().find(|l| l.starts_with("CapBnd:")).unwrap();
    assert!(
        status.contains(&held.replace("CapBnd:", "CapEff:")),
        "{status} (the test holds {held})"
    );

    // A custom profile, given as a file the CLI reads (as docker's does).
    let profile = stack.path("profile.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", profile.display());
    let c = answers(probe(
        &stack,
        &["--security-opt", &opt],
        &["mkdir", "keyctl"],
    ));
    assert_eq!(c["mkdir"], "EACCES", "{c:?}");
    assert_eq!(c["keyctl"], "ok", "{c:?}");
    // A broken one is the client's fault.
    let (code, body) = stack.http(
        "POST",
        "/v1.47/containers/create",
        br#"{"Image": "busybox", "HostConfig": {"SecurityOpt": ["seccomp={\"defaultAction\":"]}}"#,
    );
    assert_eq!(code, 400, "{body}");

    let (code, body) = stack.http("GET", "/v1.47/info", b"");
    assert_eq!(code, 200);
    assert!(body.contains("name=seccomp,profile=default"), "{body}");
}

/// A dockerd on private directories (stopped, unmounted, cgroups removed on drop).
struct Dockerd {
    dir: tempfile::TempDir,
    child: std::process::Child,
    _cgroups: CgroupGuard,
}

const DOCKER_CGROUP: &str = "berth-test-secdocker";

impl Dockerd {
    fn start() -> Option<Dockerd> {
        let found = ["/usr/sbin/dockerd", "/usr/bin/dockerd"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())?;
        let dir = tempfile::Builder::new()
            .prefix("berth-test-sd")
            .tempdir()
            .ok()?;
        let d = dir.path();
        let child = Command::new(found)
            .arg(format!("--host=unix://{}/docker.sock", d.display()))
            .arg(format!("--data-root={}/data", d.display()))
            .arg(format!("--exec-root={}/exec", d.display()))
            .arg(format!("--pidfile={}/docker.pid", d.display()))
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
            .arg(format!("--cgroup-parent={DOCKER_CGROUP}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("dockerd.log")).ok()?)
            .spawn()
            .ok()?;
        let me = Dockerd {
            dir,
            child,
            _cgroups: CgroupGuard(DOCKER_CGROUP.into()),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if me.docker(&["version"], None).status.success() {
                return Some(me);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        None
    }

    fn docker(&self, args: &[&str], input: Option<&[u8]>) -> std::process::Output {
        let mut c = Command::new("docker")
            .arg("-H")
            .arg(format!("unix://{}/docker.sock", self.dir.path().display()))
            .args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let (Some(data), Some(mut stdin)) = (input, c.stdin.take()) {
            use std::io::Write;
            let _ = stdin.write_all(data);
        }
        c.wait_with_output().unwrap()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let out = self.docker(&["ps", "-aq"], None);
        for id in stdout(&out).split_whitespace() {
            let _ = self.docker(&["rm", "-f", id], None);
        }
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        berth_testutil::unmount_below(self.dir.path());
    }
}

/// The acceptance line: inside a default container, the same answers as docker's.
#[test]
fn a_default_container_answers_as_dockers_does() {
    require_root!();
    let _serial = serial();
    let Some(dk) = Dockerd::start() else {
        eprintln!("skipped: dockerd is not installed or did not start");
        return;
    };
    let stack = Stack::start();
    let tar = crate::support::busybox_tar();
    let imported = dk.docker(
        &["import", "--change", "CMD [\"sh\"]", "-", "busybox:latest"],
        Some(&tar),
    );
    assert!(imported.status.success(), "{}", crate::stderr(&imported));
    let (major, minor) = berth_testutil::host_root_block_device().unwrap_or((1, 1));
    let script = format!(
        "grep -E 'Seccomp|NoNewPrivs|CapEff' /proc/self/status; \
         unshare -U -r true 2>/dev/null; echo unshare=$?; \
         mount -t tmpfs x /mnt 2>/dev/null; echo mount=$?; \
         /probe keyctl; \
         mknod /tmp/disk b {major} {minor}; echo mknod=$?; \
         head -c 1 /tmp/disk >/dev/null 2>&1; echo open=$?"
    );
    let mounts = probe_mounts();
    let mut args: Vec<&str> = vec!["run", "--rm", "--network", "none"];
    args.extend(mounts.iter().map(String::as_str));
    args.extend(["busybox", "sh", "-c", &script]);
    let theirs = stdout(&dk.docker(&args, None));
    let ours = stack.ok(&berth(), &args);
    eprintln!("docker:\n{theirs}\nberth:\n{ours}");
    assert!(theirs.contains("Seccomp:"), "docker gave nothing: {theirs}");
    assert_eq!(ours, theirs);
}
