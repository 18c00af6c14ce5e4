//! End to end, as root, through our CLI and every docker CLI installed: what a
//! container is (a host process in its own namespaces and cgroup) and the container
//! verbs (exec, stop, kill, memory limits and the OOM killer, diff, export, top,
//! stats, pause, restart, prune, logs, TTYs, --init), the raw API as curl sees it,
//! and berthd restarting under running containers.
//!
//! Binaries: `cargo build -p berth-manager -p berth-shim -p berth-runtime
//! -p berth-engine -p berth-cli -p berth-init` with the same CARGO_TARGET_DIR.
//! The tests take a shared lock ([`support::serial`]): the stack guard reaps zombie
//! children, which is only safe while no other test of this binary runs.

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::Command;

use support::{clis, docker_clis, eventually, proc_stat, serial, stderr, stdout, Stack};

fn name(cli: &Path) -> &'static str {
    match cli.to_string_lossy().as_ref() {
        "/usr/local/bin/docker" => "d28",
        "/usr/bin/docker" => "d20",
        _ => "berth",
    }
}

fn ns(pid: &str, kind: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/ns/{kind}: {e}"))
}

/// The line of busybox `ps` output for PID 1.
fn pid1_line(ps: &str) -> Option<String> {
    ps.lines()
        .find(|l| l.split_whitespace().next() == Some("1"))
        .map(str::to_string)
}

#[test]
fn run_detached_is_a_host_process_in_its_own_namespaces() {
    berth_testutil::require_root!();
    let _serial = serial();
    let stack = Stack::start();
    for cli in clis() {
        let cli = cli.as_path();
        let n = format!("ns-{}", name(cli));
        let id = stack.ok(
            cli,
            &["run", "-d", "--name", &n, "busybox", "sleep", "1000"],
        );
        let id = id.trim();
        assert_eq!(id.len(), 64, "run -d prints the full id");
        let ps = stack.ok(cli, &["ps"]);
        assert!(ps.contains(&id[..12]) && ps.contains(&n), "{ps}");
        let pid = stack.ok(cli, &["inspect", "-f", "{{.State.Pid}}", &n]);
        let pid = pid.trim();
        assert!(pid.parse::<u32>().is_ok_and(|p| p > 1), "State.Pid {pid:?}");
        assert!(
            Path::new(&format!("/proc/{pid}")).exists(),
            "host pid {pid}"
        );
        for kind in ["pid", "mnt", "net", "uts", "ipc"] {
            assert_ne!(ns(pid, kind), ns("self", kind), "{kind} namespace shared");
        }
        // The command is PID 1 of its namespace.
        let ps = stack.ok(cli, &["exec", &n, "ps"]);
        let line = pid1_line(&ps).unwrap_or_default();
        assert!(
            line.contains("sleep 1000"),
            "PID 1 is not the command: {ps}"
        );
        // PID 1 ignores signals it has no handler for, even SIGKILL from inside.
        stack.cli(cli, &["exec", &n, "kill", "-9", "1"]);
        assert_eq!(stack.inspect(&n, "{{.State.Running}}"), "true");
        assert!(Path::new(&format!("/proc/{pid}")).exists());
        // stop: SIGTERM is dropped by PID 1, SIGKILL after 1 s.
        stack.ok(cli, &["stop", "-t", "1", &n]);
        assert_eq!(stack.inspect(&n, "{{.State.Running}}"), "false");
        assert_eq!(stack.inspect(&n, "{{.State.ExitCode}}"), "137");

        // Killed from the host: the engine sees the exit.
        let k = format!("kill-{}", name(cli));
        stack.ok(
            cli,
            &["run", "-d", "--name", &k, "busybox", "sleep", "1000"],
        );
        let pid = stack.inspect(&k, "{{.State.Pid}}");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid.parse().unwrap()),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        eventually("ps -a shows Exited (137)", || {
            let ps = stack.ok(cli, &["ps", "-a"]);
            ps.lines()
                .any(|l| l.contains(&k) && l.contains("Exited (137)"))
                .then_some(())
        });
        stack.ok(cli, &["rm", &n, &k]);
    }
}

/// The memory cgroup file that holds a container's limit: v1's
/// memory.limit_in_bytes or v2's memory.max.
fn memory_limit_file(id: &str) -> Option<String> {
    [
        format!("/sys/fs/cgroup/memory/berth/{id}/memory.limit_in_bytes"),
        format!("/sys/fs/cgroup/berth/{id}/memory.max"),
        format!("/sys/fs/cgroup/unified/berth/{id}/memory.max"),
    ]
    .into_iter()
    .find_map(|p| std::fs::read_to_string(p).ok())
}

