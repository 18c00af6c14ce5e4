//! One process's stdio: pipes (stdin only when asked for, /dev/null otherwise), or
//! a pty whose master the runtime hands over on a console socket. The shim reads
//! the output itself and
//! - appends it to the process's log in Docker's json-file format, one JSON object
//!   per line (`{"log":"hello\n","stream":"stdout","time":"<RFC 3339 nanos>"}`), so
//!   no output is lost while the manager or the engine is down;
//! - sends it live to every attached client. The init's output never waits for
//!   them (a client too slow to keep up misses chunks, the container goes on); an
//!   exec'd process's output does (it is paced), as `docker exec` and kubelet's
//!   exec expect: nothing of `kubectl cp`'s tar stream may go missing.
//!
//! stdin comes from attached clients through a queue, so a container that does not
//! read holds up its writers, not the shim.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use serde::Serialize;
use tokio::net::UnixListener;
use tokio::sync::{broadcast, mpsc, watch};

use crate::fdio::{self, AsyncFile};
use crate::runtime::ChildStdio;

/// Docker splits lines longer than this into partial entries.
const MAX_LINE: usize = 16 * 1024;
/// Bytes read from an output stream at a time.
const READ_BUF: usize = 8 * 1024;
/// Output chunks buffered per attached client before a slow one misses some.
const ATTACH_BACKLOG: usize = 64;
/// stdin chunks queued before a writer waits.
const STDIN_QUEUE: usize = 16;
/// End of transmission: what a terminal's line discipline reads as end of file.
const VEOF: u8 = 0x04;

/// Errors setting up or using a process's stdio.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error("opening log file {path}: {source}")]
    Log {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("creating stdio pipes: {0}")]
    Pipe(std::io::Error),
    #[error("opening /dev/null: {0}")]
    DevNull(std::io::Error),
    #[error("setting up stdio with the reactor: {0}")]
    Reactor(std::io::Error),
    #[error("creating the console socket: {0}")]
    ConsoleSocket(std::io::Error),
    #[error("receiving the pty master from the runtime: {0}")]
    ConsoleReceive(std::io::Error),
    #[error("the runtime connected to the console socket but sent no pty master")]
    NoMaster,
    #[error("stdin was not opened for this process")]
    NoStdin,
    #[error("stdin of this process is closed")]
    StdinClosed,
    #[error("the process has no terminal")]
    NoTerminal,
    #[error("the process's terminal is not set up yet")]
    NoConsole,
    #[error("resizing the terminal: {0}")]
    Resize(std::io::Error),
}

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamKind {
    Stdout,
    Stderr,
}

/// A piece of output for attached clients.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub stream: StreamKind,
    pub data: Arc<[u8]>,
}

enum StdinMsg {
    Data(Vec<u8>),
    Close,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A json-file log, shared by a process's output streams.
#[derive(Debug)]
pub struct JsonLog {
    path: PathBuf,
    file: Mutex<File>,
    failed: AtomicBool,
}

#[derive(Serialize)]
struct Entry<'a> {
    log: &'a str,
    stream: StreamKind,
    time: &'a str,
}

