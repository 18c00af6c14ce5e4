//! The seam to the kernel: netavark for bridges, veths, NAT and port forwarding,
//! aardvark-dns (started by netavark) for names on user networks, and the namespaces
//! of `netns`.
//!
//! netavark is driven as podman drives it: `netavark --config DIR setup|teardown NETNS`
//! with the container's options as JSON on stdin; `setup` answers with what it made.
//! The JSON types below follow netavark 1.4's interface (Debian 12). [`Backend`] is a
//! trait so the API tests, which run without root, get a fake that touches nothing.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

/// Errors of the network backend.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// netavark could not be run.
    #[error("running {bin}: {source}")]
    Spawn {
        bin: String,
        #[source]
        source: std::io::Error,
    },
    /// netavark ran and failed; `message` is its own error.
    #[error("netavark {command}: {message}")]
    Failed { command: String, message: String },
    /// A namespace file could not be made or removed.
    #[error("{context} {path}: {source}")]
    Netns {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A userland proxy could not be started.
    #[error("starting the userland proxy: {0}")]
    Proxy(#[source] std::io::Error),
    /// A pooled namespace's veth could not be made (see [`super::veth`]).
    #[error("making the veth {name}: {source}")]
    Veth {
        name: String,
        #[source]
        source: std::io::Error,
    },
}

/// A network as netavark reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NvNetwork {
    pub name: String,
    pub id: String,
    pub driver: String,
    pub network_interface: Option<String>,
    pub subnets: Option<Vec<NvSubnet>>,
    pub ipv6_enabled: bool,
    pub internal: bool,
    pub dns_enabled: bool,
    pub options: Option<BTreeMap<String, String>>,
    pub ipam_options: Option<BTreeMap<String, String>>,
    pub network_dns_servers: Option<Vec<IpAddr>>,
}

/// One subnet of a network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NvSubnet {
    pub subnet: IpNet,
    pub gateway: Option<IpAddr>,
    pub lease_range: Option<NvLeaseRange>,
}

/// The part of a subnet addresses are leased from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NvLeaseRange {
    pub start_ip: Option<String>,
    pub end_ip: Option<String>,
}

/// A container's options on one network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NvPerNetwork {
    pub interface_name: String,
    /// One per subnet of the network, in the same order.
    pub static_ips: Option<Vec<IpAddr>>,
    pub aliases: Option<Vec<String>>,
    pub static_mac: Option<String>,
}

/// A published port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NvPortMapping {
    pub host_ip: String,
    pub container_port: u16,
    pub host_port: u16,
    pub range: u16,
    pub protocol: String,
}

/// What `setup` and `teardown` read on stdin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NvOptions {
    pub container_id: String,
    /// The name aardvark-dns answers for (besides the aliases).
    pub container_name: String,
    pub networks: BTreeMap<String, NvPerNetwork>,
    pub network_info: BTreeMap<String, NvNetwork>,
    pub port_mappings: Option<Vec<NvPortMapping>>,
    /// Upstream servers aardvark-dns asks for this container (`--dns`).
    pub dns_servers: Option<Vec<IpAddr>>,
}

/// What `setup` answers, per network.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NvStatus {
    #[serde(default)]
    pub dns_server_ips: Option<Vec<IpAddr>>,
    #[serde(default)]
    pub dns_search_domains: Option<Vec<String>>,
    #[serde(default)]
    pub interfaces: Option<HashMap<String, NvInterface>>,
}

/// One interface netavark made in the container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NvInterface {
    pub mac_address: String,
    #[serde(default)]
    pub subnets: Option<Vec<NvAddress>>,
}

/// An address of an interface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NvAddress {
    pub ipnet: IpNet,
    pub gateway: Option<IpAddr>,
}

