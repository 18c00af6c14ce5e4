//! Containers' mount namespaces made from the runtime's template (`mntns`,
//! asked for with BERTH_RUNTIME_MNTNS_TEMPLATE=1, as berth's manager does):
//! the container must see exactly what one made from a copy of the host's
//! namespace sees, the template must hold nothing of the host, and a
//! container the template does not fit must still come up the usual way.

// Tests (and their helpers) may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Output;

use common::{output_of, stderr, stdout, Container, Rt};

const ENV: &str = "BERTH_RUNTIME_MNTNS_TEMPLATE";

/// Unmounts the template (and anything else left) below a test's root.
struct Unmount<'a>(&'a Rt);

impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        berth_testutil::unmount_below(self.0.root.path());
    }
}

/// `run` the container in the foreground, with or without the template, with
/// a debug log at `log`.
fn run(c: &Container<'_>, template: bool, log: &Path) -> Output {
    run_with(c, template, log, &[])
}

fn run_with(c: &Container<'_>, template: bool, log: &Path, extra: &[&str]) -> Output {
    let mut cmd = c.rt.cmd();
    if template {
        cmd.env(ENV, "1");
    } else {
        cmd.env_remove(ENV);
    }
    cmd.arg("--log")
        .arg(log)
        .arg("--debug")
        .arg("run")
        .args(extra)
        .arg("--bundle")
        .arg(c.bundle_path())
        .arg(&c.id);
    output_of(&mut cmd)
}

/// What a container sees of its mounts (root, mount point, type, per-mount
/// options: ids differ between runs), sorted, and the bound file.
const LOOK: &str =
    "awk '{print $4, $5, $6, $9}' /proc/self/mountinfo | sort; cat /data/file; touch /data/x 2>&1; true";

fn with_bind(c: &mut serde_json::Value, source: &Path) {
    c["mounts"].as_array_mut().unwrap().push(serde_json::json!({
        "destination": "/data", "type": "bind",
        "source": source, "options": ["rbind", "ro"]
    }));
}

#[test]
fn a_container_from_the_template_sees_what_one_from_the_host_sees() {
    berth_testutil::require_root!();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("file"), "from the host\n").unwrap();
    let logs = tempfile::tempdir().unwrap();
    let rt = Rt::new();
    let _unmount = Unmount(&rt);

    let mut seen = Vec::new();
    for template in [true, false] {
        let c = Container::new(&rt, &["sh", "-c", LOOK], |cfg| with_bind(cfg, data.path()));
        let log = logs.path().join(format!("{template}.log"));
        let out = run(&c, template, &log);
        assert!(out.status.success(), "run: {}", stderr(&out));
        let logged = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            logged.contains("mount namespace: made from the template"),
            template,
            "{logged}"
        );
        // Each container has a bundle of its own.
        let bundle = c.bundle_path().to_str().unwrap().to_string();
        seen.push(stdout(&out).replace(&bundle, "BUNDLE"));
    }
    assert!(seen[0].contains("from the host"), "{}", seen[0]);
    assert!(seen[0].contains("Read-only file system"), "{}", seen[0]);
    assert!(seen[0].contains(" /sys/fs/cgroup/memory "), "{}", seen[0]);
    assert_eq!(seen[0], seen[1]);

    let template = rt.root.path().join("@mntns/template");
    let fs = nix::sys::statfs::statfs(&template)
        .unwrap()
        .filesystem_type();
    assert_eq!(fs.0, 0x6e73_6673, "the template is a namespace file");
}

#[test]
fn the_template_holds_only_its_root_and_a_proc() {
    berth_testutil::require_root!();
    let rt = Rt::new();
    let _unmount = Unmount(&rt);
    let logs = tempfile::tempdir().unwrap();
    let c = Container::new(&rt, &["true"], |_| {});
    let out = run(&c, true, &logs.path().join("log"));
    assert!(out.status.success(), "run: {}", stderr(&out));

    let template = std::fs::File::open(rt.root.path().join("@mntns/template")).unwrap();
    let seen = mountinfo_in(&template);
    let lines: Vec<Vec<&str>> = seen
        .lines()
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .collect();
    let points: Vec<(&str, &str)> = lines.iter().map(|f| (f[4], f[f.len() - 3])).collect();
    assert_eq!(points, [("/", "tmpfs"), ("/proc", "proc")], "{seen}");
    assert!(lines[0][5].starts_with("ro,"), "a read-only root: {seen}");
}

/// /proc/self/mountinfo as a process inside the mount namespace `ns` reads
/// it (the template has its own proc): a forked child enters it, reads, and
/// writes what it read into a pipe, with raw syscalls only (this process has
/// threads, so the child may not allocate).
fn mountinfo_in(ns: &std::fs::File) -> String {
    use std::os::fd::AsRawFd;
    let (r, w) = nix::unistd::pipe().unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: the child makes only async-signal-safe calls on memory
    // allocated before the fork, then _exit's.
    match unsafe { nix::unistd::fork() }.unwrap() {
        // SAFETY: raw syscalls on a NUL-terminated path, an fd we own and a
        // buffer allocated before the fork, of the length passed.
        nix::unistd::ForkResult::Child => unsafe {
            let mut code = 1;
            if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNS) == 0 {
                let fd = libc::open(c"/proc/self/mountinfo".as_ptr(), libc::O_RDONLY);
                if fd >= 0 {
                    let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
                    if n > 0 {
                        libc::write(w.as_raw_fd(), buf.as_ptr().cast(), n as usize);
                        code = 0;
                    }
                }
            }
            libc::_exit(code)
        },
        nix::unistd::ForkResult::Parent { child } => {
            drop(w);
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::fs::File::from(r), &mut text).unwrap();
            let status = nix::sys::wait::waitpid(child, None).unwrap();
            assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
            text
        }
    }
}

#[test]
fn a_container_the_template_does_not_fit_comes_up_the_usual_way() {
    berth_testutil::require_root!();
    let rt = Rt::new();
    let _unmount = Unmount(&rt);
    let logs = tempfile::tempdir().unwrap();
    // A createContainer hook runs by host path before the pivot.
    let c = Container::new(&rt, &["echo", "up"], |cfg| {
        cfg["hooks"] = serde_json::json!({
            "createContainer": [{"path": "/bin/true"}]
        });
    });
    let log = logs.path().join("log");
    let out = run(&c, true, &log);
    assert!(out.status.success(), "run: {}", stderr(&out));
    assert_eq!(stdout(&out), "up\n");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(!logged.contains("made from the template"), "{logged}");
}

#[test]
fn without_pivot_root_the_template_is_out_of_reach() {
    berth_testutil::require_root!();
    let rt = Rt::new();
    let _unmount = Unmount(&rt);
    let logs = tempfile::tempdir().unwrap();
    // The template's proc (the host's pids) must not be what the container
    // sees: only its own, where pid 1 is its shell.
    let c = Container::new(
        &rt,
        &["sh", "-c", "cat /proc/1/comm; ls /rootfs 2>&1; true"],
        |_| {},
    );
    let log = logs.path().join("log");
    let out = run_with(&c, true, &log, &["--no-pivot"]);
    assert!(out.status.success(), "run: {}", stderr(&out));
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("made from the template"));
    assert_eq!(stdout(&out), "sh\nls: /rootfs: No such file or directory\n");
}
