//! `PidMode`, `IpcMode`, `UTSMode` and `UsernsMode`: whether the container's PID,
//! IPC and UTS namespaces are its own, the host's or (PID) another container's, as
//! dockerd reads these fields. Another container's is joined by the start
//! (`lifecycle::hooks`), which knows where that container runs.
//!
//! `IpcMode: shareable` gives the container a /dev/shm made on the host side, under
//! its directory (`lifecycle::shm`), so that `IpcMode: container:<id>` can bind the
//! same one beside joining the namespace: POSIX shared memory lives in /dev/shm,
//! System V IPC in the namespace, and a joiner gets both, as with dockerd.

use bollard_stubs::models::HostConfig;

use super::{invalid, SpecError};

/// Whose namespace a container gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Share {
    /// One of its own.
    Private,
    /// The host's.
    Host,
    /// That of the container named or with this id.
    Container(String),
}

/// The namespace modes of a HostConfig, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Modes {
    pub pid: Share,
    pub ipc: Share,
    /// `IpcMode: none`: a namespace of its own and no /dev/shm.
    pub ipc_none: bool,
    /// `IpcMode: shareable`: its /dev/shm is made on the host for joiners.
    pub ipc_shareable: bool,
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
        m => joined("IPC", m)?,
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
        ipc_shareable: ipc_mode == "shareable",
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
        let m = modes(&hc("container:web", "container:db", "", "")).unwrap();
        assert_eq!(m.pid, Share::Container("web".into()));
        assert_eq!(m.ipc, Share::Container("db".into()));
        let m = modes(&hc("", "none", "", "")).unwrap();
        assert!(m.ipc_none);
        let m = modes(&hc("", "shareable", "", "")).unwrap();
        assert_eq!((m.ipc, m.ipc_shareable), (Share::Private, true));
    }

    #[test]
    fn unknown_modes_are_refused() {
        for bad in [
            hc("container:", "", "", ""),
            hc("hots", "", "", ""),
            hc("", "container", "", ""),
            hc("", "container:", "", ""),
            hc("", "", "private", ""),
            hc("", "", "", "remap"),
        ] {
            assert!(matches!(modes(&bad), Err(SpecError::Invalid(_))), "{bad:?}");
        }
    }
}
