//! The shim's service: one poll(2) loop on the shim's one thread. It accepts
//! connections on the shim's socket, reads each call (the contract's `wire`
//! protocol: one call per connection), turns it into [`Task`] calls and answers;
//! it reads the containers' output (to the log and to attached clients), writes
//! their stdin, and reads SIGCHLD and SIGTERM from the reaper's signalfd.
//!
//! A call runs to its end before the loop goes on (runtime commands included:
//! they are short, and a change to the task then never stops halfway when its
//! client hangs up). Calls that wait for an exit are parked and answered when the
//! task settles them. Errors become status codes only through `From<ShimError>` in
//! `error.rs`.

// Numbers here come from requests: no narrowing `as` (see the workspace lints).
#![deny(clippy::cast_possible_truncation)]

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags};

use crate::daemon::Readiness;
use crate::error::ShimError;
use crate::fdio;
use crate::layout::ExitRecord;
use crate::mounts::MountSpec;
use crate::stdio::{Read, StreamKind, READ_BUF};
use crate::task::{ConnId, LogTarget, ProcessStatus, Settled, Task};
use crate::wire::{self, pb, Code, Kind, Method, RpcStatus, HEADER};

/// How long in-flight answers (and attached clients) get once the shim decided to
/// exit.
const EXIT_GRACE: Duration = Duration::from_secs(5);
/// How long the loop stops accepting after a failed accept (out of descriptors,
/// most likely: calls in flight end and free some).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Output bytes queued for an attached client before a slow one misses chunks of
/// the init's output rather than slowing the container down, or holds up a paced
/// (exec'd) process's output until it has taken some.
const ATTACH_BACKLOG: usize = 64 * READ_BUF;

fn exit_status(r: ExitRecord) -> pb::ExitStatus {
    pb::ExitStatus {
        pid: r.pid,
        exit_status: r.exit_status,
        exited_at: r.exited_at,
        oom_killed: r.oom_killed,
    }
}

fn status(s: ProcessStatus) -> pb::Status {
    match s {
        ProcessStatus::Created => pb::Status::Created,
        ProcessStatus::Running => pb::Status::Running,
        ProcessStatus::Paused => pb::Status::Paused,
        ProcessStatus::Stopped => pb::Status::Stopped,
    }
}

/// An optional log: "" for none; relative paths are refused (the shim runs in /).
fn log_path(s: String, format: i32) -> Result<Option<LogTarget>, ShimError> {
    if s.is_empty() {
        return Ok(None);
    }
    let path = std::path::PathBuf::from(s);
    if path.is_relative() {
        return Err(ShimError::RelativeLogPath(path));
    }
    let cri = match pb::LogFormat::try_from(format) {
        Ok(pb::LogFormat::JsonFile) => false,
        Ok(pb::LogFormat::Cri) => true,
        Err(_) => {
            return Err(ShimError::BadRequest(format!(
                "unknown log format {format}"
            )))
        }
    };
    Ok(Some(LogTarget { path, cri }))
}

fn attach_frame(stream: StreamKind, data: Vec<u8>) -> Vec<u8> {
    let msg = pb::AttachResponse {
        stream: match stream {
            StreamKind::Stdout => pb::Stream::Stdout,
            StreamKind::Stderr => pb::Stream::Stderr,
        } as i32,
        data,
    };
    wire::frame(Kind::Message as u8, &msg)
}

fn decode<M: prost::Message + Default>(payload: &[u8]) -> Result<M, ShimError> {
    wire::decode(payload).map_err(|e| ShimError::BadRequest(e.to_string()))
}

fn reply(msg: &impl prost::Message) -> Vec<u8> {
    wire::frame(Kind::Reply as u8, msg)
}

fn status_frame(s: &RpcStatus) -> Vec<u8> {
    wire::frame(Kind::Status as u8, s)
}

fn error_frame(e: ShimError) -> Vec<u8> {
    tracing::debug!("answering with an error: {e}");
    status_frame(&RpcStatus::from(e))
}

