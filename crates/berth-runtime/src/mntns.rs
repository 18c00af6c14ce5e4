//! Containers' mount namespaces made from a small template instead of from the
//! host's.
//!
//! A new mount namespace starts as a copy of its creator's: every host mount is
//! copied at the clone, made slave or private, detached with the old root after
//! the pivot, and torn down again when the container's last process exits. On a
//! host with thousands of mounts (a Kubernetes node, or any host running many
//! containers) that is most of a container start: with 2500 extra host mounts a
//! `run --rm` cost 6.6 ms more here, almost all of it in the kernel copying and
//! freeing mounts the container never sees.
//!
//! So when asked to (the [`ENV`] switch, set by berth's manager for the shims
//! it starts), the runtime keeps a template mount namespace under its state
//! root, `<root>/@mntns/template`, made once: a read-only tmpfs as its root with
//! an empty `rootfs` directory and a proc mount (the init resolves its own fds
//! through /proc/self while it builds the rootfs). The init clones what it will
//! need from the host while it still sees the host (the rootfs, the spec's bind
//! sources, its cgroup directories; detached trees, `open_tree`), then enters
//! the template, unshares a private copy of it (two mounts), attaches the
//! rootfs at `/rootfs` and goes on as usual from there.
//!
//! Only containers whose setup reads nothing else of the host by path take this
//! way ([`fits`]); every other one, and every one when the template cannot be
//! made, copies the host's namespace as before. What the container ends up
//! with is the same either way.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::namespaces::Plan;

/// The environment variable that asks for the template ("1"). berth's manager
/// sets it (berth-manager `task/shim.rs`); other callers get the runtime's
/// usual behaviour, and no mount is left under their state root.
pub const ENV: &str = "BERTH_RUNTIME_MNTNS_TEMPLATE";

/// Below the state root; `@` is not allowed in container ids.
const DIR: &str = "@mntns";
const TEMPLATE: &str = "template";
const LOCK: &str = "lock";

/// Where the rootfs is attached inside a copy of the template.
pub const ROOTFS: &str = "/rootfs";

/// `statfs` magic of nsfs (linux/magic.h).
const NSFS_MAGIC: nix::sys::statfs::FsType = nix::sys::statfs::FsType(0x6e73_6673);

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the process making the template failed: {0}")]
    Maker(String),
    #[error("bind the template's namespace onto {path}: {source}")]
    Bind {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
}

/// Whether the caller asked for the template.
pub fn wanted() -> bool {
    std::env::var_os(ENV).is_some_and(|v| v == "1")
}

/// Whether a container's setup can be done in a copy of the template: a mount
/// namespace of its own, no user namespace (a proc or sysfs mount there needs a
/// fully visible one in its namespace, and the host's bind fallbacks need the
/// host's tree), no createContainer hooks (they run by host path before the
/// pivot), private propagation only (shared or slave mounts are about the
/// host's peers, which is the usual way's business), and only mounts whose
/// sources are not host paths, or are binds the runtime clones beforehand.
pub fn fits(spec: &Spec, plan: &Plan) -> bool {
    use LinuxNamespaceType::{Mount, User};
    if !plan.is_new(Mount) || plan.has(User) {
        return false;
    }
    let private = |p: &str| matches!(p, "private" | "rprivate");
    if spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref())
        .is_some_and(|p| !p.is_empty() && !private(p))
    {
        return false;
    }
    let shares = |m: &oci_spec::runtime::Mount| {
        m.options().as_deref().unwrap_or_default().iter().any(|o| {
            matches!(
                o.as_str(),
                "shared" | "rshared" | "slave" | "rslave" | "unbindable" | "runbindable"
            )
        })
    };
    if spec
        .mounts()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(shares)
    {
        return false;
    }
    if spec
        .hooks()
        .as_ref()
        .and_then(|h| h.create_container().as_ref())
        .is_some_and(|l| !l.is_empty())
    {
        return false;
    }
    spec.mounts()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .all(|m| {
            is_bind(m)
                || matches!(
                    m.typ().as_deref().unwrap_or(""),
                    "proc" | "tmpfs" | "devpts" | "sysfs" | "mqueue" | "cgroup" | "cgroup2"
                )
        })
}

