//! The root a copy (`docker cp`) walks when the container does not run: its snapshot
//! (overlay of the image's layers and its own upper layer) with its volumes and bind
//! mounts on top, as dockerd mounts them for a copy, so that files can be read from
//! an exited container and put into a created one.
//!
//! The mounts are made in a mount namespace of their own, from a short-lived thread
//! that unshares it: nothing is mounted in berthd's namespace, and no other process
//! sees them. The namespace stays alive while its fd is held ([`DetachedRoot`]);
//! when it is dropped the kernel takes the mounts down, and the empty mount point
//! directory is removed.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{mkdirat, Mode};

use crate::engine::Engine;
use crate::error::EngineError;
use crate::manager::SnapshotInfo;
use crate::spec::{self, mounts::UserMount};
use crate::store::ContainerRecord;

/// A container's root mounted for a copy; the mounts live as long as this.
#[derive(Debug)]
pub struct DetachedRoot {
    pub root: OwnedFd,
    ns: Option<OwnedFd>,
    dir: PathBuf,
}

impl Drop for DetachedRoot {
    fn drop(&mut self) {
        // Closing the namespace's last fd takes its mounts down; then the mount
        // point is an empty directory again.
        self.ns.take();
        if let Err(e) = std::fs::remove_dir(&self.dir) {
            tracing::debug!(dir = %self.dir.display(), error = %e, "copy mount point left");
        }
    }
}

fn io_err(context: impl Into<String>, e: Errno) -> EngineError {
    EngineError::io(context, std::io::Error::from(e))
}

/// The bind and volume mounts of the container (tmpfs ones are empty anyway).
fn user_mounts(engine: &Engine, rec: &ContainerRecord) -> Vec<UserMount> {
    struct Peek<'a>(&'a crate::engine::LocalVolumes);
    impl spec::VolumeResolver for Peek<'_> {
        fn resolve(&self, name: &str) -> Result<PathBuf, spec::SpecError> {
            Ok(self.0.root.join(name).join("_data"))
        }
    }
    let vols = engine.volumes();
    let mut out = vec![];
    for b in rec.host_config.binds.iter().flatten() {
        if let Ok(m) = spec::mounts::parse_bind(b, &Peek(&vols)) {
            out.push(m);
        }
    }
    for m in rec.host_config.mounts.iter().flatten() {
        if let Ok(m) = spec::mounts::parse_mount(m, &Peek(&vols)) {
            if m.kind != "tmpfs" {
                out.push(m);
            }
        }
    }
    out
}

/// Mounts the stopped container's files for a copy.
pub async fn mount_stopped(
    engine: &Engine,
    rec: &ContainerRecord,
) -> Result<DetachedRoot, EngineError> {
    let info = engine.manager.snapshots_info(&rec.snapshot_key).await?;
    let mounts = user_mounts(engine, rec);
    let base = engine.config.exec_root.join("cp");
    std::fs::create_dir_all(&base)
        .map_err(|e| EngineError::io(format!("creating {}", base.display()), e))?;
    let dir = base.join(format!(
        "{}-{}",
        crate::store::short_id(&rec.id),
        crate::fsutil::random_id()
            .map_err(|e| EngineError::io("reading /dev/urandom", e))?
            .get(..8)
            .unwrap_or("0")
    ));
    std::fs::create_dir(&dir)
        .map_err(|e| EngineError::io(format!("creating {}", dir.display()), e))?;
    let mut guard = DetachedRoot {
        root: nix::fcntl::open(
            &dir,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err(format!("opening {}", dir.display()), e))?,
        ns: None,
        dir: dir.clone(),
    };
    let id = rec.id.clone();
    // A thread of its own: unsharing the mount namespace changes only the calling
    // thread, and this one ends right after (never a pooled thread).
    let (root, ns) = std::thread::spawn(move || mount_in_new_ns(&info, &mounts, &dir))
        .join()
        .map_err(|_| {
            EngineError::io(
                format!("mounting container {id} for a copy"),
                std::io::Error::other("the mounting thread panicked"),
            )
        })?
        .map_err(|e| EngineError::io(format!("mounting container {id} for a copy"), e))?;
    guard.root = root;
    guard.ns = Some(ns);
    Ok(guard)
}

fn mount_in_new_ns(
    info: &SnapshotInfo,
    mounts: &[UserMount],
    dir: &Path,
) -> std::io::Result<(OwnedFd, OwnedFd)> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
    // Nothing below goes back to berthd's namespace.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )?;
    let lower = info.lower_dir.trim_matches(':');
    if lower.is_empty() {
        mount(
            Some(info.upper_dir.as_str()),
            dir,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )?;
    } else if info.upper_dir.is_empty() {
        mount(
            Some("overlay"),
            dir,
            Some("overlay"),
            MsFlags::MS_RDONLY,
            Some(format!("lowerdir={lower}").as_str()),
        )?;
    } else {
        mount(
            Some("overlay"),
            dir,
            Some("overlay"),
            MsFlags::empty(),
            Some(
                format!(
                    "lowerdir={lower},upperdir={},workdir={}",
                    info.upper_dir, info.work_dir
                )
                .as_str(),
            ),
        )?;
    }
    let root = nix::fcntl::open(
        dir,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    for m in mounts {
        let target = mkdir_in_root(root.as_fd(), &m.destination, m.source.is_dir())?;
        let at = format!("/proc/thread-self/fd/{}", target.as_raw_fd());
        mount(
            Some(&m.source),
            at.as_str(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )?;
        if m.read_only {
            mount(
                None::<&str>,
                at.as_str(),
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None::<&str>,
            )?;
        }
    }
    // Reopened after the mounts so that a volume on `/` itself would show.
    let root = nix::fcntl::open(
        dir,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let ns = nix::fcntl::open(
        "/proc/thread-self/ns/mnt",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    Ok((root, ns))
}

/// Opens (making what is missing) `dest` inside `root`, every step resolved inside
/// it, so that a symlink in the container cannot send a mount outside.
fn mkdir_in_root(root: BorrowedFd<'_>, dest: &str, dir: bool) -> std::io::Result<OwnedFd> {
    let how = || {
        OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS)
    };
    let parts: Vec<&std::ffi::OsStr> = Path::new(dest)
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    let mut sofar = PathBuf::from(".");
    for (i, part) in parts.iter().enumerate() {
        let parent = openat2(root, &sofar, how())?;
        sofar.push(part);
        match openat2(root, &sofar, how()) {
            Ok(_) => {}
            Err(Errno::ENOENT) => {
                let last = i + 1 == parts.len();
                if last && !dir {
                    let f = nix::fcntl::openat(
                        parent.as_fd(),
                        *part,
                        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                        Mode::from_bits_truncate(0o644),
                    )?;
                    drop(f);
                } else {
                    mkdirat(parent.as_fd(), *part, Mode::from_bits_truncate(0o755))?;
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(openat2(root, &sofar, how())?)
}
