//! The spec's `mounts`: option strings turned into mount(2) flags and data, paths
//! resolved inside the rootfs without following symlinks out of it, and every kind
//! of mount the spec asks for (proc, sysfs, tmpfs, devpts, mqueue, cgroup, bind and
//! rbind with remount for the flags a bind cannot take at once, propagation).
//!
//! Everything here runs in the container's init, in its new mount namespace and
//! before pivot_root, so host paths (bind sources, /proc/self/mountinfo) still
//! resolve as on the host.
//!
//! A mount target is a path inside the rootfs, which another container sharing a
//! volume can change while we work (CVE-2021-30465: a path component swapped for
//! a symlink between the check and the mount). So targets are created with
//! mkdirat/openat relative to directory fds opened with
//! `openat2(RESOLVE_IN_ROOT)` from the rootfs, and every mount, remount and
//! propagation change is made on `/proc/self/fd/N` of an O_PATH fd opened the
//! same way and checked to be the path that was resolved ([`with_target`]).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::sys::statvfs::FsFlags;
use oci_spec::runtime::Mount;

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mount destination {0} must be an absolute path")]
    RelativeDestination(PathBuf),
    #[error("mount option {option:?} on {dest} is not supported")]
    UnsupportedOption { option: String, dest: PathBuf },
    #[error("mounting on {0} is not allowed: only /proc itself and a few proc files may be mount targets")]
    ProcTarget(PathBuf),
    #[error("filesystem {fs:?} must be mounted on ordinary directory ({dest} is not one)")]
    NotOrdinaryDir { fs: String, dest: PathBuf },
    #[error("set the recursive mount attributes of {dest}: {source}")]
    SetAttr {
        dest: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("too many levels of symbolic links resolving {0} in the rootfs")]
    SymlinkLoop(PathBuf),
    #[error("create mount point {path}: {source}")]
    CreateTarget {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("bind source {path}: {source}")]
    Source {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("mount {what} on {dest}: {source}")]
    Mount {
        what: String,
        dest: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("remount {dest} with the requested flags: {source}")]
    Remount {
        dest: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("set propagation of {dest}: {source}")]
    Propagation {
        dest: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("mount target {path} changed while it was being mounted on (it now resolves to {now}): refusing to mount there")]
    TargetMoved { path: PathBuf, now: PathBuf },
    #[error("mount target {0} is not inside the container's root filesystem")]
    OutsideRoot(PathBuf),
    #[error("open mount target {path} inside the rootfs: {source}")]
    OpenTarget {
        path: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A mount's options, split the way mount(2) takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Flags to set (ro, nosuid, ...).
    pub flags: MsFlags,
    /// Propagation changes applied after the mount, in order.
    pub propagation: Vec<MsFlags>,
    /// Filesystem-specific options (mode=755, size=..., newinstance ...).
    pub data: Vec<String>,
    /// `bind` or `rbind` was given.
    pub bind: bool,
    /// `rbind`: bind the whole tree below the source.
    pub recursive: bool,
    /// Recursive attributes (`rro`, `rnosuid`, ...): MOUNT_ATTR_* bits set and
    /// cleared with mount_setattr(AT_RECURSIVE) once the mount is made.
    pub attr_set: u64,
    pub attr_clr: u64,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            flags: MsFlags::empty(),
            propagation: Vec::new(),
            data: Vec::new(),
            bind: false,
            recursive: false,
            attr_set: 0,
            attr_clr: 0,
        }
    }
}

impl MountOptions {
    /// The data string for mount(2), or None when empty.
    pub fn data_string(&self) -> Option<String> {
        if self.data.is_empty() {
            None
        } else {
            Some(self.data.join(","))
        }
    }

    /// Whether a bind mount needs a second, remounting call for its flags.
    pub fn needs_remount(&self) -> bool {
        !(self.flags - MsFlags::MS_BIND - MsFlags::MS_REC).is_empty()
    }
}

/// Parse the spec's option strings.
pub fn parse_options(options: &[String], dest: &Path) -> Result<MountOptions, MountError> {
    let mut o = MountOptions::default();
    for opt in options {
        let set = |o: &mut MountOptions, f: MsFlags| o.flags.insert(f);
        let clear = |o: &mut MountOptions, f: MsFlags| o.flags.remove(f);
        match opt.as_str() {
            "defaults" | "" => {}
            "ro" => set(&mut o, MsFlags::MS_RDONLY),
            "rw" => clear(&mut o, MsFlags::MS_RDONLY),
            "nosuid" => set(&mut o, MsFlags::MS_NOSUID),
            "suid" => clear(&mut o, MsFlags::MS_NOSUID),
            "nodev" => set(&mut o, MsFlags::MS_NODEV),
            "dev" => clear(&mut o, MsFlags::MS_NODEV),
            "noexec" => set(&mut o, MsFlags::MS_NOEXEC),
            "exec" => clear(&mut o, MsFlags::MS_NOEXEC),
            "sync" => set(&mut o, MsFlags::MS_SYNCHRONOUS),
            "async" => clear(&mut o, MsFlags::MS_SYNCHRONOUS),
            "dirsync" => set(&mut o, MsFlags::MS_DIRSYNC),
            "remount" => set(&mut o, MsFlags::MS_REMOUNT),
            "mand" => set(&mut o, MsFlags::MS_MANDLOCK),
            "nomand" => clear(&mut o, MsFlags::MS_MANDLOCK),
            "noatime" => set(&mut o, MsFlags::MS_NOATIME),
            "atime" => clear(&mut o, MsFlags::MS_NOATIME),
            "nodiratime" => set(&mut o, MsFlags::MS_NODIRATIME),
            "diratime" => clear(&mut o, MsFlags::MS_NODIRATIME),
            "relatime" => set(&mut o, MsFlags::MS_RELATIME),
            "norelatime" => clear(&mut o, MsFlags::MS_RELATIME),
            "strictatime" => set(&mut o, MsFlags::MS_STRICTATIME),
            "nostrictatime" => clear(&mut o, MsFlags::MS_STRICTATIME),
            "lazytime" => set(&mut o, MsFlags::MS_LAZYTIME),
            "nolazytime" => clear(&mut o, MsFlags::MS_LAZYTIME),
            "silent" => set(&mut o, MsFlags::MS_SILENT),
            "loud" => clear(&mut o, MsFlags::MS_SILENT),
            "iversion" => set(&mut o, MsFlags::MS_I_VERSION),
            "noiversion" => clear(&mut o, MsFlags::MS_I_VERSION),
            "nosymfollow" => set(&mut o, MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW)),
            "symfollow" => clear(&mut o, MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW)),
            "bind" => {
                o.bind = true;
                set(&mut o, MsFlags::MS_BIND);
            }
            "rbind" => {
                o.bind = true;
                o.recursive = true;
                set(&mut o, MsFlags::MS_BIND | MsFlags::MS_REC);
            }
            "private" => o.propagation.push(MsFlags::MS_PRIVATE),
            "rprivate" => o.propagation.push(MsFlags::MS_PRIVATE | MsFlags::MS_REC),
            "shared" => o.propagation.push(MsFlags::MS_SHARED),
            "rshared" => o.propagation.push(MsFlags::MS_SHARED | MsFlags::MS_REC),
            "slave" => o.propagation.push(MsFlags::MS_SLAVE),
            "rslave" => o.propagation.push(MsFlags::MS_SLAVE | MsFlags::MS_REC),
            "unbindable" => o.propagation.push(MsFlags::MS_UNBINDABLE),
            "runbindable" => o.propagation.push(MsFlags::MS_UNBINDABLE | MsFlags::MS_REC),
            // runc copies the image's directory into a fresh tmpfs; berth mounts
            // the tmpfs empty (Docker does not ask for it by default).
            "tmpcopyup" => {}
            r if recursive_attr(r).is_some() => {
                if let Some((set, clr)) = recursive_attr(r) {
                    o.attr_set = (o.attr_set & !clr) | set;
                    o.attr_clr = (o.attr_clr & !set) | clr;
                }
            }
            "idmap" | "ridmap" => {
                return Err(MountError::UnsupportedOption {
                    option: opt.clone(),
                    dest: dest.to_path_buf(),
                })
            }
            other => o.data.push(other.to_string()),
        }
    }
    Ok(o)
}

