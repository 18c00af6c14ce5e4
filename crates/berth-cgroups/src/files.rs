//! Reading and writing cgroupfs files the way the kernel wants them: one `write(2)`
//! per value, no truncation or creation, and errors that name the file and the value
//! so that a refused limit explains itself.

use std::collections::BTreeSet;
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// An I/O error shown as the kernel's text ("Device or resource busy"), without
/// Rust's "(os error N)" suffix, so messages read like runc's.
#[derive(Debug)]
pub struct OsError(pub io::Error);

impl fmt::Display for OsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.raw_os_error() {
            Some(raw) => f.write_str(nix::errno::Errno::from_raw(raw).desc()),
            None => self.0.fmt(f),
        }
    }
}

/// A failed operation on a cgroupfs file or directory.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("writing {value} to {}: {error}", path.display())]
    Write {
        path: PathBuf,
        value: String,
        error: OsError,
    },
    #[error("reading {}: {error}", path.display())]
    Read { path: PathBuf, error: OsError },
    #[error("creating cgroup directory {}: {error}", path.display())]
    Mkdir { path: PathBuf, error: OsError },
    #[error("removing cgroup directory {}: {error}", path.display())]
    Rmdir { path: PathBuf, error: OsError },
    #[error("listing cgroup directory {}: {error}", path.display())]
    ReadDir { path: PathBuf, error: OsError },
    #[error("parsing {}: unexpected content {content:?}", path.display())]
    Parse { path: PathBuf, content: String },
}

impl FsError {
    /// The errno behind the failure, if the kernel gave one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            FsError::Write { error, .. }
            | FsError::Read { error, .. }
            | FsError::Mkdir { error, .. }
            | FsError::Rmdir { error, .. }
            | FsError::ReadDir { error, .. } => error.0.raw_os_error(),
            FsError::Parse { .. } => None,
        }
    }

    /// Whether the file or directory did not exist.
    pub fn is_not_found(&self) -> bool {
        self.errno() == Some(libc::ENOENT)
    }
}

/// Write `value` to `dir/file` in a single write, as cgroupfs requires. The file
/// must exist (a missing one means a missing controller); truncation is a no-op on
/// cgroupfs and makes plain files in a test tree behave the same.
pub fn write(dir: &Path, file: &str, value: &str) -> Result<(), FsError> {
    let path = dir.join(file);
    let result = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .and_then(|mut f| f.write_all(value.as_bytes()));
    result.map_err(|e| FsError::Write {
        path,
        value: value.to_string(),
        error: OsError(e),
    })
}

/// Files of one directory written many times over, each write(2) one value
/// (rules of a v1 `devices.allow`/`devices.deny`), each opened once.
pub struct RuleFiles<'a> {
    dir: &'a Path,
    open: Vec<(String, std::fs::File)>,
}

impl<'a> RuleFiles<'a> {
    pub fn new(dir: &'a Path) -> Self {
        RuleFiles {
            dir,
            open: Vec::new(),
        }
    }

    /// Write `value` to `dir/file` in one write(2), as `write` does.
    pub fn write(&mut self, file: &str, value: &str) -> Result<(), FsError> {
        let path = self.dir.join(file);
        let err = |error: io::Error| FsError::Write {
            path: path.clone(),
            value: value.to_string(),
            error: OsError(error),
        };
        let idx = match self.open.iter().position(|(n, _)| n == file) {
            Some(i) => i,
            None => {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(&path)
                    .map_err(err)?;
                self.open.push((file.to_string(), f));
                self.open.len() - 1
            }
        };
        (&self.open[idx].1).write_all(value.as_bytes()).map_err(err)
    }
}

/// The content of `dir/file`.
pub fn read(dir: &Path, file: &str) -> Result<String, FsError> {
    let path = dir.join(file);
    std::fs::read_to_string(&path).map_err(|e| FsError::Read {
        path,
        error: OsError(e),
    })
}