/// Whether the spec's mount is a bind (by type or option).
pub fn is_bind(m: &oci_spec::runtime::Mount) -> bool {
    m.typ().as_deref() == Some("bind")
        || m.options()
            .as_ref()
            .is_some_and(|o| o.iter().any(|x| x == "bind" || x == "rbind"))
}

/// The template of the state root `root`, made first if it does not exist
/// yet. Concurrent runtimes serialize on a lock file; the template is made once
/// and kept until it is unmounted (uninstall, or a test's cleanup).
pub fn open_template(root: &Path) -> Result<OwnedFd, TemplateError> {
    let dir = root.join(DIR);
    let path = dir.join(TEMPLATE);
    if is_nsfs(&path) {
        return open(&path);
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(io_err("create", &dir))?;
    let lock_path = dir.join(LOCK);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(&lock_path)
        .map_err(io_err("open", &lock_path))?;
    nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| io_err("lock", &lock_path)(io::Error::from(e)))
        .and_then(|_held| {
            if !is_nsfs(&path) {
                make(&dir, &path)?;
            }
            open(&path)
        })
}

fn open(path: &Path) -> Result<OwnedFd, TemplateError> {
    File::open(path)
        .map(OwnedFd::from)
        .map_err(io_err("open", path))
}

fn is_nsfs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type() == NSFS_MAGIC)
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> TemplateError {
    let path = path.to_path_buf();
    move |source| TemplateError::Io { what, path, source }
}

/// Make the template: a child unshares a mount namespace, builds the small
/// tree in it and waits; we bind its namespace onto `path`, which keeps the
/// namespace after the child is gone.
fn make(dir: &Path, path: &Path) -> Result<(), TemplateError> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(io_err("create", path))?;
    let (ready_r, ready_w) = pipe()?;
    let (hold_r, hold_w) = pipe()?;
    let (ready_r_fd, hold_w_fd) = (ready_r.as_raw_fd(), hold_w.as_raw_fd());
    let child = crate::process::fork_child(c"berth:[TEMPLATE]", || {
        crate::process::close_inherited(ready_r_fd);
        crate::process::close_inherited(hold_w_fd);
        match build(dir) {
            Ok(()) => {
                let mut w = File::from(ready_w);
                let _ = w.write_all(b"1");
                drop(w);
                // Until the runtime has bound our namespace (it closes its end).
                let mut byte = [0u8; 1];
                let _ = File::from(hold_r).read(&mut byte);
                0
            }
            Err(e) => {
                let mut w = File::from(ready_w);
                let _ = w.write_all(format!("0{e}").as_bytes());
                1
            }
        }
    })
    .map_err(|e| TemplateError::Maker(e.to_string()))?;
    let mut said = String::new();
    let _ = File::from(ready_r).read_to_string(&mut said);
    let bound = if said == "1" {
        let ns = PathBuf::from(format!("/proc/{child}/ns/mnt"));
        nix::mount::mount(
            Some(&ns),
            path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|source| TemplateError::Bind {
            path: path.to_path_buf(),
            source,
        })
    } else {
        Err(TemplateError::Maker(
            said.strip_prefix('0')
                .unwrap_or("it exited without a word")
                .to_string(),
        ))
    };
    drop(hold_w);
    let _ = nix::sys::wait::waitpid(child, None);
    if bound.is_err() {
        let _ = fs::remove_file(path);
    }
    bound
}

fn pipe() -> Result<(OwnedFd, OwnedFd), TemplateError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| TemplateError::Io {
        what: "create",
        path: PathBuf::from("a pipe"),
        source: io::Error::from(e),
    })
}

/// In the maker child: a new mount namespace whose whole tree is a read-only
/// tmpfs holding `rootfs` and a proc mount.
fn build(dir: &Path) -> Result<(), String> {
    let step = |what: &'static str| move |e: nix::Error| format!("{what}: {e}");
    nix::sched::unshare(CloneFlags::CLONE_NEWNS).map_err(step("unshare a mount namespace"))?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(step("make the tree private"))?;
    // Mounted over our own copy of the state directory: nobody else sees it.
    nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=755,size=64k"),
    )
    .map_err(step("mount the template's tmpfs"))?;
    for d in ["rootfs", "proc"] {
        fs::DirBuilder::new()
            .mode(0o755)
            .create(dir.join(d))
            .map_err(|e| format!("create {d}: {e}"))?;
    }
    // The same pivot as a container's: the old root (our copy of the host's
    // tree) is detached, the tmpfs is all that is left.
    crate::rootfs::pivot(dir, false).map_err(|e| e.to_string())?;
    nix::mount::mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(step("mount proc"))?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REMOUNT
            | MsFlags::MS_BIND
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(step("make the root read-only"))?;
    Ok(())
}

