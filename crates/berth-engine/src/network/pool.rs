//! A few network namespaces set up in advance on the default bridge, handed to the
//! containers that need nothing of their own there; and a few bare ones (loopback
//! up, nothing else) for `--network none` containers, whose start would otherwise
//! wait for the kernel to make one (about a millisecond: `unshare(CLONE_NEWNET)`
//! sets up a whole network stack).
//!
//! `netavark setup` (a process that starts some twenty `iptables` ones) is the
//! slowest part of a start. (Only the pool's first entry costs that now: once the
//! bridge's keeper holds the bridge and its rules, entries get their veth
//! in-process, see `veth`, which made the pool's refills cheap too.) Most
//! containers on the default bridge want exactly what any other gets: an address
//! from berth's IPAM, the MAC made from it, no port for netavark to forward (TCP
//! ports on loopback are served by a proxy from outside the namespace, see
//! `proxy`), no static address or MAC (and the default bridge has no DNS). For
//! those, berthd keeps [`POOL_SIZE`] namespaces already set up, each with its veth
//! on the bridge and its address, and a start takes one: the namespace is pinned at
//! the container's own path as well (a second bind mount) and unpinned from the
//! pool's, its attachment becomes the container's, and a new one is made in the
//! background.
//! What a container then sees (its address, MAC, routes, hostname, hosts and
//! resolv.conf) is what a setup of its own would have given it.
//!
//! The pool is made only once a start could have used it, so a berthd that never
//! runs such a container never has one. Each entry is recorded under
//! `<exec-root>/network/pool/` (`<name>.json`, the namespace at `<name>.ns`) before it
//! is set up, and its address counts as taken. It holds nothing outside its
//! namespace but its veth (see `container::unplug`), so unpinning it is all it takes
//! to undo it: at berthd's start (whatever a crash left), at a clean stop, and in
//! `teardown_all`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bollard_stubs::models::EndpointSettings;

use super::netavark::{BackendError, NvOptions, NvPerNetwork};
use super::store::{self, Attachment, LiveState, NetworkRecord};
use super::veth::PlainVeth;
use super::{ipam, links, NetworkError, Networks, DEFAULT_NETWORK};
use crate::engine::Engine;

/// How many namespaces are kept ready.
pub const POOL_SIZE: usize = 2;

/// How many bare namespaces are kept ready.
pub const BARE_POOL_SIZE: usize = 2;

/// The pool's state, under the networks' state lock (IPAM counts its addresses).
#[derive(Debug, Default)]
pub(super) struct PoolState {
    /// Set up and ready to be taken, oldest first.
    pub ready: Vec<LiveState>,
    /// The one being set up now.
    pub filling: Option<LiveState>,
    /// Whether a start could have used the pool (it is made only then).
    pub wanted: bool,
    /// berthd is stopping: nothing new is made.
    pub closed: bool,
    /// Bare namespaces ready to be taken, oldest first (`bare-<n>` entries: no
    /// attachment, no address).
    pub bare: Vec<LiveState>,
    /// Whether a `none` start could have used a bare one (they are made only then).
    pub bare_wanted: bool,
    /// A task is making bare ones.
    pub bare_filling: bool,
}

impl PoolState {
    /// Every entry, ready or being set up.
    pub fn entries(&self) -> impl Iterator<Item = &LiveState> {
        self.ready.iter().chain(self.filling.iter())
    }
}

/// Whether a container on these networks can take a namespace from the pool: the
/// default bridge alone, no port netavark must forward (`forwards`; ports a proxy
/// serves need nothing in the namespace), no static address or MAC.
pub(super) fn poolable(nets: &[(NetworkRecord, EndpointSettings)], forwards: bool) -> bool {
    let [(net, settings)] = nets else {
        return false;
    };
    let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
    let ipam = settings.ipam_config.clone().unwrap_or_default();
    !forwards
        && net.builtin
        && net.name == DEFAULT_NETWORK
        && net.is_bridge()
        && !set(&ipam.ipv4_address)
        && !set(&ipam.ipv6_address)
        && !set(&settings.mac_address)
}

impl Networks {
    fn pool_json(&self, name: &str) -> PathBuf {
        self.pool_dir.join(format!("{name}.json"))
    }

    fn pool_netns(&self, name: &str) -> PathBuf {
        self.pool_dir.join(format!("{name}.ns"))
    }

