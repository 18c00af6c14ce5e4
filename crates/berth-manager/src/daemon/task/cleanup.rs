//! Cleaning up after a task whose shim cannot do it any more (it died, or a create
//! was interrupted): `runtime delete --force`, unmounting the rootfs, removing the
//! task directory. Also the check that a shim process is still the one we started.

use std::path::Path;
use std::time::Duration;

use nix::mount::{umount2, MntFlags};

use crate::daemon::error::DaemonError;

/// How long a `runtime delete --force` may take.
const RUNTIME_DELETE_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether `pid` is a live process (not a zombie) started for `marker` (the task
/// directory the shim was started for, in its command line or environment), so
/// a recycled pid is never taken for our shim.
pub fn shim_alive(pid: u32, marker: &Path) -> bool {
    if pid == 0 {
        return false;
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses and may hold
    // anything: look after the last ')'.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    if matches!(state, None | Some("Z") | Some("X") | Some("x")) {
        return false;
    }
    berth_shim_contract::cli::started_for(pid, marker)
}

/// `<runtime> --root <root> delete --force <id>`: kills what is left of the
/// container and removes its cgroup and runtime state. A container the runtime
/// does not know is not an error.
pub async fn runtime_delete(runtime: &Path, root: &Path, id: &str) -> Result<(), DaemonError> {
    let mut cmd = tokio::process::Command::new(runtime);
    cmd.arg("--root")
        .arg(root)
        .args(["delete", "--force", id])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(RUNTIME_DELETE_TIMEOUT, cmd.output())
        .await
        .map_err(|_| {
            DaemonError::io(
                "running delete --force with",
                runtime,
                std::io::Error::from(std::io::ErrorKind::TimedOut),
            )
        })?
        .map_err(|e| DaemonError::io("running delete --force with", runtime, e))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lower = stderr.to_lowercase();
    if lower.contains("does not exist") || lower.contains("not found") || lower.contains("no such")
    {
        return Ok(());
    }
    Err(DaemonError::io(
        "running delete --force with",
        runtime,
        std::io::Error::other(format!("{}: {}", out.status, stderr.trim())),
    ))
}

/// False only when nothing can be mounted at `path`: it does not exist, or statx
/// puts it on the same mount as its parent. (A mount below a path that is not a
/// mount point itself is not looked for: the shim only mounts at the rootfs.)
fn may_be_mounted(path: &Path) -> bool {
    let Some(parent) = path.parent() else {
        return true;
    };
    match (mount_id(path), mount_id(parent)) {
        (Err(e), _) if e.kind() == std::io::ErrorKind::NotFound => false,
        (Ok(Some(a)), Ok(Some(b))) => a != b,
        _ => true,
    }
}

/// The id of the mount `path` is on (statx, Linux 5.8); None where the kernel
/// does not say.
fn mount_id(path: &Path) -> std::io::Result<Option<u64>> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: statx is all zeroes-valid plain data.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `stx` a valid buffer, both alive for
    // the call.
    let r = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_MNT_ID,
            &mut stx,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((stx.stx_mask & libc::STATX_MNT_ID != 0).then_some(stx.stx_mnt_id))
}

/// The mount points at or below `path`, deepest first.
fn mounts_below(path: &Path) -> Vec<String> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let prefix = path.to_string_lossy().into_owned();
    let below = format!("{}/", prefix.trim_end_matches('/'));
    let mut points: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|p| *p == prefix || p.starts_with(&below))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    points
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .map(|d| d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0')))
            .and_then(|v| u8::try_from(v).ok());
        match octal {
            Some(v) => {
                out.push(v);
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unmount everything at or below `path` (stacked mounts included), deepest first.
pub fn unmount_below(path: &Path) {
    // In the usual case the shim has unmounted it already, and statx tells so
    // without reading mountinfo (for which the kernel writes out every mount of the
    // namespace: milliseconds of CPU with a thousand containers on the host).
    if !may_be_mounted(path) {
        return;
    }
    for _ in 0..16 {
        let points = mounts_below(path);
        if points.is_empty() {
            return;
        }
        for p in points {
            if let Err(e) = umount2(p.as_str(), MntFlags::MNT_DETACH) {
                tracing::warn!(mount = %p, "unmounting: {e}");
            }
        }
    }
}

/// Remove the task directory's contents except the files named in `keep`, and the
/// directory itself when nothing is kept. The rootfs is unmounted first and only
/// ever removed when empty: a container's files are never deleted through a mount
/// that is still there.
pub fn remove_task_dir(dir: &Path, keep: &[&str]) -> Result<(), DaemonError> {
    let rootfs = dir.join(berth_shim_contract::layout::ROOTFS);
    unmount_below(&rootfs);
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(DaemonError::io("listing", dir, e)),
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if keep.iter().any(|k| name == **k) {
            continue;
        }
        let path = entry.path();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        let result = if is_dir {
            std::fs::remove_dir(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match result {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(DaemonError::io("removing", path, e)),
        }
    }
    if keep.is_empty() {
        match std::fs::remove_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(DaemonError::io("removing", dir, e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_told_apart_without_mountinfo() {
        assert!(!may_be_mounted(Path::new("/no/such/dir/here")));
        let dir = tempfile::tempdir().unwrap();
        assert!(!may_be_mounted(dir.path()), "a plain directory");
        // /proc is a mount point on every host.
        assert!(may_be_mounted(Path::new("/proc")));
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mountinfo(r"/a\040b"), "/a b");
        assert_eq!(unescape_mountinfo(r"/a\134b"), r"/a\b");
        assert_eq!(unescape_mountinfo(r"/plain"), "/plain");
        assert_eq!(unescape_mountinfo(r"/end\04"), r"/end\04");
    }

    #[test]
    fn our_own_process_is_alive_and_a_wrong_marker_is_not() {
        let me = std::process::id();
        let exe = std::fs::read("/proc/self/cmdline").unwrap();
        let arg0 = exe.split(|b| *b == 0).next().unwrap().to_vec();
        let arg0 = std::path::PathBuf::from(String::from_utf8(arg0).unwrap());
        assert!(shim_alive(me, &arg0));
        assert!(!shim_alive(me, Path::new("/no/such/task/dir")));
        assert!(!shim_alive(0, &arg0));
    }

    #[test]
    fn task_dirs_are_emptied_but_for_what_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("t");
        std::fs::create_dir_all(t.join("rootfs")).unwrap();
        std::fs::write(t.join("task.json"), "{}").unwrap();
        std::fs::write(t.join("shim.log"), "x").unwrap();
        remove_task_dir(&t, &["task.json"]).unwrap();
        let left: Vec<_> = std::fs::read_dir(&t)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("task.json")]);
        remove_task_dir(&t, &[]).unwrap();
        assert!(!t.exists());
        // A rootfs with files in it is never removed.
        std::fs::create_dir_all(t.join("rootfs")).unwrap();
        std::fs::write(t.join("rootfs/keep"), "x").unwrap();
        assert!(remove_task_dir(&t, &[]).is_err());
        assert!(t.join("rootfs/keep").exists());
    }
}