/// What the engine needs from the kernel side, behind a trait.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// Makes (or keeps) the pinned namespace at `path`.
    async fn ensure_netns(&self, path: &Path) -> Result<(), BackendError>;
    /// Whether a namespace is pinned at `path`.
    fn netns_pinned(&self, path: &Path) -> bool;
    /// Unpins and deletes the namespace at `path`.
    async fn remove_netns(&self, path: &Path) -> Result<(), BackendError>;
    /// Pins the namespace pinned at `from` at `to` as well (`to` must not exist).
    async fn share_netns(&self, from: &Path, to: &Path) -> Result<(), BackendError>;
    /// `netavark setup`.
    async fn setup(
        &self,
        netns: &Path,
        opts: &NvOptions,
    ) -> Result<BTreeMap<String, NvStatus>, BackendError>;
    /// `netavark teardown`.
    async fn teardown(&self, netns: &Path, opts: &NvOptions) -> Result<(), BackendError>;
    /// Makes a pooled namespace's veth on a bridge netavark already made (see
    /// [`super::veth`]); answers its host end, where it can be told.
    async fn attach_veth(
        &self,
        netns: &Path,
        veth: &super::veth::PlainVeth,
    ) -> Result<Option<super::store::HostLink>, BackendError>;
    /// Starts a userland proxy serving the bound TCP socket `listener` towards `to`
    /// (see [`super::proxy`]); `None` where nothing is started.
    fn spawn_proxy(
        &self,
        listener: &std::os::fd::OwnedFd,
        to: std::net::SocketAddr,
    ) -> Result<Option<super::proxy::ProxyProcess>, BackendError> {
        super::proxy::spawn(listener, to)
            .map(Some)
            .map_err(BackendError::Proxy)
    }
}

/// The real backend: netavark and aardvark-dns binaries, and a config directory of
/// berth's own for aardvark-dns.
#[derive(Debug, Clone)]
pub struct Netavark {
    pub netavark: PathBuf,
    pub aardvark: PathBuf,
    /// `--config`: aardvark-dns keeps its files and pid in `<dir>/aardvark-dns`.
    pub config_dir: PathBuf,
    /// A file every netavark call of every berthd on this host holds a lock on.
    /// netavark 1.4 expects its caller to serialise calls (podman does): two at
    /// once race creating the same bridge or iptables chain.
    pub lock_file: PathBuf,
}

/// Where Debian's packages put the binaries.
pub const NETAVARK_BIN: &str = "/usr/lib/podman/netavark";
pub const AARDVARK_BIN: &str = "/usr/lib/podman/aardvark-dns";
/// The host-wide lock of netavark calls (all berthd instances on this host).
pub const LOCK_FILE: &str = "/run/lock/berth-netavark.lock";

impl Netavark {
    async fn lock(&self) -> Result<nix::fcntl::Flock<std::fs::File>, BackendError> {
        let path = self.lock_file.clone();
        tokio::task::spawn_blocking(move || {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
                .map_err(|(_, e)| std::io::Error::from(e))
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|r| r)
        .map_err(|source| BackendError::Netns {
            context: "locking",
            path: self.lock_file.clone(),
            source,
        })
    }

    async fn run(
        &self,
        command: &str,
        netns: &Path,
        opts: &NvOptions,
    ) -> Result<Vec<u8>, BackendError> {
        let input = serde_json::to_vec(opts).map_err(|e| BackendError::Failed {
            command: command.to_string(),
            message: format!("encoding its options: {e}"),
        })?;
        let started = std::time::Instant::now();
        let _lock = self.lock().await?;
        let locked = started.elapsed();
        let bin = self.netavark.display().to_string();
        let mut child = tokio::process::Command::new(&self.netavark)
            .arg("--config")
            .arg(&self.config_dir)
            .arg("--aardvark-binary")
            .arg(&self.aardvark)
            .arg(command)
            .arg(netns)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // aardvark-dns logs to syslog or nowhere; netavark's own log stays quiet.
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| BackendError::Spawn {
                bin: bin.clone(),
                source,
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(&input)
                .await
                .map_err(|source| BackendError::Spawn {
                    bin: bin.clone(),
                    source,
                })?;
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|source| BackendError::Spawn { bin, source })?;
        tracing::debug!(
            command,
            container = %opts.container_id,
            lock_wait_ms = locked.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "netavark"
        );
        if out.status.success() {
            return Ok(out.stdout);
        }
        #[derive(Deserialize)]
        struct NvError {
            error: String,
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let message = serde_json::from_str::<NvError>(stdout.trim())
            .map(|e| e.error)
            .unwrap_or_else(|_| {
                let err = String::from_utf8_lossy(&out.stderr);
                format!("{} {}", stdout.trim(), err.trim())
                    .trim()
                    .to_string()
            });
        Err(BackendError::Failed {
            command: command.to_string(),
            message: if message.is_empty() {
                format!("exited with {}", out.status)
            } else {
                message
            },
        })
    }
}

#[async_trait::async_trait]
impl Backend for Netavark {
    async fn ensure_netns(&self, path: &Path) -> Result<(), BackendError> {
        let p = path.to_path_buf();
        tokio::task::spawn_blocking(move || super::netns::ensure(&p))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|r| r)
            .map(|_| ())
            .map_err(|source| BackendError::Netns {
                context: "creating the network namespace",
                path: path.to_path_buf(),
                source,
            })
    }

    fn netns_pinned(&self, path: &Path) -> bool {
        super::netns::is_pinned(path)
    }

    async fn remove_netns(&self, path: &Path) -> Result<(), BackendError> {
        super::netns::remove(path).map_err(|source| BackendError::Netns {
            context: "removing the network namespace",
            path: path.to_path_buf(),
            source,
        })
    }

    async fn attach_veth(
        &self,
        netns: &Path,
        veth: &super::veth::PlainVeth,
    ) -> Result<Option<super::store::HostLink>, BackendError> {
        let (p, v) = (netns.to_path_buf(), veth.clone());
        let made = tokio::task::spawn_blocking(move || super::veth::attach(&p, &v))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|r| r);
        match made {
            Ok(ifindex) => Ok(Some(super::store::HostLink {
                name: veth.host_name.clone(),
                ifindex,
            })),
            Err(source) => Err(BackendError::Veth {
                name: veth.host_name.clone(),
                source,
            }),
        }
    }

