//! A container's cgroup, on cgroup v1, hybrid or v2 hosts, behind one manager.
//!
//! Its job: resolve the OCI spec's `linux.cgroupsPath` on the host's layout,
//! create the cgroup in every hierarchy, write the spec's resource limits the way
//! the kernel wants them, move processes in, freeze and thaw, list pids, report
//! usage in runc's `events --stats` shape, count OOM kills, and remove the cgroup.
//! The directories it uses are recorded in state.json (`cgroup_paths`, as runc's:
//! controller → directory, "" for the unified one) and [`CgroupManager::from_paths`]
//! rebuilds the manager from them.
//!
//! It must never:
//! - mount or unmount a hierarchy: it works with the layout the host has;
//! - talk to systemd: `slice:prefix:name` paths (`--systemd-cgroup`) are mapped
//!   onto cgroupfs as `/<slice>/<prefix>-<name>.scope`, and systemd knows nothing
//!   of the cgroup (no unit, no transient scope, no delegation);
//! - remove anything but the container's own cgroup and its children (never an
//!   ancestor such as `/berth`, even an empty one);
//! - kill processes: removing a cgroup that still has some fails with EBUSY, and
//!   the runtime decides what to kill;
//! - create anything in [`CgroupManager::new`]: only [`CgroupManager::create`] does;
//! - start threads or fork (the runtime calls it between clone and exec).
//!
//! Device rules (`linux.resources.devices`) are enforced on every layout: by the
//! devices controller on v1, and by an eBPF device program attached to the
//! container's cgroup2 directory on v2 ([`device_filter`], [`bpf`]). A hybrid
//! host gets the v1 rules only, as with runc and crun: every process of the
//! container is in the v1 devices hierarchy too, which enforces them.
//!
//! Debug notes (things skipped on purpose) go through the `log` facade.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

pub mod bpf;
pub mod device_filter;
mod files;
pub mod layout;
pub mod path;
pub mod resources;
pub mod stats;
pub mod v1;
pub mod v2;

pub use files::{FsError, OsError};
pub use layout::{Layout, LayoutError};
pub use path::PathError;
pub use resources::ResourceError;
pub use stats::Stats;

/// What went wrong with a container's cgroup.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(transparent)]
    Path(#[from] PathError),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(transparent)]
    Resource(#[from] ResourceError),
    #[error(transparent)]
    Bpf(#[from] bpf::BpfError),
    #[error("no cgroup paths were recorded for this container")]
    NoPaths,
    #[error("invalid recorded cgroup path {}: it must be absolute, without \"..\"", path.display())]
    BadRecordedPath { path: PathBuf },
    #[error("cannot apply {what}: the {controller} cgroup controller is not mounted")]
    NotMounted {
        controller: &'static str,
        what: &'static str,
    },
    #[error(
        "cannot write {file} in {}: the {controller} controller is not enabled for this cgroup",
        dir.display()
    )]
    NotEnabled {
        controller: String,
        file: String,
        dir: PathBuf,
    },
    #[error("could not freeze the cgroup: {} still says {state:?}; it was thawed again", path.display())]
    FreezeFailed { path: PathBuf, state: String },
    #[error("the cgroup {} does not exist", path.display())]
    Missing { path: PathBuf },
}

/// Compile device rules into an eBPF program and attach it to the cgroup2
/// directory `dir`, replacing the program of an earlier call.
pub(crate) fn attach_device_filter(
    dir: &Path,
    rules: &[oci_spec::runtime::LinuxDeviceCgroup],
) -> Result<(), CgroupError> {
    let prog = device_filter::compile(rules)?;
    let fd = bpf::load_device_program(&prog)?;
    bpf::replace_device_program(dir, std::os::fd::AsFd::as_fd(&fd))?;
    Ok(())
}

/// Which hierarchy layout the manager drives. A hybrid host is V1 (limits go to
/// the v1 hierarchies; the cgroup2 one only holds the process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Backend {
    V1(v1::V1Cgroup),
    V2(v2::V2Cgroup),
}

/// One container's cgroup, on whatever layout the host has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupManager {
    backend: Backend,
}

impl CgroupManager {
    /// Resolve the spec's `cgroupsPath` (None: `/berth/<id>`) on this host's
    /// layout. Absolute and relative paths both hang off the hierarchy root; with
    /// `systemd`, `slice:prefix:name` maps to `/<slice>/<prefix>-<name>.scope`
    /// (None: `system.slice:berth:<id>`). Paths with `..` are refused. Creates
    /// nothing.
    pub fn new(cgroups_path: Option<&Path>, id: &str, systemd: bool) -> Result<Self, CgroupError> {
        Self::with_layout(&Layout::detect()?, cgroups_path, id, systemd)
    }

