//! Kubernetes' CRI log format, for containers created through the manager's CRI
//! server: one line per piece of output,
//!
//! ```text
//! 2016-10-06T00:17:09.669794202Z stdout F hello
//! 2016-10-06T00:17:09.669794202Z stderr P the first 16 KiB of a longer line
//! ```
//!
//! `F` ends a line (its newline, and a `\r` before it, are not written: the line
//! break of the log is the line's own), `P` is a piece of a line cut at 16 KiB as
//! containerd does, and the last output of a stream without a newline is `F` too.
//! The shim writes it itself, like the json-file log, so that nothing is lost while
//! the manager is down; kubelet rotates it by renaming the file and asking for it
//! to be reopened ([`CriLog::reopen`]).
//!
//! A plain synchronous writer: the event loop hands it whole pieces (see
//! `stdio.rs`), one `write(2)` per line on an `O_APPEND` file, so the two streams'
//! lines never interleave.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::stdio::{IoError, StreamKind};

/// A CRI-format log file, shared by a process's output streams.
#[derive(Debug)]
pub struct CriLog {
    path: PathBuf,
    file: Mutex<File>,
    failed: AtomicBool,
}

fn open(path: &Path) -> Result<File, IoError> {
    let err = |source| IoError::Log {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(err)
}

/// One log line: `<time> <stream> <P|F> <text>\n`. `last` says the stream ended
/// after `piece` (its last words are a whole line even without a newline).
pub fn line(stream: StreamKind, piece: &[u8], time: &str, last: bool) -> Vec<u8> {
    let (text, full) = match piece.strip_suffix(b"\n") {
        Some(t) => (t.strip_suffix(b"\r").unwrap_or(t), true),
        None => (piece, last),
    };
    let stream = match stream {
        StreamKind::Stdout => "stdout",
        StreamKind::Stderr => "stderr",
    };
    let tag = if full { "F" } else { "P" };
    let mut out = Vec::with_capacity(time.len() + text.len() + 12);
    out.extend_from_slice(time.as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_bytes());
    out.push(b' ');
    out.extend_from_slice(tag.as_bytes());
    out.push(b' ');
    out.extend_from_slice(text);
    out.push(b'\n');
    out
}

impl CriLog {
    /// Open (create, append) the log at `path`.
    pub fn open(path: &Path) -> Result<CriLog, IoError> {
        Ok(CriLog {
            path: path.to_path_buf(),
            file: Mutex::new(open(path)?),
            failed: AtomicBool::new(false),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append a piece of output (a line with its newline, or a piece of one; see
    /// [`line`]). Output keeps flowing when the log cannot be written (a full disk
    /// must not block the container); the failure is logged once.
    pub fn write(&self, stream: StreamKind, piece: &[u8], time: &str, last: bool) {
        let buf = line(stream, piece, time, last);
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = file.write_all(&buf) {
            if !self.failed.swap(true, Ordering::Relaxed) {
                tracing::error!(path = %self.path.display(), "writing the container log: {e}");
            }
        }
    }

    /// Open the file at the log's path again (kubelet renamed the old one away);
    /// later lines go to the new file.
    pub fn reopen(&self) -> Result<(), IoError> {
        let new = open(&self.path)?;
        *self.file.lock().unwrap_or_else(PoisonError::into_inner) = new;
        self.failed.store(false, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "2016-10-06T00:17:09.669794202Z";

    #[test]
    fn whole_lines_are_f_and_pieces_p() {
        assert_eq!(
            line(StreamKind::Stdout, b"hello\n", T, false),
            format!("{T} stdout F hello\n").into_bytes()
        );
        assert_eq!(
            line(StreamKind::Stderr, b"crlf\r\n", T, false),
            format!("{T} stderr F crlf\n").into_bytes()
        );
        assert_eq!(
            line(StreamKind::Stdout, b"part", T, false),
            format!("{T} stdout P part\n").into_bytes()
        );
        assert_eq!(
            line(StreamKind::Stdout, b"tail", T, true),
            format!("{T} stdout F tail\n").into_bytes()
        );
        assert_eq!(
            line(StreamKind::Stdout, b"\n", T, false),
            format!("{T} stdout F \n").into_bytes()
        );
    }

    #[test]
    fn reopen_writes_to_a_new_file_after_a_rename() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pod/c.log");
        let log = CriLog::open(&path).unwrap();
        log.write(StreamKind::Stdout, b"one\n", T, false);
        let rotated = dir.path().join("pod/c.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        log.reopen().unwrap();
        assert!(path.exists());
        log.write(StreamKind::Stdout, b"two\n", T, false);
        assert_eq!(
            std::fs::read_to_string(&rotated).unwrap(),
            format!("{T} stdout F one\n")
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{T} stdout F two\n")
        );
    }
}
