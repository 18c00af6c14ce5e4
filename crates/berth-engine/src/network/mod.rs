//! Docker's networking model on netavark and aardvark-dns: the default `bridge`
//! network, user-defined bridge networks with DNS, `none`, `host` and
//! `container:<id>`, published ports, and what inspect, ps and stats show of them.
//!
//! The engine owns the model (network definitions, addresses, which container is on
//! which network, host ports); netavark owns the kernel (bridges, veths, routes,
//! iptables) and starts aardvark-dns. One exception, for cost: on the default bridge,
//! once netavark has made the bridge and its rules and the keeper holds them, a
//! plain container's veth (no forwarded port, no DNS) is made in-process (`veth`),
//! exactly as netavark would make it. Each container with a network namespace of its
//! own gets it pinned under the exec root (`netns`), so it outlives every daemon;
//! setup happens before the task is created, teardown when it exits, the namespace
//! goes when the container is removed. Everything is on disk (`store`) before the
//! kernel is touched, so a crash at any point leaves enough to finish or undo it.
//!
//! This module must never touch iptables, DNS, or any bridge itself: that is
//! netavark's and aardvark-dns's job, reached only through [`netavark::Backend`]
//! (which also carries `veth`'s one netlink job, so the tests' fake stands in for
//! it).

pub mod config;
pub mod container;
pub mod etc;
pub mod ipam;
mod keeper;
mod links;
pub mod netavark;
pub mod netns;
pub mod pool;
pub mod ports;
pub mod proxy;
pub mod store;
pub mod veth;
pub mod view;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use http::StatusCode;
use ipnet::{IpNet, Ipv4Net};

use self::ipam::{IpamError, Pool};
use self::netavark::{Backend, BackendError};
use self::store::{LiveState, NetworkRecord, SubnetConfig};

