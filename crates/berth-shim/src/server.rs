//! The shim's life from the command line to exit: check the arguments, daemonize,
//! become a child subreaper, write `shim.pid`, bind `shim.sock` (0600), report
//! readiness to the starter, serve until the task is deleted or the shim is told to
//! shut down, then remove the socket and the pid file.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::sys::stat::{umask, Mode};

use crate::cli::Args;
use crate::daemon::{self, DaemonError, Readiness};
use crate::layout::{self, LayoutError, TaskDir, RUNTIME_LOG, SHIM_LOG, SHIM_PID};
use crate::reaper::{Reaper, ReaperError};
use crate::runtime::{self, Runtime, RuntimeError};
use crate::task::{Task, TaskConfig};
/// sun_path holds 108 bytes, the terminating NUL included.
const MAX_SOCKET_PATH: usize = 107;

/// Why the shim could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid container id {0:?}: use letters, digits, '-', '_' or '.' (at most 1024)")]
    BadId(String),
    #[error("bundle {path} has no config.json")]
    NoBundle { path: PathBuf },
    #[error("making {path} absolute: {source}")]
    Path {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("socket path {0} is longer than {MAX_SOCKET_PATH} bytes")]
    SocketPathTooLong(PathBuf),
    #[error("another shim is serving {0}")]
    SocketInUse(PathBuf),
    #[error("binding {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("becoming a child subreaper: {0}")]
    Subreaper(nix::errno::Errno),
    #[error("starting the event loop: {0}")]
    EventLoop(std::io::Error),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error(transparent)]
    Reaper(#[from] ReaperError),
}

/// Run a shim as the command line says. Returns when it has exited cleanly; in
/// daemon mode the starter half never returns (it exits with the child's report).
pub fn run(args: Args) -> Result<(), StartError> {
    let id_ok = !args.id.is_empty()
        && args.id.len() <= 1024
        && args
            .id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !id_ok {
        return Err(StartError::BadId(args.id));
    }
    let absolute = |p: &Path| {
        std::path::absolute(p).map_err(|source| StartError::Path {
            path: p.to_path_buf(),
            source,
        })
    };
    let bundle = absolute(&args.bundle)?;
    if !bundle.join("config.json").is_file() {
        return Err(StartError::NoBundle { path: bundle });
    }
    let socket = absolute(
        &args
            .socket
            .clone()
            .unwrap_or_else(|| bundle.join(layout::SHIM_SOCK)),
    )?;
    if socket.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(StartError::SocketPathTooLong(socket));
    }
    let runtime_root = absolute(&args.runtime_root)?;
    let runtime_bin = runtime::resolve_binary(&args.runtime)?;

    let mut ready = if args.foreground {
        Readiness::none()
    } else {
        daemon::daemonize(&bundle.join(SHIM_LOG))?
    };
    crate::logger::init(args.log_level.as_str());
    let config = TaskConfig {
        id: args.id,
        bundle,
        runtime: runtime_bin,
        runtime_root,
    };
    let result = serve(config, &socket, &mut ready);
    if let Err(e) = &result {
        tracing::error!("{e}");
        ready.fail(&e.to_string());
    }
    result
}

fn serve(config: TaskConfig, socket: &Path, ready: &mut Readiness) -> Result<(), StartError> {
    // The container's init is a grandchild (its parent, the runtime, exits): as a
    // subreaper the shim inherits it and can reap it.
    nix::sys::prctl::set_child_subreaper(true).map_err(StartError::Subreaper)?;
    let dir = TaskDir::new(&config.bundle);
    check_socket_free(socket)?;
    let pid_file = dir.file(SHIM_PID);
    layout::write_atomic(&pid_file, std::process::id().to_string().as_bytes())?;
    let listener = bind(socket).inspect_err(|_| remove_quietly(&pid_file))?;

    let result = serve_loop(config, listener, ready);
    remove_quietly(socket);
    remove_quietly(&dir.file(SHIM_PID));
    if result.is_ok() {
        tracing::info!("exiting");
    }
    result
}

fn serve_loop(
    config: TaskConfig,
    listener: UnixListener,
    ready: &mut Readiness,
) -> Result<(), StartError> {
    // Before anything is spawned: SIGCHLD is read from the reaper's signalfd.
    let reaper = Reaper::start()?;
    let runtime = Runtime::new(
        config.runtime.clone(),
        config.runtime_root.clone(),
        config.bundle.join(RUNTIME_LOG),
        config.id.clone(),
    );
    let task = Task::new(config, runtime, reaper);
    crate::service::serve(task, listener, ready).map_err(StartError::EventLoop)
}

/// Refuse a socket another shim serves; remove a stale one.
fn check_socket_free(socket: &Path) -> Result<(), StartError> {
    if socket.exists() {
        if UnixStream::connect(socket).is_ok() {
            return Err(StartError::SocketInUse(socket.to_path_buf()));
        }
        remove_quietly(socket);
    }
    Ok(())
}

/// Bind the socket with mode 0600 from the start (umask). Runs while the process
/// is single-threaded (umask is process-wide).
fn bind(socket: &Path) -> Result<UnixListener, StartError> {
    let old = umask(Mode::from_bits_truncate(0o177));
    let listener = UnixListener::bind(socket);
    umask(old);
    let listener = listener.map_err(|source| StartError::Bind {
        path: socket.to_path_buf(),
        source,
    })?;
    let _ = std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600));
    listener
        .set_nonblocking(true)
        .map_err(|source| StartError::Bind {
            path: socket.to_path_buf(),
            source,
        })?;
    Ok(listener)
}

fn remove_quietly(path: &Path) {
    let _ = std::fs::remove_file(path);
}