#[test]
fn memory_limit_and_the_oom_killer() {
    berth_testutil::require_root!();
    let _serial = serial();
    let stack = Stack::start();
    for cli in clis() {
        let cli = cli.as_path();
        let n = format!("mem-{}", name(cli));
        let id = stack.ok(
            cli,
            &[
                "run", "-d", "-m", "100m", "--name", &n, "busybox", "sleep", "1000",
            ],
        );
        let limit = memory_limit_file(id.trim()).expect("the container's memory cgroup");
        assert_eq!(limit.trim(), "104857600");
        // update raises it in place.
        stack.ok(cli, &["update", "-m", "200m", "--memory-swap", "400m", &n]);
        let limit = memory_limit_file(id.trim()).expect("the container's memory cgroup");
        assert_eq!(limit.trim(), "209715200");
        stack.ok(cli, &["rm", "-f", &n]);

        let o = format!("oom-{}", name(cli));
        let out = stack.cli(
            cli,
            &[
                "run",
                "-m",
                "100m",
                "--name",
                &o,
                "busybox",
                "sh",
                "-c",
                // Only PID 1 grows (a string doubling past 200 MB), so the OOM
                // killer has one candidate; `head | tr` helpers could be picked
                // instead and leave the shell alive.
                "x=a; while [ ${#x} -lt 268435456 ]; do x=$x$x; done; echo survived",
            ],
        );
        assert_eq!(
            out.status.code(),
            Some(137),
            "stdout {:?} stderr {:?}",
            stdout(&out),
            stderr(&out)
        );
        assert!(!stdout(&out).contains("survived"));
        assert_eq!(stack.inspect(&o, "{{.State.OOMKilled}}"), "true");
        assert_eq!(stack.inspect(&o, "{{.State.ExitCode}}"), "137");
        stack.ok(cli, &["rm", &o]);
    }
}

/// Paths in a tar archive.
fn tar_paths(path: &Path) -> Vec<String> {
    let f = std::fs::File::open(path).unwrap();
    tar::Archive::new(f)
        .entries()
        .unwrap()
        .map(|e| {
            e.unwrap()
                .path()
                .unwrap()
                .to_string_lossy()
                .trim_start_matches("./")
                .to_string()
        })
        .collect()
}

#[test]
fn diff_export_top_stats_pause_restart_prune() {
    berth_testutil::require_root!();
    let _serial = serial();
    let stack = Stack::start();
    for cli in clis() {
        let cli = cli.as_path();
        let n = format!("fs-{}", name(cli));
        let out = stack.cli(
            cli,
            &[
                "run",
                "--name",
                &n,
                "busybox",
                "sh",
                "-c",
                "mkdir /test; rm -rf /tmp",
            ],
        );
        assert_eq!(out.status.code(), Some(0));
        let diff = stack.ok(cli, &["diff", &n]);
        // As docker: the runtime's mount points (/etc/hosts, ...) are not listed.
        let lines: Vec<&str> = diff.lines().collect();
        assert_eq!(lines, ["A /test", "D /tmp"], "{diff}");
        let tar = stack.path(&format!("{n}.tar"));
        stack.ok(cli, &["export", "-o", &tar.to_string_lossy(), &n]);
        let paths = tar_paths(&tar);
        assert!(paths.iter().any(|p| p == "bin/busybox"), "{paths:?}");
        assert!(paths.iter().any(|p| p.trim_end_matches('/') == "test"));
        assert!(!paths.iter().any(|p| p.trim_end_matches('/') == "tmp"));
        stack.ok(cli, &["rm", &n]);
    }

    let berth = berth_testutil::binary("berth");
    for cli in clis() {
        let cli = cli.as_path();
        let n = format!("ops-{}", name(cli));
        stack.ok(
            cli,
            &[
                "run", "-d", "--name", &n, "-m", "64m", "busybox", "sleep", "1000",
            ],
        );
        let top = stack.ok(cli, &["top", &n]);
        assert!(top.lines().next().unwrap_or("").contains("PID"), "{top}");
        assert!(top.contains("sleep 1000"), "{top}");
        let stats = stack.ok(cli, &["stats", "--no-stream", &n]);
        assert!(
            stats.contains("MEM USAGE / LIMIT") && stats.contains(&n),
            "{stats}"
        );
        assert!(stats.contains("/ 64MiB"), "{stats}");
        stack.ok(cli, &["pause", &n]);
        assert_eq!(stack.inspect(&n, "{{.State.Status}}"), "paused");
        assert!(stack.ok(cli, &["ps"]).contains("(Paused)"));
        let out = stack.cli(cli, &["pause", &n]);
        assert_eq!(out.status.code(), Some(1), "pausing twice fails");
        stack.ok(cli, &["unpause", &n]);
        assert_eq!(stack.inspect(&n, "{{.State.Status}}"), "running");
        let pid = stack.inspect(&n, "{{.State.Pid}}");
        stack.ok(cli, &["restart", "-t", "1", &n]);
        assert_eq!(stack.inspect(&n, "{{.State.Running}}"), "true");
        assert_ne!(stack.inspect(&n, "{{.State.Pid}}"), pid);
        // A paused container still dies from kill and rm -f (it is thawed after).
        stack.ok(cli, &["pause", &n]);
        stack.ok(cli, &["kill", &n]);
        eventually("the paused container is killed", || {
            (stack.inspect(&n, "{{.State.Status}}") == "exited").then_some(())
        });
        stack.ok(cli, &["start", &n]);
        stack.ok(cli, &["pause", &n]);
        stack.ok(cli, &["rm", "-f", &n]);
    }
    // The raw stats object has Docker's shape.
    stack.ok(
        &berth,
        &[
            "run", "-d", "--name", "raw", "-m", "64m", "busybox", "sleep", "1000",
        ],
    );
    let (status, body) = stack.http(
        "GET",
        "/v1.47/containers/raw/stats?stream=0&one-shot=1",
        b"",
    );
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(body.trim()).unwrap();
    assert_eq!(v["memory_stats"]["limit"], 64 << 20);
    assert!(v["memory_stats"]["usage"].as_u64().unwrap_or(0) > 0, "{v}");
    assert!(
        v["cpu_stats"]["cpu_usage"]["total_usage"]
            .as_u64()
            .is_some(),
        "{v}"
    );
    assert!(v["pids_stats"]["current"].as_u64().unwrap_or(0) >= 1, "{v}");
    assert_eq!(v["name"], "/raw");
    let (status, body) = stack.http(
        "GET",
        "/v1.47/containers/raw/top?ps_args=-o%20pid,comm",
        b"",
    );
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(body.trim()).unwrap();
    assert_eq!(v["Titles"], serde_json::json!(["PID", "COMMAND"]));
    assert_eq!(v["Processes"][0][1], "sleep");
    stack.ok(&berth, &["kill", "raw"]);

    // Prune removes every stopped container and leaves running ones.
    stack.ok(
        &berth,
        &["run", "-d", "--name", "keep", "busybox", "sleep", "1000"],
    );
    let pruned = stack.ok(&berth, &["container", "prune", "-f"]);
    assert!(pruned.contains("Deleted Containers:"), "{pruned}");
    let left = stack.ok(&berth, &["ps", "-a", "--format", "{{.Names}}"]);
    assert_eq!(left.trim(), "keep");
    for docker in docker_clis() {
        stack.ok(&berth, &["run", "--name", "gone", "busybox", "true"]);
        let out = stack.ok(&docker, &["container", "prune", "-f"]);
        assert!(out.contains("Total reclaimed space"), "{out}");
        let left = stack.ok(&berth, &["ps", "-a", "-q"]);
        assert_eq!(left.lines().count(), 1, "{left}");
    }
    stack.ok(&berth, &["rm", "-f", "keep"]);
}