    async fn share_netns(&self, from: &Path, to: &Path) -> Result<(), BackendError> {
        super::netns::share(from, to).map_err(|source| BackendError::Netns {
            context: "pinning the network namespace again at",
            path: to.to_path_buf(),
            source,
        })
    }

    async fn setup(
        &self,
        netns: &Path,
        opts: &NvOptions,
    ) -> Result<BTreeMap<String, NvStatus>, BackendError> {
        let out = self.run("setup", netns, opts).await?;
        serde_json::from_slice(&out).map_err(|e| BackendError::Failed {
            command: "setup".into(),
            message: format!("unexpected answer {:?}: {e}", String::from_utf8_lossy(&out)),
        })
    }

    async fn teardown(&self, netns: &Path, opts: &NvOptions) -> Result<(), BackendError> {
        self.run("teardown", netns, opts).await.map(|_| ())
    }
}

/// A backend that touches nothing: namespaces are plain files and every setup
/// succeeds with the addresses it was asked for. For tests without root.
#[derive(Debug, Default)]
pub struct FakeBackend {
    /// Container ids set up and not torn down, per network.
    pub live: std::sync::Mutex<Vec<(String, String)>>,
}

#[async_trait::async_trait]
impl Backend for FakeBackend {
    fn spawn_proxy(
        &self,
        _listener: &std::os::fd::OwnedFd,
        _to: std::net::SocketAddr,
    ) -> Result<Option<super::proxy::ProxyProcess>, BackendError> {
        // The API tests run in-process: /proc/self/exe is the test binary.
        Ok(None)
    }

    async fn ensure_netns(&self, path: &Path) -> Result<(), BackendError> {
        std::fs::write(path, b"").map_err(|source| BackendError::Netns {
            context: "creating",
            path: path.to_path_buf(),
            source,
        })
    }

    fn netns_pinned(&self, path: &Path) -> bool {
        path.exists()
    }

