//! Typed messages between the runtime and the processes it forks, over a
//! SOCK_SEQPACKET socketpair (one datagram per message, so no framing; file
//! descriptors ride along with SCM_RIGHTS).
//!
//! Each side calls methods named for what they say (`init_ready()`,
//! `wait_for_mappings()`), never raw reads and writes. An error in a child travels
//! to the runtime as a message and is printed there. End of file means the peer is
//! gone: the runtime never waits on a dead child, because every copy of the
//! child's end is either closed by the runtime right after forking or held only by
//! that child (and closed on its exit or its execve: both ends are close-on-exec).

use std::collections::BTreeMap;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use serde::{Deserialize, Serialize};

use crate::state::OciState;

/// Messages are small; an error text is the largest thing sent.
const MAX_MESSAGE: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("create a socketpair: {0}")]
    Create(#[source] nix::Error),
    #[error("send {what}: {source}")]
    Send {
        what: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("receive a message: {0}")]
    Receive(#[source] nix::Error),
    #[error("the other process closed the channel")]
    Closed,
    #[error("malformed message: {0}")]
    Decode(#[source] serde_json::Error),
    #[error("encode {what}: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("expected {expected}, got {got}")]
    Unexpected {
        expected: &'static str,
        got: &'static str,
    },
    #[error("the {0} message carried no file descriptor")]
    MissingFd(&'static str),
}

/// Why a child failed; the kind decides the exit code of `run` and `exec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureKind {
    /// Anything during setup.
    Setup,
    /// The executable does not exist (exit code 127).
    NotFound,
    /// The executable exists but cannot be executed (exit code 126).
    NotExecutable,
}

impl FailureKind {
    /// The exit code a shell (and Docker) gives this failure.
    pub fn exit_code(self) -> i32 {
        match self {
            FailureKind::Setup => 1,
            FailureKind::NotFound => 127,
            FailureKind::NotExecutable => 126,
        }
    }
}

/// An error reported by a child process.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ChildFailure {
    pub kind: FailureKind,
    pub message: String,
}

impl ChildFailure {
    pub fn setup(e: impl std::fmt::Display) -> Self {
        ChildFailure {
            kind: FailureKind::Setup,
            message: e.to_string(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
enum Message {
    // runtime → intermediate
    CgroupJoined(BTreeMap<String, PathBuf>),
    MappingsWritten,
    // intermediate → runtime
    UserNsCreated,
    ChildPid(i32),
    // init → runtime
    RunCreateHooks,
    ConsoleMaster,
    Ready,
    // runtime → init
    HooksDone(Box<OciState>),
    // init or exec'd process → runtime, and the answer
    SeccompFd,
    SeccompDone,
    // any child → runtime
    Failed(ChildFailure),
}

impl Message {
    fn name(&self) -> &'static str {
        match self {
            Message::CgroupJoined(_) => "cgroup-joined",
            Message::MappingsWritten => "mappings-written",
            Message::UserNsCreated => "user-namespace-created",
            Message::ChildPid(_) => "child-pid",
            Message::RunCreateHooks => "run-create-hooks",
            Message::ConsoleMaster => "console-master",
            Message::Ready => "ready",
            Message::HooksDone(_) => "hooks-done",
            Message::SeccompFd => "seccomp-fd",
            Message::SeccompDone => "seccomp-done",
            Message::Failed(_) => "failed",
        }
    }
}

/// What the intermediate process tells the runtime.
#[derive(Debug)]
pub enum IntermediateEvent {
    /// It created a user namespace: write its uid/gid maps now.
    UserNsCreated,
    /// The host pid of the process it forked (the init, or the exec'd process).
    ChildPid(i32),
}

/// What the init tells the runtime.
#[derive(Debug)]
pub enum InitEvent {
    /// Run the prestart and createRuntime hooks, then answer `hooks_done`.
    RunCreateHooks,
    /// The pty master (for a foreground run without a console socket).
    ConsoleMaster(OwnedFd),
    /// The seccomp listener fd, for the agent: answer `seccomp_done`.
    SeccompFd(OwnedFd),
    /// Everything is set up; the init now blocks on exec.fifo.
    Ready,
}

/// What an exec'd process tells the runtime before its execve.
#[derive(Debug)]
pub enum ExecEvent {
    /// The pty master (for a foreground exec without a console socket).
    ConsoleMaster(OwnedFd),
    /// The seccomp listener fd, for the agent: answer `seccomp_done`.
    SeccompFd(OwnedFd),
    /// The execve succeeded (the channel closed on exec).
    Executed,
}

/// One end of a channel.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

/// A connected pair: (runtime's end, child's end).
pub fn pair() -> Result<(Channel, Channel), ChannelError> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(ChannelError::Create)?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn send(&self, msg: &Message, fd: Option<RawFd>) -> Result<(), ChannelError> {
        let what = msg.name();
        let data =
            serde_json::to_vec(msg).map_err(|source| ChannelError::Encode { what, source })?;
        let iov = [IoSlice::new(&data)];
        let fds;
        let cmsgs: Vec<ControlMessage<'_>> = match fd {
            Some(f) => {
                fds = [f];
                vec![ControlMessage::ScmRights(&fds)]
            }
            None => Vec::new(),
        };
        loop {
            match sendmsg::<()>(
                self.fd.as_raw_fd(),
                &iov,
                &cmsgs,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(source) => return Err(ChannelError::Send { what, source }),
            }
        }
    }

    fn recv(&self) -> Result<(Message, Option<OwnedFd>), ChannelError> {
        // The message's size first (a peek without a control buffer installs
        // no fd), so that a buffer of that size is touched rather than
        // MAX_MESSAGE bytes: in a freshly forked child every page written is
        // a copy-on-write fault.
        let size = loop {
            let mut probe = [0u8; 1];
            let mut iov = [IoSliceMut::new(&mut probe)];
            match recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                None,
                MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC,
            ) {
                Ok(msg) => break msg.bytes,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(ChannelError::Receive(e)),
            }
        };
        let mut buf = vec![0u8; size.clamp(1, MAX_MESSAGE)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let (len, fd) = loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let r = recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            );
            match r {
                Ok(msg) => {
                    let mut fd = None;
                    for c in msg.cmsgs().map_err(ChannelError::Receive)? {
                        if let ControlMessageOwned::ScmRights(fds) = c {
                            for (i, raw) in fds.iter().enumerate() {
                                // SAFETY: the kernel installed these fds in our
                                // table for this message; we are their only owner.
                                let owned = unsafe { OwnedFd::from_raw_fd(*raw) };
                                if i == 0 {
                                    fd = Some(owned);
                                }
                            }
                        }
                    }
                    break (msg.bytes, fd);
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(ChannelError::Receive(e)),
            }
        };
        if len == 0 {
            return Err(ChannelError::Closed);
        }
        let msg = serde_json::from_slice(&buf[..len]).map_err(ChannelError::Decode)?;
        Ok((msg, fd))
    }

    /// Receive, turning a child's failure message into an error.
    fn recv_ok(&self) -> Result<(Message, Option<OwnedFd>), Received> {
        match self.recv() {
            Ok((Message::Failed(f), _)) => Err(Received::Failure(f)),
            Ok(m) => Ok(m),
            Err(e) => Err(Received::Channel(e)),
        }
    }

    // ---- runtime → intermediate -------------------------------------------

    /// The intermediate is in the container's cgroup (these are its paths).
    pub fn cgroup_joined(&self, paths: &BTreeMap<String, PathBuf>) -> Result<(), ChannelError> {
        self.send(&Message::CgroupJoined(paths.clone()), None)
    }

    /// The uid/gid maps of the new user namespace are written.
    pub fn mappings_written(&self) -> Result<(), ChannelError> {
        self.send(&Message::MappingsWritten, None)
    }

    /// Wait for the intermediate's next step.
    pub fn wait_for_intermediate(&self) -> Result<IntermediateEvent, Received> {
        match self.recv_ok()? {
            (Message::UserNsCreated, _) => Ok(IntermediateEvent::UserNsCreated),
            (Message::ChildPid(p), _) => Ok(IntermediateEvent::ChildPid(p)),
            (m, _) => Err(unexpected("user-namespace-created or child-pid", &m)),
        }
    }

    // ---- intermediate → runtime -------------------------------------------

    /// Wait until the runtime has put us in the container's cgroup.
    pub fn wait_for_cgroup(&self) -> Result<BTreeMap<String, PathBuf>, Received> {
        match self.recv_ok()? {
            (Message::CgroupJoined(p), _) => Ok(p),
            (m, _) => Err(unexpected("cgroup-joined", &m)),
        }
    }

    /// We unshared a user namespace; the runtime should write its maps.
    pub fn user_ns_created(&self) -> Result<(), ChannelError> {
        self.send(&Message::UserNsCreated, None)
    }

    /// Wait until the runtime wrote the maps.
    pub fn wait_for_mappings(&self) -> Result<(), Received> {
        match self.recv_ok()? {
            (Message::MappingsWritten, _) => Ok(()),
            (m, _) => Err(unexpected("mappings-written", &m)),
        }
    }

    /// The host pid of the process we forked.
    pub fn child_pid(&self, pid: i32) -> Result<(), ChannelError> {
        self.send(&Message::ChildPid(pid), None)
    }

    // ---- init → runtime ---------------------------------------------------

    /// Ask the runtime to run the prestart and createRuntime hooks and wait for
    /// it; the answer carries the state the createContainer and startContainer
    /// hooks receive.
    pub fn run_create_hooks(&self) -> Result<OciState, Received> {
        self.send(&Message::RunCreateHooks, None)
            .map_err(Received::Channel)?;
        match self.recv_ok()? {
            (Message::HooksDone(s), _) => Ok(*s),
            (m, _) => Err(unexpected("hooks-done", &m)),
        }
    }

    /// Hand the pty master to the runtime.
    pub fn console_master(&self, master: RawFd) -> Result<(), ChannelError> {
        self.send(&Message::ConsoleMaster, Some(master))
    }

    /// Hand the seccomp listener fd to the runtime and wait until it has
    /// passed it on to the agent (every notified syscall blocks until then).
    pub fn seccomp_fd(&self, fd: RawFd) -> Result<(), Received> {
        self.send(&Message::SeccompFd, Some(fd))
            .map_err(Received::Channel)?;
        match self.recv_ok()? {
            (Message::SeccompDone, _) => Ok(()),
            (m, _) => Err(unexpected("seccomp-done", &m)),
        }
    }

    /// The seccomp listener fd reached the agent.
    pub fn seccomp_done(&self) -> Result<(), ChannelError> {
        self.send(&Message::SeccompDone, None)
    }

    /// Setup is complete; the init is about to block on exec.fifo.
    pub fn init_ready(&self) -> Result<(), ChannelError> {
        self.send(&Message::Ready, None)
    }

    /// Report a failure (best effort: the runtime may be gone already).
    pub fn failed(&self, f: ChildFailure) {
        let _ = self.send(&Message::Failed(f), None);
    }

    // ---- runtime → init ---------------------------------------------------

    /// The create hooks ran; `state` is what the container's own hooks get.
    pub fn hooks_done(&self, state: &OciState) -> Result<(), ChannelError> {
        self.send(&Message::HooksDone(Box::new(state.clone())), None)
    }

    /// Wait for the init's next step.
    pub fn wait_for_init(&self) -> Result<InitEvent, Received> {
        match self.recv_ok()? {
            (Message::RunCreateHooks, _) => Ok(InitEvent::RunCreateHooks),
            (Message::ConsoleMaster, Some(fd)) => Ok(InitEvent::ConsoleMaster(fd)),
            (Message::ConsoleMaster, None) => {
                Err(Received::Channel(ChannelError::MissingFd("console-master")))
            }
            (Message::SeccompFd, Some(fd)) => Ok(InitEvent::SeccompFd(fd)),
            (Message::SeccompFd, None) => {
                Err(Received::Channel(ChannelError::MissingFd("seccomp-fd")))
            }
            (Message::Ready, _) => Ok(InitEvent::Ready),
            (m, _) => Err(unexpected("an init step", &m)),
        }
    }

    /// Wait for an exec'd process: end of file means its execve succeeded (the
    /// channel is close-on-exec); a message means it failed before. A pty master
    /// or a seccomp fd may come first; call again for the outcome.
    pub fn wait_for_exec(&self) -> Result<ExecEvent, Received> {
        match self.recv() {
            Err(ChannelError::Closed) => Ok(ExecEvent::Executed),
            Err(e) => Err(Received::Channel(e)),
            Ok((Message::Failed(f), _)) => Err(Received::Failure(f)),
            Ok((Message::ConsoleMaster, Some(fd))) => Ok(ExecEvent::ConsoleMaster(fd)),
            Ok((Message::SeccompFd, Some(fd))) => Ok(ExecEvent::SeccompFd(fd)),
            Ok((m, _)) => Err(unexpected("exec or failure", &m)),
        }
    }
}

/// Why a wait on the channel did not give the expected message.
#[derive(Debug, thiserror::Error)]
pub enum Received {
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error(transparent)]
    Failure(ChildFailure),
}

