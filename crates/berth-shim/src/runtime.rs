//! Drives the OCI runtime binary through runc's command line, so berth-runtime,
//! runc and crun are interchangeable: `--root <runtime root> --log <task
//! dir>/runtime.log --log-format json <command> ...`.
//!
//! Commands are spawned with `std::process::Command` and waited for through the
//! reaper (never `Child::wait`), synchronously: the shim's poll loop does nothing
//! else while a runtime command runs (they are short; the exits and output that
//! arrive meanwhile are queued by the kernel and handled once it returns). While
//! waiting it reads the command's own output and takes a pty master sent on the
//! console socket. When one fails, the error carries the runtime's own
//! message: the last `error` line it wrote to its JSON log during this command, or
//! else the last line of its stderr.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags};

use crate::fdio;
use crate::reaper::{Exit, Reaper};
use crate::stdio::{ConsoleSocket, IoError};

/// How long the output of a command that has exited may take to reach end of
/// file (a grandchild could hold the pipe open).
const OUTPUT_GRACE: Duration = Duration::from_secs(2);
/// Most bytes kept from a command's stdout or stderr.
const OUTPUT_LIMIT: usize = 4 << 20;

/// Errors running the runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("runtime {0} not found (or not executable)")]
    NotFound(String),
    #[error("starting `{binary} {command}`: {source}")]
    Spawn {
        binary: PathBuf,
        command: String,
        source: std::io::Error,
    },
    #[error("creating pipes for `{command}`: {source}")]
    Pipe {
        command: String,
        source: std::io::Error,
    },
    #[error("waiting for `{command}`: {source}")]
    Wait {
        command: String,
        source: std::io::Error,
    },
    #[error("runtime {command} failed: {message}")]
    Failed { command: String, message: String },
    #[error("runtime {command} printed unexpected output: {source}")]
    Output {
        command: String,
        source: serde_json::Error,
    },
    #[error("reading pid file {path}: {source}")]
    PidFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("pid file {path} holds {content:?}, not a pid")]
    BadPidFile { path: PathBuf, content: String },
}

impl RuntimeError {
    /// The runtime says the container does not exist (runc, crun and berth-runtime
    /// all put it this way): for a delete, what was asked has happened.
    pub fn is_not_exist(&self) -> bool {
        matches!(self, RuntimeError::Failed { message, .. } if message.contains("does not exist"))
    }
}

/// The stdio a command runs with.
#[derive(Debug)]
pub struct ChildStdio {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// One container's runtime: binary, state root, log and container id.
#[derive(Debug, Clone)]
pub struct Runtime {
    binary: PathBuf,
    root: PathBuf,
    log: PathBuf,
    id: String,
}

/// A pipe a command writes to, read while it runs.
struct Capture {
    fd: OwnedFd,
    data: Vec<u8>,
    open: bool,
}

impl Capture {
    fn new(fd: OwnedFd) -> std::io::Result<Capture> {
        fdio::set_nonblocking(&fd)?;
        Ok(Capture {
            fd,
            data: Vec::new(),
            open: true,
        })
    }

    /// Read what is there; closes at end of file or on an error.
    fn read(&mut self) {
        let mut buf = [0u8; 4096];
        loop {
            match fdio::read(&self.fd, &mut buf) {
                Ok(0) => {
                    self.open = false;
                    return;
                }
                Ok(n) => {
                    let room = OUTPUT_LIMIT.saturating_sub(self.data.len());
                    self.data.extend_from_slice(&buf[..n.min(room)]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.open = false;
                    return;
                }
            }
        }
    }
}

/// What a command's wait also looks after: its output pipes and a console socket.
struct Watch<'a> {
    captures: Vec<Capture>,
    console: Option<&'a ConsoleSocket>,
    master: Option<Result<OwnedFd, IoError>>,
}

impl Runtime {
    pub fn new(binary: PathBuf, root: PathBuf, log: PathBuf, id: String) -> Self {
        Runtime {
            binary,
            root,
            log,
            id,
        }
    }

