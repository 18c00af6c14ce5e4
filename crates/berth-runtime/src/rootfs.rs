//! The container's root filesystem, prepared by its init in the new mount
//! namespace: private (or the spec's) propagation, the rootfs bound onto itself,
//! the spec's mounts in order, /dev, pivot_root (or chroot with --no-pivot), and
//! after the pivot the finishing touches that must see the container's own view:
//! sysctls, read-only and masked paths, a read-only root.
//!
//! Nothing here touches the host's mount table: the init is in a mount namespace
//! of its own before the first mount, and the tree is made private or slave first
//! so that no mount propagates back.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use oci_spec::runtime::{LinuxDevice, Spec};

use crate::devices::{self, DeviceError};
use crate::mounts::{self, MountContext, MountError};

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("rootfsPropagation {0:?} is not one of private, rprivate, shared, rshared, slave, rslave, unbindable, runbindable")]
    BadPropagation(String),
    #[error("make the mount tree {what}: {source}")]
    Propagation {
        what: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("bind the rootfs {path} onto itself: {source}")]
    BindRoot {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error("{step} into {path}: {source}")]
    Pivot {
        step: &'static str,
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("sysctl {key}: {source}")]
    Sysctl {
        key: String,
        #[source]
        source: io::Error,
    },
    #[error("sysctl name {0:?} is not valid")]
    SysctlName(String),
    #[error("mask {path}: {source}")]
    Mask {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("make {path} read-only: {source}")]
    Readonly {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
}

/// What the rootfs setup needs besides the spec.
#[derive(Debug)]
pub struct RootfsConfig<'a> {
    pub spec: &'a Spec,
    /// Absolute host path of the rootfs.
    pub rootfs: &'a Path,
    pub bundle: &'a Path,
    pub in_userns: bool,
    pub cgroup_paths: &'a BTreeMap<String, PathBuf>,
    /// Where each cgroup hierarchy is mounted on the host (same keys).
    pub cgroup_mounts: &'a BTreeMap<String, PathBuf>,
    pub new_cgroupns: bool,
    /// The process has a terminal: /dev/console is created for it.
    pub terminal: bool,
    /// Bind sources cloned by the runtime on the host (index in the spec's
    /// mounts → detached mount tree): in a user namespace the init may not be
    /// able to reach them by path.
    pub mount_sources: &'a BTreeMap<usize, std::os::fd::RawFd>,
    /// Whether the host is a pure cgroup v2 host.
    pub host_cgroup2: bool,
    /// The container's cgroup directories cloned from the host, for an init
    /// that cannot reach them by path (see `mounts::MountContext`).
    pub cgroup_trees: &'a BTreeMap<PathBuf, std::os::fd::RawFd>,
}

/// The initial propagation of the whole tree, and the one `/` gets after the
/// pivot. Shared (what Kubernetes' bidirectional mounts ask for) keeps the tree
/// shared, as runc does, so that a bind of a shared host mount stays its peer and
/// mounts made under it inside the container reach the host; the rootfs's own
/// mount is made private first ([`prepare`]), so nothing else does. Unbindable
/// makes the tree slave first, then `/` unbindable.
pub fn propagation(spec: &Spec) -> Result<(MsFlags, Option<MsFlags>), RootfsError> {
    let asked = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().clone())
        .filter(|s| !s.is_empty());
    let Some(asked) = asked else {
        return Ok((MsFlags::MS_PRIVATE | MsFlags::MS_REC, None));
    };
    let flags = mounts::parse_propagation(&asked).ok_or(RootfsError::BadPropagation(asked))?;
    if flags.contains(MsFlags::MS_PRIVATE) {
        Ok((MsFlags::MS_PRIVATE | MsFlags::MS_REC, None))
    } else if flags.contains(MsFlags::MS_SLAVE) {
        Ok((MsFlags::MS_SLAVE | MsFlags::MS_REC, None))
    } else if flags.contains(MsFlags::MS_SHARED) {
        Ok((MsFlags::MS_SHARED | MsFlags::MS_REC, Some(flags)))
    } else {
        Ok((MsFlags::MS_SLAVE | MsFlags::MS_REC, Some(flags)))
    }
}