#[test]
fn logs_ttys_and_init() {
    berth_testutil::require_root!();
    let _serial = serial();
    let mut stack = Stack::start();
    for cli in clis() {
        let cli = cli.as_path();
        let n = format!("logs-{}", name(cli));
        // Holds its last line back until /go exists, so `logs -f` must follow.
        stack.ok(
            cli,
            &[
                "run",
                "-d",
                "--name",
                &n,
                "busybox",
                "sh",
                "-c",
                "echo out; echo err >&2; while [ ! -e /go ]; do sleep 0.1; done; echo last",
            ],
        );
        eventually("the first lines are logged", || {
            let out = stack.cli(cli, &["logs", &n]);
            (stdout(&out) == "out\n" && stderr(&out) == "err\n").then_some(())
        });
        let follow = stack.spawn_cli(cli, &["logs", "-f", &n]);
        stack.ok(cli, &["exec", &n, "touch", "/go"]);
        let out = stack.finish(follow);
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(stdout(&out), "out\nlast\n");
        assert_eq!(stderr(&out), "err\n");
        stack.ok(cli, &["rm", &n]);

        let out = stack.cli(cli, &["run", "--rm", "-t", "busybox", "tty"]);
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(stdout(&out).trim_end(), "/dev/pts/0");

        // A --rm container's writable layer is thrown away: its overlay is mounted
        // volatile (no sync at unmount); a kept container's is not.
        let root_line = |args: &[&str]| {
            stack
                .ok(cli, args)
                .lines()
                .find(|l| l.split_whitespace().nth(4) == Some("/"))
                .map(str::to_string)
                .unwrap_or_default()
        };
        let rm = root_line(&["run", "--rm", "busybox", "cat", "/proc/self/mountinfo"]);
        assert!(rm.contains("overlay") && rm.contains("volatile"), "{rm}");
        let v = format!("kept-{}", name(cli));
        let kept = root_line(&[
            "run",
            "--name",
            &v,
            "busybox",
            "cat",
            "/proc/self/mountinfo",
        ]);
        assert!(
            kept.contains("overlay") && !kept.contains("volatile"),
            "{kept}"
        );
        stack.ok(cli, &["rm", &v]);

        let i = format!("init-{}", name(cli));
        // The inner shell leaves an orphan behind that init must reap.
        stack.ok(
            cli,
            &[
                "run",
                "-d",
                "--init",
                "--name",
                &i,
                "busybox",
                "sh",
                "-c",
                "sh -c 'sleep 1 &'; sleep 1000",
            ],
        );
        let ps = stack.ok(cli, &["exec", &i, "ps"]);
        let line = pid1_line(&ps).unwrap_or_default();
        assert!(line.contains("berth-init"), "PID 1 is not berth-init: {ps}");
        let pid: i32 = stack.inspect(&i, "{{.State.Pid}}").parse().unwrap();
        let pidns = ns(&pid.to_string(), "pid");
        eventually("no zombie in the container once its orphan exits", || {
            let procs: Vec<(i32, String)> = support::all_pids()
                .into_iter()
                .filter(|p| {
                    std::fs::read_link(format!("/proc/{p}/ns/pid"))
                        .is_ok_and(|l| l.to_string_lossy() == pidns)
                })
                .filter_map(|p| proc_stat(p).map(|(_, st)| (p, st)))
                .collect();
            let orphan_left = procs.iter().any(|(p, _)| {
                std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c == b"sleep\x001\x00")
            });
            (!orphan_left && procs.iter().all(|(_, st)| st != "Z")).then_some(())
        });
        stack.ok(cli, &["rm", "-f", &i]);
    }
}