    /// `create --bundle B --pid-file P [--console-socket S] ID`, with the
    /// container's stdio (which the init inherits); with `start`, `run --detach`
    /// with the same arguments, which starts the init too. Returns the pty master
    /// when the runtime sent it while it ran.
    pub fn create(
        &self,
        reaper: &mut Reaper,
        bundle: &Path,
        pid_file: &Path,
        console: Option<&ConsoleSocket>,
        stdio: ChildStdio,
        start: bool,
    ) -> Result<Option<Result<OwnedFd, IoError>>, RuntimeError> {
        let mut args: Vec<OsString> = Vec::new();
        if start {
            args.push("--detach".into());
        }
        args.extend([
            "--bundle".into(),
            bundle.into(),
            "--pid-file".into(),
            pid_file.into(),
        ]);
        if let Some(c) = console {
            args.extend(["--console-socket".into(), c.path().into()]);
        }
        args.push(self.id.clone().into());
        let command = if start { "run" } else { "create" };
        self.run_with(reaper, command, args, stdio, console)
    }

    /// `exec --process P --detach --pid-file F [--console-socket S] ID`.
    pub fn exec(
        &self,
        reaper: &mut Reaper,
        process: &Path,
        pid_file: &Path,
        console: Option<&ConsoleSocket>,
        stdio: ChildStdio,
    ) -> Result<Option<Result<OwnedFd, IoError>>, RuntimeError> {
        let mut args: Vec<OsString> = vec![
            "--process".into(),
            process.into(),
            "--detach".into(),
            "--pid-file".into(),
            pid_file.into(),
        ];
        if let Some(c) = console {
            args.extend(["--console-socket".into(), c.path().into()]);
        }
        args.push(self.id.clone().into());
        self.run_with(reaper, "exec", args, stdio, console)
    }

    pub fn start(&self, reaper: &mut Reaper) -> Result<(), RuntimeError> {
        self.capture(reaper, "start", vec![self.id.clone().into()], None)
            .map(drop)
    }

    pub fn kill(&self, reaper: &mut Reaper, signal: i32, all: bool) -> Result<(), RuntimeError> {
        let mut args: Vec<OsString> = Vec::new();
        if all {
            args.push("--all".into());
        }
        args.push(self.id.clone().into());
        args.push(signal.to_string().into());
        self.capture(reaper, "kill", args, None).map(drop)
    }

    pub fn delete(&self, reaper: &mut Reaper, force: bool) -> Result<(), RuntimeError> {
        let mut args: Vec<OsString> = Vec::new();
        if force {
            args.push("--force".into());
        }
        args.push(self.id.clone().into());
        self.capture(reaper, "delete", args, None).map(drop)
    }

    pub fn pause(&self, reaper: &mut Reaper) -> Result<(), RuntimeError> {
        self.capture(reaper, "pause", vec![self.id.clone().into()], None)
            .map(drop)
    }

    pub fn resume(&self, reaper: &mut Reaper) -> Result<(), RuntimeError> {
        self.capture(reaper, "resume", vec![self.id.clone().into()], None)
            .map(drop)
    }

    /// `ps --format json ID`: the container's pids.
    pub fn ps(&self, reaper: &mut Reaper) -> Result<Vec<i32>, RuntimeError> {
        let args = vec!["--format".into(), "json".into(), self.id.clone().into()];
        let out = self.capture(reaper, "ps", args, None)?;
        serde_json::from_slice(&out).map_err(|source| RuntimeError::Output {
            command: "ps".into(),
            source,
        })
    }

    /// `update -r - ID`, the resources JSON on stdin.
    pub fn update(&self, reaper: &mut Reaper, resources: &[u8]) -> Result<(), RuntimeError> {
        let pipe_err = |source| RuntimeError::Pipe {
            command: "update".into(),
            source,
        };
        let (read, write) = fdio::pipe().map_err(pipe_err)?;
        // The resources fit in the pipe's buffer (checked by the caller), so this
        // write cannot block; closing the write end gives the runtime its EOF.
        let mut file = std::fs::File::from(write);
        std::io::Write::write_all(&mut file, resources).map_err(pipe_err)?;
        drop(file);
        let args = vec!["-r".into(), "-".into(), self.id.clone().into()];
        self.capture(reaper, "update", args, Some(read)).map(drop)
    }

    /// `events --stats ID`: the `data` object of the stats event.
    pub fn stats(&self, reaper: &mut Reaper) -> Result<serde_json::Value, RuntimeError> {
        let args = vec!["--stats".into(), self.id.clone().into()];
        let out = self.capture(reaper, "events", args, None)?;
        let line = out
            .split(|b| *b == b'\n')
            .find(|l| !l.iter().all(u8::is_ascii_whitespace))
            .unwrap_or_default();
        let mut event: serde_json::Value =
            serde_json::from_slice(line).map_err(|source| RuntimeError::Output {
                command: "events".into(),
                source,
            })?;
        Ok(event
            .get_mut("data")
            .map(serde_json::Value::take)
            .unwrap_or(event))
    }