    /// Takes a ready namespace (or waits for the one being set up, which is ready
    /// sooner than a setup of the caller's own would be). Marks the pool wanted.
    /// Called under the network lock.
    pub(super) async fn take_pooled(&self) -> Option<LiveState> {
        let ready = self.pool_ready.notified();
        tokio::pin!(ready);
        ready.as_mut().enable();
        {
            let mut st = self.lock();
            if st.pool.closed {
                return None;
            }
            st.pool.wanted = true;
            if !st.pool.ready.is_empty() {
                return Some(st.pool.ready.remove(0));
            }
            // Nothing on its way either: the caller sets up its own.
            st.pool.filling.as_ref()?;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), ready).await;
        let mut st = self.lock();
        if st.pool.ready.is_empty() {
            None
        } else {
            Some(st.pool.ready.remove(0))
        }
    }

    /// Hands `entry` to a container: the attachment recorded as the container's
    /// (`live`), then the namespace pinned at `netns` too, then the pool's pin and
    /// record dropped. In that order, a crash at any point leaves what restore
    /// undoes: the pool's entries are unpinned, a container's attachment whose
    /// namespace was never pinned is torn down as any other. On an error the entry
    /// is dropped and `live` left as it was. Called under the network lock.
    pub(super) async fn adopt_pooled(
        &self,
        entry: LiveState,
        live: &mut LiveState,
        netns: &Path,
    ) -> Result<(), NetworkError> {
        let mut taken = live.clone();
        taken.netns = Some(netns.to_path_buf());
        taken.ports.clear();
        taken.attachments = entry.attachments.clone();
        for a in &mut taken.attachments {
            a.endpoint_id = super::new_id()?;
        }
        if let Err(e) = self.put_live(&taken) {
            self.drop_pooled(entry).await;
            return Err(e);
        }
        if let Err(e) = self.pin_pooled_at(&entry, netns).await {
            if let Err(e) = self.put_live(live) {
                tracing::warn!(error = %e, "recording a container's network state");
            }
            self.drop_pooled(entry).await;
            return Err(e.into());
        }
        *live = taken;
        self.release_pooled(&entry).await;
        Ok(())
    }

    /// Where the pool pins `entry`'s namespace.
    fn pooled_netns(&self, entry: &LiveState) -> PathBuf {
        entry
            .netns
            .clone()
            .unwrap_or_else(|| self.pool_netns(&entry.container_id))
    }

    /// Pins `entry`'s namespace at a container's `netns` as well. A bare file left
    /// there by a crash is replaced (the caller checked that no namespace is pinned
    /// there).
    async fn pin_pooled_at(&self, entry: &LiveState, netns: &Path) -> Result<(), BackendError> {
        self.backend.remove_netns(netns).await?;
        self.backend
            .share_netns(&self.pooled_netns(entry), netns)
            .await
    }

    /// The pool's pin and record of an entry a container now holds are dropped: the
    /// container's pin keeps the namespace.
    async fn release_pooled(&self, entry: &LiveState) {
        if let Err(e) = self.backend.remove_netns(&self.pooled_netns(entry)).await {
            tracing::warn!(error = %e, "unpinning a pooled namespace");
        }
        if let Err(e) = store::remove(&self.pool_json(&entry.container_id)) {
            tracing::warn!(error = %e, "forgetting a pooled namespace");
        }
    }

    /// Pins a bare namespace made in advance at `netns` (whatever file is there is
    /// replaced: the caller checked that no namespace is pinned there) and drops
    /// the pool's pin and record, in that order (a crash in between leaves a pool
    /// entry, which restore unpins). False when none is ready or the hand-over
    /// failed: the caller makes its own. Marks bare namespaces wanted. Called under
    /// the network lock.
    pub(super) async fn take_bare(&self, netns: &Path) -> bool {
        let entry = {
            let mut st = self.lock();
            if st.pool.closed {
                return false;
            }
            st.pool.bare_wanted = true;
            if st.pool.bare.is_empty() {
                return false;
            }
            st.pool.bare.remove(0)
        };
        if let Err(e) = self.pin_pooled_at(&entry, netns).await {
            tracing::warn!(error = %e, "taking a bare network namespace");
            self.drop_pooled(entry).await;
            return false;
        }
        self.release_pooled(&entry).await;
        true
    }

    /// Undoes one entry: unpinned (the kernel takes its veth with it), its record
    /// removed, and its veth waited for.
    async fn drop_pooled(&self, entry: LiveState) {
        if let Err(e) = self.backend.remove_netns(&self.pooled_netns(&entry)).await {
            tracing::warn!(error = %e, "removing a pooled namespace");
        }
        wait_gone(&entry).await;
        if let Err(e) = store::remove(&self.pool_json(&entry.container_id)) {
            tracing::warn!(error = %e, "forgetting a pooled namespace");
        }
    }

    /// Undoes the whole pool, the entries on disk included (those of a berthd that
    /// crashed), and waits for one being set up. `close` keeps a new one from being
    /// made (berthd is stopping). Called under the network lock, before the keepers
    /// are restored or dropped (a veth left on a bridge would keep it).
    pub(super) async fn drop_pool(&self, close: bool) {
        let ready = self.pool_ready.notified();
        tokio::pin!(ready);
        ready.as_mut().enable();
        let filling = {
            let mut st = self.lock();
            st.pool.closed |= close;
            st.pool.wanted = false;
            st.pool.bare_wanted = false;
            st.pool.filling.is_some()
        };
        if filling {
            let _ = tokio::time::timeout(Duration::from_secs(10), ready).await;
        }
        // Bare ones are made under the network lock, so none is half made here.
        let mut entries = {
            let mut st = self.lock();
            let mut all = std::mem::take(&mut st.pool.ready);
            all.append(&mut st.pool.bare);
            all
        };
        for e in store::load_all::<LiveState>(&self.pool_dir) {
            if !entries.iter().any(|x| x.container_id == e.container_id) {
                entries.push(e);
            }
        }
        for e in entries {
            self.drop_pooled(e).await;
        }
        // Pins without a record (a crash between the two).
        for e in std::fs::read_dir(&self.pool_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "ns") {
                let _ = self.backend.remove_netns(&p).await;
            }
        }
    }
}