/// What a connection is doing.
#[derive(Debug)]
enum State {
    /// Reading its call.
    Request,
    /// Its call waits for an exit; the task answers it.
    Parked,
    /// Sending the answer; closed once sent.
    Answering,
    /// Attach: stdin from the client, the process's output to it.
    Attach {
        exec_id: String,
        /// The client may still send stdin.
        input_open: bool,
        /// The output ended and the last frame is queued.
        ended: bool,
    },
}

#[derive(Debug)]
struct Conn {
    stream: UnixStream,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    state: State,
    /// The client's end of input was read; frames before it may still wait in
    /// `inbuf` (held up by a full stdin queue, or read with the end).
    eof: bool,
}

impl Conn {
    /// Send what is queued, as far as the socket takes it.
    fn flush(&mut self) -> std::io::Result<()> {
        while !self.out.is_empty() {
            match fdio::write(&self.stream, &self.out) {
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Read what the client sent (up to one frame's worth ahead): Ok(false) at end
    /// of file.
    fn fill(&mut self) -> std::io::Result<bool> {
        let mut buf = [0u8; 8192];
        while self.inbuf.len() < HEADER + wire::MAX_FRAME {
            match fdio::read(&self.stream, &mut buf) {
                Ok(0) => return Ok(false),
                Ok(n) => self.inbuf.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Whether a complete frame waits in the input.
    fn frame_ready(&self) -> bool {
        self.inbuf
            .first_chunk::<HEADER>()
            .and_then(|h| wire::parse_header(h).ok())
            .is_some_and(|(_, len)| self.inbuf.len() >= HEADER + len)
    }

    /// The next complete frame in the input, if there is one.
    fn next_frame(&mut self) -> Result<Option<(u8, Vec<u8>)>, ShimError> {
        let Some(header) = self.inbuf.first_chunk::<HEADER>() else {
            return Ok(None);
        };
        let (kind, len) =
            wire::parse_header(header).map_err(|e| ShimError::BadRequest(e.to_string()))?;
        if self.inbuf.len() < HEADER + len {
            return Ok(None);
        }
        let payload = self.inbuf[HEADER..HEADER + len].to_vec();
        self.inbuf.drain(..HEADER + len);
        Ok(Some((kind, payload)))
    }

    fn answer(&mut self, frame: Vec<u8>) {
        self.out.extend_from_slice(&frame);
        self.state = State::Answering;
    }

    /// Whether everything is said and the connection can close.
    fn done(&self) -> bool {
        match self.state {
            State::Answering => self.out.is_empty(),
            State::Attach { ended, .. } => ended && self.out.is_empty(),
            State::Request | State::Parked => false,
        }
    }
}

/// What a descriptor in the poll set belongs to.
#[derive(Debug, Clone)]
enum Token {
    Listener,
    Signals,
    Conn(ConnId),
    Output(String, StreamKind),
    Stdin(String),
}

/// The loop's state: the task, the socket and the connections.
struct Server {
    task: Task,
    listener: Option<UnixListener>,
    conns: BTreeMap<ConnId, Conn>,
    next_id: ConnId,
    accept_paused_until: Option<Instant>,
    buf: Vec<u8>,
}

/// Serve `listener` until the task is deleted or the shim is told to shut down,
/// then give in-flight answers [`EXIT_GRACE`] and unmount what is left.
pub fn serve(task: Task, listener: UnixListener, ready: &mut Readiness) -> std::io::Result<()> {
    let mut server = Server {
        task,
        listener: Some(listener),
        conns: BTreeMap::new(),
        next_id: 0,
        accept_paused_until: None,
        buf: vec![0u8; READ_BUF],
    };
    tracing::info!(id = server.task.id(), pid = std::process::id(), "serving");
    ready.ready();
    let result = server.run();
    server.task.emergency_unmount();
    result
}

impl Server {
    fn run(&mut self) -> std::io::Result<()> {
        let mut exit_by: Option<Instant> = None;
        loop {
            if self.task.shutdown_requested() && exit_by.is_none() {
                // No new calls; let in-flight answers (the Delete that asked for
                // it) go out.
                self.listener = None;
                exit_by = Some(Instant::now() + EXIT_GRACE);
            }
            if let Some(at) = exit_by {
                if self.conns.is_empty() {
                    return Ok(());
                }
                if Instant::now() >= at {
                    tracing::warn!("clients still connected after {EXIT_GRACE:?}; exiting anyway");
                    return Ok(());
                }
            }
            if self
                .accept_paused_until
                .is_some_and(|t| Instant::now() >= t)
            {
                self.accept_paused_until = None;
            }
            let had_conns = !self.conns.is_empty();
            let held = self.held_back();
            for exec_id in &held {
                // Output not read yet is not output that never ends: the exit
                // waits for it as long as a client holds it up.
                self.task.postpone_drain(exec_id);
            }
            let deadline = [self.task.next_deadline(), exit_by, self.accept_paused_until]
                .into_iter()
                .flatten()
                .min();
            for (token, revents) in self.poll(deadline, &held)? {
                match token {
                    Token::Listener => self.accept(),
                    Token::Signals => self.task.reaper().collect(),
                    Token::Conn(id) => self.on_conn(id, revents),
                    Token::Output(exec_id, stream) => self.on_output(&exec_id, stream),
                    Token::Stdin(exec_id) => {
                        if let Some(p) = self.task.find_mut(&exec_id) {
                            p.io_mut().flush_stdin();
                        }
                    }
                }
            }
            // Exits are routed after this turn's output was read, so a process's
            // last output is logged before its exit is recorded.
            self.task.route_exits();
            if self.task.reaper().take_terminate() {
                // A SIGTERM must not orphan a live container: it stops only an
                // idle shim.
                if let Err(e) = self.task.shutdown(false, None) {
                    tracing::warn!("ignoring SIGTERM: {e}");
                }
            }
            for (id, answer) in self.task.settle() {
                let frame = match answer {
                    Ok(Settled::Exit(r)) => reply(&exit_status(r)),
                    Ok(Settled::Done) => reply(&pb::Empty {}),
                    Err(e) => error_frame(e),
                };
                self.answer(id, frame);
            }
            // Attached clients whose output ended hear so before the cleanup below
            // (the runtime's delete, the unmount: milliseconds this loop does not
            // serve): `docker run` returns once its attach ends and its wait is
            // answered, and neither needs that cleanup.
            self.end_attaches();
            // After the answers: the exit is on its way before the runtime runs.
            self.task.clean_up_after_exit();
            // Stdin requests read earlier and held up by a full queue, now that
            // the queue may have room.
            let held: Vec<ConnId> = self
                .conns
                .iter()
                .filter(|(_, c)| {
                    !c.inbuf.is_empty()
                        && matches!(
                            c.state,
                            State::Attach {
                                input_open: true,
                                ..
                            }
                        )
                })
                .map(|(id, _)| *id)
                .collect();
            for id in held {
                self.attach_input(id);
                self.flush(id);
            }
            if had_conns && self.conns.is_empty() {
                release_free_memory();
            }
        }
    }

    /// The processes whose output waits: paced ones with an attached client
    /// that has a full backlog of it to take first, and a started init whose
    /// clients are still to attach (see `Task::init_output_held`). Their output
    /// is not polled until then (the next turn of the loop looks again), so the
    /// process blocks on its full pipe as it would writing to a slow terminal.
    fn held_back(&mut self) -> Vec<String> {
        let init_held = self.task.init_output_held();
        let mut held: Vec<String> = self
            .conns
            .values()
            .filter(|c| c.out.len() >= ATTACH_BACKLOG)
            .filter_map(|c| match &c.state {
                State::Attach {
                    exec_id,
                    ended: false,
                    ..
                } => Some(exec_id),
                _ => None,
            })
            .filter(|e| self.task.process(e).is_ok_and(|p| p.io().paced()))
            .cloned()
            .collect();
        if init_held {
            held.push(String::new());
        }
        held.sort_unstable();
        held.dedup();
        held
    }

    /// One poll(2) over everything: the ready descriptors with what they are;
    /// the output of the processes in `held` is left unread.
    fn poll(
        &self,
        deadline: Option<Instant>,
        held: &[String],
    ) -> std::io::Result<Vec<(Token, PollFlags)>> {
        let mut tokens = Vec::new();
        let mut fds = Vec::new();
        if let Some(l) = self.listener.as_ref() {
            if self.accept_paused_until.is_none() {
                tokens.push(Token::Listener);
                fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
            }
        }
        tokens.push(Token::Signals);
        fds.push(PollFd::new(self.task.reaper_fd(), PollFlags::POLLIN));
        for p in self.task.processes() {
            let outputs = p
                .io()
                .outputs()
                .filter(|_| !held.iter().any(|e| e == p.exec_id()));
            for (stream, fd) in outputs {
                tokens.push(Token::Output(p.exec_id().to_string(), stream));
                fds.push(PollFd::new(fd, PollFlags::POLLIN));
            }
            if let Some(fd) = p.io().stdin_pending() {
                tokens.push(Token::Stdin(p.exec_id().to_string()));
                fds.push(PollFd::new(fd, PollFlags::POLLOUT));
            }
        }
        for (id, c) in &self.conns {
            let mut events = PollFlags::empty();
            if !c.out.is_empty() {
                events |= PollFlags::POLLOUT;
            }
            match &c.state {
                State::Request | State::Parked => events |= PollFlags::POLLIN,
                State::Attach {
                    exec_id,
                    input_open: true,
                    ended: false,
                } if !c.eof && self.stdin_has_room(exec_id) => events |= PollFlags::POLLIN,
                _ => {}
            }
            tokens.push(Token::Conn(*id));
            fds.push(PollFd::new(c.stream.as_fd(), events));
        }
        fdio::poll(&mut fds, fdio::timeout_until(deadline))?;
        Ok(fds
            .iter()
            .zip(tokens)
            .filter_map(|(fd, token)| {
                let r = fd.revents()?;
                (!r.is_empty()).then_some((token, r))
            })
            .collect())
    }

    fn stdin_has_room(&self, exec_id: &str) -> bool {
        self.task
            .process(exec_id)
            .is_ok_and(|p| p.io().stdin_has_room())
    }

    fn accept(&mut self) {
        let Some(listener) = self.listener.as_ref() else {
            return;
        };
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    if let Err(e) = stream.set_nonblocking(true) {
                        tracing::warn!("accepting a connection: {e}");
                        continue;
                    }
                    let id = self.next_id;
                    self.next_id += 1;
                    self.conns.insert(
                        id,
                        Conn {
                            stream,
                            inbuf: Vec::new(),
                            out: Vec::new(),
                            state: State::Request,
                            eof: false,
                        },
                    );
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!("accepting a connection: {e}");
                    self.accept_paused_until = Some(Instant::now() + ACCEPT_BACKOFF);
                    return;
                }
            }
        }
    }

    fn drop_conn(&mut self, id: ConnId) {
        self.conns.remove(&id);
        self.task.forget(id);
    }

    /// Queue `frame` as the answer of connection `id` (gone: nothing to do).
    fn answer(&mut self, id: ConnId, frame: Vec<u8>) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.answer(frame);
        }
        self.flush(id);
    }

    /// Send what connection `id` has queued; close it when it is done or broken.
    fn flush(&mut self, id: ConnId) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        match c.flush() {
            Ok(()) if c.done() => self.drop_conn(id),
            Ok(()) => {}
            Err(e) => {
                tracing::debug!("answering a client: {e}");
                self.drop_conn(id);
            }
        }
    }

    fn on_conn(&mut self, id: ConnId, revents: PollFlags) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let hangup = revents.intersects(PollFlags::POLLHUP | PollFlags::POLLERR);
        let readable = revents.intersects(PollFlags::POLLIN) || hangup;
        match &mut c.state {
            State::Request if readable => match c.fill() {
                Ok(true) => self.on_request(id),
                Ok(false) if c.inbuf.is_empty() => self.drop_conn(id),
                // An attach whose client sent all its input at once, end included.
                Ok(false) if c.frame_ready() => {
                    c.eof = true;
                    self.on_request(id);
                }
                Ok(false) => {
                    let e = ShimError::BadRequest("the call ended before its frame did".into());
                    tracing::debug!("reading a call: {e}");
                    self.answer(id, error_frame(e));
                }
                Err(e) => {
                    tracing::debug!("reading a call: {e}");
                    self.drop_conn(id);
                }
            },
            // A client that hangs up cancels its call, as with gRPC (sending more
            // is against the protocol, and taken as the same).
            State::Parked if readable => self.drop_conn(id),
            State::Attach {
                input_open: true,
                ended: false,
                ..
            } if readable => {
                match c.fill() {
                    Ok(true) => {}
                    // End of input: what was read with it is still handed on
                    // (attach_input), then only the output is left to send.
                    Ok(false) | Err(_) => c.eof = true,
                }
                self.attach_input(id);
                self.flush(id);
            }
            // Nothing more to read from it: a hang-up means it is gone.
            _ if hangup && !revents.intersects(PollFlags::POLLOUT) => self.drop_conn(id),
            _ => self.flush(id),
        }
    }