/// mount_setattr(2) attribute bits (linux/mount.h).
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;
const MOUNT_ATTR_ATIME: u64 = 0x70;
const MOUNT_ATTR_RELATIME: u64 = 0x0;
const MOUNT_ATTR_NOATIME: u64 = 0x10;
const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;

/// The (set, clear) attribute bits of a recursive option (`rro` ...), as
/// runc maps them; None for anything else. The atime options replace the
/// whole atime field, so they clear it and set their value.
fn recursive_attr(opt: &str) -> Option<(u64, u64)> {
    Some(match opt {
        "rro" => (MOUNT_ATTR_RDONLY, 0),
        "rrw" => (0, MOUNT_ATTR_RDONLY),
        "rnosuid" => (MOUNT_ATTR_NOSUID, 0),
        "rsuid" => (0, MOUNT_ATTR_NOSUID),
        "rnodev" => (MOUNT_ATTR_NODEV, 0),
        "rdev" => (0, MOUNT_ATTR_NODEV),
        "rnoexec" => (MOUNT_ATTR_NOEXEC, 0),
        "rexec" => (0, MOUNT_ATTR_NOEXEC),
        "rnodiratime" => (MOUNT_ATTR_NODIRATIME, 0),
        "rdiratime" => (0, MOUNT_ATTR_NODIRATIME),
        "rrelatime" => (MOUNT_ATTR_RELATIME, MOUNT_ATTR_ATIME),
        "rnorelatime" => (0, MOUNT_ATTR_ATIME),
        "rnoatime" => (MOUNT_ATTR_NOATIME, MOUNT_ATTR_ATIME),
        "ratime" => (0, MOUNT_ATTR_ATIME),
        "rstrictatime" => (MOUNT_ATTR_STRICTATIME, MOUNT_ATTR_ATIME),
        "rnostrictatime" => (0, MOUNT_ATTR_ATIME),
        "rnosymfollow" => (MOUNT_ATTR_NOSYMFOLLOW, 0),
        "rsymfollow" => (0, MOUNT_ATTR_NOSYMFOLLOW),
        _ => return None,
    })
}

/// Apply the recursive attributes of `opts` to the mount at `dest` and every
/// mount below it, in one mount_setattr(AT_RECURSIVE) call (Linux 5.12).
pub fn apply_recursive_attrs(dest: &Path, opts: &MountOptions) -> Result<(), MountError> {
    if opts.attr_set == 0 && opts.attr_clr == 0 {
        return Ok(());
    }
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let attr = MountAttr {
        attr_set: opts.attr_set,
        attr_clr: opts.attr_clr,
        propagation: 0,
        userns_fd: 0,
    };
    let path = std::ffi::CString::new(dest.as_os_str().as_encoded_bytes()).map_err(|_| {
        MountError::SetAttr {
            dest: dest.to_path_buf(),
            source: Errno::EINVAL,
        }
    })?;
    // SAFETY: mount_setattr reads a NUL-terminated path and `size` bytes of
    // attributes, both alive for the duration of the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::AT_RECURSIVE | libc::AT_SYMLINK_NOFOLLOW,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(r)
        .map(drop)
        .map_err(|source| MountError::SetAttr {
            dest: dest.to_path_buf(),
            source,
        })
}

/// A detached copy of the mount at `source` (of the whole tree below it with
/// `recursive`), to be attached elsewhere with [`attach_tree`].
pub fn clone_tree(source: &Path, recursive: bool) -> Result<std::os::fd::OwnedFd, MountError> {
    use std::os::fd::FromRawFd;
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    let err = |source_err: Errno| MountError::Mount {
        what: format!("clone of {}", source.display()),
        dest: source.to_path_buf(),
        source: source_err,
    };
    let path = std::ffi::CString::new(source.as_os_str().as_encoded_bytes())
        .map_err(|_| err(Errno::EINVAL))?;
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: open_tree reads a NUL-terminated path and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) };
    let fd = Errno::result(fd).map_err(err)?;
    let fd = i32::try_from(fd).map_err(|_| err(Errno::EBADF))?;
    // SAFETY: open_tree returned a new fd that nothing else owns.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Bind mount `m` from a tree cloned by [`clone_tree`] (`tree`) instead of its