/// Everything before the pivot: propagation, the rootfs bind, the spec's mounts,
/// /dev and the working directory.
pub fn prepare(cfg: &RootfsConfig<'_>) -> Result<(), RootfsError> {
    let (initial, _) = propagation(cfg.spec)?;
    nix::mount::mount(None::<&str>, "/", None::<&str>, initial, None::<&str>).map_err(
        |source| RootfsError::Propagation {
            what: if initial.contains(MsFlags::MS_PRIVATE) {
                "private"
            } else if initial.contains(MsFlags::MS_SHARED) {
                "shared"
            } else {
                "slave"
            },
            source,
        },
    )?;
    if initial.contains(MsFlags::MS_SHARED) {
        // pivot_root refuses a shared parent, and the rootfs bound onto itself
        // (and every mount made in it) would propagate to the host through it.
        let parent = mount_point_of(cfg.rootfs);
        nix::mount::mount(
            None::<&str>,
            &parent,
            None::<&str>,
            MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(|source| RootfsError::Propagation {
            what: "private at the rootfs's mount",
            source,
        })?;
    }
    // pivot_root needs the new root to be a mount point.
    nix::mount::mount(
        Some(cfg.rootfs),
        cfg.rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|source| RootfsError::BindRoot {
        path: cfg.rootfs.to_path_buf(),
        source,
    })?;

    // Opened once the bind is there, so that every lookup through it sees
    // the mounts made on it.
    let root = mounts::RootDir::open(cfg.rootfs)?;
    let ctx = MountContext {
        rootfs: cfg.rootfs,
        root: &root,
        bundle: cfg.bundle,
        in_userns: cfg.in_userns,
        cgroup_paths: cfg.cgroup_paths,
        cgroup_mounts: cfg.cgroup_mounts,
        new_cgroupns: cfg.new_cgroupns,
        host_cgroup2: cfg.host_cgroup2,
        cgroup_trees: cfg.cgroup_trees,
    };
    let spec_mounts = cfg.spec.mounts().clone().unwrap_or_default();
    for (i, m) in spec_mounts.iter().enumerate() {
        let mut m = m.clone();
        if let Some(fd) = cfg.mount_sources.get(&i) {
            // SAFETY: the fd is open for the init's whole life (the runtime
            // opened it before forking and it is only closed at execve).
            let tree = unsafe { std::os::fd::BorrowedFd::borrow_raw(*fd) };
            mounts::attach_tree(&ctx, &m, tree)?;
            recursive_attrs(cfg.rootfs, &m)?;
            continue;
        }
        if is_readonly_dev(&m) {
            // Devices and mount points go in first; finalize_dev remounts it
            // read-only after the pivot.
            m.set_options(
                m.options()
                    .as_ref()
                    .map(|o| o.iter().filter(|x| *x != "ro").cloned().collect()),
            );
        }
        mounts::mount_one(&ctx, &m)?;
        recursive_attrs(cfg.rootfs, &m)?;
    }

    let spec_devices: Vec<LinuxDevice> = cfg
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().clone())
        .unwrap_or_default();
    // A bind-mounted /dev is the caller's to fill (runc's rule).
    let dev_is_bind = spec_mounts.iter().any(|m| {
        m.destination() == Path::new("/dev")
            && (m.typ().as_deref() == Some("bind")
                || m.options()
                    .as_ref()
                    .is_some_and(|o| o.iter().any(|x| x == "bind" || x == "rbind")))
    });
    if !dev_is_bind {
        let defaults: Vec<LinuxDevice> = devices::default_devices()
            .into_iter()
            .filter(|d| !spec_devices.iter().any(|s| s.path() == d.path()))
            .collect();
        devices::create_devices(cfg.rootfs, &defaults, cfg.in_userns)?;
        devices::create_symlinks(cfg.rootfs)?;
        if cfg.terminal {
            mounts::ensure_file(&cfg.rootfs.join("dev/console"))?;
        }
    }
    devices::create_devices(cfg.rootfs, &spec_devices, cfg.in_userns)?;

    if let Some(p) = cfg.spec.process() {
        let cwd = mounts::resolve_in_root(cfg.rootfs, p.cwd())?;
        mounts::ensure_dir(&cwd)?;
    }
    Ok(())
}

