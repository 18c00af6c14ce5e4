//! Reading a container's json-file log, as `GET /containers/{id}/logs` serves it.
//!
//! The shim writes one JSON object per line: `{"log":"...","stream":"stdout",
//! "time":"<RFC 3339 with nanoseconds>"}`. This module selects streams, applies
//! `tail`, `since` and `until`, adds timestamps, frames the result for non-TTY
//! containers, and follows the file as it grows.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::manager::StdStream;
use crate::stream::encode_frame;

/// Errors of the log reader.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// `since`/`until` is not a Unix timestamp.
    #[error("invalid value for {param}: {value:?} is not a Unix timestamp")]
    BadTimestamp { param: &'static str, value: String },
    /// `tail` is neither `all` nor a number.
    #[error("invalid value for tail: {0:?}")]
    BadTail(String),
    /// Reading the log file failed.
    #[error("reading log {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What the client asked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogOptions {
    pub stdout: bool,
    pub stderr: bool,
    pub follow: bool,
    /// The last N lines of the file; `None` = all.
    pub tail: Option<usize>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub timestamps: bool,
}

/// Parses `tail`: "all" (or empty) or a number; dockerd takes a negative number as all.
pub fn parse_tail(s: &str) -> Result<Option<usize>, LogError> {
    if s.is_empty() || s == "all" {
        return Ok(None);
    }
    match s.parse::<i64>() {
        Ok(n) if n < 0 => Ok(None),
        Ok(n) => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX))),
        Err(_) => Err(LogError::BadTail(s.to_string())),
    }
}

/// Parses `since`/`until`: seconds since the epoch with an optional fraction (what the
/// docker CLI sends after turning "10m" or a date into a timestamp). "0" or "" = unset.
pub fn parse_timestamp(param: &'static str, s: &str) -> Result<Option<DateTime<Utc>>, LogError> {
    let bad = || LogError::BadTimestamp {
        param,
        value: s.to_string(),
    };
    if s.is_empty() || s == "0" {
        return Ok(None);
    }
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().map_err(|_| bad())?;
    let nanos: u32 = if frac.is_empty() {
        0
    } else {
        if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        format!("{frac:0<9}").parse().map_err(|_| bad())?
    };
    DateTime::from_timestamp(secs, nanos)
        .map(Some)
        .ok_or_else(bad)
}

/// One log line.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    pub stream: StdStream,
    pub time: DateTime<Utc>,
    pub line: Bytes,
}

#[derive(Deserialize)]
struct JsonLine {
    log: String,
    stream: String,
    time: String,
}

/// Parses one line of a json-file log; `None` for a line that is not one (a torn
/// last line while the shim writes is skipped, not an error).
pub fn parse_line(line: &[u8]) -> Option<LogEntry> {
    let j: JsonLine = serde_json::from_slice(line).ok()?;
    let stream = match j.stream.as_str() {
        "stdout" => StdStream::Stdout,
        "stderr" => StdStream::Stderr,
        _ => return None,
    };
    let time = DateTime::parse_from_rfc3339(&j.time)
        .ok()?
        .with_timezone(&Utc);
    Some(LogEntry {
        stream,
        time,
        line: Bytes::from(j.log.into_bytes()),
    })
}

/// Docker's fixed-width RFC 3339 with nanoseconds, as `docker logs -t` prints it.
pub fn format_time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}

impl LogOptions {
    fn wants(&self, e: &LogEntry) -> bool {
        let stream_ok = match e.stream {
            StdStream::Stdout => self.stdout,
            StdStream::Stderr => self.stderr,
        };
        stream_ok && self.since.is_none_or(|s| e.time > s) && self.until.is_none_or(|u| e.time <= u)
    }

    /// The bytes to send for one entry: with the timestamp when asked, framed unless TTY.
    pub fn encode(&self, e: &LogEntry, tty: bool) -> Bytes {
        let payload: Bytes = if self.timestamps {
            let mut b = BytesMut::from(format!("{} ", format_time(&e.time)).as_bytes());
            b.extend_from_slice(&e.line);
            b.freeze()
        } else {
            e.line.clone()
        };
        if tty {
            return payload;
        }
        let mut out = BytesMut::new();
        encode_frame(e.stream, &payload, &mut out);
        out.freeze()
    }
}

