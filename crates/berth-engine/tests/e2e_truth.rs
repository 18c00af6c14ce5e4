//! End to end, as root, through our CLI and every docker CLI installed: the engine
//! tells the truth through every fault (issue 9). Each test reproduces one thing
//! that used to go wrong:
//!
//! - an exit while berth-manager is down, and one after it is back, are seen, and
//!   a `wait` started before the fault returns the code; the same for berthd;
//! - an import whose error is huge (a 60 KiB file name) does not cut the engine
//!   off from the manager;
//! - a failed start (`run --rm` of a missing command) exits 127, removes the
//!   container and does not hang; `exec` of a missing or non-executable program
//!   exits 127 or 126;
//! - `kill` returns once the container is dead, and `rm -f` after `kill` works;
//! - `--restart on-failure:2` ends exited with RestartCount=2 and the last code;
//! - `GraphDriver.Data.MergedDir` is the container's root while it runs;
//! - a berthd restarted beside containers whose specs together pass 4 MiB (about
//!   400 containers) reconciles: it used to fail on the size of the manager's
//!   answer, again and again, and never saw an exit missed while it was down.
//!
//! The tests take a shared lock ([`support::serial`]): the stack guard reaps zombie
//! children, which is only safe while no other test of this binary runs.

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use support::{clis, eventually, serial, stderr, stdout, Stack};

fn short(cli: &Path) -> &'static str {
    match cli.to_string_lossy().as_ref() {
        "/usr/local/bin/docker" => "d28",
        "/usr/bin/docker" => "d20",
        _ => "berth",
    }
}

fn is_berth(cli: &Path) -> bool {
    short(cli) == "berth"
}