    /// Run a command whose stdout and stderr the shim reads.
    fn capture(
        &self,
        reaper: &mut Reaper,
        command: &str,
        args: Vec<OsString>,
        stdin: Option<OwnedFd>,
    ) -> Result<Vec<u8>, RuntimeError> {
        let pipe_err = |source| RuntimeError::Pipe {
            command: command.to_string(),
            source,
        };
        let stdin = match stdin {
            Some(fd) => fd,
            None => OwnedFd::from(std::fs::File::open("/dev/null").map_err(pipe_err)?),
        };
        let (out_r, out_w) = fdio::pipe().map_err(pipe_err)?;
        let (err_r, err_w) = fdio::pipe().map_err(pipe_err)?;
        let mut watch = Watch {
            captures: vec![
                Capture::new(out_r).map_err(pipe_err)?,
                Capture::new(err_r).map_err(pipe_err)?,
            ],
            console: None,
            master: None,
        };
        let log_offset = self.log_len();
        let pid = self.spawn(
            command,
            &args,
            ChildStdio {
                stdin,
                stdout: out_w,
                stderr: err_w,
            },
        )?;
        let exit = wait(reaper, pid, &mut watch).map_err(|source| RuntimeError::Wait {
            command: command.to_string(),
            source,
        })?;
        let mut captures = watch.captures.into_iter();
        let stdout = captures.next().map(|c| c.data).unwrap_or_default();
        let stderr = captures.next().map(|c| c.data).unwrap_or_default();
        if exit.status != 0 {
            return Err(self.failure(command, log_offset, &stderr, exit.status));
        }
        Ok(stdout)
    }

    /// Run a command with the given stdio (the container's), taking a pty master
    /// sent on `console` while it runs.
    fn run_with(
        &self,
        reaper: &mut Reaper,
        command: &str,
        args: Vec<OsString>,
        stdio: ChildStdio,
        console: Option<&ConsoleSocket>,
    ) -> Result<Option<Result<OwnedFd, IoError>>, RuntimeError> {
        let log_offset = self.log_len();
        let pid = self.spawn(command, &args, stdio)?;
        let mut watch = Watch {
            captures: Vec::new(),
            console,
            master: None,
        };
        let exit = wait(reaper, pid, &mut watch).map_err(|source| RuntimeError::Wait {
            command: command.to_string(),
            source,
        })?;
        if exit.status != 0 {
            return Err(self.failure(command, log_offset, &[], exit.status));
        }
        Ok(watch.master)
    }

    /// Spawn `binary <global flags> command args`; the stdio fds are closed here
    /// once the child has them.
    fn spawn(
        &self,
        command: &str,
        args: &[OsString],
        stdio: ChildStdio,
    ) -> Result<i32, RuntimeError> {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root")
            .arg(&self.root)
            .arg("--log")
            .arg(&self.log)
            .arg("--log-format")
            .arg("json")
            .arg(command)
            .args(args)
            .stdin(Stdio::from(stdio.stdin))
            .stdout(Stdio::from(stdio.stdout))
            .stderr(Stdio::from(stdio.stderr));
        tracing::debug!(runtime = %self.binary.display(), command, ?args, "running");
        let child = cmd.spawn().map_err(|source| RuntimeError::Spawn {
            binary: self.binary.clone(),
            command: command.to_string(),
            source,
        })?;
        // The reaper owns the exit; dropping the handle neither kills nor waits.
        let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
        drop(child);
        Ok(pid)
    }

    fn log_len(&self) -> u64 {
        std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0)
    }

    fn failure(&self, command: &str, log_offset: u64, stderr: &[u8], status: i32) -> RuntimeError {
        let message = self
            .last_logged_error(log_offset)
            .or_else(|| last_line(stderr))
            .unwrap_or_else(|| format!("exited with status {status}"));
        tracing::warn!(command, "runtime failed: {message}");
        RuntimeError::Failed {
            command: command.to_string(),
            message,
        }
    }

    /// The message of the last `error` (or `fatal`) line logged since `offset`.
    fn last_logged_error(&self, offset: u64) -> Option<String> {
        let mut file = std::fs::File::open(&self.log).ok()?;
        file.seek(SeekFrom::Start(offset)).ok()?;
        let mut text = String::new();
        file.take(OUTPUT_LIMIT as u64)
            .read_to_string(&mut text)
            .ok()?;
        last_error_in_log(&text)
    }
}