/// source path: the mount point is made inside the rootfs, the tree attached
/// there with move_mount, then the flags and propagation applied as for any
/// bind mount.
pub fn attach_tree(
    ctx: &MountContext<'_>,
    m: &Mount,
    tree: std::os::fd::BorrowedFd<'_>,
) -> Result<(), MountError> {
    use std::os::fd::AsRawFd;
    let dest_in = m.destination();
    if !dest_in.is_absolute() {
        return Err(MountError::RelativeDestination(dest_in.clone()));
    }
    let opts = parse_options(m.options().as_deref().unwrap_or_default(), dest_in)?;
    let dest = resolve_in_root(ctx.rootfs, dest_in)?;
    check_proc_target(ctx.rootfs, &dest, "bind")?;
    let is_dir = nix::sys::stat::fstat(tree)
        .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
        .unwrap_or(true);
    if is_dir {
        ensure_dir_in_root(ctx.root, &dest)?;
    } else {
        ensure_file_in_root(ctx.root, &dest)?;
    }
    let source = m.source().as_deref().unwrap_or(Path::new("?"));
    let source = BindSource::Tree {
        path: source,
        tree: tree.as_raw_fd(),
    };
    bind_in_root(ctx.root, source, &dest, opts.flags)?;
    propagation_in_root(ctx.root, &dest, &opts.propagation)
}

/// Attach the detached tree `tree` (from [`clone_tree`]) on `target`, which
/// may be a /proc/self/fd link to a target opened and checked beforehand
/// ([`with_target`]): unlike mount(2), move_mount follows a link there only
/// when told to.
pub fn move_tree(tree: std::os::fd::RawFd, target: &Path) -> Result<(), Errno> {
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
    const MOVE_MOUNT_T_SYMLINKS: libc::c_uint = 0x10;
    let target =
        std::ffi::CString::new(target.as_os_str().as_encoded_bytes()).map_err(|_| Errno::EINVAL)?;
    // SAFETY: move_mount reads two NUL-terminated paths ("" and the target),
    // alive for the duration of the call; a bad fd is refused with EBADF.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree,
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_SYMLINKS,
        )
    };
    Errno::result(r).map(drop)
}

/// procfs and sysfs go only on a real directory of the rootfs: a symlink
/// there could point the mount (and the masks and read-only paths that
/// follow it) somewhere else, so it is refused as runc refuses it.
pub fn check_pseudo_fs_target(rootfs: &Path, dest: &Path, typ: &str) -> Result<(), MountError> {
    if !matches!(typ, "proc" | "sysfs") {
        return Ok(());
    }
    let inside = rootfs.join(dest.strip_prefix("/").unwrap_or(dest));
    match fs::symlink_metadata(&inside) {
        Ok(meta) if !meta.is_dir() => Err(MountError::NotOrdinaryDir {
            fs: typ.to_string(),
            dest: dest.to_path_buf(),
        }),
        _ => Ok(()),
    }
}

/// Propagation flags named by `rootfsPropagation` (or a mount option).
pub fn parse_propagation(s: &str) -> Option<MsFlags> {
    Some(match s {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

/// Resolve `path` inside `root` the way the container will see it: symlinks are
/// followed, but an absolute target or a `..` can never climb above `root`.
/// Components that do not exist yet are taken literally (they will be created).
pub fn resolve_in_root(root: &Path, path: &Path) -> Result<PathBuf, MountError> {
    // The components still to walk, last one first.
    let mut pending: Vec<OsString> = Vec::new();
    push_components(&mut pending, path);
    let mut resolved = PathBuf::new();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&part);
        let full = root.join(&candidate);
        match fs::symlink_metadata(&full) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > 255 {
                    return Err(MountError::SymlinkLoop(path.to_path_buf()));
                }
                let target = fs::read_link(&full).map_err(|source| MountError::Read {
                    path: full.clone(),
                    source,
                })?;
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                push_components(&mut pending, &target);
            }
            _ => resolved = candidate,
        }
    }
    Ok(root.join(resolved))
}

fn push_components(stack: &mut Vec<OsString>, path: &Path) {
    let parts: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    stack.extend(parts.into_iter().rev());
}

/// Create a directory (and its parents) to mount on.
pub fn ensure_dir(path: &Path) -> Result<(), MountError> {
    if path.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(path)
        .map_err(|source| MountError::CreateTarget {
            path: path.to_path_buf(),
            source,
        })
}

/// Create an empty file (and its parent directories) to mount a file on.
pub fn ensure_file(path: &Path) -> Result<(), MountError> {
    if path.exists() {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        ensure_dir(parent)?;
    }
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path)
        .map(drop)
        .map_err(|source| MountError::CreateTarget {
            path: path.to_path_buf(),
            source,
        })
}

/// `O_PATH` fd of `path` resolved inside `root_fd` by the kernel (symlinks and
/// `..` cannot leave it). Kernels without openat2 (before 5.6) get a plain
/// openat; [`with_target`]'s check still holds there.
fn open_in_root(
    root_fd: std::os::fd::BorrowedFd<'_>,
    rel: &Path,
    extra: nix::fcntl::OFlag,
) -> Result<std::os::fd::OwnedFd, Errno> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let flags = OFlag::O_PATH | OFlag::O_CLOEXEC | extra;
    let how = OpenHow::new()
        .flags(flags)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    match nix::fcntl::openat2(root_fd, rel, how) {
        Err(Errno::ENOSYS) => {
            nix::fcntl::openat(root_fd, rel, flags, nix::sys::stat::Mode::empty())
        }
        r => r,
    }
}