fn kill9(pid: &str) {
    let pid: i32 = pid.trim().parse().unwrap_or_else(|_| panic!("pid {pid:?}"));
    assert!(pid > 1, "pid {pid}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}

/// `inspect -f '{{.State.Status}} {{.State.ExitCode}}'`, polled until it says
/// `want`.
fn eventually_state(stack: &Stack, name: &str, want: &str) {
    eventually(&format!("{name} is {want}"), || {
        (stack.inspect(name, "{{.State.Status}} {{.State.ExitCode}}") == want).then_some(())
    });
}

/// What `wait` prints (the docker CLI exits 0, ours with the code).
fn waited(stack: &Stack, cli: &Path, name: &str) -> String {
    let out = stack.cli(cli, &["wait", name]);
    stdout(&out).trim().to_string()
}

/// The `die` events berthd has for container `id`.
fn die_events(stack: &Stack, id: &str) -> usize {
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let filters = format!("{{\"container\":[\"{id}\"],\"event\":[\"die\"]}}");
    let path = format!(
        "/v1.47/events?since=0&until={until}&filters={}",
        percent(&filters)
    );
    let (status, body) = stack.http("GET", &path, b"");
    assert_eq!(status, 200, "{body}");
    body.lines().filter(|l| l.contains("\"die\"")).count()
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn exits_while_the_manager_is_down_and_after_it_is_back_are_seen_once() {
    berth_testutil::require_root!();
    let _serial = serial();
    let mut stack = Stack::start();
    for cli in clis() {
        let cli = cli.as_path();
        let down = format!("down-{}", short(cli));
        let back = format!("back-{}", short(cli));
        let down_id = stack.ok(
            cli,
            &["run", "-d", "--name", &down, "busybox", "sleep", "1000"],
        );
        let back_id = stack.ok(
            cli,
            &["run", "-d", "--name", &back, "busybox", "sleep", "1000"],
        );
        // Waits started before any fault.
        let w_down = stack.spawn_cli(cli, &["wait", &down]);
        let w_back = stack.spawn_cli(cli, &["wait", &back]);
        std::thread::sleep(Duration::from_millis(300));

        stack.kill_manager();
        kill9(&stack.inspect(&down, "{{.State.Pid}}"));
        stack.restart_manager();
        eventually_state(&stack, &down, "exited 137");

        // The link is back: an exit after the restart is seen too.
        kill9(&stack.inspect(&back, "{{.State.Pid}}"));
        eventually_state(&stack, &back, "exited 137");

        for w in [w_down, w_back] {
            let out = stack.finish(w);
            assert_eq!(stdout(&out).trim(), "137", "{}", stderr(&out));
        }
        assert_eq!(die_events(&stack, down_id.trim()), 1, "one die for {down}");
        assert_eq!(die_events(&stack, back_id.trim()), 1, "one die for {back}");
        let ps = stack.ok(cli, &["ps"]);
        assert!(!ps.contains(&down) && !ps.contains(&back), "{ps}");
        stack.ok(cli, &["rm", &down, &back]);
    }
}

#[test]
fn an_exit_while_berthd_is_down_is_seen_once_after_its_restart() {
    berth_testutil::require_root!();
    let _serial = serial();
    let mut stack = Stack::start();
    for cli in clis() {
        let cli = cli.as_path();
        let n = format!("bd-{}", short(cli));
        let id = stack.ok(
            cli,
            &[
                "run",
                "-d",
                "--name",
                &n,
                "busybox",
                "sh",
                "-c",
                "sleep 1000",
            ],
        );
        let pid = stack.inspect(&n, "{{.State.Pid}}");
        stack.kill_berthd();
        kill9(&pid);
        // And the manager goes down and up meanwhile, too.
        stack.kill_manager();
        stack.restart_manager();
        stack.start_berthd();
        eventually_state(&stack, &n, "exited 137");
        // A wait after the restart returns at once with the code.
        assert_eq!(waited(&stack, cli, &n), "137");
        assert_eq!(die_events(&stack, id.trim()), 1);
        stack.ok(cli, &["rm", &n]);
    }
}

#[test]
fn a_restart_reconciles_with_more_specs_than_grpcs_default_message_limit() {
    use berth_api::berth::manager::v1 as pb;
    use berth_api::berth::manager::v1::containers_client::ContainersClient;
    berth_testutil::require_root!();
    let _serial = serial();
    let mut stack = Stack::start();
    let berth = berth_testutil::binary("berth");
    stack.ok(
        &berth,
        &["run", "-d", "--name", "big", "busybox", "sleep", "1000"],
    );
    let pid = stack.inspect("big", "{{.State.Pid}}");
    stack.kill_berthd();
    kill9(&pid);
    // An earlier berthd's creates, cut short before it recorded them: the first
    // reconcile lists them to delete them. Five specs of 1 MiB stand for the specs
    // of about 500 containers.
    let label = berth_engine::lifecycle::create::ENGINE_LABEL;
    let spec = serde_json::json!({
        "ociVersion": "1.0.2",
        "annotations": {"padding": "x".repeat(1 << 20)},
    });
    let ids: Vec<String> = (0..5u64).map(|i| format!("{:064x}", 0xb16 + i)).collect();
    let created = ids.clone();
    stack.with_manager(|channel| async move {
        let mut c = ContainersClient::new(channel);
        for id in created {
            c.create(pb::CreateContainerRequest {
                container: Some(pb::Container {
                    id,
                    spec: serde_json::to_vec(&spec).unwrap(),
                    labels: [(label.to_string(), "true".to_string())].into(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
        }
    });
    stack.start_berthd();
    // The exit missed while berthd was down is found...
    eventually_state(&stack, "big", "exited 137");
    // ...and the cut-short creates are gone.
    eventually("the cut-short creates deleted", || {
        let left = stack.with_manager(|channel| async move {
            ContainersClient::new(channel)
                .list(pb::ListContainersRequest {
                    filters: vec![format!("label={label}")],
                    omit_spec: true,
                })
                .await
                .unwrap()
                .into_inner()
                .containers
        });
        (!left.iter().any(|c| ids.contains(&c.id))).then_some(())
    });
    assert!(
        !stack
            .logs()
            .contains("reconciling with berth-manager failed"),
        "{}",
        stack.logs()
    );
    stack.ok(&berth, &["rm", "big"]);
}

/// A tar whose one file has a name of 60 KiB: under the manager's 64 KiB cap on a
/// long name record, so the layer is unpacked and the name (too long for any file
/// system) comes back in the error.
fn long_name_tar(dir: &Path) -> std::path::PathBuf {
    let name = format!("a/{}", "x".repeat(60 * 1024));
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(2);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, &name, &b"hi"[..]).unwrap();
    let path = dir.join("long-name.tar");
    std::fs::write(&path, b.into_inner().unwrap()).unwrap();
    path
}

#[test]
fn a_huge_import_error_does_not_cut_the_engine_off_from_the_manager() {
    berth_testutil::require_root!();
    let _serial = serial();
    let mut stack = Stack::start();
    let tar = long_name_tar(&stack.path(""));
    let tar = tar.to_string_lossy().into_owned();
    for cli in clis() {
        let cli = cli.as_path();
        let n = format!("imp-{}", short(cli));
        stack.ok(
            cli,
            &["run", "-d", "--name", &n, "busybox", "sleep", "1000"],
        );
        let w = stack.spawn_cli(cli, &["wait", &n]);
        let out = stack.cli(cli, &["import", &tar, &format!("long-{}:1", short(cli))]);
        assert_ne!(out.status.code(), Some(0));
        let err = stderr(&out);
        assert!(
            err.len() < 2048,
            "the whole error came back: {} bytes",
            err.len()
        );
        // The name reaches the error, bounded (a name over the layer guard's 64 KiB
        // cap is refused before it reaches an error message); either way the
        // client hears why.
        assert!(err.contains("long name") || err.contains("xxxx"), "{err}");
        // The exit of a container is still seen afterwards.
        kill9(&stack.inspect(&n, "{{.State.Pid}}"));
        eventually_state(&stack, &n, "exited 137");
        let out = stack.finish(w);
        assert_eq!(stdout(&out).trim(), "137", "{}", stderr(&out));
        stack.ok(cli, &["rm", &n]);
    }
}

#[test]
fn failed_starts_and_execs_exit_as_with_docker() {
    berth_testutil::require_root!();
    let _serial = serial();
    let stack = Stack::start();
    for cli in clis() {
        let cli = cli.as_path();
        // run --rm of a missing command: 127, no hang, nothing left.
        let n = format!("missing-{}", short(cli));
        let out = stack.cli(cli, &["run", "--rm", "--name", &n, "busybox", "nosuchcmd"]);
        let code = out.status.code();
        if is_berth(cli) {
            // The berth CLI's own exit codes are its business; the engine's part is
            // that it fails and leaves nothing.
            assert_ne!(code, Some(0));
        } else {
            assert_eq!(code, Some(127), "{}", stderr(&out));
        }
        assert!(
            stderr(&out).contains("executable file not found"),
            "{}",
            stderr(&out)
        );
        eventually(&format!("{n} is removed"), || {
            let all = stack.ok(cli, &["ps", "-a"]);
            (!all.contains(&n)).then_some(())
        });
        // Without --rm the container stays, exited 127, with the error.
        let k = format!("kept-{}", short(cli));
        let _ = stack.cli(cli, &["run", "--name", &k, "busybox", "/etc/passwd"]);
        assert_eq!(
            stack.inspect(&k, "{{.State.Status}} {{.State.ExitCode}}"),
            "exited 126"
        );
        assert!(stack
            .inspect(&k, "{{.State.Error}}")
            .contains("permission denied"));
        stack.ok(cli, &["rm", &k]);

        // exec: 127 not found, 126 not executable, and the message on the way.
        let e = format!("exec-{}", short(cli));
        stack.ok(
            cli,
            &["run", "-d", "--name", &e, "busybox", "sleep", "1000"],
        );
        let out = stack.cli(cli, &["exec", &e, "nosuch"]);
        assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
        let said = format!("{}{}", stdout(&out), stderr(&out));
        assert!(said.contains("executable file not found"), "{said}");
        let out = stack.cli(cli, &["exec", &e, "/etc/passwd"]);
        assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
        let out = stack.cli(cli, &["exec", &e, "sh", "-c", "exit 3"]);
        assert_eq!(out.status.code(), Some(3));
        stack.ok(cli, &["rm", "-f", &e]);
    }
}

#[test]
fn kill_returns_once_dead_and_rm_after_kill_always_works() {
    berth_testutil::require_root!();
    let _serial = serial();
    let stack = Stack::start();
    for cli in clis() {
        let cli = cli.as_path();
        for i in 0..5 {
            let n = format!("kill-{}-{i}", short(cli));
            stack.ok(
                cli,
                &["run", "-d", "--name", &n, "busybox", "sleep", "1000"],
            );
            stack.ok(cli, &["kill", &n]);
            // No polling: the kill returned after the exit was recorded.
            assert_eq!(
                stack.inspect(&n, "{{.State.Status}} {{.State.ExitCode}}"),
                "exited 137"
            );
            let m = format!("rmf-{}-{i}", short(cli));
            stack.ok(
                cli,
                &["run", "-d", "--name", &m, "busybox", "sleep", "1000"],
            );
            // A signal the process dies of, then at once rm -f.
            stack.ok(cli, &["kill", "-s", "TERM", &m]);
            stack.ok(cli, &["rm", "-f", &m]);
            stack.ok(cli, &["rm", &n]);
        }
    }
}

#[test]
fn on_failure_counts_and_stops_as_docker_does() {
    berth_testutil::require_root!();
    let _serial = serial();
    let stack = Stack::start();
    for cli in clis() {
        let cli = cli.as_path();
        let n = format!("onf-{}", short(cli));
        stack.ok(
            cli,
            &[
                "run",
                "-d",
                "--name",
                &n,
                "--restart",
                "on-failure:2",
                "busybox",
                "sh",
                "-c",
                "exit 1",
            ],
        );
        // wait returns at an exit, also one the policy restarts from (dockerd's state
        // wakes its waiters when it turns to restarting); it stops for good after
        // two restarts.
        assert_eq!(waited(&stack, cli, &n), "1");
        eventually(&format!("{n} exited after two restarts"), || {
            (stack.inspect(
                &n,
                "{{.State.Status}} {{.State.ExitCode}} {{.RestartCount}}",
            ) == "exited 1 2")
                .then_some(())
        });
        stack.ok(cli, &["rm", &n]);
    }
}

#[test]
fn merged_dir_is_the_running_containers_root() {
    berth_testutil::require_root!();
    let _serial = serial();
    let stack = Stack::start();
    for cli in clis() {
        let cli = cli.as_path();
        let n = format!("merged-{}", short(cli));
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
                "echo hi > /made-here; sleep 1000",
            ],
        );
        eventually("the container wrote its file", || {
            stack
                .cli(cli, &["exec", &n, "cat", "/made-here"])
                .status
                .success()
                .then_some(())
        });
        let merged = stack.inspect(&n, "{{.GraphDriver.Data.MergedDir}}");
        let dir = Path::new(&merged);
        assert!(dir.join("bin/busybox").is_file(), "{merged}");
        assert_eq!(
            std::fs::read_to_string(dir.join("made-here")).unwrap(),
            "hi\n"
        );
        // diff, export and cp still work.
        let diff = stack.ok(cli, &["diff", &n]);
        assert!(diff.lines().any(|l| l == "A /made-here"), "{diff}");
        let tar = stack.path(&format!("{n}.tar"));
        stack.ok(cli, &["export", "-o", &tar.to_string_lossy(), &n]);
        assert!(std::fs::metadata(&tar).unwrap().len() > 1_000_000);
        let copied = stack.path(&format!("{n}-copied"));
        stack.ok(
            cli,
            &["cp", &format!("{n}:/made-here"), &copied.to_string_lossy()],
        );
        assert_eq!(std::fs::read_to_string(&copied).unwrap(), "hi\n");
        stack.ok(cli, &["rm", "-f", &n]);
    }
}

#[test]
fn docker_py_exec_run_gets_both_streams_and_the_exit_code() {
    berth_testutil::require_root!();
    let _serial = serial();
    let Some(python) = support::docker_py() else {
        eprintln!("skipped: no docker-py (scripts/deps.sh makes target/docker-py)");
        return;
    };
    let stack = Stack::start();
    let script =
        berth_testutil::workspace_root().join("crates/berth-engine/tests/docker_py_exec.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(stack.host())
        .arg("50")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("50 rounds"));
}

/// As dockerd at its start: an AutoRemove container that is not running is
/// removed (what a crash leaves of a `run --rm` cut short before its start, or a
/// `create --rm` never started); a plain created one stays.
#[test]
fn autoremove_containers_left_stopped_are_removed_at_berthds_start() {
    berth_testutil::require_root!();
    let _serial = serial();
    let mut stack = Stack::start();
    let berth = berth_testutil::binary("berth");
    let create = |name: &str, rm: bool| {
        let mut args = vec!["create", "--network", "none", "--name", name];
        if rm {
            args.push("--rm");
        }
        args.extend(["busybox", "true"]);
        stack.ok(&berth, &args)
    };
    create("left-rm", true);
    create("left-kept", false);
    stack.kill_berthd();
    stack.start_berthd();
    eventually("the AutoRemove container is removed", || {
        let ps = stack.ok(&berth, &["ps", "-a", "--format", "{{.Names}}"]);
        (!ps.contains("left-rm")).then_some(())
    });
    let ps = stack.ok(&berth, &["ps", "-a", "--format", "{{.Names}}"]);
    assert!(ps.contains("left-kept"), "{ps}");
    // A `run --rm` right after the start is not mistaken for one left over.
    let out = stack.ok(
        &berth,
        &["run", "--rm", "--network", "none", "busybox", "echo", "ran"],
    );
    assert_eq!(out.trim(), "ran");
    stack.ok(&berth, &["rm", "left-kept"]);
}