fn curl(stack: &Stack, args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-s", "--unix-socket"])
        .arg(stack.engine_socket())
        .args(["-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl");
    let text = stdout(&out);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
    (code.to_string(), body.to_string())
}

#[test]
fn the_raw_api_as_curl_sees_it() {
    berth_testutil::require_root!();
    let _serial = serial();
    let stack = Stack::start();
    let berth = berth_testutil::binary("berth");
    stack.ok(
        &berth,
        &["run", "-d", "--name", "web", "busybox", "sleep", "1000"],
    );
    let (code, body) = curl(&stack, &["http://x/v1.47/containers/json"]);
    assert_eq!(code, "200");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v[0]["Names"], serde_json::json!(["/web"]));
    assert_eq!(v[0]["State"], "running");
    let (code, body) = curl(&stack, &["http://x/_ping"]);
    assert_eq!((code.as_str(), body.as_str()), ("200", "OK"));
    let (code, body) = curl(
        &stack,
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            "{bad",
            "http://x/v1.47/containers/create",
        ],
    );
    assert_eq!(code, "400", "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(!v["message"].as_str().unwrap_or("").is_empty(), "{body}");
    let (code, body) = curl(&stack, &["http://x/v1.47/containers/nope/json"]);
    assert_eq!(code, "404");
    assert!(body.contains("No such container: nope"), "{body}");
    let (code, body) = curl(
        &stack,
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"Image":"busybox","Cmd":["true"]}"#,
            "http://x/v1.47/containers/create?name=web",
        ],
    );
    assert_eq!(code, "409", "{body}");
    assert!(body.contains("is already in use"), "{body}");
    stack.ok(&berth, &["rm", "-f", "web"]);
}

#[test]
fn containers_outlive_a_berthd_crash() {
    berth_testutil::require_root!();
    let _serial = serial();
    let mut stack = Stack::start();
    let berth = berth_testutil::binary("berth");
    stack.ok(
        &berth,
        &["run", "-d", "--name", "sleeper", "busybox", "sleep", "1000"],
    );
    stack.ok(
        &berth,
        &[
            "run",
            "-d",
            "--name",
            "talker",
            "busybox",
            "sh",
            "-c",
            "echo before; while [ ! -e /go ]; do sleep 0.1; done; echo after; exit 7",
        ],
    );
    stack.ok(
        &berth,
        &[
            "run",
            "-d",
            "--name",
            "quitter",
            "busybox",
            "sh",
            "-c",
            "while [ ! -e /go ]; do sleep 0.1; done; exit 3",
        ],
    );
    let pid = stack.inspect("sleeper", "{{.State.Pid}}");
    let quitter = stack.inspect("quitter", "{{.State.Pid}}");
    stack.kill_berthd();
    // One container exits while berthd is down (told so through its root as the
    // host sees it): berthd learns of it when it comes back.
    std::fs::write(format!("/proc/{quitter}/root/go"), "").unwrap();
    eventually("the container exits while berthd is down", || {
        (!Path::new(&format!("/proc/{quitter}")).exists()
            || proc_stat(quitter.parse().unwrap()).is_some_and(|(_, st)| st == "Z"))
        .then_some(())
    });
    stack.start_berthd();
    let out = stack.cli(&berth, &["wait", "quitter"]);
    assert_eq!(stdout(&out).trim(), "3");
    eventually(
        "ps -a shows the exit that happened while berthd was down",
        || {
            let ps = stack.ok(&berth, &["ps", "-a"]);
            ps.lines()
                .any(|l| l.contains("quitter") && l.contains("Exited (3)"))
                .then_some(())
        },
    );
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "the container died with berthd"
    );
    let ps = stack.ok(&berth, &["ps"]);
    assert!(ps.contains("sleeper") && ps.contains("talker"), "{ps}");
    assert_eq!(stack.inspect("sleeper", "{{.State.Pid}}"), pid);
    let follow = stack.spawn_cli(&berth, &["logs", "-f", "talker"]);
    let wait = stack.spawn_cli(&berth, &["wait", "talker"]);
    let mut docker_waits = vec![];
    for d in docker_clis() {
        docker_waits.push(stack.spawn_cli(&d, &["wait", "sleeper"]));
    }
    let wait_sleeper = stack.spawn_cli(&berth, &["wait", "sleeper"]);
    stack.ok(&berth, &["exec", "talker", "touch", "/go"]);
    let out = stack.finish(follow);
    assert_eq!(stdout(&out), "before\nafter\n");
    let out = stack.finish(wait);
    assert_eq!(stdout(&out).trim(), "7");
    // As docker's: wait prints the code and exits 0.
    assert_eq!(out.status.code(), Some(0));
    stack.ok(&berth, &["kill", "sleeper"]);
    let out = stack.finish(wait_sleeper);
    assert_eq!(stdout(&out).trim(), "137");
    for w in docker_waits {
        let out = stack.finish(w);
        assert_eq!(stdout(&out).trim(), "137");
    }
    let ps = stack.ok(&berth, &["ps", "-a"]);
    assert!(
        ps.lines()
            .any(|l| l.contains("talker") && l.contains("Exited (7)")),
        "{ps}"
    );
    stack.ok(&berth, &["rm", "sleeper", "talker", "quitter"]);
}

