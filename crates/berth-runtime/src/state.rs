//! `<root>/<id>/state.json`: what the runtime knows about a container between
//! invocations. The file is the only record (the runtime is not a daemon), so it is
//! written atomically and read back by every command.
//!
//! Field names follow runc's state.json where operators read them with jq
//! (`init_process_pid`, `init_process_start`, `created`, `namespace_paths`,
//! `cgroup_paths`, `config`).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

/// File name of the state inside a container's directory.
pub const STATE_FILE: &str = "state.json";
/// The fifo the init blocks on until `start` opens it (runc's exec.fifo).
pub const EXEC_FIFO: &str = "exec.fifo";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("container id {0:?} is not valid: use letters, digits, '_', '-', '.' and '+' only (at most 1024)")]
    InvalidId(String),
    #[error("container {0} does not exist")]
    NotFound(String),
    #[error("container {0} already exists")]
    AlreadyExists(String),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> StateError + 'a {
    move |source| StateError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// The lifecycle status of the OCI spec ("paused" is runc's addition).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        };
        f.write_str(s)
    }
}

/// Everything recorded about one container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub id: String,
    /// Host pid of the container's init (PID 1 in its pid namespace).
    pub init_process_pid: i32,
    /// Start time of that pid in clock ticks (field 22 of /proc/<pid>/stat), so a
    /// recycled pid is never mistaken for the container.
    pub init_process_start: u64,
    /// RFC 3339 time the container was created.
    pub created: String,
    /// Absolute path of the bundle.
    pub bundle: PathBuf,
    /// Absolute path of the root filesystem on the host.
    pub rootfs: PathBuf,
    /// Kernel name of each namespace (NEWPID, NEWNS, ...) → /proc/<pid>/ns/<kind>.
    pub namespace_paths: BTreeMap<String, String>,
    /// Controller (or "" for the v2 unified hierarchy) → cgroup directory.
    pub cgroup_paths: BTreeMap<String, PathBuf>,
    /// Whether cgroups were given in systemd's slice:prefix:name form.
    #[serde(default)]
    pub systemd_cgroup: bool,
    /// The owner of the container (always the runtime's uid's name, "root" here).
    #[serde(default)]
    pub owner: String,
    /// The bundle's config.json as it was at create time.
    pub config: Spec,
}

/// Refuse ids that could escape the root directory or confuse other tools.
pub fn validate_id(id: &str) -> Result<(), StateError> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+'));
    if ok {
        Ok(())
    } else {
        Err(StateError::InvalidId(id.to_string()))
    }
}

/// The directory holding a container's state under `root`.
pub fn container_dir(root: &Path, id: &str) -> Result<PathBuf, StateError> {
    validate_id(id)?;
    Ok(root.join(id))
}

/// Create `<root>/<id>` exclusively (mode 0711), failing when it exists already.
pub fn create_container_dir(root: &Path, id: &str) -> Result<PathBuf, StateError> {
    let dir = container_dir(root, id)?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(root)
        .map_err(io_err("create state root", root))?;
    match fs::DirBuilder::new().mode(0o711).create(&dir) {
        Ok(()) => Ok(dir),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(StateError::AlreadyExists(id.to_string()))
        }
        Err(e) => Err(StateError::Io {
            action: "create state directory",
            path: dir,
            source: e,
        }),
    }
}

impl State {
    /// Read `<root>/<id>/state.json`.
    pub fn load(root: &Path, id: &str) -> Result<State, StateError> {
        let dir = container_dir(root, id)?;
        let path = dir.join(STATE_FILE);
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StateError::NotFound(id.to_string()))
            }
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        serde_json::from_slice(&data).map_err(|source| StateError::Parse { path, source })
    }

    /// Write the state atomically: temporary file, fsync, rename, fsync the directory.
    pub fn save(&self, root: &Path) -> Result<(), StateError> {
        let dir = container_dir(root, &self.id)?;
        let data = serde_json::to_vec(self).map_err(|source| StateError::Parse {
            path: dir.join(STATE_FILE),
            source,
        })?;
        write_atomic(&dir.join(STATE_FILE), &data, 0o600)
    }

    pub fn dir(&self, root: &Path) -> PathBuf {
        root.join(&self.id)
    }

    /// Whether the init process recorded here is still the same process.
    pub fn init_alive(&self) -> bool {
        process_start_time(self.init_process_pid)
            .map(|t| t == self.init_process_start && !is_zombie(self.init_process_pid))
            .unwrap_or(false)
    }

    /// The status as the OCI spec defines it. Paused is answered by the freezer.
    pub fn status(&self, root: &Path) -> Status {
        if self.init_process_pid <= 0 || !self.init_alive() {
            return Status::Stopped;
        }
        if self.dir(root).join(EXEC_FIFO).exists() {
            return Status::Created;
        }
        if crate::cgroups::CgroupManager::from_paths(&self.cgroup_paths)
            .and_then(|m| m.is_frozen())
            .unwrap_or(false)
        {
            return Status::Paused;
        }
        Status::Running
    }

    /// The spec's state object (`berth-runtime state` prints this).
    pub fn oci_state(&self, root: &Path) -> OciState {
        let status = self.status(root);
        OciState {
            oci_version: self.config.version().clone(),
            id: self.id.clone(),
            status,
            pid: if status == Status::Stopped {
                0
            } else {
                self.init_process_pid
            },
            bundle: self.bundle.clone(),
            rootfs: self.rootfs.clone(),
            created: self.created.clone(),
            owner: self.owner.clone(),
            annotations: self.config.annotations().clone().unwrap_or_default(),
        }
    }
}

/// The OCI state object, as hooks receive it on stdin and `state` and `list`
/// print it (fields in runc's order, which scripts match on).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OciState {
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: Status,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    #[serde(default, skip_serializing_if = "std::collections::HashMap::is_empty")]
    pub annotations: std::collections::HashMap<String, String>,
    pub owner: String,
}

/// Write `data` to `path` so that readers see either the old or the new content:
/// a temporary file, then a rename. No fsync (as runc): the state root and the
/// pid files live in /run and describe this boot's processes, which a machine
/// crash takes with it; a crash of a process leaves the page cache, where the
/// renamed file is whole.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), StateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        f.write_all(data).map_err(io_err("write", &tmp))?;
        fs::rename(&tmp, path).map_err(io_err("rename into place", path))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Field 22 of /proc/<pid>/stat: the process start time in clock ticks.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// Whether /proc/<pid>/stat says the process is a zombie (exited, not reaped).
pub fn is_zombie(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let i = s.rfind(')')?;
            s.get(i + 2..i + 3).map(|c| c == "Z" || c == "X")
        })
        .unwrap_or(false)
}

/// Ids of every container under `root`, sorted.
pub fn list_ids(root: &Path) -> Result<Vec<String>, StateError> {
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("read", root)(e)),
    };
    let mut ids: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(STATE_FILE).exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    ids.sort();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(validate_id("abc-1_2.x+y").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "../x"] {
            assert!(validate_id(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn start_time_of_self() {
        let me = std::process::id() as i32;
        assert!(process_start_time(me).is_some());
        assert!(!is_zombie(me));
        assert!(process_start_time(i32::MAX).is_none());
    }

    #[test]
    fn atomic_write_replaces() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f.json");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