fn fd_path(fd: std::os::fd::BorrowedFd<'_>) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// The container's rootfs, opened once for every mount made below it: an
/// `O_PATH` fd that targets are resolved from (`openat2(RESOLVE_IN_ROOT)`), and
/// where the kernel says that fd is, the prefix every resolved target must
/// start with. Open it after the rootfs is bound onto itself: lookups through
/// the fd see the mounts made on that bind mount, and only those.
#[derive(Debug)]
pub struct RootDir {
    path: PathBuf,
    fd: std::cell::RefCell<std::os::fd::OwnedFd>,
    real: std::cell::RefCell<PathBuf>,
}

impl RootDir {
    /// Open `rootfs` (the host path the targets are given under).
    pub fn open(rootfs: &Path) -> Result<RootDir, MountError> {
        let (fd, real) = Self::open_parts(rootfs)?;
        Ok(RootDir {
            path: rootfs.to_path_buf(),
            fd: std::cell::RefCell::new(fd),
            real: std::cell::RefCell::new(real),
        })
    }

    fn open_parts(rootfs: &Path) -> Result<(std::os::fd::OwnedFd, PathBuf), MountError> {
        use std::os::fd::AsFd;
        let fd = nix::fcntl::open(
            rootfs,
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|source| MountError::OpenTarget {
            path: rootfs.to_path_buf(),
            source,
        })?;
        // Where the kernel found it: the rootfs path may go through symlinks
        // of the host's; the paths inside it may not.
        let link = fd_path(fd.as_fd());
        let real =
            fs::read_link(&link).map_err(|source| MountError::Read { path: link, source })?;
        Ok((fd, real))
    }

    /// The host path of the rootfs.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Something was mounted on the rootfs itself: lookups must start from
    /// the new mount from now on.
    fn reopen(&self) -> Result<(), MountError> {
        let (fd, real) = Self::open_parts(&self.path)?;
        *self.fd.borrow_mut() = fd;
        *self.real.borrow_mut() = real;
        Ok(())
    }

    /// `dest` (a host path below the rootfs) relative to it.
    fn relative<'p>(&self, dest: &'p Path) -> Result<&'p Path, MountError> {
        dest.strip_prefix(&self.path)
            .map_err(|_| MountError::OutsideRoot(dest.to_path_buf()))
    }
}

/// Run `f` on `/proc/self/fd/N` for `dest` (a path below the rootfs, as
/// [`resolve_in_root`] returned it), opened inside the rootfs and checked to
/// still be that path: what `f` mounts lands exactly there or nowhere.
///
/// Each call opens the target again, so after a mount the fd is the new mount's
/// root (a remount or propagation change then applies to it, not to what it
/// covers).
pub fn with_target<T>(
    root: &RootDir,
    dest: &Path,
    f: impl FnOnce(&Path) -> Result<T, MountError>,
) -> Result<T, MountError> {
    use std::os::fd::AsFd;
    let rel = root.relative(dest)?;
    let open_err = |source| MountError::OpenTarget {
        path: dest.to_path_buf(),
        source,
    };
    let fd = open_in_root(root.fd.borrow().as_fd(), rel, nix::fcntl::OFlag::O_NOFOLLOW)
        .map_err(open_err)?;
    let proc_path = fd_path(fd.as_fd());
    let now = fs::read_link(&proc_path).map_err(|source| MountError::Read {
        path: proc_path.clone(),
        source,
    })?;
    let expected = if rel.as_os_str().is_empty() {
        root.real.borrow().clone()
    } else {
        root.real.borrow().join(rel)
    };
    let st = nix::sys::stat::fstat(&fd).map_err(open_err)?;
    let is_link = st.st_mode & libc::S_IFMT == libc::S_IFLNK;
    if now != expected || is_link {
        return Err(MountError::TargetMoved {
            path: dest.to_path_buf(),
            now,
        });
    }
    let r = f(&proc_path)?;
    if rel.as_os_str().is_empty() {
        root.reopen()?;
    }
    Ok(r)
}

/// The `O_PATH` fd of `dest` (below the rootfs), opened and checked as
/// [`with_target`] does: after a mount there, the new mount's root.
fn open_target(root: &RootDir, dest: &Path) -> Result<std::os::fd::OwnedFd, MountError> {
    with_target(root, dest, |p| {
        nix::fcntl::open(
            p,
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|source| MountError::OpenTarget {
            path: dest.to_path_buf(),
            source,
        })
    })
}

/// Bind `source` on the directory `name` of a tmpfs of our own (`dir`, its
/// root), made for it, then remount the new mount with `flags`. `dest` is
/// where that is, for messages.
fn bind_in_tmpfs(
    dir: std::os::fd::BorrowedFd<'_>,
    name: &std::ffi::OsStr,
    source: BindSource<'_>,
    dest: &Path,
    flags: MsFlags,
) -> Result<(), MountError> {
    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;
    use std::os::fd::AsFd;
    let err = |source: Errno| MountError::CreateTarget {
        path: dest.to_path_buf(),
        source: io::Error::from(source),
    };
    match nix::sys::stat::mkdirat(dir, name, Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(err(e)),
    }
    let open = || {
        nix::fcntl::openat(
            dir,
            name,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|source| MountError::OpenTarget {
            path: dest.to_path_buf(),
            source,
        })
    };
    let target = open()?;
    source.place(&fd_path(target.as_fd()), dest)?;
    let extra = flags - MsFlags::MS_BIND - MsFlags::MS_REC - MsFlags::MS_REMOUNT;
    if !extra.is_empty() {
        // Looked up again: the name now leads to the new mount's root.
        let mounted = open()?;
        remount_bind(&fd_path(mounted.as_fd()), extra).map_err(|e| match e {
            MountError::Remount { source, .. } => MountError::Remount {
                dest: dest.to_path_buf(),
                source,
            },
            e => e,
        })?;
    }
    Ok(())
}

/// [`ensure_dir`] for a path below the rootfs: each missing directory is made
/// with mkdirat in its parent's fd, opened inside the rootfs, so a symlink
/// swapped into the path cannot make it create anything outside.
pub fn ensure_dir_in_root(root: &RootDir, path: &Path) -> Result<(), MountError> {
    create_in_root(root, path, false)
}

/// [`ensure_file`] for a path below the rootfs, made the same way as
/// [`ensure_dir_in_root`] (the file with openat, O_NOFOLLOW).
pub fn ensure_file_in_root(root: &RootDir, path: &Path) -> Result<(), MountError> {
    create_in_root(root, path, true)
}

