//! `PidMode`, `IpcMode`, `UTSMode` and `UsernsMode`: whether the container's PID,
//! IPC and UTS namespaces are its own, the host's or (PID) another container's, as
//! dockerd reads these fields. Another container's is joined by the start
//! (`lifecycle::hooks`), which knows where that container runs.
//!
//! `IpcMode: container:<id>` is refused: sharing POSIX shared memory needs the
//! donor's /dev/shm on the host side (dockerd's `shareable` mounts one under the
//! container's directory), which berth does not make, and joining the namespace
//! alone would share System V IPC but not /dev/shm, a half that looks whole.

use bollard_stubs::models::HostConfig;

use super::{invalid, SpecError};

/// Whose namespace a container gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Share {
    /// One of its own.
    Private,
    /// The host's.
    Host,
    /// That of the container named or with this id (PID only).
    Container(String),
}

/// The namespace modes of a HostConfig, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Modes {
    pub pid: Share,
    pub ipc: Share,
    /// `IpcMode: none`: a namespace of its own and no /dev/shm.
    pub ipc_none: bool,
    /// `UTSMode: host`.
    pub uts_host: bool,
}

/// Reads the modes; an unknown one is a 400 (at create, in its dry run).
pub fn modes(hc: &HostConfig) -> Result<Modes, SpecError> {
    let joined = |kind: &str, mode: &str| -> Result<Share, SpecError> {
        match mode.strip_prefix("container:") {
            Some(c) if !c.is_empty() => Ok(Share::Container(c.to_string())),
            _ => Err(invalid(format!("invalid {kind} mode: {mode:?}"))),
        }
    };
    let pid = match hc.pid_mode.as_deref().unwrap_or("") {
        "" | "private" => Share::Private,
        "host" => Share::Host,
        m => joined("PID", m)?,
    };
    let ipc_mode = hc.ipc_mode.as_deref().unwrap_or("");
    let ipc = match ipc_mode {
        "" | "private" | "shareable" | "none" => Share::Private,
        "host" => Share::Host,
        m if m.starts_with("container:") => {
            return Err(invalid(format!(
                "IpcMode {m:?} is not supported: berth cannot share a container's /dev/shm; \
                 use --ipc host, or a volume for shared files"
            )))
        }
        m => return Err(invalid(format!("invalid IPC mode: {m:?}"))),
    };
    let uts_host = match hc.uts_mode.as_deref().unwrap_or("") {
        "" => false,
        "host" => true,
        m => return Err(invalid(format!("invalid UTS mode: {m:?}"))),
    };
    match hc.userns_mode.as_deref().unwrap_or("") {
        "" | "host" => {}
        m => {
            return Err(invalid(format!(
            "invalid user namespace mode {m:?}: berth runs containers in the host's user namespace"
        )))
        }
    }
    Ok(Modes {
        pid,
        ipc,
        ipc_none: ipc_mode == "none",
        uts_host,
    })
}

/// Whether `UTSMode` is `host` (a bad mode counts as not: the create's check says why).
pub fn uts_is_host(hc: &HostConfig) -> bool {
    hc.uts_mode.as_deref() == Some("host")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hc(pid: &str, ipc: &str, uts: &str, userns: &str) -> HostConfig {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
        HostConfig {
            pid_mode: some(pid),
            ipc_mode: some(ipc),
            uts_mode: some(uts),
            userns_mode: some(userns),
            ..HostConfig::default()
        }
    }

    #[test]
    fn modes_read_as_dockerds() {
        let m = modes(&HostConfig::default()).unwrap();
        assert_eq!(
            (m.pid, m.ipc, m.ipc_none, m.uts_host),
            (Share::Private, Share::Private, false, false)
        );
        let m = modes(&hc("host", "host", "host", "host")).unwrap();
        assert_eq!((m.pid, m.ipc, m.uts_host), (Share::Host, Share::Host, true));
        let m = modes(&hc("container:web", "", "", "")).unwrap();
        assert_eq!(m.pid, Share::Container("web".into()));
        let m = modes(&hc("", "none", "", "")).unwrap();
        assert!(m.ipc_none);
        assert_eq!(
            modes(&hc("", "shareable", "", "")).unwrap().ipc,
            Share::Private
        );
    }

    #[test]
    fn unknown_modes_are_refused() {
        for bad in [
            hc("container:", "", "", ""),
            hc("hots", "", "", ""),
            hc("", "container", "", ""),
            hc("", "container:db", "", ""),
            hc("", "", "private", ""),
            hc("", "", "", "remap"),
        ] {
            assert!(matches!(modes(&bad), Err(SpecError::Invalid(_))), "{bad:?}");
        }
    }
}
