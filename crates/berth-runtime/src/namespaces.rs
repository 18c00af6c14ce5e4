//! Linux namespaces as the spec lists them: which ones a container gets new, which
//! it joins by path, in which order they are entered, and how they are recorded in
//! state.json (`NEWPID` → `/proc/<pid>/ns/pid`).
//!
//! Joined namespaces are opened by the runtime before it forks anything, so that a
//! wrong path is reported before any side effect and so that no path has to be
//! resolved after the process has changed its mount namespace.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};

#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error(
        "unknown namespace type {0:?} (known: pid, network, mount, ipc, uts, user, cgroup, time)"
    )]
    UnknownType(String),
    #[error("namespace type {0} is listed twice")]
    Duplicate(&'static str),
    #[error("{kind} namespace path {path} must be absolute")]
    RelativePath { kind: &'static str, path: PathBuf },
    #[error("open {kind} namespace {path}: {source}")]
    Open {
        kind: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("join the {kind} namespace: {source}")]
    Join {
        kind: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("create new namespaces ({kinds}): {source}")]
    Unshare {
        kinds: String,
        #[source]
        source: nix::Error,
    },
}

/// Every namespace type, in the order a process enters them: the user namespace
/// first (it grants the capabilities needed to join the others), the mount
/// namespace last (after it, host paths no longer resolve the same way).
pub const ENTER_ORDER: [LinuxNamespaceType; 8] = [
    LinuxNamespaceType::User,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Uts,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Cgroup,
    LinuxNamespaceType::Time,
    LinuxNamespaceType::Mount,
];

/// The spec's name of a namespace type (`network`, `mount`, ...).
pub fn spec_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mount",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "network",
        LinuxNamespaceType::Time => "time",
    }
}

/// The file name under /proc/<pid>/ns/.
pub fn proc_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// The key in state.json's `namespace_paths` (runc's names).
pub fn state_key(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "NEWNS",
        LinuxNamespaceType::Cgroup => "NEWCGROUP",
        LinuxNamespaceType::Uts => "NEWUTS",
        LinuxNamespaceType::Ipc => "NEWIPC",
        LinuxNamespaceType::User => "NEWUSER",
        LinuxNamespaceType::Pid => "NEWPID",
        LinuxNamespaceType::Network => "NEWNET",
        LinuxNamespaceType::Time => "NEWTIME",
    }
}

/// The namespace type recorded under a state.json key.
pub fn from_state_key(key: &str) -> Option<LinuxNamespaceType> {
    ENTER_ORDER.into_iter().find(|t| state_key(*t) == key)
}

/// The clone/unshare/setns flag of a namespace type.
pub fn clone_flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        // nix has no constant for the time namespace yet.
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// Check the `type` of every entry of `linux.namespaces` in the raw config, so
/// that an unknown type gets its own message instead of serde's.
pub fn check_raw_types(config: &serde_json::Value) -> Result<(), NamespaceError> {
    let Some(list) = config
        .get("linux")
        .and_then(|l| l.get("namespaces"))
        .and_then(|n| n.as_array())
    else {
        return Ok(());
    };
    for entry in list {
        let typ = entry.get("type").and_then(|t| t.as_str()).unwrap_or("");
        let known = ENTER_ORDER.iter().any(|t| spec_name(*t) == typ);
        if !known {
            return Err(NamespaceError::UnknownType(typ.to_string()));
        }
    }
    Ok(())
}

/// A namespace the container joins: its type and an open handle on it.
#[derive(Debug)]
pub struct Joined {
    pub typ: LinuxNamespaceType,
    pub path: PathBuf,
    pub fd: OwnedFd,
}

/// What the container gets: the types it creates and the ones it joins.
#[derive(Debug, Default)]
pub struct Plan {
    /// Types created fresh (unshared).
    pub new: Vec<LinuxNamespaceType>,
    /// Types joined by path, already opened, in `ENTER_ORDER`.
    pub joined: Vec<Joined>,
}

impl Plan {
    /// Validate the spec's list and open every namespace given by path.
    pub fn from_spec(list: &[LinuxNamespace]) -> Result<Plan, NamespaceError> {
        let mut plan = Plan::default();
        let mut seen: Vec<LinuxNamespaceType> = Vec::new();
        for ns in list {
            let typ = ns.typ();
            if seen.contains(&typ) {
                return Err(NamespaceError::Duplicate(spec_name(typ)));
            }
            seen.push(typ);
            match ns.path() {
                Some(path) if !path.as_os_str().is_empty() => {
                    if !path.is_absolute() {
                        return Err(NamespaceError::RelativePath {
                            kind: spec_name(typ),
                            path: path.clone(),
                        });
                    }
                    let fd = open_ns(typ, path)?;
                    plan.joined.push(Joined {
                        typ,
                        path: path.clone(),
                        fd,
                    });
                }
                _ => plan.new.push(typ),
            }
        }
        plan.joined
            .sort_by_key(|j| ENTER_ORDER.iter().position(|t| *t == j.typ));
        Ok(plan)
    }

    /// Whether the container has a namespace of this type (new or joined).
    pub fn has(&self, t: LinuxNamespaceType) -> bool {
        self.is_new(t) || self.joined.iter().any(|j| j.typ == t)
    }