/// Apply a mount's recursive options (`rro`, `rnosuid`, ...) to it and every
/// mount below it.
fn recursive_attrs(rootfs: &Path, m: &oci_spec::runtime::Mount) -> Result<(), RootfsError> {
    let opts = mounts::parse_options(m.options().as_deref().unwrap_or_default(), m.destination())?;
    if opts.attr_set == 0 && opts.attr_clr == 0 {
        return Ok(());
    }
    let dest = mounts::resolve_in_root(rootfs, m.destination())?;
    Ok(mounts::apply_recursive_attrs(&dest, &opts)?)
}

/// A tmpfs /dev the spec wants read-only (it is filled first, then made so).
fn is_readonly_dev(m: &oci_spec::runtime::Mount) -> bool {
    m.destination() == Path::new("/dev")
        && m.typ().as_deref() == Some("tmpfs")
        && m.options()
            .as_ref()
            .is_some_and(|o| o.iter().any(|x| x == "ro"))
}

/// After the pivot: remount a /dev the spec wants read-only, now that its
/// device nodes, symlinks and mount points exist (runc does the same).
pub fn finalize_dev(spec: &Spec) -> Result<(), RootfsError> {
    if !spec
        .mounts()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(is_readonly_dev)
    {
        return Ok(());
    }
    remount_readonly_fs(Path::new("/dev")).map_err(|source| RootfsError::Readonly {
        path: PathBuf::from("/dev"),
        source,
    })
}

/// Before chroot (--no-pivot): the host's own procfs and sysfs mounts stay
/// reachable in the mount namespace, and a full, unmasked procfs lets the
/// kernel allow a fresh procfs mount in a nested user namespace. Detach every
/// full proc and sysfs mount outside the rootfs (or cover it with an empty
/// tmpfs where that is refused), as runc does.
fn hide_host_pseudo_fs(rootfs: &Path) -> Result<(), RootfsError> {
    let mut hidden: Vec<PathBuf> = mounts::mountinfo()?
        .into_iter()
        .filter(|m| m.root == Path::new("/") && matches!(m.fs_type.as_str(), "proc" | "sysfs"))
        .map(|m| m.mount_point)
        .filter(|p| !p.starts_with(rootfs))
        .collect();
    // Deepest first, so that a parent is not detached from under a child.
    hidden.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in hidden {
        let err = |source| RootfsError::Mask {
            path: p.clone(),
            source,
        };
        match nix::mount::mount(
            None::<&str>,
            &p,
            None::<&str>,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None::<&str>,
        ) {
            // Gone with a parent detached before it.
            Err(nix::errno::Errno::ENOENT) => continue,
            r => r.map_err(err)?,
        }
        match nix::mount::umount2(&p, MntFlags::MNT_DETACH) {
            Ok(()) => {}
            Err(nix::errno::Errno::EINVAL | nix::errno::Errno::EPERM) => {
                nix::mount::mount(
                    Some("tmpfs"),
                    &p,
                    Some("tmpfs"),
                    MsFlags::empty(),
                    None::<&str>,
                )
                .map_err(err)?;
            }
            Err(e) => return Err(err(e)),
        }
    }
    Ok(())
}

/// Make `rootfs` the root: pivot_root with the `.`/`.` trick (the old root ends up
/// stacked under the new one and is detached at once), or with `no_pivot` move
/// the rootfs onto / and chroot (for ramdisk roots, where pivot_root fails).
pub fn pivot(rootfs: &Path, no_pivot: bool) -> Result<(), RootfsError> {
    let err = |step: &'static str| {
        move |source| RootfsError::Pivot {
            step,
            path: rootfs.to_path_buf(),
            source,
        }
    };
    nix::unistd::chdir(rootfs).map_err(err("chdir"))?;
    if no_pivot {
        hide_host_pseudo_fs(rootfs)?;
        nix::mount::mount(
            Some(rootfs),
            "/",
            None::<&str>,
            MsFlags::MS_MOVE,
            None::<&str>,
        )
        .map_err(err("move the rootfs"))?;
        nix::unistd::chroot(".").map_err(err("chroot"))?;
    } else {
        // The old root, held open so that it can be named after the pivot.
        let old_root = nix::fcntl::open(
            "/",
            nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(err("open the old root"))?;
        nix::unistd::pivot_root(".", ".").map_err(err("pivot_root"))?;
        // The old root is now stacked on top of the new one. `.` must name it,
        // not the new root (whose mounts, the spec's shared binds among them,
        // must keep their propagation), before it is made slave, so that
        // unmounting it cannot propagate to the host (as runc does).
        nix::unistd::fchdir(&old_root).map_err(err("fchdir to the old root"))?;
        drop(old_root);
        nix::mount::mount(
            None::<&str>,
            ".",
            None::<&str>,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(err("make the old root slave"))?;
        nix::mount::umount2(".", MntFlags::MNT_DETACH).map_err(err("detach the old root"))?;
    }
    nix::unistd::chdir("/").map_err(err("chdir to the new root"))?;
    Ok(())
}

/// The mount point `path` is on: the topmost of `path` and its parents still on
/// the same mount (statx mount ids), else the longest mount point of
/// /proc/self/mountinfo that is `path` or one of its parents (`/` when it cannot
/// be read). mountinfo is the fallback only: the kernel writes out every mount of
/// the namespace for it, and a host with many containers has thousands.
fn mount_point_of(path: &Path) -> PathBuf {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    if let Some(top) = topmost_on_same_mount(&path) {
        return top;
    }
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape_octal(m)))
        .filter(|m| path.starts_with(m))
        .max_by_key(|m| m.as_os_str().len())
        .unwrap_or_else(|| PathBuf::from("/"))
}

