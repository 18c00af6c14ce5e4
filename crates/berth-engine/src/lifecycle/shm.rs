//! A shareable container's /dev/shm, made on the host side under its directory
//! (`<container-dir>/mounts/shm`, a tmpfs of its `ShmSize`), as dockerd's
//! `IpcMode: shareable`: its own /dev/shm is a bind of it, and a container
//! started with `IpcMode: container:<it>` binds the same one. Mounted at each
//! start, unmounted when its run ends and at its removal; a joiner's bind keeps
//! the memory until the joiner ends too.

use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// Mounts the tmpfs at `dir` unless one is there already (berthd restarted while
/// the container ran).
pub fn ensure(dir: &Path, size: i64) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    if is_mounted(dir) {
        return Ok(());
    }
    let options = format!("mode=1777,size={size}");
    mount(
        Some("shm"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(options.as_str()),
    )
    .map_err(std::io::Error::from)
}

/// Unmounts it (lazily: a start that is binding it finishes first); nothing
/// there is fine.
pub fn release(dir: &Path) {
    while is_mounted(dir) {
        if let Err(e) = umount2(dir, MntFlags::MNT_DETACH) {
            tracing::warn!(dir = %dir.display(), error = %e, "unmounting a shareable /dev/shm");
            return;
        }
    }
}

/// Whether something is mounted at `dir`: it is on another device than its
/// parent (a data root on a tmpfs of its own is still told apart).
fn is_mounted(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let dev = |p: &Path| std::fs::metadata(p).map(|m| m.dev());
    match (dev(dir), dir.parent().map(dev)) {
        (Ok(d), Some(Ok(p))) => d != p,
        _ => false,
    }
}
