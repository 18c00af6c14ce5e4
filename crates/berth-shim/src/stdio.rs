//! One process's stdio: pipes (stdin only when asked for, /dev/null otherwise), or
//! a pty whose master the runtime hands over on a console socket. The shim's poll
//! loop reads the output itself and
//! - appends it to the process's log in Docker's json-file format, one JSON object
//!   per line (`{"log":"hello\n","stream":"stdout","time":"<RFC 3339 nanos>"}`), or
//!   in Kubernetes' CRI format ([`crate::crilog`]), so no output is lost while the
//!   manager or the engine is down;
//! - sends it live to every attached client. The init's output never waits for
//!   them (a client too slow to keep up misses chunks, the container goes on); an
//!   exec'd process's output does (it is paced: the loop stops reading it while an
//!   attached client is behind), as `docker exec` and kubelet's exec expect:
//!   nothing of `kubectl cp`'s tar stream may go missing.
//!
//! stdin comes from attached clients through a bounded queue, so a container that
//! does not read holds up its writers (the loop stops reading their requests), not
//! the shim.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use serde::Serialize;

use crate::fdio;
use crate::runtime::ChildStdio;

/// Docker (and containerd, for the CRI log) split lines longer than this into
/// partial entries.
pub(crate) const MAX_LINE: usize = 16 * 1024;
/// Bytes read from an output stream at a time.
pub const READ_BUF: usize = 8 * 1024;
/// stdin chunks queued before the loop stops reading its writers' requests.
const STDIN_QUEUE: usize = 16;
/// How long the runtime may take to send the pty master once it has connected.
const CONSOLE_SEND: Duration = Duration::from_secs(10);
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
    #[error("setting up stdio for polling: {0}")]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamKind {
    Stdout,
    Stderr,
}

impl StreamKind {
    pub(crate) fn index(self) -> usize {
        match self {
            StreamKind::Stdout => 0,
            StreamKind::Stderr => 1,
        }
    }
}

/// A json-file log, shared by a process's output streams.
///
/// Its interface is the seam for other log formats ([`OutputLog`]):
/// [`JsonLog::write`] takes the bytes of one stream as they were read,
/// [`JsonLog::finish`] says the stream ended.
#[derive(Debug)]
pub struct JsonLog {
    path: PathBuf,
    file: File,
    failed: bool,
    lines: [Lines; 2],
    rotation: Rotation,
    /// Bytes in the current file.
    size: u64,
}

/// json-file's rotation (`max-size`, `max-file`): once an entry would take the file
/// past `max_size` bytes it is renamed `<path>.1` (the older ones shifted up to
/// `<path>.<max_files - 1>`, the oldest dropped) and a new one begun; with one
/// file, it is emptied instead. `max_size` 0: never.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rotation {
    pub max_size: u64,
    pub max_files: u32,
}

/// The annotations berthd puts in the spec for json-file's rotation.
pub const MAX_SIZE_ANNOTATION: &str = "berth.log.max-size";
pub const MAX_FILE_ANNOTATION: &str = "berth.log.max-file";

impl Rotation {
    /// From the bundle spec's annotations; absent or unreadable ones mean none.
    pub fn from_annotations(spec: &serde_json::Value) -> Rotation {
        let get = |k: &str| {
            spec.pointer("/annotations")
                .and_then(|a| a.get(k))
                .and_then(serde_json::Value::as_str)
                .and_then(|v| v.parse::<u64>().ok())
        };
        Rotation {
            max_size: get(MAX_SIZE_ANNOTATION).unwrap_or(0),
            max_files: get(MAX_FILE_ANNOTATION)
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(1)
                .max(1),
        }
    }
}

#[derive(Serialize)]
struct Entry<'a> {
    log: &'a str,
    stream: StreamKind,
    time: &'a str,
}