    /// Like [`CgroupManager::new`] on a given layout (a v2 root other than
    /// /sys/fs/cgroup, or a test tree).
    pub fn with_layout(
        layout: &Layout,
        cgroups_path: Option<&Path>,
        id: &str,
        systemd: bool,
    ) -> Result<Self, CgroupError> {
        let relative = path::resolve(cgroups_path, id, systemd)?;
        let backend = match layout {
            Layout::V1 {
                hierarchies,
                unified,
            } => Backend::V1(v1::V1Cgroup::new(
                hierarchies,
                unified.as_deref(),
                &relative,
            )),
            Layout::V2 { root } => Backend::V2(v2::V2Cgroup::new(root, &relative)),
        };
        Ok(CgroupManager { backend })
    }

    /// Rebuild from what [`CgroupManager::paths`] returned (state.json's
    /// `cgroup_paths`). Only the key "" means a v2 host; "" beside controllers
    /// is the cgroup2 directory of a hybrid one.
    pub fn from_paths(paths: &BTreeMap<String, PathBuf>) -> Result<Self, CgroupError> {
        if paths.is_empty() {
            return Err(CgroupError::NoPaths);
        }
        for p in paths.values() {
            let dotdot = p.components().any(|c| c == std::path::Component::ParentDir);
            if !p.is_absolute() || dotdot {
                return Err(CgroupError::BadRecordedPath { path: p.clone() });
            }
        }
        let backend = match paths.get("") {
            Some(dir) if paths.len() == 1 => Backend::V2(v2::V2Cgroup::from_dir(dir)),
            _ => Backend::V1(v1::V1Cgroup::from_dirs(paths)),
        };
        Ok(CgroupManager { backend })
    }

    pub fn version(&self) -> CgroupVersion {
        match self.backend {
            Backend::V1(_) => CgroupVersion::V1,
            Backend::V2(_) => CgroupVersion::V2,
        }
    }

    /// Controller → directory ("" for the unified hierarchy), as runc records them.
    pub fn paths(&self) -> BTreeMap<String, PathBuf> {
        match &self.backend {
            Backend::V1(c) => c.paths(),
            Backend::V2(c) => BTreeMap::from([(String::new(), c.dir().to_path_buf())]),
        }
    }

    /// Create the cgroup (`mkdir -p`) in every hierarchy, making it usable: on v1
    /// new cpuset levels get their parent's CPUs and memory nodes; on v2 the
    /// ancestors enable the controllers the container needs.
    pub fn create(&self) -> Result<(), CgroupError> {
        match &self.backend {
            Backend::V1(c) => c.create(),
            Backend::V2(c) => c.create(),
        }
    }

    /// Write the limits `r` sets; what it leaves unset is not touched, so
    /// `update` passes only what changes. A spec that fails validation writes
    /// nothing.
    pub fn apply(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        match &self.backend {
            Backend::V1(c) => c.apply(r),
            Backend::V2(c) => c.apply(r),
        }
    }

    /// Move the process `pid` (all its threads) into the cgroup.
    pub fn add_task(&self, pid: i32) -> Result<(), CgroupError> {
        match &self.backend {
            Backend::V1(c) => c.add_task(pid),
            Backend::V2(c) => c.add_task(pid),
        }
    }

    /// The cgroup2 directory (v2, or the unified one of a hybrid layout) that a
    /// new process can be cloned straight into with clone3(CLONE_INTO_CGROUP),
    /// which avoids the cost of migrating it afterwards.
    pub fn clone_into_dir(&self) -> Option<&Path> {
        match &self.backend {
            Backend::V1(c) => c.unified_dir(),
            Backend::V2(c) => Some(c.dir()),
        }
    }

    /// The files through which a single-threaded process joins the v1
    /// hierarchies itself, by writing "0" to each (empty on cgroup v2).
    ///
    /// Why: moving *another* process (any write of a pid to `cgroup.procs` or
    /// `tasks`) takes the kernel's global threadgroup rwsem for writing, which
    /// waits for an RCU grace period: 13-20 ms on every container start here.
    /// A thread moving itself ("0" to `tasks`) skips that lock, and on cgroup2
    /// clone3(CLONE_INTO_CGROUP) (`clone_into_dir`) avoids the move altogether.
    pub fn self_join_files(&self) -> Vec<PathBuf> {
        match &self.backend {
            Backend::V1(c) => c.self_join_files(),
            Backend::V2(_) => Vec::new(),
        }
    }

    /// Put `pid` in the cgroup2 directory only (`clone_into_dir`), for a process
    /// that joins the v1 hierarchies itself but could not be cloned into it.
    pub fn join_cgroup2(&self, pid: i32) -> Result<(), CgroupError> {
        match self.clone_into_dir() {
            Some(dir) => Ok(files::write(dir, "cgroup.procs", &pid.to_string())?),
            None => Ok(()),
        }
    }

    /// Remove the cgroup and its children from every hierarchy; a cgroup already
    /// gone is removed. Fails (after retrying briefly) while processes remain.
    pub fn remove(&self) -> Result<(), CgroupError> {
        match &self.backend {
            Backend::V1(c) => c.remove(),
            Backend::V2(c) => c.remove(),
        }
    }

    /// Whether the cgroup still exists in any of its hierarchies.
    pub fn exists(&self) -> bool {
        self.paths().values().any(|d| d.is_dir())
    }