/// Waits (a little) until the veths of `entry` are gone with its namespace.
async fn wait_gone(entry: &LiveState) {
    let links: Vec<_> = entry
        .attachments
        .iter()
        .filter_map(|a| a.host_link.clone())
        .collect();
    links::wait_gone(&links).await;
}

/// Makes the pools full again in the background, once they are wanted; one entry
/// at a time, so at most one netavark setup of the pool runs.
pub fn refill(engine: &Arc<Engine>) {
    refill_bare(engine);
    {
        let st = engine.networks.lock();
        if !st.pool.wanted
            || st.pool.closed
            || st.pool.filling.is_some()
            || st.pool.ready.len() >= POOL_SIZE
        {
            return;
        }
    }
    let engine = engine.clone();
    tokio::spawn(async move { while fill_one(&engine).await {} });
}

/// Sets up one more entry; false when the pool is full (or not wanted, or the setup
/// failed: the next start that could use it tries again).
async fn fill_one(engine: &Engine) -> bool {
    let nets = &engine.networks;
    let entry = {
        let _ops = nets.ops.lock().await;
        {
            let st = nets.lock();
            if !st.pool.wanted
                || st.pool.closed
                || st.pool.filling.is_some()
                || st.pool.ready.len() >= POOL_SIZE
            {
                return false;
            }
        }
        match plan_entry(nets).await {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "planning a pooled network namespace");
                return false;
            }
        }
    };
    // netavark's own host-wide lock keeps it from running beside another call; the
    // network lock is not held, so exits and starts go on meanwhile.
    let Some(netns) = entry.netns.clone() else {
        return false;
    };
    let Some(options) = entry.attachments.first().map(|a| a.options.clone()) else {
        return false;
    };
    let plain = nets.pooled_veth(&entry);
    let made = match &plain {
        Some(v) => nets.backend.attach_veth(&netns, v).await,
        None => nets
            .setup_watching(&netns, &options)
            .await
            .map(|(_, link)| link),
    };
    match made {
        Ok(host_link) => {
            let mut entry = entry;
            for a in &mut entry.attachments {
                a.up = true;
                a.host_link = host_link.clone();
            }
            if let Err(e) = store::save_volatile(&nets.pool_json(&entry.container_id), &entry) {
                tracing::warn!(error = %e, "recording a pooled namespace");
            }
            let closed = {
                let mut st = nets.lock();
                st.pool.filling = None;
                if !st.pool.closed {
                    st.pool.ready.push(entry.clone());
                }
                st.pool.closed
            };
            if closed {
                nets.drop_pooled(entry).await;
            }
            nets.pool_ready.notify_waiters();
            // The bridge is kept from now on (see `keeper`), as after a container's setup.
            if let Ok(net) = nets.default_network() {
                let _ops = nets.ops.lock().await;
                nets.ensure_keeper(&net).await;
            }
            !closed
        }
        Err(e) => {
            tracing::warn!(error = %e, "setting up a pooled network namespace");
            // A veth of our own dies with its namespace; netavark may have left more.
            if plain.is_none() {
                let _ = nets.teardown(&netns, &options).await;
            }
            nets.lock().pool.filling = None;
            nets.drop_pooled(entry).await;
            nets.pool_ready.notify_waiters();
            false
        }
    }
}