impl JsonLog {
    /// Open (create, append) the log at `path`.
    pub fn open(path: &Path) -> Result<JsonLog, IoError> {
        let err = |source| IoError::Log {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(err)?;
        }
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o640)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(err)?;
        Ok(JsonLog {
            path: path.to_path_buf(),
            file: Mutex::new(file),
            failed: AtomicBool::new(false),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one entry. Output keeps flowing when the log cannot be written (a
    /// full disk must not block the container); the failure is logged once.
    fn write(&self, stream: StreamKind, line: &[u8], time: &str) {
        let text = String::from_utf8_lossy(line);
        let mut buf = Vec::with_capacity(text.len() + 80);
        let entry = Entry {
            log: &text,
            stream,
            time,
        };
        if serde_json::to_writer(&mut buf, &entry).is_err() {
            return;
        }
        buf.push(b'\n');
        // One write per entry: O_APPEND keeps the streams' lines whole.
        if let Err(e) = lock(&self.file).write_all(&buf) {
            if !self.failed.swap(true, Ordering::Relaxed) {
                tracing::error!(path = %self.path.display(), "writing the container log: {e}");
            }
        }
    }
}

/// The log a process's output goes to: Docker's json-file, or Kubernetes' CRI
/// format ([`crate::crilog`]).
#[derive(Debug)]
pub enum OutputLog {
    Json(JsonLog),
    Cri(crate::crilog::CriLog),
}

impl OutputLog {
    /// Open (create, append) the log at `path`, CRI-formatted when `cri`.
    pub fn open(path: &Path, cri: bool) -> Result<OutputLog, IoError> {
        Ok(if cri {
            OutputLog::Cri(crate::crilog::CriLog::open(path)?)
        } else {
            OutputLog::Json(JsonLog::open(path)?)
        })
    }

    pub fn path(&self) -> &Path {
        match self {
            OutputLog::Json(l) => l.path(),
            OutputLog::Cri(l) => l.path(),
        }
    }

    /// Append a piece of a stream: a line with its newline, a piece of a long
    /// line, or (`last`) what the stream ended with.
    fn write(&self, stream: StreamKind, piece: &[u8], time: &str, last: bool) {
        match self {
            OutputLog::Json(l) => l.write(stream, piece, time),
            OutputLog::Cri(l) => l.write(stream, piece, time, last),
        }
    }

    /// Open the file at the log's path again, after a rotation by rename.
    pub fn reopen(&self) -> Result<(), IoError> {
        match self {
            OutputLog::Json(l) => {
                let fresh = JsonLog::open(&l.path)?;
                let file = fresh
                    .file
                    .into_inner()
                    .unwrap_or_else(PoisonError::into_inner);
                *lock(&l.file) = file;
                Ok(())
            }
            OutputLog::Cri(l) => l.reopen(),
        }
    }
}

/// Splits a stream into lines (each keeping its `\n`), cutting lines longer than
/// [`MAX_LINE`] at a character boundary as Docker does.
#[derive(Debug, Default)]
struct Lines {
    pending: Vec<u8>,
}

impl Lines {
    fn feed(&mut self, mut data: &[u8], emit: &mut impl FnMut(&[u8])) {
        while let Some(i) = data.iter().position(|b| *b == b'\n') {
            let (line, rest) = data.split_at(i + 1);
            if self.pending.is_empty() {
                emit_cut(line, emit);
            } else {
                self.pending.extend_from_slice(line);
                emit_cut(&self.pending, emit);
                self.pending.clear();
            }
            data = rest;
        }
        self.pending.extend_from_slice(data);
        while self.pending.len() >= MAX_LINE {
            let cut = utf8_cut(&self.pending[..MAX_LINE]);
            emit(&self.pending[..cut]);
            self.pending.drain(..cut);
        }
    }

    /// A last line without its newline, when the stream ends.
    fn finish(&mut self, emit: &mut impl FnMut(&[u8])) {
        if !self.pending.is_empty() {
            emit_cut(&self.pending, emit);
            self.pending.clear();
        }
    }
}

/// Emit `line` in pieces of at most [`MAX_LINE`] bytes.
fn emit_cut(mut line: &[u8], emit: &mut impl FnMut(&[u8])) {
    while line.len() > MAX_LINE {
        let (piece, rest) = line.split_at(utf8_cut(&line[..MAX_LINE]));
        emit(piece);
        line = rest;
    }
    emit(line);
}

/// Where to cut `b` so no UTF-8 character is split (all of it if it is not UTF-8).
fn utf8_cut(b: &[u8]) -> usize {
    match std::str::from_utf8(b) {
        Err(e) if e.error_len().is_none() && e.valid_up_to() > 0 => e.valid_up_to(),
        _ => b.len(),
    }
}

fn now_rfc3339() -> String {
    crate::time::now_rfc3339()
}

/// The stdio of one process, from setup until its output has ended.
#[derive(Debug)]
pub struct ProcessIo {
    terminal: bool,
    stdin_requested: bool,
    log: Option<OutputLog>,
    hub: Mutex<Option<broadcast::Sender<Chunk>>>,
    stdin: Mutex<Option<mpsc::Sender<StdinMsg>>>,
    console: Mutex<Option<Arc<OwnedFd>>>,
    pumps: AtomicUsize,
    drained: watch::Sender<bool>,
    /// The output waits for attached clients that are behind (see [`ProcessIo::pace`]).
    paced: AtomicBool,
}

impl std::fmt::Debug for StdinMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StdinMsg::Data(d) => write!(f, "Data({} bytes)", d.len()),
            StdinMsg::Close => f.write_str("Close"),
        }
    }
}