/// Open (create, append) a log file at `path`, and the directories above it.
pub(crate) fn open_log_file(path: &Path) -> Result<File, IoError> {
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

impl JsonLog {
    /// Open (create, append) the log at `path`.
    pub fn open(path: &Path, rotation: Rotation) -> Result<JsonLog, IoError> {
        let file = open_log_file(path)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(JsonLog {
            path: path.to_path_buf(),
            file,
            failed: false,
            lines: Default::default(),
            rotation,
            size,
        })
    }

    /// Open the file at the log's path again (it was renamed away); later entries
    /// go to the new file.
    pub fn reopen(&mut self) -> Result<(), IoError> {
        self.file = open_log_file(&self.path)?;
        self.size = self.file.metadata().map(|m| m.len()).unwrap_or(0);
        self.failed = false;
        Ok(())
    }

    fn numbered(&self, n: u32) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    /// Begins a new file (see [`Rotation`]). A failure leaves the entries going to
    /// the current one: output must keep flowing.
    fn rotate(&mut self) -> std::io::Result<()> {
        if self.rotation.max_files <= 1 {
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        for n in (1..self.rotation.max_files - 1).rev() {
            match std::fs::rename(self.numbered(n), self.numbered(n + 1)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        std::fs::rename(&self.path, self.numbered(1))?;
        self.file = open_log_file(&self.path).map_err(std::io::Error::other)?;
        self.size = 0;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Output of `stream`, as read: every complete line becomes an entry (a long
    /// one several), stamped with the time it was read.
    pub fn write(&mut self, stream: StreamKind, data: &[u8]) {
        let time = crate::time::now_rfc3339();
        let mut lines = std::mem::take(&mut self.lines[stream.index()]);
        lines.feed(data, &mut |l| self.entry(stream, l, &time));
        self.lines[stream.index()] = lines;
    }

    /// `stream` ended: a last line without its newline becomes an entry.
    pub fn finish(&mut self, stream: StreamKind) {
        let time = crate::time::now_rfc3339();
        let mut lines = std::mem::take(&mut self.lines[stream.index()]);
        lines.finish(&mut |l| self.entry(stream, l, &time));
    }

    /// Append one entry. Output keeps flowing when the log cannot be written (a
    /// full disk must not block the container); the failure is logged once.
    fn entry(&mut self, stream: StreamKind, line: &[u8], time: &str) {
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
        let len = buf.len() as u64;
        if self.rotation.max_size > 0 && self.size > 0 && self.size + len > self.rotation.max_size {
            if let Err(e) = self.rotate() {
                if !std::mem::replace(&mut self.failed, true) {
                    tracing::error!(path = %self.path.display(), "rotating the container log: {e}");
                }
            }
        }
        // One write per entry: O_APPEND keeps the streams' lines whole.
        if let Err(e) = self.file.write_all(&buf) {
            if !std::mem::replace(&mut self.failed, true) {
                tracing::error!(path = %self.path.display(), "writing the container log: {e}");
            }
        } else {
            self.size += len;
        }
    }
}

/// The log a process's output goes to: Docker's json-file, or Kubernetes' CRI
/// format.
#[derive(Debug)]
pub enum OutputLog {
    Json(JsonLog),
    Cri(crate::crilog::CriLog),
}

impl OutputLog {
    /// Open (create, append) the log at `path`, CRI-formatted when `cri` (whose
    /// rotation is kubelet's), else json-file with `rotation`.
    pub fn open(path: &Path, cri: bool, rotation: Rotation) -> Result<OutputLog, IoError> {
        Ok(if cri {
            OutputLog::Cri(crate::crilog::CriLog::open(path)?)
        } else {
            OutputLog::Json(JsonLog::open(path, rotation)?)
        })
    }

    pub fn path(&self) -> &Path {
        match self {
            OutputLog::Json(l) => l.path(),
            OutputLog::Cri(l) => l.path(),
        }
    }

    /// Output of `stream`, as read.
    pub fn write(&mut self, stream: StreamKind, data: &[u8]) {
        match self {
            OutputLog::Json(l) => l.write(stream, data),
            OutputLog::Cri(l) => l.write(stream, data),
        }
    }

    /// `stream` ended.
    pub fn finish(&mut self, stream: StreamKind) {
        match self {
            OutputLog::Json(l) => l.finish(stream),
            OutputLog::Cri(l) => l.finish(stream),
        }
    }

    /// Open the file at the log's path again, after a rotation by rename.
    pub fn reopen(&mut self) -> Result<(), IoError> {
        match self {
            OutputLog::Json(l) => l.reopen(),
            OutputLog::Cri(l) => l.reopen(),
        }
    }
}

/// Splits a stream into lines (each keeping its `\n`), cutting lines longer than
/// [`MAX_LINE`] at a character boundary as Docker does.
#[derive(Debug, Default)]
pub(crate) struct Lines {
    pending: Vec<u8>,
}

impl Lines {
    pub(crate) fn feed(&mut self, mut data: &[u8], emit: &mut impl FnMut(&[u8])) {
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
    pub(crate) fn finish(&mut self, emit: &mut impl FnMut(&[u8])) {
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
        listener
            .set_nonblocking(true)
            .map_err(IoError::ConsoleSocket)?;
        Ok(ConsoleSocket {
            _dir: dir,
            path,
            listener,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Readable when the runtime has connected.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }

    /// The pty master if the runtime has connected (None while it has not).
    pub fn try_receive(&self) -> Option<Result<OwnedFd, IoError>> {
        match self.listener.accept() {
            Ok((stream, _)) => Some(receive_on(&stream)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
            Err(e) => Some(Err(IoError::ConsoleReceive(e))),
        }
    }

    /// Wait at most `limit` for the runtime to connect, and take the master.
    pub fn receive(&self, limit: Duration) -> Result<OwnedFd, IoError> {
        if !fdio::wait_readable(&self.listener, limit).map_err(IoError::ConsoleReceive)? {
            return Err(IoError::NoMaster);
        }
        self.try_receive().unwrap_or(Err(IoError::NoMaster))
    }
}

/// Take the master from a connection of the runtime: it connects and then sends,
/// so the message may take a moment.
fn receive_on(stream: &UnixStream) -> Result<OwnedFd, IoError> {
    stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_read_timeout(Some(CONSOLE_SEND)))
        .map_err(IoError::ConsoleReceive)?;
    match recv_fd(stream.as_raw_fd()) {
        Ok(Some(fd)) => Ok(fd),
        Ok(None) => Err(IoError::NoMaster),
        Err(e) => Err(IoError::ConsoleReceive(e)),
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

/// An output stream being read.
#[derive(Debug)]
struct Output {
    fd: OwnedFd,
    stream: StreamKind,
}

/// The writing side of a process's stdin and what is queued for it.
#[derive(Debug)]
struct StdinWriter {
    fd: OwnedFd,
    queue: VecDeque<Vec<u8>>,
    /// Bytes of the queue's first chunk already written.
    written: usize,
    /// Close once the queue is written.
    close: bool,
}

/// Stdin queued before the process's stdin exists.
#[derive(Debug, Default)]
struct StdinEarly {
    queue: VecDeque<Vec<u8>>,
    close: bool,
    /// The writer started (or never will): nothing more is held here.
    over: bool,
}

/// What reading an output stream gave.
#[derive(Debug)]
pub enum Read {
    /// Nothing yet (spurious wake-up).
    Nothing,
    /// Bytes, logged already, for attached clients.
    Data(StreamKind, Vec<u8>),
    /// The stream ended.
    Ended,
}

/// The stdio of one process, from setup until its output has ended.
#[derive(Debug)]
pub struct ProcessIo {
    terminal: bool,
    stdin_requested: bool,
    log: Option<OutputLog>,
    outputs: Vec<Output>,
    /// Every output stream has ended (or there never will be one).
    ended: bool,
    stdin: Option<StdinWriter>,
    /// Stdin from clients attached before the process's stdin exists (an exec's
    /// is made when it starts, and kubelet's and docker's clients attach first):
    /// handed to the writer when it starts.
    early: StdinEarly,
    console: Option<OwnedFd>,
    /// The output waits for attached clients that are behind (see
    /// [`ProcessIo::paced`]).
    paced: bool,
}

impl ProcessIo {
    /// Stdio for a process: its output goes to `log` (if any) and attached clients.
    pub fn new(terminal: bool, stdin: bool, log: Option<OutputLog>) -> ProcessIo {
        ProcessIo {
            terminal,
            stdin_requested: stdin,
            log,
            outputs: Vec::new(),
            ended: false,
            stdin: None,
            early: StdinEarly::default(),
            console: None,
            paced: false,
        }
    }

    /// From now on the output waits for attached clients that are behind instead
    /// of those clients missing chunks.
    pub fn pace(&mut self) {
        self.paced = true;
    }

    /// Whether the output waits for attached clients (the loop does not read it
    /// while one of them is a full backlog behind).
    pub fn paced(&self) -> bool {
        self.paced
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
    pub fn reopen_log(&mut self) -> Result<(), IoError> {
        self.log.as_mut().map_or(Ok(()), OutputLog::reopen)
    }

    /// The stdio to start the process's runtime command with, and for a terminal the
    /// console socket to pass. With pipes the loop reads from now on, so no output
    /// is lost whenever the process starts.
    pub fn prepare(&mut self) -> Result<(ChildStdio, Option<ConsoleSocket>), IoError> {
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
        for (fd, stream) in [(out_r, StreamKind::Stdout), (err_r, StreamKind::Stderr)] {
            fdio::set_nonblocking(&fd).map_err(IoError::Reactor)?;
            self.outputs.push(Output { fd, stream });
        }
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
    pub fn attach_console(&mut self, master: OwnedFd) -> Result<(), IoError> {
        fdio::set_nonblocking(&master).map_err(IoError::Reactor)?;
        if self.stdin_requested {
            let dup = master.try_clone().map_err(IoError::Reactor)?;
            self.start_stdin_writer(dup)?;
        }
        let reader = master.try_clone().map_err(IoError::Reactor)?;
        self.console = Some(master);
        self.outputs.push(Output {
            fd: reader,
            stream: StreamKind::Stdout,
        });
        Ok(())
    }

    /// The process will never run (its runtime command failed): end the output and
    /// stdin so waiters and attached clients are released.
    pub fn abandon(&mut self) {
        self.stdin = None;
        self.early = StdinEarly {
            over: true,
            ..StdinEarly::default()
        };
        self.outputs.clear();
        self.ended = true;
    }

    fn start_stdin_writer(&mut self, fd: OwnedFd) -> Result<(), IoError> {
        fdio::set_nonblocking(&fd).map_err(IoError::Reactor)?;
        let early = std::mem::replace(
            &mut self.early,
            StdinEarly {
                over: true,
                ..StdinEarly::default()
            },
        );
        let mut queue = early.queue;
        if early.close && self.terminal {
            queue.push_back(vec![VEOF]);
        }
        self.stdin = Some(StdinWriter {
            fd,
            queue,
            written: 0,
            close: early.close,
        });
        // What came early goes now: the loop only polls a writer with a queue, so
        // a close with nothing queued would otherwise never happen.
        self.flush_stdin();
        Ok(())
    }

    /// Queue bytes for the process's stdin.
    pub fn write_stdin(&mut self, data: Vec<u8>) -> Result<(), IoError> {
        if !self.stdin_requested {
            return Err(IoError::NoStdin);
        }
        match &mut self.stdin {
            Some(w) if !w.close => {
                w.queue.push_back(data);
                Ok(())
            }
            None if !self.early.over && !self.early.close => {
                self.early.queue.push_back(data);
                Ok(())
            }
            _ => Err(IoError::StdinClosed),
        }
    }

    /// Close the process's stdin once what is queued has been written.
    pub fn close_stdin(&mut self) -> Result<(), IoError> {
        if !self.stdin_requested {
            return Err(IoError::NoStdin);
        }
        if let Some(w) = &mut self.stdin {
            if !w.close && self.terminal {
                // The master cannot be closed without losing the output: send
                // end-of-file through the line discipline instead.
                w.queue.push_back(vec![VEOF]);
            }
            w.close = true;
        } else if !self.early.over {
            self.early.close = true;
        }
        self.flush_stdin();
        Ok(())
    }

    /// Whether more stdin may be queued now (a writer is not held up).
    pub fn stdin_has_room(&self) -> bool {
        match &self.stdin {
            Some(w) => w.queue.len() < STDIN_QUEUE,
            None => self.early.queue.len() < STDIN_QUEUE,
        }
    }

    /// The stdin descriptor, while something waits to be written to it.
    pub fn stdin_pending(&self) -> Option<BorrowedFd<'_>> {
        self.stdin
            .as_ref()
            .filter(|w| !w.queue.is_empty())
            .map(|w| w.fd.as_fd())
    }

    /// Write what is queued for stdin, as far as the pipe takes it; close it when
    /// asked and done, or when the process is gone (EPIPE).
    pub fn flush_stdin(&mut self) {
        let Some(w) = &mut self.stdin else {
            return;
        };
        while let Some(chunk) = w.queue.front() {
            match fdio::write(&w.fd, &chunk[w.written..]) {
                Ok(n) => {
                    w.written += n;
                    if w.written == chunk.len() {
                        w.queue.pop_front();
                        w.written = 0;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // EPIPE: the process is gone or closed its stdin.
                    tracing::debug!("writing stdin: {e}");
                    self.stdin = None;
                    return;
                }
            }
        }
        if w.close {
            // Dropping the writer closes the pipe: the process reads end of file.
            self.stdin = None;
        }
    }

    /// Set the terminal's window size.
    pub fn resize(&self, width: u16, height: u16) -> Result<(), IoError> {
        if !self.terminal {
            return Err(IoError::NoTerminal);
        }
        let master = self.console.as_ref().ok_or(IoError::NoConsole)?;
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

    /// Whether every output stream has ended.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The output streams still open, to poll.
    pub fn outputs(&self) -> impl Iterator<Item = (StreamKind, BorrowedFd<'_>)> {
        self.outputs.iter().map(|o| (o.stream, o.fd.as_fd()))
    }

    /// Read what `stream` has: logged here, returned for attached clients.
    pub fn read(&mut self, stream: StreamKind, buf: &mut [u8]) -> Read {
        let Some(i) = self.outputs.iter().position(|o| o.stream == stream) else {
            return Read::Nothing;
        };
        match fdio::read(&self.outputs[i].fd, buf) {
            Ok(0) => {}
            Ok(n) => {
                let data = &buf[..n];
                if let Some(log) = &mut self.log {
                    log.write(stream, data);
                }
                return Read::Data(stream, data.to_vec());
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Read::Nothing,
            // A pty master reads EIO once the last slave is closed.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => {}
            Err(e) => tracing::warn!(?stream, "reading output: {e}"),
        }
        self.outputs.remove(i);
        if let Some(log) = &mut self.log {
            log.finish(stream);
        }
        if self.outputs.is_empty() {
            self.ended = true;
        }
        Read::Ended
    }
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
    fn a_full_log_moves_to_numbered_files_and_the_oldest_goes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let rotation = Rotation {
            max_size: 200,
            max_files: 3,
        };
        let mut log = JsonLog::open(&path, rotation).unwrap();
        for i in 0..40 {
            log.write(StreamKind::Stdout, format!("line {i}\n").as_bytes());
        }
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let numbered = |n: u32| {
            let mut p = path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        for p in [path.clone(), numbered(1), numbered(2)] {
            let text = read(&p);
            assert!(
                !text.is_empty() && text.len() <= 200,
                "{}: {text}",
                p.display()
            );
        }
        assert!(!numbered(3).exists());
        // Oldest to newest, the lines are in order and end with the last.
        let all = [numbered(2), numbered(1), path.clone()]
            .iter()
            .map(|p| read(p))
            .collect::<String>();
        let nums: Vec<u32> = all
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["log"].as_str().unwrap().trim()[5..].parse().unwrap()
            })
            .collect();
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{nums:?}");
        assert_eq!(nums.last(), Some(&39));

        // One file: emptied instead.
        let single = dir.path().join("one-json.log");
        let mut log = JsonLog::open(
            &single,
            Rotation {
                max_size: 200,
                max_files: 1,
            },
        )
        .unwrap();
        for i in 0..40 {
            log.write(StreamKind::Stdout, format!("line {i}\n").as_bytes());
        }
        let text = read(&single);
        assert!(text.len() <= 200 && text.contains("line 39"), "{text}");
        assert!(!dir.path().join("one-json.log.1").exists());
    }

    #[test]
    fn log_entries_are_docker_json_file_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/c-json.log");
        let mut log = JsonLog::open(&path, Rotation::default()).unwrap();
        log.entry(
            StreamKind::Stdout,
            b"hello \"x\"\n",
            "2024-01-02T03:04:05.000000006Z",
        );
        log.entry(
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
    fn output_is_logged_line_by_line_per_stream() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let mut log = JsonLog::open(&path, Rotation::default()).unwrap();
        log.write(StreamKind::Stdout, b"a");
        log.write(StreamKind::Stderr, b"e\n");
        log.write(StreamKind::Stdout, b"b\nc");
        log.finish(StreamKind::Stdout);
        let text = std::fs::read_to_string(&path).unwrap();
        let got: Vec<(String, String)> = text
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["stream"].as_str().unwrap().into(),
                    v["log"].as_str().unwrap().into(),
                )
            })
            .collect();
        let want = [("stderr", "e\n"), ("stdout", "ab\n"), ("stdout", "c")];
        assert_eq!(
            got,
            want.map(|(s, l)| (s.to_string(), l.to_string())).to_vec()
        );
    }

    #[test]
    fn timestamps_are_utc_with_nanoseconds() {
        let t = crate::time::now_rfc3339();
        assert!(t.ends_with('Z'), "{t}");
        let frac = t.split('.').nth(1).unwrap();
        assert_eq!(frac.len(), "000000000Z".len(), "{t}");
    }
}