    async fn remove_netns(&self, path: &Path) -> Result<(), BackendError> {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(BackendError::Netns {
                context: "removing",
                path: path.to_path_buf(),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    async fn attach_veth(
        &self,
        _netns: &Path,
        _veth: &super::veth::PlainVeth,
    ) -> Result<Option<super::store::HostLink>, BackendError> {
        Ok(None)
    }

    async fn share_netns(&self, from: &Path, to: &Path) -> Result<(), BackendError> {
        std::fs::copy(from, to)
            .map(|_| ())
            .map_err(|source| BackendError::Netns {
                context: "copying",
                path: to.to_path_buf(),
                source,
            })
    }

    async fn setup(
        &self,
        _netns: &Path,
        opts: &NvOptions,
    ) -> Result<BTreeMap<String, NvStatus>, BackendError> {
        let mut out = BTreeMap::new();
        for (name, per) in &opts.networks {
            let Some(net) = opts.network_info.get(name) else {
                continue;
            };
            let subnets = net.subnets.clone().unwrap_or_default();
            let ips = per.static_ips.clone().unwrap_or_default();
            let addrs = subnets
                .iter()
                .zip(ips.iter())
                .filter_map(|(s, ip)| {
                    Some(NvAddress {
                        ipnet: IpNet::new(*ip, s.subnet.prefix_len()).ok()?,
                        gateway: s.gateway,
                    })
                })
                .collect();
            let iface = NvInterface {
                mac_address: per
                    .static_mac
                    .clone()
                    .unwrap_or_else(|| "02:00:00:00:00:01".to_string()),
                subnets: Some(addrs),
            };
            out.insert(
                name.clone(),
                NvStatus {
                    dns_server_ips: None,
                    dns_search_domains: None,
                    interfaces: Some(HashMap::from([(per.interface_name.clone(), iface)])),
                },
            );
            if let Ok(mut l) = self.live.lock() {
                l.push((opts.container_id.clone(), name.clone()));
            }
        }
        Ok(out)
    }

    async fn teardown(&self, _netns: &Path, opts: &NvOptions) -> Result<(), BackendError> {
        if let Ok(mut l) = self.live.lock() {
            l.retain(|(c, n)| !(c == &opts.container_id && opts.networks.contains_key(n)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_encode_as_netavark_reads_them() {
        let opts = NvOptions {
            container_id: "abc".into(),
            container_name: "web".into(),
            networks: BTreeMap::from([(
                "n1".into(),
                NvPerNetwork {
                    interface_name: "eth0".into(),
                    static_ips: Some(vec!["10.1.0.2".parse().unwrap()]),
                    aliases: None,
                    static_mac: Some("02:42:0a:01:00:02".into()),
                },
            )]),
            network_info: BTreeMap::from([(
                "n1".into(),
                NvNetwork {
                    name: "n1".into(),
                    id: "1234".into(),
                    driver: "bridge".into(),
                    network_interface: Some("br-1234".into()),
                    subnets: Some(vec![NvSubnet {
                        subnet: "10.1.0.0/24".parse().unwrap(),
                        gateway: Some("10.1.0.1".parse().unwrap()),
                        lease_range: None,
                    }]),
                    ipv6_enabled: false,
                    internal: false,
                    dns_enabled: true,
                    options: None,
                    ipam_options: None,
                    network_dns_servers: None,
                },
            )]),
            port_mappings: Some(vec![NvPortMapping {
                host_ip: "127.0.0.1".into(),
                container_port: 80,
                host_port: 8080,
                range: 1,
                protocol: "tcp".into(),
            }]),
            dns_servers: None,
        };
        let v = serde_json::to_value(&opts).unwrap();
        assert_eq!(v["networks"]["n1"]["static_ips"][0], "10.1.0.2");
        assert_eq!(
            v["network_info"]["n1"]["subnets"][0]["subnet"],
            "10.1.0.0/24"
        );
        assert_eq!(v["port_mappings"][0]["host_port"], 8080);
        let back: NvOptions = serde_json::from_value(v).unwrap();
        assert_eq!(back, opts);
    }

    #[test]
    fn setup_answers_parse() {
        let raw = r#"{"n1":{"dns_search_domains":["dns.podman"],"dns_server_ips":["10.231.7.1"],"interfaces":{"eth0":{"mac_address":"82:10:7a:c8:2a:73","subnets":[{"gateway":"10.231.7.1","ipnet":"10.231.7.2/24"}]}}}}"#;
        let st: BTreeMap<String, NvStatus> = serde_json::from_str(raw).unwrap();
        let eth0 = &st["n1"].interfaces.as_ref().unwrap()["eth0"];
        assert_eq!(eth0.mac_address, "82:10:7a:c8:2a:73");
        assert_eq!(
            eth0.subnets.as_ref().unwrap()[0].ipnet.to_string(),
            "10.231.7.2/24"
        );
    }
}