fn create_in_root(root: &RootDir, path: &Path, file: bool) -> Result<(), MountError> {
    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;
    use std::os::fd::AsFd;
    let rel = root.relative(path)?;
    let err = |source: Errno| MountError::CreateTarget {
        path: path.to_path_buf(),
        source: io::Error::from(source),
    };
    let root_fd = root.fd.borrow();
    // Most targets exist already (one lookup, nothing to write: the rootfs
    // may be read-only); a symlink as the last component counts as there, as
    // the mount that follows refuses it.
    match open_in_root(root_fd.as_fd(), rel, OFlag::O_NOFOLLOW) {
        Ok(_) => return Ok(()),
        Err(Errno::ENOENT) => {}
        Err(e) => return Err(err(e)),
    }
    let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
        return Ok(());
    };
    let parent = open_dir_in_root(root_fd.as_fd(), parent).map_err(err)?;
    if file {
        let r = nix::fcntl::openat(
            parent.as_fd(),
            name,
            OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        );
        return match r {
            Ok(_) => Ok(()),
            // An existing directory or device is a target as good as a file.
            Err(Errno::EISDIR | Errno::ENXIO | Errno::ETXTBSY) => Ok(()),
            Err(e) => Err(err(e)),
        };
    }
    match nix::sys::stat::mkdirat(parent.as_fd(), name, Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(Errno::EEXIST) => Ok(()),
        Err(e) => Err(err(e)),
    }
}

/// An `O_PATH` fd of the directory `rel` inside the rootfs, made (0755, with
/// its missing parents) when it does not exist. A directory made here is
/// opened from its parent's fd without following symlinks, so one swapped in
/// meanwhile fails the call instead of leading anywhere.
fn open_dir_in_root(
    root_fd: std::os::fd::BorrowedFd<'_>,
    rel: &Path,
) -> Result<std::os::fd::OwnedFd, Errno> {
    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;
    use std::os::fd::AsFd;
    match open_in_root(root_fd, rel, OFlag::O_DIRECTORY) {
        Err(Errno::ENOENT) => {}
        r => return r,
    }
    let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
        return Err(Errno::ENOENT);
    };
    let parent = open_dir_in_root(root_fd, parent)?;
    match nix::sys::stat::mkdirat(parent.as_fd(), name, Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(e),
    }
    nix::fcntl::openat(
        parent.as_fd(),
        name,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// What the mounts need to know about the container besides the mount itself.
#[derive(Debug)]
pub struct MountContext<'a> {
    /// Host path of the rootfs (already a mount point of its own).
    pub rootfs: &'a Path,
    /// The rootfs opened once, which every target is resolved from.
    pub root: &'a RootDir,
    /// The bundle, against which relative bind sources are resolved.
    pub bundle: &'a Path,
    /// Whether the init is in a user namespace of its own (some filesystems may
    /// then only be bind-mounted, and mount flags of binds are locked).
    pub in_userns: bool,
    /// The container's cgroup directories (controller → host path).
    pub cgroup_paths: &'a BTreeMap<String, PathBuf>,
    /// Where each of those hierarchies is mounted on the host (same keys);
    /// one missing here is looked up in mountinfo.
    pub cgroup_mounts: &'a BTreeMap<String, PathBuf>,
    /// Whether the container has its own cgroup namespace.
    pub new_cgroupns: bool,
    /// Whether the host's /sys/fs/cgroup is a pure cgroup v2 hierarchy (read
    /// before the init left the host's mount namespace).
    pub host_cgroup2: bool,
    /// The container's cgroup directories cloned from the host (host path →
    /// detached tree), for an init that cannot reach them by path (see
    /// `mntns`); empty otherwise.
    pub cgroup_trees: &'a BTreeMap<PathBuf, std::os::fd::RawFd>,
}

/// Proc files that may be mount targets (lxcfs-style overrides, as runc allows).
const PROC_TARGETS_ALLOWED: &[&str] = &[
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
    "/proc/net/dev",
    "/proc/sys/kernel/ns_last_pid",
];

/// Perform one of the spec's mounts inside the rootfs.
pub fn mount_one(ctx: &MountContext<'_>, m: &Mount) -> Result<(), MountError> {
    let dest_in = m.destination();
    if !dest_in.is_absolute() {
        return Err(MountError::RelativeDestination(dest_in.clone()));
    }
    let empty = Vec::new();
    let opts = parse_options(m.options().as_ref().unwrap_or(&empty), dest_in)?;
    let typ = m.typ().as_deref().unwrap_or("");
    check_pseudo_fs_target(ctx.rootfs, dest_in, typ)?;
    let dest = resolve_in_root(ctx.rootfs, dest_in)?;
    check_proc_target(ctx.rootfs, &dest, if opts.bind { "bind" } else { typ })?;
    if opts.bind || typ == "bind" {
        return bind_mount(ctx, m, &opts, &dest);
    }
    match typ {
        "cgroup" | "cgroup2" => mount_cgroup(ctx, &opts, &dest),
        _ => {
            ensure_dir_in_root(ctx.root, &dest)?;
            let source = m
                .source()
                .as_ref()
                .map(|s| s.as_os_str().to_os_string())
                .unwrap_or_else(|| OsString::from(typ));
            let flags = opts.flags - MsFlags::MS_REMOUNT;
            let data = opts.data_string();
            let r = with_target(ctx.root, &dest, |target| {
                Ok(nix::mount::mount(
                    Some(source.as_os_str()),
                    target,
                    Some(typ),
                    flags,
                    data.as_deref(),
                ))
            })?;
            match r {
                // A user namespace without its own network (sysfs) or IPC
                // (mqueue) namespace may not mount these; bind the host's, like runc.
                Err(Errno::EPERM) if ctx.in_userns && matches!(typ, "sysfs" | "mqueue") => {
                    let host = if typ == "sysfs" {
                        "/sys"
                    } else {
                        "/dev/mqueue"
                    };
                    let source = BindSource::Path {
                        path: Path::new(host),
                        recursive: true,
                    };
                    bind_in_root(ctx.root, source, &dest, flags)?;
                }
                Err(source) => {
                    return Err(MountError::Mount {
                        what: typ.to_string(),
                        dest: dest_in.clone(),
                        source,
                    })
                }
                Ok(()) => {}
            }
            propagation_in_root(ctx.root, &dest, &opts.propagation)
        }
    }
}

fn check_proc_target(rootfs: &Path, dest: &Path, typ: &str) -> Result<(), MountError> {
    let Ok(rel) = dest.strip_prefix(rootfs) else {
        return Ok(());
    };
    let inside = Path::new("/").join(rel);
    if inside == Path::new("/proc") {
        return if typ == "proc" || typ.is_empty() || typ == "bind" {
            Ok(())
        } else {
            Err(MountError::ProcTarget(inside))
        };
    }
    if inside.starts_with("/proc") && !PROC_TARGETS_ALLOWED.iter().any(|p| inside == Path::new(p)) {
        return Err(MountError::ProcTarget(inside));
    }
    Ok(())
}