    /// Freeze every process in the cgroup; returns once they are frozen.
    pub fn freeze(&self) -> Result<(), CgroupError> {
        match &self.backend {
            Backend::V1(c) => c.freeze(),
            Backend::V2(c) => c.freeze(),
        }
    }

    pub fn thaw(&self) -> Result<(), CgroupError> {
        match &self.backend {
            Backend::V1(c) => c.thaw(),
            Backend::V2(c) => c.thaw(),
        }
    }

    /// Whether the cgroup itself was frozen (a frozen ancestor does not count).
    pub fn is_frozen(&self) -> Result<bool, CgroupError> {
        match &self.backend {
            Backend::V1(c) => c.is_frozen(),
            Backend::V2(c) => c.is_frozen(),
        }
    }

    /// Every pid in the cgroup and the cgroups below it, sorted.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        match &self.backend {
            Backend::V1(c) => c.pids(),
            Backend::V2(c) => c.pids(),
        }
    }

    /// Usage, in runc's `events --stats` shape. Absent optional files read as
    /// zero; a cgroup that does not exist is an error.
    pub fn stats(&self) -> Result<Stats, CgroupError> {
        match &self.backend {
            Backend::V1(c) => c.stats(),
            Backend::V2(c) => c.stats(),
        }
    }

    /// How many processes the OOM killer has killed in this cgroup.
    pub fn oom_kill_count(&self) -> Result<u64, CgroupError> {
        match &self.backend {
            Backend::V1(c) => c.oom_kill_count(),
            Backend::V2(c) => c.oom_kill_count(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hybrid() -> Layout {
        let mut hierarchies = BTreeMap::new();
        for c in ["cpu", "memory"] {
            hierarchies.insert(c.to_string(), PathBuf::from(format!("/sys/fs/cgroup/{c}")));
        }
        hierarchies.insert("cpuacct".into(), PathBuf::from("/sys/fs/cgroup/cpu"));
        Layout::V1 {
            hierarchies,
            unified: Some(PathBuf::from("/sys/fs/cgroup/unified")),
        }
    }

    #[test]
    fn v1_paths_round_trip() {
        let m = CgroupManager::with_layout(&hybrid(), Some(Path::new("/berth-test/a")), "a", false)
            .unwrap();
        let p = m.paths();
        assert_eq!(p["memory"], Path::new("/sys/fs/cgroup/memory/berth-test/a"));
        assert_eq!(p["cpuacct"], Path::new("/sys/fs/cgroup/cpu/berth-test/a"));
        assert_eq!(p[""], Path::new("/sys/fs/cgroup/unified/berth-test/a"));
        let back = CgroupManager::from_paths(&p).unwrap();
        assert_eq!(back.version(), CgroupVersion::V1);
        assert_eq!(back, m);
    }

    #[test]
    fn v2_paths_round_trip() {
        let layout = Layout::V2 {
            root: PathBuf::from("/sys/fs/cgroup"),
        };
        let m = CgroupManager::with_layout(&layout, None, "abc", false).unwrap();
        assert_eq!(m.version(), CgroupVersion::V2);
        let p = m.paths();
        assert_eq!(p.len(), 1);
        assert_eq!(p[""], Path::new("/sys/fs/cgroup/berth/abc"));
        let back = CgroupManager::from_paths(&p).unwrap();
        assert_eq!(back.version(), CgroupVersion::V2);
        assert_eq!(back.paths(), p);
    }

    #[test]
    fn systemd_paths_map_onto_cgroupfs() {
        let layout = Layout::V2 {
            root: PathBuf::from("/sys/fs/cgroup"),
        };
        let m = CgroupManager::with_layout(
            &layout,
            Some(Path::new("system.slice:docker:abc")),
            "abc",
            true,
        )
        .unwrap();
        assert_eq!(
            m.paths()[""],
            Path::new("/sys/fs/cgroup/system.slice/docker-abc.scope")
        );
    }

    #[test]
    fn bad_paths_are_refused() {
        assert!(
            CgroupManager::with_layout(&hybrid(), Some(Path::new("/a/../b")), "a", false).is_err()
        );
        assert!(matches!(
            CgroupManager::from_paths(&BTreeMap::new()),
            Err(CgroupError::NoPaths)
        ));
        let rel = BTreeMap::from([(String::new(), PathBuf::from("sys/fs/cgroup/x"))]);
        assert!(CgroupManager::from_paths(&rel).is_err());
        let dotdot = BTreeMap::from([(
            "memory".to_string(),
            PathBuf::from("/sys/fs/cgroup/memory/../x"),
        )]);
        assert!(CgroupManager::from_paths(&dotdot).is_err());
    }

    #[test]
    fn new_creates_nothing() {
        let name = format!("berth-test-new-{}", std::process::id());
        let m = CgroupManager::new(Some(Path::new(&format!("/{name}"))), "x", false).unwrap();
        for dir in m.paths().values() {
            assert!(!dir.exists(), "{} was created", dir.display());
        }
    }
}