    fn on_request(&mut self, id: ConnId) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let (kind, payload) = match c.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!("reading a call: {e}");
                return self.answer(id, error_frame(e));
            }
        };
        let Some(method) = Method::from_kind(kind) else {
            let e = ShimError::BadRequest(format!("unknown method {kind}"));
            return self.answer(id, error_frame(e));
        };
        if method == Method::Attach {
            return self.start_attach(id, &payload);
        }
        match self.unary(id, method, &payload) {
            Ok(Some(frame)) => self.answer(id, frame),
            Ok(None) => {
                if let Some(c) = self.conns.get_mut(&id) {
                    c.state = State::Parked;
                }
            }
            Err(e) => self.answer(id, error_frame(e)),
        }
    }

    /// A unary call's answer, framed; None when the call was parked.
    fn unary(
        &mut self,
        conn: ConnId,
        method: Method,
        payload: &[u8],
    ) -> Result<Option<Vec<u8>>, ShimError> {
        let task = &mut self.task;
        Ok(Some(match method {
            Method::Connect => {
                decode::<pb::ConnectRequest>(payload)?;
                reply(&pb::ConnectResponse {
                    id: task.id().to_string(),
                    shim_pid: std::process::id(),
                    task_pid: task.task_pid(),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                })
            }
            Method::State => {
                let req: pb::StateRequest = decode(payload)?;
                let s = task.process_state(&req.exec_id)?;
                reply(&pb::StateResponse {
                    id: task.id().to_string(),
                    exec_id: s.exec_id,
                    bundle: task.bundle().to_string_lossy().into_owned(),
                    pid: s.pid,
                    status: status(s.status) as i32,
                    terminal: s.terminal,
                    stdin: s.stdin,
                    exit: s.exit.map(exit_status),
                    shim_pid: std::process::id(),
                    log_path: s
                        .log_path
                        .map(|p| p.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                })
            }
            Method::Create => {
                let req: pb::CreateRequest = decode(payload)?;
                let mounts = req
                    .rootfs
                    .into_iter()
                    .map(|m| MountSpec {
                        typ: m.r#type,
                        source: m.source,
                        target: m.target,
                        options: m.options,
                    })
                    .collect();
                let log = log_path(req.log_path, req.log_format)?;
                let pid = task.create(mounts, log, req.stdin, req.start, req.attaches)?;
                reply(&pb::CreateResponse {
                    pid,
                    started: req.start,
                })
            }
            Method::Start => {
                let req: pb::StartRequest = decode(payload)?;
                let pid = task.start(&req.exec_id)?;
                reply(&pb::StartResponse { pid })
            }
            Method::Kill => {
                let r: pb::KillRequest = decode(payload)?;
                task.kill(&r.exec_id, r.signal, r.all)?;
                reply(&pb::Empty {})
            }
            Method::Delete => {
                let r: pb::DeleteRequest = decode(payload)?;
                match task.delete(&r.exec_id, r.force, conn)? {
                    Some(exit) => reply(&exit_status(exit)),
                    None => return Ok(None),
                }
            }
            Method::Exec => {
                let r: pb::ExecRequest = decode(payload)?;
                let log = log_path(r.log_path, r.log_format)?;
                task.exec(&r.exec_id, &r.process, r.stdin, log)?;
                reply(&pb::Empty {})
            }
            Method::ResizePty => {
                let r: pb::ResizePtyRequest = decode(payload)?;
                task.resize_pty(&r.exec_id, r.width, r.height)?;
                reply(&pb::Empty {})
            }
            Method::CloseIo => {
                let r: pb::CloseIoRequest = decode(payload)?;
                task.close_io(&r.exec_id)?;
                reply(&pb::Empty {})
            }
            Method::Wait => {
                let r: pb::WaitRequest = decode(payload)?;
                match task.wait(&r.exec_id, conn)? {
                    Some(exit) => reply(&exit_status(exit)),
                    None => return Ok(None),
                }
            }
            Method::Pids => {
                decode::<pb::PidsRequest>(payload)?;
                let processes = task
                    .pids()?
                    .into_iter()
                    .map(|(pid, exec_id)| pb::ProcessInfo { pid, exec_id })
                    .collect();
                reply(&pb::PidsResponse { processes })
            }
            Method::Pause => {
                decode::<pb::PauseRequest>(payload)?;
                task.pause()?;
                reply(&pb::Empty {})
            }
            Method::Resume => {
                decode::<pb::ResumeRequest>(payload)?;
                task.resume()?;
                reply(&pb::Empty {})
            }
            Method::Update => {
                let r: pb::UpdateRequest = decode(payload)?;
                task.update(&r.resources)?;
                reply(&pb::Empty {})
            }
            Method::Stats => {
                decode::<pb::StatsRequest>(payload)?;
                let stats = task.stats()?;
                reply(&pb::StatsResponse {
                    stats: stats.to_string().into_bytes(),
                })
            }
            Method::ReopenLog => {
                let r: pb::ReopenLogRequest = decode(payload)?;
                task.reopen_log(&r.exec_id)?;
                reply(&pb::Empty {})
            }
            Method::Shutdown => {
                let r: pb::ShutdownRequest = decode(payload)?;
                if !task.shutdown(r.force, Some(conn))? {
                    return Ok(None);
                }
                reply(&pb::Empty {})
            }
            Method::Attach => return Err(ShimError::BadRequest("attach is a stream".into())),
        }))
    }

    /// Live stdio: the first request names the process (and may carry stdin); the
    /// shim answers with an empty `Reply` once subscribed, then the output as it
    /// comes, until it ends. Output before the attach is not replayed.
    fn start_attach(&mut self, id: ConnId, first: &[u8]) {
        let result = (|| {
            let first: pb::AttachRequest = decode(first)?;
            let exec_id = first.exec_id.clone();
            let p = self.task.process_mut(&exec_id)?;
            let ended = p.io().ended();
            feed(p.io_mut(), first)?;
            if exec_id.is_empty() {
                self.task.init_attached();
            }
            Ok::<_, ShimError>((exec_id, ended))
        })();
        match result {
            Err(e) => self.answer(id, error_frame(e)),
            Ok((_, true)) => self.answer(id, status_frame(&RpcStatus::new(Code::Ok, ""))),
            Ok((exec_id, false)) => {
                if let Some(c) = self.conns.get_mut(&id) {
                    // The client starts the process only after this reply: output
                    // from then on reaches it (the start is another connection,
                    // which this loop could otherwise serve first).
                    c.out.extend_from_slice(&reply(&pb::Empty {}));
                    c.state = State::Attach {
                        exec_id,
                        input_open: true,
                        ended: false,
                    };
                }
                self.attach_input(id);
                self.flush(id);
            }
        }
    }

    /// Hand an attached client's stdin requests to its process while its stdin
    /// queue has room (the rest waits in the socket: the writer is held up).
    fn attach_input(&mut self, id: ConnId) {
        loop {
            let Some(c) = self.conns.get_mut(&id) else {
                return;
            };
            let State::Attach {
                exec_id,
                input_open: true,
                ended: false,
            } = &c.state
            else {
                return;
            };
            let exec_id = exec_id.clone();
            if !self
                .task
                .process(&exec_id)
                .is_ok_and(|p| p.io().stdin_has_room())
            {
                return;
            }
            let result = match c.next_frame() {
                Ok(None) => {
                    if c.eof {
                        if let State::Attach { input_open, .. } = &mut c.state {
                            *input_open = false;
                        }
                    }
                    return;
                }
                Ok(Some((k, payload))) if k == Kind::Message as u8 => {
                    decode(&payload).and_then(|m| {
                        let p = self.task.process_mut(&exec_id)?;
                        feed(p.io_mut(), m)
                    })
                }
                // End of input (or a client that breaks the protocol): only the
                // output is left to send.
                Ok(Some(_)) | Err(_) => {
                    if let State::Attach { input_open, .. } = &mut c.state {
                        *input_open = false;
                    }
                    return;
                }
            };
            if let Err(e) = result {
                if let Some(c) = self.conns.get_mut(&id) {
                    c.out.extend_from_slice(&error_frame(e));
                    c.state = State::Answering;
                }
                return;
            }
        }
    }

    /// Read a process's output: logged by its io, sent to its attached clients.
    fn on_output(&mut self, exec_id: &str, stream: StreamKind) {
        let Some(p) = self.task.find_mut(exec_id) else {
            return;
        };
        let paced = p.io().paced();
        let Read::Data(stream, data) = p.io_mut().read(stream, &mut self.buf) else {
            return;
        };
        let ids: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                matches!(&c.state, State::Attach { exec_id: e, ended: false, .. } if e == exec_id)
            })
            .map(|(id, _)| *id)
            .collect();
        if ids.is_empty() {
            return;
        }
        let frame = attach_frame(stream, data);
        for id in ids {
            if let Some(c) = self.conns.get_mut(&id) {
                // Paced output was only read because every client had room (see
                // held_back): at most a chunk per stream over the backlog.
                if paced || c.out.len() < ATTACH_BACKLOG {
                    c.out.extend_from_slice(&frame);
                } else {
                    tracing::debug!("attached client too slow: a chunk skipped");
                }
            }
            self.flush(id);
        }
    }

    /// End the streams of attached clients whose process's output has ended.
    fn end_attaches(&mut self) {
        let ending: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| match &c.state {
                State::Attach {
                    exec_id,
                    ended: false,
                    ..
                } => self.task.process(exec_id).map_or(true, |p| p.io().ended()),
                _ => false,
            })
            .map(|(id, _)| *id)
            .collect();
        for id in ending {
            if let Some(c) = self.conns.get_mut(&id) {
                c.out
                    .extend_from_slice(&status_frame(&RpcStatus::new(Code::Ok, "")));
                if let State::Attach { ended, .. } = &mut c.state {
                    *ended = true;
                }
            }
            self.flush(id);
        }
    }
}

/// Hand one attach request's stdin (and close) to the process.
fn feed(io: &mut crate::stdio::ProcessIo, msg: pb::AttachRequest) -> Result<(), ShimError> {
    if !msg.stdin.is_empty() {
        io.write_stdin(msg.stdin)?;
    }
    if msg.close_stdin {
        io.close_stdin()?;
    }
    io.flush_stdin();
    Ok(())
}

/// Hand the heap's free pages back to the kernel. A shim spends its life idle
/// after a burst of work (create and start parse the bundle, read the runtime's
/// output); glibc keeps what that freed, which would otherwise stay resident for
/// as long as the container runs.
fn release_free_memory() {
    // SAFETY: malloc_trim only walks glibc's own heap bookkeeping (under its lock)
    // and madvises free pages away; no Rust object is touched.
    unsafe {
        libc::malloc_trim(0);
    }
}