/// The console socket a runtime sends a pty master on (`--console-socket`).
#[derive(Debug)]
pub struct ConsoleSocket {
    // Removed (with the socket) on drop.
    _dir: tempfile::TempDir,
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    fn new() -> Result<ConsoleSocket, IoError> {
        // A short path under /tmp: task directories can be too long for sun_path.
        let dir = tempfile::Builder::new()
            .prefix("berth-shim-console-")
            .tempdir()
            .map_err(IoError::ConsoleSocket)?;
        let path = dir.path().join("c.sock");
        let listener = UnixListener::bind(&path).map_err(IoError::ConsoleSocket)?;
        Ok(ConsoleSocket {
            _dir: dir,
            path,
            listener,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accept the runtime's connection and take the pty master it sends.
    pub async fn receive(self) -> Result<OwnedFd, IoError> {
        let (stream, _) = self
            .listener
            .accept()
            .await
            .map_err(IoError::ConsoleReceive)?;
        loop {
            stream.readable().await.map_err(IoError::ConsoleReceive)?;
            match stream.try_io(tokio::io::Interest::READABLE, || {
                recv_fd(stream.as_raw_fd())
            }) {
                Ok(Some(fd)) => return Ok(fd),
                Ok(None) => return Err(IoError::NoMaster),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(IoError::ConsoleReceive(e)),
            }
        }
    }
}

/// Receive one message and the first descriptor passed with it (SCM_RIGHTS).
fn recv_fd(sock: RawFd) -> std::io::Result<Option<OwnedFd>> {
    let mut data = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut data)];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)?;
    let mut fds = msg
        .cmsgs()?
        .filter_map(|c| match c {
            ControlMessageOwned::ScmRights(fds) => Some(fds),
            _ => None,
        })
        .flatten()
        .map(|fd| {
            // SAFETY: the kernel just installed this descriptor in our table for this
            // message; nothing else refers to it, so it is ours to own and close.
            unsafe { OwnedFd::from_raw_fd(fd) }
        });
    // Extra descriptors are closed when the iterator is dropped.
    Ok(fds.next())
}

impl ProcessIo {
    /// Stdio for a process: its output goes to `log` (if any) and attached clients.
    pub fn new(terminal: bool, stdin: bool, log: Option<OutputLog>) -> Arc<ProcessIo> {
        let (hub, _) = broadcast::channel(ATTACH_BACKLOG);
        let (drained, _) = watch::channel(false);
        Arc::new(ProcessIo {
            terminal,
            stdin_requested: stdin,
            log,
            hub: Mutex::new(Some(hub)),
            stdin: Mutex::new(None),
            console: Mutex::new(None),
            pumps: AtomicUsize::new(0),
            drained,
            paced: AtomicBool::new(false),
        })
    }

    /// From now on the output waits while an attached client is a full backlog
    /// behind, instead of that client missing chunks.
    pub fn pace(&self) {
        self.paced.store(true, Ordering::SeqCst);
    }

    /// For paced output: wait until every attached client has room for a chunk
    /// from each of the two output streams.
    async fn room(&self) {
        if !self.paced.load(Ordering::SeqCst) {
            return;
        }
        let mut delay = Duration::from_millis(1);
        loop {
            let full = lock(&self.hub)
                .as_ref()
                .is_some_and(|h| h.receiver_count() > 0 && h.len() + 2 > ATTACH_BACKLOG);
            if !full {
                return;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(20));
        }
    }

    pub fn terminal(&self) -> bool {
        self.terminal
    }

    pub fn stdin_requested(&self) -> bool {
        self.stdin_requested
    }

    pub fn log_path(&self) -> Option<&Path> {
        self.log.as_ref().map(OutputLog::path)
    }

    /// Reopen the log at its path (kubelet renamed it away); no log, nothing to do.
    pub fn reopen_log(&self) -> Result<(), IoError> {
        self.log.as_ref().map_or(Ok(()), OutputLog::reopen)
    }