fn bind_mount(
    ctx: &MountContext<'_>,
    m: &Mount,
    opts: &MountOptions,
    dest: &Path,
) -> Result<(), MountError> {
    let source = m.source().as_ref().ok_or_else(|| MountError::Source {
        path: PathBuf::new(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "a bind mount needs a source"),
    })?;
    let source = if source.is_absolute() {
        source.clone()
    } else {
        ctx.bundle.join(source)
    };
    let meta = fs::metadata(&source).map_err(|e| MountError::Source {
        path: source.clone(),
        source: e,
    })?;
    if meta.is_dir() {
        ensure_dir_in_root(ctx.root, dest)?;
    } else {
        ensure_file_in_root(ctx.root, dest)?;
    }
    let source = BindSource::Path {
        path: &source,
        recursive: opts.recursive,
    };
    bind_in_root(ctx.root, source, dest, opts.flags)?;
    propagation_in_root(ctx.root, dest, &opts.propagation)
}

/// Where a bind mount comes from: a host path, or a detached tree cloned
/// from one beforehand ([`clone_tree`]; the path then names it in messages).
#[derive(Debug, Clone, Copy)]
enum BindSource<'a> {
    Path {
        path: &'a Path,
        recursive: bool,
    },
    Tree {
        path: &'a Path,
        tree: std::os::fd::RawFd,
    },
}

impl<'a> BindSource<'a> {
    /// `path`, or the tree cloned from it when `trees` has one.
    fn of(path: &'a Path, trees: &BTreeMap<PathBuf, std::os::fd::RawFd>) -> BindSource<'a> {
        match trees.get(path) {
            Some(tree) => BindSource::Tree { path, tree: *tree },
            None => BindSource::Path {
                path,
                recursive: false,
            },
        }
    }

    /// Put the mount on `target` (flags come after, by a remount); errors
    /// name `dest`, where `target` leads.
    fn place(self, target: &Path, dest: &Path) -> Result<(), MountError> {
        let (path, placed) = match self {
            BindSource::Path { path, recursive } => {
                let flags = if recursive {
                    MsFlags::MS_BIND | MsFlags::MS_REC
                } else {
                    MsFlags::MS_BIND
                };
                let r = nix::mount::mount(Some(path), target, None::<&str>, flags, None::<&str>);
                (path, r)
            }
            BindSource::Tree { path, tree } => (path, move_tree(tree, target)),
        };
        placed.map_err(|source| MountError::Mount {
            what: format!("bind of {}", path.display()),
            dest: dest.to_path_buf(),
            source,
        })
    }
}

/// A bind onto a target below the rootfs, through [`with_target`], then the
/// remount for its flags on the new mount.
fn bind_in_root(
    root: &RootDir,
    source: BindSource<'_>,
    dest: &Path,
    flags: MsFlags,
) -> Result<(), MountError> {
    with_target(root, dest, |target| source.place(target, dest))?;
    let extra = flags - MsFlags::MS_BIND - MsFlags::MS_REC - MsFlags::MS_REMOUNT;
    if !extra.is_empty() {
        with_target(root, dest, |target| remount_bind(target, extra)).map_err(|e| match e {
            MountError::Remount { source, .. } => MountError::Remount {
                dest: dest.to_path_buf(),
                source,
            },
            e => e,
        })?;
    }
    Ok(())
}

/// [`apply_propagation`] on a mount point below the rootfs, through [`with_target`].
fn propagation_in_root(root: &RootDir, dest: &Path, changes: &[MsFlags]) -> Result<(), MountError> {
    if changes.is_empty() {
        return Ok(());
    }
    with_target(root, dest, |target| apply_propagation(target, changes)).map_err(|e| match e {
        MountError::Propagation { source, .. } => MountError::Propagation {
            dest: dest.to_path_buf(),
            source,
        },
        e => e,
    })
}

/// Bind `source` on `dest`, then remount with `flags` when a bind alone cannot
/// set them (mount(2) ignores most flags on MS_BIND).
pub fn bind_path(
    source: &Path,
    dest: &Path,
    recursive: bool,
    flags: MsFlags,
) -> Result<(), MountError> {
    let mut bind = MsFlags::MS_BIND;
    if recursive {
        bind |= MsFlags::MS_REC;
    }
    nix::mount::mount(Some(source), dest, None::<&str>, bind, None::<&str>).map_err(|e| {
        MountError::Mount {
            what: format!("bind of {}", source.display()),
            dest: dest.to_path_buf(),
            source: e,
        }
    })?;
    let extra = flags - MsFlags::MS_BIND - MsFlags::MS_REC - MsFlags::MS_REMOUNT;
    if !extra.is_empty() {
        remount_bind(dest, extra)?;
    }
    Ok(())
}

/// Remount a bind mount with `flags`. In a user namespace the flags the source
/// mount had (nosuid, nodev, noexec, ro, atime) are locked: when the kernel
/// refuses, retry keeping them, as the kernel demands.
pub fn remount_bind(dest: &Path, flags: MsFlags) -> Result<(), MountError> {
    let base = MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
    match nix::mount::mount(None::<&str>, dest, None::<&str>, base | flags, None::<&str>) {
        Ok(()) => Ok(()),
        Err(Errno::EPERM) => {
            let locked = current_flags(dest);
            nix::mount::mount(
                None::<&str>,
                dest,
                None::<&str>,
                base | flags | locked,
                None::<&str>,
            )
            .map_err(|source| MountError::Remount {
                dest: dest.to_path_buf(),
                source,
            })
        }
        Err(source) => Err(MountError::Remount {
            dest: dest.to_path_buf(),
            source,
        }),
    }
}

/// The mount flags a mount point has now, as mount(2) flags.
fn current_flags(path: &Path) -> MsFlags {
    let Ok(st) = nix::sys::statvfs::statvfs(path) else {
        return MsFlags::empty();
    };
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (st_flag, ms_flag) in [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(st_flag) {
            out |= ms_flag;
        }
    }
    out
}

/// Apply propagation changes (private, rslave, ...) to a mount point.
pub fn apply_propagation(dest: &Path, changes: &[MsFlags]) -> Result<(), MountError> {
    for flags in changes {
        nix::mount::mount(None::<&str>, dest, None::<&str>, *flags, None::<&str>).map_err(
            |source| MountError::Propagation {
                dest: dest.to_path_buf(),
                source,
            },
        )?;
    }
    Ok(())
}

/// One line of /proc/self/mountinfo, the fields berth uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// The path inside its filesystem that is mounted ("/" for a full mount).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub super_options: String,
}

