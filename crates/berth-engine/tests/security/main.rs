//! The security tests (as Firecracker keeps one folder of them): each attack of
//! the security review (issue 10) as a test, and what held then, so that it keeps
//! holding. docs/security.md says which test proves which claim.
//!
//! They run on the real kernel, as root, against private stacks (see
//! tests/support), one at a time (`support::serial`). Skipped without root.

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../support/mod.rs"]
mod support;

mod cp;
mod devices;
mod held;
mod host;
mod layers;
mod limits;
mod registry;
mod seccomp;

use std::path::{Path, PathBuf};
use std::process::Output;

pub use support::{serial, stderr, stdout, Stack};

/// The berth CLI.
pub fn berth() -> PathBuf {
    berth_testutil::binary("berth")
}

/// `-v` options that give a busybox container the host's shared libraries and the
/// berth-probe binary at /probe (the busybox image has no C library).
pub fn probe_mounts() -> Vec<String> {
    let mut v = vec![];
    for (host, inside) in [("/lib", "/lib"), ("/lib64", "/lib64")] {
        if let Ok(real) = std::fs::canonicalize(host) {
            v.push("-v".to_string());
            v.push(format!("{}:{inside}:ro", real.display()));
        }
    }
    v.push("-v".to_string());
    v.push(format!(
        "{}:/probe:ro",
        berth_testutil::binary("berth-probe").display()
    ));
    v
}

/// `berth run --rm [extra...] busybox /probe PROBES...`: the probes' answers as
/// (name, result) pairs.
pub fn probe(stack: &Stack, extra: &[&str], probes: &[&str]) -> Vec<(String, String)> {
    let mounts = probe_mounts();
    let mut args: Vec<&str> = vec!["run", "--rm"];
    args.extend(mounts.iter().map(String::as_str));
    args.extend(extra);
    args.push("busybox");
    args.push("/probe");
    args.extend(probes);
    let out = stack.cli(&berth(), &args);
    assert_eq!(out.status.code(), Some(0), "probe failed: {}", stderr(&out));
    stdout(&out)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The resident memory of a process, in bytes.
pub fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        })
        .map_or(0, |kb: u64| kb * 1024)
}

/// The highest resident memory a process has had, in bytes.
pub fn peak_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        })
        .map_or(0, |kb: u64| kb * 1024)
}

/// Runs `berth` with `args`, asserting success; its stdout, trimmed.
pub fn ok(stack: &Stack, args: &[&str]) -> String {
    stack.ok(&berth(), args).trim().to_string()
}

/// The output of a command run on the host (for the test's own checks).
pub fn host(program: &str, args: &[&str]) -> Output {
    std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"))
}

/// Whether `path` exists (without following a final symlink).
pub fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// One HTTP/1.1 request on a unix socket, the body bytes untouched (chunked
/// bodies decoded): (status, body).
pub fn http_raw(
    socket: &Path,
    method: &str,
    path: &str,
    ctype: &str,
    body: &[u8],
) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(socket) else {
        return (0, vec![]);
    };
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(120)));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: berth\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if s.write_all(head.as_bytes()).is_err() {
        return (0, vec![]);
    }
    let _ = s.write_all(body);
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let Some(split) = resp.windows(4).position(|w| w == b"\r\n\r\n") else {
        return (0, vec![]);
    };
    let headers = String::from_utf8_lossy(&resp[..split]).to_ascii_lowercase();
    let status = headers
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut raw = &resp[split + 4..];
    if !headers.contains("transfer-encoding: chunked") {
        return (status, raw.to_vec());
    }
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&raw[..eol])
            .ok()
            .and_then(|t| usize::from_str_radix(t.trim(), 16).ok());
        let Some(n) = size.filter(|n| *n > 0) else {
            break;
        };
        let start = eol + 2;
        if raw.len() < start + n {
            break;
        }
        out.extend_from_slice(&raw[start..start + n]);
        raw = &raw[(start + n + 2).min(raw.len())..];
    }
    (status, out)
}