fn topmost_on_same_mount(path: &Path) -> Option<PathBuf> {
    let id = mount_id(path)?;
    let mut top = path;
    for up in path.ancestors().skip(1) {
        if mount_id(up)? != id {
            break;
        }
        top = up;
    }
    Some(top.to_path_buf())
}

/// The id of the mount `path` is on (statx, Linux 5.8); None where unknown.
fn mount_id(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statx is plain data, valid all zeroes.
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
    (r == 0 && stx.stx_mask & libc::STATX_MNT_ID != 0).then_some(stx.stx_mnt_id)
}

/// A mountinfo field with its `\ooo` escapes (space, tab, newline, backslash)
/// undone.
fn unescape_octal(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let digits = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match digits {
            Some(d) => {
                let v = u32::from(d[0] - b'0') * 64
                    + u32::from(d[1] - b'0') * 8
                    + u32::from(d[2] - b'0');
                out.push(u8::try_from(v).unwrap_or(b'?'));
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

/// Give `/` the propagation the spec asked for (shared, unbindable) after the
/// pivot.
pub fn final_propagation(spec: &Spec) -> Result<(), RootfsError> {
    if let (_, Some(flags)) = propagation(spec)? {
        nix::mount::mount(None::<&str>, "/", None::<&str>, flags, None::<&str>).map_err(
            |source| RootfsError::Propagation {
                what: "as rootfsPropagation asks",
                source,
            },
        )?;
    }
    Ok(())
}

/// The file under /proc/sys for a sysctl name (`net.ipv4.ip_forward`).
pub fn sysctl_path(key: &str) -> Result<PathBuf, RootfsError> {
    let ok = !key.is_empty()
        && key
            .split(['.', '/'])
            .all(|part| !part.is_empty() && part != ".." && part != ".");
    if !ok {
        return Err(RootfsError::SysctlName(key.to_string()));
    }
    Ok(Path::new("/proc/sys").join(key.replace('.', "/")))
}

/// Write the spec's sysctls through the container's /proc/sys.
pub fn write_sysctls(
    sysctls: &std::collections::HashMap<String, String>,
) -> Result<(), RootfsError> {
    let mut keys: Vec<&String> = sysctls.keys().collect();
    keys.sort();
    for key in keys {
        let path = sysctl_path(key)?;
        fs::write(&path, sysctls[key].as_bytes()).map_err(|source| RootfsError::Sysctl {
            key: key.clone(),
            source,
        })?;
    }
    Ok(())
}

/// Bind each path onto itself read-only (skipping paths the image lacks).
pub fn readonly_paths(paths: &[String]) -> Result<(), RootfsError> {
    for p in paths {
        let path = Path::new(p);
        if fs::symlink_metadata(path).is_err() {
            continue;
        }
        let ro = |source| RootfsError::Readonly {
            path: path.to_path_buf(),
            source,
        };
        nix::mount::mount(
            Some(path),
            path,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(ro)?;
        remount_readonly(path).map_err(ro)?;
    }
    Ok(())
}

/// Remount a mount point read-only, keeping its other flags (nosuid, noexec...).
fn remount_readonly(path: &Path) -> Result<(), nix::Error> {
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    if let Ok(st) = nix::sys::statvfs::statvfs(path) {
        use nix::sys::statvfs::FsFlags;
        let f = st.flags();
        for (s, m) in [
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
            (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
            (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        ] {
            if f.contains(s) {
                flags |= m;
            }
        }
    }
    nix::mount::mount(None::<&str>, path, None::<&str>, flags, None::<&str>)
}

/// Remount a filesystem (not a bind) read-only, keeping its other flags.
fn remount_readonly_fs(path: &Path) -> Result<(), nix::Error> {
    let mut flags = MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    if let Ok(st) = nix::sys::statvfs::statvfs(path) {
        use nix::sys::statvfs::FsFlags;
        let f = st.flags();
        for (s, m) in [
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        ] {
            if f.contains(s) {
                flags |= m;
            }
        }
    }
    nix::mount::mount(None::<&str>, path, None::<&str>, flags, None::<&str>)
}

/// Hide each path: /dev/null bound over files, an empty read-only tmpfs over
/// directories.
pub fn masked_paths(paths: &[String]) -> Result<(), RootfsError> {
    for p in paths {
        let path = Path::new(p);
        let Ok(meta) = fs::metadata(path) else {
            continue;
        };
        let r = if meta.is_dir() {
            nix::mount::mount(
                Some("tmpfs"),
                path,
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None::<&str>,
            )
        } else {
            nix::mount::mount(
                Some("/dev/null"),
                path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
        };
        r.map_err(|source| RootfsError::Mask {
            path: path.to_path_buf(),
            source,
        })?;
    }
    Ok(())
}

/// Remount the new root read-only (`root.readonly`).
pub fn readonly_root() -> Result<(), RootfsError> {
    remount_readonly(Path::new("/")).map_err(|source| RootfsError::Readonly {
        path: PathBuf::from("/"),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_names_map_to_proc_sys() {
        assert_eq!(
            sysctl_path("net.ipv4.ip_forward").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/ip_forward")
        );
        assert!(sysctl_path("../../etc").is_err());
        assert!(sysctl_path("kernel..x").is_err());
        assert!(sysctl_path("").is_err());
    }

    #[test]
    fn propagation_defaults_to_private() {
        let spec = Spec::default();
        let (initial, later) = propagation(&spec).unwrap();
        assert!(initial.contains(MsFlags::MS_PRIVATE));
        assert!(later.is_none());
        let mut spec = Spec::default();
        let mut linux = spec.linux().clone().unwrap_or_default();
        linux.set_rootfs_propagation(Some("rshared".into()));
        spec.set_linux(Some(linux));
        let (initial, later) = propagation(&spec).unwrap();
        assert_eq!(initial, MsFlags::MS_SHARED | MsFlags::MS_REC);
        assert_eq!(later, Some(MsFlags::MS_SHARED | MsFlags::MS_REC));
        let mut linux = spec.linux().clone().unwrap_or_default();
        linux.set_rootfs_propagation(Some("runbindable".into()));
        spec.set_linux(Some(linux));
        let (initial, later) = propagation(&spec).unwrap();
        assert!(initial.contains(MsFlags::MS_SLAVE));
        assert_eq!(later, Some(MsFlags::MS_UNBINDABLE | MsFlags::MS_REC));
    }

    #[test]
    fn the_mount_point_of_a_path() {
        assert_eq!(
            mount_point_of(Path::new("/proc/self")),
            PathBuf::from("/proc")
        );
        assert_eq!(mount_point_of(Path::new("/proc")), PathBuf::from("/proc"));
        assert_eq!(mount_point_of(Path::new("/")), PathBuf::from("/"));
        // statx and mountinfo agree.
        let dir = tempfile::tempdir().unwrap();
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let by_info = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(|m| PathBuf::from(unescape_octal(m)))
            .filter(|m| dir.path().starts_with(m))
            .max_by_key(|m| m.as_os_str().len())
            .unwrap();
        assert_eq!(topmost_on_same_mount(dir.path()), Some(by_info));
        assert_eq!(unescape_octal(r"/a\040b"), "/a b");
        assert_eq!(unescape_octal("/plain"), "/plain");
    }
}
