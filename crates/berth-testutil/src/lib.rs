//! Test support shared by berth's integration tests.
//!
//! Its job: build the busybox test root filesystem, find the workspace's built
//! binaries, and give guards that put the kernel back as a test found it (mounts,
//! cgroups, processes), even when the test fails. It must never be a dependency of
//! anything but tests, and never touch /run/berth or /var/lib/berth.

use std::path::{Path, PathBuf};
use std::process::Command;

pub mod bundle;
pub use bundle::Bundle;

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Run `cmd` (stdin closed) to its end, its output captured through files,
/// not pipes: a container a runtime starts inherits the runtime's stdio, and
/// a pipe would not reach end of file while the container lives.
pub fn output_through_files(cmd: &mut Command) -> std::io::Result<std::process::Output> {
    use std::io::{Read, Seek};
    let out = tempfile::tempfile()?;
    let err = tempfile::tempfile()?;
    let status = cmd
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(err.try_clone()?)
        .status()?;
    let read = |mut f: std::fs::File| -> std::io::Result<Vec<u8>> {
        let mut v = Vec::new();
        f.rewind()?;
        f.read_to_end(&mut v)?;
        Ok(v)
    };
    Ok(std::process::Output {
        status,
        stdout: read(out)?,
        stderr: read(err)?,
    })
}

/// Path of a workspace binary in the same profile directory the tests were built
/// in (`target/debug` or `target/release`), honouring CARGO_TARGET_DIR.
pub fn binary(name: &str) -> PathBuf {
    // Integration tests run from target/<profile>/deps/<test>-<hash>.
    if let Ok(exe) = std::env::current_exe() {
        if let Some(profile_dir) = exe.parent().and_then(Path::parent) {
            let p = profile_dir.join(name);
            if p.exists() {
                return p;
            }
        }
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("debug").join(name)
}

/// Build the busybox test rootfs into `dest` with scripts/make-rootfs.sh.
pub fn busybox_rootfs(dest: &Path) -> std::io::Result<()> {
    let script = workspace_root().join("scripts/make-rootfs.sh");
    let status = Command::new("bash").arg(script).arg(dest).status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "make-rootfs.sh failed with {status}"
        )))
    }
}

/// Write an executable file (mode 0755) that can be run at once.
///
/// A file written by the test process itself can fail to run with ETXTBSY: the
/// test harness runs tests on several threads, and a child forked by another
/// thread keeps a copy of the write descriptor until it execs. So a short-lived
/// `sh` writes it: the only descriptor open for writing is in that process.
pub fn write_executable(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(r#"cat > "$0" && chmod 755 "$0""#)
        .arg(path)
        .stdin(std::process::Stdio::piped())
        .spawn()?;
    let written = child
        .stdin
        .take()
        .ok_or_else(|| std::io::Error::other("no stdin for sh"))
        .and_then(|mut stdin| stdin.write_all(content.as_bytes()));
    let status = child.wait()?;
    written?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "writing {} failed with {status}",
            path.display()
        )))
    }
}

/// Whether the tests run as root (every kernel-touching test needs it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A unique, short name for test objects (container ids, cgroup names).
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Unmounts everything at or below `path` when dropped (lazy, deepest first).
#[derive(Debug)]
pub struct MountGuard(pub PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        unmount_below(&self.0);
    }
}

