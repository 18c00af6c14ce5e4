//! The container's /dev: the default device nodes every container gets (null,
//! zero, full, random, urandom, tty), the spec's `linux.devices`, and the usual
//! symlinks (/dev/fd, /dev/stdin..., /dev/ptmx → pts/ptmx).
//!
//! In a user namespace mknod is not allowed, so host nodes are bind-mounted on
//! empty files instead. A bind-mounted node is the host's own inode: it is never
//! chowned or chmodded (that would change the host's /dev). Only nodes made with
//! mknod inside the container's /dev get the spec's owner and mode.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::sys::stat::{makedev, Mode, SFlag};
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceBuilder, LinuxDeviceType};

use crate::mounts::{self, MountError};

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("device {path}: type {typ} cannot be created (use c, b, u or p)")]
    BadType { path: PathBuf, typ: String },
    #[error("device path {0} must be absolute")]
    RelativePath(PathBuf),
    #[error("mknod {path}: {source}")]
    Mknod {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("set owner or mode of {path}: {source}")]
    Attr {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("replace {path}: {source}")]
    Replace {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("symlink {path}: {source}")]
    Symlink {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Mount(#[from] MountError),
}

/// The devices every container gets, as runc and Docker create them.
pub fn default_devices() -> Vec<LinuxDevice> {
    [
        ("/dev/null", 1, 3),
        ("/dev/zero", 1, 5),
        ("/dev/full", 1, 7),
        ("/dev/random", 1, 8),
        ("/dev/urandom", 1, 9),
        ("/dev/tty", 5, 0),
    ]
    .into_iter()
    .filter_map(|(path, major, minor)| {
        LinuxDeviceBuilder::default()
            .path(path)
            .typ(LinuxDeviceType::C)
            .major(major)
            .minor(minor)
            .file_mode(0o666u32)
            .uid(0u32)
            .gid(0u32)
            .build()
            .ok()
    })
    .collect()
}

/// Create `devices` inside `rootfs`: mknod'ed, or bind-mounted from the host's
/// node of the same path when `bind` (in a user namespace).
pub fn create_devices(
    rootfs: &Path,
    devices: &[LinuxDevice],
    bind: bool,
) -> Result<(), DeviceError> {
    for dev in devices {
        if !dev.path().is_absolute() {
            return Err(DeviceError::RelativePath(dev.path().clone()));
        }
        let dest = mounts::resolve_in_root(rootfs, dev.path())?;
        if bind {
            bind_device(dev, &dest)?;
        } else {
            mknod_device(dev, &dest)?;
        }
    }
    Ok(())
}

fn file_type(dev: &LinuxDevice) -> Result<SFlag, DeviceError> {
    match dev.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => Ok(SFlag::S_IFCHR),
        LinuxDeviceType::B => Ok(SFlag::S_IFBLK),
        LinuxDeviceType::P => Ok(SFlag::S_IFIFO),
        LinuxDeviceType::A => Err(DeviceError::BadType {
            path: dev.path().clone(),
            typ: "a".into(),
        }),
    }
}

