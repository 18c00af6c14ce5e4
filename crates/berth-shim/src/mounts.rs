//! The container's root filesystem: the mounts the manager's snapshotter describes
//! (an overlay of the image's layers, or a bind of one directory), done on the host
//! below `<bundle>/rootfs` before `runtime create` so the runtime sees them, and
//! undone after `runtime delete` (or when a create fails).

use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// The kernel copies mount data into one page.
const MAX_DATA: usize = 4095;

/// One mount: what the API's `Mount` message carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub typ: String,
    pub source: String,
    /// Relative to the rootfs directory; "" is the rootfs itself.
    pub target: String,
    pub options: Vec<String>,
}

/// Errors mounting or unmounting the rootfs.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mount target {0:?} must be a relative path inside the rootfs")]
    BadTarget(String),
    #[error("mount target {0} goes through a symbolic link")]
    SymlinkTarget(PathBuf),
    #[error("a mount needs a type, or the bind option")]
    NoType,
    #[error("mount option {0:?} is not supported")]
    BadOption(String),
    #[error("the options of the {typ} mount on {target} are {len} bytes, more than the {MAX_DATA} the kernel takes")]
    OptionsTooLong {
        typ: String,
        target: PathBuf,
        len: usize,
    },
    #[error("creating mount point {path}: {source}")]
    MountPoint {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("mounting {source_path} ({typ}) on {target}: {errno}")]
    Mount {
        source_path: String,
        typ: String,
        target: PathBuf,
        errno: Errno,
    },
    #[error("unmounting {target}: {errno}")]
    Unmount { target: PathBuf, errno: Errno },
}

impl MountError {
    /// Whether the request itself was wrong (as opposed to the kernel refusing).
    pub fn is_invalid_request(&self) -> bool {
        matches!(
            self,
            MountError::BadTarget(_)
                | MountError::SymlinkTarget(_)
                | MountError::NoType
                | MountError::BadOption(_)
                | MountError::OptionsTooLong { .. }
        )
    }
}

/// The flags and data a list of mount options stands for.
#[derive(Debug, PartialEq, Eq)]
struct Options {
    flags: MsFlags,
    propagation: MsFlags,
    data: Vec<String>,
}

fn parse_options(options: &[String]) -> Result<Options, MountError> {
    let mut out = Options {
        flags: MsFlags::empty(),
        propagation: MsFlags::empty(),
        data: Vec::new(),
    };
    for opt in options {
        let (set, clear) = match opt.as_str() {
            "defaults" => (MsFlags::empty(), MsFlags::empty()),
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                let mut p = match opt.trim_start_matches('r') {
                    "private" => MsFlags::MS_PRIVATE,
                    "shared" => MsFlags::MS_SHARED,
                    "slave" => MsFlags::MS_SLAVE,
                    _ => MsFlags::MS_UNBINDABLE,
                };
                if opt.starts_with('r') {
                    p |= MsFlags::MS_REC;
                }
                out.propagation |= p;
                continue;
            }
            "remount" | "move" => return Err(MountError::BadOption(opt.clone())),
            data => {
                out.data.push(data.to_string());
                continue;
            }
        };
        out.flags.insert(set);
        out.flags.remove(clear);
    }
    Ok(out)
}

/// The path `target` names below `rootfs`, refusing anything that could leave it.
fn target_path(rootfs: &Path, target: &str) -> Result<PathBuf, MountError> {
    let rel = Path::new(target);
    if !rel
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(MountError::BadTarget(target.to_string()));
    }
    let mut path = rootfs.to_path_buf();
    for c in rel.components() {
        path.push(c);
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(MountError::SymlinkTarget(path));
        }
    }
    Ok(path)
}

/// Mount `mounts` in order below `rootfs` (created if missing). Returns the mount
/// points, for [`unmount_all`]; on failure what was mounted is undone.
pub fn mount_all(rootfs: &Path, mounts: &[MountSpec]) -> Result<Vec<PathBuf>, MountError> {
    std::fs::create_dir_all(rootfs).map_err(|source| MountError::MountPoint {
        path: rootfs.to_path_buf(),
        source,
    })?;
    let mut done = Vec::new();
    for m in mounts {
        match mount_one(rootfs, m) {
            Ok(target) => done.push(target),
            Err(e) => {
                if let Err(u) = unmount_all(&done) {
                    tracing::warn!("undoing mounts after a failed mount: {u}");
                }
                return Err(e);
            }
        }
    }
    Ok(done)
}

