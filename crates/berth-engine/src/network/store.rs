//! What the engine keeps about networks, on disk, each file written atomically:
//!
//! - `<data-root>/networks/<id>.json`: a network's definition ([`NetworkRecord`]),
//!   kept across reboots;
//! - `<data-root>/containers/<id>/network.json`: the networks a container asked for
//!   and its endpoint settings there ([`ContainerNetConfig`]), kept across reboots and
//!   removed with the container's directory;
//! - `<exec-root>/network/containers/<id>.json`: what is set up in the kernel for a
//!   container right now ([`LiveState`]: its namespace, the exact netavark options of
//!   each attachment, its published ports). It lives under /run because the kernel
//!   state it describes does not survive a reboot either. It is written *before*
//!   netavark sets anything up, so a crash leaves enough behind to tear it down;
//!   atomically but without fsyncs ([`save_volatile`]): a crash of berthd loses
//!   nothing the rename published, and a reboot makes it moot.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use bollard_stubs::models::EndpointSettings;
use ipnet::IpNet;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::netavark::NvOptions;
use crate::fsutil::{atomic_write, atomic_write_volatile};

/// A subnet of a network, as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubnetConfig {
    pub subnet: IpNet,
    pub gateway: Option<IpAddr>,
    #[serde(default)]
    pub ip_range: Option<IpNet>,
    /// `AuxiliaryAddresses`: names for addresses IPAM must not hand out.
    #[serde(default)]
    pub aux: BTreeMap<String, IpAddr>,
}

/// A network's definition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkRecord {
    pub id: String,
    pub name: String,
    /// RFC 3339 with nanoseconds.
    pub created: String,
    /// "bridge", or "host" / "null" for the two built-in ones.
    pub driver: String,
    /// The bridge device on the host.
    #[serde(default)]
    pub bridge: String,
    #[serde(default)]
    pub subnets: Vec<SubnetConfig>,
    /// Whether the user gave the subnets (static addresses are allowed only then).
    #[serde(default)]
    pub user_subnets: bool,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub enable_ipv6: bool,
    #[serde(default)]
    pub attachable: bool,
    #[serde(default)]
    pub ingress: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The driver options as the user gave them.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    #[serde(default)]
    pub ipam_driver: String,
    #[serde(default)]
    pub ipam_options: BTreeMap<String, String>,
    #[serde(default)]
    pub mtu: Option<u32>,
    /// bridge, host and none: made by the engine, never removed.
    #[serde(default)]
    pub builtin: bool,
}

impl NetworkRecord {
    /// Whether containers get addresses here (a bridge network).
    pub fn is_bridge(&self) -> bool {
        self.driver == "bridge"
    }

    /// The name netavark and aardvark-dns know this network by. Not the user's name:
    /// netavark names iptables chains after it, so it must be unique on the host
    /// (another berthd, or podman, may have a network with the same name).
    pub fn netavark_name(&self) -> String {
        format!("berth-{}", &self.id[..self.id.len().min(12)])
    }
}

/// A container's endpoint settings on one network, as asked for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointRequest {
    pub network_id: String,
    pub settings: EndpointSettings,
}

/// A container's networking, as configured (create, connect, disconnect).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerNetConfig {
    /// `HostConfig.NetworkMode` as resolved: "bridge", "host", "none",
    /// "container:<id>", or a user network's name.
    pub mode: String,
    /// The networks to attach to at start, in order (the first gets eth0 and the
    /// published ports).
    pub endpoints: Vec<EndpointRequest>,
}

/// One network set up in a container's namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    pub network_id: String,
    pub interface: String,
    pub endpoint_id: String,
    /// The addresses, one per subnet of the network, with their prefix.
    pub addresses: Vec<IpNet>,
    pub gateways: Vec<IpAddr>,
    pub mac: String,
    pub dns_names: Vec<String>,
    /// Exactly what `netavark setup` was given: `teardown` gets the same.
    pub options: NvOptions,
    /// False from just before `setup` until it succeeded.
    pub up: bool,
    /// The host end of the container's veth, as the bridge listed it right after
    /// `setup` (none when it could not be told apart). Lets an attachment that holds
    /// nothing outside its namespace be undone by dropping the namespace (see
    /// `container::unplug`): the kernel deletes both ends of the veth with it.
    #[serde(default)]
    pub host_link: Option<HostLink>,
}