    /// The stdio to start the process's runtime command with, and for a terminal the
    /// console socket to pass. With pipes the shim starts reading at once, so no
    /// output is lost whenever the process starts.
    pub fn prepare(self: &Arc<Self>) -> Result<(ChildStdio, Option<ConsoleSocket>), IoError> {
        let null = || -> Result<OwnedFd, IoError> {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_CLOEXEC)
                .open("/dev/null")
                .map(OwnedFd::from)
                .map_err(IoError::DevNull)
        };
        if self.terminal {
            let console = ConsoleSocket::new()?;
            let stdio = ChildStdio {
                stdin: null()?,
                stdout: null()?,
                stderr: null()?,
            };
            return Ok((stdio, Some(console)));
        }
        let stdin = if self.stdin_requested {
            let (r, w) = fdio::pipe().map_err(IoError::Pipe)?;
            self.start_stdin_writer(w)?;
            r
        } else {
            null()?
        };
        let (out_r, out_w) = fdio::pipe().map_err(IoError::Pipe)?;
        let (err_r, err_w) = fdio::pipe().map_err(IoError::Pipe)?;
        let out = AsyncFile::new(out_r).map_err(IoError::Reactor)?;
        let err = AsyncFile::new(err_r).map_err(IoError::Reactor)?;
        self.pumps.store(2, Ordering::SeqCst);
        tokio::spawn(pump(self.clone(), out, StreamKind::Stdout));
        tokio::spawn(pump(self.clone(), err, StreamKind::Stderr));
        Ok((
            ChildStdio {
                stdin,
                stdout: out_w,
                stderr: err_w,
            },
            None,
        ))
    }

    /// Take over the pty master the runtime sent: its output is "stdout".
    pub fn attach_console(self: &Arc<Self>, master: OwnedFd) -> Result<(), IoError> {
        let master = Arc::new(master);
        if self.stdin_requested {
            let dup = master.try_clone().map_err(IoError::Reactor)?;
            self.start_stdin_writer(dup)?;
        }
        let reader = AsyncFile::new(master.try_clone().map_err(IoError::Reactor)?)
            .map_err(IoError::Reactor)?;
        *lock(&self.console) = Some(master);
        self.pumps.store(1, Ordering::SeqCst);
        tokio::spawn(pump(self.clone(), reader, StreamKind::Stdout));
        Ok(())
    }

    /// The process will never run (its runtime command failed): end the output and
    /// stdin so waiters and attached clients are released.
    pub fn abandon(&self) {
        lock(&self.stdin).take();
        if self.pumps.load(Ordering::SeqCst) == 0 {
            self.close_output();
        }
    }

    fn start_stdin_writer(self: &Arc<Self>, fd: OwnedFd) -> Result<(), IoError> {
        let file = AsyncFile::new(fd).map_err(IoError::Reactor)?;
        let (tx, mut rx) = mpsc::channel::<StdinMsg>(STDIN_QUEUE);
        let terminal = self.terminal;
        tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                let result = match msg {
                    StdinMsg::Data(d) => file.write_all(&d).await,
                    StdinMsg::Close if terminal => {
                        // The master cannot be closed without losing the output:
                        // send end-of-file through the line discipline instead.
                        let r = file.write_all(&[VEOF]).await;
                        if let Err(e) = r {
                            tracing::debug!("sending EOF to the terminal: {e}");
                        }
                        break;
                    }
                    StdinMsg::Close => break,
                };
                if let Err(e) = result {
                    // EPIPE: the process is gone or closed its stdin.
                    tracing::debug!("writing stdin: {e}");
                    break;
                }
            }
            // Dropping `file` closes the pipe: the process reads end of file.
        });
        *lock(&self.stdin) = Some(tx);
        Ok(())
    }

    /// Queue bytes for the process's stdin.
    pub async fn write_stdin(&self, data: Vec<u8>) -> Result<(), IoError> {
        if !self.stdin_requested {
            return Err(IoError::NoStdin);
        }
        let tx = lock(&self.stdin).clone().ok_or(IoError::StdinClosed)?;
        tx.send(StdinMsg::Data(data))
            .await
            .map_err(|_| IoError::StdinClosed)
    }

    /// Close the process's stdin once what is queued has been written.
    pub async fn close_stdin(&self) -> Result<(), IoError> {
        if !self.stdin_requested {
            return Err(IoError::NoStdin);
        }
        let Some(tx) = lock(&self.stdin).take() else {
            return Ok(());
        };
        // An error means the writer is gone and the pipe closed already.
        let _ = tx.send(StdinMsg::Close).await;
        Ok(())
    }

    /// Set the terminal's window size.
    pub fn resize(&self, width: u16, height: u16) -> Result<(), IoError> {
        if !self.terminal {
            return Err(IoError::NoTerminal);
        }
        let master = lock(&self.console).clone().ok_or(IoError::NoConsole)?;
        let ws = libc::winsize {
            ws_row: height,
            ws_col: width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: `master` is an open descriptor we own for the duration of the call,
        // and TIOCSWINSZ reads one `winsize` from the pointer, which is valid.
        let r = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        if r < 0 {
            return Err(IoError::Resize(std::io::Error::last_os_error()));
        }
        Ok(())
    }

    /// A receiver of live output; None once the output has ended.
    pub fn subscribe(&self) -> Option<broadcast::Receiver<Chunk>> {
        lock(&self.hub).as_ref().map(broadcast::Sender::subscribe)
    }

    /// Wait until the output streams have ended, at most `limit`.
    pub async fn wait_drained(&self, limit: Duration) -> bool {
        let mut rx = self.drained.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|d| *d))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    fn publish(&self, stream: StreamKind, data: &[u8]) {
        if let Some(hub) = lock(&self.hub).as_ref() {
            if hub.receiver_count() > 0 {
                // Fails only without receivers: nobody is attached.
                let _ = hub.send(Chunk {
                    stream,
                    data: Arc::from(data),
                });
            }
        }
    }

    fn pump_done(&self) {
        if self.pumps.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.close_output();
        }
    }

    fn close_output(&self) {
        // Dropping the sender ends every attached client's stream.
        lock(&self.hub).take();
        self.drained.send_replace(true);
    }
}

