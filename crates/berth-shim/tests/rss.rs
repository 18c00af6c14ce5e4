//! The resident memory of idle shims, each with one running container: not a test
//! but the measurement recorded in docs/benchmarks.md ("Shim"). Run it on a release
//! build:
//!
//! ```text
//! cargo build --release -p berth-shim
//! BERTH_SHIM_BIN=$PWD/target/release/berth-shim BERTH_SHIM_RUNTIMES=runc \
//!   cargo test -p berth-shim --test rss -- --ignored --nocapture
//! ```
//!
//! It starts `BERTH_RSS_SHIMS` shims (default 10) side by side and prints, for one
//! and on average, VmRSS (what `ps` shows), RssAnon (private memory) and Pss (the
//! shim's share of the pages it shares with the other shims and every process).

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use berth_shim_contract::pb;
use berth_testutil::{require_root, unique_name};
use common::*;

/// The `key:` field of a /proc file, in kB.
fn field(file: &str, key: &str) -> u64 {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .find(|l| l.starts_with(&format!("{key}:")))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
#[ignore = "a measurement: run with --ignored --nocapture on a release build"]
async fn idle_shim_resident_memory() {
    require_root!();
    let n: usize = std::env::var("BERTH_RSS_SHIMS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    for rt in runtimes() {
        let mut shims = Vec::new();
        let mut waits = Vec::new();
        for _ in 0..n {
            let id = unique_name("berth-test-rss");
            let mut shim = TestShim::start(&rt, &id, bundle(&id, &["sleep", "1000"])).await;
            shim.create_start(false).await;
            // A Wait in flight, as the manager keeps one per task.
            let mut waiter = shim.new_client().await;
            waits.push(tokio::spawn(async move {
                let _ = waiter.wait(pb::WaitRequest::default()).await;
            }));
            shims.push(shim);
        }
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let mut rows = Vec::new();
        for s in &shims {
            let status = format!("/proc/{}/status", s.shim_pid);
            let rollup = format!("/proc/{}/smaps_rollup", s.shim_pid);
            rows.push([
                field(&status, "VmRSS"),
                field(&status, "RssAnon"),
                field(&status, "RssFile"),
                field(&rollup, "Pss"),
                field(&status, "Threads"),
            ]);
        }
        let avg = |i: usize| rows.iter().map(|r| r[i]).sum::<u64>() / rows.len() as u64;
        println!(
            "berth-shim ({}) x{n} with {}: first VmRSS {} kB; average VmRSS {} kB, RssAnon {} kB, RssFile {} kB, Pss {} kB, threads {}",
            shim_binary().display(),
            rt.display(),
            rows[0][0],
            avg(0),
            avg(1),
            avg(2),
            avg(3),
            avg(4),
        );
        for s in &mut shims {
            s.delete(true).await;
        }
        for w in waits {
            w.await.unwrap();
        }
        for s in &mut shims {
            s.assert_cleaned_up().await;
        }
    }
}