/// A network interface on the host, by name and index (a name can be given again to
/// a new interface once the old one is gone; the index is not reused at once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostLink {
    pub name: String,
    pub ifindex: u32,
}

/// A host port bound to a container's port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedPort {
    pub container_port: u16,
    /// "tcp" or "udp".
    pub protocol: String,
    /// "0.0.0.0" when unset, as docker shows it.
    pub host_ip: String,
    pub host_port: u16,
    /// The userland proxy serving it (TCP on loopback, see [`super::proxy`]), once
    /// started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<super::proxy::ProxyProcess>,
}

/// What is set up in the kernel for one container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveState {
    pub container_id: String,
    /// The pinned namespace, while the container has one.
    pub netns: Option<PathBuf>,
    pub attachments: Vec<Attachment>,
    pub ports: Vec<PublishedPort>,
}

/// Errors reading or writing these files.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{context} {path}: {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("encoding {path}: {source}")]
    Encode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// Writes `value` as JSON to `path` atomically, durably (the data root).
pub fn save<T: Serialize>(path: &Path, value: &T) -> Result<(), StoreError> {
    save_with(path, value, atomic_write)
}

/// Writes `value` as JSON to `path` atomically, without fsyncs: for the live state
/// under the exec root, which describes kernel state a reboot takes away too.
pub fn save_volatile<T: Serialize>(path: &Path, value: &T) -> Result<(), StoreError> {
    save_with(path, value, atomic_write_volatile)
}

fn save_with<T: Serialize>(
    path: &Path,
    value: &T,
    write: fn(&Path, &[u8], u32) -> std::io::Result<()>,
) -> Result<(), StoreError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            context: "creating",
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let data = serde_json::to_vec_pretty(value).map_err(|source| StoreError::Encode {
        path: path.to_path_buf(),
        source,
    })?;
    write(path, &data, 0o600).map_err(|source| StoreError::Io {
        context: "writing",
        path: path.to_path_buf(),
        source,
    })
}

/// Reads JSON from `path`; `None` when there is no file. An unreadable file is
/// logged and treated as absent rather than keeping berthd from starting.
pub fn load<T: DeserializeOwned>(path: &Path) -> Option<T> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read network state");
            return None;
        }
    };
    match serde_json::from_slice(&data) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "skipping unreadable network state");
            None
        }
    }
}

/// Deletes a file; nothing there is fine.
pub fn remove(path: &Path) -> Result<(), StoreError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StoreError::Io {
            context: "removing",
            path: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Every `*.json` in `dir`, parsed.
pub fn load_all<T: DeserializeOwned>(dir: &Path) -> Vec<T> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "json") {
            if let Some(v) = load(&p) {
                out.push(v);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_unreadable_files_are_skipped() {
        let d = tempfile::tempdir().unwrap();
        let rec = NetworkRecord {
            id: "ab".repeat(32),
            name: "web".into(),
            driver: "bridge".into(),
            bridge: "br-abababababab".into(),
            subnets: vec![SubnetConfig {
                subnet: "10.9.0.0/24".parse().unwrap(),
                gateway: Some("10.9.0.1".parse().unwrap()),
                ip_range: None,
                aux: BTreeMap::new(),
            }],
            ..NetworkRecord::default()
        };
        save(&d.path().join(format!("{}.json", rec.id)), &rec).unwrap();
        std::fs::write(d.path().join("junk.json"), b"{").unwrap();
        let all: Vec<NetworkRecord> = load_all(d.path());
        assert_eq!(all, vec![rec.clone()]);
        assert_eq!(rec.netavark_name(), "berth-abababababab");
        assert!(load::<NetworkRecord>(&d.path().join("none.json")).is_none());
        remove(&d.path().join("none.json")).unwrap();
    }
}