#[test]
fn cp_copies_both_ways() {
    berth_testutil::require_root!();
    let _serial = serial();
    let stack = Stack::start();
    let src = stack.path("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("in.txt"), "hello\n").unwrap();
    std::fs::write(src.join("d/f"), "in a dir\n").unwrap();
    for cli in clis() {
        let cli = cli.as_path();
        let n = format!("cp-{}", name(cli));
        stack.ok(
            cli,
            &["run", "-d", "--name", &n, "busybox", "sleep", "1000"],
        );
        let file = src.join("in.txt");
        stack.ok(
            cli,
            &["cp", &file.to_string_lossy(), &format!("{n}:/in.txt")],
        );
        assert_eq!(stack.ok(cli, &["exec", &n, "cat", "/in.txt"]), "hello\n");
        let dir = src.join("d");
        stack.ok(cli, &["cp", &dir.to_string_lossy(), &format!("{n}:/tmp")]);
        assert_eq!(
            stack.ok(cli, &["exec", &n, "cat", "/tmp/d/f"]),
            "in a dir\n"
        );
        // An absolute symlink inside the container resolves inside it.
        stack.ok(cli, &["exec", &n, "ln", "-s", "/tmp/d", "/link"]);
        let out = stack.path(&format!("out-{n}"));
        stack.ok(
            cli,
            &["cp", &format!("{n}:/link/f"), &out.to_string_lossy()],
        );
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "in a dir\n");
        let outdir = stack.path(&format!("outdir-{n}"));
        stack.ok(
            cli,
            &["cp", &format!("{n}:/tmp/d"), &outdir.to_string_lossy()],
        );
        assert_eq!(
            std::fs::read_to_string(outdir.join("f")).unwrap(),
            "in a dir\n"
        );
        let out = stack.cli(cli, &["cp", &format!("{n}:/nope"), &out.to_string_lossy()]);
        assert_eq!(out.status.code(), Some(1));
        stack.ok(cli, &["rm", "-f", &n]);
    }
}

/// `-v /data` makes an anonymous volume (in `Mounts`, gone with `rm -v`), and `cp`
/// works on a created and on an exited container: into its volume before it starts,
/// out of it after it exits, leaving no mount behind.
#[test]
fn cp_on_stopped_containers_and_anonymous_volumes() {
    berth_testutil::require_root!();
    let _serial = serial();
    let stack = Stack::start();
    let file = stack.path("in.txt");
    std::fs::write(&file, "hello\n").unwrap();
    for cli in clis() {
        let cli = cli.as_path();
        let n = format!("cps-{}", name(cli));
        stack.ok(
            cli,
            &[
                "create",
                "--name",
                &n,
                "-v",
                "/vol1",
                "busybox",
                "sh",
                "-c",
                "cat /vol1/in.txt && echo out > /vol1/out.txt && echo root > /root.txt",
            ],
        );
        let mounts = stack.inspect(&n, "{{range .Mounts}}{{.Type}} {{.Destination}}{{end}}");
        assert_eq!(mounts.trim(), "volume /vol1", "{n}");
        let vol = stack.inspect(&n, "{{range .Mounts}}{{.Name}}{{end}}");
        let vol = vol.trim().to_string();
        assert_eq!(vol.len(), 64, "{n}: {vol}");
        stack.ok(
            cli,
            &["cp", &file.to_string_lossy(), &format!("{n}:/vol1/in.txt")],
        );
        assert_eq!(stack.ok(cli, &["start", "-a", &n]), "hello\n", "{n}");
        for (inside, want) in [("/vol1/out.txt", "out\n"), ("/root.txt", "root\n")] {
            let out = stack.path(&format!("out-{n}"));
            stack.ok(
                cli,
                &["cp", &format!("{n}:{inside}"), &out.to_string_lossy()],
            );
            assert_eq!(std::fs::read_to_string(&out).unwrap(), want, "{n} {inside}");
            std::fs::remove_file(&out).unwrap();
        }
        let missing = stack.cli(
            cli,
            &[
                "cp",
                &format!("{n}:/nope"),
                &stack.path("x").to_string_lossy(),
            ],
        );
        assert_eq!(missing.status.code(), Some(1), "{n}");
        assert!(stack.ok(cli, &["volume", "ls", "-q"]).contains(&vol), "{n}");
        stack.ok(cli, &["rm", "-v", &n]);
        assert!(
            !stack.ok(cli, &["volume", "ls", "-q"]).contains(&vol),
            "{n}"
        );
    }
    // The copies' mount points are gone, and nothing of them is mounted here.
    let cp_dir = stack.path("engine-run").join("cp");
    let left: Vec<_> = std::fs::read_dir(&cp_dir)
        .into_iter()
        .flatten()
        .flatten()
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mountinfo.contains(&cp_dir.to_string_lossy().into_owned()));
}

