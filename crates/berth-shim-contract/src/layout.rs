//! The task directory: the files a shim keeps in `<state>/tasks/<id>/` (which is also
//! the OCI bundle), and the exit record the manager reads after a restart.
//!
//! While the shim lives: `config.json` and `rootfs/` (the bundle, written by the
//! manager; the rootfs mounts are the shim's), `shim.pid`, `shim.sock`, `shim.log`
//! (the shim's own log), `runtime.log` (the runtime's JSON log), `init.pid`, and
//! `exec-<exec id>.{json,pid}` for processes added with Exec. Once the init exits,
//! `exit.json` holds its [`ExitRecord`]. A shim that exits cleanly removes
//! `shim.sock`, `shim.pid`, `init.pid` and the exec files and leaves the rest (the
//! manager removes the directory); one that was killed leaves everything.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The shim's pid, written atomically before the socket is served.
pub const SHIM_PID: &str = "shim.pid";
/// The shim's gRPC socket (the default for `--socket`).
pub const SHIM_SOCK: &str = "shim.sock";
/// The shim's own log (tracing output) once it has daemonized.
pub const SHIM_LOG: &str = "shim.log";
/// The runtime's log (`--log ... --log-format json`).
pub const RUNTIME_LOG: &str = "runtime.log";
/// The init's pid, as the runtime writes it (`--pid-file`).
pub const INIT_PID: &str = "init.pid";
/// The init's exit status, written before Wait reports it.
pub const EXIT_JSON: &str = "exit.json";
/// The bundle's rootfs directory, where Create mounts the snapshot.
pub const ROOTFS: &str = "rootfs";

/// How the container's init ended: the content of `exit.json` (field names as in
/// the shim API's `ExitStatus`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    pub pid: u32,
    /// The exit code, or 128+n for death by signal n.
    pub exit_status: u32,
    /// RFC 3339, UTC, with nanoseconds.
    pub exited_at: String,
    pub oom_killed: bool,
}

/// Errors reading or writing the task directory's files.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid exit record: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// The paths of one task directory.
#[derive(Debug, Clone)]
pub struct TaskDir {
    dir: PathBuf,
}

impl TaskDir {
    pub fn new(dir: impl Into<PathBuf>) -> TaskDir {
        TaskDir { dir: dir.into() }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.join(ROOTFS)
    }

    /// `exec-<exec id>.<ext>`; exec ids are checked to be file-name safe.
    pub fn exec_file(&self, exec_id: &str, ext: &str) -> PathBuf {
        self.dir.join(format!("exec-{exec_id}.{ext}"))
    }

    /// The init's exit record, if the init has exited (None when there is no file).
    pub fn read_exit(&self) -> Result<Option<ExitRecord>, LayoutError> {
        let path = self.file(EXIT_JSON);
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(LayoutError::Read { path, source }),
        };
        serde_json::from_slice(&data)
            .map(Some)
            .map_err(|source| LayoutError::Parse { path, source })
    }

    /// The shim's pid from `shim.pid`, if the file exists.
    pub fn read_shim_pid(&self) -> Result<Option<i32>, LayoutError> {
        let path = self.file(SHIM_PID);
        match std::fs::read_to_string(&path) {
            Ok(s) => Ok(s.trim().parse().ok()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(LayoutError::Read { path, source }),
        }
    }

    /// Records the init's exit: the shim does this before it reports the exit to
    /// anyone, so a manager that restarts finds it.
    pub fn write_exit(&self, record: &ExitRecord) -> Result<(), LayoutError> {
        let path = self.file(EXIT_JSON);
        let data = serde_json::to_vec(record).map_err(|e| LayoutError::Write {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        write_atomic(&path, &data)
    }
}

/// Write `data` to `path` so that readers see the old content or the new, never a
/// part: a temporary file beside it, then a rename. The file is root's alone
/// (0600): config.json holds the container's environment.
///
/// No fsync: a task directory lives in the run root (`/run/berth`), and what it
/// describes (a shim, a container's processes, an exit a shim has not yet handed
/// on) exists only until the machine stops; after a machine crash none of it is
/// there to be found again (the engine's own records, fsynced in the data root,
/// say what the containers were). What must survive is a crash of the manager or
/// the shim, and the page cache outlives any process: the rename alone makes the
/// file whole for the next reader. Each fsync here cost a container's start and
/// exit a disk flush (seven writes for one `run --rm`).
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), LayoutError> {
    let err = |source| LayoutError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&tmp)?;
        file.write_all(data)?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_record_round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let task = TaskDir::new(dir.path());
        assert_eq!(task.read_exit().unwrap(), None);
        let rec = ExitRecord {
            pid: 42,
            exit_status: 137,
            exited_at: "2024-01-02T03:04:05.000000006Z".into(),
            oom_killed: true,
        };
        task.write_exit(&rec).unwrap();
        assert_eq!(task.read_exit().unwrap(), Some(rec));
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(EXIT_JSON)]);
    }
}