impl Networks {
    /// What [`super::veth`] makes for attachment `a` in place of `netavark setup`,
    /// its host end named `host_name`: only when netavark would make nothing but the
    /// veth, i.e. on the default bridge while its keeper holds it (so the bridge and
    /// the network's firewall rules are there) and no network was wholly torn down
    /// since netavark last checked the shared rules, IPv4 only, not internal, no port
    /// to forward and no DNS. `None` otherwise: netavark sets it up.
    pub(super) fn plain_veth(&self, a: &Attachment, host_name: String) -> Option<PlainVeth> {
        let net = self.default_network().ok()?;
        let plain_options = a.options.networks.len() == 1
            && a.options
                .port_mappings
                .as_ref()
                .is_none_or(|p| p.is_empty())
            && a.options.network_info.values().all(|n| !n.dns_enabled);
        if net.id != a.network_id
            || !plain_options
            || !net.is_bridge()
            || net.internal
            || net.subnets.iter().any(|s| !s.subnet.addr().is_ipv4())
            || !self.keeper_up(&net.id)
            || !self.rules_checked()
        {
            return None;
        }
        let addresses = a
            .addresses
            .iter()
            .map(|n| match n {
                ipnet::IpNet::V4(v4) => Some(*v4),
                ipnet::IpNet::V6(_) => None,
            })
            .collect::<Option<Vec<_>>>()?;
        let gateway = a.gateways.iter().find_map(|g| match g {
            std::net::IpAddr::V4(v4) => Some(*v4),
            std::net::IpAddr::V6(_) => None,
        });
        Some(PlainVeth {
            bridge: net.bridge.clone(),
            host_name,
            mac: super::veth::parse_mac(&a.mac)?,
            mtu: net.mtu,
            addresses,
            gateway,
        })
    }

    /// [`Networks::plain_veth`] for a pool entry (`pool-` and 12 hex digits): its
    /// veth is `veth` and 11 of them, the 15 bytes an interface name may have, never
    /// like netavark's `veth<N>`.
    fn pooled_veth(&self, entry: &LiveState) -> Option<PlainVeth> {
        let [a] = entry.attachments.as_slice() else {
            return None;
        };
        let hex = entry.container_id.strip_prefix("pool-")?.get(..11)?;
        self.plain_veth(a, format!("veth{hex}"))
    }
}

/// Makes bare namespaces in the background until there are [`BARE_POOL_SIZE`], once
/// a `none` start wanted one.
fn refill_bare(engine: &Arc<Engine>) {
    {
        let mut st = engine.networks.lock();
        if !st.pool.bare_wanted
            || st.pool.closed
            || st.pool.bare_filling
            || st.pool.bare.len() >= BARE_POOL_SIZE
        {
            return;
        }
        st.pool.bare_filling = true;
    }
    let engine = engine.clone();
    tokio::spawn(async move {
        while fill_bare_one(&engine.networks).await {}
        engine.networks.lock().pool.bare_filling = false;
    });
}

/// Makes one more bare namespace, under the network lock (so a `drop_pool` never
/// meets one half made); false when there are enough (or not wanted, or making it
/// failed: the next `none` start makes its own and asks again).
async fn fill_bare_one(nets: &Networks) -> bool {
    let _ops = nets.ops.lock().await;
    {
        let st = nets.lock();
        if !st.pool.bare_wanted || st.pool.closed || st.pool.bare.len() >= BARE_POOL_SIZE {
            return false;
        }
    }
    let name = match super::new_id() {
        Ok(id) => format!("bare-{}", &id[..12]),
        Err(e) => {
            tracing::warn!(error = %e, "naming a bare network namespace");
            return false;
        }
    };
    let netns = nets.pool_netns(&name);
    let entry = LiveState {
        container_id: name.clone(),
        netns: Some(netns.clone()),
        ..LiveState::default()
    };
    // Recorded before it is made: a crash from here on is undone at restore.
    if let Err(e) = store::save_volatile(&nets.pool_json(&name), &entry) {
        tracing::warn!(error = %e, "recording a bare network namespace");
        return false;
    }
    if let Err(e) = nets.backend.ensure_netns(&netns).await {
        tracing::warn!(error = %e, "making a bare network namespace");
        let _ = nets.backend.remove_netns(&netns).await;
        let _ = store::remove(&nets.pool_json(&name));
        return false;
    }
    nets.lock().pool.bare.push(entry);
    true
}