#[test]
fn restart_policies_restart_and_count() {
    berth_testutil::require_root!();
    let _serial = serial();
    let stack = Stack::start();
    let berth = berth_testutil::binary("berth");
    // on-failure:2 — restarted twice, then left exited with its code.
    stack.ok(
        &berth,
        &[
            "run",
            "-d",
            "--name",
            "flaky",
            "--restart",
            "on-failure:2",
            "busybox",
            "sh",
            "-c",
            "exit 3",
        ],
    );
    eventually("two restarts, then exited", || {
        let s = stack.inspect(
            "flaky",
            "{{.RestartCount}} {{.State.Status}} {{.State.ExitCode}}",
        );
        (s == "2 exited 3").then_some(())
    });
    // A clean exit is not a failure: no restart.
    stack.ok(
        &berth,
        &[
            "run",
            "-d",
            "--name",
            "fine",
            "--restart",
            "on-failure",
            "busybox",
            "true",
        ],
    );
    eventually("exited", || {
        (stack.inspect("fine", "{{.State.Status}}") == "exited").then_some(())
    });
    assert_eq!(stack.inspect("fine", "{{.RestartCount}}"), "0");
    // always — restarted after it exits on its own, but not after `stop`.
    stack.ok(
        &berth,
        &[
            "run",
            "-d",
            "--name",
            "again",
            "--restart",
            "always",
            "busybox",
            "sh",
            "-c",
            "sleep 0.2",
        ],
    );
    eventually("restarted at least once", || {
        let n: i64 = stack.inspect("again", "{{.RestartCount}}").parse().ok()?;
        (n >= 1).then_some(())
    });
    // `wait` (not-running) ends at an exit its policy restarts from, as with dockerd.
    assert_eq!(stack.ok(&berth, &["wait", "again"]).trim(), "0");
    stack.ok(&berth, &["stop", "-t", "1", "again"]);
    let stopped_at = stack.inspect("again", "{{.RestartCount}}");
    eventually("stopped", || {
        (stack.inspect("again", "{{.State.Status}}") == "exited").then_some(())
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(stack.inspect("again", "{{.State.Status}}"), "exited");
    assert_eq!(stack.inspect("again", "{{.RestartCount}}"), stopped_at);
    for n in ["flaky", "fine", "again"] {
        stack.ok(&berth, &["rm", "-f", n]);
    }
}

/// The shapes docker-py's integration suite relies on (tests/docker_py_shapes.py).
#[test]
fn docker_py_sees_dockers_shapes() {
    berth_testutil::require_root!();
    let _serial = serial();
    let Some(python) = support::docker_py() else {
        eprintln!("skipped: no docker-py (scripts/deps.sh makes target/docker-py)");
        return;
    };
    let stack = Stack::start();
    let script =
        berth_testutil::workspace_root().join("crates/berth-engine/tests/docker_py_shapes.py");
    let out = Command::new(python)
        .arg(script)
        .arg(stack.host())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `run --rm --network none ARGS...`.
fn run_rm(stack: &Stack, berth: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["run", "--rm", "--network", "none"];
    all.extend(args);
    stack.cli(berth, &all)
}

/// `run -d --network none ARGS...`: the new container's id.
fn run_d(stack: &Stack, berth: &Path, args: &[&str]) -> String {
    let mut all = vec!["run", "-d", "--network", "none"];
    all.extend(args);
    stack.ok(berth, &all).trim().to_string()
}

/// Each `run --rm` with these flags fails saying so, and leaves no container.
fn refused(stack: &Stack, berth: &Path, cases: &[(Vec<&str>, &str)]) {
    let before = stack.ok(berth, &["ps", "-aq"]);
    for (args, says) in cases {
        let mut all = args.clone();
        all.extend(["busybox", "true"]);
        let out = run_rm(stack, berth, &all);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
    assert_eq!(stack.ok(berth, &["ps", "-aq"]), before);
}

/// `--pid`, `--ipc` and `--uts` share what they name (they were taken and
/// ignored once): the host's namespaces, another running container's PID
/// namespace, a shareable container's IPC namespace and /dev/shm, no /dev/shm
/// with `--ipc none`; and refuse what dockerd refuses, before anything is left
/// behind.
#[test]
fn namespace_modes_share_what_they_name() {
    berth_testutil::require_root!();
    let _serial = serial();
    let stack = Stack::start();
    let berth = berth_testutil::binary("berth");
    let run = |args: &[&str]| {
        let out = run_rm(&stack, &berth, args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        stdout(&out).trim().to_string()
    };
    let host_ns = |kind: &str| ns("self", kind);
    assert_eq!(
        run(&["--pid", "host", "busybox", "readlink", "/proc/self/ns/pid"]),
        host_ns("pid")
    );
    assert_eq!(
        run(&["--ipc", "host", "busybox", "readlink", "/proc/self/ns/ipc"]),
        host_ns("ipc")
    );
    assert_eq!(
        run(&["--uts", "host", "busybox", "readlink", "/proc/self/ns/uts"]),
        host_ns("uts")
    );
    let host_name = nix::unistd::gethostname().unwrap();
    assert_eq!(
        run(&["--uts", "host", "busybox", "hostname"]),
        host_name.to_string_lossy()
    );
    assert_eq!(
        run(&[
            "--ipc",
            "none",
            "busybox",
            "sh",
            "-c",
            "ls -d /dev/shm 2>&1 || true"
        ]),
        "ls: /dev/shm: No such file or directory"
    );
    // The defaults stay private.
    assert_ne!(
        run(&["busybox", "readlink", "/proc/self/ns/pid"]),
        host_ns("pid")
    );

    run_d(
        &stack,
        &berth,
        &["--name", "donor", "busybox", "sleep", "300"],
    );
    let donor = stack.inspect("donor", "{{.State.Pid}}");
    assert_eq!(
        run(&[
            "--pid",
            "container:donor",
            "busybox",
            "readlink",
            "/proc/self/ns/pid"
        ]),
        ns(&donor, "pid")
    );
    let ps = run(&[
        "--pid",
        "container:donor",
        "busybox",
        "ps",
        "-o",
        "pid,args",
    ]);
    assert!(ps.lines().any(|l| l.trim() == "1 sleep 300"), "{ps}");

    // A shareable IPC namespace: a joiner gets the namespace and /dev/shm both.
    run_d(
        &stack,
        &berth,
        &[
            "--name",
            "shm-donor",
            "--ipc",
            "shareable",
            "busybox",
            "sh",
            "-c",
            "echo shared > /dev/shm/x; sleep 300",
        ],
    );
    let shm_donor = stack.inspect("shm-donor", "{{.State.Pid}}");
    eventually("the donor wrote its /dev/shm", || {
        std::fs::read_to_string(format!("/proc/{shm_donor}/root/dev/shm/x"))
            .ok()
            .filter(|t| t == "shared\n")
    });
    let seen = run(&[
        "--ipc",
        "container:shm-donor",
        "busybox",
        "sh",
        "-c",
        "cat /dev/shm/x; readlink /proc/self/ns/ipc",
    ]);
    assert_eq!(seen, format!("shared\n{}", ns(&shm_donor, "ipc")));
    stack.ok(&berth, &["rm", "-f", "shm-donor"]);
    assert!(
        !std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .contains("mounts/shm"),
        "a shareable /dev/shm outlived its container"
    );

    refused(
        &stack,
        &berth,
        &[
            (
                vec!["--uts", "host", "-h", "other"],
                "Conflicting options: hostname and the UTS mode",
            ),
            (vec!["--ipc", "container:donor"], "non-shareable IPC"),
            (vec!["--pid", "container:nosuch"], "No such container"),
            (vec!["--pid", "hots"], "invalid PID mode"),
            (vec!["--userns", "remap"], "invalid user namespace mode"),
        ],
    );
    stack.ok(&berth, &["rm", "-f", "donor"]);
}

/// `--volumes-from` gives a container the volumes and binds of another, at the
/// same places (docker's backup recipe), `:ro` makes them read-only, the
/// container's own mount of a place wins, and removing the borrower with `-v`
/// leaves the donor's anonymous volume (it was taken and ignored once).
#[test]
fn volumes_from_borrows_another_containers_mounts() {
    berth_testutil::require_root!();
    let _serial = serial();
    let stack = Stack::start();
    let berth = berth_testutil::binary("berth");
    let host_dir = stack.path("shared");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("h"), "from the host\n").unwrap();
    let bind = format!("{}:/hostdir:ro", host_dir.display());
    stack.ok(
        &berth,
        &[
            "run",
            "--network",
            "none",
            "--name",
            "donor",
            "-v",
            "named-data:/data",
            "-v",
            "/anon",
            "-v",
            &bind,
            "busybox",
            "sh",
            "-c",
            "echo named > /data/f && echo anon > /anon/f",
        ],
    );
    let run = |args: &[&str]| run_rm(&stack, &berth, args);
    let out = run(&[
        "--volumes-from",
        "donor",
        "busybox",
        "cat",
        "/data/f",
        "/anon/f",
        "/hostdir/h",
    ]);
    assert_eq!(
        stdout(&out),
        "named\nanon\nfrom the host\n",
        "{}",
        stderr(&out)
    );
    let out = run(&[
        "--volumes-from",
        "donor:ro",
        "busybox",
        "sh",
        "-c",
        "echo x > /data/g",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Read-only file system"),
        "{}",
        stderr(&out)
    );
    let out = run(&[
        "--volumes-from",
        "donor",
        "-v",
        "other-data:/data",
        "busybox",
        "ls",
        "/data",
    ]);
    assert_eq!(stdout(&out), "", "{}", stderr(&out));
    let out = run(&["--volumes-from", "nosuch", "busybox", "true"]);
    assert!(
        stderr(&out).contains("No such container"),
        "{}",
        stderr(&out)
    );

    let anon = stack.inspect(
        "donor",
        "{{range .Mounts}}{{if eq .Destination \"/anon\"}}{{.Name}}{{end}}{{end}}",
    );
    assert!(!anon.is_empty());
    stack.ok(
        &berth,
        &[
            "create",
            "--name",
            "borrower",
            "--volumes-from",
            "donor",
            "busybox",
            "true",
        ],
    );
    stack.ok(&berth, &["rm", "-v", "borrower"]);
    let volumes = stack.ok(&berth, &["volume", "ls", "-q"]);
    assert!(volumes.lines().any(|v| v == anon), "{volumes}");
    stack.ok(&berth, &["rm", "-v", "donor"]);
    stack.ok(&berth, &["volume", "rm", "named-data", "other-data"]);
}

/// `--cgroup-parent` puts the container's cgroup where it says, the block I/O
/// throttles reach the cgroup, and what berth cannot honour (`--gpus`'s device
/// requests, `--storage-opt`, another volume driver) is refused with dockerd's
/// words before anything is made: all of it was taken and ignored once.
#[test]
fn cgroup_parent_block_io_and_refusals() {
    berth_testutil::require_root!();
    let _serial = serial();
    let stack = Stack::start();
    let berth = berth_testutil::binary("berth");
    let parent = berth_testutil::test_cgroup(&berth_testutil::unique_name("parent"));
    // Dropped last: the container's cgroup below it is gone with the container.
    let _parent = berth_testutil::CgroupGuard(parent.clone());
    let out = run_rm(
        &stack,
        &berth,
        &[
            "--cgroup-parent",
            &parent,
            "busybox",
            "cat",
            "/proc/self/cgroup",
        ],
    );
    let line = stdout(&out);
    assert!(
        line.lines().any(|l| l.contains(&format!(":/{parent}/"))),
        "{line} {}",
        stderr(&out)
    );

    // A block device of the host's /dev (docker's CLI takes no other path), for
    // the throttles.
    let found = berth_testutil::block_device_candidates()
        .into_iter()
        .find_map(|(major, minor)| {
            let sys = std::fs::read_link(format!("/sys/dev/block/{major}:{minor}")).ok()?;
            let dev = Path::new("/dev").join(sys.file_name()?);
            dev.exists().then_some((major, minor, dev))
        });
    if let Some((major, minor, node)) = found {
        let limit = format!("{}:1048576", node.display());
        let id = run_d(
            &stack,
            &berth,
            &["--device-read-bps", &limit, "busybox", "sleep", "300"],
        );
        let id = id.trim();
        let host = stack.inspect(id, "{{json .HostConfig.BlkioDeviceReadBps}}");
        assert!(host.contains("1048576"), "{host}");
        let pid = stack.inspect(id, "{{.State.Pid}}");
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let file = match cgroup.lines().find_map(|l| l.strip_prefix("0::")) {
            Some(rel) if cgroup.lines().count() == 1 => {
                format!("/sys/fs/cgroup{rel}/io.max")
            }
            _ => {
                let rel = cgroup
                    .lines()
                    .find_map(|l| l.split_once(":blkio:").map(|(_, r)| r.to_string()))
                    .unwrap();
                format!("/sys/fs/cgroup/blkio{rel}/blkio.throttle.read_bps_device")
            }
        };
        let limits = std::fs::read_to_string(&file).unwrap();
        assert!(
            limits.contains(&format!("{major}:{minor}")) && limits.contains("1048576"),
            "{file}: {limits}"
        );
        stack.ok(&berth, &["rm", "-f", id]);
    }

    refused(
        &stack,
        &berth,
        &[
            (
                vec!["--storage-opt", "size=1G"],
                "--storage-opt is supported only",
            ),
            (
                vec!["--volume-driver", "nfs-plugin", "-v", "/data"],
                "plugin \"nfs-plugin\" not found",
            ),
            (
                vec!["--volume-driver", "nfs-plugin", "-v", "named:/data"],
                "plugin \"nfs-plugin\" not found",
            ),
            (
                vec!["--cgroup-parent", "../elsewhere"],
                "invalid cgroup parent",
            ),
            (vec!["--blkio-weight", "5"], "Range of blkio weight"),
        ],
    );
    // --gpus is the docker CLI's: the device request through the API.
    let (status, body) = stack.http(
        "POST",
        "/containers/create",
        br#"{"Image": "busybox", "HostConfig": {"NetworkMode": "none",
            "DeviceRequests": [{"Driver": "", "Count": -1, "Capabilities": [["gpu"]]}]}}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("could not select device driver"), "{body}");
    assert_eq!(stack.ok(&berth, &["ps", "-aq"]), "");
    assert!(!stack.ok(&berth, &["volume", "ls", "-q"]).contains("named"));
    // A container that makes no volume keeps the driver's name, as dockerd
    // (docker-py's test_create_with_volume_driver).
    let id = stack.ok(
        &berth,
        &[
            "create",
            "--network",
            "none",
            "--volume-driver",
            "nfs-plugin",
            "busybox",
            "true",
        ],
    );
    let driver = stack.ok(
        &berth,
        &["inspect", "-f", "{{.HostConfig.VolumeDriver}}", id.trim()],
    );
    assert_eq!(driver.trim(), "nfs-plugin");
    stack.ok(&berth, &["rm", id.trim()]);
}

/// `--log-opt max-size`/`max-file` rotate the json-file log as dockerd does (the
/// current file and `.1`, `.2`, each within the size), and `logs` reads across the
/// files in order: once taken and ignored, and the log grew without bound.
#[test]
fn json_file_logs_rotate_and_logs_reads_across_the_files() {
    berth_testutil::require_root!();
    let _serial = serial();
    let stack = Stack::start();
    let berth = berth_testutil::binary("berth");
    let id = run_d(
        &stack,
        &berth,
        &[
            "--log-opt",
            "max-size=1k",
            "--log-opt",
            "max-file=3",
            "busybox",
            "sh",
            "-c",
            "i=0; while [ $i -lt 200 ]; do echo line $i; i=$((i+1)); done",
        ],
    );
    let id = id.trim();
    assert_eq!(stack.ok(&berth, &["wait", id]).trim(), "0");
    let log = std::path::PathBuf::from(stack.inspect(id, "{{.LogPath}}"));
    let numbered = |n: u32| {
        let mut p = log.clone().into_os_string();
        p.push(format!(".{n}"));
        std::path::PathBuf::from(p)
    };
    for p in [log.clone(), numbered(1), numbered(2)] {
        let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        assert!(len > 0 && len <= 1000, "{}: {len} bytes", p.display());
    }
    assert!(!numbered(3).exists());
    let all = stack.ok(&berth, &["logs", id]);
    let nums: Vec<u32> = all
        .lines()
        .map(|l| l.trim_start_matches("line ").parse().unwrap())
        .collect();
    assert!(nums.len() > 10, "{all}");
    assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{nums:?}");
    assert_eq!(nums.last(), Some(&199));
    assert_eq!(
        stack.ok(&berth, &["logs", "--tail", "2", id]),
        "line 198\nline 199\n"
    );
    stack.ok(&berth, &["rm", id]);
}