/// Copy one output stream to the log and to attached clients until it ends.
async fn pump(io: Arc<ProcessIo>, file: AsyncFile, stream: StreamKind) {
    let mut buf = vec![0u8; READ_BUF];
    let mut lines = Lines::default();
    loop {
        match file.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                let data = &buf[..n];
                if let Some(log) = &io.log {
                    let time = now_rfc3339();
                    lines.feed(data, &mut |l| log.write(stream, l, &time, false));
                }
                io.room().await;
                io.publish(stream, data);
            }
            // A pty master reads EIO once the last slave is closed.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
            Err(e) => {
                tracing::warn!(?stream, "reading output: {e}");
                break;
            }
        }
    }
    if let Some(log) = &io.log {
        let time = now_rfc3339();
        lines.finish(&mut |l| log.write(stream, l, &time, true));
    }
    io.pump_done();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut lines = Lines::default();
        for c in chunks {
            lines.feed(c, &mut |l| out.push(l.to_vec()));
        }
        lines.finish(&mut |l| out.push(l.to_vec()));
        out
    }

    #[test]
    fn lines_keep_their_newline_and_partials_are_flushed() {
        assert_eq!(
            split(&[b"hel", b"lo\nwor", b"ld\n\nlast"]),
            vec![
                b"hello\n".to_vec(),
                b"world\n".to_vec(),
                b"\n".to_vec(),
                b"last".to_vec()
            ]
        );
    }

    #[test]
    fn long_lines_are_cut_on_character_boundaries() {
        let mut line = vec![b'a'; MAX_LINE - 1];
        line.extend_from_slice("é\n".as_bytes());
        let out = split(&[&line]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].len(), MAX_LINE - 1);
        assert_eq!(out[1], "é\n".as_bytes());
    }

    #[test]
    fn log_entries_are_docker_json_file_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/c-json.log");
        let log = JsonLog::open(&path).unwrap();
        log.write(
            StreamKind::Stdout,
            b"hello \"x\"\n",
            "2024-01-02T03:04:05.000000006Z",
        );
        log.write(
            StreamKind::Stderr,
            b"\xffbad\n",
            "2024-01-02T03:04:05.000000007Z",
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            r#"{"log":"hello \"x\"\n","stream":"stdout","time":"2024-01-02T03:04:05.000000006Z"}"#
        );
        let v: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(v["stream"], "stderr");
        assert_eq!(v["log"], "\u{fffd}bad\n");
    }

    #[test]
    fn timestamps_are_utc_with_nanoseconds() {
        let t = now_rfc3339();
        assert!(t.ends_with('Z'), "{t}");
        let frac = t.split('.').nth(1).unwrap();
        assert_eq!(frac.len(), "000000000Z".len(), "{t}");
    }
}