/// Unmount every mount point at or below `path`, deepest first.
pub fn unmount_below(path: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = path.to_string_lossy().into_owned();
    let mut points: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| p.replace("\\040", " "))
        .filter(|p| p == &prefix || p.starts_with(&format!("{prefix}/")))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        if let Ok(c) = std::ffi::CString::new(p) {
            // SAFETY: c is a valid NUL-terminated path; umount2 does not keep it.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// Puts a cgroup2 hierarchy's root back as a test found it when dropped: a cgroup
/// made on it enables controllers in every ancestor's `cgroup.subtree_control`
/// (the root's included), which outlives the cgroup and changes the host (crun,
/// for one, refuses a hybrid host whose cgroup2 root has a controller enabled).
/// Disables at the root what was not enabled before. Declare it before the
/// [`CgroupGuard`] of the test's cgroup, so that it drops after it (the kernel
/// refuses while a child cgroup still uses a controller).
#[derive(Debug)]
pub struct Cgroup2RootGuard {
    root: PathBuf,
    enabled_before: Vec<String>,
}

impl Cgroup2RootGuard {
    pub fn new(root: &Path) -> Cgroup2RootGuard {
        Cgroup2RootGuard {
            root: root.to_path_buf(),
            enabled_before: Self::enabled(root),
        }
    }

    fn enabled(dir: &Path) -> Vec<String> {
        std::fs::read_to_string(dir.join("cgroup.subtree_control"))
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Cgroup2RootGuard {
    fn drop(&mut self) {
        for c in Self::enabled(&self.root) {
            if !self.enabled_before.contains(&c) {
                let _ = std::fs::write(self.root.join("cgroup.subtree_control"), format!("-{c}"));
            }
        }
    }
}

/// The cgroup, relative to each hierarchy root, that a test's container `id` runs
/// in: a top-level `berth-test-<id>` of its own. Not a child of one parent shared
/// by every test: tests run in parallel, so a shared parent could only be removed
/// racing another test's `mkdir` below it, and it was left behind instead.
pub fn test_cgroup(id: &str) -> String {
    format!("berth-test-{id}")
}

/// Removes a cgroup directory (in every hierarchy) when dropped, killing what is
/// left in it first. `relative` is the path below each hierarchy root, e.g.
/// `berth-test-abc`.
#[derive(Debug)]
pub struct CgroupGuard(pub String);

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        remove_cgroup_everywhere(&self.0);
    }
}

/// Kill every process in `relative` and remove it from every mounted hierarchy.
pub fn remove_cgroup_everywhere(relative: &str) {
    let relative = relative.trim_start_matches('/');
    if relative.is_empty() {
        return;
    }
    let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let mut roots: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    roots.push(PathBuf::from("/sys/fs/cgroup"));
    for root in roots {
        let dir = root.join(relative);
        if !dir.is_dir() {
            continue;
        }
        remove_tree(&dir);
    }
}

fn remove_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.filter_map(|e| e.ok()) {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_tree(&e.path());
            }
        }
    }
    for _ in 0..100 {
        if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Kills (SIGKILL) and reaps a child process when dropped.
#[derive(Debug)]
pub struct ChildGuard(pub std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Kills a process by pid (not necessarily our child) when dropped.
#[derive(Debug)]
pub struct PidGuard(pub i32);

impl Drop for PidGuard {
    fn drop(&mut self) {
        if self.0 > 0 {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(self.0, libc::SIGKILL) };
        }
    }
}

/// Skip (return early from) a test that needs root when not running as root.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::is_root() {
            eprintln!("skipped: needs root");
            return;
        }
    };
}

/// The major and minor numbers of the block device that holds the host's root
/// filesystem (from /proc/self/mountinfo), or failing that of the first disk in
/// /sys/block: what an attacker in a container would try to open.
pub fn host_root_block_device() -> Option<(u32, u32)> {
    let parse = |s: &str| -> Option<(u32, u32)> {
        let (a, b) = s.trim().split_once(':')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    };
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let root = info.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.get(4) == Some(&"/")).then(|| f.get(2).and_then(|d| parse(d)))?
    });
    if let Some((major, minor)) = root.filter(|(major, _)| *major != 0) {
        return Some((major, minor));
    }
    let mut disks: Vec<PathBuf> = std::fs::read_dir("/sys/block")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !name.starts_with("loop") && !name.starts_with("ram") && !name.starts_with("zram")
        })
        .collect();
    disks.sort();
    disks
        .iter()
        .find_map(|d| parse(&std::fs::read_to_string(d.join("dev")).ok()?))
}

/// Block devices to try an open on, the host's root disk first; on a host where
/// even root may not open that one (some sandboxes), loop devices follow, which
/// open without a backing file.
pub fn block_device_candidates() -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = host_root_block_device().into_iter().collect();
    let mut loops: Vec<PathBuf> = std::fs::read_dir("/sys/block")
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("loop"))
                })
                .collect()
        })
        .unwrap_or_default();
    loops.sort();
    for l in loops.iter().take(2) {
        if let Some((a, b)) = std::fs::read_to_string(l.join("dev")).ok().and_then(|s| {
            s.trim()
                .split_once(':')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        }) {
            if let (Ok(a), Ok(b)) = (a.parse(), b.parse()) {
                out.push((a, b));
            }
        }
    }
    out
}

/// ELF program header types that only a dynamically linked executable has.
pub const PT_DYNAMIC: u32 = 2;
pub const PT_INTERP: u32 = 3;

/// The program header types of a 64-bit little-endian ELF executable, for the tests
/// that check how a binary is linked (berth-link's static binaries).
fn elf_program_header_types(path: &Path) -> Vec<u32> {
    let elf = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        &elf[..4],
        b"\x7fELF",
        "{} is not an ELF file",
        path.display()
    );
    assert_eq!(elf[4], 2, "not a 64-bit ELF");
    assert_eq!(elf[5], 1, "not little-endian");
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let u32_at = |o: usize| u32::from_le_bytes([elf[o], elf[o + 1], elf[o + 2], elf[o + 3]]);
    let u64_at = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&elf[o..o + 8]);
        u64::from_le_bytes(b) as usize
    };
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    (0..phnum).map(|i| u32_at(phoff + i * phentsize)).collect()
}

/// Fails unless the executable at `path` asks for no dynamic loader; returns its
/// program header types for further checks.
pub fn assert_no_dynamic_loader(path: &Path) -> Vec<u32> {
    let types = elf_program_header_types(path);
    assert!(!types.is_empty());
    assert!(
        !types.contains(&PT_INTERP),
        "{} asks for a dynamic loader: {types:?}",
        path.display()
    );
    types
}