/// The content of `dir/file`, or None when the file does not exist (a controller
/// or a kernel feature that is absent).
pub fn read_optional(dir: &Path, file: &str) -> Result<Option<String>, FsError> {
    match read(dir, file) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Parse a single number from `dir/file`; "max" reads as `u64::MAX`.
pub fn read_u64(dir: &Path, file: &str) -> Result<u64, FsError> {
    let content = read(dir, file)?;
    parse_u64(&content).ok_or_else(|| FsError::Parse {
        path: dir.join(file),
        content,
    })
}

/// Like [`read_u64`], None when the file does not exist.
pub fn read_u64_optional(dir: &Path, file: &str) -> Result<Option<u64>, FsError> {
    match read_u64(dir, file) {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// A cgroup number: decimal, or "max" for no limit. Negative values (v1 reports
/// -1 for some unset knobs) read as 0.
pub fn parse_u64(s: &str) -> Option<u64> {
    let s = s.trim();
    if s == "max" {
        return Some(u64::MAX);
    }
    if let Ok(v) = s.parse::<u64>() {
        return Some(v);
    }
    s.parse::<i64>().ok().filter(|v| *v < 0).map(|_| 0)
}

/// Whether `dir/file` exists.
pub fn exists(dir: &Path, file: &str) -> bool {
    dir.join(file).exists()
}

/// `mkdir -p dir`.
pub fn mkdir_all(dir: &Path) -> Result<(), FsError> {
    std::fs::create_dir_all(dir).map_err(|e| FsError::Mkdir {
        path: dir.to_path_buf(),
        error: OsError(e),
    })
}

/// Subdirectories of `dir` (child cgroups). A missing `dir` has none.
pub fn child_dirs(dir: &Path) -> Result<Vec<PathBuf>, FsError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(FsError::ReadDir {
                path: dir.to_path_buf(),
                error: OsError(e),
            })
        }
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| FsError::ReadDir {
            path: dir.to_path_buf(),
            error: OsError(e),
        })?;
        // cgroupfs has no symlinks; file_type() never follows one anyway.
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Every pid listed in `cgroup.procs` of `dir` and of all its descendants.
pub fn pids_recursive(dir: &Path) -> Result<Vec<i32>, FsError> {
    let mut pids = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        match read(&d, "cgroup.procs") {
            Ok(content) => {
                pids.extend(content.lines().filter_map(|l| l.trim().parse::<i32>().ok()))
            }
            // A child cgroup removed while we walk is not an error.
            Err(e) if e.is_not_found() && d != dir => continue,
            Err(e) => return Err(e),
        }
        stack.extend(child_dirs(&d)?);
    }
    Ok(pids.into_iter().collect())
}

/// How long a removal waits, in all, for tasks that are still exiting.
pub const REMOVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Remove the cgroup `dir` and every cgroup below it, children first. A cgroup
/// that is already gone counts as removed. EBUSY (tasks that are still exiting)
/// is retried until `deadline`; a cgroup whose processes never leave fails then.
pub fn remove_tree(dir: &Path, deadline: Instant) -> Result<(), FsError> {
    // A container's cgroup rarely has children: try the rmdir first and list
    // the directory only when it is refused (EBUSY for a cgroup with children
    // or tasks), which saves reading every hierarchy's directory on delete.
    match std::fs::remove_dir(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    for child in child_dirs(dir)? {
        remove_tree(&child, deadline)?;
    }
    let mut delay = Duration::from_millis(1);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(100));
            }
            Err(e) => {
                return Err(FsError::Rmdir {
                    path: dir.to_path_buf(),
                    error: OsError(e),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_u64("42\n"), Some(42));
        assert_eq!(parse_u64("max\n"), Some(u64::MAX));
        assert_eq!(parse_u64("-1"), Some(0));
        assert_eq!(parse_u64("x"), None);
    }

    #[test]
    fn write_errors_name_the_file_and_value() {
        let dir = tempfile::tempdir().unwrap();
        let err = write(dir.path(), "memory.max", "100").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("writing 100 to "), "{msg}");
        assert!(
            msg.ends_with("/memory.max: No such file or directory"),
            "{msg}"
        );
        assert!(err.is_not_found());
    }

    #[test]
    fn remove_tree_removes_children_and_accepts_missing() {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().join("a");
        std::fs::create_dir_all(top.join("b/c")).unwrap();
        std::fs::create_dir_all(top.join("d")).unwrap();
        let deadline = Instant::now() + REMOVE_TIMEOUT;
        remove_tree(&top, deadline).unwrap();
        assert!(!top.exists());
        remove_tree(&top, deadline).unwrap();
    }

    #[test]
    fn pids_of_a_tree() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("child")).unwrap();
        std::fs::write(dir.path().join("cgroup.procs"), "3\n1\n").unwrap();
        std::fs::write(dir.path().join("child/cgroup.procs"), "2\n3\n").unwrap();
        assert_eq!(pids_recursive(dir.path()).unwrap(), vec![1, 2, 3]);
    }
}