/// In the init, still in the host's mount namespace: enter the template, make
/// a private copy of it and attach `rootfs` (a tree cloned from the host) at
/// [`ROOTFS`]. An error before the copy leaves the init where it was.
pub fn enter(template: &OwnedFd, rootfs: &OwnedFd) -> Result<(), EnterError> {
    nix::sched::setns(template, CloneFlags::CLONE_NEWNS).map_err(EnterError::Join)?;
    nix::sched::unshare(CloneFlags::CLONE_NEWNS).map_err(EnterError::Copy)?;
    crate::mounts::move_tree(rootfs.as_raw_fd(), Path::new(ROOTFS)).map_err(EnterError::Attach)
}

#[derive(Debug, thiserror::Error)]
pub enum EnterError {
    #[error("enter the template mount namespace: {0}")]
    Join(#[source] nix::Error),
    #[error("copy the template mount namespace: {0}")]
    Copy(#[source] nix::Error),
    #[error("attach the rootfs at {ROOTFS}: {0}")]
    Attach(#[source] nix::Error),
}

impl EnterError {
    /// Whether the init is still in the host's namespace (it may go on the
    /// usual way) rather than somewhere between.
    pub fn still_on_host(&self) -> bool {
        matches!(self, EnterError::Join(_))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn fits_json(edit: impl FnOnce(&mut serde_json::Value)) -> bool {
        let mut v = serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
                {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup"},
                {"destination": "/etc/hosts", "type": "bind", "source": "/etc/hosts",
                 "options": ["rbind", "rprivate"]}
            ],
            "linux": {"namespaces": [{"type": "mount"}, {"type": "pid"}, {"type": "network"}]}
        });
        edit(&mut v);
        let spec: Spec = serde_json::from_value(v).unwrap();
        let plan = Plan::from_spec(
            spec.linux()
                .as_ref()
                .and_then(|l| l.namespaces().as_deref())
                .unwrap_or_default(),
        )
        .unwrap();
        fits(&spec, &plan)
    }

    #[test]
    fn what_docker_asks_for_fits() {
        assert!(fits_json(|_| {}));
        assert!(fits_json(
            |v| v["linux"]["rootfsPropagation"] = "rprivate".into()
        ));
        // Joining other namespaces by path is done before the template.
        assert!(fits_json(
            |v| v["linux"]["namespaces"][2]["path"] = "/proc/self/ns/net".into()
        ));
    }

    #[test]
    fn what_needs_the_hosts_tree_does_not() {
        type Edit = fn(&mut serde_json::Value);
        let cases: [(&str, Edit); 7] = [
            ("a user namespace", |v| {
                v["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(serde_json::json!({"type": "user"}))
            }),
            ("a joined mount namespace", |v| {
                v["linux"]["namespaces"][0]["path"] = "/proc/self/ns/mnt".into()
            }),
            ("no mount namespace", |v| {
                v["linux"]["namespaces"].as_array_mut().unwrap().remove(0);
            }),
            (
                "createContainer hooks",
                |v| v["hooks"] = serde_json::json!({"createContainer": [{"path": "/bin/true"}]}),
            ),
            ("slave rootfs propagation", |v| {
                v["linux"]["rootfsPropagation"] = "rslave".into()
            }),
            ("a shared bind", |v| {
                v["mounts"][3]["options"] = serde_json::json!(["rbind", "rshared"])
            }),
            ("an overlay mount with host paths", |v| {
                v["mounts"].as_array_mut().unwrap().push(serde_json::json!({
                    "destination": "/x", "type": "overlay", "source": "overlay",
                    "options": ["lowerdir=/a"]
                }))
            }),
        ];
        for (what, edit) in cases {
            assert!(!fits_json(edit), "{what} fits");
        }
    }
}