/// Wait for `pid` to be reaped, reading `watch`'s pipes and console socket
/// meanwhile; then give its pipes [`OUTPUT_GRACE`] to reach end of file. Exits of
/// other children stay queued in the reaper.
fn wait(reaper: &mut Reaper, pid: i32, watch: &mut Watch<'_>) -> std::io::Result<Exit> {
    let mut exit = None;
    let mut grace_end = None;
    loop {
        if exit.is_none() {
            exit = reaper.take(pid);
        }
        if let Some(e) = exit {
            let now = Instant::now();
            let end = *grace_end.get_or_insert(now + OUTPUT_GRACE);
            if watch.captures.iter().all(|c| !c.open) || now >= end {
                return Ok(e);
            }
        }
        let want_master = watch.master.is_none();
        let console = watch.console.filter(|_| want_master);
        {
            let mut fds = Vec::with_capacity(4);
            if exit.is_none() {
                fds.push(PollFd::new(reaper.fd(), PollFlags::POLLIN));
            }
            for c in watch.captures.iter().filter(|c| c.open) {
                fds.push(PollFd::new(c.fd.as_fd(), PollFlags::POLLIN));
            }
            if let Some(c) = console {
                fds.push(PollFd::new(c.fd(), PollFlags::POLLIN));
            }
            fdio::poll(&mut fds, fdio::timeout_until(grace_end))?;
        }
        // Level-triggered: whatever is ready is read now, the rest next turn.
        if exit.is_none() {
            reaper.collect();
        }
        for c in watch.captures.iter_mut().filter(|c| c.open) {
            c.read();
        }
        if let Some(c) = console {
            if let Some(m) = c.try_receive() {
                watch.master = Some(m);
            }
        }
    }
}
/// The message of the last JSON log line whose level is error or fatal.
fn last_error_in_log(text: &str) -> Option<String> {
    text.lines().rev().find_map(|line| {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        let level = v.get("level")?.as_str()?;
        if level != "error" && level != "fatal" {
            return None;
        }
        v.get("msg")
            .and_then(serde_json::Value::as_str)
            .map(|m| m.trim().to_string())
    })
}

fn last_line(out: &[u8]) -> Option<String> {
    String::from_utf8_lossy(out)
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
}

/// Resolve `--runtime`: a path is used as is, a bare name is looked up in PATH.
pub fn resolve_binary(name: &OsStr) -> Result<PathBuf, RuntimeError> {
    let path = Path::new(name);
    if path.components().count() > 1 || path.is_absolute() {
        return std::path::absolute(path)
            .ok()
            .filter(|p| is_executable(p))
            .ok_or_else(|| RuntimeError::NotFound(path.display().to_string()));
    }
    let search = std::env::var_os("PATH")
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&search)
        .map(|dir| dir.join(path))
        .find(|p| is_executable(p))
        .ok_or_else(|| RuntimeError::NotFound(path.display().to_string()))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_error_line_is_the_message() {
        let log = concat!(
            r#"{"level":"info","msg":"starting","time":"t"}"#,
            "\n",
            r#"{"level":"error","msg":"first","time":"t"}"#,
            "\n",
            "not json\n",
            r#"{"level":"error","msg":"exec: \"nope\": executable file not found in $PATH ","time":"t"}"#,
            "\n",
            r#"{"level":"warning","msg":"later","time":"t"}"#,
            "\n",
        );
        assert_eq!(
            last_error_in_log(log).as_deref(),
            Some("exec: \"nope\": executable file not found in $PATH")
        );
        assert_eq!(
            last_error_in_log("{\"level\":\"info\",\"msg\":\"x\"}"),
            None
        );
    }

    #[test]
    fn stderr_fallback_is_its_last_line() {
        assert_eq!(last_line(b"one\ntwo\n\n").as_deref(), Some("two"));
        assert_eq!(last_line(b""), None);
    }

    #[test]
    fn runtime_names_are_found_in_path() {
        let sh = resolve_binary(OsStr::new("sh")).unwrap();
        assert!(sh.is_absolute());
        assert!(resolve_binary(OsStr::new("berth-no-such-runtime")).is_err());
        assert_eq!(
            resolve_binary(OsStr::new("/usr/sbin/runc")).unwrap(),
            PathBuf::from("/usr/sbin/runc")
        );
    }
}
