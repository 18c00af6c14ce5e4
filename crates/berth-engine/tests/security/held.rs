//! What held in the review, kept as tests so that it keeps holding:
//! CVE-2019-5736 (a container cannot write the runtime binary through
//! /proc/<pid>/exe while `exec` runs), CVE-2024-21626 (`-w /proc/self/fd/N` is
//! refused; a container sees only fds 0-2), masked and read-only /proc paths and
//! the capability set as Docker's, and a manager that survives garbage on its
//! socket.

use std::io::{Read, Write};

use berth_testutil::require_root;

use crate::{berth, ok, serial, stdout, Stack};

fn sha256(path: &std::path::Path) -> String {
    let out = crate::host("sha256sum", &[&path.to_string_lossy()]);
    stdout(&out)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}

#[test]
fn cve_2019_5736_the_runtime_binary_is_never_written() {
    require_root!();
    let _serial = serial();
    let stack = Stack::start();
    let runtime = berth_testutil::binary("berth-runtime");
    let before = sha256(&runtime);
    // Every process the container can see, its exe opened for writing, over
    // and over, while execs come in.
    let attack = "while true; do for e in /proc/[0-9]*/exe; do \
                  (echo pwned > $e) 2>/dev/null && echo WROTE $e; done; done";
    let id = ok(&stack, &["run", "-d", "busybox", "sh", "-c", attack]);
    for _ in 0..20 {
        ok(&stack, &["exec", &id, "true"]);
    }
    let logs = stack.ok(&berth(), &["logs", &id]);
    ok(&stack, &["rm", "-f", &id]);
    assert_eq!(sha256(&runtime), before, "the runtime binary changed");
    assert!(!logs.contains("WROTE"), "{logs}");
}

#[test]
fn cve_2024_21626_fds_masked_paths_and_caps() {
    require_root!();
    let _serial = serial();
    let stack = Stack::start();
    for fd in ["3", "4", "5", "6", "7", "8"] {
        let wd = format!("/proc/self/fd/{fd}");
        let out = stack.cli(&berth(), &["run", "--rm", "-w", &wd, "busybox", "pwd"]);
        assert!(
            !out.status.success(),
            "-w {wd} was accepted: {}",
            stdout(&out)
        );
    }
    // The container's first process holds fds 0-2 and nothing of the runtime's.
    let id = ok(&stack, &["run", "-d", "busybox", "sleep", "600"]);
    let fds = stack.ok(&berth(), &["exec", &id, "ls", "/proc/1/fd"]);
    ok(&stack, &["rm", "-f", &id]);
    let mut fds: Vec<&str> = fds.split_whitespace().collect();
    fds.sort();
    assert_eq!(fds, ["0", "1", "2"], "the container's init holds more");

    let script = "cat /proc/kcore | wc -c; cat /proc/keys | wc -c; ls /sys/firmware | wc -l; \
                  echo 1 > /proc/sys/kernel/domainname && echo sys-writable; \
                  echo b > /proc/sysrq-trigger && echo sysrq-writable; \
                  grep CapBnd /proc/self/status";
    let out = stack.ok(&berth(), &["run", "--rm", "busybox", "sh", "-c", script]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..3], ["0", "0", "0"], "masked paths: {out}");
    assert!(!out.contains("writable"), "read-only paths: {out}");
    assert!(out.contains("CapBnd:\t00000000a80425fb"), "{out}");
}

#[test]
fn the_manager_survives_garbage_on_its_socket() {
    require_root!();
    let _serial = serial();
    let stack = Stack::start();
    let garbage: [&[u8]; 4] = [
        b"GET / HTTP/1.1\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x04\x08\x00\x00\x00\x00\x00\xff\xff\xff\xff",
        &[0xffu8; 65536],
        b"\x00\x00\x00\x00",
    ];
    for g in garbage {
        if let Ok(mut s) = std::os::unix::net::UnixStream::connect(stack.manager_socket()) {
            let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(5)));
            let _ = s.write_all(g);
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        }
    }
    // Still serving: a container runs end to end.
    assert_eq!(
        ok(&stack, &["run", "--rm", "busybox", "echo", "alive"]),
        "alive"
    );
}