/// Parse /proc/self/mountinfo.
pub fn mountinfo() -> Result<Vec<MountInfo>, MountError> {
    let path = Path::new("/proc/self/mountinfo");
    let text = fs::read_to_string(path).map_err(|source| MountError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(parse_mountinfo(&text))
}

fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let root = unescape(left.split(' ').nth(3)?);
            let mount_point = unescape(left.split(' ').nth(4)?);
            let mut r = right.split(' ');
            let fs_type = r.next()?.to_string();
            let _source = r.next();
            let super_options = r.next().unwrap_or("").to_string();
            Some(MountInfo {
                root: PathBuf::from(root),
                mount_point: PathBuf::from(mount_point),
                fs_type,
                super_options,
            })
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let n = u32::from(b[i + 1] - b'0') * 64
                + u32::from(b[i + 2] - b'0') * 8
                + u32::from(b[i + 3] - b'0');
            out.push(u8::try_from(n).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount point (from mountinfo) that holds `path`: the longest prefix.
pub fn mount_point_of<'a>(mounts: &'a [MountInfo], path: &Path) -> Option<&'a MountInfo> {
    mounts
        .iter()
        .filter(|m| path.starts_with(&m.mount_point))
        .max_by_key(|m| m.mount_point.as_os_str().len())
}