    /// Whether the container gets a fresh namespace of this type.
    pub fn is_new(&self, t: LinuxNamespaceType) -> bool {
        self.new.contains(&t)
    }

    /// The unshare flags of every new namespace except the user namespace (which
    /// is created on its own, before the others, so that they belong to it).
    pub fn unshare_flags(&self) -> CloneFlags {
        self.new
            .iter()
            .filter(|t| **t != LinuxNamespaceType::User)
            .fold(CloneFlags::empty(), |acc, t| acc | clone_flag(*t))
    }

    /// `namespace_paths` for state.json: every namespace the container has.
    pub fn state_paths(&self, pid: i32) -> BTreeMap<String, String> {
        ENTER_ORDER
            .iter()
            .filter(|t| self.has(**t))
            .map(|t| {
                (
                    state_key(*t).to_string(),
                    format!("/proc/{pid}/ns/{}", proc_name(*t)),
                )
            })
            .collect()
    }
}

/// Open a namespace file for setns.
pub fn open_ns(typ: LinuxNamespaceType, path: &Path) -> Result<OwnedFd, NamespaceError> {
    File::open(path)
        .map(OwnedFd::from)
        .map_err(|source| NamespaceError::Open {
            kind: spec_name(typ),
            path: path.to_path_buf(),
            source,
        })
}

/// Enter one namespace through an open handle.
pub fn join(typ: LinuxNamespaceType, fd: impl AsFd) -> Result<(), NamespaceError> {
    nix::sched::setns(fd, clone_flag(typ)).map_err(|source| NamespaceError::Join {
        kind: spec_name(typ),
        source,
    })
}

/// Create new namespaces for the calling process (the pid and time namespaces
/// apply to its children only).
pub fn unshare(flags: CloneFlags) -> Result<(), NamespaceError> {
    if flags.is_empty() {
        return Ok(());
    }
    nix::sched::unshare(flags).map_err(|source| NamespaceError::Unshare {
        kinds: describe(flags),
        source,
    })
}

/// `pid, mount, ...` for an error message.
pub fn describe(flags: CloneFlags) -> String {
    ENTER_ORDER
        .iter()
        .filter(|t| flags.contains(clone_flag(**t)))
        .map(|t| spec_name(*t))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxNamespaceBuilder;

    fn ns(t: LinuxNamespaceType) -> LinuxNamespace {
        LinuxNamespaceBuilder::default().typ(t).build().unwrap()
    }

    #[test]
    fn plan_and_state_paths() {
        let plan = Plan::from_spec(&[
            ns(LinuxNamespaceType::Pid),
            ns(LinuxNamespaceType::Mount),
            ns(LinuxNamespaceType::Network),
        ])
        .unwrap();
        assert!(plan.is_new(LinuxNamespaceType::Pid));
        assert!(!plan.has(LinuxNamespaceType::User));
        let flags = plan.unshare_flags();
        assert!(flags.contains(CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNS));
        let paths = plan.state_paths(42);
        assert_eq!(paths["NEWPID"], "/proc/42/ns/pid");
        assert_eq!(paths["NEWNS"], "/proc/42/ns/mnt");
        assert_eq!(paths["NEWNET"], "/proc/42/ns/net");
        assert_eq!(paths.len(), 3);
    }

    #[test]
    fn duplicates_and_bad_paths_are_refused() {
        let dup = Plan::from_spec(&[ns(LinuxNamespaceType::Pid), ns(LinuxNamespaceType::Pid)]);
        assert!(matches!(dup, Err(NamespaceError::Duplicate("pid"))));
        let missing = LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Network)
            .path("/nonexistent/berth/ns/net")
            .build()
            .unwrap();
        assert!(matches!(
            Plan::from_spec(&[missing]),
            Err(NamespaceError::Open { .. })
        ));
    }

    #[test]
    fn joined_namespaces_are_opened_in_enter_order() {
        let mk = |t, p: &str| {
            LinuxNamespaceBuilder::default()
                .typ(t)
                .path(p)
                .build()
                .unwrap()
        };
        let plan = Plan::from_spec(&[
            mk(LinuxNamespaceType::Mount, "/proc/self/ns/mnt"),
            mk(LinuxNamespaceType::User, "/proc/self/ns/user"),
            mk(LinuxNamespaceType::Network, "/proc/self/ns/net"),
        ])
        .unwrap();
        let order: Vec<_> = plan.joined.iter().map(|j| j.typ).collect();
        assert_eq!(
            order,
            [
                LinuxNamespaceType::User,
                LinuxNamespaceType::Network,
                LinuxNamespaceType::Mount
            ]
        );
        assert!(plan.new.is_empty());
    }

    #[test]
    fn unknown_types_are_named() {
        let cfg =
            serde_json::json!({"linux": {"namespaces": [{"type": "pid"}, {"type": "bogus"}]}});
        let e = check_raw_types(&cfg).unwrap_err();
        assert!(e.to_string().contains("bogus"));
        let ok =
            serde_json::json!({"linux": {"namespaces": [{"type": "network"}, {"type": "time"}]}});
        assert!(check_raw_types(&ok).is_ok());
    }
}