/// `<path>.<n>`: the shim's rotated files (`.1` the newest of them).
fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".{n}"));
    PathBuf::from(p)
}

/// Reads the entries the options select from the whole log, its rotated files
/// (oldest first) then the current one (no following); the offset returned is
/// the end of the whole lines read of the current file. A missing file is an
/// empty log: the container may not have written anything yet.
pub fn read_entries(path: &Path, opts: &LogOptions) -> Result<(Vec<LogEntry>, u64), LogError> {
    let mut files: Vec<PathBuf> = (1..)
        .map(|n| numbered(path, n))
        .take_while(|p| p.exists())
        .collect();
    files.reverse();
    // dockerd's tail counts lines of the files, before the stream selection.
    let mut lines: VecDeque<LogEntry> = VecDeque::new();
    for f in &files {
        read_lines(f, opts.tail, &mut lines)?;
    }
    let offset = read_lines(path, opts.tail, &mut lines)?;
    Ok((
        lines.into_iter().filter(|e| opts.wants(e)).collect(),
        offset,
    ))
}

/// Appends the entries of one file to `lines` (keeping the last `tail`); returns
/// the end of its last whole line. A missing file has none.
fn read_lines(
    path: &Path,
    tail: Option<usize>,
    lines: &mut VecDeque<LogEntry>,
) -> Result<u64, LogError> {
    let io = |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io(e)),
    };
    let mut reader = BufReader::new(file);
    let mut offset = 0u64;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(io)?;
        if n == 0 || buf.last() != Some(&b'\n') {
            // EOF, or a line the shim has not finished writing: leave it for later.
            break;
        }
        offset += n as u64;
        if let Some(e) = parse_line(&buf) {
            lines.push_back(e);
            if let Some(t) = tail {
                while lines.len() > t {
                    lines.pop_front();
                }
            }
        }
    }
    Ok(offset)
}

/// How often a followed log is checked for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// Sends the selected log to `tx` (already encoded), then, with `follow`, keeps sending
/// new lines as the shim appends them until `still_running` says the container has
/// stopped (and the rest of the file is sent), `until` is passed, or the client goes away.
pub async fn stream_logs<F>(
    path: PathBuf,
    opts: LogOptions,
    tty: bool,
    tx: mpsc::Sender<Bytes>,
    still_running: F,
) -> Result<(), LogError>
where
    F: Fn() -> bool + Send + 'static,
{
    let (p, o) = (path.clone(), opts.clone());
    let (entries, mut offset) = tokio::task::spawn_blocking(move || read_entries(&p, &o))
        .await
        .map_err(|e| LogError::Io {
            path: path.clone(),
            source: std::io::Error::other(e),
        })??;
    for e in &entries {
        if tx.send(opts.encode(e, tty)).await.is_err() {
            return Ok(());
        }
    }
    if !opts.follow {
        return Ok(());
    }
    loop {
        let running = still_running();
        let (p, o, start) = (path.clone(), opts.clone(), offset);
        let (new, end) = tokio::task::spawn_blocking(move || read_from(&p, &o, start))
            .await
            .map_err(|e| LogError::Io {
                path: path.clone(),
                source: std::io::Error::other(e),
            })??;
        offset = end;
        for e in &new {
            if opts.until.is_some_and(|u| e.time > u) {
                return Ok(());
            }
            if tx.send(opts.encode(e, tty)).await.is_err() {
                return Ok(());
            }
        }
        if !running || opts.until.is_some_and(|u| Utc::now() > u) {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(FOLLOW_POLL) => {}
            _ = tx.closed() => return Ok(()),
        }
    }
}