fn unexpected(expected: &'static str, got: &Message) -> Received {
    Received::Channel(ChannelError::Unexpected {
        expected,
        got: got.name(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_eof_is_reported() {
        let (parent, child) = pair().unwrap();
        child.user_ns_created().unwrap();
        assert!(matches!(
            parent.wait_for_intermediate().unwrap(),
            IntermediateEvent::UserNsCreated
        ));
        parent.mappings_written().unwrap();
        child.wait_for_mappings().unwrap();
        child.child_pid(42).unwrap();
        assert!(matches!(
            parent.wait_for_intermediate().unwrap(),
            IntermediateEvent::ChildPid(42)
        ));
        child.failed(ChildFailure {
            kind: FailureKind::NotFound,
            message: "nope".into(),
        });
        match parent.wait_for_init() {
            Err(Received::Failure(f)) => {
                assert_eq!(f.kind, FailureKind::NotFound);
                assert_eq!(f.message, "nope");
            }
            other => panic!("{other:?}"),
        }
        drop(child);
        assert!(matches!(
            parent.wait_for_init(),
            Err(Received::Channel(ChannelError::Closed))
        ));
    }

    #[test]
    fn fds_ride_along() {
        let (parent, child) = pair().unwrap();
        let f = std::fs::File::open("/proc/self/exe").unwrap();
        child.console_master(f.as_raw_fd()).unwrap();
        match parent.wait_for_init().unwrap() {
            InitEvent::ConsoleMaster(fd) => assert!(fd.as_raw_fd() >= 0),
            other => panic!("{other:?}"),
        }
        child.seccomp_done().unwrap();
        drop(child);
        assert!(matches!(
            parent.wait_for_exec(),
            Err(Received::Channel(ChannelError::Unexpected { .. }))
        ));
        assert!(matches!(parent.wait_for_exec(), Ok(ExecEvent::Executed)));
    }
}