/// Errors of the network subsystem; [`NetworkError::status`] gives dockerd's code.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// No network by that name or id (404).
    #[error("network {0} not found")]
    NoSuchNetwork(String),
    /// The client's request is wrong (400).
    #[error("{0}")]
    Invalid(String),
    /// Not allowed on this network or container (403, as dockerd).
    #[error("{0}")]
    Forbidden(String),
    /// Conflicts with the current state (409).
    #[error("{0}")]
    Conflict(String),
    /// A host port is taken (500, as dockerd).
    #[error("{0}")]
    PortInUse(String),
    /// Addresses could not be given.
    #[error(transparent)]
    Ipam(#[from] IpamError),
    /// netavark or a namespace failed (500).
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The state files could not be written (500).
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

impl NetworkError {
    /// The HTTP status dockerd answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            NetworkError::NoSuchNetwork(_) => StatusCode::NOT_FOUND,
            NetworkError::Invalid(_) => StatusCode::BAD_REQUEST,
            NetworkError::Forbidden(_) => StatusCode::FORBIDDEN,
            NetworkError::Conflict(_) => StatusCode::CONFLICT,
            NetworkError::Ipam(IpamError::Invalid(_)) => StatusCode::BAD_REQUEST,
            NetworkError::Ipam(IpamError::NoPool) => StatusCode::FORBIDDEN,
            NetworkError::Ipam(IpamError::Exhausted { .. }) => StatusCode::INTERNAL_SERVER_ERROR,
            NetworkError::PortInUse(_) | NetworkError::Backend(_) | NetworkError::Store(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

/// berthd's network flags (and the matching keys of its config file).
#[derive(Debug, Clone)]
pub struct NetworkOptions {
    /// `--bridge`: the default network's bridge device.
    pub bridge: String,
    /// `--bip`: the default bridge's address and prefix (its gateway and subnet).
    pub bip: Option<Ipv4Net>,
    /// `--fixed-cidr`: the part of the default subnet containers get addresses from.
    pub fixed_cidr: Option<Ipv4Net>,
    /// `--default-address-pool`: where subnets come from when none is given.
    pub pools: Vec<Pool>,
    /// `--mtu` of the default bridge.
    pub mtu: Option<u32>,
    /// `--host-gateway-ip`: what `--add-host name:host-gateway` means (default: the
    /// default bridge's gateway).
    pub host_gateway_ip: Option<IpAddr>,
}

impl Default for NetworkOptions {
    fn default() -> Self {
        NetworkOptions {
            bridge: "berth0".into(),
            bip: None,
            fixed_cidr: None,
            pools: ipam::default_pools(),
            mtu: None,
            host_gateway_ip: None,
        }
    }
}

/// The default network's name, and the names that mean it.
pub const DEFAULT_NETWORK: &str = "bridge";

#[derive(Debug, Default)]
struct State {
    /// Network id -> definition.
    nets: BTreeMap<String, NetworkRecord>,
    /// Container id -> what is set up for it. Shared, so that a listing of every
    /// container reads each without copying it.
    /// Keyed by container id (berthd's random ids: a fast hash is safe).
    live: rustc_hash::FxHashMap<String, Arc<LiveState>>,
    /// Container id -> the sockets that keep its published host ports taken.
    held: HashMap<String, Vec<OwnedFd>>,
    /// Where the next ephemeral port search starts.
    next_ephemeral: u16,
    /// Namespaces set up in advance on the default bridge (see `pool`).
    pool: pool::PoolState,
}

/// The engine's networks.
#[derive(Debug)]
pub struct Networks {
    pub options: NetworkOptions,
    /// `<data-root>/networks`.
    nets_dir: PathBuf,
    /// `<data-root>/containers` (each container's `network.json`).
    containers_dir: PathBuf,
    /// `<exec-root>/network/containers`.
    live_dir: PathBuf,
    /// `<exec-root>/network/netns`.
    netns_dir: PathBuf,
    /// `<exec-root>/network/keepers`: the bridges' keepers (see `keeper`).
    keepers_dir: PathBuf,
    /// `<exec-root>/network/pool`: namespaces set up in advance (see `pool`).
    pool_dir: PathBuf,
    backend: Arc<dyn Backend>,
    state: Mutex<State>,
    /// Held across every change that allocates or touches the kernel, so two
    /// requests never hand out the same address or race in netavark.
    ops: tokio::sync::Mutex<()>,
    /// Held around each `netavark setup` with the bridge's ports read before and
    /// after (the pool sets up without `ops`).
    setups: tokio::sync::Mutex<()>,
    /// Told when a pooled namespace is ready (or failed).
    pool_ready: tokio::sync::Notify,
    /// Each container's `network.json` as last read or written, so that listing
    /// and inspecting containers read no file per container.
    configs: Mutex<rustc_hash::FxHashMap<String, Arc<store::ContainerNetConfig>>>,
    /// Whether the shared firewall rules are known to be in place, i.e. a `netavark
    /// setup` succeeded since berthd started and no network was wholly torn down
    /// since (netavark 1.4's complete teardown of one network also deletes the
    /// `FORWARD -j NETAVARK_ISOLATION_1` jump every other network relies on; its next
    /// setup puts it back). In-process veths (`veth`) are made only while it holds.
    rules_checked: std::sync::atomic::AtomicBool,
    /// Counts changes of the network definitions (create, remove), so that what
    /// shows them per container (the container list's rows) knows when to redo it.
    generation: std::sync::atomic::AtomicU64,
    /// Counts every change of what containers show of their networks: the
    /// definitions (`generation`), live states and stored configurations.
    changes: std::sync::atomic::AtomicU64,
    /// Which container each of the last `changes` concerned (None: every one).
    change_log: Mutex<crate::changelog::ChangeLog>,
}

/// `<exec-root>/network`: netavark's `--config` directory (aardvark-dns's files).
pub fn config_dir(exec_root: &Path) -> PathBuf {
    exec_root.join("network")
}

impl Networks {
    /// Loads the networks and live state, creating the built-in networks (and
    /// choosing the default bridge's subnet) the first time.
    pub fn open(
        data_root: &Path,
        exec_root: &Path,
        options: NetworkOptions,
        backend: Arc<dyn Backend>,
    ) -> Result<Networks, NetworkError> {
        let net_dir = config_dir(exec_root);
        let n = Networks {
            options,
            nets_dir: data_root.join("networks"),
            containers_dir: data_root.join("containers"),
            live_dir: net_dir.join("containers"),
            netns_dir: net_dir.join("netns"),
            keepers_dir: net_dir.join("keepers"),
            pool_dir: net_dir.join("pool"),
            backend,
            state: Mutex::new(State::default()),
            ops: tokio::sync::Mutex::new(()),
            setups: tokio::sync::Mutex::new(()),
            pool_ready: tokio::sync::Notify::new(),
            configs: Mutex::new(rustc_hash::FxHashMap::default()),
            rules_checked: std::sync::atomic::AtomicBool::new(false),
            generation: std::sync::atomic::AtomicU64::new(0),
            changes: std::sync::atomic::AtomicU64::new(0),
            change_log: Mutex::new(crate::changelog::ChangeLog::default()),
        };
        for d in [
            &n.nets_dir,
            &n.live_dir,
            &n.netns_dir,
            &n.keepers_dir,
            &n.pool_dir,
        ] {
            std::fs::create_dir_all(d).map_err(|source| store::StoreError::Io {
                context: "creating",
                path: d.clone(),
                source,
            })?;
        }
        let mut nets: BTreeMap<String, NetworkRecord> =
            store::load_all::<NetworkRecord>(&n.nets_dir)
                .into_iter()
                .filter(|r| !r.id.is_empty())
                .map(|r| (r.id.clone(), r))
                .collect();
        let live: HashMap<String, LiveState> = store::load_all::<LiveState>(&n.live_dir)
            .into_iter()
            .filter(|l| !l.container_id.is_empty())
            .map(|l| (l.container_id.clone(), l))
            .collect();
        n.ensure_builtins(&mut nets, &live)?;
        let mut st = n.lock();
        st.nets = nets;
        st.live = live.into_iter().map(|(k, v)| (k, Arc::new(v))).collect();
        st.next_ephemeral = ports::ephemeral_range().0;
        drop(st);
        Ok(n)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn net_path(&self, id: &str) -> PathBuf {
        self.nets_dir.join(format!("{id}.json"))
    }

    fn live_path(&self, id: &str) -> PathBuf {
        self.live_dir.join(format!("{id}.json"))
    }

    /// Where a container's namespace is pinned.
    pub fn netns_path(&self, container_id: &str) -> PathBuf {
        netns::path_for(&self.netns_dir, container_id)
    }

    /// `<data-root>/containers/<id>/network.json`.
    pub fn config_path(&self, container_id: &str) -> PathBuf {
        self.containers_dir.join(container_id).join("network.json")
    }

    /// A container's `network.json`, from memory once read; None if it has none.
    pub fn stored_config(&self, container_id: &str) -> Option<Arc<store::ContainerNetConfig>> {
        let configs = || self.configs.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = configs().get(container_id) {
            return Some(c.clone());
        }
        let c = Arc::new(store::load::<store::ContainerNetConfig>(
            &self.config_path(container_id),
        )?);
        configs().insert(container_id.to_string(), c.clone());
        Some(c)
    }

    /// [`Self::stored_config`] of each container, those in memory read under one
    /// lock (a list of hundreds of containers).
    pub fn stored_configs<'a>(
        &self,
        ids: impl Iterator<Item = &'a str>,
    ) -> Vec<Option<Arc<store::ContainerNetConfig>>> {
        let mut out: Vec<(&str, Option<Arc<store::ContainerNetConfig>>)> = {
            let configs = self.configs.lock().unwrap_or_else(PoisonError::into_inner);
            ids.map(|id| (id, configs.get(id).cloned())).collect()
        };
        for (id, c) in &mut out {
            if c.is_none() {
                *c = self.stored_config(id);
            }
        }
        out.into_iter().map(|(_, c)| c).collect()
    }

    /// Writes a container's `network.json` (durably), then remembers it.
    pub fn save_config(
        &self,
        container_id: &str,
        cfg: &store::ContainerNetConfig,
    ) -> Result<(), NetworkError> {
        store::save(&self.config_path(container_id), cfg)?;
        self.configs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(container_id.to_string(), Arc::new(cfg.clone()));
        self.changed(Some(container_id));
        Ok(())
    }

    /// Forgets a removed container's `network.json`.
    pub fn forget_config(&self, container_id: &str) {
        self.configs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(container_id);
        self.changed(Some(container_id));
    }

    /// The backend (for the container hooks).
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// bridge, host and none; the bridge's subnet from `--bip`, else the one chosen
    /// before, else the first free one of the pools.
    fn ensure_builtins(
        &self,
        nets: &mut BTreeMap<String, NetworkRecord>,
        live: &HashMap<String, LiveState>,
    ) -> Result<(), NetworkError> {
        let now = crate::lifecycle::now_rfc3339();
        for (name, driver) in [("host", "host"), ("none", "null")] {
            if !nets.values().any(|r| r.builtin && r.name == name) {
                let rec = NetworkRecord {
                    id: new_id()?,
                    name: name.to_string(),
                    created: now.clone(),
                    driver: driver.to_string(),
                    builtin: true,
                    ipam_driver: "default".into(),
                    ..NetworkRecord::default()
                };
                store::save(&self.net_path(&rec.id), &rec)?;
                nets.insert(rec.id.clone(), rec);
            }
        }
        let existing = nets
            .values()
            .find(|r| r.builtin && r.name == DEFAULT_NETWORK)
            .cloned();
        let in_use = existing.as_ref().is_some_and(|r| {
            live.values()
                .any(|l| l.attachments.iter().any(|a| a.network_id == r.id))
        });
        let wanted_subnet = self.options.bip.map(|bip| SubnetConfig {
            subnet: IpNet::V4(bip.trunc()),
            gateway: Some(IpAddr::V4(bip.addr())),
            ip_range: self.options.fixed_cidr.map(IpNet::V4),
            aux: BTreeMap::new(),
        });
        let mut rec = match existing {
            Some(r) => r,
            None => NetworkRecord {
                id: new_id()?,
                name: DEFAULT_NETWORK.to_string(),
                created: now,
                driver: "bridge".into(),
                builtin: true,
                ipam_driver: "default".into(),
                ..NetworkRecord::default()
            },
        };
        let before = rec.clone();
        if in_use {
            if rec.bridge != self.options.bridge
                || wanted_subnet
                    .as_ref()
                    .is_some_and(|w| rec.subnets.first() != Some(w))
            {
                tracing::warn!(
                    "the default bridge network has running containers: keeping {} on {} until they stop",
                    rec.bridge,
                    rec.subnets.first().map(|s| s.subnet.to_string()).unwrap_or_default()
                );
            }
        } else {
            rec.bridge = self.options.bridge.clone();
            rec.mtu = self.options.mtu;
            match wanted_subnet {
                Some(s) => rec.subnets = vec![s],
                None if rec.subnets.is_empty() => {
                    let mut taken = ipam::host_routes();
                    taken.extend(
                        nets.values()
                            .filter(|r| r.id != rec.id)
                            .flat_map(|r| r.subnets.iter().map(|s| s.subnet)),
                    );
                    let subnet = ipam::choose_subnet(&self.options.pools, &taken)?;
                    let gw = ipam::default_gateway(&IpNet::V4(subnet));
                    rec.subnets = vec![SubnetConfig {
                        subnet: IpNet::V4(subnet),
                        gateway: gw,
                        ip_range: self.options.fixed_cidr.map(IpNet::V4),
                        aux: BTreeMap::new(),
                    }];
                }
                None => {
                    if let Some(s) = rec.subnets.first_mut() {
                        s.ip_range = self.options.fixed_cidr.map(IpNet::V4);
                    }
                }
            }
        }
        rec.options = default_bridge_options(&rec);
        if rec != before {
            store::save(&self.net_path(&rec.id), &rec)?;
        }
        nets.insert(rec.id.clone(), rec);
        Ok(())
    }

    /// Every network, in name order.
    pub fn list(&self) -> Vec<NetworkRecord> {
        let mut v: Vec<NetworkRecord> = self.lock().nets.values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Finds a network as dockerd does: exact name, exact id, then a unique id prefix.
    pub fn get(&self, reference: &str) -> Result<NetworkRecord, NetworkError> {
        self.with(reference, NetworkRecord::clone)
            .ok_or_else(|| NetworkError::NoSuchNetwork(reference.to_string()))
    }

    /// `f` of a network (name, id or unique id prefix), without copying its
    /// record: for what reads a network once per container of a listing.
    pub fn with<T>(&self, reference: &str, f: impl FnOnce(&NetworkRecord) -> T) -> Option<T> {
        find(&self.lock().nets, reference).map(f)
    }

    /// How many times a network was created or removed since berthd started (the
    /// built-in ones are loaded before anything asks).
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    fn bump_generation(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.changed(None);
    }

    /// Changes with every network created or removed, container network state
    /// recorded or dropped, and configuration saved or forgotten.
    pub fn version(&self) -> u64 {
        self.changes.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Whether every change after `version` concerned a container for which
    /// `unseen` says yes (see [`crate::changelog::ChangeLog`]); no after a network
    /// was created or removed, which every container's row may show.
    pub fn only_unseen_since(&self, version: u64, unseen: impl FnMut(&str) -> bool) -> bool {
        let log = self
            .change_log
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        log.only_unseen_since(version, self.version(), unseen)
    }

    /// Counts a change of what container `id` (None: every container) shows.
    fn changed(&self, id: Option<&str>) {
        // Counted and recorded under one lock, so that a reader of the log sees a
        // version only with the change that made it.
        let mut log = self
            .change_log
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let version = self
            .changes
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel)
            + 1;
        log.record(version, id);
    }

    /// The default bridge network.
    pub fn default_network(&self) -> Result<NetworkRecord, NetworkError> {
        let st = self.lock();
        st.nets
            .values()
            .find(|r| r.builtin && r.name == DEFAULT_NETWORK)
            .cloned()
            .ok_or_else(|| NetworkError::NoSuchNetwork(DEFAULT_NETWORK.into()))
    }

    /// What `--add-host NAME:host-gateway` resolves to.
    pub fn host_gateway(&self) -> Option<IpAddr> {
        self.options.host_gateway_ip.or_else(|| {
            self.default_network()
                .ok()
                .and_then(|n| n.subnets.first().and_then(|s| s.gateway))
        })
    }

    /// The live state of a container, if anything is set up for it.
    pub fn live(&self, container_id: &str) -> Option<LiveState> {
        self.lock()
            .live
            .get(container_id)
            .map(|l| LiveState::clone(l))
    }

    /// [`Networks::live`] to read, not to change: no copy.
    pub fn live_shared(&self, container_id: &str) -> Option<Arc<LiveState>> {
        self.lock().live.get(container_id).cloned()
    }

    /// [`Self::live_shared`] of each id (None: none asked), under one lock.
    pub fn live_shared_each<'a>(
        &self,
        ids: impl Iterator<Item = Option<&'a str>>,
    ) -> Vec<Option<Arc<LiveState>>> {
        let st = self.lock();
        ids.map(|id| id.and_then(|id| st.live.get(id).cloned()))
            .collect()
    }

    /// Every live state.
    pub fn all_live(&self) -> Vec<Arc<LiveState>> {
        self.lock().live.values().cloned().collect()
    }

    /// Records a container's live state on disk, then in memory.
    fn put_live(&self, live: &LiveState) -> Result<(), NetworkError> {
        store::save_volatile(&self.live_path(&live.container_id), live)?;
        self.lock()
            .live
            .insert(live.container_id.clone(), Arc::new(live.clone()));
        self.changed(Some(&live.container_id));
        Ok(())
    }

    /// Forgets a container's live state.
    fn drop_live(&self, container_id: &str) -> Result<(), NetworkError> {
        store::remove(&self.live_path(container_id))?;
        self.lock().live.remove(container_id);
        self.changed(Some(container_id));
        Ok(())
    }

    /// Addresses in use on a network (every attachment there, the pool's too).
    fn used_addresses(&self, network_id: &str) -> HashSet<IpAddr> {
        let st = self.lock();
        st.live
            .values()
            .map(|l| &**l)
            .chain(st.pool.entries())
            .flat_map(|l| l.attachments.iter())
            .filter(|a| a.network_id == network_id)
            .flat_map(|a| a.addresses.iter().map(|n| n.addr()))
            .collect()
    }

    /// `netavark setup`, and the host end of the veth it put on the bridge (when it
    /// can be told: exactly one new port). Every setup of this berthd goes through
    /// here, so no other port of its own appears meanwhile.
    async fn setup_watching(
        &self,
        netns: &Path,
        options: &netavark::NvOptions,
    ) -> Result<
        (
            BTreeMap<String, netavark::NvStatus>,
            Option<store::HostLink>,
        ),
        BackendError,
    > {
        let bridge = options
            .network_info
            .values()
            .next()
            .and_then(|n| n.network_interface.clone())
            .unwrap_or_default();
        let _setups = self.setups.lock().await;
        let before = links::bridge_ports(&bridge);
        let status = self.backend.setup(netns, options).await?;
        self.rules_checked
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let link = links::new_port(&before, links::bridge_ports(&bridge));
        Ok((status, link))
    }

    /// `netavark teardown`; a teardown that took a bridge away (the network's last
    /// endpoint) may have taken shared rules with it, so the next setup is
    /// netavark's (see `rules_checked`).
    pub(super) async fn teardown(
        &self,
        netns: &Path,
        options: &netavark::NvOptions,
    ) -> Result<(), BackendError> {
        let r = self.backend.teardown(netns, options).await;
        let bridge_gone = options.network_info.values().any(|n| {
            n.network_interface
                .as_deref()
                .is_some_and(|b| !Path::new("/sys/class/net").join(b).exists())
        });
        if r.is_err() || bridge_gone {
            self.rules_checked
                .store(false, std::sync::atomic::Ordering::SeqCst);
        }
        r
    }

    /// Whether the shared firewall rules are known to be in place (`rules_checked`).
    pub(super) fn rules_checked(&self) -> bool {
        self.rules_checked.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// At a clean stop: the pool is undone (see `pool`), and no new entry made.
    pub async fn shutdown(&self) {
        let _ops = self.ops.lock().await;
        self.drop_pool(true).await;
    }

    /// Ids of the containers attached to a network now.
    pub fn attached_containers(&self, network_id: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .lock()
            .live
            .values()
            .filter(|l| l.attachments.iter().any(|a| a.network_id == network_id))
            .map(|l| l.container_id.clone())
            .collect();
        v.sort();
        v
    }

    /// Creates a user-defined bridge network.
    pub async fn create(&self, req: CreateRequest) -> Result<NetworkRecord, NetworkError> {
        let _ops = self.ops.lock().await;
        let name = req.name.trim().to_string();
        if name.is_empty() {
            return Err(NetworkError::Invalid("network name cannot be empty".into()));
        }
        if name.contains('/') || name.chars().any(char::is_control) {
            return Err(NetworkError::Invalid(format!(
                "invalid network name {name:?}"
            )));
        }
        match req.driver.as_str() {
            "" | "bridge" => {}
            "host" | "null" => {
                return Err(NetworkError::Forbidden(format!(
                    "only one instance of \"{}\" network is allowed",
                    if req.driver == "null" { "none" } else { "host" }
                )))
            }
            "overlay" => {
                return Err(NetworkError::Forbidden(
                    "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.".into(),
                ))
            }
            other => {
                return Err(NetworkError::NoSuchNetwork(format!(
                    "plugin \"{other}\" (driver)"
                )))
            }
        }
        match req.scope.as_str() {
            "" | "local" => {}
            other => {
                return Err(NetworkError::Invalid(format!(
                    "scope {other:?} is not supported: only local networks exist here"
                )))
            }
        }
        if !matches!(req.ipam_driver.as_str(), "" | "default") {
            return Err(NetworkError::NoSuchNetwork(format!(
                "plugin \"{}\" (IPAM driver)",
                req.ipam_driver
            )));
        }
        let nets = self.lock().nets.clone();
        if nets.values().any(|r| r.name == name) {
            return Err(NetworkError::Conflict(format!(
                "network with name {name} already exists"
            )));
        }
        let id = new_id()?;
        let bridge = match req.options.get("com.docker.network.bridge.name") {
            Some(b) if !b.is_empty() => b.clone(),
            _ => format!("br-{}", &id[..12]),
        };
        if bridge.len() > 15 || bridge.contains('/') || bridge.contains(char::is_whitespace) {
            return Err(NetworkError::Invalid(format!(
                "invalid bridge name {bridge:?}: at most 15 characters, no '/' or spaces"
            )));
        }
        if nets.values().any(|r| r.is_bridge() && r.bridge == bridge) {
            return Err(NetworkError::Conflict(format!(
                "bridge name {bridge} is already used by another network"
            )));
        }
        let mtu = match req.options.get("com.docker.network.driver.mtu") {
            Some(m) => Some(
                m.parse::<u32>()
                    .ok()
                    .filter(|m| (68..=65535).contains(m))
                    .ok_or_else(|| NetworkError::Invalid(format!("invalid MTU {m:?}")))?,
            ),
            None => None,
        };
        let mut subnets = vec![];
        for c in &req.ipam_config {
            subnets.push(parse_ipam_config(c)?);
        }
        let user_subnets = !subnets.is_empty();
        if !req.enable_ipv6 {
            subnets.retain(|s| s.subnet.addr().is_ipv4());
        }
        if req.enable_ipv6 && !subnets.iter().any(|s| s.subnet.addr().is_ipv6()) {
            return Err(NetworkError::Invalid(
                "could not find an available, non-overlapping IPv6 address pool: give one with --subnet".into(),
            ));
        }
        // Subnets must not overlap each other nor another network's.
        for (i, s) in subnets.iter().enumerate() {
            let clash = subnets[..i]
                .iter()
                .any(|o| ipam::overlaps(&o.subnet, &s.subnet))
                || nets
                    .values()
                    .flat_map(|r| r.subnets.iter())
                    .any(|o| ipam::overlaps(&o.subnet, &s.subnet));
            if clash {
                return Err(NetworkError::Forbidden(format!(
                    "Pool overlaps with other one on this address space: {}",
                    s.subnet
                )));
            }
        }
        if !subnets.iter().any(|s| s.subnet.addr().is_ipv4()) {
            let mut taken = ipam::host_routes();
            taken.extend(
                nets.values()
                    .flat_map(|r| r.subnets.iter().map(|s| s.subnet)),
            );
            let subnet = IpNet::V4(ipam::choose_subnet(&self.options.pools, &taken)?);
            subnets.insert(
                0,
                SubnetConfig {
                    subnet,
                    gateway: ipam::default_gateway(&subnet),
                    ip_range: None,
                    aux: BTreeMap::new(),
                },
            );
        }
        let rec = NetworkRecord {
            id,
            name,
            created: crate::lifecycle::now_rfc3339(),
            driver: "bridge".into(),
            bridge,
            subnets,
            user_subnets,
            internal: req.internal,
            enable_ipv6: req.enable_ipv6,
            attachable: req.attachable,
            ingress: req.ingress,
            labels: req.labels,
            options: req.options,
            ipam_driver: "default".into(),
            ipam_options: req.ipam_options,
            mtu,
            builtin: false,
        };
        store::save(&self.net_path(&rec.id), &rec)?;
        self.lock().nets.insert(rec.id.clone(), rec.clone());
        self.bump_generation();
        Ok(rec)
    }

    /// Removes a user-defined network that no running container is attached to.
    pub async fn remove(&self, reference: &str) -> Result<NetworkRecord, NetworkError> {
        let _ops = self.ops.lock().await;
        let rec = self.get(reference)?;
        if rec.builtin {
            return Err(NetworkError::Forbidden(format!(
                "{} is a pre-defined network and cannot be removed",
                rec.name
            )));
        }
        if !self.attached_containers(&rec.id).is_empty() {
            return Err(NetworkError::Conflict(format!(
                "error while removing network: network {} id {} has active endpoints",
                rec.name, rec.id
            )));
        }
        // Its bridge and firewall rules go with its keeper.
        self.drop_keeper(&rec.id).await;
        store::remove(&self.net_path(&rec.id))?;
        self.lock().nets.remove(&rec.id);
        self.reassert_shared_rules().await;
        self.bump_generation();
        Ok(rec)
    }

    /// Takes the host ports a container publishes, so nothing else can bind them
    /// while it runs (netavark forwards with DNAT and binds nothing itself).
    fn hold_ports(&self, container_id: &str, fds: Vec<OwnedFd>) {
        self.lock()
            .held
            .entry(container_id.to_string())
            .or_default()
            .extend(fds);
    }

    fn release_ports(&self, container_id: &str) {
        self.lock().held.remove(container_id);
    }
}

/// `POST /networks/create`, parsed.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    pub name: String,
    pub driver: String,
    pub scope: String,
    pub internal: bool,
    pub attachable: bool,
    pub ingress: bool,
    pub enable_ipv6: bool,
    pub ipam_driver: String,
    pub ipam_config: Vec<bollard_stubs::models::IpamConfig>,
    pub ipam_options: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

fn parse_ipam_config(c: &bollard_stubs::models::IpamConfig) -> Result<SubnetConfig, NetworkError> {
    let subnet_s = c.subnet.as_deref().unwrap_or("");
    if subnet_s.is_empty() {
        return Err(NetworkError::Invalid(
            "a subnet is required when an IP range or gateway is given".into(),
        ));
    }
    let given = ipam::parse_net(subnet_s)?;
    let subnet = given.trunc();
    if subnet != given {
        return Err(NetworkError::Invalid(format!(
            "invalid subnet {subnet_s}: it should be {subnet}"
        )));
    }
    let ip_range = match c.ip_range.as_deref().filter(|s| !s.is_empty()) {
        Some(r) => {
            let r = ipam::parse_net(r)?.trunc();
            if !subnet.contains(&r) {
                return Err(NetworkError::Invalid(format!(
                    "invalid ip-range {r}: not in subnet {subnet}"
                )));
            }
            Some(r)
        }
        None => None,
    };
    let gateway = match c.gateway.as_deref().filter(|s| !s.is_empty()) {
        Some(g) => {
            let g = ipam::parse_addr(g)?;
            if !subnet.contains(&g) {
                return Err(NetworkError::Invalid(format!(
                    "invalid gateway {g}: not in subnet {subnet}"
                )));
            }
            Some(g)
        }
        None => ipam::default_gateway(&subnet),
    };
    let mut aux = BTreeMap::new();
    for (k, v) in c.auxiliary_addresses.clone().unwrap_or_default() {
        let a = ipam::parse_addr(&v)?;
        if !subnet.contains(&a) {
            return Err(NetworkError::Invalid(format!(
                "invalid auxiliary address {k}={a}: not in subnet {subnet}"
            )));
        }
        aux.insert(k, a);
    }
    Ok(SubnetConfig {
        subnet,
        gateway,
        ip_range,
        aux,
    })
}

/// The options dockerd shows on its default bridge, for berth's.
fn default_bridge_options(rec: &NetworkRecord) -> BTreeMap<String, String> {
    let mut o = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        o.insert(format!("com.docker.network.{k}"), v);
    };
    put("bridge.default_bridge", "true".into());
    put("bridge.enable_icc", "true".into());
    put("bridge.enable_ip_masquerade", "true".into());
    put("bridge.host_binding_ipv4", "0.0.0.0".into());
    put("bridge.name", rec.bridge.clone());
    put("driver.mtu", rec.mtu.unwrap_or(1500).to_string());
    o
}

fn find<'a>(
    nets: &'a BTreeMap<String, NetworkRecord>,
    reference: &str,
) -> Option<&'a NetworkRecord> {
    if reference.is_empty() {
        return None;
    }
    if let Some(r) = nets.values().find(|r| r.name == reference) {
        return Some(r);
    }
    if let Some(r) = nets.get(reference) {
        return Some(r);
    }
    let mut m = nets.values().filter(|r| r.id.starts_with(reference));
    match (m.next(), m.next()) {
        (Some(r), None) => Some(r),
        _ => None,
    }
}

fn new_id() -> Result<String, NetworkError> {
    crate::fsutil::random_id().map_err(|source| {
        NetworkError::Store(store::StoreError::Io {
            context: "reading",
            path: PathBuf::from("/dev/urandom"),
            source,
        })
    })
}

/// The gateway of a network's first IPv4 subnet.
pub fn ipv4_gateway(rec: &NetworkRecord) -> Option<Ipv4Addr> {
    rec.subnets.iter().find_map(|s| match s.gateway {
        Some(IpAddr::V4(g)) => Some(g),
        _ => None,
    })
}

/// Undoes everything a berthd with this exec root set up, without berthd: every
/// attachment torn down with the options it was set up with, every pinned namespace
/// removed, the live state forgotten, and its aardvark-dns stopped. For test stacks
/// and `uninstall.sh --purge`; errors are reported and the rest still done.
pub async fn teardown_all(exec_root: &Path, backend: &dyn Backend) -> Vec<String> {
    let mut errors = vec![];
    let dir = config_dir(exec_root);
    let live_dir = dir.join("containers");
    let keepers_dir = dir.join("keepers");
    // The pool first: unpinning an entry undoes it (see `pool`); its veth must be
    // gone before the keepers' teardown, or the bridge would stay.
    let pool_dir = dir.join("pool");
    let pooled = store::load_all::<LiveState>(&pool_dir);
    for e in std::fs::read_dir(&pool_dir).into_iter().flatten().flatten() {
        if e.path().extension().is_some_and(|x| x == "ns") {
            if let Err(e) = backend.remove_netns(&e.path()).await {
                errors.push(e.to_string());
            }
        }
    }
    let veths: Vec<_> = pooled
        .iter()
        .flat_map(|l| l.attachments.iter().filter_map(|a| a.host_link.clone()))
        .collect();
    links::wait_gone(&veths).await;
    for l in &pooled {
        if let Err(e) = store::remove(&pool_dir.join(format!("{}.json", l.container_id))) {
            errors.push(e.to_string());
        }
    }
    // Containers first: the bridges' keepers last, so that their teardown takes the
    // bridges and the networks' rules with them.
    let states = store::load_all::<LiveState>(&live_dir)
        .into_iter()
        .map(|l| (live_dir.clone(), l))
        .chain(
            store::load_all::<LiveState>(&keepers_dir)
                .into_iter()
                .map(|l| (keepers_dir.clone(), l)),
        );
    for (state_dir, mut live) in states {
        proxy::stop_all(&live.ports);
        let netns = live
            .netns
            .clone()
            .unwrap_or_else(|| netns::path_for(&dir.join("netns"), &live.container_id));
        if !live.attachments.is_empty() {
            if let Err(e) = backend.ensure_netns(&netns).await {
                errors.push(e.to_string());
            }
        }
        while let Some(a) = live.attachments.pop() {
            if let Err(e) = backend.teardown(&netns, &a.options).await {
                errors.push(e.to_string());
            }
        }
        if let Err(e) = backend.remove_netns(&netns).await {
            errors.push(e.to_string());
        }
        let name = match live.container_id.strip_prefix("keeper-") {
            Some(net) if state_dir == keepers_dir => net.to_string(),
            _ => live.container_id.clone(),
        };
        if let Err(e) = store::remove(&state_dir.join(format!("{name}.json"))) {
            errors.push(e.to_string());
        }
    }
    // Namespaces without a state file (a crash between the two).
    let keeper_ns = std::fs::read_dir(&keepers_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "ns"));
    for e in std::fs::read_dir(dir.join("netns"))
        .into_iter()
        .flatten()
        .flatten()
        .chain(keeper_ns)
    {
        if let Err(e) = backend.remove_netns(&e.path()).await {
            errors.push(e.to_string());
        }
    }
    let aardvark = dir.join("aardvark-dns");
    if let Ok(pid) = std::fs::read_to_string(aardvark.join("aardvark.pid")) {
        if let Ok(pid) = pid.trim().parse::<i32>() {
            // Only the aardvark-dns of this directory: a stale pid must not hit a stranger.
            let ours = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&*aardvark.to_string_lossy()))
                .unwrap_or(false);
            if ours && pid > 1 {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
    errors
}

#[cfg(test)]
mod config_cache_tests {
    use super::*;

    #[test]
    fn network_json_is_read_once_and_forgotten_with_its_container() {
        let data = tempfile::tempdir().unwrap();
        let exec = tempfile::tempdir().unwrap();
        let nets = Networks::open(
            data.path(),
            exec.path(),
            NetworkOptions::default(),
            Arc::new(netavark::FakeBackend::default()),
        )
        .unwrap();
        let id = "c1";
        std::fs::create_dir_all(data.path().join("containers").join(id)).unwrap();
        assert_eq!(nets.stored_config(id).as_deref(), None);
        let cfg = store::ContainerNetConfig {
            mode: "none".into(),
            endpoints: vec![],
        };
        nets.save_config(id, &cfg).unwrap();
        // Written through to disk, and served from memory afterwards.
        let path = nets.config_path(id);
        assert!(path.exists());
        std::fs::remove_file(&path).unwrap();
        assert_eq!(nets.stored_config(id).as_deref(), Some(&cfg));
        nets.forget_config(id);
        assert_eq!(nets.stored_config(id).as_deref(), None);
        // A file another berthd wrote is read, then remembered.
        store::save(&path, &cfg).unwrap();
        assert_eq!(nets.stored_config(id).as_deref(), Some(&cfg));
    }
}