/// Reads whole lines after `offset`; starts over when the file was truncated.
fn read_from(
    path: &Path,
    opts: &LogOptions,
    offset: u64,
) -> Result<(Vec<LogEntry>, u64), LogError> {
    let io = |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((vec![], offset)),
        Err(e) => return Err(io(e)),
    };
    let len = file.metadata().map_err(io)?.len();
    let mut out = vec![];
    let mut pos = offset;
    if len < offset {
        // Rotated (the rest of what was read is now `.1`) or emptied: the rest of
        // the old file first when it is there, then the new one from its start.
        let older = numbered(path, 1);
        if std::fs::metadata(&older).is_ok_and(|m| m.len() >= offset) {
            let (rest, _) = read_from(&older, opts, offset)?;
            out.extend(rest);
        }
        pos = 0;
    }
    file.seek(SeekFrom::Start(pos)).map_err(io)?;
    let mut reader = BufReader::new(file);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(io)?;
        if n == 0 || buf.last() != Some(&b'\n') {
            break;
        }
        pos += n as u64;
        if let Some(e) = parse_line(&buf) {
            let wanted = match e.stream {
                StdStream::Stdout => opts.stdout,
                StdStream::Stderr => opts.stderr,
            };
            if wanted && opts.since.is_none_or(|s| e.time > s) {
                out.push(e);
            }
        }
    }
    Ok((out, pos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    fn line(log: &str, stream: &str, time: &str) -> String {
        format!(
            "{}\n",
            serde_json::json!({"log": log, "stream": stream, "time": time})
        )
    }

    fn sample(dir: &Path) -> PathBuf {
        let p = dir.join("c-json.log");
        let mut s = String::new();
        s += &line("one\n", "stdout", "2024-01-01T00:00:01.000000001Z");
        s += &line("err\n", "stderr", "2024-01-01T00:00:02Z");
        s += &line("two\n", "stdout", "2024-01-01T00:00:03.5Z");
        s += "{torn";
        std::fs::write(&p, s).unwrap();
        p
    }

    fn all() -> LogOptions {
        LogOptions {
            stdout: true,
            stderr: true,
            ..LogOptions::default()
        }
    }

    fn texts(v: &[LogEntry]) -> Vec<String> {
        v.iter()
            .map(|e| String::from_utf8_lossy(&e.line).into_owned())
            .collect()
    }

    #[test]
    fn rotated_files_are_read_oldest_first_and_tail_spans_them() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c-json.log");
        let at = |i: u32| format!("2024-01-01T00:00:{i:02}Z");
        let file = |range: std::ops::Range<u32>| {
            range
                .map(|i| line(&format!("l{i}\n"), "stdout", &at(i)))
                .collect::<String>()
        };
        std::fs::write(numbered(&p, 2), file(0..3)).unwrap();
        std::fs::write(numbered(&p, 1), file(3..6)).unwrap();
        std::fs::write(&p, file(6..8)).unwrap();
        let (every, offset) = read_entries(&p, &all()).unwrap();
        assert_eq!(
            texts(&every),
            (0..8).map(|i| format!("l{i}\n")).collect::<Vec<_>>()
        );
        assert_eq!(offset, std::fs::metadata(&p).unwrap().len());
        let tail = LogOptions {
            tail: Some(4),
            ..all()
        };
        let (last, _) = read_entries(&p, &tail).unwrap();
        assert_eq!(texts(&last), ["l4\n", "l5\n", "l6\n", "l7\n"]);

        // A follower that had read the whole current file when it was rotated
        // gets the rest of it from `.1`, then the new file.
        let read_to = std::fs::metadata(&p).unwrap().len();
        std::fs::rename(numbered(&p, 1), numbered(&p, 2)).unwrap();
        let mut old = file(6..8);
        old += &file(8..9);
        std::fs::write(numbered(&p, 1), old).unwrap();
        std::fs::write(&p, file(9..10)).unwrap();
        let (new, _) = read_from(&p, &all(), read_to).unwrap();
        assert_eq!(texts(&new), ["l8\n", "l9\n"]);
    }

    #[test]
    fn selects_streams() {
        let d = tempfile::tempdir().unwrap();
        let p = sample(d.path());
        let (v, _) = read_entries(&p, &all()).unwrap();
        assert_eq!(texts(&v), ["one\n", "err\n", "two\n"]);
        let only_err = LogOptions {
            stderr: true,
            ..LogOptions::default()
        };
        assert_eq!(texts(&read_entries(&p, &only_err).unwrap().0), ["err\n"]);
    }

    #[test]
    fn tail_counts_file_lines_like_dockerd() {
        let d = tempfile::tempdir().unwrap();
        let p = sample(d.path());
        let o = LogOptions {
            tail: Some(2),
            ..all()
        };
        assert_eq!(texts(&read_entries(&p, &o).unwrap().0), ["err\n", "two\n"]);
        let o = LogOptions {
            tail: Some(0),
            ..all()
        };
        assert!(read_entries(&p, &o).unwrap().0.is_empty());
        assert_eq!(parse_tail("all").unwrap(), None);
        assert_eq!(parse_tail("5").unwrap(), Some(5));
        assert_eq!(parse_tail("-1").unwrap(), None);
        assert!(parse_tail("x").is_err());
    }

    #[test]
    fn since_and_until_bound_the_times() {
        let d = tempfile::tempdir().unwrap();
        let p = sample(d.path());
        let base = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
            .unwrap()
            .timestamp();
        let o = LogOptions {
            since: parse_timestamp("since", &format!("{}.5", base + 1)).unwrap(),
            until: parse_timestamp("until", &format!("{}", base + 3)).unwrap(),
            ..all()
        };
        assert_eq!(texts(&read_entries(&p, &o).unwrap().0), ["err\n"]);
        assert_eq!(parse_timestamp("since", "0").unwrap(), None);
        assert!(parse_timestamp("since", "yesterday").is_err());
        assert_eq!(
            parse_timestamp("since", "1.25")
                .unwrap()
                .unwrap()
                .timestamp_subsec_nanos(),
            250_000_000
        );
    }

    #[test]
    fn timestamps_and_framing() {
        let e = parse_line(
            line("hi\n", "stderr", "2024-01-01T00:00:01.5+00:00")
                .trim_end()
                .as_bytes(),
        )
        .unwrap();
        let o = LogOptions {
            timestamps: true,
            ..all()
        };
        let raw = o.encode(&e, true);
        assert_eq!(&raw[..], b"2024-01-01T00:00:01.500000000Z hi\n");
        let framed = o.encode(&e, false);
        assert_eq!(framed[0], 2);
        assert_eq!(&framed[8..], &raw[..]);
        assert_eq!(framed[7] as usize, raw.len());
    }

    #[test]
    fn a_missing_log_is_empty() {
        let d = tempfile::tempdir().unwrap();
        let (v, off) = read_entries(&d.path().join("none.log"), &all()).unwrap();
        assert!(v.is_empty());
        assert_eq!(off, 0);
    }

    #[tokio::test]
    async fn follow_sends_new_lines_until_the_container_stops() {
        let d = tempfile::tempdir().unwrap();
        let p = sample(d.path());
        // drop the torn line so appends start on a fresh line
        let full = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, full.trim_end_matches("{torn")).unwrap();
        let running = Arc::new(AtomicBool::new(true));
        let r2 = running.clone();
        let (tx, mut rx) = mpsc::channel(16);
        let o = LogOptions {
            follow: true,
            tail: Some(1),
            ..all()
        };
        let task = tokio::spawn(stream_logs(p.clone(), o, true, tx, move || {
            r2.load(Ordering::SeqCst)
        }));
        assert_eq!(&rx.recv().await.unwrap()[..], b"two\n");
        {
            let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
            f.write_all(line("three\n", "stdout", "2024-01-01T00:00:04Z").as_bytes())
                .unwrap();
        }
        assert_eq!(&rx.recv().await.unwrap()[..], b"three\n");
        {
            let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
            f.write_all(line("last\n", "stderr", "2024-01-01T00:00:05Z").as_bytes())
                .unwrap();
        }
        running.store(false, Ordering::SeqCst);
        assert_eq!(&rx.recv().await.unwrap()[..], b"last\n");
        assert!(rx.recv().await.is_none());
        task.await.unwrap().unwrap();
    }
}
