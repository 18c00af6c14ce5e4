//! The fault test of issue 9, as root on a private stack: 20 containers with mixed
//! lifetimes (0.1-5 s) and exit codes (0-9), two killed by the OOM killer and three
//! by `kill -9` from the host, while berth-manager is SIGKILLed three times and
//! berthd three times at random moments (and started again, sometimes while the
//! other is down). Afterwards:
//!
//! - every container's inspect shows the code it really exited with (137 and
//!   `OOMKilled` where so);
//! - every `wait` started at the beginning returned that code (a wait whose
//!   connection died with berthd is asked again, as a client would);
//! - `events` holds exactly one `die` per exit;
//! - `ps` shows none of them running;
//! - every log is complete;
//! - removing them leaves no task behind.
//!
//! The moments are random; the seed is printed, and `BERTH_FAULT_SEED=<n>` replays
//! a run. Bounded: every wait is a guard against hanging, not a timing assertion.

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{eventually, http, serial, Stack, EVENTUALLY};

/// A small PRNG (xorshift64*): enough to place faults, and replayable.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [lo, hi) milliseconds.
    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo))
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// Sleeps, then exits with the code.
    Normal { millis: u64, code: i64 },
    /// Grows until the OOM killer takes it.
    Oom,
    /// Sleeps until the test kills it from the host.
    HostKill,
}

struct Planned {
    name: String,
    kind: Kind,
    id: String,
}

