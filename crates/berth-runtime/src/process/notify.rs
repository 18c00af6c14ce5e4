//! Handing a seccomp listener fd to the agent at `linux.seccomp.listenerPath`:
//! one message on a unix stream socket, the fd in SCM_RIGHTS and the
//! runtime-spec's `ContainerProcessState` as the payload (`fds` names the fd
//! "seccompFd", `metadata` is `listenerMetadata`, `state` the container's
//! state), as runc sends it. The runtime does this for the init during
//! `create` and for an exec'd process, while that process waits.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use oci_spec::runtime::LinuxSeccomp;
use serde::Serialize;

use crate::state::OciState;
use crate::tty;

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error(
        "failed to connect with seccomp agent specified in the seccomp profile ({path}): {reason}"
    )]
    Connect { path: PathBuf, reason: String },
    #[error("cannot send seccomp fd to {path}: {source}")]
    Send {
        path: PathBuf,
        #[source]
        source: tty::TtyError,
    },
    #[error("encode the container process state: {0}")]
    Encode(#[source] serde_json::Error),
}

/// The runtime-spec's ContainerProcessState.
#[derive(Debug, Serialize)]
struct ContainerProcessState<'a> {
    #[serde(rename = "ociVersion")]
    oci_version: &'a str,
    fds: [&'static str; 1],
    pid: i32,
    metadata: &'a str,
    state: &'a OciState,
}

/// Send `fd`, the listener of the process `pid`, to the agent the profile names.
pub fn send_to_agent(
    profile: &LinuxSeccomp,
    state: &OciState,
    pid: i32,
    fd: &OwnedFd,
) -> Result<(), NotifyError> {
    let path = profile.listener_path().clone().unwrap_or_default();
    let stream = UnixStream::connect(&path).map_err(|e| NotifyError::Connect {
        path: path.clone(),
        reason: crate::logger::errno_text(&e),
    })?;
    let payload = ContainerProcessState {
        oci_version: &state.oci_version,
        fds: ["seccompFd"],
        pid,
        metadata: profile.listener_metadata().as_deref().unwrap_or(""),
        state,
    };
    let data = serde_json::to_string(&payload).map_err(NotifyError::Encode)?;
    tty::send_fd(stream.as_raw_fd(), fd.as_raw_fd(), &data)
        .map_err(|source| NotifyError::Send { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn the_agent_gets_the_fd_and_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("agent.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let profile: LinuxSeccomp = serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": sock,
            "listenerMetadata": "bar"
        }))
        .unwrap();
        let state: OciState = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.2.0", "id": "c1", "pid": 42, "status": "creating",
            "bundle": "/b", "rootfs": "/b/rootfs", "created": "now", "owner": "root"
        }))
        .unwrap();
        let f = OwnedFd::from(std::fs::File::open("/proc/self/exe").unwrap());
        send_to_agent(&profile, &state, 42, &f).unwrap();
        let (conn, _) = listener.accept().unwrap();
        let got = tty::recv_fd(conn.as_raw_fd()).unwrap();
        assert!(got.as_raw_fd() >= 0);

        let gone: LinuxSeccomp = serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": dir.path().join("nobody.sock"),
        }))
        .unwrap();
        let e = send_to_agent(&gone, &state, 42, &f).unwrap_err();
        assert!(
            e.to_string()
                .contains("failed to connect with seccomp agent"),
            "{e}"
        );
    }
}
