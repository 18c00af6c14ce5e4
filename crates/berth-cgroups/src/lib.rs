//! cgroups v1 and v2 behind one manager. SKELETON: the cgroups helper replaces the
//! bodies; the signatures are the contract the rest of the runtime uses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroups: {0}")]
    Unsupported(String),
}

/// Which hierarchy layout the manager drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

/// Resource usage, serialized in runc's `events --stats` shape.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Stats {}

/// One container's cgroup, on whatever layout the host has.
#[derive(Debug, Clone)]
pub struct CgroupManager {
    paths: BTreeMap<String, PathBuf>,
}

impl CgroupManager {
    /// Resolve the spec's `cgroupsPath` (None: `/berth/<id>`) on the host's layout.
    pub fn new(
        _cgroups_path: Option<&Path>,
        _id: &str,
        _systemd: bool,
    ) -> Result<Self, CgroupError> {
        Err(CgroupError::Unsupported("not built yet".into()))
    }
    /// Rebuild from the paths recorded in state.json.
    pub fn from_paths(paths: &BTreeMap<String, PathBuf>) -> Result<Self, CgroupError> {
        Ok(Self {
            paths: paths.clone(),
        })
    }
    pub fn version(&self) -> CgroupVersion {
        CgroupVersion::V1
    }
    pub fn paths(&self) -> BTreeMap<String, PathBuf> {
        self.paths.clone()
    }
    pub fn create(&self) -> Result<(), CgroupError> {
        Err(CgroupError::Unsupported("not built yet".into()))
    }
    pub fn apply(&self, _r: &LinuxResources) -> Result<(), CgroupError> {
        Err(CgroupError::Unsupported("not built yet".into()))
    }
    pub fn add_task(&self, _pid: i32) -> Result<(), CgroupError> {
        Err(CgroupError::Unsupported("not built yet".into()))
    }
    pub fn remove(&self) -> Result<(), CgroupError> {
        Err(CgroupError::Unsupported("not built yet".into()))
    }
    pub fn freeze(&self) -> Result<(), CgroupError> {
        Err(CgroupError::Unsupported("not built yet".into()))
    }
    pub fn thaw(&self) -> Result<(), CgroupError> {
        Err(CgroupError::Unsupported("not built yet".into()))
    }
    pub fn is_frozen(&self) -> Result<bool, CgroupError> {
        Ok(false)
    }
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        Err(CgroupError::Unsupported("not built yet".into()))
    }
    pub fn stats(&self) -> Result<Stats, CgroupError> {
        Err(CgroupError::Unsupported("not built yet".into()))
    }
    pub fn oom_kill_count(&self) -> Result<u64, CgroupError> {
        Err(CgroupError::Unsupported("not built yet".into()))
    }
}