impl Planned {
    fn expected_code(&self) -> i64 {
        match self.kind {
            Kind::Normal { code, .. } => code,
            Kind::Oom | Kind::HostKill => 137,
        }
    }
    fn command(&self, i: usize) -> String {
        match self.kind {
            Kind::Normal { millis, code } => format!(
                "echo start-{i}; sleep {}.{:03}; echo end-{i}; exit {code}",
                millis / 1000,
                millis % 1000
            ),
            // Only PID 1 grows, so the OOM killer has one candidate.
            Kind::Oom => format!(
                "echo start-{i}; x=a; while [ ${{#x}} -lt 268435456 ]; do x=$x$x; done; echo survived-{i}"
            ),
            Kind::HostKill => format!("echo start-{i}; sleep 1000"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Action {
    KillManager,
    StartManager,
    KillBerthd,
    StartBerthd,
    /// `kill -9` of the init of the nth host-kill container.
    HostKill(usize),
}

/// Three down-and-up intervals in [300 ms, 6 s), none overlapping the next.
fn intervals(rng: &mut Rng, kill: Action, start: Action) -> Vec<(Duration, Action)> {
    let mut at = Duration::from_millis(300);
    let mut out = vec![];
    for _ in 0..3 {
        at += rng.ms(0, 1500);
        out.push((at, kill));
        at += rng.ms(50, 800);
        out.push((at, start));
    }
    out
}

/// `POST /containers/{id}/wait?condition=next-exit` (made before the start, as
/// `docker run` does) until it answers a code. When the connection dies with
/// berthd (or berthd is down) it is asked again with `not-running`, which answers
/// at once for a container that has exited meanwhile, as a client would.
fn waiter(socket: PathBuf, id: String) -> JoinHandle<Option<i64>> {
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut condition = "next-exit";
        while start.elapsed() < EVENTUALLY * 2 {
            let (status, body) = http(
                &socket,
                "POST",
                &format!("/v1.47/containers/{id}/wait?condition={condition}"),
                "application/json",
                b"",
            );
            condition = "not-running";
            if status == 200 {
                if let Some(code) = serde_json::from_str::<Value>(body.trim())
                    .ok()
                    .and_then(|v| v["StatusCode"].as_i64())
                {
                    return Some(code);
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    })
}

fn json_of(stack: &Stack, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let (status, text) = stack.http(method, path, body.to_string().as_bytes());
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn pid_of(stack: &Stack, id: &str) -> i32 {
    let (status, v) = json_of(
        stack,
        "GET",
        &format!("/v1.47/containers/{id}/json"),
        &Value::Null,
    );
    assert_eq!(status, 200, "{v}");
    v["State"]["Pid"]
        .as_i64()
        .and_then(|p| i32::try_from(p).ok())
        .unwrap_or(0)
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The task directories the manager still has.
fn tasks_left(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn exits_are_told_once_and_truly_through_a_storm_of_faults() {
    berth_testutil::require_root!();
    let _serial = serial();
    let seed = std::env::var("BERTH_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    eprintln!("fault storm seed: {seed} (BERTH_FAULT_SEED={seed} replays it)");
    let mut rng = Rng::new(seed);
    let mut stack = Stack::start();
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();

    // The plan: 15 that exit by themselves, 2 OOM kills, 3 host kills.
    let mut plan: Vec<Planned> = (0..20)
        .map(|i| Planned {
            name: format!("storm-{i}"),
            kind: match i {
                15 | 16 => Kind::Oom,
                17..=19 => Kind::HostKill,
                _ => Kind::Normal {
                    millis: 100 + rng.next() % 4900,
                    code: (i % 10) as i64,
                },
            },
            id: String::new(),
        })
        .collect();
    for (i, p) in plan.iter_mut().enumerate() {
        let mut host_config = json!({});
        if p.kind == Kind::Oom {
            host_config = json!({"Memory": 64 << 20, "MemorySwap": 64 << 20});
        }
        let body = json!({
            "Image": "busybox",
            "Cmd": ["sh", "-c", p.command(i)],
            "HostConfig": host_config,
        });
        let (status, v) = json_of(
            &stack,
            "POST",
            &format!("/v1.47/containers/create?name={}", p.name),
            &body,
        );
        assert_eq!(status, 201, "{v}");
        p.id = v["Id"].as_str().unwrap_or_default().to_string();
    }
    // Waits from the beginning, before anything starts.
    let waits: Vec<JoinHandle<Option<i64>>> = plan
        .iter()
        .map(|p| waiter(stack.engine_socket(), p.id.clone()))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    for p in &plan {
        let (status, body) = stack.http("POST", &format!("/v1.47/containers/{}/start", p.id), b"");
        assert_eq!(status, 204, "start {}: {body}", p.name);
    }
    let host_kill_pids: Vec<i32> = plan
        .iter()
        .filter(|p| p.kind == Kind::HostKill)
        .map(|p| pid_of(&stack, &p.id))
        .collect();
    assert!(host_kill_pids.iter().all(|p| *p > 1), "{host_kill_pids:?}");

    // The storm.
    let mut timeline = intervals(&mut rng, Action::KillManager, Action::StartManager);
    timeline.extend(intervals(&mut rng, Action::KillBerthd, Action::StartBerthd));
    for k in 0..3 {
        timeline.push((rng.ms(200, 6000), Action::HostKill(k)));
    }
    timeline.sort_by_key(|(at, _)| *at);
    eprintln!("timeline: {timeline:?}");
    let t0 = Instant::now();
    for (at, action) in &timeline {
        if let Some(d) = at.checked_sub(t0.elapsed()) {
            std::thread::sleep(d);
        }
        match action {
            Action::KillManager => stack.kill_manager(),
            Action::StartManager => stack.start_manager(),
            Action::KillBerthd => stack.kill_berthd(),
            Action::StartBerthd => stack.spawn_berthd(),
            Action::HostKill(k) => {
                let pid = nix::unistd::Pid::from_raw(host_kill_pids[*k]);
                nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
            }
        }
    }
    stack.wait_ready();

    // Every wait returned the real code.
    let mut waited = HashMap::new();
    for (p, w) in plan.iter().zip(waits) {
        let code = w.join().unwrap();
        waited.insert(p.name.clone(), code);
    }
    let mut wrong = vec![];
    for p in &plan {
        let want = p.expected_code();
        if waited[&p.name] != Some(want) {
            wrong.push(format!(
                "{}: wait gave {:?}, want {want}",
                p.name, waited[&p.name]
            ));
        }
        let (status, v) = json_of(
            &stack,
            "GET",
            &format!("/v1.47/containers/{}/json", p.id),
            &Value::Null,
        );
        assert_eq!(status, 200);
        let st = &v["State"];
        let got = (
            st["Status"].as_str().unwrap_or_default().to_string(),
            st["ExitCode"].as_i64(),
            st["OOMKilled"].as_bool(),
        );
        let oom = p.kind == Kind::Oom;
        if got != ("exited".to_string(), Some(want), Some(oom)) {
            wrong.push(format!(
                "{}: inspect says {got:?}, want exited {want} oom={oom}",
                p.name
            ));
        }
    }

    // One die per exit.
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let filters = percent(r#"{"event":["die"],"type":["container"]}"#);
    let (status, events) = stack.http(
        "GET",
        &format!("/v1.47/events?since={since}&until={until}&filters={filters}"),
        b"",
    );
    assert_eq!(status, 200, "{events}");
    let mut dies: HashMap<String, Vec<String>> = HashMap::new();
    for line in events.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap_or(Value::Null);
        let id = v["Actor"]["ID"].as_str().unwrap_or_default().to_string();
        let code = v["Actor"]["Attributes"]["exitCode"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        dies.entry(id).or_default().push(code);
    }
    for p in &plan {
        let got = dies.get(&p.id).cloned().unwrap_or_default();
        if got != vec![p.expected_code().to_string()] {
            wrong.push(format!("{}: die events {got:?}", p.name));
        }
    }

    // ps shows none of them running.
    let (status, ps) = json_of(&stack, "GET", "/v1.47/containers/json", &Value::Null);
    assert_eq!(status, 200);
    for c in ps.as_array().into_iter().flatten() {
        let id = c["Id"].as_str().unwrap_or_default();
        if plan.iter().any(|p| p.id == id) {
            wrong.push(format!("ps shows {id} as {}", c["State"]));
        }
    }

    // Every log is complete.
    let berth = berth_testutil::binary("berth");
    for (i, p) in plan.iter().enumerate() {
        let out = stack.cli(&berth, &["logs", &p.name]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut want = vec![format!("start-{i}")];
        if matches!(p.kind, Kind::Normal { .. }) {
            want.push(format!("end-{i}"));
        }
        let lines: Vec<&str> = text.lines().collect();
        if lines != want {
            wrong.push(format!("{}: log {lines:?}, want {want:?}", p.name));
        }
    }

    assert!(
        wrong.is_empty(),
        "seed {seed}: {} wrong:\n{}\n{}",
        wrong.len(),
        wrong.join("\n"),
        stack.logs()
    );

    // Removing them leaves nothing behind.
    for p in &plan {
        let (status, body) = stack.http("DELETE", &format!("/v1.47/containers/{}", p.id), b"");
        assert_eq!(status, 204, "rm {}: {body}", p.name);
    }
    eventually("no task is left", || {
        tasks_left(&stack.path("run/tasks"))
            .is_empty()
            .then_some(())
    });
}