/// Mount the container's cgroups at `dest`.
///
/// cgroup v2 host: a fresh cgroup2 mount when the container has its own cgroup
/// namespace (the kernel then shows the container's cgroup as the root), else a
/// bind of the container's cgroup directory.
///
/// cgroup v1 (or hybrid) host: a tmpfs with one bind per hierarchy of the
/// container's own cgroup directory, named like the host's mount points
/// (`memory`, `cpu`, `unified` ...), plus symlinks for co-mounted controllers
/// (`cpu,cpuacct` → `cpu`, `cpuacct`). Binds work with or without a user
/// namespace, which a fresh v1 mount does not, and show only the container's
/// own cgroup. The flags (ro by default in Docker's spec) apply to every piece.
fn mount_cgroup(
    ctx: &MountContext<'_>,
    opts: &MountOptions,
    dest: &Path,
) -> Result<(), MountError> {
    ensure_dir_in_root(ctx.root, dest)?;
    let flags = opts.flags - MsFlags::MS_REMOUNT - MsFlags::MS_BIND - MsFlags::MS_REC;
    if ctx.host_cgroup2 {
        if ctx.new_cgroupns {
            with_target(ctx.root, dest, |target| {
                nix::mount::mount(
                    Some("cgroup2"),
                    target,
                    Some("cgroup2"),
                    flags,
                    None::<&str>,
                )
                .map_err(|source| MountError::Mount {
                    what: "cgroup2".into(),
                    dest: dest.to_path_buf(),
                    source,
                })
            })?;
        } else if let Some(path) = ctx.cgroup_paths.values().next() {
            bind_in_root(
                ctx.root,
                BindSource::of(path, ctx.cgroup_trees),
                dest,
                flags,
            )?;
        }
        return propagation_in_root(ctx.root, dest, &opts.propagation);
    }

    let tmpfs_flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    with_target(ctx.root, dest, |target| {
        nix::mount::mount(
            Some("tmpfs"),
            target,
            Some("tmpfs"),
            tmpfs_flags,
            Some("mode=755"),
        )
        .map_err(|source| MountError::Mount {
            what: "tmpfs for cgroups".into(),
            dest: dest.to_path_buf(),
            source,
        })
    })?;
    // The tmpfs just mounted is ours alone (a new filesystem in our own mount
    // namespace, which nothing else can reach): names in it cannot be swapped,
    // so its mount points are made and used from its root fd directly.
    let tmpfs = open_target(ctx.root, dest)?;
    let tmpfs = std::os::fd::AsFd::as_fd(&tmpfs);
    // Read only if a hierarchy is missing from what the runtime passed.
    let mut mounts: Option<Vec<MountInfo>> = None;
    // Co-mounted controllers (cpu and cpuacct in one hierarchy) share a path.
    let mut done: Vec<&PathBuf> = Vec::new();
    for (controller, path) in ctx.cgroup_paths {
        if done.contains(&path) {
            continue;
        }
        done.push(path);
        let hier = match ctx.cgroup_mounts.get(controller) {
            Some(m) => m.clone(),
            None => {
                if mounts.is_none() {
                    mounts = Some(mountinfo()?);
                }
                let Some(m) = mounts
                    .as_deref()
                    .and_then(|all| mount_point_of(all, path))
                    .filter(|m| m.fs_type == "cgroup" || m.fs_type == "cgroup2")
                else {
                    continue;
                };
                m.mount_point.clone()
            }
        };
        let Some(name) = hier.file_name() else {
            continue;
        };
        let sub = dest.join(name);
        bind_in_tmpfs(
            tmpfs,
            name,
            BindSource::of(path, ctx.cgroup_trees),
            &sub,
            flags | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        )?;
        let name = name.to_string_lossy();
        if name.contains(',') {
            for part in name.split(',') {
                let link = dest.join(part);
                if !link.exists() {
                    std::os::unix::fs::symlink(name.as_ref(), &link).map_err(|source| {
                        MountError::CreateTarget {
                            path: link.clone(),
                            source,
                        }
                    })?;
                }
            }
        }
    }
    if flags.contains(MsFlags::MS_RDONLY) {
        with_target(ctx.root, dest, |target| {
            nix::mount::mount(
                None::<&str>,
                target,
                None::<&str>,
                MsFlags::MS_REMOUNT | tmpfs_flags | MsFlags::MS_RDONLY,
                Some("mode=755"),
            )
            .map_err(|source| MountError::Remount {
                dest: dest.to_path_buf(),
                source,
            })
        })?;
    }
    propagation_in_root(ctx.root, dest, &opts.propagation)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> MountOptions {
        let v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        parse_options(&v, Path::new("/x")).unwrap()
    }

    #[test]
    fn options_split_into_flags_data_and_propagation() {
        let o = opts(&[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ]);
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC);
        assert_eq!(
            o.data_string().unwrap(),
            "newinstance,ptmxmode=0666,mode=0620,gid=5"
        );
        let o = opts(&["rbind", "ro", "rprivate"]);
        assert!(o.bind && o.recursive);
        assert!(o.flags.contains(MsFlags::MS_RDONLY));
        assert!(o.needs_remount());
        assert_eq!(o.propagation, vec![MsFlags::MS_PRIVATE | MsFlags::MS_REC]);
        let o = opts(&["ro", "rw"]);
        assert!(!o.flags.contains(MsFlags::MS_RDONLY));
        let o = opts(&["bind"]);
        assert!(!o.needs_remount());
        assert!(parse_options(&["idmap".to_string()], Path::new("/x")).is_err());
    }

    #[test]
    fn resolution_stays_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        fs::create_dir_all(root.join("a/b")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("a/abs")).unwrap();
        std::os::unix::fs::symlink("../../../../..", root.join("a/up")).unwrap();
        std::os::unix::fs::symlink("b", root.join("a/rel")).unwrap();
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        assert_eq!(
            resolve_in_root(root, Path::new("/a/abs/x")).unwrap(),
            root.join("etc/x")
        );
        assert_eq!(
            resolve_in_root(root, Path::new("/a/up/etc")).unwrap(),
            root.join("etc")
        );
        assert_eq!(
            resolve_in_root(root, Path::new("/a/rel/c")).unwrap(),
            root.join("a/b/c")
        );
        assert_eq!(
            resolve_in_root(root, Path::new("/../../x")).unwrap(),
            root.join("x")
        );
        assert!(matches!(
            resolve_in_root(root, Path::new("/loop")),
            Err(MountError::SymlinkLoop(_))
        ));
    }

    /// A symlink to a host directory inside the path: what is created stays in
    /// the root (the link is resolved as the container would see it).
    #[test]
    fn creation_stays_inside_the_root() {
        let host = tempfile::tempdir().unwrap();
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::os::unix::fs::symlink(host.path(), root.join("link")).unwrap();
        let inside = root.join(host.path().strip_prefix("/").unwrap());
        fs::create_dir_all(&inside).unwrap();
        // Not resolved first (what a swap after resolution amounts to).
        let dir = RootDir::open(root).unwrap();
        ensure_dir_in_root(&dir, &root.join("link/x/y")).unwrap();
        ensure_file_in_root(&dir, &root.join("link/f")).unwrap();
        assert_eq!(fs::read_dir(host.path()).unwrap().count(), 0);
        assert!(inside.join("x/y").is_dir());
        assert!(inside.join("f").is_file());
        assert!(matches!(
            ensure_dir_in_root(&dir, Path::new("/elsewhere/x")),
            Err(MountError::OutsideRoot(_))
        ));
    }

    /// CVE-2021-30465: a component swapped for a symlink after the target was
    /// resolved makes the mount fail instead of landing elsewhere.
    #[test]
    fn a_target_swapped_after_resolution_is_refused() {
        let host = tempfile::tempdir().unwrap();
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        fs::create_dir_all(root.join("vol/data")).unwrap();
        let dest = resolve_in_root(root, Path::new("/vol/data")).unwrap();
        let dir = RootDir::open(root).unwrap();
        let seen = with_target(&dir, &dest, |p| Ok(fs::read_link(p).unwrap())).unwrap();
        assert_eq!(seen, dest);

        fs::rename(root.join("vol"), root.join("vol.old")).unwrap();
        std::os::unix::fs::symlink(host.path(), root.join("vol")).unwrap();
        fs::create_dir_all(host.path().join("data")).unwrap();
        // The same path inside the root, so that the open itself succeeds.
        fs::create_dir_all(
            root.join(host.path().strip_prefix("/").unwrap())
                .join("data"),
        )
        .unwrap();
        let mut called = false;
        let r = with_target(&dir, &dest, |_| {
            called = true;
            Ok(())
        });
        assert!(matches!(r, Err(MountError::TargetMoved { .. })), "{r:?}");
        assert!(!called);

        // A final component swapped for a symlink is refused too.
        fs::remove_file(root.join("vol")).unwrap();
        fs::create_dir(root.join("vol")).unwrap();
        std::os::unix::fs::symlink(host.path(), root.join("vol/data")).unwrap();
        let r = with_target(&dir, &dest, |_| Ok(()));
        assert!(r.is_err(), "{r:?}");
    }

    #[test]
    fn mountinfo_lines_parse() {
        let text = "22 27 0:21 / /proc rw,relatime - proc proc rw\n\
                    40 23 0:35 / /sys/fs/cgroup/cpu rw,relatime shared:9 - cgroup cgroup rw,cpu\n\
                    41 23 0:36 / /with\\040space rw - tmpfs tmpfs rw\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 3);
        assert_eq!(m[1].mount_point, PathBuf::from("/sys/fs/cgroup/cpu"));
        assert_eq!(m[1].fs_type, "cgroup");
        assert_eq!(m[1].super_options, "rw,cpu");
        assert_eq!(m[2].mount_point, PathBuf::from("/with space"));
        let found = mount_point_of(&m, Path::new("/sys/fs/cgroup/cpu/berth/x")).unwrap();
        assert_eq!(found.mount_point, PathBuf::from("/sys/fs/cgroup/cpu"));
    }

    #[test]
    fn proc_targets_are_limited() {
        let r = Path::new("/r");
        assert!(check_proc_target(r, Path::new("/r/proc"), "proc").is_ok());
        assert!(check_proc_target(r, Path::new("/r/proc"), "tmpfs").is_err());
        assert!(check_proc_target(r, Path::new("/r/proc/meminfo"), "bind").is_ok());
        assert!(
            check_proc_target(r, Path::new("/r/proc/sys/kernel/core_pattern"), "bind").is_err()
        );
        assert!(check_proc_target(r, Path::new("/r/sys"), "sysfs").is_ok());
    }
}