fn mknod_device(dev: &LinuxDevice, dest: &Path) -> Result<(), DeviceError> {
    let kind = file_type(dev)?;
    let (major, minor) = (dev.major() as u64, dev.minor() as u64);
    let rdev = makedev(major, minor);
    if let Ok(meta) = fs::symlink_metadata(dest) {
        let ft = meta.file_type();
        let same = match kind {
            SFlag::S_IFCHR => ft.is_char_device() && meta.rdev() == rdev,
            SFlag::S_IFBLK => ft.is_block_device() && meta.rdev() == rdev,
            _ => ft.is_fifo(),
        };
        if same {
            return Ok(());
        }
        fs::remove_file(dest).map_err(|source| DeviceError::Replace {
            path: dest.to_path_buf(),
            source,
        })?;
    }
    if let Some(parent) = dest.parent() {
        mounts::ensure_dir(parent)?;
    }
    let mode = Mode::from_bits_truncate(dev.file_mode().unwrap_or(0o666) & 0o7777);
    nix::sys::stat::mknod(dest, kind, mode, rdev).map_err(|source| DeviceError::Mknod {
        path: dest.to_path_buf(),
        source,
    })?;
    // mknod applies the umask; the spec's mode is meant exactly.
    nix::sys::stat::fchmodat(
        nix::fcntl::AT_FDCWD,
        dest,
        mode,
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .map_err(|source| DeviceError::Attr {
        path: dest.to_path_buf(),
        source,
    })?;
    // This node lives in the container's own /dev, so changing its owner is safe.
    nix::unistd::chown(
        dest,
        Some(Uid::from_raw(dev.uid().unwrap_or(0))),
        Some(Gid::from_raw(dev.gid().unwrap_or(0))),
    )
    .map_err(|source| DeviceError::Attr {
        path: dest.to_path_buf(),
        source,
    })
}

fn bind_device(dev: &LinuxDevice, dest: &Path) -> Result<(), DeviceError> {
    file_type(dev)?;
    if let Ok(meta) = fs::symlink_metadata(dest) {
        if !meta.file_type().is_file() || meta.len() != 0 {
            fs::remove_file(dest).map_err(|source| DeviceError::Replace {
                path: dest.to_path_buf(),
                source,
            })?;
        }
    }
    mounts::ensure_file(dest)?;
    mounts::bind_path(dev.path(), dest, false, MsFlags::empty())?;
    Ok(())
}

/// /dev/fd, /dev/stdin, /dev/stdout, /dev/stderr, /dev/ptmx and, when the host
/// has /proc/kcore, /dev/core.
pub fn create_symlinks(rootfs: &Path) -> Result<(), DeviceError> {
    let mut links = vec![
        ("/proc/self/fd", "/dev/fd"),
        ("/proc/self/fd/0", "/dev/stdin"),
        ("/proc/self/fd/1", "/dev/stdout"),
        ("/proc/self/fd/2", "/dev/stderr"),
        ("pts/ptmx", "/dev/ptmx"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "/dev/core"));
    }
    for (target, link) in links {
        let dest = rootfs.join(link.trim_start_matches('/'));
        if fs::symlink_metadata(&dest).is_ok() {
            // ptmx must point into the new devpts instance, whatever the image had.
            if link != "/dev/ptmx" {
                continue;
            }
            fs::remove_file(&dest).map_err(|source| DeviceError::Replace {
                path: dest.clone(),
                source,
            })?;
        }
        std::os::unix::fs::symlink(target, &dest).map_err(|source| DeviceError::Symlink {
            path: dest.clone(),
            source,
        })?;
    }
    Ok(())
}

/// The device cgroup rules to apply: the spec's own, then the devices every
/// container gets (the default nodes, /dev/console, /dev/ptmx, the pty slaves and
/// /dev/net/tun, as runc allows them). Without these a spec that starts with
/// deny-all (as `runc spec` writes) could not even create /dev/null. A node in
/// `linux.devices` is only created, not allowed: as with runc, access to it is
/// for `linux.resources.devices` to grant (Docker's `--device` sets both).
pub fn cgroup_rules(
    resources: Option<&oci_spec::runtime::LinuxResources>,
) -> oci_spec::runtime::LinuxResources {
    use oci_spec::runtime::LinuxDeviceCgroup;
    let mut r = resources.cloned().unwrap_or_default();
    let mut rules: Vec<LinuxDeviceCgroup> = r.devices().clone().unwrap_or_default();
    let allow = |major: i64, minor: Option<i64>| {
        let mut rule = LinuxDeviceCgroup::default();
        rule.set_allow(true);
        rule.set_typ(Some(LinuxDeviceType::C));
        rule.set_major(Some(major));
        rule.set_minor(minor);
        rule.set_access(Some("rwm".to_string()));
        rule
    };
    for (major, minor) in [
        (1, Some(3)),
        (1, Some(5)),
        (1, Some(7)),
        (1, Some(8)),
        (1, Some(9)),
        (5, Some(0)),
        (5, Some(1)),
        (5, Some(2)),
        (136, None),
        (10, Some(200)),
    ] {
        rules.push(allow(major, minor));
    }
    r.set_devices(Some(rules));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_usual_six() {
        let d = default_devices();
        let names: Vec<_> = d
            .iter()
            .map(|d| d.path().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "/dev/null",
                "/dev/zero",
                "/dev/full",
                "/dev/random",
                "/dev/urandom",
                "/dev/tty"
            ]
        );
        assert!(d.iter().all(|d| d.file_mode() == Some(0o666)));
    }

    #[test]
    fn symlinks_are_made() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("dev")).unwrap();
        create_symlinks(d.path()).unwrap();
        assert_eq!(
            fs::read_link(d.path().join("dev/stdout")).unwrap(),
            PathBuf::from("/proc/self/fd/1")
        );
        assert_eq!(
            fs::read_link(d.path().join("dev/ptmx")).unwrap(),
            PathBuf::from("pts/ptmx")
        );
        // A second run keeps what is there.
        create_symlinks(d.path()).unwrap();
    }
}
