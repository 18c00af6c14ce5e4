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
//! The shim's poll loop hands it a stream's bytes as they were read; it cuts them
//! into lines with the json-file log's splitter and makes one `write(2)` per line
//! on an `O_APPEND` file, so the two streams' lines never interleave.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::stdio::{open_log_file, IoError, Lines, StreamKind};

/// A CRI-format log file, shared by a process's output streams.
#[derive(Debug)]
pub struct CriLog {
    path: PathBuf,
    file: File,
    failed: bool,
    lines: [Lines; 2],
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
            file: open_log_file(path)?,
            failed: false,
            lines: Default::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Output of `stream`, as read: every complete line (or 16 KiB piece of a
    /// longer one) becomes a log line, stamped with the time it was read.
    pub fn write(&mut self, stream: StreamKind, data: &[u8]) {
        let time = crate::time::now_rfc3339();
        let i = stream.index();
        let mut lines = std::mem::take(&mut self.lines[i]);
        lines.feed(data, &mut |l| self.entry(stream, l, &time, false));
        self.lines[i] = lines;
    }

    /// `stream` ended: what it ended with is a whole line (`F`), newline or not.
    pub fn finish(&mut self, stream: StreamKind) {
        let time = crate::time::now_rfc3339();
        let mut lines = std::mem::take(&mut self.lines[stream.index()]);
        lines.finish(&mut |l| self.entry(stream, l, &time, true));
    }

    /// Append one line (see [`line`]). Output keeps flowing when the log cannot be
    /// written (a full disk must not block the container); the failure is logged
    /// once.
    fn entry(&mut self, stream: StreamKind, piece: &[u8], time: &str, last: bool) {
        let buf = line(stream, piece, time, last);
        if let Err(e) = self.file.write_all(&buf) {
            if !std::mem::replace(&mut self.failed, true) {
                tracing::error!(path = %self.path.display(), "writing the container log: {e}");
            }
        }
    }

    /// Open the file at the log's path again (kubelet renamed the old one away);
    /// later lines go to the new file. A line cut by the rotation goes on in the
    /// new file.
    pub fn reopen(&mut self) -> Result<(), IoError> {
        self.file = open_log_file(&self.path)?;
        self.failed = false;
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
        let mut log = CriLog::open(&path).unwrap();
        log.entry(StreamKind::Stdout, b"one\n", T, false);
        let rotated = dir.path().join("pod/c.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        log.reopen().unwrap();
        assert!(path.exists());
        log.entry(StreamKind::Stdout, b"two\n", T, false);
        assert_eq!(
            std::fs::read_to_string(&rotated).unwrap(),
            format!("{T} stdout F one\n")
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{T} stdout F two\n")
        );
    }

    #[test]
    fn output_is_cut_into_lines_and_a_stream_ends_with_f() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let mut log = CriLog::open(&path).unwrap();
        log.write(StreamKind::Stdout, b"a");
        log.write(StreamKind::Stderr, b"e\n");
        log.write(StreamKind::Stdout, b"b\nc");
        log.write(StreamKind::Stderr, &vec![b'x'; crate::stdio::MAX_LINE + 1]);
        log.finish(StreamKind::Stdout);
        log.finish(StreamKind::Stderr);
        let text = std::fs::read_to_string(&path).unwrap();
        let got: Vec<(String, String, usize)> = text
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.splitn(4, ' ').collect();
                assert!(f[0].ends_with('Z'), "{l}");
                (f[1].to_string(), f[2].to_string(), f[3].len())
            })
            .collect();
        let want = [
            ("stderr", "F", 1),
            ("stdout", "F", 2),
            ("stderr", "P", crate::stdio::MAX_LINE),
            ("stdout", "F", 1),
            ("stderr", "F", 1),
        ];
        assert_eq!(
            got,
            want.map(|(s, t, n)| (s.to_string(), t.to_string(), n))
                .to_vec()
        );
    }
}
