//! Starting a berth-shim and dialling it.
//!
//! The shim is started through its own command line (`berth_shim_contract::Args`): the
//! process we spawn forks the real shim, which starts a new session, and exits 0
//! once the shim serves its socket (or 1 with the reason on stderr). So the shim is
//! never our child: it does not die with the manager and is not reaped by it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use berth_shim_contract::ShimClient;

use crate::daemon::error::DaemonError;

/// How long a shim may take to serve its socket.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long dialling a shim's socket may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// berth-runtime's switch for its mount namespace template (`mntns::ENV`
/// there; the manager does not link the runtime).
const RUNTIME_MNTNS_TEMPLATE_ENV: &str = "BERTH_RUNTIME_MNTNS_TEMPLATE";
/// sun_path holds 108 bytes, the terminating NUL included.
pub const MAX_SOCKET_PATH: usize = 107;

/// What a shim is started with.
#[derive(Debug, Clone)]
pub struct Launch<'a> {
    pub shim: &'a Path,
    pub id: &'a str,
    pub dir: &'a Path,
    pub socket: &'a Path,
    pub runtime: &'a Path,
    pub runtime_root: &'a Path,
    pub log_level: berth_shim_contract::cli::LogLevel,
}

/// Start a shim and return once it serves its socket.
pub async fn start(l: &Launch<'_>) -> Result<(), DaemonError> {
    let mut args = berth_shim_contract::Args::new(l.id, l.dir);
    args.runtime = l.runtime.as_os_str().to_os_string();
    args.runtime_root = l.runtime_root.to_path_buf();
    args.socket = Some(l.socket.to_path_buf());
    args.log_level = l.log_level;
    let mut cmd = tokio::process::Command::new(l.shim);
    // The container's id and paths go in the environment, which only root can
    // read, not on the command line, which every host user can.
    let (argv, env) = args.to_args_and_env();
    cmd.args(argv)
        .envs(env)
        // Passed on by the shim to the runtime it runs: berth-runtime then
        // makes containers' mount namespaces from a small template instead of
        // copying the host's (berth-runtime `mntns`); other runtimes ignore it.
        .env(RUNTIME_MNTNS_TEMPLATE_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Out of our process group from the first instant: a ^C meant for a
        // manager in the foreground does not reach the starter.
        .process_group(0)
        .kill_on_drop(true);
    let failed = |message: String| DaemonError::ShimStart {
        id: l.id.to_string(),
        message,
    };
    let out = tokio::time::timeout(START_TIMEOUT, cmd.output())
        .await
        .map_err(|_| failed(format!("not ready after {START_TIMEOUT:?}")))?
        .map_err(|e| failed(format!("running {}: {e}", l.shim.display())))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let message = stderr.trim().trim_start_matches("berth-shim: ");
        return Err(failed(if message.is_empty() {
            format!("it exited with {}", out.status)
        } else {
            message.to_string()
        }));
    }
    Ok(())
}

/// Dial the shim serving `socket`.
pub async fn connect(id: &str, socket: &Path) -> Result<ShimClient, DaemonError> {
    let err = |source| DaemonError::ShimConnect {
        id: id.to_string(),
        socket: socket.to_path_buf(),
        source,
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, berth_shim_contract::connect(socket)).await {
        Ok(r) => r.map_err(err),
        Err(_) => Err(DaemonError::ShimStart {
            id: id.to_string(),
            message: format!(
                "its socket {} did not answer within {CONNECT_TIMEOUT:?}",
                socket.display()
            ),
        }),
    }
}

/// The socket a task's shim serves, checked to fit in a socket address.
pub fn socket_path(dir: &Path) -> Result<PathBuf, DaemonError> {
    let socket = dir.join(berth_shim_contract::layout::SHIM_SOCK);
    if socket.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(DaemonError::SocketPathTooLong(socket));
    }
    Ok(socket)
}