/// Under the network lock: an address and the options for one more entry, its
/// record written and its namespace made; it counts as being set up from here on.
async fn plan_entry(nets: &Networks) -> Result<LiveState, NetworkError> {
    let net = nets.default_network()?;
    let name = format!("pool-{}", &super::new_id()?[..12]);
    let addrs = super::container::addresses(nets, &net, &EndpointSettings::default())?;
    let mac = addrs
        .iter()
        .find_map(|a| match a.addr() {
            std::net::IpAddr::V4(v4) => Some(ipam::mac_for(v4)),
            std::net::IpAddr::V6(_) => None,
        })
        .unwrap_or_default();
    let nvname = net.netavark_name();
    let options = NvOptions {
        container_id: name.clone(),
        container_name: name.clone(),
        networks: [(
            nvname.clone(),
            NvPerNetwork {
                interface_name: "eth0".into(),
                static_ips: Some(addrs.iter().map(|a| a.addr()).collect()),
                aliases: Some(vec![]),
                static_mac: (!mac.is_empty()).then(|| mac.clone()),
            },
        )]
        .into(),
        network_info: [(nvname, super::container::nv_network(&net))].into(),
        port_mappings: None,
        dns_servers: None,
    };
    let netns = nets.pool_netns(&name);
    let entry = LiveState {
        container_id: name.clone(),
        netns: Some(netns.clone()),
        attachments: vec![Attachment {
            network_id: net.id.clone(),
            interface: "eth0".into(),
            endpoint_id: String::new(),
            addresses: addrs,
            gateways: net.subnets.iter().filter_map(|s| s.gateway).collect(),
            mac,
            dns_names: vec![],
            options,
            up: false,
            host_link: None,
        }],
        ports: vec![],
    };
    // Recorded before anything is made: a crash from here on is undone at restore.
    store::save_volatile(&nets.pool_json(&name), &entry)?;
    nets.lock().pool.filling = Some(entry.clone());
    if let Err(e) = nets.backend.ensure_netns(&netns).await {
        nets.lock().pool.filling = None;
        let _ = store::remove(&nets.pool_json(&name));
        return Err(e.into());
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard_stubs::models::EndpointIpamConfig;

    #[test]
    fn only_plain_default_bridge_containers_take_from_the_pool() {
        let default = NetworkRecord {
            id: "ab".repeat(32),
            name: DEFAULT_NETWORK.into(),
            driver: "bridge".into(),
            builtin: true,
            ..NetworkRecord::default()
        };
        let user = NetworkRecord {
            name: "appnet".into(),
            builtin: false,
            ..default.clone()
        };
        let plain = EndpointSettings::default();
        assert!(poolable(&[(default.clone(), plain.clone())], false));
        assert!(
            !poolable(&[(default.clone(), plain.clone())], true),
            "ports"
        );
        assert!(
            !poolable(&[(user.clone(), plain.clone())], false),
            "user network"
        );
        assert!(!poolable(&[], false));
        assert!(!poolable(
            &[(default.clone(), plain.clone()), (user, plain.clone())],
            false
        ));
        let mac = EndpointSettings {
            mac_address: Some("02:42:ac:11:00:09".into()),
            ..plain.clone()
        };
        assert!(!poolable(&[(default.clone(), mac)], false));
        let ip = EndpointSettings {
            ipam_config: Some(EndpointIpamConfig {
                ipv4_address: Some("10.0.0.9".into()),
                ..EndpointIpamConfig::default()
            }),
            ..plain.clone()
        };
        assert!(!poolable(&[(default.clone(), ip)], false));
        let empty = EndpointSettings {
            mac_address: Some(String::new()),
            ..plain
        };
        assert!(poolable(&[(default, empty)], false));
    }
}