fn mount_one(rootfs: &Path, m: &MountSpec) -> Result<PathBuf, MountError> {
    let opts = parse_options(&m.options)?;
    let bind = opts.flags.contains(MsFlags::MS_BIND);
    if m.typ.is_empty() && !bind {
        return Err(MountError::NoType);
    }
    let target = target_path(rootfs, &m.target)?;
    make_mount_point(&target, bind.then(|| Path::new(&m.source)))?;

    let data = opts.data.join(",");
    if data.len() > MAX_DATA {
        return Err(MountError::OptionsTooLong {
            typ: m.typ.clone(),
            target,
            len: data.len(),
        });
    }
    let source = if m.source.is_empty() {
        m.typ.as_str()
    } else {
        m.source.as_str()
    };
    let err = |errno| MountError::Mount {
        source_path: source.to_string(),
        typ: m.typ.clone(),
        target: target.clone(),
        errno,
    };
    let fstype = (!bind && !m.typ.is_empty()).then_some(m.typ.as_str());
    let data_arg = (!data.is_empty()).then_some(data.as_str());
    // A bind ignores every flag but MS_REC on the first call; the others need a
    // remount of the new bind.
    let first = if bind {
        opts.flags & (MsFlags::MS_BIND | MsFlags::MS_REC)
    } else {
        opts.flags
    };
    mount(Some(source), &target, fstype, first, data_arg).map_err(err)?;
    let rest = opts.flags - (MsFlags::MS_BIND | MsFlags::MS_REC);
    let result = (|| {
        if bind && !rest.is_empty() {
            mount(
                None::<&str>,
                &target,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | rest,
                None::<&str>,
            )?;
        }
        if !opts.propagation.is_empty() {
            mount(
                None::<&str>,
                &target,
                None::<&str>,
                opts.propagation,
                None::<&str>,
            )?;
        }
        Ok(())
    })();
    if let Err(errno) = result {
        let _ = umount2(&target, MntFlags::MNT_DETACH);
        return Err(err(errno));
    }
    tracing::debug!(typ = %m.typ, target = %target.display(), "mounted");
    Ok(target)
}

/// A directory, or an empty file for a bind of a file.
fn make_mount_point(target: &Path, bind_source: Option<&Path>) -> Result<(), MountError> {
    let err = |source| MountError::MountPoint {
        path: target.to_path_buf(),
        source,
    };
    let file = bind_source.is_some_and(|s| std::fs::metadata(s).is_ok_and(|m| !m.is_dir()));
    if file {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(err)?;
        }
        if !target.exists() {
            std::fs::File::create(target).map_err(err)?;
        }
        Ok(())
    } else {
        std::fs::create_dir_all(target).map_err(err)
    }
}

/// Unmount `targets` in reverse order. A target that is no longer mounted is
/// fine; a busy one is detached.
pub fn unmount_all(targets: &[PathBuf]) -> Result<(), MountError> {
    let mut first_err = None;
    for target in targets.iter().rev() {
        let result = match umount2(target, MntFlags::empty()) {
            Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => Ok(()),
            Err(Errno::EBUSY) => umount2(target, MntFlags::MNT_DETACH),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => tracing::debug!(target = %target.display(), "unmounted"),
            Err(errno) => {
                tracing::warn!(target = %target.display(), "unmount failed: {errno}");
                first_err.get_or_insert(MountError::Unmount {
                    target: target.clone(),
                    errno,
                });
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn overlay_options_are_data_and_flags() {
        let o = parse_options(&opts(&[
            "lowerdir=/a:/b",
            "upperdir=/u",
            "workdir=/w",
            "nodev",
            "ro",
            "rw",
        ]))
        .unwrap();
        assert_eq!(o.flags, MsFlags::MS_NODEV);
        assert_eq!(
            o.data,
            opts(&["lowerdir=/a:/b", "upperdir=/u", "workdir=/w"])
        );
    }

    #[test]
    fn rbind_and_propagation() {
        let o = parse_options(&opts(&["rbind", "ro", "rprivate"])).unwrap();
        assert_eq!(
            o.flags,
            MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY
        );
        assert_eq!(o.propagation, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        assert!(parse_options(&opts(&["remount"])).is_err());
    }

    #[test]
    fn targets_stay_inside_the_rootfs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert_eq!(target_path(root, "").unwrap(), root);
        assert_eq!(target_path(root, "a/b").unwrap(), root.join("a/b"));
        assert!(target_path(root, "../x").is_err());
        assert!(target_path(root, "/etc").is_err());
        std::os::unix::fs::symlink("/", root.join("link")).unwrap();
        assert!(matches!(
            target_path(root, "link/etc"),
            Err(MountError::SymlinkTarget(_))
        ));
    }
}
