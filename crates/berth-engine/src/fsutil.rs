//! Small file helpers: atomic writes (temp file, fsync, rename, fsync the directory)
//! and random ids.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

/// Writes `data` to `path` so that a reader sees either the old or the new contents,
/// never a mix, even across a crash.
pub fn atomic_write(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let (dir, name) = split(path)?;
    replace_files(dir, &[(name, data)], mode, Durable::FileAndName)
}

/// [`atomic_write`] of a file that already exists under this name: the new
/// contents are synced before the rename, the directory is not. A power loss
/// then leaves the old contents or the new, each whole: the name was durable
/// already, and the rename's own durability (the journal's next commit) only
/// decides which of the two is found. For records whose every version is one
/// the owner recovers from.
pub fn atomic_replace(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let (dir, name) = split(path)?;
    replace_files(dir, &[(name, data)], mode, Durable::File)
}

/// [`atomic_write`] without the fsyncs, for files under the exec root (`/run`, a
/// tmpfs): they describe kernel state that a reboot takes away with them, so
/// surviving a power loss buys nothing, and a crash of the writer alone never
/// loses what the rename published (it is in the page cache). Readers still see
/// the old or the new contents, never a mix.
pub fn atomic_write_volatile(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let (dir, name) = split(path)?;
    replace_files(dir, &[(name, data)], mode, Durable::No)
}

/// [`atomic_write_volatile`] of several files of one directory: for files that are
/// written again before anyone relies on them after a power loss (a container's
/// /etc files, rewritten at every start). Each file is whole, old or new.
pub fn atomic_write_all_volatile(dir: &Path, files: &[(&str, &[u8])], mode: u32) -> io::Result<()> {
    let files: Vec<(&OsStr, &[u8])> = files.iter().map(|(n, d)| (OsStr::new(*n), *d)).collect();
    replace_files(dir, &files, mode, Durable::No)
}

fn split(path: &Path) -> io::Result<(&Path, &OsStr)> {
    let dir = path.parent().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "path has no parent directory")
    })?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    Ok((dir, name))
}

/// What of a write is made durable before it returns.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Durable {
    No,
    /// The file's contents (fsync before the rename).
    File,
    /// The contents and the name (the directory fsynced after the rename).
    FileAndName,
}

/// Each file written to a temporary name in `dir` (synced unless `Durable::No`),
/// then renamed over its own, then (with `Durable::FileAndName`) the directory
/// synced once. On an error the temporary files are removed.
fn replace_files(
    dir: &Path,
    files: &[(&OsStr, &[u8])],
    mode: u32,
    durable: Durable,
) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = |name: &OsStr| {
        dir.join(format!(
            ".{}.tmp-{}",
            name.to_string_lossy(),
            std::process::id()
        ))
    };
    let result = (|| {
        for (name, data) in files {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(mode)
                .open(tmp(name))?;
            f.write_all(data)?;
            if durable != Durable::No {
                f.sync_all()?;
            }
        }
        for (name, _) in files {
            fs::rename(tmp(name), dir.join(name))?;
        }
        if durable == Durable::FileAndName {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        for (name, _) in files {
            let _ = fs::remove_file(tmp(name));
        }
    }
    result
}

/// 32 random bytes as 64 lowercase hex digits, like a Docker id. Ids whose short form
/// is all digits are drawn again, as dockerd does, so a short id never reads as a number.
pub fn random_id() -> io::Result<String> {
    loop {
        let mut buf = [0u8; 32];
        File::open("/dev/urandom")?.read_exact(&mut buf)?;
        let id: String = buf.iter().map(|b| format!("{b:02x}")).collect();
        if !id[..12].bytes().all(|b| b.is_ascii_digit()) {
            return Ok(id);
        }
    }
}

/// One random number below `n` (for generated names).
pub fn random_below(n: usize) -> io::Result<usize> {
    let mut buf = [0u8; 8];
    File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok((u64::from_le_bytes(buf) % n.max(1) as u64) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.json");
        atomic_write(&p, b"one", 0o600).unwrap();
        atomic_write(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        atomic_write_volatile(&p, b"three", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"three");
        atomic_replace(&p, b"four", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"four");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
        use std::os::unix::fs::PermissionsExt;
        let q = dir.path().join("g");
        atomic_write_volatile(&q, b"x", 0o644).unwrap();
        assert_eq!(
            fs::metadata(&q).unwrap().permissions().mode() & 0o777,
            0o644
        );
    }

    #[test]
    fn ids_are_64_hex_and_differ() {
        let a = random_id().unwrap();
        let b = random_id().unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
